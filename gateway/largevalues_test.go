package gateway_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
)

// largeValue is size pseudo-random bytes determined by seed: a value whose bytes a
// reused buffer would visibly corrupt.
func largeValue(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size)
	for i := 0; i < size; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < size; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// TestLargeValuesIntact writes and reads large values (64 KiB to 5 MiB: read into
// pooled buffers, sent to every backend by reference, replies handed to the client
// from the buffer they were kept in) from several clients at once, pipelined, through
// 3 backends, and checks every reply and every backend's copy byte for byte.
func TestLargeValuesIntact(t *testing.T) {
	h := withRedis(t, 3)
	sizes := []int{64 << 10, 70 << 10, 300 << 10, 1<<20 + 17, 2<<20 - 3, 5 << 20}
	const clients, rounds = 6, 6
	key := func(w, i int) string { return fmt.Sprintf("big:%d:%d", w, i) }
	size := func(w, i int) int { return sizes[(w+i)%len(sizes)] }
	seed := func(w, i int) uint64 { return uint64(w<<16 | i) }
	runClients(t, h, clients, func(w int, c *redis.Client) error {
		for i := range rounds {
			want := largeValue(seed(w, i), size(w, i))
			pipe := c.Pipeline()
			set := pipe.Set(ctx, key(w, i), want, 0)
			get := pipe.Get(ctx, key(w, i))
			var prev *redis.StringCmd
			if i > 0 {
				prev = pipe.Get(ctx, key(w, i-1))
			}
			small := pipe.Incr(ctx, fmt.Sprintf("small:%d", w)) // a small reply among large ones
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("client %d round %d: %w", w, i, err)
			}
			if set.Val() != "OK" {
				return fmt.Errorf("client %d round %d: SET = %q", w, i, set.Val())
			}
			if got, _ := get.Bytes(); !bytes.Equal(got, want) {
				return fmt.Errorf("client %d round %d: GET returned %d bytes that differ from the %d written", w, i, len(got), len(want))
			}
			if prev != nil {
				if got, _ := prev.Bytes(); !bytes.Equal(got, largeValue(seed(w, i-1), size(w, i-1))) {
					return fmt.Errorf("client %d round %d: GET of the previous value differs", w, i)
				}
			}
			if small.Val() != int64(i+1) {
				return fmt.Errorf("client %d round %d: INCR = %d, want %d", w, i, small.Val(), i+1)
			}
		}
		return nil
	})
	h.drained(t)
	h.eachBackend(t, 0, func(b int, c *redis.Client) {
		for w := range clients {
			for i := range rounds {
				got, err := c.Get(ctx, key(w, i)).Bytes()
				if err != nil || !bytes.Equal(got, largeValue(seed(w, i), size(w, i))) {
					t.Fatalf("backend %d: %s holds %d bytes that differ from the value written (err %v)", b, key(w, i), len(got), err)
				}
			}
		}
	})
	h.converged(t)
	h.noDivergence(t)
}

