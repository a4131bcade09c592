package gateway_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/redis/go-redis/v9"
)

// TestBlockingPopWokenByPush: a BLPOP through the gateway blocks until another
// client's RPUSH, other clients are served meanwhile, and every backend popped the
// same element (the list is gone everywhere, the digests are equal).
func TestBlockingPopWokenByPush(t *testing.T) {
	h := withRedis(t, 3)
	waiter, pusher := h.client(t, 0), h.client(t, 0)
	got := make(chan []string, 1)
	go func() {
		v, err := waiter.BLPop(ctx, 0, "queue:a", "queue:b").Result()
		if err != nil {
			t.Errorf("BLPOP: %v", err)
		}
		got <- v
	}()
	eventually(t, func() bool { return strings.Contains(clientList(t, pusher), "flags=b") }, "BLPOP blocked")
	for i := range 50 { // others are not blocked by it
		if err := pusher.Set(ctx, fmt.Sprint("other", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := pusher.RPush(ctx, "queue:b", "job-1", "job-2").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if len(v) != 2 || v[0] != "queue:b" || v[1] != "job-1" {
			t.Fatalf("BLPOP = %q, want [queue:b job-1]", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("BLPOP not woken by RPUSH")
	}
	h.eachBackend(t, 0, func(i int, c *redis.Client) {
		if v, _ := c.LRange(ctx, "queue:b", 0, -1).Result(); len(v) != 1 || v[0] != "job-2" {
			t.Errorf("backend %d queue:b = %q, want [job-2]", i, v)
		}
	})
	h.converged(t)
}

// TestBlockingQueueWorkers: 20 workers BRPOP a queue that 5 producers fill with
// 10,000 jobs. Every job is taken exactly once, the list ends empty on every backend,
// and the backends converge.
func TestBlockingQueueWorkers(t *testing.T) {
	h := withRedis(t, 3)
	const producers, workers, jobs = 5, 20, 10000
	var taken sync.Map
	var count, dup atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			c := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2})
			defer c.Close()
			for {
				v, err := c.BRPop(ctx, time.Second, "jobs").Result()
				if errors.Is(err, redis.Nil) {
					select {
					case <-stop:
						return
					default:
						continue
					}
				}
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				if _, loaded := taken.LoadOrStore(v[1], w); loaded {
					dup.Add(1)
				}
				count.Add(1)
			}
		})
	}
	start := time.Now()
	runConcurrently(t, producers, func(p int) error {
		c := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2})
		defer c.Close()
		for i := range jobs / producers {
			if err := c.LPush(ctx, "jobs", fmt.Sprintf("job-%d-%d", p, i)).Err(); err != nil {
				return err
			}
		}
		return nil
	})
	eventually(t, func() bool { return count.Load() == jobs }, "every job taken")
	close(stop)
	wg.Wait()
	t.Logf("%d jobs through %d workers in %v", jobs, workers, time.Since(start))
	if dup.Load() != 0 || count.Load() != jobs {
		t.Fatalf("taken %d jobs, %d twice; want %d once each", count.Load(), dup.Load(), jobs)
	}
	h.eachBackend(t, 0, func(i int, c *redis.Client) {
		if n, _ := c.LLen(ctx, "jobs").Result(); n != 0 {
			t.Errorf("backend %d: %d jobs left", i, n)
		}
	})
	h.converged(t)
}

