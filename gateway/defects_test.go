package gateway_test

// Reproductions of the defects found by adversarial testing (crashes, replies
// matched to the wrong command, stuck transactions, writes lost without a flag,
// reads from backends known to be wrong), each against real redis-server processes.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/redis/go-redis/v9"
)

// exchange writes input on a new connection to addr, half-closes it, and returns
// everything read until the other side closes (or 5 s pass).
func exchange(t testing.TB, addr, input string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, input); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("no close within 5s after %q; got %q", input, out)
		}
	}
	return string(out)
}

// commandsSeen returns the command names a backend has executed (INFO commandstats).
func commandsSeen(t testing.TB, r *redisServer) []string {
	t.Helper()
	info, err := r.Client(0).Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(info, "\n") {
		if name, ok := strings.CutPrefix(line, "cmdstat_"); ok {
			names = append(names, name[:strings.IndexByte(name, ':')])
		}
	}
	return names
}

// TestHostileLengthsCloseOnlyThatClient: inputs that crashed the gateway (negative
// and huge bulk lengths) get Redis's error and a close; nothing reaches a backend,
// and another client connected meanwhile keeps being served.
func TestHostileLengthsCloseOnlyThatClient(t *testing.T) {
	h := withRedis(t, 2)
	other := h.client(t, 0)
	if err := other.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		"*1\r\n$-2\r\n", "*1\r\n$9223372036854775807\r\nab", "*1\r\n$-1\r\n",
		"*1\r\n$4611686018427387904\r\n", "*2\r\n$3\r\nGET\r\n$99999999999999999999\r\n",
		"*1\r\n$04\r\nPING\r\n", "*3000000000\r\n", "*1\r\n+PING\r\n",
	} {
		got := exchange(t, h.addr, in)
		if !strings.HasPrefix(got, "-ERR Protocol error: ") || strings.Count(got, "\r\n") != 1 {
			t.Errorf("%q: got %q, want one Redis protocol error and a close", in, got)
		}
		if v, err := other.Get(ctx, "k").Result(); v != "v" || err != nil {
			t.Fatalf("other client after %q: %q, %v", in, v, err)
		}
	}
	if got := exchange(t, h.addr, "*1\r\n$-2\r\n"); got != "-ERR Protocol error: invalid bulk length\r\n" {
		t.Fatalf("got %q", got)
	}
	if n := h.gw.Stats().SessionPanics.Load(); n != 0 {
		t.Fatalf("%d session panics", n)
	}
	for _, b := range h.backends {
		for _, name := range commandsSeen(t, b) {
			switch name {
			case "ping", "set", "get", "info", "hello", "client": // the test's own direct clients
			default:
				t.Errorf("backend %s executed %q: malformed input was forwarded", b.Addr, name)
			}
		}
	}
}

// TestInlineCommandsAsRedis sends inline commands (Redis's sdssplitargs quoting) to a
// lone redis-server and to the gateway: the replies are the same bytes, and so is
// the data on every backend.
func TestInlineCommandsAsRedis(t *testing.T) {
	lone := testserver.StartRedis(t)
	h := withRedis(t, 2)
	script := strings.Join([]string{
		`SET k1 "x\x41y"`, `SET k2 'x\ny'`, `SET k3 b"c"`, "SET\tk4\tv", `SET k5 "a\tb\"c\\"`,
		`SET k6 'it\'s'`, `SET k7 "\x4"`, "  SET   k8   v8  ", "", `MGET k1 k2 k3 k4 k5 k6 k7 k8`,
		`ECHO "\x00\xff"`, `SET k9 "never" extra"`,
	}, "\r\n") + "\r\n"
	want := exchange(t, lone.Addr, script)
	if got := exchange(t, h.addr, script); got != want {
		t.Fatalf("gateway:\n%q\nlone redis:\n%q", got, want)
	}
	h.converged(t)
	if lone.Digest(t) != h.backends[0].Digest(t) {
		t.Fatal("backends' data differs from the lone redis-server's")
	}
}

