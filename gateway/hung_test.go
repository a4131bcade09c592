package gateway_test

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHungPrimary: the primary hangs (SIGSTOP; its kernel still accepts TCP). With
// backend_timeout=1s, a GET waiting on it is answered by the other backend after
// about backend_timeout (retried there), the hung primary is never counted up while
// stopped (it does not answer the handshake), and the writes sent meanwhile are
// replayed when it continues. Hung again with a SET in flight, the SET is answered by
// the other backend, the primary is out of sync for it, and once continued it is
// resynced (auto_resync); every backend converges.
func TestHungPrimary(t *testing.T) {
	h := withRedis(t, 2, "backend_timeout=1")
	c := h.client(t, 0)
	c.Set(ctx, "k", "v1", 0)
	h.drained(t)
	if err := h.backends[0].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.backends[0].Signal(syscall.SIGCONT) }()

	start := time.Now()
	v, err := c.Get(ctx, "k").Result()
	took := time.Since(start)
	if err != nil || v != "v1" {
		t.Fatalf("GET with the primary hung: %q, %v", v, err)
	}
	t.Logf("GET answered by the other backend after %v (the old gateway took 6 s)", took.Round(time.Millisecond))
	if h.gw.Stats().ReadsRetried.Load() != 1 {
		t.Fatalf("reads retried: %d", h.gw.Stats().ReadsRetried.Load())
	}
	start = time.Now()
	if err := c.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Fatalf("SET with the primary hung: %v", err)
	}
	t.Logf("SET answered after %v", time.Since(start).Round(time.Millisecond))
	time.Sleep(1500 * time.Millisecond) // reconnection attempts meet a process that does not answer
	if st := h.gw.Backends()[0]; st.Connected {
		t.Fatalf("a stopped process counted as connected: %+v", st)
	}
	if v := c.Get(ctx, "k").Val(); v != "v2" {
		t.Fatalf("GET after SET: %q", v)
	}
	if err := h.backends[0].Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Only a read was in flight when it hung: nothing lost; the SET sent meanwhile
	// waited in its backlog and is replayed.
	eventually(t, func() bool { st := h.gw.Backends()[0]; return st.State == "up" && !st.OutOfSync }, "primary back")
	h.converged(t)

	// Hung with a write in flight: that write is lost there, so it is out of sync,
	// and resynced once it answers again.
	if err := h.backends[0].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := c.Set(ctx, "k", "v3", 0).Err(); err != nil {
		t.Fatalf("SET with the primary hung: %v", err)
	}
	t.Logf("SET in flight on the hung primary answered by the other backend after %v", time.Since(start).Round(time.Millisecond))
	if st := h.gw.Backends()[0]; !st.OutOfSync || st.LostWrites != 1 {
		t.Fatalf("primary hung with a write in flight: %+v", st)
	}
	if err := h.backends[0].Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		st := h.gw.Backends()[0]
		return st.State == "up" && !st.OutOfSync && st.Resync != nil && st.Resync.Step == "done"
	}, "primary back and resynced")
	c.Set(ctx, "after", "1", 0)
	h.converged(t)
}

// TestWriteReplyAllWithHungBackend: write_reply=all with one backend hung answers
// within about backend_timeout with an error saying how many backends answered.
func TestWriteReplyAllWithHungBackend(t *testing.T) {
	h := withRedis(t, 2, "backend_timeout=1", "write_reply=all", "auto_resync=false")
	c := h.client(t, 0)
	c.Set(ctx, "k", "v1", 0)
	h.drained(t)
	if err := h.backends[1].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.backends[1].Signal(syscall.SIGCONT) }()
	start := time.Now()
	err := c.Set(ctx, "k", "v2", 0).Err()
	if err == nil || !strings.Contains(err.Error(), "write_reply=all: 1 of 2 backends answered") {
		t.Fatalf("SET with write_reply=all and a backend hung: %v", err)
	}
	t.Logf("SET answered after %v", time.Since(start).Round(time.Millisecond))
	if v := c.Get(ctx, "k").Val(); v != "v2" { // the primary applied it
		t.Fatalf("GET: %q", v)
	}
}