// TestBlockingTimeoutsAndUnblock: BZPOPMIN with a timeout answers nil; BLMOVE's nil
// is a null bulk; CLIENT UNBLOCK (gateway ids) ends a wait, with TIMEOUT or ERROR;
// a blocked client that disconnects is released.
func TestBlockingTimeoutsAndUnblock(t *testing.T) {
	h := withRedis(t, 3)
	c := h.client(t, 0)
	start := time.Now()
	if err := c.BZPopMin(ctx, time.Second, "zq").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("BZPOPMIN timeout: %v, want nil", err)
	}
	t.Logf("BZPOPMIN 1 answered nil after %v", time.Since(start))
	converse(t, h.addr, "BLMOVE src dst LEFT RIGHT 0.05\r\nBZPOPMIN zq -1\r\nBLPOP k notanumber\r\nBLPOP k 0.01\r\n",
		"$-1\r\n-ERR timeout is negative\r\n-ERR timeout is not a float or out of range\r\n*-1\r\n")

	blocked := h.client(t, 0)
	id := blocked.ClientID(ctx).Val()
	errc := make(chan error, 2)
	go func() { errc <- blocked.BLPop(ctx, 0, "never").Err() }()
	eventually(t, func() bool {
		return strings.Contains(clientList(t, c), fmt.Sprintf("id=%d ", id)) && strings.Contains(clientList(t, c), "flags=b")
	}, "client blocked")
	if n := c.ClientUnblock(ctx, id).Val(); n != 1 {
		t.Fatalf("CLIENT UNBLOCK = %d", n)
	}
	if err := <-errc; !errors.Is(err, redis.Nil) {
		t.Fatalf("unblocked BLPOP: %v, want nil", err)
	}
	go func() { errc <- blocked.BLPop(ctx, 0, "never").Err() }()
	eventually(t, func() bool { return strings.Contains(clientList(t, c), "flags=b") }, "client blocked again")
	if n := c.ClientUnblockWithError(ctx, id).Val(); n != 1 {
		t.Fatalf("CLIENT UNBLOCK ERROR = %d", n)
	}
	if err := <-errc; err == nil || !strings.HasPrefix(err.Error(), "UNBLOCKED") {
		t.Fatalf("unblocked with error: %v", err)
	}
	if n := c.ClientUnblock(ctx, id).Val(); n != 0 {
		t.Fatalf("CLIENT UNBLOCK of a client not blocked = %d", n)
	}

	// A blocked client that goes away holds nothing (no goroutine, no registration):
	// a later push stays in the list.
	before := runtime.NumGoroutine()
	gone := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2})
	go func() { _ = gone.BLPop(ctx, 0, "leftover").Err() }()
	eventually(t, func() bool { return strings.Contains(clientList(t, c), "flags=b") }, "blocked")
	_ = gone.Close()
	eventually(t, func() bool { return !strings.Contains(clientList(t, c), "flags=b") }, "released")
	eventually(t, func() bool { return runtime.NumGoroutine() <= before+1 }, fmt.Sprintf("goroutines back to %d", before))
	c.RPush(ctx, "leftover", "x")
	h.eachBackend(t, 0, func(i int, b *redis.Client) {
		if v := b.LRange(ctx, "leftover", 0, -1).Val(); len(v) != 1 {
			t.Errorf("backend %d leftover = %q", i, v)
		}
	})
	h.converged(t)
}

// TestStreamConsumers: XREADGROUP BLOCK wakes on XADD; XREAD BLOCK $ waits for an
// entry after the command; XREADGROUP, XACK, XCLAIM, XAUTOCLAIM and XPENDING leave
// the same pending lists on every backend.
func TestStreamConsumers(t *testing.T) {
	h := withRedis(t, 3)
	c := h.client(t, 0)
	if err := c.XGroupCreateMkStream(ctx, "s", "g", "$").Err(); err != nil {
		t.Fatal(err)
	}
	c.XAdd(ctx, &redis.XAddArgs{Stream: "s", ID: "1-1", Values: []string{"old", "1"}})
	if v, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "early", Streams: []string{"s", ">"}, Count: 10}).Result(); err != nil || len(v[0].Messages) != 1 {
		t.Fatalf("XREADGROUP without BLOCK: %v %v", v, err)
	}
	group := make(chan []redis.XStream, 1)
	plain := make(chan []redis.XStream, 1)
	go func() {
		v, err := h.client(t, 0).XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "alice", Streams: []string{"s", ">"}, Block: 0}).Result()
		if err != nil {
			t.Errorf("XREADGROUP BLOCK: %v", err)
		}
		group <- v
	}()
	go func() {
		v, err := h.client(t, 0).XRead(ctx, &redis.XReadArgs{Streams: []string{"s", "$"}, Block: 0}).Result()
		if err != nil {
			t.Errorf("XREAD BLOCK: %v", err)
		}
		plain <- v
	}()
	eventually(t, func() bool { return strings.Count(clientList(t, c), "flags=b") == 2 }, "both readers blocked")
	c.XAdd(ctx, &redis.XAddArgs{Stream: "s", ID: "2-1", Values: []string{"new", "2"}})
	for _, ch := range []chan []redis.XStream{group, plain} {
		select {
		case v := <-ch:
			if len(v) != 1 || len(v[0].Messages) != 1 || v[0].Messages[0].ID != "2-1" {
				t.Fatalf("woken reader got %+v, want entry 2-1", v)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("reader not woken by XADD")
		}
	}
	if err := c.XAck(ctx, "s", "g", "1-1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XClaim(ctx, &redis.XClaimArgs{Stream: "s", Group: "g", Consumer: "bob", Messages: []string{"2-1"}}).Err(); err != nil {
		t.Fatal(err)
	}
	c.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: "s", Group: "g", Consumer: "carol", Start: "0"})
	want := fmt.Sprint(c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "s", Group: "g", Start: "-", End: "+", Count: 10}).Val()[0].Consumer)
	h.eachBackend(t, 0, func(i int, b *redis.Client) {
		p := b.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "s", Group: "g", Start: "-", End: "+", Count: 10}).Val()
		if len(p) != 1 || p[0].ID != "2-1" || p[0].Consumer != want {
			t.Errorf("backend %d pending = %+v", i, p)
		}
	})
	h.converged(t)
}

