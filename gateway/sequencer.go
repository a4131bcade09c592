package gateway

import (
	"sync"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// queuedCmd is a command of a batch that goes to backends.
type queuedCmd struct {
	idx   int    // index in the batch
	frame []byte // bytes to send (aliases the session's read buffer until submit returns)
	class protocols.Class
	db    int
	kind  uint8 // the codec's reply kind (memcached replies are scanned by command)
	// effect, for a conditional write only one backend can evaluate (memcached cas),
	// is its unconditional form for the other backends; see gate.
	effect []byte
}

// sequencer is the gateway's one serial point. It appends every batch to every
// backend's queue under one lock, so all backends receive all writes, from all
// clients, in the same order. Its critical section only copies bytes into backend
// queues: no I/O, no allocation in the steady state.
type sequencer struct {
	mu       sync.Mutex // guards everything below
	backends []*backend
	primary  int // index of the configured primary in backends
	readAny  bool
	rr       int // round robin position for read_from=any
	// queueWhenAllDown keeps writes for backlogs even when no backend is up
	// (write-and-forget: no client is told anything anyway).
	queueWhenAllDown bool
	gates            []*gate // scratch: the gates of the batch being submitted
}

// submit queues the batch's backend commands and seals the batch.
func (s *sequencer) submit(b *batch, items []queuedCmd, errNoBackend []byte) {
	s.mu.Lock()
	source, readTarget := s.targets()
	queueWrites := source >= 0 || s.queueWhenAllDown
	b.mu.Lock()
	gates := s.gates[:0]
	for i := range items {
		it := &items[i]
		c := &b.cmds[it.idx]
		c.source = int16(source)
		if it.class == protocols.Read {
			c.source = int16(readTarget)
		}
		if it.effect != nil && source >= 0 {
			gates = append(gates, &gate{backends: s.backends})
		}
	}
	for _, be := range s.backends {
		appended := false
		be.mu.Lock()
		up := be.state == StateUp
		g := 0
		for i := range items {
			it := &items[i]
			isWrite := it.class != protocols.Read
			if isWrite && !queueWrites || !isWrite && be.index != readTarget {
				continue
			}
			p := pending{write: isWrite, kind: it.kind}
			if up {
				p.b, p.idx = b, int32(it.idx)
			}
			var ok bool
			if it.effect != nil {
				if source < 0 {
					continue // nobody can evaluate the condition
				}
				p.gate, p.authority = gates[g], be.index == source
				g++
				ok = be.appendGatedLocked(it.frame, it.effect, p, up)
			} else {
				ok = be.appendLocked(it.frame, it.db, p)
			}
			if !ok {
				continue
			}
			appended = true
			if up {
				b.expectFrom(it.idx)
				if c := &b.cmds[it.idx]; int(c.source) == be.index {
					c.srcQueued = true
				}
			}
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

// targets picks the preferred reply source for writes (the primary, or the first
// backend up) and the backend for reads; -1 when no backend is up. Caller holds mu.
func (s *sequencer) targets() (source, read int) {
	source = -1
	if s.primary >= 0 && s.primary < len(s.backends) && s.backends[s.primary].up.Load() {
		source = s.primary
	} else {
		for _, be := range s.backends {
			if be.up.Load() {
				source = be.index
				break
			}
		}
	}
	if !s.readAny || source < 0 {
		return source, source
	}
	for range s.backends {
		s.rr = (s.rr + 1) % len(s.backends)
		if be := s.backends[s.rr]; be.up.Load() {
			return source, be.index
		}
	}
	return source, source
}