// TestLargeRepliesLentIntact: a bulk reply of 256 KiB or more is read into a pooled
// buffer of its own, up to its end and no further; that buffer goes to the client
// and returns to its pool once written, and the reader reads on into its own. Many clients read values of 64 KiB
// to 2 MiB at once, over and over, so that the buffers cycle through their pools
// while other replies are in flight; each client also replaces its value with SET
// ... GET, whose large old value every backend returns (the primary's is kept, the
// others only compared). A buffer handed on while still in use, or used again by
// its reader, would corrupt a reply.
func TestLargeRepliesLentIntact(t *testing.T) {
	h := withRedis(t, 3)
	sizes := []int{64 << 10, 100 << 10, 256<<10 - 7, 1 << 20, 2<<20 - 100}
	const clients, rounds = 8, 40
	value := func(w, i int) []byte { return largeValue(uint64(w<<24|i), sizes[(w+i)%len(sizes)]) }
	key := func(w int) string { return fmt.Sprintf("lent:%d", w) }
	runClients(t, h, clients, func(w int, c *redis.Client) error {
		if err := c.Set(ctx, key(w), value(w, 0), 0).Err(); err != nil {
			return fmt.Errorf("client %d: SET: %w", w, err)
		}
		for i := 1; i <= rounds; i++ {
			for range 3 {
				if got, err := c.Get(ctx, key(w)).Bytes(); err != nil || !bytes.Equal(got, value(w, i-1)) {
					return fmt.Errorf("client %d round %d: GET returned %d bytes that differ from the %d written (err %v)", w, i, len(got), len(value(w, i-1)), err)
				}
			}
			old, err := c.SetArgs(ctx, key(w), value(w, i), redis.SetArgs{Get: true}).Bytes()
			if err != nil || !bytes.Equal(old, value(w, i-1)) {
				return fmt.Errorf("client %d round %d: SET ... GET returned %d bytes that differ from the %d before (err %v)", w, i, len(old), len(value(w, i-1)), err)
			}
		}
		return nil
	})
	h.drained(t)
	h.eachBackend(t, 0, func(b int, c *redis.Client) {
		for w := range clients {
			if got, err := c.Get(ctx, key(w)).Bytes(); err != nil || !bytes.Equal(got, value(w, rounds)) {
				t.Fatalf("backend %d: %s holds %d bytes that differ from the last value written (err %v)", b, key(w), len(got), err)
			}
		}
	})
	h.converged(t)
	h.noDivergence(t)
}

// TestMidValuesIntact writes and reads values around the size of a client's read
// buffer (1 KiB to 40 KiB, unpipelined: a command that fits the parked reader's
// buffer, one that outgrows it; replies that grow a backend's read buffer) from
// several clients at once through 2 backends, Redis and memcached: each buffer has
// one owner, so no reply and no backend's copy is corrupted by a buffer reused while
// still in use.
func TestMidValuesIntact(t *testing.T) {
	sizes := []int{1 << 10, 8<<10 - 40, 16 << 10, 20<<10 + 3, 32<<10 - 60, 40 << 10}
	const clients, rounds = 8, 200
	key := func(w, i int) string { return fmt.Sprintf("mid:%d:%d", w, i%10) }
	value := func(w, i int) []byte { return largeValue(uint64(w<<20|i), sizes[(w+i)%len(sizes)]) }
	last := func(check func(w, i int)) { // the value each key holds at the end
		for w := range clients {
			for i := rounds - 10; i < rounds; i++ {
				check(w, i)
			}
		}
	}
	t.Run("redis", func(t *testing.T) {
		h := withRedis(t, 2)
		runClients(t, h, clients, func(w int, c *redis.Client) error {
			for i := range rounds {
				want := value(w, i)
				if err := c.Set(ctx, key(w, i), want, 0).Err(); err != nil {
					return fmt.Errorf("client %d round %d: SET: %w", w, i, err)
				}
				if got, err := c.Get(ctx, key(w, i)).Bytes(); err != nil || !bytes.Equal(got, want) {
					return fmt.Errorf("client %d round %d: GET returned %d bytes that differ from the %d written (err %v)", w, i, len(got), len(want), err)
				}
			}
			return nil
		})
		h.drained(t)
		h.redisHold(t, last, key, value)
		h.converged(t)
		h.noDivergence(t)
	})
	t.Run("memcache", func(t *testing.T) {
		h := withMemcached(t, 2)
		runMCClients(t, h, clients, func(w int, c *memcache.Client) error {
			for i := range rounds {
				want := value(w, i)
				if err := c.Set(&memcache.Item{Key: key(w, i), Value: want}); err != nil {
					return fmt.Errorf("client %d round %d: set: %w", w, i, err)
				}
				if it, err := c.Get(key(w, i)); err != nil || !bytes.Equal(it.Value, want) {
					return fmt.Errorf("client %d round %d: get of %d bytes: differs or %v", w, i, len(want), err)
				}
			}
			return nil
		})
		h.drained(t)
		last(func(w, i int) {
			for b, it := range h.backendGet(t, key(w, i)) {
				if it == nil || !bytes.Equal(it.Value, value(w, i)) {
					t.Fatalf("backend %d: %s differs from the value written", b, key(w, i))
				}
			}
		})
		h.noDivergence(t)
	})
}