// TestWatchCounter: 20 clients in WATCH/GET/MULTI/SET/EXEC retry loops increment one
// counter 2,000 times in total; the counter is exactly 2,000 on every backend. EXEC
// also fails after FLUSHDB and after a watched key expires.
func TestWatchCounter(t *testing.T) {
	h := withRedis(t, 3)
	const clients, total = 20, 2000
	var retries atomic.Int64
	runClients(t, h, clients, func(w int, c *redis.Client) error {
		for range total / clients {
			for {
				err := c.Watch(ctx, func(tx *redis.Tx) error {
					n, err := tx.Get(ctx, "counter").Int()
					if err != nil && !errors.Is(err, redis.Nil) {
						return err
					}
					_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
						p.Set(ctx, "counter", n+1, 0)
						return nil
					})
					return err
				}, "counter")
				if errors.Is(err, redis.TxFailedErr) {
					retries.Add(1)
					continue
				}
				if err != nil {
					return err
				}
				break
			}
		}
		return nil
	})
	t.Logf("%d increments, %d EXEC retries after a concurrent change", total, retries.Load())
	h.eachBackend(t, 0, func(i int, c *redis.Client) {
		if v := c.Get(ctx, "counter").Val(); v != strconv.Itoa(total) {
			t.Errorf("backend %d counter = %s, want %d", i, v, total)
		}
	})

	// FLUSHDB from another client, and expiry, fail EXEC; UNWATCH and a change
	// before the WATCH do not.
	c, other := h.client(t, 0), h.client(t, 0)
	raw := func(cmds string) string { return exchange(t, h.addr, cmds) }
	_ = raw
	failsAfter := func(what string, change func()) {
		t.Helper()
		err := c.Watch(ctx, func(tx *redis.Tx) error {
			change()
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "w", "after", 0)
				return nil
			})
			return err
		}, "w")
		if !errors.Is(err, redis.TxFailedErr) {
			t.Errorf("EXEC after %s: %v, want nil reply", what, err)
		}
	}
	c.Set(ctx, "w", "1", 0)
	failsAfter("SET by another client", func() { other.Set(ctx, "w", "2", 0) })
	failsAfter("FLUSHDB", func() { other.FlushDB(ctx) })
	c.Set(ctx, "w", "1", 150*time.Millisecond)
	failsAfter("expiry", func() { time.Sleep(300 * time.Millisecond) })
	other.Set(ctx, "w", "before", 0)
	if err := c.Watch(ctx, func(tx *redis.Tx) error {
		other.Set(ctx, "unrelated", "x", 0)
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "w", "mine", 0)
			return nil
		})
		return err
	}, "w"); err != nil {
		t.Fatalf("EXEC with an untouched watched key: %v", err)
	}
	if got := exchange(t, h.addr, "WATCH w\r\nMULTI\r\nWATCH x\r\nUNWATCH\r\nSET w z\r\nEXEC\r\n"); got != "+OK\r\n+OK\r\n-ERR WATCH inside MULTI is not allowed\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n+OK\r\n" {
		t.Fatalf("WATCH inside MULTI: %q", got)
	}
	h.converged(t)
}

