package gateway

import (
	"sync"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// queuedCmd is a command of a batch that goes to backends.
type queuedCmd struct {
	idx   int    // index in the batch
	frame []byte // bytes to send (aliases the session's read buffer until submit returns)
	// owner, for a large frame, is the session's read buffer lent to the backends:
	// they reference the frame instead of copying it (outStream.appendShared).
	owner *lentBuf
	class protocols.Class
	db    int
	kind  uint8 // the codec's reply kind (memcached replies are scanned by command)
	// effect, for a conditional write only one backend can evaluate (memcached cas),
	// is its unconditional form for the other backends; see gate.
	effect []byte
	// effectOf, for a write whose outcome depends on the server (SPOP, XADD *,
	// INCRBYFLOAT), computes from the authority's reply what the other backends
	// receive in its place (ok false: nothing, a no-op); see gate.
	effectOf func(reply, probe []byte) (effect []byte, ok bool)
	// probe, with effectOf, is a read the authority runs right after the command;
	// effectOf gets its reply too (the exact trim of XADD MAXLEN ~); probeKind is
	// the probe's reply kind.
	probe     []byte
	probeKind uint8
	// block, on the first command of a transaction (MULTI), is how many commands the
	// block has, EXEC included: a backend gets all of them or none.
	block int
	// watch, on the first command of a transaction, is the client's WATCH: the block
	// is not sent, and EXEC answers nil, when a watched key changed (watch.go).
	watch *watchState
	// skip: not sent to any backend (a transaction whose WATCH failed).
	skip bool
	// self is the key waiter of the blocked client this attempt is for: its own
	// attempt does not wake it (blocking.go).
	self *keyWaiter
}

// sequencer is the gateway's one serial point. It appends every batch to every
// backend's queue under one lock, so all backends receive all writes, from all
// clients, in the same order. Its critical section only copies bytes into backend
// queues (or, for a large frame, a reference to it): no I/O, no allocation in the
// steady state.
type sequencer struct {
	mu       sync.Mutex // guards everything below
	backends []*backend
	primary  int // index of the configured primary in backends
	readAny  bool
	rr       int // round robin position for read_from=any
	// queueWhenAllDown keeps writes for backlogs even when no backend is up
	// (write-and-forget: no client is told anything anyway).
	queueWhenAllDown bool
	gates            []*gate   // scratch: the gates of the batch being submitted
	pendings         []pending // scratch: the queue entries of one gated write
	// keys tells clients waiting on keys (WATCH, blocking pops) about the writes
	// queued (keywatch.go); nil for protocols without them.
	keys *keyWatch
}

// submit queues the batch's backend commands and seals the batch. marks, if not
// nil, records where the commands went, for the client's WAIT.
func (s *sequencer) submit(b *batch, items []queuedCmd, errNoBackend []byte, marks *waitMarks) {
	s.mu.Lock()
	source, readTarget := s.targets()
	queueWrites := source >= 0 || s.queueWhenAllDown
	b.mu.Lock()
	gates := s.gates[:0]
	for i := range items {
		it := &items[i]
		if s.keys != nil && s.keys.active() {
			// In order: a write of this batch before its EXEC fails that EXEC's WATCH.
			if it.watch != nil {
				s.checkWatch(b, items, i)
			}
			if !it.skip {
				s.keys.touched(it)
			}
		}
		if it.skip {
			continue
		}
		c := &b.cmds[it.idx]
		c.source = int16(source)
		if it.class == protocols.Read {
			c.source = int16(readTarget)
		}
		if s.gated(it) && source >= 0 {
			gates = append(gates, &gate{backends: s.backends, effectOf: it.effectOf, probe: it.probe, probeKind: it.probeKind})
		}
	}
	for _, be := range s.backends {
		be.mu.Lock()
		appended := s.queueTo(be, b, items, gates, source, readTarget, queueWrites)
		if appended && marks != nil {
			marks.note(be, len(s.backends))
		}
		be.mu.Unlock()
		if appended {
			be.kick()
		}
	}
	b.mu.Unlock()
	clear(gates)
	s.gates = gates[:0]
	s.mu.Unlock()
	b.seal(errNoBackend)
}

// queueTo appends the batch's commands for one backend to its queue and reports
// whether it appended any (the caller holds be.mu, b.mu and s.mu).
func (s *sequencer) queueTo(be *backend, b *batch, items []queuedCmd, gates []*gate, source, readTarget int, queueWrites bool) bool {
	if be.phase == phaseCopying {
		return false // it replicates from the resync's source, which has these writes
	}
	if be.retired.Load() {
		return false // removed from the backend list (discovery.go)
	}
	up := be.state == StateUp
	appended := false
	g := 0
	for i := 0; i < len(items); i++ {
		it := &items[i]
		n := max(it.block, 1) // commands admitted together
		if it.skip {
			i += n - 1
			continue
		}
		isWrite := it.class != protocols.Read
		if isWrite && !queueWrites || !isWrite && be.index != readTarget {
			i += n - 1
			continue
		}
		block := items[i : i+n]
		i += n - 1
		if s.gated(it) {
			if source < 0 {
				continue // nobody can evaluate the condition
			}
			// One gated write: a command, or a transaction block whose last entry (EXEC)
			// carries the gate.
			// A spilling backend's replies are not waited for (spill.go).
			attach := up && !be.spilling
			ps := s.pendings[:0]
			frame := it.frame
			for j := range block {
				p := pending{write: isWrite, kind: block[j].kind}
				if attach {
					p.b, p.idx = b, int32(block[j].idx)
				}
				ps = append(ps, p)
				if j > 0 {
					frame = append(frame[:len(frame):len(frame)], block[j].frame...)
				}
			}
			ps[len(ps)-1].gate, ps[len(ps)-1].authority = gates[g], be.index == source
			g++
			if be.appendGatedLocked(frame, it.effect, it.db, ps, up) {
				appended = true
				for j := range block {
					s.expect(be, b, &block[j], attach)
				}
			}
			s.pendings = ps[:0]
			continue
		}
		if !be.admitLocked(block, isWrite) {
			continue
		}
		if be.spill != nil && !be.spilling && up && be.index != source && source >= 0 && s.backends[source].preferred() {
			be.maybeSpillLocked() // the source stays: one backend that is not behind
		}
		attach := up && !be.spilling
		for j := range block {
			it := &block[j]
			p := pending{write: isWrite, kind: it.kind}
			if attach {
				p.b, p.idx = b, int32(it.idx)
			}
			be.appendLocked(it.frame, it.owner, it.db, p)
			s.expect(be, b, it, attach)
		}
		appended = true
	}
	return appended
}

// checkWatch drops the transaction starting at items[i] if its WATCH failed: a
// watched key was touched by a write queued since the WATCH (or expired). Its
// commands are decided here: EXEC's reply is nil, the hidden ones have none.
// Caller holds s.mu and b.mu.
func (s *sequencer) checkWatch(b *batch, items []queuedCmd, i int) {
	w := items[i].watch
	if !w.failed() {
		return
	}
	n := max(items[i].block, 1)
	for j := i; j < i+n; j++ {
		items[j].skip = true
		reply := []byte(nil)
		if j == i+n-1 {
			reply = w.execNil
		}
		b.decideLocal(&b.cmds[items[j].idx], reply)
	}
}

// gated reports whether a command goes through a gate: it is replicated by effect,
// and there is another backend to reproduce it on (with one, it runs as sent).
func (s *sequencer) gated(it *queuedCmd) bool {
	return (it.effect != nil || it.effectOf != nil) && len(s.backends) > 1
}

// expect records that the backend will answer it (when it was up when queued).
func (s *sequencer) expect(be *backend, b *batch, it *queuedCmd, up bool) {
	if !up {
		return
	}
	b.expectFrom(it.idx)
	if c := &b.cmds[it.idx]; int(c.source) == be.index {
		c.srcQueued = true
	}
}

// targets picks the reply source for writes and the backend for reads; -1 when no
// backend is up. The source is the primary, or the first backend up in configuration
// order; a backend out of sync (it missed writes) or warming is never the source nor
// read from while a preferred one is up, and one being resynced or behind (its queue
// spills: spill.go) never is: with only such backends up, commands get "no backend
// available" rather than wait behind a spill or be applied without an answer. When
// every backend up is out of sync, the same order applies among them (the gateway
// keeps serving; /readyz says so). Caller holds mu.
func (s *sequencer) targets() (source, read int) {
	source = s.pick(true)
	if source < 0 {
		source = s.pick(false)
	}
	if !s.readAny || source < 0 {
		return source, source
	}
	preferred := s.backends[source].preferred()
	for range s.backends {
		s.rr = (s.rr + 1) % len(s.backends)
		if be := s.backends[s.rr]; be.preferred() || !preferred && be.up.Load() && !be.retired.Load() && !be.resyncing.Load() && !be.behind.Load() {
			return source, be.index
		}
	}
	return source, source
}

// pick returns the primary if it is up (and preferred, when preferredOnly), else the
// first such backend, else -1. A backend being resynced or behind is never picked.
func (s *sequencer) pick(preferredOnly bool) int {
	ok := func(be *backend) bool {
		if preferredOnly {
			return be.preferred()
		}
		return be.up.Load() && !be.retired.Load() && !be.resyncing.Load() && !be.behind.Load()
	}
	if s.primary >= 0 && s.primary < len(s.backends) && ok(s.backends[s.primary]) {
		return s.primary
	}
	for _, be := range s.backends {
		if ok(be) {
			return be.index
		}
	}
	return -1
}