// TestTransactionErrorsAsRedis: inside MULTI, an unknown command and a wrong arity are
// answered at once and EXEC answers EXECABORT, byte for byte as a lone Redis; nothing
// of the aborted transaction reaches a backend.
func TestTransactionErrorsAsRedis(t *testing.T) {
	lone := testserver.StartRedis(t)
	h := withRedis(t, 2)
	script := "MULTI\r\nSET a 1\r\nFOO x y\r\nGET\r\nCONFIG GET\r\nCONFIG nosuch x\r\nEXEC\r\nGET a\r\n" +
		"MULTI\r\nSET b 1\r\nINCR b\r\nEXEC\r\nEXEC\r\nDISCARD\r\n"
	want := exchange(t, lone.Addr, script)
	if got := exchange(t, h.addr, script); got != want {
		t.Fatalf("gateway:\n%q\nlone redis:\n%q", got, want)
	}
	h.converged(t)
}

// TestTransactionBounded: a MULTI that queues more than max_request_bytes is
// discarded (an error at the command that crosses the bound, EXECABORT at EXEC).
func TestTransactionBounded(t *testing.T) {
	h := withRedis(t, 2, "max_request_bytes=2048")
	val := strings.Repeat("x", 800)
	got := exchange(t, h.addr, "MULTI\r\nSET a "+val+"\r\nSET b "+val+"\r\nSET c "+val+"\r\nEXEC\r\nEXISTS a\r\n")
	want := "+OK\r\n+QUEUED\r\n+QUEUED\r\n-ERR dynode-broadcaster: transaction larger than max_request_bytes, discarded\r\n" +
		"-EXECABORT Transaction discarded because of previous errors.\r\n:0\r\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestTransactionAdmittedWhole: a backlog near its limit admits a MULTI block whole
// or not at all, so no shared connection is left inside MULTI (another client's
// commands are never QUEUED); a block larger than backend_backlog_bytes on healthy
// backends is applied everywhere.
func TestTransactionAdmittedWhole(t *testing.T) {
	backends := startRedisBackends(t, 2)
	h := startGateway(t, []string{backends[0].Addr, backends[1].Addr}, "backend_backlog_bytes=1024", "auto_resync=false")
	h.backends = backends
	c := h.client(t, 0)

	big := strings.Repeat("v", 100<<10) // 100 KB block against a 1 KiB limit, healthy backends
	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Set(ctx, "k", big, 0); return nil })
	if err != nil || cmds[0].(*redis.StatusCmd).Val() != "OK" {
		t.Fatalf("MULTI SET 100KB EXEC: %v %v", cmds, err)
	}
	h.eachBackend(t, 0, func(i int, b *redis.Client) {
		if n := b.StrLen(ctx, "k").Val(); n != int64(len(big)) {
			t.Fatalf("backend %d: k has %d bytes, want %d", i, n, len(big))
		}
	})

	// Backend 1 down: fill its backlog close to the limit, then a transaction that
	// does not fit there.
	backends[1].Stop()
	eventually(t, func() bool { return !h.gw.Backends()[1].Connected }, "backend 1 down")
	// One larger write first: the bound does not count the largest request waiting.
	if err := c.Set(ctx, "f", strings.Repeat("f", 700), 0).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 0; h.gw.Backends()[1].QueuedBytes < 1600; i++ {
		if err := c.Set(ctx, "f"+strconv.Itoa(i), "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "t1", strings.Repeat("x", 300), 0)
		p.Set(ctx, "t2", "y", 0)
		return nil
	})
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	if st := h.gw.Backends()[1]; !st.OutOfSync || st.LostWrites != 4 {
		t.Fatalf("backend 1 after a block that does not fit: %+v (want out of sync, 4 lost: MULTI, 2 SETs, EXEC)", st)
	}
	// Backend 1 comes back on its port: its stream must not be inside a MULTI.
	restarted := startRedisOnPort(t, backends[1].Port)
	h.backends[1] = restarted
	waitUp(t, h.gw, 2)
	h.drained(t)
	other := h.client(t, 0)
	if v, err := other.Set(ctx, "z", "1", 0).Result(); v != "OK" || err != nil {
		t.Fatalf("SET z after reconnect = %q, %v", v, err)
	}
	h.drained(t)
	if v := restarted.Client(0).Get(ctx, "z").Val(); v != "1" {
		t.Fatalf("restarted backend: z = %q (its stream was left inside MULTI?)", v)
	}
	if n := restarted.Client(0).Exists(ctx, "t1", "t2").Val(); n != 0 {
		t.Fatalf("restarted backend has %d keys of the refused transaction", n)
	}
}

