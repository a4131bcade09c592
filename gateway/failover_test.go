package gateway_test

import (
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestPrimaryDownAndBack stops the primary while clients write: the client sees no
// error (the next backend answers reads and writes), the primary's missed writes are
// kept in its backlog, and when it runs again they are replayed in order.
func TestPrimaryDownAndBack(t *testing.T) {
	h := withRedis(t, 3)
	c := h.client(t, 0)
	for range 50 {
		if err := c.Incr(ctx, "n").Err(); err != nil {
			t.Fatal(err)
		}
	}
	h.drained(t)
	primary := h.backends[0]
	primary.Stop()
	eventually(t, func() bool { return h.gw.Backends()[0].State != "up" }, "gateway notices the primary is down")

	for i := range 50 {
		got, err := c.Incr(ctx, "n").Result()
		if err != nil {
			t.Fatalf("INCR with the primary down: %v", err)
		}
		if got != int64(51+i) {
			t.Fatalf("INCR with the primary down = %d, want %d", got, 51+i)
		}
		if err := c.RPush(ctx, "order", i).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if v := c.Get(ctx, "n").Val(); v != "100" {
		t.Fatalf("GET with the primary down = %q", v)
	}
	if st := h.gw.Backends()[0]; st.QueuedBytes == 0 {
		t.Fatalf("primary's backlog is empty while it is down: %+v", st)
	}

	// The primary comes back empty (no persistence): it receives exactly the writes it
	// missed, in order, so its list matches; its counter holds only the 50 missed INCRs.
	revived := startRedisOnPort(t, primary.Port)
	h.backends[0] = revived
	waitUp(t, h.gw, 3)
	h.drained(t)
	want := make([]string, 50)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	h.eachBackend(t, 0, func(i int, d *redis.Client) {
		got := d.LRange(ctx, "order", 0, -1).Val()
		if len(got) != 50 || got[0] != "0" || got[49] != "49" {
			t.Errorf("backend %d list = %v, want %v", i, got, want)
		}
	})
	if v := revived.Client(0).Get(ctx, "n").Val(); v != "50" {
		t.Fatalf("revived primary n = %q, want the 50 replayed INCRs", v)
	}
	if h.gw.Backends()[0].OutOfSync {
		t.Fatalf("no write was in flight when the primary stopped, yet it is out of sync")
	}
}
