package gateway_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dynode/dynode-broadcaster/internal/testserver"
)

// Deep pipelines through a primary with latency: a client that has sent more than
// one read takes has the rest read without waiting (session.readAvailable), into
// buffers that grow while the socket has more, so a burst takes all it sent. The
// tests check what that must not change: every reply in order, commands cut at any
// buffer's end, and each backend's data.

// deepPipelineValue is the value of the i-th SET of a deep pipeline: mostly small,
// every 97th 20 KiB and more, so that buffers grow mid-command as well as between
// commands.
func deepPipelineValue(w, i int) []byte {
	size := 1 + (i*31+w*7)%300
	if i%97 == 0 {
		size = 20<<10 + i%1000
	}
	return largeValue(uint64(w<<24|i), size)
}

// slowPrimary starts n Redis backends, the first (the primary, whose replies a
// client waits for) behind a 5 ms latency each way, and a gateway in front.
func slowPrimary(t *testing.T, n int, settings ...string) *harness {
	t.Helper()
	return farPrimary(t, n, 5, settings...)
}

// farPrimary is slowPrimary with a latency of ms milliseconds each way.
func farPrimary(t *testing.T, n, ms int, settings ...string) *harness {
	t.Helper()
	backends := startRedisBackends(t, n)
	proxy := testserver.StartProxy(t, backends[0].Addr)
	for _, stream := range []string{"upstream", "downstream"} {
		proxy.AddToxic(fmt.Sprintf(`{"name":%q,"type":"latency","stream":%q,"attributes":{"latency":%d}}`, stream, stream, ms))
	}
	addrs := []string{proxy.Addr}
	for _, b := range backends[1:] {
		addrs = append(addrs, b.Addr)
	}
	h := startGateway(t, addrs, settings...)
	h.backends = backends
	return h
}