// TestLargeRequestOnHealthyBackends: one request larger than backend_backlog_bytes
// (it is bounded by max_request_bytes) is applied on healthy backends, also while
// other clients write; nobody is flagged.
func TestLargeRequestOnHealthyBackends(t *testing.T) {
	h := withRedis(t, 3, "backend_backlog_bytes=1048576")
	big := strings.Repeat("b", 4<<20)
	var writes atomic.Int64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		runClientsUntil(h, 8, stop, func(w int, c *redis.Client) error {
			writes.Add(1)
			return c.Incr(ctx, "n"+strconv.Itoa(w)).Err()
		}, done)
	}()
	c := h.client(t, 0)
	for i := range 5 {
		if err := c.Set(ctx, "big"+strconv.Itoa(i), big, 0).Err(); err != nil {
			t.Fatalf("SET of 4 MiB #%d: %v", i, err)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("small writes beside the large ones: %v", err)
	}
	for _, b := range h.gw.Backends() {
		if b.OutOfSync || b.LostWrites != 0 {
			t.Fatalf("backend flagged by large requests: %+v", b)
		}
	}
	h.converged(t)
	t.Logf("%d small writes beside five 4 MiB SETs", writes.Load())
}

// runClientsUntil runs work in a loop on n clients until stop closes, then sends the
// first error (or nil) on done.
func runClientsUntil(h *harness, n int, stop chan struct{}, work func(w int, c *redis.Client) error, done chan<- error) {
	errs := make(chan error, n)
	for w := range n {
		go func() {
			c := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2, PoolSize: 1})
			defer c.Close()
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				if err := work(w, c); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	done <- first
}

// TestLuaRepliesRedisCanSend: a 2 MB error line and tables nested 100 deep from Lua
// are ordinary replies: no backend connection is reset or flagged, and the writes of
// other clients meanwhile all succeed.
func TestLuaRepliesRedisCanSend(t *testing.T) {
	h := withRedis(t, 3)
	c := h.client(t, 0)
	err := c.Eval(ctx, "return redis.error_reply(string.rep('x',2000000))", nil).Err()
	if err == nil || !strings.HasSuffix(err.Error(), strings.Repeat("x", 2000000)) {
		t.Fatalf("long error reply: %d bytes, want 2000000 x", len(fmt.Sprint(err)))
	}
	nested := "local t = {1} for i = 1, 99 do t = {t} end return t"
	v, err := c.Eval(ctx, nested, nil).Result()
	if err != nil {
		t.Fatalf("nested reply: %v", err)
	}
	for depth := 1; depth < 100; depth++ {
		v = v.([]any)[0]
	}
	if got := v.([]any)[0]; got != int64(1) {
		t.Fatalf("innermost element = %v", got)
	}
	if n, err := c.Incr(ctx, "n").Result(); n != 1 || err != nil {
		t.Fatalf("INCR after = %d, %v", n, err)
	}
	for _, b := range h.gw.Backends() {
		if b.Connects != 1 || b.OutOfSync {
			t.Fatalf("backend reset or flagged by a reply Redis sent: %+v", b)
		}
	}
	h.converged(t)
}

// TestScriptDebugRefused: SCRIPT DEBUG would put the shared connection's next EVAL
// into the Lua debugger for every client: it is refused, and EVAL, SET and GET of
// other clients keep working.
func TestScriptDebugRefused(t *testing.T) {
	h := withRedis(t, 2)
	c := h.client(t, 0)
	if err := c.Do(ctx, "SCRIPT", "DEBUG", "YES").Err(); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("SCRIPT DEBUG YES: %v", err)
	}
	if v, err := c.Eval(ctx, "return redis.call('SET', KEYS[1], 'x')", []string{"s"}).Result(); v != "OK" || err != nil {
		t.Fatalf("EVAL after: %v, %v", v, err)
	}
	other := h.client(t, 0)
	if err := other.Set(ctx, "a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v := other.Get(ctx, "a").Val(); v != "1" {
		t.Fatalf("GET a = %q", v)
	}
	h.converged(t)
}

