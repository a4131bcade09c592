package gateway

import (
	"bytes"
	"slices"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// multiFrame is MULTI as it goes to the backends in front of a queued transaction.
var multiFrame = []byte("*1\r\n$5\r\nMULTI\r\n")

// execFrame and pingFrame are EXEC, and a command with no effect that keeps a block's
// number of replies.
var (
	execFrame = []byte("*1\r\n$4\r\nEXEC\r\n")
	pingFrame = []byte("*1\r\n$4\r\nPING\r\n")
)

// transaction is a client's MULTI ... EXEC being queued. The gateway answers MULTI and
// QUEUED itself and keeps the commands; EXEC appends MULTI, the commands and EXEC in
// one sequencer pass, so the block is contiguous and in the same place of the global
// order on every backend, whatever other clients do meanwhile. The client sees the
// backends' EXEC reply; their MULTI and QUEUED replies are checked, not forwarded.
type transaction struct {
	active  bool
	aborted bool     // a command was refused while queuing: EXEC answers EXECABORT
	write   bool     // a queued command writes: the block goes to every backend
	frames  []byte   // queued commands' frames, back to back
	ends    []int    // end of each frame in frames
	names   []string // their command names
	// effects holds, per queued command, how the other backends reproduce it when
	// its outcome depends on the server (SPOP, XADD *...); nil entries run as sent.
	effects  []func(reply, probe []byte) ([]byte, bool)
	byEffect bool // some entry of effects is set
}

// abort makes EXEC answer EXECABORT and lets go of what was queued.
func (t *transaction) abort() {
	t.aborted = true
	t.frames, t.ends, t.names, t.effects = nil, nil, nil, nil
}

// inMulti reports whether the client has a transaction open.
func (r *respCodec) inMulti() bool { return r.tx != nil && r.tx.active }

// endTransaction records for CLIENT LIST that the client left MULTI.
func (r *respCodec) endTransaction() {
	r.s.client.update(func(c *client) { c.multi = -1 })
}

func (t *transaction) reset() {
	t.active, t.aborted, t.write, t.byEffect = false, false, false, false
	t.frames, t.ends, t.names = t.frames[:0], t.ends[:0], t.names[:0]
	clear(t.effects)
	t.effects = t.effects[:0]
}

// transact handles cmd if it belongs to transaction handling (MULTI, EXEC, DISCARD,
// or any command while a transaction is open) and reports whether it did.
func (r *respCodec) transact(b *batch, cmd protocols.Command) bool {
	if r.tx == nil {
		switch cmd.Name {
		case "MULTI", "DISCARD", "EXEC":
			r.tx = &transaction{} // made at the first use: most clients never open one
		default:
			return false
		}
	}
	tx := r.tx
	switch cmd.Name {
	case "MULTI":
		if tx.active {
			b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], "ERR MULTI calls can not be nested"))
			return true
		}
		tx.reset()
		tx.active = true
		r.s.client.update(func(c *client) { c.multi = 0 })
		b.addLocal(cmd.Name, resp.AppendOK(r.s.scratch[:0]))
		return true
	case "DISCARD":
		if !tx.active {
			b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], "ERR DISCARD without MULTI"))
			return true
		}
		tx.reset()
		r.unwatchAfter = true
		r.endTransaction()
		b.addLocal(cmd.Name, resp.AppendOK(r.s.scratch[:0]))
		return true
	case "EXEC":
		r.exec(b, cmd)
		return true
	}
	if !tx.active {
		return false
	}
	if cmd.Name == "WATCH" {
		return false // answered with an error, the transaction goes on (watch.go)
	}
	if msg := resp.Reject(cmd.Args); msg != "" {
		// As Redis: an unknown command or a wrong arity is answered at once, and EXEC
		// then answers EXECABORT.
		tx.abort()
		b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], msg))
		return true
	}
	if int64(len(tx.frames)+len(cmd.Frame)) > r.s.gw.conf().MaxRequestBytes {
		tx.abort()
		b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], "ERR dynode-broadcaster: transaction larger than max_request_bytes, discarded"))
		return true
	}
	class := cmd.Class
	if cmd.Name == "PING" || cmd.Name == "ECHO" || cmd.Name == "UNWATCH" {
		class = protocols.Read // inside MULTI their replies belong in EXEC's array
	}
	if class != protocols.Read && class != protocols.Write {
		tx.abort()
		msg := "ERR command '" + cmd.Name + "' cannot be used inside MULTI through dynode-broadcaster"
		b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], msg))
		return true
	}
	tx.write = tx.write || class == protocols.Write
	if tx.aborted {
		b.addLocal(cmd.Name, resp.AppendSimple(r.s.scratch[:0], "QUEUED"))
		return true // EXEC will answer EXECABORT: keep nothing
	}
	tx.frames = append(tx.frames, cmd.Frame...)
	tx.ends = append(tx.ends, len(tx.frames))
	tx.names = append(tx.names, cmd.Name)
	r.s.client.update(func(c *client) { c.multi = len(tx.names) })
	var effect func(reply, probe []byte) ([]byte, bool)
	if class == protocols.Write {
		// No probe can run inside the block: approximate trimming stays as sent.
		effect, _ = resp.Effect(cmd.Name, cmd.Args, true)
	}
	tx.effects = append(tx.effects, effect)
	tx.byEffect = tx.byEffect || effect != nil
	b.addLocal(cmd.Name, resp.AppendSimple(r.s.scratch[:0], "QUEUED"))
	return true
}