// TestClientCommands: CLIENT LIST / INFO / KILL / NO-EVICT / TRACKING off answered
// for the gateway's own clients; other CLIENT subcommands keep a clear error.
func TestClientCommands(t *testing.T) {
	h := withRedis(t, 2)
	a, b := h.client(t, 0), h.client(t, 0)
	a.Do(ctx, "CLIENT", "SETNAME", "alpha")
	idB := b.ClientID(ctx).Val()
	list := clientList(t, a)
	if !strings.Contains(list, "name=alpha") || !strings.Contains(list, fmt.Sprintf("id=%d ", idB)) {
		t.Fatalf("CLIENT LIST:\n%s", list)
	}
	if info := a.ClientInfo(ctx).Val(); info == nil || info.Name != "alpha" {
		t.Fatalf("CLIENT INFO: %+v", info)
	}
	for _, cmd := range [][]any{{"CLIENT", "NO-EVICT", "on"}, {"CLIENT", "TRACKING", "off"}} {
		if err := a.Do(ctx, cmd...).Err(); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	for _, cmd := range [][]any{{"CLIENT", "TRACKING", "on"}, {"CLIENT", "PAUSE", "10"}, {"CLIENT", "REPLY", "OFF"}} {
		if err := a.Do(ctx, cmd...).Err(); err == nil || !strings.Contains(err.Error(), "not supported") {
			t.Fatalf("%v: %v, want a clear refusal", cmd, err)
		}
	}
	if n := a.ClientKillByFilter(ctx, "ID", strconv.FormatInt(idB, 10)).Val(); n != 1 {
		t.Fatalf("CLIENT KILL ID = %d", n)
	}
	eventually(t, func() bool { return !strings.Contains(clientList(t, a), fmt.Sprintf("id=%d ", idB)) }, "killed client gone")
	if err := a.Do(ctx, "CLIENT", "KILL", "127.0.0.1:1").Err(); err == nil || err.Error() != "ERR No such client" {
		t.Fatalf("CLIENT KILL unknown addr: %v", err)
	}
}

// TestMonitor: MONITOR is answered by the gateway from what its clients send, in
// Redis's format, to several monitors at once; passwords are not shown.
func TestMonitor(t *testing.T) {
	h := withRedis(t, 2)
	// Raw connections: go-redis's Monitor races with its own connection pool.
	var mons []*bufio.Reader
	for range 2 {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, "MONITOR\r\n"); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(conn)
		if l, err := r.ReadString('\n'); err != nil || l != "+OK\r\n" {
			t.Fatalf("MONITOR: %q %v", l, err)
		}
		mons = append(mons, r)
	}
	c := h.client(t, 0)
	eventually(t, func() bool { return strings.Count(clientList(t, c), "flags=O") == 2 }, "monitors registered")
	c.Set(ctx, "mk", "a \"quoted\"\nvalue", 0)
	c.Do(ctx, "AUTH", "secret")
	for i, r := range mons {
		var seen []string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("monitor %d after %q: %v", i, seen, err)
			}
			seen = append(seen, l)
			if strings.Contains(l, `"AUTH"`) {
				break
			}
		}
		all := strings.Join(seen, "")
		if !strings.Contains(all, `] "set" "mk" "a \"quoted\"\nvalue"`+"\r\n") || !strings.Contains(all, `"AUTH" "(redacted)"`) || strings.Contains(all, "secret") {
			t.Fatalf("monitor %d saw:\n%s", i, all)
		}
		if !strings.HasPrefix(seen[0], "+") || !strings.Contains(seen[0], " [0 127.0.0.1:") {
			t.Fatalf("monitor %d line %q is not in Redis's format", i, seen[0])
		}
	}
}

// clientList returns CLIENT LIST through the gateway.
func clientList(t testing.TB, c *redis.Client) string {
	t.Helper()
	s, err := c.ClientList(ctx).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	return s
}

