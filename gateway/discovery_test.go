package gateway_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/redis/go-redis/v9"
)

// TestDiscoveryHTTP is the original's servers_autoupdate: the backends are the static
// servers plus the endpoint's JSON list. A backend the endpoint adds is out of sync
// until auto_resync has copied the data to it, then serves; a bad response keeps the
// last good list and is logged once; a backend the endpoint drops is closed and the
// one it names instead is resynced. Clients stay connected throughout.
func TestDiscoveryHTTP(t *testing.T) {
	a, b, c := startRedisBackends(t, 1)[0], startRedisBackends(t, 1)[0], startRedisBackends(t, 1)[0]
	var mu sync.Mutex
	reply := `[]`
	var agents []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		agents = append(agents, r.Method+" "+r.URL.RawQuery+" "+r.Header.Get("User-Agent"))
		_, _ = w.Write([]byte(reply))
	}))
	defer srv.Close()
	set := func(s string) { mu.Lock(); reply = s; mu.Unlock() }
	set(`["` + b.Addr + `"]`)
	h := startGateway(t, []string{a.Addr}, "servers_autoupdate=true", "servers_autoupdate_method=GET",
		"servers_autoupdate_url="+srv.URL, "servers_autoupdate_parameters=region=eu", "servers_autoupdate_refresh=100ms")
	h.backends = []*redisServer{a, b}
	client := h.client(t, 0)
	for i := range 100 {
		client.Set(ctx, fmt.Sprint("k", i), i, 0)
	}
	inSync := func(addr string) func() bool {
		return func() bool {
			for _, st := range h.gw.Backends() {
				if st.Addr == addr {
					return st.State == "up" && !st.OutOfSync
				}
			}
			return false
		}
	}
	eventually(t, inSync(b.Addr), "b added by the endpoint and resynced")
	for _, st := range h.gw.Backends() {
		if want := map[string]string{a.Addr: "static", b.Addr: "http"}[st.Addr]; st.Source != want {
			t.Errorf("%s source %q, want %q", st.Addr, st.Source, want)
		}
	}
	if v := b.Client(0).Get(ctx, "k99").Val(); v != "99" {
		t.Fatalf("b after joining: k99 = %q", v)
	}
	client.Set(ctx, "after", "join", 0)
	h.converged(t)

	for _, bad := range []string{`<html>`, `<html>`, `{"a":1}`, `[]`, `["nohost"]`} {
		set(bad)
		time.Sleep(250 * time.Millisecond)
	}
	if n := len(h.gw.Backends()); n != 2 {
		t.Fatalf("%d backends after bad responses, want the last good 2", n)
	}
	if n := strings.Count(h.logs.String(), `not a JSON array of \"host:port\" strings (invalid character '<'`); n != 1 {
		t.Fatalf("the same error logged %d times, want once", n)
	}
	if errs := h.gw.DiscoveryErrors()["http"]; errs != 4 {
		t.Fatalf("http discovery errors %d, want 4 (one per change of error)", errs)
	}

	set(`[" ` + c.Addr + ` "]`)
	h.backends = []*redisServer{a, c}
	eventually(t, inSync(c.Addr), "c added and resynced")
	eventually(t, func() bool {
		for _, st := range h.gw.Backends() {
			if st.Addr == b.Addr {
				return false
			}
		}
		return true
	}, "b removed and closed")
	if err := client.Set(ctx, "after", "swap", 0).Err(); err != nil {
		t.Fatalf("the client saw %v", err)
	}
	h.converged(t)
	mu.Lock()
	first := agents[0]
	mu.Unlock()
	if first != "GET region=eu dynode-broadcaster/"+strings.TrimPrefix(first, "GET region=eu dynode-broadcaster/") || !strings.HasPrefix(first, "GET region=eu dynode-broadcaster/") {
		t.Fatalf("request %q", first)
	}
}

// TestDiscoveryFileChurn: the list in a watched file changes 100 times while 20
// clients write; backends come, go and come back. No client sees an error, and the
// backends that stayed in the list the whole time have every acknowledged write.
func TestDiscoveryFileChurn(t *testing.T) {
	rs := startRedisBackends(t, 4)
	a, b, pool := rs[0], rs[1], rs[2:]
	dir := t.TempDir()
	path := filepath.Join(dir, "backends")
	write := func(addrs ...string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte("# test\n"+strings.Join(addrs, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(b.Addr)
	h := startGateway(t, []string{a.Addr}, "servers_file="+path)
	h.backends = []*redisServer{a, b}
	eventually(t, func() bool { return len(h.gw.Backends()) == 2 && h.gw.Backends()[1].Connected }, "b from the file")

	var incrs, errs atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			c := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2, PoolSize: 1})
			defer c.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := c.Incr(ctx, "counter").Err(); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					incrs.Add(1)
				}
				c.Set(ctx, fmt.Sprintf("key:%d:%d", w, i%100), i, 0)
			}
		})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	for range 100 {
		list := []string{b.Addr}
		for _, p := range pool {
			if rng.IntN(2) == 0 {
				list = append(list, p.Addr)
			}
		}
		write(list...)
		time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("100 list changes in %v; %d INCRs acknowledged, %d errors", time.Since(start), incrs.Load(), errs.Load())
	if errs.Load() != 0 {
		t.Fatalf("%d client errors, first: %v", errs.Load(), firstErr.Load())
	}
	h.drained(t)
	for i, r := range []*redisServer{a, b} {
		if n, _ := r.Client(0).Get(ctx, "counter").Int64(); n != incrs.Load() {
			t.Errorf("backend %d: counter %d, acknowledged %d", i, n, incrs.Load())
		}
	}
	h.converged(t) // a and b, the backends that stayed the whole time

	// Everyone back: the pool is resynced and every backend converges.
	write(append([]string{b.Addr}, pool[0].Addr, pool[1].Addr)...)
	h.backends = rs
	eventually(t, func() bool {
		sts := h.gw.Backends()
		if len(sts) != 4 {
			return false
		}
		for _, st := range sts {
			if st.State != "up" || st.OutOfSync {
				return false
			}
		}
		return true
	}, "all four in sync")
	h.converged(t)
}

