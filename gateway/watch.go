package gateway

import (
	"strconv"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// WATCH is answered by the gateway, which sees every write in the global order: a
// client's watched keys are registered with the sequencer (keywatch.go), any write
// queued after that which changes one of them (by any client, FLUSHDB and FLUSHALL
// included) marks the watch failed, and at EXEC the sequencer drops the transaction
// and answers nil instead of sending it, under the same lock, so no write can slip
// between the check and the block. A watched key's expiry also fails it, as in Redis
// 7: WATCH reads each key's PEXPIRETIME at its place in the order, and EXEC fails
// once that time has passed. Writes made directly on a backend, around the gateway,
// are not seen.

// watchState is one client's WATCH.
type watchState struct {
	waiter keyWaiter
	dirty  bool    // a watched key was touched (under the sequencer lock)
	expire []int64 // per key: its expiry time (Unix ms) at WATCH; 0: none
	// execNil is EXEC's reply when the watch failed (the client's protocol's nil).
	execNil []byte
}

// failed reports whether the transaction must not run (caller holds the sequencer lock).
func (w *watchState) failed() bool {
	if w.dirty {
		return true
	}
	var now int64
	for _, at := range w.expire {
		if at > 0 {
			if now == 0 {
				now = time.Now().UnixMilli()
			}
			if now >= at {
				return true
			}
		}
	}
	return false
}

// watchProbe is a hidden PEXPIRETIME read whose reply gives a watched key's expiry.
type watchProbe struct {
	idx int // command index in the batch
	key int // index in watchState.expire
}

// watch answers WATCH key [key ...].
func (r *respCodec) watch(b *batch, cmd protocols.Command) {
	s := r.s
	if r.inMulti() {
		b.addLocal(cmd.Name, resp.AppendError(s.scratch[:0], "ERR WATCH inside MULTI is not allowed"))
		return
	}
	w := r.watching
	if w == nil {
		w = &watchState{}
		w.waiter.touch = func() { w.dirty = true }
		r.watching = w
	}
	w.execNil = r.nullArray()
	seq := &s.gw.seq
	seq.mu.Lock()
	seq.keys.remove(&w.waiter)
	first := len(w.waiter.keys)
	for _, k := range cmd.Args[1:] {
		ref := keyRef{r.db, string(k)}
		if !containsKey(w.waiter.keys, ref) {
			w.waiter.keys = append(w.waiter.keys, ref)
			w.expire = append(w.expire, 0)
		}
	}
	seq.keys.add(&w.waiter)
	seq.mu.Unlock()
	s.client.update(func(c *client) { c.watching = len(w.waiter.keys) })
	for i, ref := range w.waiter.keys[first:] {
		start := len(r.rewritten)
		r.rewritten = resp.AppendCommandStrings(r.rewritten, "PEXPIRETIME", ref.key)
		c := s.queue(b, "PEXPIRETIME", queuedCmd{frame: r.rewritten[start:], class: protocols.Read, db: r.stream()})
		c.hidden = true
		r.watchProbes = append(r.watchProbes, watchProbe{idx: len(b.cmds) - 1, key: first + i})
	}
	b.addLocal(cmd.Name, resp.AppendOK(s.scratch[:0]))
}

func containsKey(keys []keyRef, ref keyRef) bool {
	for _, k := range keys {
		if k == ref {
			return true
		}
	}
	return false
}

// unwatch forgets the client's watched keys (UNWATCH, and after EXEC or DISCARD).
func (r *respCodec) unwatch() {
	w := r.watching
	if w == nil {
		return
	}
	seq := &r.s.gw.seq
	seq.mu.Lock()
	seq.keys.remove(&w.waiter)
	seq.mu.Unlock()
	r.watching = nil
	r.s.client.update(func(c *client) { c.watching = 0 })
}

// watchReplied reads the expiry times the WATCH probes of a finished batch returned.
func (r *respCodec) watchReplied(b *batch) {
	if len(r.watchProbes) == 0 {
		return
	}
	if w := r.watching; w != nil {
		b.mu.Lock()
		for _, p := range r.watchProbes {
			reply := b.reply(&b.cmds[p.idx])
			if len(reply) > 3 && reply[0] == ':' {
				if at, err := strconv.ParseInt(string(reply[1:len(reply)-2]), 10, 64); err == nil && at > 0 && p.key < len(w.expire) {
					w.expire[p.key] = at
				}
			}
		}
		b.mu.Unlock()
	}
	r.watchProbes = r.watchProbes[:0]
}