// TestDeepPipelineRedis pipelines 6,000 commands from each of 3 clients (INCR,
// APPEND to one log, SET of mixed sizes) through a slow primary and 2 more backends.
func TestDeepPipelineRedis(t *testing.T) {
	const clients, count = 3, 2000
	h := slowPrimary(t, 3)
	var logs [clients]strings.Builder
	for w := range clients {
		for i := range count {
			fmt.Fprintf(&logs[w], "%d,", i)
		}
	}
	runClients(t, h, clients, func(w int, c *redis.Client) error {
		pipe := c.Pipeline()
		incrs := make([]*redis.IntCmd, count)
		appends := make([]*redis.IntCmd, count)
		sets := make([]*redis.StatusCmd, count)
		for i := range count {
			incrs[i] = pipe.Incr(ctx, fmt.Sprintf("deep:ctr:%d", w))
			appends[i] = pipe.Append(ctx, fmt.Sprintf("deep:log:%d", w), strconv.Itoa(i)+",")
			sets[i] = pipe.Set(ctx, fmt.Sprintf("deep:%d:%d", w, i), deepPipelineValue(w, i), 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("client %d: %w", w, err)
		}
		logLen := 0
		for i := range count {
			logLen += len(strconv.Itoa(i)) + 1
			if got := incrs[i].Val(); got != int64(i+1) {
				return fmt.Errorf("client %d: INCR %d answered %d", w, i, got)
			}
			if got := appends[i].Val(); got != int64(logLen) {
				return fmt.Errorf("client %d: APPEND %d answered %d, want %d", w, i, got, logLen)
			}
			if got := sets[i].Val(); got != "OK" {
				return fmt.Errorf("client %d: SET %d answered %q", w, i, got)
			}
		}
		return nil
	})
	h.drained(t)
	h.eachBackend(t, 0, func(b int, c *redis.Client) {
		for w := range clients {
			if got, _ := c.Get(ctx, fmt.Sprintf("deep:log:%d", w)).Result(); got != logs[w].String() {
				t.Fatalf("backend %d: client %d's log is %d bytes, not the %d appended in order", b, w, len(got), logs[w].Len())
			}
		}
	})
	h.redisHold(t, func(check func(w, i int)) {
		for w := range clients {
			for i := 0; i < count; i += 7 {
				check(w, i)
			}
		}
	}, func(w, i int) string { return fmt.Sprintf("deep:%d:%d", w, i) }, deepPipelineValue)
	h.converged(t)
	h.noDivergence(t)
}

// TestDeepPipelineMemcache sends 6,000 commands (incr, append, set) from each of 3
// clients in one write, through a slow primary: each reply in order, and every
// backend's log in the order the client appended.
func TestDeepPipelineMemcache(t *testing.T) {
	const clients, count = 3, 2000
	mcs := make([]*testserver.Memcached, 2)
	for i := range mcs {
		mcs[i] = testserver.StartMemcached(t)
	}
	proxy := testserver.StartProxy(t, mcs[0].Addr)
	proxy.AddToxic(`{"name":"up","type":"latency","stream":"upstream","attributes":{"latency":5}}`)
	proxy.AddToxic(`{"name":"down","type":"latency","stream":"downstream","attributes":{"latency":5}}`)
	h := startGateway(t, []string{proxy.Addr, mcs[1].Addr}, "protocol=memcache")
	h.mc = mcs
	var logs [clients]bytes.Buffer
	for w := range clients {
		logs[w].WriteString("start,")
		for i := range count {
			fmt.Fprintf(&logs[w], "%d,", i)
		}
	}
	runConcurrently(t, clients, func(w int) error {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		ctr, log := fmt.Sprintf("deep:ctr:%d", w), fmt.Sprintf("deep:log:%d", w)
		req := fmt.Appendf(nil, "set %s 0 0 1\r\n0\r\nset %s 0 0 6\r\nstart,\r\n", ctr, log)
		for i := range count {
			item := strconv.Itoa(i) + ","
			v := deepPipelineValue(w, i)
			req = fmt.Appendf(req, "incr %s 1\r\nappend %s 0 0 %d\r\n%s\r\nset deep:%d:%d 0 0 %d\r\n", ctr, log, len(item), item, w, i, len(v))
			req = append(append(req, v...), "\r\n"...)
		}
		go func() { _, _ = conn.Write(req) }() // replies are read meanwhile
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		r := bufio.NewReader(conn)
		expect := func(what int, want string) error {
			line, err := r.ReadString('\n')
			if err != nil || line != want+"\r\n" {
				return fmt.Errorf("client %d: reply %d is %q (%v), want %q", w, what, line, err, want)
			}
			return nil
		}
		for k := range 2 {
			if err := expect(k, "STORED"); err != nil {
				return err
			}
		}
		for i := range count {
			for k, want := range []string{strconv.Itoa(i + 1), "STORED", "STORED"} {
				if err := expect(2+3*i+k, want); err != nil {
					return err
				}
			}
		}
		return nil
	})
	h.drained(t)
	for w := range clients {
		for b, it := range h.backendGet(t, fmt.Sprintf("deep:log:%d", w)) {
			if it == nil || !bytes.Equal(it.Value, logs[w].Bytes()) {
				t.Fatalf("backend %d: client %d's log differs from the appends in order", b, w)
			}
		}
	}
	h.memcachedHold(t, clients, count, func(w, i int) string { return fmt.Sprintf("deep:%d:%d", w, i) }, deepPipelineValue)
	h.noDivergence(t)
}

// TestDeepPipelineBurstsBeyondTheCap: a client that has sent thousands of commands
// ahead, through a primary in another region (15 ms each way), has them taken in
// bursts of more than maxBurstCap (1,024) commands: once two bursts' first replies
// took farTrip or more, bursts read ahead grow their command cap with their buffer
// (session.burstLimit). A burst's replies go out in one write, so the client sees a
// read of more than 1,024 replies. Before, bursts stopped at 1,024 commands, and a
// burst that took only the incomplete command the last one left made the next read
// stop at 32 KiB: redis-cli --pipe through a primary 20 ms away ran at 16,000 SETs/s.
func TestDeepPipelineBurstsBeyondTheCap(t *testing.T) {
	const count = 20000
	h := farPrimary(t, 2, 15)
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var req []byte
	for range count {
		req = append(req, "*2\r\n$4\r\nINCR\r\n$9\r\nburst:ctr\r\n"...)
	}
	go func() { _, _ = conn.Write(req) }() // replies are read meanwhile
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 1<<20)
	var pending []byte
	next, most := 1, 0
	for next <= count {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("after %d replies: %v", next-1, err)
		}
		most = max(most, bytes.Count(buf[:n], []byte("\n")))
		pending = append(pending, buf[:n]...)
		for {
			end := bytes.IndexByte(pending, '\n')
			if end < 0 {
				break
			}
			if want := ":" + strconv.Itoa(next) + "\r\n"; string(pending[:end+1]) != want {
				t.Fatalf("reply %d is %q, want %q", next, pending[:end+1], want)
			}
			pending, next = pending[end+1:], next+1
		}
	}
	if most <= 1024 {
		t.Fatalf("at most %d replies came in one read: bursts stayed within 1,024 commands", most)
	}
	t.Logf("most replies in one read: %d", most)
	h.drained(t)
	h.eachBackend(t, 0, func(b int, c *redis.Client) {
		if got, err := c.Get(ctx, "burst:ctr").Int(); err != nil || got != count {
			t.Fatalf("backend %d: counter %d (%v), want %d", b, got, err, count)
		}
	})
	h.converged(t)
	h.noDivergence(t)
}
