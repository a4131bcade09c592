package gateway_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/dynode/dynode-broadcaster/internal/testserver"
)

// TestMemcacheStorage stores through gomemcache with every storage command, flags,
// exptime and a 1 MiB value, and checks each backend holds the result.
func TestMemcacheStorage(t *testing.T) {
	h := withMemcached(t, 3)
	c := h.mcClient()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	steps := []struct {
		name string
		run  func() error
		want error
	}{
		{"set", func() error {
			return c.Set(&memcache.Item{Key: "k", Value: []byte("mid"), Flags: 42, Expiration: 3600})
		}, nil},
		{"add existing", func() error { return c.Add(&memcache.Item{Key: "k", Value: []byte("x")}) }, memcache.ErrNotStored},
		{"add new", func() error { return c.Add(&memcache.Item{Key: "fresh", Value: []byte("new"), Flags: 7}) }, nil},
		{"replace missing", func() error { return c.Replace(&memcache.Item{Key: "missing", Value: []byte("x")}) }, memcache.ErrNotStored},
		{"replace", func() error { return c.Replace(&memcache.Item{Key: "fresh", Value: []byte("newer"), Flags: 8}) }, nil},
		{"append", func() error { return c.Append(&memcache.Item{Key: "k", Value: []byte("-end")}) }, nil},
		{"prepend", func() error { return c.Prepend(&memcache.Item{Key: "k", Value: []byte("start-")}) }, nil},
		{"1 MiB", func() error { return c.Set(&memcache.Item{Key: "big", Value: big, Flags: 1}) }, nil},
	}
	for _, s := range steps {
		if err := s.run(); !errors.Is(err, s.want) {
			t.Fatalf("%s: %v, want %v", s.name, err, s.want)
		}
	}
	want := map[string]mcItem{"k": {"start-mid-end", 42}, "fresh": {"newer", 8}, "big": {string(big), 1}}
	for key, w := range want {
		it, err := c.Get(key)
		if err != nil || string(it.Value) != w.value || it.Flags != w.flags {
			t.Fatalf("get %s through the gateway: %v", key, err)
		}
		for i, it := range h.backendGet(t, key) {
			if it == nil || string(it.Value) != w.value || it.Flags != w.flags {
				t.Fatalf("backend %d: %s = %+v, want %q flags %d", i, key, it, trunc(w.value), w.flags)
			}
		}
	}
	// The exptime reached every backend: mg t gives the remaining TTL.
	for i, b := range h.mc {
		m := dialMC(t, b.Addr)
		var ttl int
		if _, err := fmt.Sscanf(m.call("mg k t"), "HD t%d", &ttl); err != nil || ttl < 3500 || ttl > 3600 {
			t.Fatalf("backend %d: TTL of k = %d (%v), want about 3600", i, ttl, err)
		}
	}
	h.noDivergence(t)
	h.mcConverged(t)
}

// TestMemcacheNoreply: noreply commands send nothing back, yet every backend applies
// them and the gateway still checks their replies.
func TestMemcacheNoreply(t *testing.T) {
	h := withMemcached(t, 3)
	m := dialMC(t, h.addr)
	m.send("set a 3 0 2 noreply\r\nhi\r\nappend a 0 0 1 noreply\r\n!\r\nset n 0 0 1 noreply\r\n5\r\n" +
		"incr n 10 noreply\r\ndecr n 2 noreply\r\ntouch a 100 noreply\r\nadd a 0 0 1 noreply\r\nx\r\n" +
		"delete gone noreply\r\nflush_all 0 noreply\r\nset b 0 0 1 noreply\r\nz\r\nverbosity 1 noreply\r\nmn\r\n")
	if got := m.line(); got != "MN" {
		t.Fatalf("first reply after noreply commands = %q, want MN (nothing for the noreply ones)", got)
	}
	items := h.mcConverged(t)
	if len(items) != 1 || items["b"] != (mcItem{"z", 0}) {
		t.Fatalf("after flush_all and set b: %+v", items)
	}
	m.send("set a 3 0 2 noreply\r\nhi\r\nappend a 0 0 1 noreply\r\n!\r\nset n 0 0 1 noreply\r\n5\r\nincr n 10 noreply\r\ndecr n 2 noreply\r\nget a n\r\n")
	if got := strings.Join(m.until("END"), "|"); got != "VALUE a 3 3|hi!|VALUE n 0 2|13|END" {
		t.Fatalf("get a n = %q", got)
	}
	h.mcConverged(t)
	// "add a" failed (NOT_STORED) and "delete gone" missed (NOT_FOUND) on every
	// backend alike: no divergence.
	h.noDivergence(t)
}

