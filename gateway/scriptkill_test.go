package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/internal/testserver"
)

// TestScriptKill: a client runs EVAL "while true do end" 0 through the gateway; every
// backend is busy. With backend_timeout=1 the gateway sees no progress but finds the
// backends alive and busy (-BUSY), so it resets nothing. SCRIPT KILL from another
// client reaches every backend on a side connection: the EVAL ends with the same
// error everywhere, writes flow again, and no backend is out of sync.
func TestScriptKill(t *testing.T) {
	var addrs []string
	var backends []*redisServer
	for range 2 {
		r := testserver.StartRedisWith(t, freePort(t), t.TempDir(), "--busy-reply-threshold", "200")
		backends = append(backends, r)
		addrs = append(addrs, r.Addr)
	}
	h := startGateway(t, addrs, "backend_timeout=1")
	h.backends = backends
	looping := h.client(t, 0)
	done := make(chan error, 1)
	go func() { done <- looping.Eval(ctx, "while true do end", nil).Err() }()
	time.Sleep(2500 * time.Millisecond) // past backend_timeout twice: the backends must not be reset
	killer := h.client(t, 0)
	if err := killer.ScriptKill(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT KILL: %v", err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("EVAL after SCRIPT KILL: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("EVAL still running 10 s after SCRIPT KILL")
	}
	if err := killer.Set(ctx, "after", "1", 0).Err(); err != nil {
		t.Fatalf("SET after the kill: %v", err)
	}
	for _, st := range h.gw.Backends() {
		if st.OutOfSync || st.Connects != 1 {
			t.Fatalf("after a killed script: %+v", st)
		}
	}
	if err := killer.ScriptKill(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOTBUSY") {
		t.Fatalf("SCRIPT KILL with nothing running: %v", err)
	}
	h.converged(t)
	h.noDivergence(t)
}