// converse writes input on a new connection and reads until want has arrived (or 10 s
// pass), without half-closing: a client that closes its side is gone for Redis, and
// for the gateway, before a blocked command is answered.
func converse(t testing.TB, addr, input, want string) {
	t.Helper()
	c := dialAndSend(t, addr, input)
	defer c.Close()
	got := make([]byte, len(want))
	n, err := io.ReadFull(c, got)
	if err != nil || string(got) != want {
		t.Fatalf("after %q: got %q (%v), want %q", input, got[:n], err, want)
	}
}

// TestPubSub: a go-redis subscriber through the gateway and one connected directly to
// a secondary backend each receive every message published through the gateway
// exactly once; PING works in subscriber mode, other commands get Redis's error;
// PUBSUB NUMSUB answers; a subscriber that disconnects leaves no goroutine behind.
func TestPubSub(t *testing.T) {
	h := withRedis(t, 3)
	before := runtime.NumGoroutine()
	c := h.client(t, 0)
	through := c.Subscribe(ctx, "news")
	if _, err := through.Receive(ctx); err != nil { // the confirmation
		t.Fatal(err)
	}
	if err := through.PSubscribe(ctx, "sport.*"); err != nil {
		t.Fatal(err)
	}
	direct := h.backends[2].Client(0).Subscribe(ctx, "news")
	if _, err := direct.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := through.Ping(ctx, "hi"); err != nil {
		t.Fatalf("PING while subscribed: %v", err)
	}
	eventually(t, func() bool { return c.PubSubNumSub(ctx, "news").Val()["news"] == 1 }, "PUBSUB NUMSUB news = 1 on the primary")
	const n = 200
	for i := range n {
		if err := c.Publish(ctx, "news", fmt.Sprint("m", i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.Publish(ctx, "sport.tennis", "ace")
	read := func(ps *redis.PubSub, want int) []string {
		var got []string
		for len(got) < want {
			msg, err := ps.ReceiveTimeout(ctx, 5*time.Second)
			if err != nil {
				t.Fatalf("after %d messages: %v", len(got), err)
			}
			switch m := msg.(type) {
			case *redis.Message:
				got = append(got, m.Channel+":"+m.Payload)
			case *redis.Pong, *redis.Subscription:
			default:
				t.Fatalf("unexpected %T %v", msg, msg)
			}
		}
		return got
	}
	for name, ps := range map[string]*redis.PubSub{"through the gateway": through, "direct on a secondary": direct} {
		want := n
		if ps == through {
			want++ // and the pattern's message
		}
		got := read(ps, want)
		for i := range n {
			if got[i] != fmt.Sprint("news:m", i) {
				t.Fatalf("%s: message %d = %q", name, i, got[i])
			}
		}
		if _, err := ps.ReceiveTimeout(ctx, 300*time.Millisecond); err == nil {
			t.Fatalf("%s: a message more than published", name)
		}
	}
	converse(t, h.addr, "SUBSCRIBE a\r\nGET x\r\nPING\r\nUNSUBSCRIBE\r\nGET x\r\n",
		"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"+
			"*2\r\n$4\r\npong\r\n$0\r\n\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n$-1\r\n")
	_ = through.Close()
	_ = direct.Close()
	eventually(t, func() bool { return c.PubSubNumSub(ctx, "news").Val()["news"] == 0 }, "subscription gone from the backend")
	eventually(t, func() bool { return runtime.NumGoroutine() <= before+2 }, fmt.Sprintf("goroutines back to %d", before))
	h.converged(t)
}

// TestRESP3: HELLO 3 switches one client to RESP3 end to end (maps, sets, doubles,
// nulls, verbatim strings, push messages) while RESP2 clients on the same gateway, in
// the same pipelines, keep RESP2; go-redis works in its default protocol (3) and with
// Protocol: 2; every backend ends identical.
func TestRESP3(t *testing.T) {
	h := withRedis(t, 3)
	c3 := redis.NewClient(&redis.Options{Addr: h.addr}) // go-redis v9 default: HELLO 3
	defer c3.Close()
	c2 := h.client(t, 0)
	if err := c3.HSet(ctx, "h", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	c3.SAdd(ctx, "set", "a")
	c3.ZAdd(ctx, "z", redis.Z{Score: 1.5, Member: "m"})
	if v := c3.HGetAll(ctx, "h").Val(); v["f"] != "v" {
		t.Fatalf("HGETALL via RESP3: %v", v)
	}
	if v := c3.ZScore(ctx, "z", "m").Val(); v != 1.5 {
		t.Fatalf("ZSCORE via RESP3: %v", v)
	}
	if err := c3.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET missing via RESP3: %v", err)
	}
	if v := c3.Do(ctx, "HELLO").Val(); fmt.Sprint(v.(map[any]any)["proto"]) != "3" {
		t.Fatalf("HELLO via RESP3: %v", v)
	}
	// Raw: both protocols interleaved on one gateway, replies in each client's own.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				converseUntil(t, h.addr, "HELLO 3\r\nHGETALL h\r\nSMEMBERS set\r\nZSCORE z m\r\nGET missing\r\nEVAL \"redis.setresp(3); return {true}\" 0\r\n",
					"modules\r\n*0\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n~1\r\n$1\r\na\r\n,1.5\r\n_\r\n*1\r\n#t\r\n")
			}
		})
		wg.Go(func() {
			for range 50 {
				converse(t, h.addr, "HGETALL h\r\nSMEMBERS set\r\nZSCORE z m\r\nGET missing\r\n",
					"*2\r\n$1\r\nf\r\n$1\r\nv\r\n*1\r\n$1\r\na\r\n$3\r\n1.5\r\n$-1\r\n")
			}
		})
	}
	wg.Wait()
	got := exchange(t, h.addr, "HELLO 3\r\nHGETALL h\r\nSMEMBERS set\r\nZSCORE z m\r\nGET missing\r\nINFO keyspace\r\nHELLO 2\r\nGET missing\r\n")
	for _, want := range []string{"%1\r\n$1\r\nf\r\n$1\r\nv\r\n~1\r\n$1\r\na\r\n,1.5\r\n_\r\n=", "txt:# Keyspace", "proto\r\n:2\r\n"} {
		if !strings.Contains(got, want) {
			t.Fatalf("RESP3 session %q lacks %q", got, want)
		}
	}
	if !strings.HasSuffix(got, "$-1\r\n") {
		t.Fatalf("after HELLO 2: %q", got)
	}
	// Pub/sub in RESP3: push messages.
	ps := c3.Subscribe(ctx, "ch")
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	c2.Publish(ctx, "ch", "hello")
	if m, err := ps.ReceiveMessage(ctx); err != nil || m.Payload != "hello" {
		t.Fatalf("RESP3 message: %v %v", m, err)
	}
	_ = ps.Close()
	if v := c2.HGetAll(ctx, "h").Val(); v["f"] != "v" {
		t.Fatalf("HGETALL via RESP2: %v", v)
	}
	h.converged(t)
	h.noDivergence(t)
}

