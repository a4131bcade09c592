package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
)

// dormantClients opens n connections that each send one PING and then stay idle.
func dormantClients(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "+PONG\r\n" {
			t.Fatalf("PING %d: %q %v", i, line, err)
		}
		conns[i] = c
	}
	return conns
}

// roundTrip sends one inline command on c and reads one reply line.
func roundTrip(t *testing.T, c net.Conn, cmd string) string {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return strings.TrimSuffix(line, "\r\n")
}

// Idle clients' sessions go dormant (their goroutines end) and are taken up again,
// with their state, when the client sends: replies, data on every backend, the
// client's database and transaction all as if they had stayed.
func TestIdleClientsGoDormant(t *testing.T) {
	h := withRedis(t, 2, "client_dormant_after=1")
	const n = 200
	base := runtime.NumGoroutine()
	conns := dormantClients(t, h.addr, n)

	// A client with state: database 3 selected, a transaction open with one queued
	// command, then idle.
	stateful := dormantClients(t, h.addr, 1)[0]
	for _, cmd := range []string{"SELECT 3", "MULTI"} {
		if got := roundTrip(t, stateful, cmd); got != "+OK" {
			t.Fatalf("%s: %q", cmd, got)
		}
	}
	if got := roundTrip(t, stateful, "SET in-tx queued"); got != "+QUEUED" {
		t.Fatalf("SET in MULTI: %q", got)
	}
	eventually(t, func() bool { return h.gw.Stats().ClientsDormant.Load() == n+1 }, "every idle client dormant")
	if g := runtime.NumGoroutine(); g > base+20 {
		t.Errorf("%d goroutines with %d dormant clients (%d before they connected): dormant sessions keep goroutines", g, n+1, base)
	}

	for i, c := range conns {
		if got := roundTrip(t, c, fmt.Sprintf("SET dormant:%d v%d", i, i)); got != "+OK" {
			t.Fatalf("SET from woken client %d: %q", i, got)
		}
	}
	if got := roundTrip(t, stateful, "EXEC"); got != "*1" {
		t.Fatalf("EXEC after dormancy: %q", got)
	}
	h.eachBackend(t, 0, func(b int, c *redis.Client) {
		for i := range n {
			if v, err := c.Get(context.Background(), fmt.Sprintf("dormant:%d", i)).Result(); err != nil || v != fmt.Sprintf("v%d", i) {
				t.Fatalf("backend %d: dormant:%d = %q, %v", b, i, v, err)
			}
		}
	})
	h.eachBackend(t, 3, func(b int, c *redis.Client) {
		if v, err := c.Get(context.Background(), "in-tx").Result(); err != nil || v != "queued" {
			t.Fatalf("backend %d db 3: in-tx = %q, %v (the transaction or the database was lost)", b, v, err)
		}
	})
	h.converged(t)

	// Dormant again, then closed by the client: the gateway sees it.
	eventually(t, func() bool { return h.gw.Stats().ClientsDormant.Load() == n+1 }, "idle again, dormant again")
	connected := h.gw.Stats().ClientsConnected.Load()
	for _, c := range conns[:50] {
		c.Close()
	}
	eventually(t, func() bool { return h.gw.Stats().ClientsConnected.Load() == connected-50 }, "closed dormant clients unregistered")
	if d := h.gw.Stats().ClientsDormant.Load(); d != n+1-50 {
		t.Errorf("dormant clients after 50 closed: %d, want %d", d, n+1-50)
	}
}

