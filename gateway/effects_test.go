package gateway_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/redis/go-redis/v9"
)

// TestWritesByEffect: commands whose outcome depends on the server run on the
// authority only; the other backends get their effect at the same place of the
// order, so all three stay identical (they diverged on every one of these before).
func TestWritesByEffect(t *testing.T) {
	h := withRedis(t, 3)
	c := h.client(t, 0)
	members := make([]any, 200)
	for i := range members {
		members[i] = "m" + strconv.Itoa(i)
	}
	c.SAdd(ctx, "set", members...)
	popped := map[string]bool{}
	for range 20 {
		v, err := c.SPop(ctx, "set").Result()
		if err != nil || popped[v] {
			t.Fatalf("SPOP = %q, %v (popped twice?)", v, err)
		}
		popped[v] = true
	}
	vs, err := c.SPopN(ctx, "set", 30).Result()
	if err != nil || len(vs) != 30 {
		t.Fatalf("SPOP 30 = %d, %v", len(vs), err)
	}
	if err := c.SPop(ctx, "nosuch").Err(); err != redis.Nil {
		t.Fatalf("SPOP on a missing key: %v", err)
	}
	if n := c.SCard(ctx, "set").Val(); n != 150 {
		t.Fatalf("SCARD = %d", n)
	}

	var ids []string
	for i := range 50 {
		id, err := c.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []any{"i", i}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := c.XAdd(ctx, &redis.XAddArgs{Stream: "s", MaxLen: 40, Approx: true, ID: "*", Values: []any{"i", "trim"}}).Result(); err != nil {
		t.Fatal(err)
	}
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: "none", NoMkStream: true, Values: []any{"a", 1}}).Err(); err != redis.Nil {
		t.Fatalf("XADD NOMKSTREAM on a missing key: %v", err)
	}
	h.drained(t)
	h.eachBackend(t, 0, func(i int, b *redis.Client) {
		got := b.XRange(ctx, "s", "-", "+").Val()
		if len(got) == 0 || got[0].ID == "" {
			t.Fatalf("backend %d stream empty", i)
		}
		if i > 0 && !strings.HasPrefix(ids[len(ids)-1], strings.Split(got[len(got)-2].ID, "-")[0]) {
			t.Fatalf("backend %d IDs differ from the authority's", i)
		}
	})

	c.Set(ctx, "f", "10.5", 0)
	for range 10 {
		if err := c.IncrByFloat(ctx, "f", 0.1).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.Expire(ctx, "f", 1000)
	c.IncrByFloat(ctx, "f", 1e-17) // formatting of tiny increments: SET of the result
	for range 10 {
		c.HIncrByFloat(ctx, "h", "x", 1.0/3)
	}
	h.eachBackend(t, 0, func(i int, b *redis.Client) {
		if ttl := b.TTL(ctx, "f").Val(); ttl <= 0 {
			t.Fatalf("backend %d: INCRBYFLOAT's effect lost the TTL (%v)", i, ttl)
		}
	})

	// Errors stop the effect: nothing changes anywhere (arity errors included).
	for _, bad := range [][]any{{"SPOP"}, {"INCRBYFLOAT", "f"}, {"HINCRBYFLOAT", "h", "x"}, {"XADD", "s", "*"}, {"XCLAIM", "s", "g"}} {
		if err := c.Do(ctx, bad...).Err(); err == nil {
			t.Fatalf("%v succeeded", bad)
		}
	}
	if err := c.SPop(ctx, "f").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
		t.Fatalf("SPOP on a string: %v", err)
	}
	if err := c.IncrByFloat(ctx, "set", 1).Err(); err == nil {
		t.Fatal("INCRBYFLOAT on a set succeeded")
	}
	if err := c.Do(ctx, "XADD", "s", "1-1", "a", "b").Err(); err == nil {
		t.Fatal("XADD with an ID below the top succeeded")
	}
	h.converged(t)
	h.noDivergence(t)
	for _, b := range h.gw.Backends() {
		if b.OutOfSync {
			t.Fatalf("backend flagged: %+v", b)
		}
	}
}

// TestSPopConcurrent: many clients popping one set while others add to it: every
// member is popped at most once, and the backends end identical.
func TestSPopConcurrent(t *testing.T) {
	h := withRedis(t, 3)
	c := h.client(t, 0)
	for i := range 1000 {
		c.SAdd(ctx, "q", "j"+strconv.Itoa(i))
	}
	seen := make(chan string, 1000)
	runClients(t, h, 10, func(w int, c *redis.Client) error {
		for {
			v, err := c.SPop(ctx, "q").Result()
			if err == redis.Nil {
				return nil
			}
			if err != nil {
				return err
			}
			seen <- v
			c.RPush(ctx, "log", v)
		}
	})
	close(seen)
	got := map[string]bool{}
	for v := range seen {
		if got[v] {
			t.Fatalf("%s popped twice", v)
		}
		got[v] = true
	}
	if len(got) != 1000 {
		t.Fatalf("%d of 1000 popped", len(got))
	}
	h.converged(t)
}