// TestLargeValuesMemcache does the same with memcached values up to just under its
// 1 MiB item size, through 2 backends.
func TestLargeValuesMemcache(t *testing.T) {
	h := withMemcached(t, 2)
	sizes := []int{64 << 10, 200 << 10, 900 << 10}
	const clients, rounds = 4, 6
	key := func(w, i int) string { return fmt.Sprintf("big:%d:%d", w, i) }
	value := func(w, i int) []byte { return largeValue(uint64(w<<16|i), sizes[(w+i)%len(sizes)]) }
	runMCClients(t, h, clients, func(w int, c *memcache.Client) error {
		for i := range rounds {
			if err := c.Set(&memcache.Item{Key: key(w, i), Value: value(w, i)}); err != nil {
				return fmt.Errorf("client %d round %d: set: %w", w, i, err)
			}
			items, err := c.GetMulti([]string{key(w, i), key(w, max(i-1, 0))})
			if err != nil {
				return fmt.Errorf("client %d round %d: get: %w", w, i, err)
			}
			for _, k := range []int{i, max(i-1, 0)} {
				if it := items[key(w, k)]; it == nil || !bytes.Equal(it.Value, value(w, k)) {
					return fmt.Errorf("client %d round %d: %s read back differs", w, i, key(w, k))
				}
			}
		}
		return nil
	})
	h.drained(t)
	h.memcachedHold(t, clients, rounds, key, value)
	h.noDivergence(t)
}

// redisHold fails the test unless every Redis backend (database 0) holds value(w, i)
// under key(w, i) for each (w, i) that each gives its check.
func (h *harness) redisHold(t *testing.T, each func(check func(w, i int)), key func(w, i int) string, value func(w, i int) []byte) {
	t.Helper()
	h.eachBackend(t, 0, func(b int, c *redis.Client) {
		each(func(w, i int) {
			if got, err := c.Get(ctx, key(w, i)).Bytes(); err != nil || !bytes.Equal(got, value(w, i)) {
				t.Fatalf("backend %d: %s holds %d bytes that differ from the value written (err %v)", b, key(w, i), len(got), err)
			}
		})
	})
}

// memcachedHold fails the test unless every memcached backend holds value(w, i)
// under key(w, i) for each of the clients' count values.
func (h *harness) memcachedHold(t *testing.T, clients, count int, key func(w, i int) string, value func(w, i int) []byte) {
	t.Helper()
	for w := range clients {
		for i := range count {
			for b, it := range h.backendGet(t, key(w, i)) {
				if it == nil || !bytes.Equal(it.Value, value(w, i)) {
					t.Fatalf("backend %d: %s differs from the value written", b, key(w, i))
				}
			}
		}
	}
}

// TestLargeValueAfterIdle sends a large SET (which goes to the backends by
// reference, not through their copy buffers) after the backends have been idle for
// longer than backend_timeout: the time without a reply counts from that write.
func TestLargeValueAfterIdle(t *testing.T) {
	h := withRedis(t, 2, "backend_timeout=300ms")
	time.Sleep(600 * time.Millisecond)
	want := largeValue(1, 1<<20)
	if err := h.client(t, 0).Set(ctx, "big", want, 0).Err(); err != nil {
		t.Fatal(err)
	}
	h.eachBackend(t, 0, func(i int, c *redis.Client) {
		if got, _ := c.Get(ctx, "big").Bytes(); !bytes.Equal(got, want) {
			t.Fatalf("backend %d holds %d bytes, not the value written", i, len(got))
		}
	})
	if strings.Contains(h.logs.String(), "connection lost") {
		t.Fatalf("a backend connection was lost:\n%s", h.logs.String())
	}
}

