package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestDataTypesReachEveryBackend writes every common data type through a gateway
// with 3 backends and reads the same data directly from each backend.
func TestDataTypesReachEveryBackend(t *testing.T) {
	h := withRedis(t, 3)
	c := h.client(t, 0)
	mustOK := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustOK(c.Set(ctx, "str", "value", 0).Err())
	mustOK(c.Append(ctx, "str", "-more").Err())
	mustOK(c.HSet(ctx, "hash", "f1", "a", "f2", "b").Err())
	mustOK(c.HIncrBy(ctx, "hash", "n", 5).Err())
	mustOK(c.RPush(ctx, "list", "x", "y", "z").Err())
	mustOK(c.LPush(ctx, "list", "w").Err())
	mustOK(c.SAdd(ctx, "set", "m1", "m2", "m3").Err())
	mustOK(c.SRem(ctx, "set", "m2").Err())
	mustOK(c.ZAdd(ctx, "zset", redis.Z{Score: 1, Member: "one"}, redis.Z{Score: 2, Member: "two"}).Err())
	mustOK(c.ZIncrBy(ctx, "zset", 5, "one").Err())
	mustOK(c.Set(ctx, "ttl", "v", time.Hour).Err())
	mustOK(c.Expire(ctx, "str", 2*time.Hour).Err())
	if got, err := c.Incr(ctx, "counter").Result(); err != nil || got != 1 {
		t.Fatalf("INCR through the gateway = %d, %v", got, err)
	}
	if got, err := c.Get(ctx, "str").Result(); err != nil || got != "value-more" {
		t.Fatalf("GET through the gateway = %q, %v", got, err)
	}
	h.drained(t)
	h.eachBackend(t, 0, func(i int, d *redis.Client) {
		check := func(what string, got, want any) {
			t.Helper()
			if !reflect.DeepEqual(got, want) {
				t.Errorf("backend %d %s = %v, want %v", i, what, got, want)
			}
		}
		check("str", d.Get(ctx, "str").Val(), "value-more")
		check("hash", d.HGetAll(ctx, "hash").Val(), map[string]string{"f1": "a", "f2": "b", "n": "5"})
		check("list", d.LRange(ctx, "list", 0, -1).Val(), []string{"w", "x", "y", "z"})
		check("set", d.SMembers(ctx, "set").Val() != nil && d.SCard(ctx, "set").Val() == 2 && d.SIsMember(ctx, "set", "m3").Val(), true)
		check("zset", d.ZRangeWithScores(ctx, "zset", 0, -1).Val(), []redis.Z{{Score: 2, Member: "two"}, {Score: 6, Member: "one"}})
		check("counter", d.Get(ctx, "counter").Val(), "1")
		ttl := d.TTL(ctx, "ttl").Val()
		check("ttl set", ttl > 59*time.Minute && ttl <= time.Hour, true)
		ttl = d.TTL(ctx, "str").Val()
		check("expire applied", ttl > 119*time.Minute && ttl <= 2*time.Hour, true)
	})
	h.converged(t)
}

// TestConcurrentClientsConverge runs 50 clients x 2,000 mixed writes on shared keys
// and checks every backend ends with the same dataset (DEBUG DIGEST), and that the
// counters add up.
func TestConcurrentClientsConverge(t *testing.T) {
	const clients, perClient = 50, 2000
	h := withRedis(t, 3)
	runClients(t, h, clients, func(w int, c *redis.Client) error {
		for i := range perClient {
			key := strconv.Itoa(i % 10)
			var err error
			switch i % 6 {
			case 0:
				err = c.Incr(ctx, "incr:"+key).Err()
			case 1:
				err = c.LPush(ctx, "list:"+key, w*perClient+i).Err()
			case 2:
				err = c.SAdd(ctx, "set:"+key, i%97).Err()
			case 3:
				err = c.Set(ctx, "str:"+key, fmt.Sprintf("w%d-i%d", w, i), 0).Err()
			case 4:
				err = c.HIncrBy(ctx, "hash", key, 1).Err()
			case 5:
				err = c.Append(ctx, "append:"+key, strconv.Itoa(w)).Err()
			}
			if err != nil {
				return fmt.Errorf("client %d op %d: %w", w, i, err)
			}
		}
		return nil
	})
	h.converged(t)
	h.eachBackend(t, 0, func(i int, d *redis.Client) {
		var incrs int64
		for k := range 10 {
			n, _ := d.Get(ctx, "incr:"+strconv.Itoa(k)).Int64()
			incrs += n
		}
		if want := int64(clients * perClient / 6); incrs < want || incrs > want+int64(clients) {
			t.Errorf("backend %d: INCR total %d, want about %d", i, incrs, want)
		}
	})
}

