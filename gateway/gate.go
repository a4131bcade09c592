package gateway

import (
	"bytes"
	"sync"
)

// gateOutcome is what the authority did with a conditional write.
type gateOutcome uint8

const (
	gateOpen    gateOutcome = iota // the authority has not answered yet
	gateApplied                    // the authority applied it: the others get the unconditional form
	gateSkipped                    // not applied, or its fate is unknown: the others get a no-op
)

// gate places a conditional write that only one backend can evaluate (memcached cas,
// or a meta command with a C compare-CAS flag: the client's token comes from one
// server) at the same point of every backend's stream. The authority (the reply
// source when it was queued) gets the command itself. Every other backend gets, at
// the same place, the command's unconditional form if the authority applied it, or
// a no-op if not; its writer stops at the gate until the authority has answered. So
// a cas that stores on the authority stores the same value everywhere, one that
// fails changes nothing anywhere, and writes queued after it reach every backend
// after its effect. The cost is one authority round trip of delay for the writes
// behind a cas on the other backends.
//
// For writes whose outcome depends on the server (SPOP pops random members, XADD *
// takes the server's clock, INCRBYFLOAT formats a float), effectOf computes the
// others' command from the authority's reply, as Redis replicates these commands to
// its replicas by their effect: SREM of the members popped, XADD with the ID
// assigned, SET of the resulting value. When the reply is not enough (the exact trim
// of XADD MAXLEN ~, a memcached counter's bytes after incr), the authority runs probe
// right after the command and the gate resolves on both replies. A gated write can
// also be a whole transaction block, whose last entry (EXEC) carries the gate. Every
// effect is exactly one reply per queue entry, so replies stay matched.
type gate struct {
	backends  []*backend // kicked when the outcome is known
	effectOf  func(reply, probe []byte) ([]byte, bool)
	probe     []byte        // a read the authority runs after the command, for effectOf
	probeKind uint8         // the probe's reply kind (memcached replies are scanned by kind)
	done      chan struct{} // if not nil, closed once the outcome is known

	mu      sync.Mutex // guards everything below
	outcome gateOutcome
	reply   []byte // the authority's reply; nil when it failed
	effect  []byte // from effectOf: what the others apply
	held    []byte // the authority's reply, while its probe's is awaited
	applied bool   // with held: whether the authority applied the command
}

// hold keeps the authority's reply to the command until the probe's reply arrives.
func (g *gate) hold(applied bool, reply []byte) {
	g.mu.Lock()
	g.held, g.applied = bytes.Clone(reply), applied
	g.mu.Unlock()
}

// resolveProbe resolves the gate once the probe's reply arrives.
func (g *gate) resolveProbe(probe []byte) {
	g.mu.Lock()
	held, applied := g.held, g.applied
	g.mu.Unlock()
	g.resolveWith(applied, held, probe)
}

// resolve records the authority's outcome once and wakes the waiting writers.
func (g *gate) resolve(applied bool, reply []byte) { g.resolveWith(applied, reply, nil) }

func (g *gate) resolveWith(applied bool, reply, probe []byte) {
	g.mu.Lock()
	if g.outcome != gateOpen {
		g.mu.Unlock()
		return
	}
	g.outcome = gateSkipped
	if applied && g.effectOf != nil {
		g.effect, applied = g.effectOf(reply, probe)
	}
	if applied {
		g.outcome = gateApplied
	}
	g.reply = bytes.Clone(reply)
	g.mu.Unlock()
	if g.done != nil {
		close(g.done)
	}
	for _, be := range g.backends {
		be.kick()
	}
}

// result returns the outcome and the authority's reply.
func (g *gate) result() (gateOutcome, []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.outcome, g.reply
}

// effectFrame is what a non-authority backend writes once the authority applied the
// command: the effect computed from its reply, or the fixed unconditional form.
func (g *gate) effectFrame(fixed []byte) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.effect != nil {
		return g.effect
	}
	return fixed
}

// applied reports whether the authority applied a gated write, judging by its reply.
func (w *wire) gateApplied(g *gate, reply []byte) bool {
	if g.effectOf != nil {
		return !w.isError(reply)
	}
	return w.applied(reply)
}

// gatedWrite is a conditional write in one backend's stream, with the bytes queued
// behind it until the next gated write.
type gatedWrite struct {
	g         *gate
	frame     []byte // the command (authority) or its unconditional form (others)
	authority bool
	entries   int    // queue entries of the write itself: 2 when the authority runs a probe
	cancelled bool   // authority only: its connection failed before writing it
	after     []byte // frames queued behind it
	nAfter    int    // their queue entries
	dbAfter   int    // database selected after it and the frames behind it
	// With backlog_dir, while the backend is not connected: its queue position, its
	// entries' reply kinds, and whether it is in the backlog file (durable.go).
	seq       uint64
	kinds     []byte
	persisted bool
	// whileSpilling: queued while the backend spilled, so nobody waits for it and it
	// goes to the spill once known (spill.go).
	whileSpilling bool
}

