package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols/memcache"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// An online convergence check (POST /verify, and every verify_interval) compares a
// sample of keys across the in-sync backends while clients write. The sample comes
// from the reference backend (the primary, or the first in-sync one): SCAN with a
// cursor that moves on between rounds (memcached: lru_crawler metadump). Each key is
// then read on every backend at the same point of the global order: the reads are
// appended to every backend's stream together, under the sequencer's lock, so every
// backend answers after exactly the same writes and no write can race the
// comparison. Redis values are compared by DEBUG DIGEST-VALUE (independent of the
// encoding and of hash-table order) when the backends allow DEBUG, otherwise by
// their content read per type, with sets and hashes sorted; expiry times are compared
// too (PEXPIRETIME). Memcached items by value and flags (mg v f). A key missing on
// some backends only (one expiring about then) is inconclusive, not a mismatch.
// Mismatches are counted per backend, logged by count (never keys nor values), and a
// backend with verify_suspect_threshold of them in a round is out of sync, so
// auto_resync rebuilds it.

// VerifyResult is one round of the convergence check.
type VerifyResult struct {
	Reference string    `json:"reference"`
	Backends  []string  `json:"backends"`         // compared with the reference
	Keys      int       `json:"keys"`             // keys compared
	Differ    int       `json:"differ"`           // keys that differ on at least one backend
	Unsure    int       `json:"unsure,omitempty"` // missing on some backends only (expiring), or a backend did not answer
	ByBackend []Differs `json:"by_backend,omitempty"`
	Suspect   []string  `json:"suspect,omitempty"` // backends put out of sync by this round
	Started   time.Time `json:"started"`
	// Took is how long the round ran (JSON: took_seconds).
	Took time.Duration `json:"-"`
	// TookSeconds is Took in seconds, for JSON.
	TookSeconds float64 `json:"took_seconds"`
}

// Differs is how many sampled keys differ from the reference on one backend.
type Differs struct {
	Backend string `json:"backend"`
	Keys    int    `json:"keys"`
}

// ErrVerifyRunning: a round is already running.
var ErrVerifyRunning = errors.New("a verify round is already running")

// verifier is the state that outlives one round.
type verifier struct {
	mu      sync.Mutex // held for a whole round
	db      int        // Redis: database being scanned
	cursor  string     // Redis: SCAN cursor in db ("0": start it)
	digests int8       // Redis: 0 unknown, 1 DEBUG DIGEST-VALUE works, -1 it does not
}

// Verify runs one round of the convergence check (see above) and returns its result.
func (g *Gateway) Verify(ctx context.Context) (VerifyResult, error) {
	v := &g.verify
	if !v.mu.TryLock() {
		return VerifyResult{}, ErrVerifyRunning
	}
	defer v.mu.Unlock()
	res := VerifyResult{Started: time.Now()}
	ref := g.resyncSource(nil)
	if ref == nil {
		return res, ErrNoResyncSource
	}
	res.Reference = ref.addr
	var others []*backend
	for _, be := range g.all() {
		if be != ref && be.preferred() {
			others = append(others, be)
			res.Backends = append(res.Backends, be.addr)
		}
	}
	if len(others) == 0 {
		return res, nil // nothing to compare with
	}
	side, err := g.dialSide(ctx, ref)
	if err != nil {
		return res, err
	}
	defer side.close()
	n := g.conf().VerifyKeys
	var probes []keyProbe
	if g.conf().Protocol == "memcache" {
		probes, err = g.memcacheProbes(side, n)
	} else {
		probes, err = g.redisProbes(side, n)
	}
	if err != nil {
		return res, err
	}
	targets := append([]*backend{ref}, others...)
	replies := g.readAtOnePoint(ctx, probes, targets)
	differs := make([]int, len(others))
	for k := range probes {
		want := replies[0][k]
		unsure, differ := want == nil, false
		for o := range others {
			got := replies[o+1][k]
			switch {
			case got == nil || want == nil:
				unsure = true
			case probes[k].missing(want) != probes[k].missing(got):
				unsure = true // expiring about now
			case !probes[k].same(want, got, g.conf().AbsoluteTTL):
				differs[o]++
				differ = true
			}
		}
		switch {
		case differ:
			res.Differ++
		case unsure:
			res.Unsure++
		}
	}
	res.Keys = len(probes)
	for o, be := range others {
		if differs[o] == 0 {
			continue
		}
		res.ByBackend = append(res.ByBackend, Differs{Backend: be.addr, Keys: differs[o]})
		g.stats.VerifyMismatches.Add(int64(differs[o]))
		if differs[o] >= g.conf().VerifySuspectThreshold {
			res.Suspect = append(res.Suspect, be.addr)
			be.markOutOfSync(fmt.Sprintf("verify: %d of %d sampled keys differ from %s", differs[o], len(probes), ref.addr))
		}
	}
	res.Took = time.Since(res.Started)
	res.TookSeconds = res.Took.Seconds()
	g.stats.VerifyRounds.Add(1)
	g.stats.VerifyKeys.Add(int64(res.Keys))
	attrs := []any{"reference", ref.addr, "keys", res.Keys, "differ", res.Differ, "unsure", res.Unsure, "took", res.Took.Round(time.Millisecond)}
	for _, d := range res.ByBackend {
		attrs = append(attrs, "differ_on_"+d.Backend, d.Keys)
	}
	if res.Differ > 0 {
		g.log.Error("verify: backends hold different data", attrs...)
	} else {
		g.log.Debug("verify round", attrs...)
	}
	return res, nil
}