// TestMemcacheRetrieval reads many keys per request with get, gets, gat and gats.
// Reads go to the primary only: a key written straight to a secondary is not seen.
func TestMemcacheRetrieval(t *testing.T) {
	h := withMemcached(t, 3)
	c := h.mcClient()
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = "key:" + strconv.Itoa(i)
		if err := c.Set(&memcache.Item{Key: keys[i], Value: []byte("v" + strconv.Itoa(i)), Flags: uint32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.GetMulti(append(keys, "absent"))
	if err != nil || len(got) != len(keys) {
		t.Fatalf("GetMulti: %d items, %v", len(got), err)
	}
	for i, k := range keys {
		if it := got[k]; string(it.Value) != "v"+strconv.Itoa(i) || it.Flags != uint32(i) {
			t.Fatalf("%s = %+v", k, it)
		}
	}
	// A multi-get of 5,000 keys is one 190 KiB line.
	many := make([]string, 5000)
	for i := range many {
		many[i] = fmt.Sprintf("a-rather-long-key-name-for-multiget:%05d", i)
	}
	if got, err := c.GetMulti(many); err != nil || len(got) != 0 {
		t.Fatalf("GetMulti of 5,000 absent keys: %d items, %v", len(got), err)
	}
	// gets tokens come from the primary (backend 0).
	direct := dialMC(t, h.mc[0].Addr)
	m := dialMC(t, h.addr)
	m.send("gets key:1 key:2\r\n")
	if a, b := strings.Join(m.until("END"), "|"), strings.Join(direct.request("gets key:1 key:2"), "|"); a != b {
		t.Fatalf("gets through the gateway %q, from the primary %q", a, b)
	}
	// gat and gats with many keys touch on every backend.
	m.send("gat 500 key:1 key:2 absent\r\n")
	if got := strings.Join(m.until("END"), "|"); got != "VALUE key:1 1 2|v1|VALUE key:2 2 2|v2|END" {
		t.Fatalf("gat = %q", got)
	}
	m.send("gats 600 key:3 key:4\r\n")
	if lines := m.until("END"); len(lines) != 5 || !strings.HasPrefix(lines[0], "VALUE key:3 3 2 ") {
		t.Fatalf("gats = %q", lines)
	}
	for i, b := range h.mc {
		d := dialMC(t, b.Addr)
		for key, want := range map[string]int{"key:1": 500, "key:4": 600} {
			var ttl int
			if _, err := fmt.Sscanf(d.call("mg "+key+" t"), "HD t%d", &ttl); err != nil || ttl < want-100 || ttl > want {
				t.Fatalf("backend %d: TTL of %s = %d (%v), want about %d", i, key, ttl, err, want)
			}
		}
	}
	// gats replies carry each backend's own CAS unique: that is no divergence.
	h.noDivergence(t)
	// Reads come from the primary only.
	if r, _ := h.mc[1].Command("set only-secondary 0 0 1\r\nx"); r != "STORED" {
		t.Fatal(r)
	}
	if _, err := c.Get("only-secondary"); err != memcache.ErrCacheMiss {
		t.Fatalf("a key only a secondary holds: %v, want a miss (reads go to the primary)", err)
	}
}

// TestMemcacheCounters covers incr, decr, delete, touch, flush_all with a delay,
// verbosity, version and stats.
func TestMemcacheCounters(t *testing.T) {
	h := withMemcached(t, 3)
	m := dialMC(t, h.addr)
	for _, step := range []struct{ cmd, want string }{
		{"set n 0 0 2\r\n10", "STORED"},
		{"incr n 5", "15"},
		{"decr n 20", "0"},
		{"incr n 18446744073709551615", "18446744073709551615"},
		{"incr n 1", "0"}, // wraps like memcached
		{"incr missing 1", "NOT_FOUND"},
		{"incr k x", "CLIENT_ERROR invalid numeric delta argument"},
		{"touch n 100", "TOUCHED"},
		{"touch missing 100", "NOT_FOUND"},
		{"delete n", "DELETED"},
		{"delete n", "NOT_FOUND"},
		{"verbosity 0", "OK"},
		{"set f 0 0 1\r\nf", "STORED"},
		{"flush_all 2", "OK"},
	} {
		if got := m.call(step.cmd); got != step.want {
			t.Fatalf("%q = %q, want %q", step.cmd, got, step.want)
		}
	}
	if v := m.call("version"); !strings.HasPrefix(v, "VERSION 1.") {
		t.Fatalf("version = %q (the primary's)", v)
	}
	// The delayed flush empties every backend once its delay has passed.
	eventually(t, func() bool {
		for _, b := range h.mc {
			if r, _ := b.Command("get f"); r != "END" {
				return false
			}
		}
		return true
	}, "flush_all 2 emptied every backend")
	// stats comes from the primary; stats dynode from the gateway.
	primaryPid := statValue(t, dialMC(t, h.mc[0].Addr).request("stats"), "pid")
	if got := statValue(t, m.request("stats"), "pid"); got != primaryPid {
		t.Fatalf("stats pid %s, want the primary's %s", got, primaryPid)
	}
	own := m.request("stats dynode")
	if statValue(t, own, "backend_0_primary") != "true" || statValue(t, own, "backend_2_state") != "up" ||
		statValue(t, own, "version") != "dynode-broadcaster-0.1.0" {
		t.Fatalf("stats dynode = %q", own)
	}
	if got := m.call("stats reset"); got != "RESET" {
		t.Fatalf("stats reset = %q", got)
	}
	h.mcConverged(t)
}

func statValue(t testing.TB, lines []string, name string) string {
	t.Helper()
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "STAT "+name+" "); ok {
			return v
		}
	}
	t.Fatalf("no STAT %s in %q", name, lines)
	return ""
}