// converseUntil is converse for replies whose start varies (HELLO's client id): it
// reads until the replies end with want.
func converseUntil(t testing.TB, addr, input, want string) {
	t.Helper()
	c := dialAndSend(t, addr, input)
	defer c.Close()
	var got []byte
	buf := make([]byte, 4096)
	for !strings.HasSuffix(string(got), want) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("after %q: got %q (%v), want it to end with %q", input, got, err, want)
		}
	}
}

// TestEvalshaAfterScriptCacheLoss: a backend whose script cache was emptied (here by
// SCRIPT FLUSH behind the gateway's back, as a restart empties it) gets every script
// clients sent through the gateway again when the gateway reconnects, before
// anything else, so the next EVALSHA runs there too: no NOSCRIPT, no lost write, the
// backend stays in sync. RO forms and functions work through the gateway.
func TestEvalshaAfterScriptCacheLoss(t *testing.T) {
	h := withRedis(t, 3)
	c := h.client(t, 0)
	const body = "redis.call('INCR', KEYS[1]); return redis.call('GET', KEYS[1])"
	sha, err := c.ScriptLoad(ctx, body).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EvalSha(ctx, sha, []string{"n"}).Err(); err != nil {
		t.Fatal(err)
	}
	b := h.backends[1].Client(0)
	b.ScriptFlush(ctx)
	b.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes")
	eventually(t, func() bool { return h.gw.Backends()[1].Connects >= 2 && h.gw.Backends()[1].Connected }, "reconnected")
	if v, err := c.EvalSha(ctx, sha, []string{"n"}).Result(); err != nil || fmt.Sprint(v) != "2" {
		t.Fatalf("EVALSHA after the cache loss: %v %v", v, err)
	}
	if v, err := c.EvalShaRO(ctx, sha, []string{"n"}).Result(); err == nil {
		t.Fatalf("EVALSHA_RO of a writing script: %v, want an error", v)
	}
	if v, err := c.EvalRO(ctx, "return redis.call('GET', KEYS[1])", []string{"n"}).Result(); err != nil || v != "2" {
		t.Fatalf("EVAL_RO: %v %v", v, err)
	}
	if err := c.FunctionLoad(ctx, "#!lua name=lib\nredis.register_function('bump', function(keys) return redis.call('INCR', keys[1]) end)\nredis.register_function{function_name='peek', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.FCall(ctx, "bump", []string{"n"}).Result(); err != nil || fmt.Sprint(v) != "3" {
		t.Fatalf("FCALL: %v %v", v, err)
	}
	if v, err := c.FCallRO(ctx, "peek", []string{"n"}).Result(); err != nil || v != "3" {
		t.Fatalf("FCALL_RO: %v %v", v, err)
	}
	if libs := c.FunctionList(ctx, redis.FunctionListQuery{}).Val(); len(libs) != 1 {
		t.Fatalf("FUNCTION LIST: %v", libs)
	}
	for i, st := range h.gw.Backends() {
		if st.OutOfSync || st.LostWrites != 0 {
			t.Fatalf("backend %d: out of sync %v (%s), lost writes %d", i, st.OutOfSync, st.OutOfSyncReason, st.LostWrites)
		}
	}
	h.eachBackend(t, 0, func(i int, b *redis.Client) {
		if v := b.Get(ctx, "n").Val(); v != "3" {
			t.Errorf("backend %d n = %q", i, v)
		}
	})
	h.converged(t)
}