// appendGatedLocked queues a gated write (the caller holds mu): frame for the
// authority, effect (nil when computed from the authority's reply) for the others.
// ps are its queue entries, one per command (a transaction block has several); the
// last one carries the gate. up is whether the backend was up when queued.
func (be *backend) appendGatedLocked(frame, effect []byte, db int, ps []pending, up bool) bool {
	last := ps[len(ps)-1]
	if !last.authority {
		frame = effect
	}
	if !be.admitLocked([]queuedCmd{{frame: frame}}, true) {
		if last.authority {
			last.gate.resolve(false, nil)
		}
		return false
	}
	be.selectLocked(db)
	gw := gatedWrite{g: last.gate, frame: bytes.Clone(frame), authority: last.authority, entries: len(ps), dbAfter: be.db,
		whileSpilling: be.spilling}
	if last.authority && last.gate.probe != nil {
		gw.frame, gw.entries = append(gw.frame, last.gate.probe...), gw.entries+1
	}
	if last.authority && !up {
		// The authority went down between target selection and now: nobody evaluates
		// the condition, so it is not applied anywhere.
		gw.cancelled = true
		last.gate.resolve(false, nil)
	}
	if be.disk != nil && be.state != StateUp {
		gw.seq = uint64(be.queue.pushed) + 1
		for _, p := range ps {
			gw.kinds = append(gw.kinds, p.kind)
		}
	}
	be.gated = append(be.gated, gw)
	be.held += gw.entries
	be.heldBytes += len(gw.frame)
	for _, p := range ps {
		be.queue.push(p)
	}
	if gw.entries > len(ps) {
		// The probe's reply resolves the gate; losing it (the connection fails in
		// between) leaves the others not knowing the effect, so it counts as a write.
		be.queue.push(pending{write: true, gate: last.gate, authority: true, probe: true, kind: last.gate.probeKind})
	}
	be.queued.Store(int64(be.queuedBytesLocked()))
	if be.disk != nil && be.state != StateUp {
		be.persistGatedLocked()
	}
	return true
}

// gatedFrame is what the backend writes for a gated write, once known: the command
// (authority), a no-op (cancelled or skipped), or the effect.
func (be *backend) gatedFrame(gw *gatedWrite) (frame []byte, ready bool) {
	switch {
	case gw.authority && gw.cancelled:
		return be.noops(gw.entries), true
	case gw.authority:
		return gw.frame, true
	}
	switch outcome, _ := gw.g.result(); outcome {
	case gateOpen:
		return nil, false
	case gateSkipped:
		return be.noops(gw.entries), true
	}
	return gw.g.effectFrame(gw.frame), true
}

// releaseGatedLocked moves the gated writes whose outcome is known, and the frames
// behind them, to out, or to the spill (the caller holds mu).
func (be *backend) releaseGatedLocked() {
	for len(be.gated) > 0 {
		gw := &be.gated[0]
		frame, ready := be.gatedFrame(gw)
		if !ready {
			return
		}
		if be.spilling && gw.whileSpilling {
			if gw.authority && !gw.cancelled {
				return // the spill holds no gates: it waits until the spill is read back
			}
			be.spillGatedLocked(gw, frame)
			continue
		}
		be.out.append(frame)
		be.out.append(gw.after)
		be.outDB = gw.dbAfter
		be.held -= gw.entries + gw.nAfter
		be.heldBytes -= len(gw.frame) + len(gw.after)
		be.gated[0] = gatedWrite{}
		be.gated = be.gated[1:]
	}
	be.gated = nil
}

// noops is the wire's no-op n times: one reply for each queue entry of a gated write.
func (be *backend) noops(n int) []byte {
	if n == 1 {
		return be.gw.wire.noop
	}
	return bytes.Repeat(be.gw.wire.noop, n)
}

// cancelGatedLocked runs when the connection fails: the authority's conditional
// writes not yet written will not be evaluated (a no-op takes their place once it
// is back), so the other backends are released with a no-op too.
func (be *backend) cancelGatedLocked() {
	for i := range be.gated {
		if gw := &be.gated[i]; gw.authority && !gw.cancelled {
			gw.cancelled = true
			gw.g.resolve(false, nil)
		}
	}
}

// gatedReply is the reply a backend's entry for a gated write stands for: its own
// reply when the unconditional form was applied, otherwise (a no-op was written) the
// authority's reply, so backends that did nothing agree with the authority.
//
// An effect computed from the authority's reply is another command (SREM for SPOP):
// its reply is not comparable, so a backend that applied it without an error stands
// for the authority's reply too. An error there (the backends already differed) is
// compared as it is, and counts a lost write.
func gatedReply(p *pending, reply []byte, isError func([]byte) bool) []byte {
	if p.authority {
		return reply
	}
	outcome, authority := p.gate.result()
	if outcome != gateApplied || p.gate.effectOf != nil && !isError(reply) {
		return authority
	}
	return reply
}
