package gateway_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
)

// TestSameProcessReconnectStaysInSync: a connection dropped by the backend (CLIENT
// KILL) with nothing in flight is reconnected to the same process (same run_id): it
// keeps its data and stays in sync.
func TestSameProcessReconnectStaysInSync(t *testing.T) {
	h := withRedis(t, 2)
	c := h.client(t, 0)
	for i := range 20 {
		c.Set(ctx, "k"+strconv.Itoa(i), i, 0)
	}
	h.drained(t)
	before := h.gw.Backends()[1]
	if !strings.HasPrefix(before.Process, "run_id ") {
		t.Fatalf("backend identity not recorded: %+v", before)
	}
	if err := h.backends[1].Client(0).Do(ctx, "CLIENT", "KILL", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return h.gw.Backends()[1].Connects == 2 && h.gw.Backends()[1].State == "up" }, "reconnected")
	if st := h.gw.Backends()[1]; st.OutOfSync || st.Process != before.Process {
		t.Fatalf("same process after a dropped connection: %+v (before: %s)", st, before.Process)
	}
	c.Set(ctx, "after", "1", 0)
	h.converged(t)
}

// TestRestartedMemcachedOutOfSync: a memcached that comes back as a new process (new
// pid) lost its items: it is out of sync, and reads keep coming from the primary.
func TestRestartedMemcachedOutOfSync(t *testing.T) {
	h := withMemcached(t, 2, "read_from=any", "auto_resync=false")
	c := h.mcClient()
	for i := range 50 {
		if err := c.Set(&memcache.Item{Key: "k" + strconv.Itoa(i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	h.drained(t)
	h.restartMemcachedEmpty(t, 1)
	waitUp(t, h.gw, 2)
	st := h.gw.Backends()[1]
	if !st.OutOfSync || !strings.Contains(st.OutOfSyncReason, "restarted") || !strings.HasPrefix(st.Process, "pid ") {
		t.Fatalf("restarted memcached: %+v", st)
	}
	for i := range 50 { // read_from=any never picks the empty one
		if _, err := c.Get("k" + strconv.Itoa(i)); err != nil {
			t.Fatalf("get k%d: %v", i, err)
		}
	}
}
