package gateway

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX,
// BZMPOP, XREAD BLOCK, XREADGROUP BLOCK) never reach a backend in their blocking
// form: on a shared pipeline one blocked command would stall every client behind it.
// The gateway parks the client instead. Each attempt sends MULTI, the command as the
// client wrote it, EXEC through the sequencer, as one block: inside a transaction
// Redis runs a blocking command without blocking (an empty list answers nil at
// once), so every backend pops the same element at the same place of the global
// order (reads, XREAD, go to one backend). When the attempt answers nil, the client
// waits until a write touches one of its keys (keywatch.go), then tries again;
// pops waiting on one key are woken first come, first served, as Redis serves them.
// The client's timeout, CLIENT UNBLOCK, and the client disconnecting end the wait.
// While parked, the session keeps reading the connection (to see it close); what the
// client sends meanwhile is run after the blocking command's reply, as Redis does.

// blockCall is a blocking command a session serves once the commands before it are
// answered.
type blockCall struct {
	name   string
	args   [][]byte // owned copies
	db     int      // the client's database
	stream int      // the backend stream state of its commands (respCodec.stream)
	call   resp.BlockingCall
	write  bool // XREAD is a read; everything else changes data
}

// blockWaiter is a parked client's registration with the sequencer.
type blockWaiter struct {
	waiter keyWaiter
	wake   chan struct{}
	// inFlight: an attempt is queued or running; dirty: a write touched a key since
	// it was queued, so a nil answer must be retried at once. Both under the
	// sequencer lock.
	inFlight, dirty bool
}