// verifyEvery runs a round every verify_interval until ctx ends.
func (g *Gateway) verifyEvery(ctx context.Context) {
	every(ctx, g.conf().VerifyInterval, func() {
		if _, err := g.Verify(ctx); err != nil && !errors.Is(err, ErrVerifyRunning) && ctx.Err() == nil {
			g.log.Warn("verify round failed", "err", err)
		}
	})
}

// keyProbe is one sampled key: the reads that show its value, and how to compare
// their replies.
type keyProbe struct {
	db     int
	frames []byte // the reads, concatenated
	count  int    // how many
	kind   uint8  // their reply kind (memcached)
	// canon, per read, makes a reply comparable (nil: as is).
	canon []func([]byte) []byte
	// missing reports whether the replies say the key does not exist.
	missing func(replies [][]byte) bool
}

// same compares two backends' replies to a probe.
func (p *keyProbe) same(a, b [][]byte, exactTTL bool) bool {
	for i := range a {
		x, y := a[i], b[i]
		if p.canon != nil && p.canon[i] != nil {
			x, y = p.canon[i](x), p.canon[i](y)
		}
		if !bytes.Equal(x, y) && !(i == 1 && p.kind == 0 && ttlClose(x, y, exactTTL)) {
			return false
		}
	}
	return true
}

// ttlClose compares two PEXPIRETIME replies: equal, or within 5 s when expiries are
// sent relative (absolute_ttl=false) and so land at slightly different times.
func ttlClose(a, b []byte, exact bool) bool {
	if exact {
		return false
	}
	x, err1 := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(string(a), ":")), 10, 64)
	y, err2 := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(string(b), ":")), 10, 64)
	return err1 == nil && err2 == nil && x > 0 && y > 0 && max(x-y, y-x) <= 5000
}

// readAtOnePoint appends every probe's reads to every target's stream at one point
// of the global order and returns, per target and probe, the replies (nil when the
// backend failed or did not answer within backend_timeout).
func (g *Gateway) readAtOnePoint(ctx context.Context, probes []keyProbe, targets []*backend) [][][][]byte {
	gates := make([][][]*gate, len(targets))
	g.seq.mu.Lock()
	for t, be := range targets {
		gates[t] = make([][]*gate, len(probes))
		be.mu.Lock()
		if be.state == StateUp {
			for k := range probes {
				p := &probes[k]
				frames := p.frames
				for range p.count {
					n := frameLen(frames, g.conf().Protocol)
					gt := newReplyGate()
					be.appendLocked(frames[:n], nil, p.db, pending{gate: gt, authority: true, kind: p.kind})
					frames = frames[n:]
					gates[t][k] = append(gates[t][k], gt)
				}
			}
		}
		be.mu.Unlock()
		be.kick()
	}
	g.seq.mu.Unlock()
	deadline := time.After(g.conf().BackendTimeout + time.Second)
	out := make([][][][]byte, len(targets))
	for t := range targets {
		out[t] = make([][][]byte, len(probes))
		for k := range probes {
			var replies [][]byte
			for _, gt := range gates[t][k] {
				select {
				case <-gt.done:
				case <-deadline:
				case <-ctx.Done():
				}
				outcome, reply := gt.result()
				if outcome == gateOpen || reply == nil {
					replies = nil
					break
				}
				replies = append(replies, reply)
			}
			if len(replies) == len(gates[t][k]) && len(replies) > 0 {
				out[t][k] = replies
			}
		}
	}
	return out
}

