package gateway_test

import (
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostileRESP are malformed requests, each of which must get Redis's protocol error
// and a close, with nothing forwarded to a backend.
func hostileRESP() []string {
	in := []string{
		// Negative, huge and malformed bulk lengths.
		"*1\r\n$-2\r\n", "*1\r\n$-100\r\n", "*1\r\n$-9223372036854775808\r\n", "*1\r\n$9223372036854775807\r\nab",
		"*1\r\n$4611686018427387904\r\n", "*2\r\n$3\r\nGET\r\n$99999999999999999999\r\n", "*1\r\n$536870913\r\n",
		"*1\r\n$04\r\nPING\r\n", "*1\r\n$+4\r\nPING\r\n", "*1\r\n$abc\r\n", "*1\r\n$4x\r\nPING\r\n", "*1\r\n$\r\n",
		"*1\r\n$ 4\r\nPING\r\n", "*1\r\n$0x4\r\nPING\r\n",
		// Huge and malformed multibulk counts.
		"*3000000000\r\n", "*2147483648\r\n", "*9223372036854775807\r\n", "*+1\r\n$4\r\nPING\r\n",
		"*01\r\n$4\r\nPING\r\n", "*abc\r\n", "*1x\r\n", "*\r\n", "*1.5\r\n",
		// Not a bulk where a bulk must be (nesting, other types).
		"*1\r\n+PING\r\n", "*1\r\n:1\r\n", "*1\r\n*1\r\n$4\r\nPING\r\n", "*1\r\n-ERR\r\n", "*2\r\n$3\r\nGET\r\n*1\r\n",
		"*1\r\n%1\r\n", "*1\r\n_\r\n",
		// Bulk payload not followed by CRLF.
		"*1\r\n$4\r\nPINGxx", "*1\r\n$4\r\nPING\n\n", "*1\r\n$4\r\nPIN\r\n\r\n", "*2\r\n$3\r\nSET\r\n$1\r\nkk\r\n",
		// A bulk without its array; header lines without CR.
		"$4\r\nPING\r\n", "*1\n$4\r\nPING\r\n", "*1\r\n$4\nPING\r\n",
		// Inline commands with unbalanced quoting.
		"SET k \"abc\r\n", "'unbalanced\r\n", "SET \"a\"b c\r\n", "ECHO 'a'b\r\n",
		// Over-long header and inline lines.
		"*" + strings.Repeat("9", 70<<10), "*1\r\n$" + strings.Repeat("9", 70<<10), strings.Repeat("A", 70<<10),
		// Binary junk in a multibulk.
		"*\x00\x01\x02\xff\r\n", "*1\r\n$\xff\xfe\r\n",
	}
	// 10,000-deep nesting, which a recursive parser would descend into.
	in = append(in, strings.Repeat("*1\r\n", 10000))
	return in
}

// TestHostileRESP: every malformed request of the table gets a Redis protocol error
// and a close; nothing of it reaches a backend; another client is served throughout;
// memory comes back to its baseline.
func TestHostileRESP(t *testing.T) {
	h := withRedis(t, 2)
	other := h.client(t, 0)
	other.Set(ctx, "k", "v", 0)
	runtime.GC()
	base := heapMiB()
	inputs := hostileRESP()
	if len(inputs) < 40 {
		t.Fatalf("only %d inputs", len(inputs))
	}
	for _, in := range inputs {
		got := exchange(t, h.addr, in)
		if !strings.HasPrefix(got, "-ERR Protocol error") || strings.Count(got, "\r\n") != 1 {
			t.Errorf("%.40q: got %.80q, want one protocol error and a close", in, got)
		}
		if v, err := other.Get(ctx, "k").Result(); v != "v" || err != nil {
			t.Fatalf("other client after %.40q: %q, %v", in, v, err)
		}
	}
	for _, b := range h.backends {
		for _, name := range commandsSeen(t, b) {
			switch name {
			case "ping", "set", "get", "info", "hello", "client":
			default:
				t.Errorf("backend %s executed %q: malformed input was forwarded", b.Addr, name)
			}
		}
	}
	runtime.GC()
	if after := heapMiB(); after > base+32 {
		t.Fatalf("Go heap %.0f MiB after the hostile inputs, %.0f before", after, base)
	}
	if n := h.gw.Stats().SessionPanics.Load(); n != 0 {
		t.Fatalf("%d session panics", n)
	}
}

// TestSlowAndHalfOpenClients: a client that sends a command one byte at a time is
// served when it completes; one that stops mid-command is closed after
// read_idle_timeout; one that half-closes mid-command is closed without anything
// forwarded.
func TestSlowAndHalfOpenClients(t *testing.T) {
	h := withRedis(t, 2, "read_idle_timeout=1")
	other := h.client(t, 0)
	slow, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	for _, c := range []byte("*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$1\r\n1\r\n") {
		if _, err := slow.Write([]byte{c}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		if err := other.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 5)
	if _, err := slow.Read(buf); err != nil || string(buf) != "+OK\r\n" {
		t.Fatalf("slow client: %q %v", buf, err)
	}
	// Stops mid-command: closed after read_idle_timeout (1 s).
	stuck, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	_, _ = stuck.Write([]byte("*3\r\n$3\r\nSET\r\n$5\r\nstuck"))
	_ = stuck.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := stuck.Read(buf); err == nil {
		t.Fatalf("a client idle mid-command got %q instead of a close", buf[:n])
	}
	// Half-closes mid-command.
	if got := exchange(t, h.addr, "*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$1\r\n"); got != "" {
		t.Fatalf("half-open client got %q", got)
	}
	for _, b := range h.backends {
		if v := b.Client(0).Get(ctx, "half").Val(); v != "" {
			t.Fatalf("a half-sent command reached %s", b.Addr)
		}
		if v := b.Client(0).Get(ctx, "stuck").Val(); v != "" {
			t.Fatalf("a partial command reached %s", b.Addr)
		}
	}
	h.converged(t)
}

// TestConnectionFlood: 400 connections at once against max_clients=200: those
// beyond get -ERR max number of clients reached and a close, the clients already
// connected are served throughout.
func TestConnectionFlood(t *testing.T) {
	h := withRedis(t, 2, "max_clients=200")
	other := h.client(t, 0)
	other.Ping(ctx)
	var mu sync.Mutex
	var conns []net.Conn
	refused := 0
	var wg sync.WaitGroup
	for range 400 {
		wg.Go(func() {
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second)) // past the listen backlog, the kernel delivers them late
			b := make([]byte, 64)
			n, _ := c.Read(b)
			mu.Lock()
			defer mu.Unlock()
			if strings.HasPrefix(string(b[:n]), "-ERR max number of clients reached") {
				refused++
				_ = c.Close()
				return
			}
			conns = append(conns, c)
		})
	}
	wg.Wait()
	if err := other.Set(ctx, "during", "flood", 0).Err(); err != nil {
		t.Fatalf("a connected client during the flood: %v", err)
	}
	st := h.gw.Stats()
	t.Logf("flood of 400: %d refused with -ERR max number of clients reached (the gateway counts %d), %d clients connected at most 200",
		refused, st.ClientsRejected.Load(), st.ClientsConnected.Load())
	if refused == 0 || st.ClientsConnected.Load() > 200 {
		t.Fatalf("max_clients=200 not enforced: %d connected, %d refused", st.ClientsConnected.Load(), refused)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	h.converged(t)
}

// hostileMemcache are malformed memcached requests (text and meta), each answered
// with an error line (memcached's own, where it has one), none forwarded.
func hostileMemcache() []string {
	long := strings.Repeat("a", 251)
	return []string{
		"set k 0 0 -1\r\n", "set k abc 0 1\r\n", "set k 0 abc 1\r\n", "set k 0 0 abc\r\n", "set k 0 0\r\n", "set\r\n",
		"set k\r\n", "get\r\n", "incr k\r\n", "incr k abc\r\n", "decr k -1\r\n", "touch k abc\r\n", "cas k 0 0 1\r\n",
		"cas k 0 0 1 abc\r\n", "delete\r\n", "verbosity\r\n", "get " + long + "\r\n", "set " + long + " 0 0 1\r\n",
		"bogus\r\n", "\r\n", "mg\r\n", "ms k\r\n", "ms k abc\r\n", "md\r\n", "ma\r\n", "gat\r\n", "gat abc k\r\n",
		"set k 0 0 1\r\nxyz\r\n", "append k 0 0 -5\r\n", "prepend\r\n", "incr k 18446744073709551616\r\n",
		"set k\x01 0 0 1\r\n", "get k\x7f\r\n", "me\r\n", "touch\r\n", "gats\r\n", "gats 1\r\n", "add k 0 0\r\n",
		"replace k x y z\r\n", "set k 0 0 1 noreply junk junk\r\n", "ms " + long + " 1\r\n", "ma k N\r\n",
		"\x80\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00hello",
		"set " + strings.Repeat("a", 9000),
	}
}

// TestHostileMemcache: every malformed memcached request of the table gets an error
// line, nothing of it reaches a backend, another client is served throughout.
func TestHostileMemcache(t *testing.T) {
	h := withMemcached(t, 2)
	good := dialMC(t, h.addr)
	if got := good.call("set before 0 0 1\r\nx"); got != "STORED" {
		t.Fatal(got)
	}
	inputs := hostileMemcache()
	if len(inputs) < 40 {
		t.Fatalf("only %d inputs", len(inputs))
	}
	for _, in := range inputs {
		m := dialMC(t, h.addr)
		m.send(in)
		got := m.line()
		if !strings.HasPrefix(got, "ERROR") && !strings.HasPrefix(got, "CLIENT_ERROR") && !strings.HasPrefix(got, "SERVER_ERROR") {
			t.Errorf("%.40q: got %q, want an error line", in, got)
		}
		if got := good.call("get before"); got != "VALUE before 0 1" {
			t.Fatalf("other client after %.40q: %q", in, got)
		}
		good.until("END")
	}
	items := h.mcConverged(t)
	if len(items) != 1 || items["before"] != (mcItem{"x", 0}) {
		t.Fatalf("backend items after hostile input: %+v", items)
	}
	for i, b := range h.mc {
		st := dialMC(t, b.Addr).request("stats")
		for _, stat := range []string{"cmd_set", "cmd_touch", "incr_misses", "decr_misses", "delete_misses", "cas_misses"} {
			want := map[string]string{"cmd_set": "1"}[stat]
			if want == "" {
				want = "0"
			}
			if got := statValue(t, st, stat); got != want {
				t.Errorf("backend %d %s = %s, want %s: malformed input was forwarded", i, stat, got, want)
			}
		}
	}
}