func (w *blockWaiter) touched() {
	if w.inFlight {
		w.dirty = true
		return
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// newBlockCall copies what a blocking command needs beyond the read buffer's life.
func newBlockCall(cmd protocols.Command, db, stream int, call resp.BlockingCall) *blockCall {
	bc := &blockCall{name: cmd.Name, db: db, stream: stream, call: call, write: cmd.Name != "XREAD"}
	for _, a := range cmd.Args {
		bc.args = append(bc.args, bytes.Clone(a))
	}
	// Keys alias cmd.Args: point them at the copies.
	for i, k := range call.Keys {
		for j, a := range cmd.Args {
			if len(k) > 0 && len(a) > 0 && &k[0] == &a[0] {
				bc.call.Keys[i] = bc.args[j]
			}
		}
	}
	bc.call.Keys = append([][]byte(nil), bc.call.Keys...)
	return bc
}

// serveBlocking runs a blocking command to its end and appends its reply to dst.
// closed reports that the client went away (or the gateway stops) while it waited.
func (s *session) serveBlocking(ctx context.Context, dst []byte, bc *blockCall) (out []byte, closed bool) {
	gw := s.gw
	codec := s.codec.(*respCodec)
	w := &blockWaiter{wake: make(chan struct{}, 1)}
	w.waiter = keyWaiter{fifo: !bc.call.Stream, touch: w.touched}
	for _, k := range bc.call.Keys {
		w.waiter.keys = append(w.waiter.keys, keyRef{bc.db, string(k)})
	}
	if bc.call.Blocks {
		gw.seq.mu.Lock()
		w.inFlight = true
		gw.seq.keys.add(&w.waiter)
		gw.seq.mu.Unlock()
		s.client.update(func(c *client) {
			c.blocked = true
			if c.unblock == nil {
				c.unblock = make(chan unblockRequest, 1)
			}
		})
		defer func() {
			gw.seq.mu.Lock()
			gw.seq.keys.remove(&w.waiter)
			gw.seq.mu.Unlock()
			s.client.update(func(c *client) { c.blocked = false })
			select {
			case <-s.client.unblock:
			default:
			}
		}()
	}
	if len(bc.call.LastIDs) > 0 && bc.call.Blocks { // without BLOCK, "$" finds nothing anyway
		if !s.resolveLastIDs(ctx, bc) {
			return dst, true
		}
	}
	frame := resp.AppendCommand(nil, bc.args)
	var timer <-chan time.Time
	if bc.call.Timeout > 0 {
		t := time.NewTimer(bc.call.Timeout)
		defer t.Stop()
		timer = t.C
	}
	var park *parkReader
	defer func() {
		if park != nil {
			s.stopParkReader(park)
		}
	}()
	for {
		reply, ok := s.attemptBlocking(ctx, bc, frame, &w.waiter)
		if !ok {
			return dst, true
		}
		if !bc.call.Blocks || !isNullReply(reply) {
			return append(dst, reply...), false
		}
		gw.seq.mu.Lock()
		again := w.dirty
		w.dirty, w.inFlight = false, again
		gw.seq.mu.Unlock()
		if again {
			continue
		}
		if park == nil {
			park = s.startParkReader()
		}
		select {
		case <-w.wake:
		case <-timer:
			return append(dst, codec.timeoutReply(bc)...), false
		case req := <-s.client.unblock:
			if req.withError {
				return resp.AppendError(dst, "UNBLOCKED client unblocked via CLIENT UNBLOCK"), false
			}
			return append(dst, codec.timeoutReply(bc)...), false
		case <-park.gone:
			return dst, true
		case <-ctx.Done():
			return dst, true
		}
		gw.seq.mu.Lock()
		w.inFlight = true
		gw.seq.mu.Unlock()
	}
}

// timeoutReply is the reply of a blocking command whose time ran out.
func (r *respCodec) timeoutReply(bc *blockCall) []byte {
	if bc.call.NullBulk {
		return r.nullBulk()
	}
	return r.nullArray()
}

// isNullReply reports a null bulk, null array or RESP3 null.
func isNullReply(b []byte) bool {
	return string(b) == "*-1\r\n" || string(b) == "$-1\r\n" || string(b) == "_\r\n"
}

// attemptBlocking sends MULTI, frame, EXEC through the sequencer and returns the
// command's reply (the EXEC reply's one element), or an error reply. ok is false
// when the session must stop.
func (s *session) attemptBlocking(ctx context.Context, bc *blockCall, frame []byte, self *keyWaiter) (reply []byte, ok bool) {
	replies, ok := s.runBlock(ctx, bc.stream, bc.write, bc.name, [][]byte{frame}, self)
	if !ok {
		return nil, false
	}
	return replies[0], true
}

// runBlock sends frames inside MULTI ... EXEC through the sequencer (to every backend
// for a write, else to the read target), in stream state db, and returns each command's reply from the
// EXEC reply; when EXEC itself failed, each gets EXEC's error reply.
func (s *session) runBlock(ctx context.Context, db int, write bool, name string, frames [][]byte, self *keyWaiter) (replies [][]byte, ok bool) {
	gw := s.gw
	class := protocols.Read
	if write {
		class = protocols.Write
	}
	b := newBatch(gw.settings.Load())
	defer b.release()
	items := make([]queuedCmd, 0, len(frames)+2)
	add := func(name string, frame []byte, hidden bool) {
		it := queuedCmd{frame: frame, class: class, db: db, self: self}
		it.idx = b.add(name, -1)
		b.cmds[it.idx].write = write
		b.cmds[it.idx].hidden = hidden
		items = append(items, it)
	}
	add("MULTI", multiFrame, true)
	for _, f := range frames {
		add(name, f, true)
	}
	add("EXEC", execFrame, false)
	items[0].block = len(items)
	var marks *waitMarks
	if write {
		marks = &s.marks
	}
	gw.seq.submit(b, items, gw.noBackend, marks)
	select {
	case <-b.done:
	case <-ctx.Done():
		return nil, false
	}
	b.mu.Lock()
	exec := bytes.Clone(b.reply(&b.cmds[len(b.cmds)-1]))
	b.mu.Unlock()
	replies = make([][]byte, len(frames))
	elems, isArray := resp.Elements(exec)
	for i := range replies {
		if isArray && len(elems) == len(frames) {
			replies[i] = elems[i]
		} else {
			replies[i] = exec // an error (no backend, EXECABORT): the command's reply
		}
	}
	return replies, true
}

// resolveLastIDs replaces XREAD's "$" IDs by each stream's last ID now, read at this
// place of the order (XINFO STREAM's last-generated-id; 0-0 for a missing key), so
// later attempts wait for entries after it, as Redis does.
func (s *session) resolveLastIDs(ctx context.Context, bc *blockCall) bool {
	half := len(bc.call.Keys)
	var frames [][]byte
	for _, i := range bc.call.LastIDs {
		key := bc.args[i-half]
		frames = append(frames, resp.AppendCommand(nil, [][]byte{[]byte("XINFO"), []byte("STREAM"), key}))
	}
	replies, ok := s.runBlock(ctx, bc.stream, false, "XINFO|STREAM", frames, nil)
	if !ok {
		return false
	}
	for n, i := range bc.call.LastIDs {
		id := []byte("0-0")
		if elems, ok := resp.Pairs(replies[n]); ok {
			for j := 0; j+1 < len(elems); j += 2 {
				if k, _ := resp.BulkValue(elems[j]); string(k) == "last-generated-id" {
					if v, ok := resp.BulkValue(elems[j+1]); ok {
						id = v
					}
				}
			}
		} else if bytes.HasPrefix(replies[n], []byte("-WRONGTYPE")) {
			continue // the attempt answers WRONGTYPE, as Redis would
		}
		bc.args[i] = bytes.Clone(id)
	}
	return true
}

// parkReader reads a parked client's connection, to see it close; what it reads is
// kept for the session.
type parkReader struct {
	gone chan struct{} // closed when the connection fails (closed, killed, shutdown)
	done chan struct{} // closed when the reader goroutine returns
	buf  []byte
	err  error
}

// startParkReader reads the connection until it fails or stopParkReader interrupts
// it. A blocked client is not subject to read_idle_timeout, as in Redis.
func (s *session) startParkReader() *parkReader {
	p := &parkReader{gone: make(chan struct{}), done: make(chan struct{})}
	_ = s.conn.SetReadDeadline(time.Time{})
	if s.gw.draining.Load() {
		close(p.gone) // shutting down: do not wait for anything
		close(p.done)
		return p
	}
	limit := int(s.gw.conf().MaxRequestBytes)
	go func() {
		defer close(p.done)
		tmp := make([]byte, 4<<10)
		// Past the limit it stops reading (backpressure) until the command is answered.
		for len(p.buf) < limit {
			n, err := s.conn.Read(tmp)
			p.buf = append(p.buf, tmp[:n]...)
			if err != nil {
				p.err = err
				close(p.gone)
				return
			}
		}
	}()
	return p
}

// stopParkReader stops the reader and keeps what it read for the session.
func (s *session) stopParkReader(p *parkReader) {
	_ = s.conn.SetReadDeadline(time.Now())
	<-p.done
	s.idle = deadline{} // the next read sets read_idle_timeout again
	_ = s.conn.SetReadDeadline(time.Time{})
	s.rbuf = append(s.rbuf, p.buf...)
	if p.err != nil && !errors.Is(p.err, os.ErrDeadlineExceeded) && !errors.Is(p.err, net.ErrClosed) {
		s.log.Debug("client connection closed while blocked", "err", p.err)
	}
}