// TestPFCountReplicated: PFCOUNT rewrites the HyperLogLog's cached cardinality, so it
// goes to every backend and they stay identical.
func TestPFCountReplicated(t *testing.T) {
	h := withRedis(t, 3)
	c := h.client(t, 0)
	for i := range 50 {
		c.PFAdd(ctx, "hll", "e"+strconv.Itoa(i))
	}
	if n := c.PFCount(ctx, "hll").Val(); n != 50 {
		t.Fatalf("PFCOUNT = %d", n)
	}
	h.converged(t)
}

// TestLargePipelineBeforeReading: a client that writes 20,000 GETSETs of 1 KB (20 MB
// each way) before reading any reply, as a go-redis or redis-py pipeline does, is
// served: the gateway keeps reading while its replies wait to be written.
func TestLargePipelineBeforeReading(t *testing.T) {
	h := withRedis(t, 2)
	c := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2, ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second})
	defer c.Close()
	val := strings.Repeat("v", 1000)
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range 20000 {
			p.GetSet(ctx, "k"+strconv.Itoa(i%100), val)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("pipeline: %v", err)
	}
	if len(cmds) != 20000 || cmds[19999].(*redis.StringCmd).Val() != val {
		t.Fatalf("%d replies", len(cmds))
	}
	h.converged(t)
}

// TestErrorReplyToAppliedWriteIsLost: a backend that answers a write with an error
// the others did not (NOSCRIPT: the script was loaded elsewhere only) missed it: it
// is flagged out of sync with a lost write, and reads and replies avoid it.
func TestErrorReplyToAppliedWriteIsLost(t *testing.T) {
	h := withRedis(t, 2, "read_from=any", "auto_resync=false")
	sha, err := h.backends[0].Client(0).ScriptLoad(ctx, "return redis.call('INCR', KEYS[1])").Result()
	if err != nil {
		t.Fatal(err)
	}
	c := h.client(t, 0)
	if n, err := c.EvalSha(ctx, sha, []string{"n"}).Int(); n != 1 || err != nil {
		t.Fatalf("EVALSHA = %d, %v", n, err)
	}
	// drained says every reply was read; the reader delivers them just after.
	eventually(t, func() bool { st := h.gw.Backends()[1]; return st.OutOfSync && st.LostWrites == 1 },
		"the backend that answered NOSCRIPT out of sync with 1 lost write")
	// Different data on each backend: every read is served by the in-sync one.
	h.backends[0].Client(0).Set(ctx, "who", "in-sync", 0)
	h.backends[1].Client(0).Set(ctx, "who", "out-of-sync", 0)
	for range 20 {
		if v := c.Get(ctx, "who").Val(); v != "in-sync" {
			t.Fatalf("read from the out-of-sync backend: %q", v)
		}
	}
}