// TestMemcacheCasByEffect: a cas token is the primary's; when the primary stores,
// every backend holds the same value, flags and exptime; a failed cas changes
// nothing anywhere; and a write queued after a cas lands after it everywhere.
func TestMemcacheCasByEffect(t *testing.T) {
	h := withMemcached(t, 3)
	c := h.mcClient()
	if err := c.Set(&memcache.Item{Key: "k", Value: []byte("v1"), Flags: 1}); err != nil {
		t.Fatal(err)
	}
	// Make the tokens differ between backends, so forwarding the client's token to
	// the secondaries as it is would fail there.
	for _, b := range h.mc[1:] {
		for range 3 {
			_, _ = b.Command("touch k 0")
			_, _ = b.Command("set other 0 0 1\r\nx")
		}
		_, _ = b.Command("delete other")
	}
	it, err := c.Get("k") // gomemcache uses gets: the token is the primary's
	if err != nil {
		t.Fatal(err)
	}
	it.Value, it.Flags, it.Expiration = []byte("v2"), 9, 1000
	if err := c.CompareAndSwap(it); err != nil {
		t.Fatalf("cas with the primary's token: %v", err)
	}
	// The reply is the primary's (write_reply=primary); the secondaries apply the
	// write once the primary's outcome released it to them.
	h.drained(t)
	for i, got := range h.backendGet(t, "k") {
		if got == nil || string(got.Value) != "v2" || got.Flags != 9 {
			t.Fatalf("backend %d after cas: %+v, want v2 flags 9", i, got)
		}
	}
	for i, b := range h.mc {
		var ttl int
		if _, err := fmt.Sscanf(dialMC(t, b.Addr).call("mg k t"), "HD t%d", &ttl); err != nil || ttl < 900 || ttl > 1000 {
			t.Fatalf("backend %d: TTL %d after cas (%v), want about 1000", i, ttl, err)
		}
	}
	// The same token again is stale: EXISTS, and nothing changes anywhere.
	it.Value = []byte("v3")
	if err := c.CompareAndSwap(it); !errors.Is(err, memcache.ErrCASConflict) {
		t.Fatalf("stale cas: %v, want ErrCASConflict", err)
	}
	m := dialMC(t, h.addr)
	if got := m.call("cas nope 0 0 1 1\r\nx"); got != "NOT_FOUND" {
		t.Fatalf("cas on a missing key = %q", got)
	}
	h.drained(t)
	for i, got := range h.backendGet(t, "k") {
		if string(got.Value) != "v2" {
			t.Fatalf("backend %d after a failed cas: %q", i, got.Value)
		}
	}
	if items := h.mcConverged(t); items["nope"] != (mcItem{}) {
		t.Fatalf("failed cas created a key")
	}
	// cas then set in one pipeline: the set wins on every backend.
	token := casToken(t, m, "k")
	m.send("cas k 0 0 4 " + token + "\r\nfrom\r\nset k 0 0 5\r\nlater\r\nappend k 0 0 1 noreply\r\n!\r\nmn\r\n")
	if got := strings.Join(m.until("MN"), "|"); got != "STORED|STORED|MN" {
		t.Fatalf("pipelined cas, set = %q", got)
	}
	if items := h.mcConverged(t); items["k"].value != "later!" {
		t.Fatalf("k = %q, want later!", items["k"].value)
	}
	h.noDivergence(t)
}

