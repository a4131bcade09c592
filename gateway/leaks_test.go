package gateway_test

import (
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("open descriptors are read from /proc (Linux): %v", err)
	}
	return len(entries)
}

// TestNoLeaksAfterChurn: after 1,000 client connections opened, used and closed, and
// 100 backend connections killed and re-established, the gateway's goroutines and
// file descriptors are back at their baseline.
func TestNoLeaksAfterChurn(t *testing.T) {
	// Every goroutine started from here on is gone once the gateway has stopped
	// (this cleanup runs last: cleanups run in reverse order).
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	// Connections that die young are retried after a backoff from
	// reconnect_delay_timeout: short here, so 100 reconnections take seconds.
	h := withRedis(t, 2, "reconnect_delay_timeout=10ms")
	c := h.client(t, 0)
	c.Set(ctx, "warm", "up", 0)
	settle := func() (int, int) {
		time.Sleep(200 * time.Millisecond)
		runtime.GC()
		return runtime.NumGoroutine(), openFDs(t)
	}
	direct := []*redis.Client{h.backends[0].Client(0), h.backends[1].Client(0)}
	for _, d := range direct {
		d.Ping(ctx)
	}
	g0, f0 := settle()
	for i := range 1000 {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 { // half of them send a command first
			_, _ = conn.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			_, _ = conn.Read(buf)
		}
		_ = conn.Close()
	}
	for i := range 100 {
		b := direct[i%2]
		before := h.gw.Backends()[i%2].Connects
		b.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes")
		eventually(t, func() bool {
			st := h.gw.Backends()[i%2]
			return st.Connects > before && st.Connected
		}, "backend reconnected")
	}
	if err := c.Set(ctx, "after", "churn", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var g1, f1 int
	deadline := time.Now().Add(10 * time.Second)
	for {
		g1, f1 = settle()
		if g1 <= g0+2 && f1 <= f0+2 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("goroutines %d -> %d, file descriptors %d -> %d after 1,000 clients and 100 backend reconnections", g0, g1, f0, f1)
	if g1 > g0+2 || f1 > f0+2 {
		t.Fatalf("leak: goroutines %d -> %d, fds %d -> %d", g0, g1, f0, f1)
	}
	h.converged(t)
}