// TestStreamClaimsByEffect: XCLAIM and XAUTOCLAIM decide by idle times, which differ
// per server; the others claim exactly what the authority claimed, with the same
// delivery times, so every backend's pending list is the same.
func TestStreamClaimsByEffect(t *testing.T) {
	h := withRedis(t, 3)
	c := h.client(t, 0)
	for i := range 30 {
		c.XAdd(ctx, &redis.XAddArgs{Stream: "s", ID: strconv.Itoa(i+1) + "-0", Values: []any{"i", i}})
	}
	c.XGroupCreate(ctx, "s", "g", "0")
	// XREADGROUP is not served yet (it can block); XCLAIM FORCE fills the pending list.
	all := []any{"XCLAIM", "s", "g", "a", "0"}
	for i := range 30 {
		all = append(all, strconv.Itoa(i+1)+"-0")
	}
	if n := len(c.Do(ctx, append(all, "FORCE", "JUSTID")...).Val().([]any)); n != 30 {
		t.Fatalf("XCLAIM FORCE claimed %d", n)
	}
	c.XDel(ctx, "s", "5-0", "6-0") // pending entries whose stream entry is gone
	time.Sleep(100 * time.Millisecond)
	h.drained(t)
	// Backend 2's idle times now differ from the others' (as after a late replay):
	// its entries were delivered just now. Without effects it would claim nothing.
	resetIdle := []any{"XCLAIM", "s", "g", "a", "0"}
	for i := range 30 {
		if i != 4 && i != 5 {
			resetIdle = append(resetIdle, strconv.Itoa(i+1)+"-0")
		}
	}
	if err := h.backends[2].Client(0).Do(ctx, append(resetIdle, "JUSTID")...).Err(); err != nil {
		t.Fatal(err)
	}
	claimed, err := c.XClaim(ctx, &redis.XClaimArgs{Stream: "s", Group: "g", Consumer: "b", MinIdle: 60 * time.Millisecond, Messages: []string{"1-0", "2-0", "3-0"}}).Result()
	if err != nil || len(claimed) != 3 {
		t.Fatalf("XCLAIM = %d, %v", len(claimed), err)
	}
	ids, err := c.XClaimJustID(ctx, &redis.XClaimArgs{Stream: "s", Group: "g", Consumer: "b", MinIdle: time.Hour, Messages: []string{"4-0"}}).Result()
	if err != nil || len(ids) != 0 {
		t.Fatalf("XCLAIM with a min-idle nobody reaches = %v, %v", ids, err)
	}
	c.Do(ctx, "XCLAIM", "s", "g", "c", "0", "7-0", "IDLE", "5000", "RETRYCOUNT", "3")
	msgs, start, err := c.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: "s", Group: "g", Consumer: "d", MinIdle: 60 * time.Millisecond, Start: "0", Count: 10}).Result()
	if err != nil || len(msgs) == 0 {
		t.Fatalf("XAUTOCLAIM = %d, %q, %v", len(msgs), start, err)
	}
	h.drained(t)
	for _, b := range h.gw.Backends() {
		if b.Connects != 1 || b.OutOfSync {
			t.Fatalf("backend reset or flagged by an effect: %+v", b)
		}
	}
	var want string
	h.eachBackend(t, 0, func(i int, b *redis.Client) {
		pending := b.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "s", Group: "g", Start: "-", End: "+", Count: 100}).Val()
		var sb strings.Builder
		for _, p := range pending {
			fmt.Fprintf(&sb, "%s:%s:%d ", p.ID, p.Consumer, p.RetryCount)
		}
		if i == 0 {
			want = sb.String()
		} else if sb.String() != want {
			t.Fatalf("backend %d pending list\n%s\ndiffers from backend 0's\n%s", i, sb.String(), want)
		}
	})
	h.converged(t)
}

