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
}

// submit queues the batch's backend commands and seals the batch.
func (s *sequencer) submit(b *batch, items []queuedCmd, errNoBackend []byte) {
	s.mu.Lock()
	source, readTarget := s.targets()
	queueWrites := source >= 0 || s.queueWhenAllDown
	b.mu.Lock()
	for i := range items {
		it := &items[i]
		c := &b.cmds[it.idx]
		c.source = int16(source)
		if it.class == protocols.Read {
			c.source = int16(readTarget)
		}
	}
	for _, be := range s.backends {
		appended := false
		be.mu.Lock()
		up := be.state == StateUp
		for i := range items {
			it := &items[i]
			isWrite := it.class != protocols.Read
			if isWrite && !queueWrites || !isWrite && be.index != readTarget {
				continue
			}
			p := pending{write: isWrite}
			if up {
				p.b, p.idx = b, int32(it.idx)
			}
			if !be.appendLocked(it.frame, it.db, p) {
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