// TestPipelinedValuesIntact pipelines 48 SETs of values from 5 KiB to 120 KiB, then
// GETs of all of them, from several clients at once through 2 backends, Redis and
// memcached. Several of a client's large commands sent back to back are read into
// one buffer and sent on in one burst; each reply, in order, and each backend's copy
// are checked byte for byte.
func TestPipelinedValuesIntact(t *testing.T) {
	sizes := []int{5 << 10, 16<<10 + 7, 40 << 10, 100 << 10, 120<<10 - 1, 9000}
	const clients, count = 4, 48
	key := func(w, i int) string { return fmt.Sprintf("pipe:%d:%d", w, i) }
	value := func(w, i int) []byte { return largeValue(uint64(w<<20|i|1<<30), sizes[(w+i)%len(sizes)]) }
	t.Run("redis", func(t *testing.T) {
		h := withRedis(t, 2)
		runClients(t, h, clients, func(w int, c *redis.Client) error {
			pipe := c.Pipeline()
			for i := range count {
				pipe.Set(ctx, key(w, i), value(w, i), 0)
			}
			gets := make([]*redis.StringCmd, count)
			for i := range count {
				gets[i] = pipe.Get(ctx, key(w, i))
			}
			cmds, err := pipe.Exec(ctx)
			if err != nil {
				return fmt.Errorf("client %d: %w", w, err)
			}
			for i := range count {
				if st, ok := cmds[i].(*redis.StatusCmd); !ok || st.Val() != "OK" {
					return fmt.Errorf("client %d: SET %d answered %v", w, i, cmds[i])
				}
				if got, _ := gets[i].Bytes(); !bytes.Equal(got, value(w, i)) {
					return fmt.Errorf("client %d: GET %d returned %d bytes that differ from the %d written", w, i, len(got), len(value(w, i)))
				}
			}
			return nil
		})
		h.drained(t)
		all := func(check func(w, i int)) {
			for w := range clients {
				for i := range count {
					check(w, i)
				}
			}
		}
		h.redisHold(t, all, key, value)
		h.converged(t)
		h.noDivergence(t)
	})
	t.Run("memcache", func(t *testing.T) {
		h := withMemcached(t, 2)
		runConcurrently(t, clients, func(w int) error {
			conn, err := net.Dial("tcp", h.addr)
			if err != nil {
				return err
			}
			defer conn.Close()
			var req []byte
			for i := range count {
				v := value(w, i)
				req = fmt.Appendf(req, "set %s 0 0 %d\r\n", key(w, i), len(v))
				req = append(append(req, v...), "\r\n"...)
			}
			for i := range count {
				req = fmt.Appendf(req, "get %s\r\n", key(w, i))
			}
			if _, err := conn.Write(req); err != nil {
				return err
			}
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			r := bufio.NewReader(conn)
			for i := range count {
				if line, err := r.ReadString('\n'); err != nil || line != "STORED\r\n" {
					return fmt.Errorf("client %d: set %d answered %q (%v)", w, i, line, err)
				}
			}
			for i := range count {
				v := value(w, i)
				want := fmt.Sprintf("VALUE %s 0 %d\r\n", key(w, i), len(v))
				if line, err := r.ReadString('\n'); err != nil || line != want {
					return fmt.Errorf("client %d: get %d answered %q (%v)", w, i, line, err)
				}
				got := make([]byte, len(v)+len("\r\nEND\r\n"))
				if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got[:len(v)], v) || string(got[len(v):]) != "\r\nEND\r\n" {
					return fmt.Errorf("client %d: get %d returned a value that differs from the %d bytes written (%v)", w, i, len(v), err)
				}
			}
			return nil
		})
		h.drained(t)
		h.memcachedHold(t, clients, count, key, value)
		h.noDivergence(t)
	})
}

