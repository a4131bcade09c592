package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/redis/go-redis/v9"
)

// restartEmpty stops backend i with SHUTDOWN NOSAVE and starts an empty redis-server
// on the same port, as the scenario does.
func (h *harness) restartEmpty(t testing.TB, i int) {
	t.Helper()
	port := h.backends[i].Port
	_ = h.backends[i].Client(0).Shutdown(ctx).Err() // SHUTDOWN (no save configured): the connection drops
	h.backends[i].Stop()
	eventually(t, func() bool { return !h.gw.Backends()[i].Connected }, "the gateway sees the backend down")
	h.backends[i] = startRedisOnPort(t, port)
}

// writeLoad runs 20 clients doing INCR, RPUSH and SET until stop closes and returns
// what they saw acknowledged: INCRs of "counter", and each worker's RPUSHed elements.
type writeLoad struct {
	incrs atomic.Int64
	mu    sync.Mutex
	lists map[string][]string
	wg    sync.WaitGroup
	stop  chan struct{}
}

func startWriteLoad(t testing.TB, h *harness, clients int) *writeLoad {
	l := &writeLoad{lists: map[string][]string{}, stop: make(chan struct{})}
	for w := range clients {
		l.wg.Go(func() {
			c := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2, PoolSize: 1, MaxRetries: -1})
			defer c.Close()
			list := fmt.Sprintf("list:%d", w)
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if c.Incr(ctx, "counter").Err() == nil {
					l.incrs.Add(1)
				}
				elem := strconv.Itoa(i)
				if c.RPush(ctx, list, elem).Err() == nil {
					l.mu.Lock()
					l.lists[list] = append(l.lists[list], elem)
					l.mu.Unlock()
				}
				c.Set(ctx, fmt.Sprintf("key:%d:%d", w, i%50), i, 0)
			}
		})
	}
	return l
}

func (l *writeLoad) finish() { close(l.stop); l.wg.Wait() }

// check verifies every acknowledged write is on every backend.
func (l *writeLoad) check(t testing.TB, h *harness) {
	t.Helper()
	h.eachBackend(t, 0, func(i int, c *redis.Client) {
		if n, _ := c.Get(ctx, "counter").Int64(); n != l.incrs.Load() {
			t.Errorf("backend %d: counter = %d, acknowledged INCRs = %d", i, n, l.incrs.Load())
		}
		for list, want := range l.lists {
			if got := c.LRange(ctx, list, 0, -1).Val(); !slices.Equal(got, want) {
				t.Errorf("backend %d: %s has %d elements, %d acknowledged", i, list, len(got), len(want))
			}
		}
	})
}

// withRedisUnderLoad starts the gateway in front of n redis-servers holding 100 keys,
// with 20 clients writing through it (startWriteLoad) for 200 ms already.
func withRedisUnderLoad(t *testing.T, n int) (*harness, *writeLoad) {
	h := withRedis(t, n)
	c := h.client(t, 0)
	for i := range 100 {
		c.Set(ctx, "k"+strconv.Itoa(i), i, 0)
	}
	h.drained(t)
	load := startWriteLoad(t, h, 20)
	time.Sleep(200 * time.Millisecond)
	return h, load
}

// TestResyncRestartedBackendUnderLoad is the scenario, under load: backend 2
// restarts empty while 20 clients write. The gateway sees a new process, flags it out
// of sync, resyncs it by itself (auto_resync) and joins it to the global order at an
// exact point: afterwards every backend has every acknowledged write, once.
func TestResyncRestartedBackendUnderLoad(t *testing.T) {
	h, load := withRedisUnderLoad(t, 3)
	h.restartEmpty(t, 2)

	seen := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := h.gw.Backends()[2]
		seen[st.State] = true
		if st.State == "up" && st.Resync != nil && st.Resync.Step == "done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend 2 not resynced after 30s: %+v (states seen %v)", st, seen)
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // writes after the resync reach all three
	load.finish()
	h.converged(t)
	load.check(t, h)
	if !seen["resyncing"] {
		t.Errorf("states seen for the restarted backend: %v, want resyncing among them", seen)
	}
	if n := h.backends[2].Client(0).DBSize(ctx).Val(); n < 100 {
		t.Fatalf("resynced backend has %d keys", n)
	}
	if role := h.backends[2].Client(0).Do(ctx, "ROLE").String(); !strings.Contains(role, "master") {
		t.Fatalf("resynced backend is left a replica: %s", role)
	}
	st := h.gw.Backends()[2]
	if st.OutOfSync || st.Resync.Source != h.backends[0].Addr || st.Resync.Error != "" {
		t.Fatalf("after the resync: %+v, resync %+v", st, *st.Resync)
	}
	t.Logf("resync: %+v; %d INCRs acknowledged during the test", *st.Resync, load.incrs.Load())
	if !strings.Contains(h.logs.String(), "backend resync done") {
		t.Fatal("no resync in the log")
	}
}

