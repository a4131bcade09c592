package gateway

import (
	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// multiFrame is MULTI as it goes to the backends in front of a queued transaction.
var multiFrame = []byte("*1\r\n$5\r\nMULTI\r\n")

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
}

// abort makes EXEC answer EXECABORT and lets go of what was queued.
func (t *transaction) abort() {
	t.aborted = true
	t.frames, t.ends, t.names = nil, nil, nil
}

func (t *transaction) reset() {
	t.active, t.aborted, t.write = false, false, false
	t.frames, t.ends, t.names = t.frames[:0], t.ends[:0], t.names[:0]
}

// transact handles cmd if it belongs to transaction handling (MULTI, EXEC, DISCARD,
// or any command while a transaction is open) and reports whether it did.
func (r *respCodec) transact(b *batch, cmd protocols.Command) bool {
	tx := &r.tx
	switch cmd.Name {
	case "MULTI":
		if tx.active {
			b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], "ERR MULTI calls can not be nested"))
			return true
		}
		tx.reset()
		tx.active = true
		b.addLocal(cmd.Name, resp.AppendOK(r.s.scratch[:0]))
		return true
	case "DISCARD":
		if !tx.active {
			b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], "ERR DISCARD without MULTI"))
			return true
		}
		tx.reset()
		b.addLocal(cmd.Name, resp.AppendOK(r.s.scratch[:0]))
		return true
	case "EXEC":
		r.exec(b, cmd)
		return true
	}
	if !tx.active {
		return false
	}
	if msg := resp.Reject(cmd.Args); msg != "" {
		// As Redis: an unknown command or a wrong arity is answered at once, and EXEC
		// then answers EXECABORT.
		tx.abort()
		b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], msg))
		return true
	}
	if int64(len(tx.frames)+len(cmd.Frame)) > r.s.gw.cfg.MaxRequestBytes {
		tx.abort()
		b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], "ERR dynode-broadcaster: transaction larger than max_request_bytes, discarded"))
		return true
	}
	class := cmd.Class
	if cmd.Name == "PING" || cmd.Name == "ECHO" {
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
	b.addLocal(cmd.Name, resp.AppendSimple(r.s.scratch[:0], "QUEUED"))
	return true
}

// exec queues the whole transaction into the batch: MULTI and the commands hidden,
// EXEC's reply visible.
func (r *respCodec) exec(b *batch, cmd protocols.Command) {
	tx := &r.tx
	switch {
	case !tx.active:
		b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], "ERR EXEC without MULTI"))
		return
	case tx.aborted:
		tx.reset()
		b.addLocal(cmd.Name, resp.AppendError(r.s.scratch[:0], "EXECABORT Transaction discarded because of previous errors."))
		return
	}
	class := protocols.Read
	if tx.write {
		class = protocols.Write
	}
	queue := func(name string, frame []byte, hidden bool) {
		r.s.queue(b, name, queuedCmd{frame: frame, class: class, db: r.db}).hidden = hidden
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
	tx.reset()
}