// A dormant client can be killed (CLIENT KILL) and is closed at once; a subscriber
// that went dormant still receives messages and answers commands.
func TestDormantClientKilledAndSubscriber(t *testing.T) {
	h := withRedis(t, 2, "client_dormant_after=1")
	victim := dormantClients(t, h.addr, 1)[0]
	id := roundTrip(t, victim, "CLIENT ID")
	sub := h.client(t, 0)
	ps := sub.Subscribe(context.Background(), "news")
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return h.gw.Stats().ClientsDormant.Load() >= 2 }, "the idle client and the subscriber dormant")

	admin := h.client(t, 0)
	if err := admin.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	connected := h.gw.Stats().ClientsConnected.Load()
	if n, err := admin.ClientKillByFilter(context.Background(), "ID", strings.TrimPrefix(id, ":")).Result(); err != nil || n != 1 {
		t.Fatalf("CLIENT KILL ID %s: %d, %v", id, n, err)
	}
	_ = victim.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := victim.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("killed dormant client: read %v, want EOF", err)
	}
	// Its session woke and ended: no longer counted, dormant or connected.
	eventually(t, func() bool {
		return h.gw.Stats().ClientsConnected.Load() == connected-1 && h.gw.Stats().ClientsDormant.Load() <= 1
	}, "the killed client's session ended")

	if err := admin.Publish(context.Background(), "news", "hello").Err(); err != nil {
		t.Fatal(err)
	}
	msg, err := ps.ReceiveMessage(context.Background())
	if err != nil || msg.Payload != "hello" {
		t.Fatalf("dormant subscriber got %v, %v", msg, err)
	}
	if err := ps.Ping(context.Background()); err != nil {
		t.Fatalf("PING from the subscriber: %v", err)
	}
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatalf("the subscriber's PONG: %v", err)
	}
	ps.Close()
}

// read_idle_timeout still closes a client idle that long when its session is
// dormant; a client that keeps sending is not closed.
func TestDormantClientIdleTimeout(t *testing.T) {
	h := withRedis(t, 1, "read_idle_timeout=3", "client_dormant_after=1")
	idle := dormantClients(t, h.addr, 1)[0]
	busy := dormantClients(t, h.addr, 1)[0]
	start := time.Now()
	_ = idle.SetReadDeadline(time.Now().Add(15 * time.Second))
	got := make(chan error, 1)
	go func() {
		_, err := idle.Read(make([]byte, 1))
		got <- err
	}()
	for i := 0; ; i++ {
		select {
		case err := <-got:
			if err != io.EOF {
				t.Fatalf("idle client: read %v, want EOF (closed by read_idle_timeout)", err)
			}
			t.Logf("idle client closed after %v", time.Since(start))
			// The busy one sent every 500 ms: still served.
			if r := roundTrip(t, busy, "PING"); r != "+PONG" {
				t.Fatalf("busy client: %q", r)
			}
			if !strings.Contains(h.logs.String(), "read_idle_timeout") {
				t.Errorf("no read_idle_timeout reason logged")
			}
			return
		case <-time.After(500 * time.Millisecond):
			if r := roundTrip(t, busy, "PING"); r != "+PONG" {
				t.Fatalf("busy client after %d rounds: %q", i, r)
			}
		}
	}
}