// TestResyncByAdmin: with auto_resync=false a restarted backend stays out of sync
// until POST /backends/{addr}/resync; a second request while it runs is refused
// (409), an unknown backend is 404.
func TestResyncByAdmin(t *testing.T) {
	admin := freePort(t)
	h := withRedis(t, 2, "auto_resync=false", "admin_port="+strconv.Itoa(admin))
	c := h.client(t, 0)
	for i := range 1000 {
		c.Set(ctx, "k"+strconv.Itoa(i), strings.Repeat("v", 100), 0)
	}
	h.drained(t)
	h.restartEmpty(t, 1)
	waitUp(t, h.gw, 2)
	time.Sleep(1500 * time.Millisecond) // auto_resync=false: nothing starts by itself
	if st := h.gw.Backends()[1]; st.State != "out_of_sync" || st.Resync != nil {
		t.Fatalf("restarted backend with auto_resync=false: %+v", st)
	}
	post := func(addr string) (int, map[string]string) {
		resp, err := http.Post("http://"+h.gw.AdminAddr().String()+"/backends/"+addr+"/resync", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]string
		raw, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatalf("reply %q: %v", raw, err)
		}
		return resp.StatusCode, body
	}
	if code, body := post("127.0.0.1:1"); code != 404 || !strings.Contains(body["error"], "no such backend") {
		t.Fatalf("unknown backend: %d %v", code, body)
	}
	if code, body := post(h.backends[1].Addr); code != 202 || body["status"] != "started" {
		t.Fatalf("resync: %d %v", code, body)
	}
	if code, body := post(h.backends[1].Addr); code != 409 || !strings.Contains(body["error"], "already running") {
		t.Fatalf("second resync while one runs: %d %v", code, body)
	}
	eventually(t, func() bool { st := h.gw.Backends()[1]; return st.State == "up" && st.Resync.Step == "done" }, "resync done")
	c.Set(ctx, "after", "1", 0)
	h.converged(t)
	if code, body := post(h.backends[0].Addr); code != 202 { // a forced resync of the primary from backend 1
		t.Fatalf("resync of an in-sync backend: %d %v", code, body)
	}
	eventually(t, func() bool { st := h.gw.Backends()[0]; return st.Resync != nil && st.Resync.Step == "done" }, "second resync done")
	if st := h.gw.Backends()[0]; st.State != "up" || st.Resync.Source != h.backends[1].Addr {
		t.Fatalf("forced resync: %+v %+v", st, *st.Resync)
	}
	c.Set(ctx, "after2", "1", 0)
	h.converged(t)
	if err := h.gw.Resync("nope:1"); err == nil || !strings.Contains(err.Error(), "no such backend") {
		t.Fatalf("Resync of an unknown backend: %v", err)
	}
}