// TestPipelineOf10000 sends 10,000 commands in one go-redis pipeline and checks each
// reply is the one for its command, in order.
func TestPipelineOf10000(t *testing.T) {
	h := withRedis(t, 2)
	c := h.client(t, 0)
	pipe := c.Pipeline()
	incrs := make([]*redis.IntCmd, 0, 5000)
	gets := make([]*redis.StringCmd, 0, 5000)
	for i := range 5000 {
		incrs = append(incrs, pipe.Incr(ctx, "seq"))
		pipe.Set(ctx, "k"+strconv.Itoa(i), i, 0)
		if i%2 == 0 {
			gets = append(gets, pipe.Get(ctx, "k"+strconv.Itoa(i)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range incrs {
		if cmd.Val() != int64(i+1) {
			t.Fatalf("INCR %d returned %d", i, cmd.Val())
		}
	}
	for j, cmd := range gets {
		if cmd.Val() != strconv.Itoa(2*j) {
			t.Fatalf("GET k%d returned %q", 2*j, cmd.Val())
		}
	}
	h.converged(t)
}

// TestSelectIsolation checks that a client in db 3 never writes db 0, although
// clients of both databases share each backend connection.
func TestSelectIsolation(t *testing.T) {
	h := withRedis(t, 2)
	c3 := h.client(t, 3)
	c0 := h.client(t, 0)
	for i := range 200 {
		k := "k" + strconv.Itoa(i%5)
		if err := c3.Set(ctx, k, "db3", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c0.Set(ctx, k, "db0", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if v := c3.Get(ctx, "k1").Val(); v != "db3" {
		t.Fatalf("GET in db 3 through the gateway = %q", v)
	}
	if err := c0.Do(ctx, "SELECT", 16).Err(); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("SELECT 16 = %v, want DB index out of range", err)
	}
	h.drained(t)
	for _, db := range []int{0, 3} {
		h.eachBackend(t, db, func(i int, d *redis.Client) {
			for k := range 5 {
				if v := d.Get(ctx, "k"+strconv.Itoa(k)).Val(); v != "db"+strconv.Itoa(db) {
					t.Errorf("backend %d db %d: k%d = %q", i, db, k, v)
				}
			}
		})
	}
	h.converged(t)
}

// TestWriteReplyPolicies makes backend 0 (the primary) disagree with backends 1 and
// 2, then checks which reply each policy returns and that divergence is counted.
func TestWriteReplyPolicies(t *testing.T) {
	backends := startRedisBackends(t, 3)
	addrs := []string{backends[0].Addr, backends[1].Addr, backends[2].Addr}
	for _, tt := range []struct {
		policy string
		want   []int64 // acceptable INCR replies: primary has 100, the others 0
	}{
		{"primary", []int64{101}},
		{"quorum", []int64{1}},
		{"all", []int64{101}},
		{"first", []int64{101, 1}},
	} {
		t.Run(tt.policy, func(t *testing.T) {
			backends[0].Client(0).Set(ctx, "n", 100, 0)
			backends[1].Client(0).Set(ctx, "n", 0, 0)
			backends[2].Client(0).Set(ctx, "n", 0, 0)
			h := startGateway(t, addrs, "write_reply="+tt.policy)
			h.backends = backends
			got, err := h.client(t, 0).Incr(ctx, "n").Result()
			if err != nil {
				t.Fatal(err)
			}
			if !contains(tt.want, got) {
				t.Fatalf("write_reply=%s: INCR = %d, want one of %v", tt.policy, got, tt.want)
			}
			eventually(t, func() bool { return h.gw.Stats().Divergences.Load() == 1 }, "divergences = 1")
			if logs := h.logs.String(); !strings.Contains(logs, "backends replied differently") || !strings.Contains(logs, "cmd=INCR") {
				t.Fatalf("divergence not logged with the command name:\n%s", logs)
			}
			// The reply 101 as a word of its own: not in a time stamp nor in a port.
			if replyValue.MatchString(h.logs.String()) {
				t.Fatalf("log shows a reply value:\n%s", h.logs.String())
			}
			// Agreeing backends do not count as divergence.
			h.client(t, 0).Set(ctx, "same", "x", 0)
			h.drained(t)
			if n := h.gw.Stats().Divergences.Load(); n != 1 {
				t.Fatalf("divergences after an agreeing SET = %d, want 1", n)
			}
		})
	}
}

// replyValue matches the number 101 where it is not part of a time stamp, an
// address or a longer number.
var replyValue = regexp.MustCompile(`(^|[^0-9:.])101($|[^0-9])`)

func contains(xs []int64, x int64) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestDiscardResponses checks write-and-forget: no byte comes back to the client,
// every write still reaches every backend.
func TestDiscardResponses(t *testing.T) {
	h := withRedis(t, 2, "discard_responses=true")
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var req strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&req, "*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$1\r\nv\r\n", len(strconv.Itoa(i))+1, i)
	}
	req.WriteString("*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n")
	if _, err := io.WriteString(conn, req.String()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n0, _ := h.backends[0].Client(0).DBSize(ctx).Result()
		n1, _ := h.backends[1].Client(0).DBSize(ctx).Result()
		if n0 == 1000 && n1 == 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backends hold %d and %d keys, want 1000", n0, n1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := conn.Read(make([]byte, 64)); n != 0 || !isTimeout(err) {
		t.Fatalf("client received %d bytes (err %v); want none", n, err)
	}
	h.converged(t)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestMalformedInputClosesOnlyThatClient sends a malformed frame after a valid
// command: the valid one is executed, the client gets a protocol error and is
// disconnected, nothing malformed reaches a backend, and others keep working.
func TestMalformedInputClosesOnlyThatClient(t *testing.T) {
	h := withRedis(t, 2)
	other := h.client(t, 0)
	if err := other.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"*2\r\n$3\r\nSET\r\n$x\r\n", "*1\r\n+PING\r\n", "$4 PING\r\n", "*a\r\n"} {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, "*3\r\n$3\r\nSET\r\n$4\r\ngood\r\n$1\r\n1\r\n"+bad+"*3\r\n$3\r\nSET\r\n$5\r\nafter\r\n$1\r\n1\r\n")
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		all, _ := io.ReadAll(conn) // returns at EOF: the gateway closed the connection
		conn.Close()
		if !strings.HasPrefix(string(all), "+OK\r\n-ERR Protocol error") {
			t.Fatalf("bad input %q: client got %q, want +OK then -ERR Protocol error and close", bad, all)
		}
	}
	if err := other.Set(ctx, "still", "works", 0).Err(); err != nil {
		t.Fatalf("other client broken: %v", err)
	}
	h.drained(t)
	h.eachBackend(t, 0, func(i int, d *redis.Client) {
		if d.Exists(ctx, "after").Val() != 0 || d.Get(ctx, "good").Val() != "1" {
			t.Errorf("backend %d: the command before the bad frame must run, none after it", i)
		}
		info := d.Info(ctx, "stats").Val()
		if !strings.Contains(info, "unexpected_error_replies:0") {
			t.Errorf("backend %d saw errors:\n%s", i, info)
		}
	})
	if h.gw.Stats().ProtocolErrors.Load() != 4 {
		t.Fatalf("protocol errors = %d, want 4", h.gw.Stats().ProtocolErrors.Load())
	}
}

// TestLocalCommands covers what the gateway answers itself.
func TestLocalCommands(t *testing.T) {
	h := withRedis(t, 1)
	c := h.client(t, 0)
	if v := c.Ping(ctx).Val(); v != "PONG" {
		t.Fatalf("PING = %q", v)
	}
	if v := c.Echo(ctx, "hi there").Val(); v != "hi there" {
		t.Fatalf("ECHO = %q", v)
	}
	conn := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2, PoolSize: 1, ClientName: "app1"})
	defer conn.Close()
	if v := conn.Do(ctx, "CLIENT", "GETNAME").Val(); v != "app1" {
		t.Fatalf("CLIENT GETNAME = %v", v)
	}
	if id, err := conn.Do(ctx, "CLIENT", "ID").Int64(); err != nil || id <= 0 {
		t.Fatalf("CLIENT ID = %d, %v", id, err)
	}
	if v, err := c.Do(ctx, "HELLO", "3").Result(); err != nil || fmt.Sprint(v.(map[any]any)["proto"]) != "3" {
		t.Fatalf("HELLO 3 = %v, %v", v, err)
	}
	if err := c.Do(ctx, "HELLO", "4").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPROTO") {
		t.Fatalf("HELLO 4 = %v, want NOPROTO", err)
	}
	hello, err := c.Do(ctx, "HELLO", "2").Slice()
	if err != nil || len(hello) != 14 || hello[5] != int64(2) {
		t.Fatalf("HELLO 2 = %v, %v", hello, err)
	}
	// go-redis in RESP3.
	c3 := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 3})
	defer c3.Close()
	if err := c3.Set(ctx, "r3", "ok", 0).Err(); err != nil {
		t.Fatalf("go-redis with Protocol 3: %v", err)
	}
	if err := c.Do(ctx, "SYNC").Err(); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("SYNC = %v, want not supported", err)
	}
	if docs, err := c.Do(ctx, "COMMAND", "DOCS", "get").Slice(); err != nil || len(docs) != 2 {
		t.Fatalf("COMMAND DOCS get = %v, %v", docs, err)
	}
	if n, err := c.Do(ctx, "COMMAND", "COUNT").Int64(); err != nil || n < 200 {
		t.Fatalf("COMMAND COUNT = %d, %v", n, err)
	}
	raw, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _ = io.WriteString(raw, "PING\r\nQUIT\r\n")
	all, _ := io.ReadAll(bufio.NewReader(raw))
	if string(all) != "+PONG\r\n+OK\r\n" {
		t.Fatalf("inline PING + QUIT = %q", all)
	}
}