// TestSelectedDatabaseCommands: MOVE and COPY ... DB n from a client that SELECTed a
// database behave as with Redis on every backend; OBJECT ENCODING/FREQ/IDLETIME and
// TYPE are reads; a multibulk count of zero or less is skipped.
func TestSelectedDatabaseCommands(t *testing.T) {
	h := withRedis(t, 2)
	c := h.client(t, 5)
	c.Set(ctx, "k", "v", 0)
	if ok := c.Move(ctx, "k", 7).Val(); !ok {
		t.Fatal("MOVE k 7 = false")
	}
	c.Set(ctx, "src", "s", 0)
	if ok, err := c.Copy(ctx, "src", "dst", 9, false).Result(); err != nil || ok != 1 {
		t.Fatalf("COPY src dst DB 9: %v %v", ok, err)
	}
	for i := range h.backends {
		if v := h.backends[i].Client(7).Get(ctx, "k").Val(); v != "v" {
			t.Errorf("backend %d db 7 k = %q", i, v)
		}
		if n := h.backends[i].Client(5).Exists(ctx, "k").Val(); n != 0 {
			t.Errorf("backend %d db 5 still has k", i)
		}
		if v := h.backends[i].Client(9).Get(ctx, "dst").Val(); v != "s" {
			t.Errorf("backend %d db 9 dst = %q", i, v)
		}
	}
	before := h.gw.Stats().CommandsOf(protocols.Read)
	if v := c.ObjectEncoding(ctx, "src").Val(); v != "embstr" {
		t.Fatalf("OBJECT ENCODING = %q", v)
	}
	c.ObjectIdleTime(ctx, "src")
	c.Type(ctx, "src")
	if n := h.gw.Stats().CommandsOf(protocols.Read) - before; n != 3 {
		t.Fatalf("%d reads counted for OBJECT ENCODING, OBJECT IDLETIME, TYPE; want 3", n)
	}
	converse(t, h.addr, "*-10\r\n*0\r\nPING\r\n", "+PONG\r\n")
	h.converged(t)
}

// dialAndSend connects to addr, with a 10 s deadline for the exchange, and writes input.
func dialAndSend(t testing.TB, addr, input string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, input); err != nil {
		_ = c.Close()
		t.Fatalf("write: %v", err)
	}
	return c
}