// newReplyGate is a gate used only to be told one backend's reply to a command the
// gateway appended to its stream (a resync's marker, a verify read): it has no other
// backend to release, and its outcome keeps the reply.
func newReplyGate() *gate {
	return &gate{effectOf: func([]byte, []byte) ([]byte, bool) { return nil, false }, done: make(chan struct{})}
}

// frameLen is the length of the first command in frames (built by the gateway: one
// RESP multibulk, or one memcached line).
func frameLen(frames []byte, protocol string) int {
	if protocol == "memcache" {
		return bytes.IndexByte(frames, '\n') + 1
	}
	var p resp.CommandParser
	_, n, err := p.Next(frames)
	if err != nil {
		return len(frames)
	}
	return n
}

// redisProbes samples up to n keys from the reference with SCAN, moving the cursor
// on across rounds and databases, and builds their reads.
func (g *Gateway) redisProbes(side *sideConn, n int) ([]keyProbe, error) {
	v := &g.verify
	if v.digests == 0 {
		v.digests = -1
		if _, err := side.do("DEBUG", "DIGEST-VALUE", "dynode-verify-probe"); err == nil {
			v.digests = 1
		}
	}
	dbs, err := keyspaceDBs(side)
	if err != nil || len(dbs) == 0 {
		return nil, err
	}
	if !slices.Contains(dbs, v.db) {
		v.db, v.cursor = dbs[0], "0"
	}
	var probes []keyProbe
	visited := 0
	for len(probes) < n && visited < len(dbs) {
		if _, err := side.do("SELECT", strconv.Itoa(v.db)); err != nil {
			return nil, err
		}
		reply, err := side.do("SCAN", v.cursor, "COUNT", strconv.Itoa(min(n, 1000)))
		if err != nil {
			return nil, err
		}
		parts, ok := resp.Elements(reply)
		if !ok || len(parts) != 2 {
			return nil, fmt.Errorf("verify: SCAN on %s: unexpected reply", side.be.addr)
		}
		cursor, ok1 := resp.Bulks(parts[0])
		keys, ok2 := resp.Bulks(parts[1])
		if !ok1 || !ok2 || len(cursor) != 1 {
			return nil, fmt.Errorf("verify: SCAN on %s: unexpected reply", side.be.addr)
		}
		for _, k := range keys {
			if len(probes) == n {
				break
			}
			p, err := g.redisProbe(side, v.db, k)
			if err != nil {
				return nil, err
			}
			probes = append(probes, p)
		}
		v.cursor = string(cursor[0])
		if v.cursor == "0" { // this database is done: the next one with keys
			visited++
			i := slices.Index(dbs, v.db)
			v.db = dbs[(i+1)%len(dbs)]
		}
	}
	return probes, nil
}

