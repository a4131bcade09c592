package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/dynode/dynode-broadcaster/internal/testserver"
)

// withMemcached starts n memcached backends and a gateway (protocol=memcache) in
// front of them.
func withMemcached(t testing.TB, n int, settings ...string) *harness {
	t.Helper()
	mcs := make([]*testserver.Memcached, n)
	addrs := make([]string, n)
	for i := range mcs {
		mcs[i] = testserver.StartMemcached(t)
		addrs[i] = mcs[i].Addr
	}
	h := startGateway(t, addrs, append([]string{"protocol=memcache"}, settings...)...)
	h.mc = mcs
	return h
}

// restartMemcachedEmpty stops memcached backend i and starts a new, empty process on
// the same port, once the gateway has seen it down.
func (h *harness) restartMemcachedEmpty(t testing.TB, i int) {
	t.Helper()
	port := h.mc[i].Port
	h.mc[i].Stop()
	eventually(t, func() bool { return !h.gw.Backends()[i].Connected }, "the gateway sees the backend down")
	h.mc[i] = testserver.StartMemcachedOnPort(t, port)
}

// mcClient is a gomemcache client of the gateway.
func (h *harness) mcClient() *memcache.Client {
	c := memcache.New(h.addr)
	c.Timeout = 5 * time.Second
	c.MaxIdleConns = 8
	return c
}

// mcConn is a raw text-protocol connection.
type mcConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialMC(t testing.TB, addr string) *mcConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &mcConn{t: t, c: c, r: bufio.NewReader(c)}
}

// send writes raw bytes.
func (m *mcConn) send(s string) {
	m.t.Helper()
	_ = m.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(m.c, s); err != nil {
		m.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one reply line without its CRLF.
func (m *mcConn) line() string {
	m.t.Helper()
	_ = m.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := m.r.ReadString('\n')
	if err != nil {
		m.t.Fatalf("read reply line: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		m.t.Fatalf("reply line %q not ended by CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// call sends one command line (CRLF added) and returns the first reply line.
func (m *mcConn) call(cmd string) string {
	m.t.Helper()
	m.send(cmd + "\r\n")
	return m.line()
}

// until reads reply lines up to and including the line last.
func (m *mcConn) until(last string) []string {
	m.t.Helper()
	var lines []string
	for {
		l := m.line()
		lines = append(lines, l)
		if l == last {
			return lines
		}
	}
}

// request sends one command line and reads its reply lines up to END.
func (m *mcConn) request(cmd string) []string {
	m.t.Helper()
	m.send(cmd + "\r\n")
	return m.until("END")
}

// closed reports whether the gateway closed the connection (EOF within 5 s).
func (m *mcConn) closed() bool {
	_ = m.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := m.r.ReadByte()
	return err == io.EOF
}

// mcItem is what a backend holds for one key.
type mcItem struct {
	value string
	flags uint32
}

// mcKeys returns the keys a memcached server lists in lru_crawler metadump.
func mcKeys(t testing.TB, addr string) []string {
	t.Helper()
	m := dialMC(t, addr)
	m.send("lru_crawler metadump all\r\n")
	var keys []string
	for {
		_ = m.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := m.r.ReadString('\n') // metadump lines end in a bare LF
		if err != nil {
			t.Fatalf("%s: metadump: %v", addr, err)
		}
		if l = strings.TrimRight(l, "\r\n"); l == "END" {
			return keys
		}
		for _, f := range strings.Fields(l) {
			if k, ok := strings.CutPrefix(f, "key="); ok {
				keys = append(keys, k)
			}
		}
	}
}

// mcItems reads keys from a memcached server with mg (which does not count as a
// hit); absent keys are left out.
func mcItems(t testing.TB, addr string, keys []string) map[string]mcItem {
	t.Helper()
	m := dialMC(t, addr)
	items := make(map[string]mcItem, len(keys))
	for _, k := range keys {
		head := m.call("mg " + k + " v f")
		if head == "EN" {
			continue
		}
		var n int
		var flags uint32
		if _, err := fmt.Sscanf(head, "VA %d f%d", &n, &flags); err != nil {
			t.Fatalf("%s: mg %s: %q: %v", addr, k, head, err)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(m.r, buf); err != nil {
			t.Fatal(err)
		}
		items[k] = mcItem{value: string(buf[:n]), flags: flags}
	}
	return items
}

// mcConverged waits until the gateway has nothing queued or in flight, then checks
// every backend holds exactly the same items (values and flags) for every key any
// of them lists, plus the keys named, and returns them.
func (h *harness) mcConverged(t testing.TB, keys ...string) map[string]mcItem {
	t.Helper()
	h.drained(t)
	for _, b := range h.mc {
		keys = append(keys, mcKeys(t, b.Addr)...)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	first := mcItems(t, h.mc[0].Addr, keys)
	for i, b := range h.mc[1:] {
		if other := mcItems(t, b.Addr, keys); !maps.Equal(first, other) {
			t.Fatalf("backend %d holds %d items that differ from backend 0's %d: %s", i+1, len(other), len(first), diffItems(first, other))
		}
	}
	return first
}

func diffItems(a, b map[string]mcItem) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if bv, ok := b[k]; !ok || bv != a[k] {
			out = append(out, fmt.Sprintf("%s: %q/%d vs %q/%d (present %v)", k, trunc(a[k].value), a[k].flags, trunc(bv.value), bv.flags, ok))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k+": only on the other backend")
		}
	}
	if len(out) > 10 {
		out = append(out[:10], "...")
	}
	return strings.Join(out, "; ")
}

func trunc(s string) string {
	if len(s) > 20 {
		return s[:20] + "..." + strconv.Itoa(len(s))
	}
	return s
}

// backendGet reads a key directly from every backend.
func (h *harness) backendGet(t testing.TB, key string) []*memcache.Item {
	t.Helper()
	out := make([]*memcache.Item, len(h.mc))
	for i, b := range h.mc {
		c := memcache.New(b.Addr)
		it, err := c.Get(key)
		if err != nil && err != memcache.ErrCacheMiss {
			t.Fatalf("backend %d get %s: %v", i, key, err)
		}
		out[i] = it
		_ = c.Close()
	}
	return out
}

// runMCClients runs work for n gomemcache clients concurrently (one connection
// each) and fails with the first error.
func runMCClients(t testing.TB, h *harness, n int, work func(w int, c *memcache.Client) error) {
	t.Helper()
	runConcurrently(t, n, func(w int) error {
		c := memcache.New(h.addr)
		c.Timeout = 10 * time.Second
		c.MaxIdleConns = 1
		defer c.Close()
		return work(w, c)
	})
}