// exec queues the whole transaction into the batch: MULTI and the commands hidden,
// EXEC's reply visible.
func (r *respCodec) exec(b *batch, cmd protocols.Command) {
	tx := r.tx // transact made it
	switch {
	case !tx.active:
		b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], "ERR EXEC without MULTI"))
		return
	case tx.aborted:
		tx.reset()
		r.unwatchAfter = true
		r.endTransaction()
		b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], "EXECABORT Transaction discarded because of previous errors."))
		return
	}
	class := protocols.Read
	if tx.write {
		class = protocols.Write
	}
	queue := func(name string, frame []byte, hidden bool) {
		r.s.queue(b, name, queuedCmd{frame: frame, class: class, db: r.stream()}).hidden = hidden
	}
	// The frames move to execFrames, which lives until the batch is submitted: the
	// same burst may open and queue another transaction after this EXEC.
	first := len(r.s.items)
	queue("MULTI", multiFrame, true)
	start := len(r.execFrames)
	r.execFrames = append(r.execFrames, tx.frames...)
	frames := r.execFrames
	prev := 0
	for i, end := range tx.ends {
		queue(tx.names[i], frames[start+prev:start+end], true)
		prev = end
	}
	queue(cmd.Name, cmd.Frame, false)
	r.s.items[first].block = len(r.s.items) - first // admitted whole or not at all
	if r.watching != nil {
		r.s.items[first].watch = r.watching
		r.unwatchAfter = true
	}
	if tx.byEffect {
		// The authority runs the block as sent; the others run it with each command
		// whose outcome depends on the server replaced by its effect (see gate).
		r.s.items[first].effectOf = blockEffect(frames[start:start+prev], tx.ends, tx.effects)
	}
	tx.reset()
	r.endTransaction()
}

// blockEffect returns the effect of a transaction some of whose commands are
// replicated by effect: from the authority's EXEC reply, MULTI, each command as sent
// or its effect computed from its own element of the reply (a PING where the
// authority's element is an error or the effect is empty, so the block keeps its
// number of replies), EXEC. An EXEC that did not run (nil, error) has no effect.
func blockEffect(frames []byte, ends []int, effects []func(reply, probe []byte) ([]byte, bool)) func(reply, probe []byte) ([]byte, bool) {
	own := bytes.Clone(frames)
	ends = slices.Clone(ends)
	effects = slices.Clone(effects)
	return func(reply, _ []byte) ([]byte, bool) {
		elems, ok := resp.Elements(reply)
		if !ok || len(elems) != len(ends) {
			return nil, false
		}
		out := append([]byte(nil), multiFrame...)
		prev := 0
		for i, end := range ends {
			frame := own[prev:end]
			prev = end
			if effects[i] != nil {
				frame = pingFrame
				if len(elems[i]) > 0 && elems[i][0] != '-' {
					if eff, ok := effects[i](elems[i], nil); ok {
						frame = eff
					}
				}
			}
			out = append(out, frame...)
		}
		return append(out, execFrame...), true
	}
}
