package gateway_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/redis/go-redis/v9"
)

// setLoad runs 10 clients SETting 1 KiB values for d and returns how many SETs were
// acknowledged.
func setLoad(t testing.TB, h *harness, d time.Duration) int64 {
	var n atomic.Int64
	v := strings.Repeat("v", 1024)
	end := time.Now().Add(d)
	runClients(t, h, 10, func(w int, c *redis.Client) error {
		for i := 0; time.Now().Before(end); i++ {
			if err := c.Set(ctx, "k:"+strconv.Itoa(w)+":"+strconv.Itoa(i%1000), v, 0).Err(); err != nil {
				return err
			}
			n.Add(1)
		}
		return nil
	})
	return n.Load()
}

// TestSlowBackend: one of three backends is slowed to 256 KB/s (a toxiproxy
// bandwidth toxic on what the gateway sends it) while 10 clients write. The others
// and the clients go on (write_reply=primary): the slow one's lag in commands and
// bytes shows in /backends while it falls behind, and once the toxic is removed it
// catches up and every backend converges, in sync. The clients' rate with and
// without the toxic is logged (bench/RESULTS.md records it; no timing assertion).
func TestSlowBackend(t *testing.T) {
	backends := startRedisBackends(t, 3)
	proxy := testserver.StartProxy(t, backends[2].Addr)
	h := startGateway(t, []string{backends[0].Addr, backends[1].Addr, proxy.Addr})
	h.backends = backends
	base := setLoad(t, h, 2*time.Second)
	h.drained(t)

	proxy.AddToxic(`{"name":"slow","type":"bandwidth","stream":"upstream","attributes":{"rate":256}}`)
	var maxLag, maxBytes int64
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			st := h.gw.Backends()[2]
			maxLag, maxBytes = max(maxLag, st.LagCommands), max(maxBytes, st.QueuedBytes)
		}
	}()
	slowed := setLoad(t, h, 2*time.Second)
	close(stop)
	<-watched
	proxy.RemoveToxic("slow")
	t.Logf("SETs in 2 s: %d without the toxic, %d with one backend at 256 KB/s (%.2fx); the slow backend's lag peaked at %d commands, %d bytes queued",
		base, slowed, float64(slowed)/float64(base), maxLag, maxBytes)
	if maxLag == 0 || maxBytes == 0 {
		t.Fatalf("no lag seen for the slow backend: %d commands, %d bytes", maxLag, maxBytes)
	}
	h.converged(t)
	for _, st := range h.gw.Backends() {
		if st.State != "up" || st.OutOfSync {
			t.Fatalf("after the toxic: %+v", st)
		}
	}
}

// TestSlowBackendSpills: with backlog_dir and backlog_memory_bytes=64 KiB, a backend
// that stops taking data (SIGSTOP, so the kernel's buffers fill; backend_timeout is
// long enough not to call it hung) keeps only that much of its queue in memory: the
// rest goes to its spill file, in order, effects (INCRBYFLOAT) included, and it is
// "behind": reads (read_from=any) avoid it. Once it continues it reads the spill
// back, catches up, and every backend converges, in sync, the spill file emptied.
func TestSlowBackendSpills(t *testing.T) {
	backends := startRedisBackends(t, 3)
	dir := t.TempDir()
	h := startGateway(t, []string{backends[0].Addr, backends[1].Addr, backends[2].Addr},
		"backlog_dir="+dir, "backlog_memory_bytes=65536", "read_from=any", "backend_timeout=60")
	h.backends = backends
	spill := filepath.Join(dir, "backlog-"+strings.ReplaceAll(backends[2].Addr, ":", "_")+".spill")
	load := startWriteLoad(t, h, 10)
	stopBig := make(chan struct{})
	bigDone := make(chan struct{})
	go func() {
		defer close(bigDone)
		c := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2, PoolSize: 1})
		defer c.Close()
		big := strings.Repeat("x", 16<<10) // fills the stopped server's socket buffers fast
		for i := 0; ; i++ {
			select {
			case <-stopBig:
				return
			default:
			}
			c.Set(ctx, "big:"+strconv.Itoa(i%200), big, 0)
			c.IncrByFloat(ctx, "float", 0.5) // by effect: the stopped backend gets SET of the result
		}
	}()
	if err := backends[2].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = backends[2].Signal(syscall.SIGCONT) }()
	for deadline := time.Now().Add(60 * time.Second); h.gw.Backends()[2].State != "behind"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the stopped backend does not spill after 60s: %+v", h.gw.Backends()[2])
		}
	}
	c := h.client(t, 0)
	for i := range 100 { // never read from the backend that is behind
		if err := c.Get(ctx, "big:"+strconv.Itoa(i)).Err(); err != nil && err != redis.Nil {
			t.Fatalf("read while a backend is behind: %v; backends %+v", err, h.gw.Backends())
		}
	}
	eventually(t, func() bool { fi, err := os.Stat(spill); return err == nil && fi.Size() > 1<<20 }, "1 MiB spilled")
	st := h.gw.Backends()[2]
	if err := backends[2].Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	close(stopBig)
	<-bigDone
	load.finish()
	if st := h.gw.Backends()[2]; st.OutOfSync {
		t.Fatalf("the backend that is behind lost writes: %+v", st)
	}
	t.Logf("while stopped: %d commands behind, %d bytes queued (memory part at most 64 KiB plus one request)", st.LagCommands, st.QueuedBytes)
	eventually(t, func() bool { return h.gw.Backends()[2].State == "up" }, "caught up")
	h.converged(t)
	load.check(t, h)
	for _, st := range h.gw.Backends() {
		if st.State != "up" || st.OutOfSync {
			t.Fatalf("after it continued: %+v", st)
		}
	}
	if fi, err := os.Stat(spill); err != nil || fi.Size() != 0 {
		t.Fatalf("spill file after catching up: %v %v", fi, err)
	}
}