func casToken(t testing.TB, m *mcConn, key string) string {
	t.Helper()
	lines := m.request("gets " + key)
	f := strings.Fields(lines[0])
	if len(f) != 5 {
		t.Fatalf("gets %s = %q", key, lines)
	}
	return f[4]
}

// TestMemcacheCasConcurrent: 10 clients increment one counter with gets/cas retry
// loops while 10 others write other keys. The counter ends at the number of
// successful cas, on every backend, and all backends hold the same items.
func TestMemcacheCasConcurrent(t *testing.T) {
	h := withMemcached(t, 3)
	c := h.mcClient()
	if err := c.Set(&memcache.Item{Key: "counter", Value: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	const perClient = 100
	runMCClients(t, h, 20, func(w int, c *memcache.Client) error {
		for i := range perClient {
			if w >= 10 {
				key := "noise:" + strconv.Itoa(i%10)
				if err := c.Set(&memcache.Item{Key: key, Value: []byte(strconv.Itoa(w*1000 + i))}); err != nil {
					return err
				}
				continue
			}
			for {
				it, err := c.Get("counter")
				if err != nil {
					return err
				}
				n, _ := strconv.Atoi(string(it.Value))
				it.Value = []byte(strconv.Itoa(n + 1))
				err = c.CompareAndSwap(it)
				if err == nil {
					break
				}
				if !errors.Is(err, memcache.ErrCASConflict) {
					return err
				}
			}
		}
		return nil
	})
	items := h.mcConverged(t)
	if got := items["counter"].value; got != strconv.Itoa(10*perClient) {
		t.Fatalf("counter = %s on every backend, want %d", got, 10*perClient)
	}
}

// TestMemcacheMatchesMemcached sends the same requests to the gateway (3 backends)
// and to one memcached and expects byte-identical replies: meta commands and their
// flags, base64 keys, opaque tokens, quiet mode with mn as the barrier, noreply,
// and memcached's error lines for malformed commands (after which the connection
// goes on). Both start empty and see the same writes, so even CAS values match.
func TestMemcacheMatchesMemcached(t *testing.T) {
	ref := testserver.StartMemcached(t)
	h := withMemcached(t, 3)
	gw, direct := dialMC(t, h.addr), dialMC(t, ref.Addr)
	long := strings.Repeat("k", 251)
	script := []string{
		"ms mk 2 F5 T0\r\nhi\r\n", "mg mk v f O123 k\r\n", "mg missing v\r\n", "mg mk s v c\r\n",
		"ms Zm9v 3 b\r\nb64\r\n", "mg Zm9v b v k\r\n", "mg foo v\r\n",
		"ma cnt N0 J10 v\r\n", "ma cnt D5 MI v\r\n", "ma cnt MD D100 v\r\n", "ma cnt\r\n", "ma nope\r\n",
		"md cnt q\r\nmd cnt q\r\n", "ma zz q\r\n",
		"mg q1 v q O1\r\nmg mk v q O2\r\nmg mk q k\r\nms q2 1 q\r\nz\r\nms q2 1 q ME\r\nz\r\nmd q3 q\r\n",
		"ms mk 3 C999\r\nold\r\n", "mg mk c\r\n", "ms mk 3 C2 F7\r\nnew\r\n", "md mk C1\r\n", "mg mk v f\r\n",
		"set a 3 0 2 noreply\r\nhi\r\nappend a 0 0 1 noreply\r\n!\r\nget a\r\n", "gets a mk\r\n",
		"incr a 1\r\n", "set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 20\r\n", "touch n 10\r\ntouch x 10\r\n",
		"delete n 0\r\ndelete n\r\n",
		"bogus command\r\n", "\r\n", "set " + long + " 0 0 1\r\nx\r\n", "get " + long + "\r\n",
		"set k 0 0 -1\r\nx\r\n", "set k 0 0 2\r\nabcd\r\n", "set k 0 x 1\r\nx\r\n", "set k 0 0\r\n",
		"cas k 0 0 1\r\nx\r\n", "incr k x\r\n", "incr k\r\n", "decr k -1\r\n", "touch k x\r\n", "touch k\r\n",
		"delete k 5\r\n", "delete\r\n", "flush_all x\r\n", "verbosity\r\n", "verbosity x\r\n", "verbosity 1 2 3\r\n",
		"gat x k\r\n", "get\r\n", "mg\r\n", "md\r\n", "ma\r\n", "me\r\n", "ms k 1 !\r\nx\r\n", "ms k x\r\n",
		"get a mk Zm9v q2 nothing\r\n",
		// noreply as memcached 1.6: the last token, and it silences the errors found
		// after it (not the ERROR of a wrong token count).
		"incr a 1 noreply\r\n", "touch a abc noreply\r\n", "decr n abc noreply\r\n", "incr a noreply\r\n",
		"set k 0 0 1 noreply\r\nxyz\r\n", "set k 0 x 1 noreply\r\nx\r\n", "verbosity abc noreply\r\n",
		"verbosity noreply\r\n", "delete k x noreply\r\n", "delete k 0 noreply\r\n", "set k 0 0 1 2 3 noreply\r\n",
		"set big 0 0 2000000 noreply\r\n" + strings.Repeat("b", 2000000) + "\r\n", "get big\r\n",
		"set a2 0 0 1 norepl\r\nx\r\n", "get a2\r\n", "touch a2 10 x\r\n", "incr a2 1 x\r\n",
		"delete " + strings.Repeat(" ", 3000) + "a2\r\n", "flush_all abc noreply\r\n", "flush_all 0 x\r\n", "get a mk\r\n",
	}
	for _, req := range script {
		gw.send(req + "mn\r\n")
		direct.send(req + "mn\r\n")
		got, want := strings.Join(gw.until("MN"), "|"), strings.Join(direct.until("MN"), "|")
		if got != want {
			t.Fatalf("%q:\n gateway   %q\n memcached %q", req, got, want)
		}
	}
	h.mcConverged(t)
	h.noDivergence(t)
}

// TestMemcacheMetaCasByEffect: ms and md with C compare against the primary's CAS;
// applied, they reach every backend; stale, they change nothing anywhere.
func TestMemcacheMetaCasByEffect(t *testing.T) {
	h := withMemcached(t, 3)
	m := dialMC(t, h.addr)
	if got := m.call("ms mk 2 F5\r\nhi"); got != "HD" {
		t.Fatal(got)
	}
	for _, b := range h.mc[1:] { // make the secondaries' CAS values differ
		_, _ = b.Command("set other 0 0 1\r\nx")
		_, _ = b.Command("delete other")
	}
	var cas string
	if head := m.call("mg mk c v"); !strings.HasPrefix(head, "VA 2 c") {
		t.Fatalf("mg c = %q", head)
	} else {
		cas = strings.Fields(head)[2][1:]
		m.line()
	}
	if got := m.call("ms mk 3 C" + cas + " F7 T900\r\nnew"); got != "HD" {
		t.Fatalf("ms C<primary cas> = %q", got)
	}
	if got := m.call("ms mk 3 C" + cas + "\r\nold"); got != "EX" {
		t.Fatalf("stale ms C = %q", got)
	}
	if got := m.call("md mk C" + cas); got != "EX" {
		t.Fatalf("stale md C = %q", got)
	}
	items := h.mcConverged(t)
	if items["mk"] != (mcItem{"new", 7}) {
		t.Fatalf("mk = %+v on every backend, want new/7", items["mk"])
	}
	head := m.call("mg mk c")
	if got := m.call("md mk q C" + strings.Fields(head)[1][1:] + "\r\nmn"); got != "MN" {
		t.Fatalf("quiet md with the current CAS = %q, want nothing before MN", got)
	}
	if items := h.mcConverged(t); items["mk"] != (mcItem{}) {
		t.Fatalf("mk still on the backends after md C: %+v", items["mk"])
	}
	h.noDivergence(t)
}

// TestMemcacheConcurrentWrites: 50 clients x 2,000 mixed writes (incr, set, append,
// delete) on shared keys; afterwards every backend holds identical items.
func TestMemcacheConcurrentWrites(t *testing.T) {
	h := withMemcached(t, 3)
	const clients, perClient, keys = 50, 2000, 20
	runMCClients(t, h, clients, func(w int, c *memcache.Client) error {
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		for i := range perClient {
			key := "shared:" + strconv.Itoa(rng.IntN(keys))
			var err error
			switch rng.IntN(4) {
			case 0:
				_, err = c.Increment(key, 1)
				if errors.Is(err, memcache.ErrCacheMiss) {
					err = c.Add(&memcache.Item{Key: key, Value: []byte("0")})
				}
			case 1:
				err = c.Set(&memcache.Item{Key: key, Value: []byte(strconv.Itoa(w*perClient + i)), Flags: uint32(w)})
			case 2:
				err = c.Append(&memcache.Item{Key: key, Value: []byte("+" + strconv.Itoa(w))})
			case 3:
				err = c.Delete(key)
			}
			switch {
			case err == nil, errors.Is(err, memcache.ErrCacheMiss), errors.Is(err, memcache.ErrNotStored):
			case strings.Contains(err.Error(), "non-numeric value"): // incr after an append
			default:
				return fmt.Errorf("client %d op %d on %s: %w", w, i, key, err)
			}
		}
		return nil
	})
	var names []string
	for k := range keys {
		names = append(names, "shared:"+strconv.Itoa(k))
	}
	items := h.mcConverged(t, names...)
	t.Logf("%d keys identical on 3 backends after %d writes", len(items), clients*perClient)
	h.noDivergence(t)
}

// TestMemcacheBadInput sends malformed commands: each gets memcached's error line;
// binary-protocol input and overlong lines close the connection; nothing malformed
// reaches a backend; other clients are not affected.
func TestMemcacheBadInput(t *testing.T) {
	h := withMemcached(t, 2)
	good := dialMC(t, h.addr)
	if got := good.call("set before 0 0 1\r\nx"); got != "STORED" {
		t.Fatal(got)
	}
	// Where the gateway is stricter than memcached (which stores keys with control
	// characters and flags over 32 bits), it answers like memcached does for other
	// malformed input and keeps the connection.
	for _, in := range []string{"set bad\x01key 0 0 1\r\n", "get bad\x7fkey\r\n", "set k 4294967296 0 1\r\n"} {
		m := dialMC(t, h.addr)
		m.send(in)
		if got := m.line(); got != "CLIENT_ERROR bad command line format" {
			t.Fatalf("%q: %q", in, got)
		}
		if got := m.call("get before"); got != "VALUE before 0 1" {
			t.Fatalf("%q: connection not usable after the error: %q", in, got)
		}
		m.until("END")
	}
	for _, tt := range []struct{ in, want string }{
		{"\x80\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00hello", "CLIENT_ERROR the binary protocol is not supported; use the text or meta protocol"},
		{"set " + strings.Repeat("a", 9000), "CLIENT_ERROR line too long"},
		{"get " + strings.Repeat("a ", 2<<20+10), "CLIENT_ERROR line too long"},
	} {
		m := dialMC(t, h.addr)
		m.send(tt.in)
		if got := m.line(); got != tt.want {
			t.Fatalf("%q: %q, want %q", tt.in[:10], got, tt.want)
		}
		if !m.closed() {
			t.Fatalf("%q: connection still open", tt.in[:10])
		}
	}
	// Nothing malformed reached a backend: only "set before" was stored, and the
	// backends saw exactly the commands the good clients sent.
	items := h.mcConverged(t)
	if len(items) != 1 || items["before"] != (mcItem{"x", 0}) {
		t.Fatalf("backend items after bad input: %+v", items)
	}
	for i, b := range h.mc {
		st := dialMC(t, b.Addr).request("stats")
		if got := statValue(t, st, "cmd_set"); got != "1" {
			t.Fatalf("backend %d cmd_set = %s, want 1", i, got)
		}
	}
	if got := good.call("set after 0 0 1\r\ny"); got != "STORED" {
		t.Fatalf("other client after bad input: %q", got)
	}
	if n := h.gw.Stats().ProtocolErrors.Load(); n != 3 {
		t.Fatalf("protocol errors = %d, want 3", n)
	}
}

// TestMemcacheBackendDownAndBack: a secondary memcached stops; writes queue for it
// and are replayed once it runs again; clients see no error meanwhile.
func TestMemcacheBackendDownAndBack(t *testing.T) {
	h := withMemcached(t, 2)
	c := h.mcClient()
	port := h.mc[1].Port
	h.mc[1].Stop()
	eventually(t, func() bool { return !h.gw.Backends()[1].Connected }, "the gateway sees backend 1 down")
	for i := range 100 {
		if err := c.Set(&memcache.Item{Key: "k" + strconv.Itoa(i), Value: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatalf("set while a secondary is down: %v", err)
		}
	}
	h.mc[1] = testserver.StartMemcachedOnPort(t, port)
	waitUp(t, h.gw, 2)
	if items := h.mcConverged(t); len(items) != 100 {
		t.Fatalf("%d items after the replay, want 100", len(items))
	}
}

// TestMemcacheCasPrimaryDown: with the primary down, the first backend up is the
// authority: its gets tokens work for cas, and the effect reaches the other backend.
func TestMemcacheCasPrimaryDown(t *testing.T) {
	h := withMemcached(t, 3)
	c := h.mcClient()
	if err := c.Set(&memcache.Item{Key: "k", Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	_, _ = h.mc[1].Command("touch k 0") // backend 1's token now differs from backend 2's
	h.mc[0].Stop()
	eventually(t, func() bool { return !h.gw.Backends()[0].Connected }, "the gateway sees the primary down")
	it, err := c.Get("k")
	if err != nil {
		t.Fatal(err)
	}
	it.Value = []byte("v2")
	if err := c.CompareAndSwap(it); err != nil {
		t.Fatalf("cas with backend 1's token while the primary is down: %v", err)
	}
	h.drained(t)
	for i, b := range h.mc[1:] {
		if got := mcItems(t, b.Addr, []string{"k"})["k"].value; got != "v2" {
			t.Fatalf("backend %d: k = %q after cas, want v2", i+1, got)
		}
	}
}

// TestMemcacheStatsFormsUnderLoad: every stats form is one reply up to END (ITEM lines
// of stats cachedump, PREFIX lines of stats detail dump), so a client asking for them
// while others pipeline sets never shifts another client's replies, and no backend
// connection is reset.
func TestMemcacheStatsFormsUnderLoad(t *testing.T) {
	h := withMemcached(t, 2)
	stats := dialMC(t, h.addr)
	stats.send("stats detail on\r\n")
	if got := stats.line(); got != "OK" {
		t.Fatalf("stats detail on = %q", got)
	}
	stop := make(chan struct{})
	done := make(chan error, 8)
	for w := range 8 {
		go func() {
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			r := bufio.NewReader(c)
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				var batch strings.Builder
				for j := range 20 {
					fmt.Fprintf(&batch, "set p%d:k%d 0 0 1\r\nx\r\n", w, (i*20+j)%200)
				}
				if _, err := io.WriteString(c, batch.String()); err != nil {
					done <- err
					return
				}
				for range 20 {
					line, err := r.ReadString('\n')
					if err != nil || line != "STORED\r\n" {
						done <- fmt.Errorf("client %d: set answered %q, %v", w, line, err)
						return
					}
				}
			}
		}()
	}
	for range 30 {
		for _, req := range []string{"stats cachedump 1 2", "stats detail dump", "stats items", "stats slabs", "stats settings", "stats"} {
			lines := stats.request(req)
			if len(lines) == 0 {
				t.Fatalf("%s: empty reply", req)
			}
			for _, l := range lines {
				if strings.HasPrefix(l, "STORED") || strings.HasPrefix(l, "ERROR") {
					t.Fatalf("%s: reply holds %q", req, l)
				}
			}
		}
	}
	close(stop)
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(stats.request("stats cachedump 1 2"), "|"); !strings.HasPrefix(got, "ITEM p") {
		t.Fatalf("stats cachedump 1 2 = %q, want ITEM lines", got)
	}
	if got := strings.Join(stats.request("stats detail dump"), "|"); !strings.Contains(got, "PREFIX p") {
		t.Fatalf("stats detail dump = %q, want PREFIX lines", got)
	}
	for _, b := range h.gw.Backends() {
		if b.Connects != 1 || b.LostWrites != 0 || b.OutOfSync {
			t.Fatalf("backend reset by a stats reply: %+v", b)
		}
	}
	h.mcConverged(t)
}

// TestMemcacheLongGat: memcached closes a connection on a gat/gats line over 2048
// bytes; the gateway splits a 5,000-key gat into lines memcached accepts and joins
// the replies into one, and no backend connection is reset.
func TestMemcacheLongGat(t *testing.T) {
	h := withMemcached(t, 2)
	m := dialMC(t, h.addr)
	for i := range 100 {
		if got := m.call(fmt.Sprintf("set key%d 0 0 %d\r\nv%d", i*50, len(strconv.Itoa(i))+1, i)); got != "STORED" {
			t.Fatal(got)
		}
	}
	var keys []string
	for i := range 5000 {
		keys = append(keys, "key"+strconv.Itoa(i))
	}
	for _, cmd := range []string{"gat", "gats"} {
		lines := m.request(cmd + " 3600 " + strings.Join(keys, " "))
		values, ends := 0, 0
		for _, l := range lines {
			if strings.HasPrefix(l, "VALUE ") {
				values++
			}
			if l == "END" {
				ends++
			}
		}
		if values != 100 || ends != 1 || lines[len(lines)-1] != "END" {
			t.Fatalf("%s of 5000 keys: %d values, %d END lines", cmd, values, ends)
		}
	}
	if got := m.call("set after 0 0 1\r\nx"); got != "STORED" {
		t.Fatalf("set after the long gat: %q", got)
	}
	for _, b := range h.gw.Backends() {
		if b.Connects != 1 || b.LostWrites != 0 {
			t.Fatalf("backend reset by a long gat: %+v", b)
		}
	}
	h.mcConverged(t)
	h.noDivergence(t)
}