// TestOutOfSyncPrimaryNotReplySource: with the primary flagged, replies (an INCR's
// value) come from the in-sync backend, not from the primary's stale data; /readyz
// says when no in-sync backend is left.
func TestOutOfSyncPrimaryNotReplySource(t *testing.T) {
	backends := startRedisBackends(t, 2)
	h := startGateway(t, []string{backends[0].Addr, backends[1].Addr}, "admin_port="+strconv.Itoa(freePort(t)), "auto_resync=false")
	h.backends = backends
	c := h.client(t, 0)
	c.Set(ctx, "n", "100", 0)
	h.drained(t)
	sha, _ := backends[1].Client(0).ScriptLoad(ctx, "return redis.call('INCR', KEYS[1])").Result()
	c.EvalSha(ctx, sha, []string{"n"}) // NOSCRIPT on the primary: it missed this INCR
	eventually(t, func() bool { return h.gw.Backends()[0].OutOfSync }, "the primary flagged out of sync")
	if n := c.Incr(ctx, "n").Val(); n != 102 {
		t.Fatalf("INCR = %d, want 102 from the in-sync backend", n)
	}
	ready := func() (int, string) {
		resp, err := http.Get("http://" + h.gw.AdminAddr().String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := ready(); code != 200 {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	sha0, _ := backends[0].Client(0).ScriptLoad(ctx, "return redis.call('SET', KEYS[1], 'x')").Result()
	c.EvalSha(ctx, sha0, []string{"x"}) // now the secondary misses one
	h.drained(t)
	if code, body := ready(); code != 503 || !strings.Contains(body, "in-sync") {
		t.Fatalf("/readyz with every backend out of sync = %d %s", code, body)
	}
}

// TestLoadingBackendWaitedOut: a backend restarted from an RDB file answers -LOADING
// while it loads; the writes kept for it meanwhile are replayed once it has loaded,
// and none is lost.
func TestLoadingBackendWaitedOut(t *testing.T) {
	backends := startRedisBackends(t, 2)
	h := startGateway(t, []string{backends[0].Addr, backends[1].Addr}, "auto_resync=false")
	h.backends = backends
	// Give backend 1 a dataset that takes a while to load.
	direct := backends[1].Client(0)
	if err := direct.Do(ctx, "DEBUG", "POPULATE", "20000", "pop").Err(); err != nil {
		t.Fatal(err)
	}
	c := h.client(t, 0)
	backends[0].Client(0).Do(ctx, "DEBUG", "POPULATE", "20000", "pop") // the same data on the primary
	if err := direct.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	dir, port := backends[1].Dir(), backends[1].Port
	backends[1].Stop()
	eventually(t, func() bool { return !h.gw.Backends()[1].Connected }, "backend 1 down")
	for i := range 100 {
		if err := c.Incr(ctx, "counter").Err(); err != nil {
			t.Fatalf("INCR %d: %v", i, err)
		}
	}
	// key-load-delay (microseconds per key) makes the load take about 2 s; Redis
	// answers clients during a load only every loading-process-events-interval-bytes
	// (2 MB by default), so a small dataset needs a small interval.
	h.backends[1] = testserver.StartRedisWith(t, port, dir, "--key-load-delay", "100",
		"--loading-process-events-interval-bytes", "1024")
	waitUp(t, h.gw, 2)
	h.drained(t)
	// No replayed write met -LOADING. (It is out of sync all the same: it is another
	// process, restored from a snapshot the gateway cannot prove current.)
	if st := h.gw.Backends()[1]; st.LostWrites != 0 || !strings.Contains(st.OutOfSyncReason, "restarted") {
		t.Fatalf("backend after loading: %+v", st)
	}
	if v := h.backends[1].Client(0).Get(ctx, "counter").Val(); v != "100" {
		t.Fatalf("restarted backend counter = %q, want 100", v)
	}
	if !strings.Contains(h.logs.String(), "LOADING") {
		t.Fatalf("the wait for LOADING was not logged:\n%s", h.logs.String())
	}
	h.converged(t)
}

// TestBackendThatClosesAtOnce: a backend that accepts connections and closes them
// (maxclients reached, protected mode) is redialled with backoff, not in a tight
// loop, and the writes kept for it are never written out and discarded: once a real
// server listens there, it receives them all.
func TestBackendThatClosesAtOnce(t *testing.T) {
	good := startRedisBackends(t, 1)[0]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_, _ = conn.Write([]byte("-ERR max number of clients reached\r\n"))
			conn.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	h := startGatewayPartial(t, []string{good.Addr, ln.Addr().String()}, 1)
	c := h.client(t, 0)
	for i := range 50 {
		if err := c.RPush(ctx, "l", i).Err(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	// Backoff from 100 ms doubling to 800 ms: about 5 attempts in 2 s (a tight loop
	// makes thousands).
	if n := accepted.Load(); n > 12 {
		t.Fatalf("%d connections in 2s: redialled without backoff", n)
	}
	st := h.gw.Backends()[1]
	if st.QueuedBytes == 0 || st.LostWrites != 0 || st.OutOfSync {
		t.Fatalf("refusing backend: %+v (its backlog must be kept)", st)
	}
	if !strings.Contains(h.logs.String(), "max number of clients reached") {
		t.Fatalf("the backend's refusal was not logged:\n%s", h.logs.String())
	}
	ln.Close()
	real := startRedisOnPort(t, port)
	h.backends = []*redisServer{good, real}
	waitUp(t, h.gw, 2)
	h.converged(t)
	if n := real.Client(0).LLen(ctx, "l").Val(); n != 50 {
		t.Fatalf("backend got %d of 50 kept writes", n)
	}
}