// TestApproximateTrimByEffect: MAXLEN ~ and MINID ~ trim what a server's node layout
// allows, which differs with its configuration; the others trim exactly as far as the
// authority did (Redis rewrites ~ to = for its replicas the same way).
func TestApproximateTrimByEffect(t *testing.T) {
	h := withRedis(t, 3)
	if err := h.backends[2].Client(0).ConfigSet(ctx, "stream-node-max-entries", "7").Err(); err != nil {
		t.Fatal(err)
	}
	c := h.client(t, 0)
	for i := range 500 {
		args := &redis.XAddArgs{Stream: "s", MaxLen: 100, Approx: true, Values: []any{"i", i}}
		if i%50 == 0 {
			args.Limit = 20
		}
		if err := c.XAdd(ctx, args).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: "m", ID: strconv.Itoa(i+1) + "-1", MinID: strconv.Itoa(max(i-120, 0)), Approx: true, Values: []any{"i", i}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.XTrimMaxLenApprox(ctx, "s", 30, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "XTRIM", "m", "MINID", "~", "400").Err(); err != nil {
		t.Fatal(err)
	}
	h.converged(t)
	h.noDivergence(t)
}

// TestTransactionsByEffect: a MULTI block holding commands replicated by effect runs
// as sent on the authority; the others run the block with those commands replaced by
// their effects, so the backends stay identical; the client sees the authority's EXEC.
func TestTransactionsByEffect(t *testing.T) {
	h := withRedis(t, 3)
	c := h.client(t, 0)
	for i := range 100 {
		c.SAdd(ctx, "set", "m"+strconv.Itoa(i))
	}
	c.Set(ctx, "str", "x", 0)
	runClients(t, h, 5, func(w int, c *redis.Client) error {
		for range 20 {
			cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.SPop(ctx, "set")
				p.Incr(ctx, "n")
				p.IncrByFloat(ctx, "f", 0.1)
				p.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []any{"w", w}})
				p.SPop(ctx, "str") // WRONGTYPE at EXEC: no effect anywhere
				return nil
			})
			if len(cmds) != 5 || cmds[1].Err() != nil || cmds[4].Err() == nil {
				return fmt.Errorf("EXEC replies %v, %v", cmds, err)
			}
		}
		return nil
	})
	if n := c.SCard(ctx, "set").Val(); n != 0 {
		t.Fatalf("SCARD = %d after 100 SPOPs", n)
	}
	h.converged(t)
	h.noDivergence(t)
}

// TestDivergenceNamesScriptAndClass: a non-deterministic script's divergence is logged
// and counted under its SHA1; a key present on one backend only shows as
// missing_vs_present (how an expiry race looks), error texts as error_text.
func TestDivergenceNamesScriptAndClass(t *testing.T) {
	h := withRedis(t, 2)
	c := h.client(t, 0)
	script := "redis.call('SET', KEYS[1], 'x') return redis.call('TIME')[2]"
	sha := "sha1:" + c.ScriptLoad(ctx, script).Val()
	// Two backends can run the script in the same microsecond and agree; a few runs
	// make a divergence certain without the test depending on the clock.
	for range 5 {
		c.Eval(ctx, script, []string{"t"})
		h.drained(t)
		if h.gw.Stats().ScriptDivergences()[sha] >= 1 {
			break
		}
	}
	eventually(t, func() bool { return h.gw.Stats().ScriptDivergences()[sha] >= 1 }, "script divergence counted under "+sha)
	if !strings.Contains(h.logs.String(), "script="+sha) {
		t.Fatalf("divergence log does not name the script:\n%s", h.logs.String())
	}
	h.backends[1].Client(0).Set(ctx, "only-on-1", "v", 0)
	c.Del(ctx, "only-on-1")
	h.drained(t)
	st := h.gw.Stats()
	eventually(t, func() bool { return st.DivergencesByClass[gateway.DivergenceMissing].Load() == 1 }, "one missing_vs_present divergence")
	if n := st.DivergencesByClass[gateway.DivergenceOther].Load(); n < 1 {
		t.Fatalf("other divergences = %d", n)
	}
}

// TestWritesByEffectInSelectedDatabase: a write replicated by effect runs in the
// client's database on every backend (found by the fidelity test: the gate skipped
// the SELECT the shared pipeline needs).
func TestWritesByEffectInSelectedDatabase(t *testing.T) {
	h := withRedis(t, 3)
	c2, c0 := h.client(t, 2), h.client(t, 0)
	c2.SAdd(ctx, "set", "a", "b", "c")
	c0.SAdd(ctx, "set", "x", "y", "z")
	c2.SPop(ctx, "set")
	c0.SPop(ctx, "set")
	c2.IncrByFloat(ctx, "f", 1.5)
	c0.Set(ctx, "after", "1", 0)
	h.drained(t)
	h.eachBackend(t, 2, func(i int, b *redis.Client) {
		if n := b.SCard(ctx, "set").Val(); n != 2 || b.Get(ctx, "f").Val() != "1.5" {
			t.Fatalf("backend %d db 2: SCARD %d, f %q", i, n, b.Get(ctx, "f").Val())
		}
	})
	h.converged(t)
}
