package gateway_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/redis/go-redis/v9"
)

// TestChaos writes continuously from 20 clients (INCR, RPUSH, SET, MULTI blocks)
// through a gateway in front of 3 redis-servers, each behind a toxiproxy, while
// faults hit one backend at a time, chosen at random: SIGKILL and restart empty,
// SHUTDOWN NOSAVE and restart, SIGSTOP then SIGCONT, the proxy down then up, a
// reset_peer, a timeout toxic (a link that carries nothing: a partition), latency,
// a bandwidth limit. After each fault the test waits for every
// backend to be back in sync (resyncs run by themselves). At the end every backend
// is in sync, DEBUG DIGEST is equal on all, and every write a client saw
// acknowledged is there: the counter equals the acknowledged INCRs (plus at most the
// INCRs that got an error, whose fate a client cannot know), every acknowledged
// RPUSH element is in its list in order, and every MULTI block is whole.
//
// CHAOS_SECONDS sets the duration (default 8: the CI run), CHAOS_SEED the seed.
// bench/CHAOS.md records a 60 s run.
func TestChaos(t *testing.T) {
	seconds := 8
	if v, err := strconv.Atoi(os.Getenv("CHAOS_SECONDS")); err == nil && v > 0 {
		seconds = v
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("CHAOS_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("chaos: %d s, seed %d (CHAOS_SEED to repeat)", seconds, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	backends := startRedisBackends(t, 3)
	proxies := make([]*testserver.Proxy, 3)
	addrs := make([]string, 3)
	for i, b := range backends {
		proxies[i] = testserver.StartProxy(t, b.Addr)
		addrs[i] = proxies[i].Addr
	}
	// A small memory part of each queue: a backend that falls behind spills (spill.go).
	h := startGateway(t, addrs, "backend_timeout=1", "backlog_dir="+t.TempDir(), "backlog_memory_bytes=65536")
	h.backends = backends

	var (
		stop                  = make(chan struct{})
		wg                    sync.WaitGroup
		incrAcked, incrFailed atomic.Int64
		mu                    sync.Mutex
		lists                 = map[string][]string{}
		listFailed            = map[string]map[string]bool{}
		txAcked               atomic.Int64
		txFailed              atomic.Int64
	)
	for w := range 20 {
		wg.Go(func() {
			c := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2, PoolSize: 1, MaxRetries: -1, ReadTimeout: 10 * time.Second})
			defer c.Close()
			list := "list:" + strconv.Itoa(w)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if c.Incr(ctx, "counter").Err() == nil {
					incrAcked.Add(1)
				} else {
					incrFailed.Add(1)
				}
				elem := strconv.Itoa(i)
				err := c.RPush(ctx, list, elem).Err()
				mu.Lock()
				if err == nil {
					lists[list] = append(lists[list], elem)
				} else {
					if listFailed[list] == nil {
						listFailed[list] = map[string]bool{}
					}
					listFailed[list][elem] = true
				}
				mu.Unlock()
				c.Set(ctx, fmt.Sprintf("key:%d:%d", w, i%100), i, 0)
				if i%10 == 0 {
					_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
						p.Incr(ctx, "tx:counter")
						p.RPush(ctx, "tx:list", fmt.Sprintf("%d:%d", w, i))
						return nil
					})
					if err == nil {
						txAcked.Add(1)
					} else {
						txFailed.Add(1)
					}
				}
			}
		})
	}

	allInSync := func(within time.Duration) bool {
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			ok := true
			for _, st := range h.gw.Backends() {
				ok = ok && st.State == "up"
			}
			if ok {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	}
	restartEmpty := func(i int, how string) {
		port := backends[i].Port
		if how == "shutdown" {
			_ = backends[i].Client(0).Do(ctx, "SHUTDOWN", "NOSAVE").Err()
		}
		backends[i].Stop()
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		backends[i] = startRedisOnPort(t, port)
	}
	faults := map[string]int{}
	end := time.Now().Add(time.Duration(seconds) * time.Second)
	time.Sleep(300 * time.Millisecond)
	for time.Now().Before(end) {
		i := rng.IntN(3)
		kinds := []string{"kill", "shutdown", "stop", "proxy-down", "reset", "timeout", "latency", "bandwidth"}
		kind := kinds[rng.IntN(len(kinds))]
		faults[kind]++
		pause := time.Duration(200+rng.IntN(1300)) * time.Millisecond
		switch kind {
		case "kill", "shutdown":
			restartEmpty(i, kind)
		case "stop":
			_ = backends[i].Signal(syscall.SIGSTOP)
			time.Sleep(pause)
			_ = backends[i].Signal(syscall.SIGCONT)
		case "proxy-down":
			proxies[i].Down()
			time.Sleep(pause)
			proxies[i].Up()
		case "reset":
			proxies[i].AddToxic(`{"name":"reset","type":"reset_peer","attributes":{"timeout":0}}`)
			time.Sleep(50 * time.Millisecond)
			proxies[i].RemoveToxic("reset")
		case "timeout": // the link stops carrying data, both ways, as in a partition
			proxies[i].AddToxic(`{"name":"part","type":"timeout","stream":"upstream","attributes":{"timeout":0}}`)
			proxies[i].AddToxic(`{"name":"part2","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`)
			time.Sleep(pause)
			proxies[i].RemoveToxic("part")
			proxies[i].RemoveToxic("part2")
		case "latency":
			proxies[i].AddToxic(`{"name":"lat","type":"latency","attributes":{"latency":50,"jitter":20}}`)
			time.Sleep(pause)
			proxies[i].RemoveToxic("lat")
		case "bandwidth":
			proxies[i].AddToxic(`{"name":"bw","type":"bandwidth","stream":"downstream","attributes":{"rate":64}}`)
			time.Sleep(pause)
			proxies[i].RemoveToxic("bw")
		}
		if !allInSync(30 * time.Second) {
			close(stop)
			wg.Wait()
			t.Fatalf("after fault %s on backend %d: not all backends in sync after 30s: %+v", kind, i, h.gw.Backends())
		}
	}
	close(stop)
	wg.Wait()
	if !allInSync(30 * time.Second) {
		t.Fatalf("backends not in sync at the end: %+v", h.gw.Backends())
	}
	h.converged(t)

	var problems []string
	h.eachBackend(t, 0, func(i int, c *redis.Client) {
		n, _ := c.Get(ctx, "counter").Int64()
		if n < incrAcked.Load() || n > incrAcked.Load()+incrFailed.Load() {
			problems = append(problems, fmt.Sprintf("backend %d: counter %d, acknowledged INCRs %d (+%d failed)", i, n, incrAcked.Load(), incrFailed.Load()))
		}
		for list, want := range lists {
			got := c.LRange(ctx, list, 0, -1).Val()
			got = slices.DeleteFunc(got, func(e string) bool { return listFailed[list][e] })
			if !slices.Equal(got, want) {
				problems = append(problems, fmt.Sprintf("backend %d: %s has %d acknowledged elements of %d, or out of order", i, list, len(got), len(want)))
			}
		}
		txn, _ := c.Get(ctx, "tx:counter").Int64()
		txl := c.LLen(ctx, "tx:list").Val()
		if txn != txl || txn < txAcked.Load() || txn > txAcked.Load()+txFailed.Load() {
			problems = append(problems, fmt.Sprintf("backend %d: MULTI blocks: counter %d, list %d, acknowledged %d (+%d failed)", i, txn, txl, txAcked.Load(), txFailed.Load()))
		}
	})
	resyncs := h.gw.Stats().ResyncsStarted.Load()
	t.Logf("chaos result: faults %v; spills %d; resyncs %d (failed %d); INCRs acknowledged %d, failed %d; MULTI blocks acknowledged %d, failed %d; out-of-sync events %d",
		faults, h.gw.Stats().Spills.Load(), resyncs, h.gw.Stats().ResyncsFailed.Load(), incrAcked.Load(), incrFailed.Load(), txAcked.Load(), txFailed.Load(), h.gw.Stats().OutOfSyncEvents.Load())
	for _, p := range problems {
		t.Error(p)
	}
}
