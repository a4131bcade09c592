package gateway_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/redis/go-redis/v9"
)

// harness is a gateway in front of real redis-server backends.
type harness struct {
	gw       *gateway.Gateway
	addr     string
	backends []*redisServer
	mc       []*testserver.Memcached // protocol=memcache backends
	logs     *testserver.Buffer
}

// startRedisBackends starts n redis-server processes.
func startRedisBackends(t testing.TB, n int) []*testserver.Redis {
	t.Helper()
	out := make([]*testserver.Redis, n)
	for i := range out {
		out[i] = testserver.StartRedis(t)
	}
	return out
}

// startGateway runs a gateway in front of addrs with settings changed by env
// ("key=value"), until the test ends.
func startGateway(t testing.TB, addrs []string, settings ...string) *harness {
	t.Helper()
	return startGatewayPartial(t, addrs, len(addrs), settings...)
}

// startGatewayPartial is startGateway waiting for only wantUp backends to connect.
func startGatewayPartial(t testing.TB, addrs []string, wantUp int, settings ...string) *harness {
	t.Helper()
	env := []string{"DYNODE_HOST=127.0.0.1", "DYNODE_PORT=0", "DYNODE_SERVERS=" + strings.Join(addrs, ","),
		"DYNODE_RECONNECT_DELAY_TIMEOUT=100ms", "DYNODE_CONNECT_TIMEOUT=1"}
	for _, s := range settings {
		k, v, _ := strings.Cut(s, "=")
		env = append(env, "DYNODE_"+strings.ToUpper(k)+"="+v)
	}
	cfg, err := configuration.Load(configuration.Sources{Environ: env})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testserver.Buffer{}
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatalf("gateway did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("gateway did not stop within 10s")
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	h := &harness{gw: g, addr: g.Addr().String(), logs: logs}
	if cfg.Protocol != "raw" { // raw mode connects per client, not at start
		waitUp(t, g, wantUp)
	}
	return h
}

// withRedis starts n backends and a gateway in front of them.
func withRedis(t testing.TB, n int, settings ...string) *harness {
	t.Helper()
	backends := startRedisBackends(t, n)
	addrs := make([]string, n)
	for i, b := range backends {
		addrs[i] = b.Addr
	}
	h := startGateway(t, addrs, settings...)
	h.backends = backends
	return h
}

// waitUp waits until want backends are connected.
func waitUp(t testing.TB, g *gateway.Gateway, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		up := 0
		for _, b := range g.Backends() {
			if b.Connected {
				up++
			}
		}
		if up >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d backends up after 10s: %+v", up, want, g.Backends())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client returns a go-redis client of the gateway (RESP2, as the gateway speaks).
func (h *harness) client(t testing.TB, db int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: h.addr, DB: db, Protocol: 2, PoolSize: 4})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// eachBackend runs f against a direct client of every backend.
func (h *harness) eachBackend(t testing.TB, db int, f func(i int, c *redis.Client)) {
	t.Helper()
	for i, b := range h.backends {
		f(i, b.Client(db))
	}
}

// converged waits until no backend has queued or in-flight commands, then checks
// DEBUG DIGEST is the same on every backend.
func (h *harness) converged(t testing.TB) {
	t.Helper()
	h.drained(t)
	first := h.backends[0].Digest(t)
	for i, b := range h.backends[1:] {
		if d := b.Digest(t); d != first {
			t.Fatalf("backend %d digest %s differs from backend 0 digest %s", i+1, d, first)
		}
	}
}

// drained waits until every backend has answered everything sent to it.
func (h *harness) drained(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		busy := false
		for _, b := range h.gw.Backends() {
			if b.Connected && (b.InFlight > 0 || b.QueuedBytes > 0) {
				busy = true
			}
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backends still busy after 15s: %+v", h.gw.Backends())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var ctx = context.Background()

type redisServer = testserver.Redis

var (
	freePort         = testserver.FreePort
	startRedisOnPort = testserver.StartRedisOnPort
)

// eventually polls cond for up to 10 s; what describes the awaited condition.
func eventually(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not true after 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runClients runs work concurrently for n go-redis clients of the gateway, each on
// its own connection, and fails the test with the first error any of them returns.
func runClients(t testing.TB, h *harness, n int, work func(w int, c *redis.Client) error) {
	t.Helper()
	runConcurrently(t, n, func(w int) error {
		c := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2, PoolSize: 1})
		defer c.Close()
		return work(w, c)
	})
}

// runConcurrently runs work(0..n-1) in n goroutines and fails the test with the
// first error any of them returns.
func runConcurrently(t testing.TB, n int, work func(w int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range n {
		wg.Go(func() {
			if err := work(w); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// noDivergence fails the test if any command got different replies from backends.
func (h *harness) noDivergence(t testing.TB) {
	t.Helper()
	if n := h.gw.Stats().Divergences.Load(); n != 0 {
		t.Fatalf("%d divergences", n)
	}
}
