package gateway_test

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/internal/procstat"
)

// rssMiB reads this process's resident set size (the gateway runs in the test).
func rssMiB(t testing.TB) float64 {
	t.Helper()
	rss, err := procstat.RSS(0)
	if err != nil {
		t.Fatalf("RSS is read from /proc (Linux): %v", err)
	}
	return float64(rss) / (1 << 20)
}

// heapMiB is the Go heap in use.
func heapMiB() float64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

// TestOutputBoundedForAClientThatNeverReads: with a 1 MiB value stored, a client sends
// 3,000 pipelined GETs of it in one write and never reads. The gateway takes its
// commands only as fast as its replies drain (bursts sized by reply bytes, then
// client_output_limit backpressure), so its memory stays bounded, other clients keep
// being served meanwhile, and the client is disconnected after client_output_timeout.
func TestOutputBoundedForAClientThatNeverReads(t *testing.T) {
	h := withRedis(t, 2, "client_output_timeout=3")
	c := h.client(t, 0)
	if err := c.Set(ctx, "big", strings.Repeat("v", 1<<20), 0).Err(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	base, baseHeap := rssMiB(t), heapMiB()
	hog, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hog.Close()
	_, err = hog.Write([]byte(strings.Repeat("GET big\r\n", 3000)))
	if err != nil {
		t.Fatal(err)
	}
	var peak, peakHeap float64
	var served atomic.Int64
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if err := c.Incr(ctx, "others").Err(); err != nil {
			t.Fatalf("another client while one hogs: %v", err)
		}
		served.Add(1)
		peak, peakHeap = max(peak, rssMiB(t)), max(peakHeap, heapMiB())
	}
	t.Logf("RSS %.0f MiB before, peak %.0f MiB (Go heap %.0f -> %.0f MiB) while a client holds 3,000 unread 1 MiB replies; %d INCRs by another client meanwhile",
		base, peak, baseHeap, peakHeap, served.Load())
	switch {
	case !raceEnabled && peak-base > 256:
		t.Fatalf("RSS grew by %.0f MiB, want at most 256", peak-base)
	case raceEnabled && peakHeap-baseHeap > 256:
		// Under -race, shadow memory multiplies RSS: the Go heap is what is bounded.
		t.Fatalf("Go heap grew by %.0f MiB, want at most 256", peakHeap-baseHeap)
	}
	// Not reading for longer than client_output_timeout (3 s): disconnected.
	time.Sleep(4 * time.Second)
	_ = hog.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 1<<20)
	var read int
	for {
		n, err := hog.Read(buf)
		read += n
		if err != nil {
			break
		}
	}
	t.Logf("the client got %d MiB before its connection was closed", read>>20)
	if read >= 3000<<20 {
		t.Fatalf("all %d bytes delivered: the client was not disconnected", read)
	}
	if n := c.Get(ctx, "others").Val(); n != fmt.Sprint(served.Load()) {
		t.Fatalf("others = %s, want %d", n, served.Load())
	}
	h.converged(t)
}