// TestBackendDownAtStart starts the gateway with one backend not running: it
// serves the others, logs the unreachable one, and replays its backlog once it runs.
func TestBackendDownAtStart(t *testing.T) {
	live := startRedisBackends(t, 2)
	deadPort := freePort(t)
	dead := net.JoinHostPort("127.0.0.1", strconv.Itoa(deadPort))
	h := startGatewayPartial(t, []string{live[0].Addr, dead, live[1].Addr}, 2)
	c := h.client(t, 0)
	for i := range 100 {
		if err := c.Set(ctx, "k"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatalf("SET with a backend down: %v", err)
		}
	}
	if v := c.Get(ctx, "k7").Val(); v != "7" {
		t.Fatalf("GET = %q", v)
	}
	if !strings.Contains(h.logs.String(), "backend unreachable") || !strings.Contains(h.logs.String(), dead) {
		t.Fatalf("unreachable backend not logged:\n%s", h.logs.String())
	}
	// Bring it up: the 100 writes it missed are replayed in order.
	revived := startRedisOnPort(t, deadPort)
	waitUp(t, h.gw, 3)
	h.backends = []*redisServer{live[0], revived, live[1]}
	h.converged(t)
	if n := revived.Client(0).DBSize(ctx).Val(); n != 100 {
		t.Fatalf("revived backend holds %d keys, want 100", n)
	}
}