// TestLargeMemcachedRepliesIntact reads memcached values of 100 KiB to 3 MiB through
// 2 backends from several clients at once, pipelined: a get of one key, a get of
// two (a reply of one value is read alone into a buffer of its own, up to the END
// that follows it; a reply with a second value goes on past that point and must be
// read on as usual), a meta get, and a small command between them. Each reply is
// checked byte for byte, in order.
func TestLargeMemcachedRepliesIntact(t *testing.T) {
	h := withMemcached(t, 2)
	sizes := []int{300 << 10, 1<<20 + 17, 100 << 10, 3<<20 - 3}
	const clients, rounds = 4, 5
	key := func(w, i int) string { return fmt.Sprintf("mcbig:%d:%d", w, i) }
	value := func(w, i int) []byte { return largeValue(uint64(w<<20|i|1<<31), sizes[(w+i)%len(sizes)]) }
	runConcurrently(t, clients, func(w int) error {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
		r := bufio.NewReader(conn)
		expect := func(what, want string) error {
			if line, err := r.ReadString('\n'); err != nil || line != want {
				return fmt.Errorf("client %d: %s answered %q, want %q (%v)", w, what, line, want, err)
			}
			return nil
		}
		expectValue := func(what, header string, v []byte) error {
			if err := expect(what, header); err != nil {
				return err
			}
			got := make([]byte, len(v)+2)
			if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got[:len(v)], v) || string(got[len(v):]) != "\r\n" {
				return fmt.Errorf("client %d: %s returned a value that differs from the %d bytes written (%v)", w, what, len(v), err)
			}
			return nil
		}
		if _, err := fmt.Fprintf(conn, "set n%d 0 0 1\r\n0\r\n", w); err != nil {
			return err
		}
		if err := expect("set n", "STORED\r\n"); err != nil {
			return err
		}
		for i := range rounds {
			var req []byte
			for _, k := range []int{i, i + rounds} {
				v := value(w, k)
				req = fmt.Appendf(req, "set %s 0 0 %d\r\n", key(w, k), len(v))
				req = append(append(req, v...), "\r\n"...)
			}
			req = fmt.Appendf(req, "get %s\r\nincr n%d 1\r\nget %s %s\r\nmg %s v\r\n", key(w, i), w, key(w, i), key(w, i+rounds), key(w, i+rounds))
			if _, err := conn.Write(req); err != nil {
				return err
			}
			for range 2 {
				if err := expect("set", "STORED\r\n"); err != nil {
					return err
				}
			}
			a, b := value(w, i), value(w, i+rounds)
			steps := []func() error{
				func() error { return expectValue("get", fmt.Sprintf("VALUE %s 0 %d\r\n", key(w, i), len(a)), a) },
				func() error { return expect("get's end", "END\r\n") },
				func() error { return expect("incr", fmt.Sprintf("%d\r\n", i+1)) },
				func() error { return expectValue("get of two", fmt.Sprintf("VALUE %s 0 %d\r\n", key(w, i), len(a)), a) },
				func() error {
					return expectValue("get of two, second", fmt.Sprintf("VALUE %s 0 %d\r\n", key(w, i+rounds), len(b)), b)
				},
				func() error { return expect("get of two's end", "END\r\n") },
				func() error { return expectValue("mg", fmt.Sprintf("VA %d\r\n", len(b)), b) },
			}
			for _, step := range steps {
				if err := step(); err != nil {
					return fmt.Errorf("round %d: %w", i, err)
				}
			}
		}
		return nil
	})
	h.drained(t)
	h.memcachedHold(t, clients, 2*rounds, key, value)
	h.noDivergence(t)
}
