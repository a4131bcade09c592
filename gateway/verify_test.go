package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/redis/go-redis/v9"
)

// fillTypes writes n keys of every type through the gateway, some with expiries.
func fillTypes(t testing.TB, h *harness, n int) {
	t.Helper()
	c := h.client(t, 0)
	for i := range n {
		k := strconv.Itoa(i)
		switch i % 6 {
		case 0:
			c.Set(ctx, "s"+k, k, time.Hour)
		case 1:
			c.RPush(ctx, "l"+k, "a", "b", k)
		case 2:
			c.SAdd(ctx, "set"+k, "x", "y", k)
		case 3:
			c.HSet(ctx, "h"+k, "f1", "v", "f2", k)
		case 4:
			c.ZAdd(ctx, "z"+k, redisZ(1, "a"), redisZ(2, k))
		case 5:
			c.XAdd(ctx, xadd("st"+k, k))
		}
	}
}

// verifyRounds runs POST /verify until every key was sampled once (rounds of
// verify_keys) and returns the results.
func verifyRounds(t testing.TB, h *harness, rounds int) []gateway.VerifyResult {
	t.Helper()
	var out []gateway.VerifyResult
	for range rounds {
		resp, err := http.Post("http://"+h.gw.AdminAddr().String()+"/verify", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var r gateway.VerifyResult
		if err := json.Unmarshal(raw, &r); err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST /verify: %d %s", resp.StatusCode, raw)
		}
		out = append(out, r)
	}
	return out
}

// TestVerifyUnderLoad: rounds of the convergence check while 10 clients write find
// no difference (the reads are at one point of the global order on every backend);
// then 10 keys changed behind the gateway's back on backend 2 are found, and backend
// 2 is put out of sync, counted in the metrics and the log (by count, no keys).
func TestVerifyUnderLoad(t *testing.T) {
	h := withRedis(t, 3, "admin_port="+strconv.Itoa(freePort(t)), "auto_resync=false", "verify_keys=100")
	fillTypes(t, h, 300)
	load := startWriteLoad(t, h, 10)
	results := verifyRounds(t, h, 4)
	load.finish()
	keys := 0
	for _, r := range results {
		keys += r.Keys
		if r.Differ != 0 || len(r.Backends) != 2 || r.Reference != h.backends[0].Addr {
			t.Fatalf("verify under load: %+v", r)
		}
	}
	if keys < 300 {
		t.Fatalf("4 rounds of 100 compared %d keys", keys)
	}
	for i := 0; i < 60; i += 6 {
		h.backends[2].Client(0).Set(ctx, "s"+strconv.Itoa(i), "changed", 0)
	}
	differ := 0
	for _, r := range verifyRounds(t, h, 4) {
		for _, d := range r.ByBackend {
			if d.Backend != h.backends[2].Addr {
				t.Fatalf("difference blamed on %s: %+v", d.Backend, r)
			}
			differ += d.Keys
		}
	}
	st := h.gw.Backends()[2]
	if differ == 0 || !st.OutOfSync || !strings.Contains(st.OutOfSyncReason, "verify:") {
		t.Fatalf("tampered backend: %d keys found different, %+v", differ, st)
	}
	if h.gw.Stats().VerifyMismatches.Load() == 0 || strings.Contains(h.logs.String(), "changed") {
		t.Fatal("metrics or log")
	}
}

// TestVerifyWithoutDebugCommand: with DEBUG refused (Redis's default), values are
// compared by content per type. A resynced backend holds the same data in other
// encodings and hash-table orders (a set that grew and shrank stays a hash table
// on the source; loaded from the RDB it is an intset): no false difference.
func TestVerifyWithoutDebugCommand(t *testing.T) {
	a := testserver.StartRedisWith(t, freePort(t), t.TempDir(), "--enable-debug-command", "no")
	b := testserver.StartRedisWith(t, freePort(t), t.TempDir(), "--enable-debug-command", "no")
	h := startGateway(t, []string{a.Addr, b.Addr}, "admin_port="+strconv.Itoa(freePort(t)), "verify_keys=1000")
	h.backends = []*redisServer{a, b}
	c := h.client(t, 0)
	for i := range 1000 {
		c.SAdd(ctx, "bigset", i)
		c.HSet(ctx, "bighash", "f"+strconv.Itoa(i), i)
	}
	for i := 10; i < 1000; i++ {
		c.SRem(ctx, "bigset", i)
	}
	fillTypes(t, h, 60)
	h.drained(t)
	if err := h.gw.Resync(b.Addr); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		st := h.gw.Backends()[1]
		return st.State == "up" && st.Resync != nil && st.Resync.Step == "done"
	}, "resync")
	enc := func(r *redisServer) string { return r.Client(0).ObjectEncoding(ctx, "bigset").Val() }
	t.Logf("bigset encoding: %s on the source, %s on the resynced backend", enc(a), enc(b))
	r := verifyRounds(t, h, 1)[0]
	if r.Keys != 62 || r.Differ != 0 {
		t.Fatalf("verify after a resync: %+v", r)
	}
	b.Client(0).SAdd(ctx, "bigset", "extra")
	if r := verifyRounds(t, h, 1)[0]; r.Differ != 1 {
		t.Fatalf("verify after a change behind the gateway: %+v", r)
	}
}

// TestVerifyMemcached: items compared by value and flags across memcached backends.
func TestVerifyMemcached(t *testing.T) {
	h := withMemcached(t, 2, "admin_port="+strconv.Itoa(freePort(t)), "auto_resync=false")
	c := h.mcClient()
	for i := range 50 {
		if err := c.Set(&memcache.Item{Key: "k" + strconv.Itoa(i), Value: []byte("v"), Flags: uint32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	h.drained(t)
	if r := verifyRounds(t, h, 1)[0]; r.Keys != 50 || r.Differ != 0 {
		t.Fatalf("verify: %+v", r)
	}
	if _, err := h.mc[1].Command("set k7 7 0 1\r\nX"); err != nil {
		t.Fatal(err)
	}
	if r := verifyRounds(t, h, 1)[0]; r.Differ != 1 || len(r.Suspect) != 1 {
		t.Fatalf("verify after a change behind the gateway: %+v", r)
	}
}

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }

func xadd(stream, value string) *redis.XAddArgs {
	return &redis.XAddArgs{Stream: stream, Values: []string{"v", value}}
}