// TestResyncMemcachedFlushAndWarm: a memcached resync flushes the backend at a point
// of the global order (what it held before is gone, what clients write after is
// there), then it warms for warm_seconds: reads avoid it meanwhile.
func TestResyncMemcachedFlushAndWarm(t *testing.T) {
	h := withMemcached(t, 2, "read_from=any", "auto_resync=false", "warm_seconds=2")
	c := h.mcClient()
	for i := range 20 {
		if err := c.Set(&memcache.Item{Key: "k" + strconv.Itoa(i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	h.drained(t)
	h.restartMemcachedEmpty(t, 1)
	if _, err := h.mc[1].Command("set stale 0 0 1\r\nx"); err != nil { // data the others do not have
		t.Fatal(err)
	}
	waitUp(t, h.gw, 2)
	if st := h.gw.Backends()[1]; st.State != "out_of_sync" {
		t.Fatalf("restarted memcached: %+v", st)
	}
	if err := h.gw.Resync(h.mc[1].Addr); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return h.gw.Backends()[1].State == "warming" }, "warming")
	if err := c.Set(&memcache.Item{Key: "new", Value: []byte("n")}); err != nil {
		t.Fatal(err)
	}
	h.drained(t)
	if got, _ := h.mc[1].Command("get stale"); strings.TrimSpace(got) != "END" {
		t.Fatalf("stale item after the flush: %q", got)
	}
	if got, _ := h.mc[1].Command("get new"); !strings.HasPrefix(got, "VALUE new") {
		t.Fatalf("item written after the flush: %q", got)
	}
	for i := range 20 { // read_from=any: never the warming backend
		if _, err := c.Get("k" + strconv.Itoa(i)); err != nil {
			t.Fatalf("get k%d while backend 1 warms: %v", i, err)
		}
	}
	eventually(t, func() bool { return h.gw.Backends()[1].State == "up" }, "warmed up after warm_seconds")
	if st := h.gw.Backends()[1]; st.OutOfSync || st.Resync.Step != "done" {
		t.Fatalf("after warming: %+v", st)
	}
}

var _ = gateway.ErrResyncRunning

// TestResyncThroughGateway: with resync_via=gateway (what auto falls back to when a
// backend cannot reach the source), the restarted backend replicates from the source
// through a relay in the gateway, under write load, and ends exactly in sync.
func TestResyncThroughGateway(t *testing.T) {
	h := withRedis(t, 2, "resync_via=gateway")
	c := h.client(t, 0)
	for i := range 200 {
		c.Set(ctx, "k"+strconv.Itoa(i), i, 0)
	}
	h.drained(t)
	load := startWriteLoad(t, h, 10)
	h.restartEmpty(t, 1)
	eventually(t, func() bool {
		st := h.gw.Backends()[1]
		return st.State == "up" && st.Resync != nil && st.Resync.Step == "done"
	}, "resynced")
	load.finish()
	h.converged(t)
	load.check(t, h)
	if st := h.gw.Backends()[1]; st.Resync.Via != "gateway" || !strings.Contains(h.logs.String(), "a replica connected through the gateway") {
		t.Fatalf("resync not through the relay: %+v", *st.Resync)
	}
}

// TestEvalshaAfterResync: scripts are not in a Redis snapshot, so a backend rebuilt
// by a resync has none; the gateway loads the scripts clients sent before the
// backend rejoins, and EVALSHA keeps working on it (no NOSCRIPT, no new out of sync).
func TestEvalshaAfterResync(t *testing.T) {
	h := withRedis(t, 2)
	c := h.client(t, 0)
	sha, err := c.ScriptLoad(ctx, "return redis.call('INCR', KEYS[1])").Result()
	if err != nil {
		t.Fatal(err)
	}
	c.Eval(ctx, "return redis.call('SET', KEYS[1], ARGV[1])", []string{"e"}, "1")
	c.EvalSha(ctx, sha, []string{"n"})
	h.drained(t)
	h.restartEmpty(t, 1)
	eventually(t, func() bool {
		st := h.gw.Backends()[1]
		return st.State == "up" && st.Resync != nil && st.Resync.Step == "done"
	}, "resynced")
	if n, err := c.EvalSha(ctx, sha, []string{"n"}).Int(); err != nil || n != 2 {
		t.Fatalf("EVALSHA after the resync: %d %v", n, err)
	}
	if n, _ := h.backends[1].Client(0).ScriptExists(ctx, sha).Result(); len(n) != 1 || !n[0] {
		t.Fatal("the resynced backend lacks the script")
	}
	h.converged(t)
	if st := h.gw.Backends()[1]; st.OutOfSync || h.gw.Stats().OutOfSyncEvents.Load() != 1 {
		t.Fatalf("after EVALSHA on the resynced backend: %+v (out-of-sync events %d)", st, h.gw.Stats().OutOfSyncEvents.Load())
	}
}

// TestConcurrentResyncsOneSource restarts three backends empty under load, so their
// resyncs from the one source start together. Each switch pauses the source (CLIENT
// PAUSE WRITE, one pause for the whole server), so the switches take turns
// (backend.switching). Every backend must end in sync with every acknowledged write
// exactly once. (TestResyncSwitchesTakeTurns replays the race the turns prevent:
// this test, under load, did not reproduce it without them.)
func TestConcurrentResyncsOneSource(t *testing.T) {
	h, load := withRedisUnderLoad(t, 4)
	for i := 1; i <= 3; i++ {
		h.restartEmpty(t, i)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		done := 0
		for _, st := range h.gw.Backends()[1:] {
			if st.State == "up" && !st.OutOfSync && st.Resync != nil && st.Resync.Step == "done" {
				done++
			}
		}
		if done == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backends not all resynced after 60s: %+v", h.gw.Backends())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // writes after the resyncs reach all four
	load.finish()
	h.converged(t)
	load.check(t, h)
	t.Logf("%d INCRs acknowledged; switch failures logged: %d", load.incrs.Load(),
		strings.Count(h.logs.String(), "passed the switch point"))
}

// TestResyncSwitchesTakeTurns replays the race TestConcurrentResyncsOneSource only
// makes likely. A switch pauses the source with CLIENT PAUSE WRITE, the whole
// server's pause, and reads the source's replication offset as its switch point.
// Backend 1 answers through 250 ms of latency each way, so its switch (a few round
// trips to it while the source is paused) lasts over a second. Backend 2's resync is
// asked for once backend 1's switch has begun, with no write in between: its pause
// follows backend 1's in the source's stream, and it is quick. Were the switches not
// to take turns (backend.switching), backend 2's CLIENT UNPAUSE would end backend 1's
// pause too; the writes that follow would reach backend 1 by replication while it
// still follows the source, and again as its held writes. Both resyncs must succeed
// at their first attempt, and every backend must hold each acknowledged INCR once.
func TestResyncSwitchesTakeTurns(t *testing.T) {
	backends := startRedisBackends(t, 3)
	far := testserver.StartProxy(t, backends[1].Addr)
	h := startGateway(t, []string{backends[0].Addr, far.Addr, backends[2].Addr}, "auto_resync=false", "connect_timeout=5")
	h.backends = backends
	c := h.client(t, 0)
	for i := range 100 {
		c.Set(ctx, "k"+strconv.Itoa(i), i, 0)
	}
	h.drained(t)
	for _, stream := range []string{"upstream", "downstream"} {
		far.AddToxic(fmt.Sprintf(`{"name":%q,"type":"latency","stream":%q,"attributes":{"latency":250}}`, stream, stream))
	}
	step := func(i int) string {
		if p := h.gw.Backends()[i].Resync; p != nil {
			return p.Step
		}
		return ""
	}
	waitStep := func(i int, want ...string) {
		deadline := time.Now().Add(30 * time.Second)
		for !slices.Contains(want, step(i)) {
			if time.Now().After(deadline) {
				t.Fatalf("backend %d: resync step %v not reached after 30s: %+v", i, want, h.gw.Backends()[i])
			}
			time.Sleep(time.Millisecond)
		}
	}

	if err := h.gw.Resync(far.Addr); err != nil {
		t.Fatal(err)
	}
	waitStep(1, "switching", "done", "failed")
	if s := step(1); s != "switching" {
		t.Fatalf("backend 1's resync ended (%s) before backend 2's began", s)
	}
	if err := h.gw.Resync(backends[2].Addr); err != nil {
		t.Fatal(err)
	}
	// Backend 2's resync is over (without turns), or waits for backend 1's switch.
	waitStep(2, "switching", "done", "failed")
	const incrs = 20
	for range incrs {
		if err := c.Incr(ctx, "counter").Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitStep(1, "done", "failed")
	waitStep(2, "done", "failed")
	for _, stream := range []string{"upstream", "downstream"} {
		far.RemoveToxic(stream)
	}
	for i := 1; i <= 2; i++ {
		if st := h.gw.Backends()[i]; st.State != "up" || st.OutOfSync || st.Resync.Error != "" {
			t.Errorf("backend %d after its resync: %+v, resync %+v", i, st, *st.Resync)
		}
	}
	h.eachBackend(t, 0, func(i int, c *redis.Client) {
		if n, _ := c.Get(ctx, "counter").Int(); n != incrs {
			t.Errorf("backend %d: counter = %d after %d acknowledged INCRs", i, n, incrs)
		}
	})
	h.converged(t)
}

// farTarget starts a gateway in front of two redis-servers, backend 1 behind a
// toxiproxy with ms of latency each way, and one client writing through it
// (startWriteLoad).
func farTarget(t *testing.T, ms int) (*harness, *slowLink, *writeLoad) {
	backends := startRedisBackends(t, 2)
	far := &slowLink{Proxy: testserver.StartProxy(t, backends[1].Addr)}
	far.setLatency(ms)
	h := startGateway(t, []string{backends[0].Addr, far.Addr}, "auto_resync=false", "connect_timeout=10")
	h.backends = backends
	return h, far, startWriteLoad(t, h, 1)
}

// slowLink is a toxiproxy whose latency the test changes.
type slowLink struct {
	*testserver.Proxy
	ms int // latency each way now
}

// setLatency gives the link ms of latency each way (0: none).
func (l *slowLink) setLatency(ms int) {
	for _, stream := range []string{"upstream", "downstream"} {
		if l.ms > 0 {
			l.RemoveToxic(stream)
		}
		if ms > 0 {
			l.AddToxic(fmt.Sprintf(`{"name":%q,"type":"latency","stream":%q,"attributes":{"latency":%d}}`, stream, stream, ms))
		}
	}
	l.ms = ms
}

// resyncEnded waits until backend i's resync is done or failed and returns it.
func resyncEnded(t *testing.T, h *harness, i int) gateway.ResyncProgress {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p := h.gw.Backends()[i].Resync; p != nil && (p.Step == "done" || p.Step == "failed") {
			return *p
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d: resync not over after 30s: %+v", i, h.gw.Backends()[i])
		}
		time.Sleep(time.Millisecond)
	}
}

// sourceSpared checks that backend 0, a resync's source, kept its connection and
// every acknowledged write through it.
func sourceSpared(t *testing.T, h *harness, acked int64) {
	t.Helper()
	if st := h.gw.Backends()[0]; st.State != "up" || st.OutOfSync || st.Connects != 1 || st.LostWrites != 0 {
		t.Errorf("the source after the failed resync: %+v", st)
	}
	if n, _ := h.backends[0].Client(0).Get(ctx, "counter").Int64(); n != acked {
		t.Errorf("the source's counter = %d, acknowledged INCRs = %d", n, acked)
	}
}

// pauses is how many CLIENT PAUSE backend 0 has run.
func pauses(t *testing.T, h *harness) int {
	t.Helper()
	stats, err := h.backends[0].Client(0).Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	_, after, found := strings.Cut(stats, "cmdstat_client|pause:calls=")
	if !found {
		return 0
	}
	n, _ := strconv.Atoi(after[:strings.IndexByte(after, ',')])
	return n
}

// TestSwitchTooFarIsRefused: a target 1.1 s away (a round trip) cannot be switched
// within the source's 2 s pause (it takes two round trips or more), so the resync
// fails before it pauses the source, and says why.
func TestSwitchTooFarIsRefused(t *testing.T) {
	h, _, load := farTarget(t, 550)
	if err := h.gw.Resync(h.gw.Backends()[1].Addr); err != nil {
		t.Fatal(err)
	}
	p := resyncEnded(t, h, 1)
	load.finish()
	if p.Step != "failed" || !strings.Contains(p.Error, "too long for a switch") {
		t.Fatalf("resync of a far backend: %+v", p)
	}
	if n := pauses(t, h); n != 0 {
		t.Errorf("the source got %d CLIENT PAUSE", n)
	}
	h.drained(t)
	sourceSpared(t, h, load.incrs.Load())
}

// TestFailedSwitchSparesTheSource: the link to the target slows to 1.2 s each way
// once its switch has paused the source, so the switch fails after the pause. The
// source's writes waited on the gateway's own CLIENT PAUSE, not on a hung server: it
// must keep its connection and stay in sync (before, backend_timeout reset it, and
// the write in flight made it out of sync too), and it is unpaused first.
func TestFailedSwitchSparesTheSource(t *testing.T) {
	h, far, load := farTarget(t, 100)
	if err := h.gw.Resync(h.gw.Backends()[1].Addr); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p := h.gw.Backends()[1].Resync; p != nil && p.Step != "draining" && p.Step != "copying" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no switch after 30s: %+v", h.gw.Backends()[1])
		}
		time.Sleep(time.Millisecond)
	}
	far.setLatency(1200)
	p := resyncEnded(t, h, 1)
	load.finish()
	far.setLatency(0)
	if p.Step != "failed" || pauses(t, h) != 1 {
		t.Fatalf("the switch did not fail after pausing the source (the test's premise): %+v, %d CLIENT PAUSE", p, pauses(t, h))
	}
	h.drained(t)
	sourceSpared(t, h, load.incrs.Load())
	t.Logf("resync: %+v; %d INCRs acknowledged", p, load.incrs.Load())
}
