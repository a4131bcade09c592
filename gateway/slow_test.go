package gateway_test

import (
	"strconv"
	"strings"
	"sync/atomic"
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