// redisProbe builds the reads of one key: DEBUG DIGEST-VALUE and PEXPIRETIME, or
// TYPE, PEXPIRETIME and the read of its type.
func (g *Gateway) redisProbe(side *sideConn, db int, key []byte) (keyProbe, error) {
	cmd := func(dst []byte, args ...string) []byte {
		bargs := make([][]byte, len(args)+1)
		for i, a := range args {
			bargs[i] = []byte(a)
		}
		bargs[len(args)] = key
		return resp.AppendCommand(dst, bargs)
	}
	p := keyProbe{db: db}
	if g.verify.digests > 0 {
		p.frames = cmd(cmd(nil, "DEBUG", "DIGEST-VALUE"), "PEXPIRETIME")
		p.count = 2
		p.missing = func(r [][]byte) bool { return string(r[1]) == ":-2\r\n" }
		return p, nil
	}
	typ, err := side.do("TYPE", string(key))
	if err != nil {
		return p, err
	}
	p.frames = cmd(cmd(nil, "TYPE"), "PEXPIRETIME")
	p.count = 3
	p.canon = make([]func([]byte) []byte, 3)
	switch strings.TrimSpace(strings.TrimPrefix(string(typ), "+")) {
	case "string":
		p.frames = cmd(p.frames, "GET")
	case "list":
		p.frames = resp.AppendCommand(p.frames, [][]byte{[]byte("LRANGE"), key, []byte("0"), []byte("-1")})
	case "set":
		p.frames = cmd(p.frames, "SMEMBERS")
		p.canon[2] = sortedElements(1)
	case "zset":
		p.frames = resp.AppendCommand(p.frames, [][]byte{[]byte("ZRANGE"), key, []byte("0"), []byte("-1"), []byte("WITHSCORES")})
	case "hash":
		p.frames = cmd(p.frames, "HGETALL")
		p.canon[2] = sortedElements(2)
	case "stream":
		p.frames = resp.AppendCommand(p.frames, [][]byte{[]byte("XRANGE"), key, []byte("-"), []byte("+")})
	default: // gone meanwhile, or a module type: its type and expiry only
		p.count = 2
		p.canon = p.canon[:2]
	}
	p.missing = func(r [][]byte) bool { return string(r[1]) == ":-2\r\n" }
	return p, nil
}

// sortedElements makes an array reply comparable regardless of element order, in
// groups of n (2: a hash's field and value).
func sortedElements(n int) func([]byte) []byte {
	return func(reply []byte) []byte {
		elems, ok := resp.Elements(reply)
		if !ok || len(elems)%n != 0 {
			return reply
		}
		groups := make([][]byte, 0, len(elems)/n)
		for i := 0; i < len(elems); i += n {
			var g []byte
			for _, e := range elems[i : i+n] {
				g = strconv.AppendInt(g, int64(len(e)), 10)
				g = append(append(g, ':'), e...)
			}
			groups = append(groups, g)
		}
		slices.SortFunc(groups, bytes.Compare)
		return bytes.Join(groups, []byte{0})
	}
}

// keyspaceDBs lists the databases with keys (INFO keyspace).
func keyspaceDBs(side *sideConn) ([]int, error) {
	info, err := side.do("INFO", "keyspace")
	if err != nil {
		return nil, err
	}
	var dbs []int
	for line := range bytes.Lines(info) {
		name, _, ok := bytes.Cut(line, []byte(":"))
		if n, err := strconv.Atoi(strings.TrimPrefix(string(name), "db")); ok && err == nil && bytes.HasPrefix(name, []byte("db")) {
			dbs = append(dbs, n)
		}
	}
	return dbs, nil
}

// memcacheProbes samples up to n keys from the reference's lru_crawler metadump and
// builds their reads (mg key v f: value and flags).
func (g *Gateway) memcacheProbes(side *sideConn, n int) ([]keyProbe, error) {
	keys, err := metadumpKeys(side.conn, n, g.conf().ConnectTimeout)
	side.broken = true // the dump is cut short: the connection is not reusable
	if err != nil {
		return nil, fmt.Errorf("verify: lru_crawler metadump on %s: %w", side.be.addr, err)
	}
	probes := make([]keyProbe, 0, len(keys))
	for _, k := range keys {
		probes = append(probes, keyProbe{
			frames: []byte("mg " + k + " v f\r\n"), count: 1, kind: uint8(memcache.ReplyMeta),
			missing: func(r [][]byte) bool { return string(r[0]) == "EN\r\n" },
		})
	}
	return probes, nil
}

// metadumpKeys reads up to n keys of "lru_crawler metadump all" (URL-encoded keys,
// as memcached prints them; mg accepts them as they are only when they need no
// decoding, so keys with escapes are skipped).
func metadumpKeys(conn net.Conn, n int, timeout time.Duration) ([]string, error) {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("lru_crawler metadump all\r\n")); err != nil {
		return nil, err
	}
	var keys []string
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "END" || len(keys) == n {
			return keys, nil
		}
		if strings.HasPrefix(line, "BUSY") || strings.HasPrefix(line, "ERROR") || strings.HasPrefix(line, "CLIENT_ERROR") {
			return nil, errors.New(line)
		}
		k, ok := strings.CutPrefix(strings.Fields(line)[0], "key=")
		if ok && !strings.Contains(k, "%") {
			keys = append(keys, k)
		}
	}
	return keys, sc.Err()
}
