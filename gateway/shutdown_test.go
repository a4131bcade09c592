package gateway_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/dynode/dynode-broadcaster/internal/testserver"
)

// TestGracefulShutdown: the gateway is stopped (as SIGTERM does) during write load
// while one backend hangs (SIGSTOP), so writes are queued for it. The gateway stops
// accepting, answers what clients sent, delivers every queued write once the backend
// resumes, and returns without error: every write a client saw acknowledged is on
// both backends.
func TestGracefulShutdown(t *testing.T) {
	backends := startRedisBackends(t, 2)
	cfg, err := configuration.Load(configuration.Sources{Environ: []string{
		"DYNODE_HOST=127.0.0.1", "DYNODE_PORT=0", "DYNODE_SERVERS=" + backends[0].Addr + "," + backends[1].Addr,
		"DYNODE_SHUTDOWN_TIMEOUT=10", "DYNODE_BACKEND_TIMEOUT=30"}}) // the stop must not count as a hang
	if err != nil {
		t.Fatal(err)
	}
	logs := &testserver.Buffer{}
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- g.Run(runCtx) }()
	<-g.Ready()
	waitUp(t, g, 2)
	h := &harness{gw: g, addr: g.Addr().String(), backends: backends, logs: logs}
	defer func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	}()

	load := startWriteLoad(t, h, 20)
	// Large values fill the stopped backend's socket buffers, so writes wait in the
	// gateway's own queue, not only in the kernel's.
	big := h.client(t, 0)
	var bigAcked atomic.Int64
	bigDone := make(chan struct{})
	go func() {
		defer close(bigDone)
		v := strings.Repeat("x", 256<<10)
		for i := 0; big.Set(context.Background(), "big:"+strconv.Itoa(i), v, 0).Err() == nil; i++ {
			bigAcked.Add(1)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if err := backends[1].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return g.Backends()[1].QueuedBytes > 0 }, "writes queue up in the gateway for the stopped backend")
	queued := g.Backends()[1]
	stop()                             // what SIGTERM does in main
	time.Sleep(300 * time.Millisecond) // the gateway waits for it
	if err := backends[1].Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the gateway did not stop within shutdown_timeout")
	}
	load.finish()
	<-bigDone
	if queued.QueuedBytes == 0 {
		t.Fatalf("nothing waited in the gateway's queue for the stopped backend: %+v", queued)
	}
	for i, b := range backends {
		if n := b.Client(0).Keys(context.Background(), "big:*").Val(); int64(len(n)) < bigAcked.Load() {
			t.Errorf("backend %d has %d large values, %d acknowledged", i, len(n), bigAcked.Load())
		}
	}
	load.check(t, h)
	if d0, d1 := backends[0].Digest(t), backends[1].Digest(t); d0 != d1 {
		t.Fatalf("digests differ after shutdown: %s %s", d0, d1)
	}
	if strings.Contains(logs.String(), "are lost") || !strings.Contains(logs.String(), "shutdown complete") {
		t.Fatal("shutdown log")
	}
	t.Logf("%d INCRs acknowledged; %d bytes and %d commands were queued for the stopped backend", load.incrs.Load(), queued.QueuedBytes, queued.InFlight)
}
