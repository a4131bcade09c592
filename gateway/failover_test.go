package gateway_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestPrimaryDownAndBack stops the primary while clients write: the client sees no
// error (the next backend answers reads and writes), the primary's missed writes are
// kept in its backlog, and when it runs again they are replayed in order.
func TestPrimaryDownAndBack(t *testing.T) {
	h := withRedis(t, 3, "auto_resync=false")
	c := h.client(t, 0)
	for range 50 {
		if err := c.Incr(ctx, "n").Err(); err != nil {
			t.Fatal(err)
		}
	}
	h.drained(t)
	primary := h.backends[0]
	primary.Stop()
	eventually(t, func() bool { return !h.gw.Backends()[0].Connected }, "gateway notices the primary is down")

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
	// It is another process (a new run_id), so it is out of sync: it lost what it held
	// before, and reads and replies keep coming from an in-sync backend.
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
	st := h.gw.Backends()[0]
	if !st.OutOfSync || !strings.Contains(st.OutOfSyncReason, "restarted") || st.LostWrites != 0 {
		t.Fatalf("revived primary (a new process, half its data gone): %+v, want out of sync for the restart, no lost write", st)
	}
	if v := c.Get(ctx, "n").Val(); v != "100" {
		t.Fatalf("GET n after the primary came back empty = %q, want 100 from an in-sync backend", v)
	}
	if n := c.Incr(ctx, "n").Val(); n != 101 {
		t.Fatalf("INCR n = %d, want 101 from an in-sync backend", n)
	}
}

// TestAdminEndpoints checks /metrics, /backends, /healthz and /readyz, with a backend
// down so the metrics show it.
func TestAdminEndpoints(t *testing.T) {
	live := startRedisBackends(t, 1)[0]
	dead := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	admin := freePort(t)
	h := startGatewayPartial(t, []string{live.Addr, dead}, 1, "admin_port="+strconv.Itoa(admin))
	if err := h.client(t, 0).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + h.gw.AdminAddr().String()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	code, metrics := get("/metrics")
	for _, want := range []string{
		`dynode_backend_up{backend="` + live.Addr + `"} 1`,
		`dynode_backend_up{backend="` + dead + `"} 0`,
		`dynode_commands_total{class="write"} 1`,
		"dynode_divergence_total 0",
		`dynode_backend_queued_bytes{backend="` + dead + `"}`,
	} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
	code, body := get("/backends")
	var backends []map[string]any
	if err := json.Unmarshal([]byte(body), &backends); code != 200 || err != nil || len(backends) != 2 || backends[0]["state"] != "up" {
		t.Fatalf("/backends = %d %s", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz = %d", code)
	}
}

// TestBackendTimeout: a backend that accepts commands but never answers. With the
// primary stalled, the client gets the other backend's reply once backend_timeout
// resets the stalled connection; the stalled backend is flagged out of sync (its
// writes were never acknowledged) and reconnected.
func TestBackendTimeout(t *testing.T) {
	good := startRedisBackends(t, 1)[0]
	stalled := newTCPBackend(t, "probe-then-stall")
	h := startGateway(t, []string{stalled.addr(), good.Addr}, "backend_timeout=300ms", "auto_resync=false")
	c := h.client(t, 0)
	got, err := c.Incr(ctx, "n").Result()
	if err != nil || got != 1 {
		t.Fatalf("INCR with a stalled primary = %d, %v; want 1 from the other backend", got, err)
	}
	eventually(t, func() bool { return h.gw.Stats().OutOfSyncEvents.Load() == 1 }, "stalled backend flagged out of sync")
	if lost := h.gw.Backends()[0].LostWrites; lost != 1 {
		t.Fatalf("stalled backend lost writes = %d, want the 1 unacknowledged INCR", lost)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "backend_timeout") {
		t.Fatalf("timeout not logged:\n%s", logs)
	}
	stalled.conn(1) // the gateway reconnected
	if v := good.Client(0).Get(ctx, "n").Val(); v != "1" {
		t.Fatalf("good backend n = %q", v)
	}
}