// A client that stops in the middle of a command is not made dormant (the start of
// its command is held) and its command completes when the rest arrives.
func TestQuietMidCommand(t *testing.T) {
	h := withRedis(t, 2, "client_dormant_after=1")
	c := dormantClients(t, h.addr, 1)[0]
	if _, err := c.Write([]byte("*3\r\n$3\r\nSET\r\n$4\r\nhalf")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // past client_dormant_after twice
	if d := h.gw.Stats().ClientsDormant.Load(); d != 0 {
		t.Errorf("%d dormant clients while one is in the middle of a command", d)
	}
	if got := roundTrip(t, c, "\r\n$5\r\nvalue"); got != "+OK" {
		t.Fatalf("the rest of the command: %q", got)
	}
	h.eachBackend(t, 0, func(b int, cl *redis.Client) {
		if v, err := cl.Get(context.Background(), "half").Result(); err != nil || v != "value" {
			t.Fatalf("backend %d: half = %q, %v", b, v, err)
		}
	})
}

// memcached clients go dormant the same way: a gomemcache client's pooled
// connections, idle, then used again, with every backend holding the values.
func TestDormantMemcacheClients(t *testing.T) {
	h := withMemcached(t, 2, "client_dormant_after=1")
	c := h.mcClient()
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = fmt.Sprintf("mc-dormant-%d", i)
		if err := c.Set(&memcache.Item{Key: keys[i], Value: []byte("before"), Flags: uint32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, func() bool {
		d := h.gw.Stats().ClientsDormant.Load()
		return d > 0 && d == h.gw.Stats().ClientsConnected.Load()
	}, "the pool's idle connections dormant")
	for i, k := range keys {
		if err := c.Set(&memcache.Item{Key: k, Value: []byte("after"), Flags: uint32(i)}); err != nil {
			t.Fatalf("set %s after dormancy: %v", k, err)
		}
	}
	got, err := c.GetMulti(keys)
	if err != nil || len(got) != len(keys) {
		t.Fatalf("get_multi after dormancy: %d items, %v", len(got), err)
	}
	for k, it := range h.mcConverged(t, keys...) {
		if it.value != "after" {
			t.Errorf("%s = %q on every backend, want after", k, it.value)
		}
	}
}

// Clients that alternate between bursts and idle pauses around client_dormant_after (1 s here), while
// another client kills random clients: sessions go dormant, wake, are killed asleep
// and awake, and reconnect. Every acknowledged write is on every backend, the
// backends converge, and once the clients leave no session, dormant or not, is left.
func TestDormancyChurn(t *testing.T) {
	h := withRedis(t, 2, "client_dormant_after=1")
	base := runtime.NumGoroutine()
	ctx := context.Background()
	stop := make(chan struct{})
	killed, killedDormant := 0, 0
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		killer := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2, PoolSize: 1})
		defer killer.Close()
		self, _ := killer.ClientID(ctx).Result()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			list, err := killer.ClientList(ctx).Result()
			if err != nil {
				continue
			}
			var ids []string
			for _, line := range strings.Split(list, "\n") {
				if id, ok := strings.CutPrefix(strings.Fields(line + " x")[0], "id="); ok && id != fmt.Sprint(self) {
					ids = append(ids, id)
				}
			}
			if len(ids) == 0 {
				continue
			}
			dormant := h.gw.Stats().ClientsDormant.Load()
			if n, _ := killer.ClientKillByFilter(ctx, "ID", ids[i%len(ids)]).Result(); n == 1 {
				killed++
				if dormant > 0 {
					killedDormant++ // with some asleep: this one may have been
				}
			}
		}
	}()
	const workers, cycles, perBurst = 40, 3, 20
	runClients(t, h, workers, func(w int, c *redis.Client) error {
		for cyc := range cycles {
			for attempt := 0; ; attempt++ {
				cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
					for i := range perBurst {
						p.Set(ctx, fmt.Sprintf("churn:%d:%d:%d", w, cyc, i), w*1000+cyc, 0)
					}
					return nil
				})
				if err == nil {
					break
				}
				if attempt == 20 {
					return fmt.Errorf("worker %d cycle %d: %v (%d replies)", w, cyc, err, len(cmds))
				}
			}
			// Idle about client_dormant_after: some go dormant, some are woken as they do.
			time.Sleep(time.Duration(800+(w*37+cyc*101)%800) * time.Millisecond)
		}
		return nil
	})
	close(stop)
	<-killerDone
	t.Logf("%d clients killed during the run, %d of them while some were dormant", killed, killedDormant)
	if killed == 0 || killedDormant == 0 {
		t.Fatal("no kill while clients were dormant: the test did not test what it is for")
	}
	h.eachBackend(t, 0, func(b int, c *redis.Client) {
		for w := range workers {
			for cyc := range cycles {
				for i := range perBurst {
					k := fmt.Sprintf("churn:%d:%d:%d", w, cyc, i)
					if v, err := c.Get(ctx, k).Int(); err != nil || v != w*1000+cyc {
						t.Fatalf("backend %d: %s = %d, %v", b, k, v, err)
					}
				}
			}
		}
	})
	h.converged(t)
	eventually(t, func() bool {
		return h.gw.Stats().ClientsConnected.Load() == 0 && h.gw.Stats().ClientsDormant.Load() == 0
	}, "every client gone, none left dormant")
	eventually(t, func() bool { return runtime.NumGoroutine() <= base+5 }, "goroutines back to where they were")
}

// client_dormant_after=0 keeps every session's goroutine, and the default (10 s)
// does not make a client idle for a few seconds dormant.
func TestDormancyOff(t *testing.T) {
	for _, c := range []struct {
		name     string
		settings []string
	}{{"off", []string{"client_dormant_after=0"}}, {"default", nil}} {
		t.Run(c.name, func(t *testing.T) {
			h := withRedis(t, 1, c.settings...)
			conns := dormantClients(t, h.addr, 5)
			time.Sleep(2500 * time.Millisecond)
			if d := h.gw.Stats().ClientsDormant.Load(); d != 0 {
				t.Fatalf("%d dormant clients", d)
			}
			for _, conn := range conns {
				if got := roundTrip(t, conn, "PING"); got != "+PONG" {
					t.Fatalf("PING: %q", got)
				}
			}
		})
	}
}