// TestTransactions: MULTI/EXEC blocks from concurrent clients stay atomic and in the
// same place of the order on every backend; errors follow Redis.
func TestTransactions(t *testing.T) {
	h := withRedis(t, 3)
	const clients, rounds = 10, 200
	runClients(t, h, clients, func(_ int, c *redis.Client) error {
		for range rounds {
			var a, b *redis.IntCmd
			_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				a = p.Incr(ctx, "a")
				p.Ping(ctx)
				b = p.Incr(ctx, "b")
				return nil
			})
			if err != nil {
				return err
			}
			if a.Val() != b.Val() {
				return fmt.Errorf("transaction not atomic: a=%d b=%d", a.Val(), b.Val())
			}
		}
		return nil
	})
	h.converged(t)
	h.eachBackend(t, 0, func(i int, d *redis.Client) {
		if a, b := d.Get(ctx, "a").Val(), d.Get(ctx, "b").Val(); a != strconv.Itoa(clients*rounds) || b != a {
			t.Errorf("backend %d: a=%s b=%s, want %d each", i, a, b, clients*rounds)
		}
	})

	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	send := func(cmd string) string {
		t.Helper()
		_, _ = io.WriteString(conn, cmd+"\r\n")
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return strings.TrimSpace(line)
	}
	for _, step := range [][2]string{
		{"EXEC", "-ERR EXEC without MULTI"},
		{"DISCARD", "-ERR DISCARD without MULTI"},
		{"MULTI", "+OK"},
		{"MULTI", "-ERR MULTI calls can not be nested"},
		{"SET t 1", "+QUEUED"},
		{"DISCARD", "+OK"},
		{"MULTI", "+OK"},
		{"SUBSCRIBE ch", "-ERR command 'SUBSCRIBE' cannot be used inside MULTI through dynode-broadcaster"},
		{"SET t 2", "+QUEUED"},
		{"EXEC", "-EXECABORT Transaction discarded because of previous errors."},
		{"MULTI", "+OK"},
		{"SET t 3", "+QUEUED"},
		{"GET t", "+QUEUED"},
		{"EXEC", "*2"},
	} {
		if got := send(step[0]); got != step[1] {
			t.Fatalf("%s: got %q, want %q", step[0], got, step[1])
		}
	}
	h.drained(t)
	h.eachBackend(t, 0, func(i int, d *redis.Client) {
		if v := d.Get(ctx, "t").Val(); v != "3" {
			t.Errorf("backend %d: t = %q, want 3 (discarded and aborted transactions never ran)", i, v)
		}
	})
}