// TestDiscoveryDNS: servers_dns=_redis._tcp.name reads SRV records (their ports) from
// a DNS server started here; a record that appears adds a backend (resynced), one
// that disappears removes it.
func TestDiscoveryDNS(t *testing.T) {
	a, b := startRedisBackends(t, 1)[0], startRedisBackends(t, 1)[0]
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var ports []string
	mux := dns.NewServeMux()
	mux.HandleFunc("_redis._tcp.cache.test.", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		mu.Lock()
		for _, p := range ports {
			rr, _ := dns.NewRR("_redis._tcp.cache.test. 5 IN SRV 10 5 " + p + " localhost.")
			m.Answer = append(m.Answer, rr)
		}
		mu.Unlock()
		_ = w.WriteMsg(m)
	})
	server := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = server.ActivateAndServe() }()
	defer func() { _ = server.Shutdown() }()
	mu.Lock()
	ports = []string{strconv.Itoa(b.Port)}
	mu.Unlock()
	h := startGateway(t, []string{a.Addr}, "servers_dns=_redis._tcp.cache.test", "servers_dns_server="+pc.LocalAddr().String(),
		"servers_dns_refresh=100ms")
	h.backends = []*redisServer{a, b}
	c := h.client(t, 0)
	c.Set(ctx, "before", "b", 0)
	bAddr := "localhost:" + strconv.Itoa(b.Port)
	eventually(t, func() bool {
		for _, st := range h.gw.Backends() {
			if st.Addr == bAddr {
				return st.Source == "dns" && st.State == "up" && !st.OutOfSync
			}
		}
		return false
	}, "b from its SRV record, resynced")
	h.converged(t)
	mu.Lock()
	ports = nil
	mu.Unlock()
	// An empty answer is an error ("no records"): the last good list stays.
	time.Sleep(300 * time.Millisecond)
	if n := len(h.gw.Backends()); n != 2 {
		t.Fatalf("%d backends after an empty DNS answer, want 2", n)
	}
	if h.gw.DiscoveryErrors()["dns"] == 0 {
		t.Fatal("no dns discovery error counted")
	}
}

// TestReload: a new configuration applies what can change live (a backend added to
// servers joins and is resynced, write_reply, timeouts) and logs each change as old
// -> new; a setting that needs a restart keeps its running value and says so.
func TestReload(t *testing.T) {
	rs := startRedisBackends(t, 2)
	h := startGateway(t, []string{rs[0].Addr})
	h.backends = rs[:1]
	c := h.client(t, 0)
	c.Set(ctx, "before", "reload", 0)
	next := *h.gw.Config()
	next.Servers = []string{rs[0].Addr, rs[1].Addr}
	next.WriteReply = "all"
	next.BackendTimeout = 3 * time.Second
	next.Port = 1 // needs a restart
	changes := h.gw.Reload(&next)
	got := map[string]bool{}
	for _, ch := range changes {
		got[ch.Key] = ch.Live
	}
	if len(got) != 4 || !got["servers"] || !got["write_reply"] || !got["backend_timeout"] || got["port"] {
		t.Fatalf("changes %+v", changes)
	}
	if cfg := h.gw.Config(); cfg.Port == 1 || cfg.WriteReply != "all" {
		t.Fatalf("after reload: port %d write_reply %s", cfg.Port, cfg.WriteReply)
	}
	h.backends = rs
	eventually(t, func() bool {
		sts := h.gw.Backends()
		return len(sts) == 2 && sts[1].State == "up" && !sts[1].OutOfSync
	}, "the added backend resynced")
	if err := c.Set(ctx, "after", "reload", 0).Err(); err != nil {
		t.Fatal(err)
	}
	h.converged(t)
	logs := h.logs.String()
	for _, want := range []string{`msg="configuration changed" key=write_reply old=primary new=all`, `msg="configuration change needs a restart; keeping the running value" key=port`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestDiscoveryWithoutStaticServers: with servers empty, the gateway waits for the
// endpoint's first list and serves with it; those backends are the initial set, in
// sync from the start.
func TestDiscoveryWithoutStaticServers(t *testing.T) {
	rs := startRedisBackends(t, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, `["%s", "%s"]`, rs[0].Addr, rs[1].Addr)
	}))
	defer srv.Close()
	h := startGatewayPartial(t, nil, 0, "servers=", "servers_autoupdate=true", "servers_autoupdate_url="+srv.URL, "servers_autoupdate_refresh=0")
	h.backends = rs
	waitUp(t, h.gw, 2)
	for _, st := range h.gw.Backends() {
		if st.OutOfSync || st.Source != "http" || st.Added.IsZero() {
			t.Fatalf("initial backend %+v", st)
		}
	}
	if err := h.client(t, 0).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	h.converged(t)
}
