package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// output writes a session's replies to its client without ever blocking the
// session's reading goroutine on the client: a client that sends a long pipeline
// before reading any reply (both sides' socket buffers full) would otherwise
// deadlock with the gateway.
//
// Replies are first written with one non-blocking write, which in the common case
// takes everything. What the socket does not take waits in chunks, written (writev) by a
// writer goroutine that exists only while something waits (so idle clients cost no
// goroutine). While more than client_output_limit bytes wait, send blocks the
// session: it stops reading that client's commands until the client reads
// (backpressure). A client that leaves its replies unread for client_output_timeout
// is disconnected.
type output struct {
	conn    net.Conn
	direct  *nonBlockingWriter // nil: no non-blocking write, chunks and the writer only
	wr      *sockWriter        // writeLoop's, made at its first run
	limit   int64
	timeout time.Duration

	mu      sync.Mutex // guards everything below
	drained sync.Cond  // signalled when queued shrinks or the writer stops
	chunks  [][]byte   // bytes not yet written, in order
	owned   [][]byte   // pooled buffers chunks refer to: back to their pool once written
	queued  int64      // bytes in chunks and being written by writeLoop
	running bool       // the writer goroutine is running
	writing bool       // a sender writes directly, without the lock
	closing bool       // close is waiting: keep its deadline
	err     error      // the write error that ends the session
}

func newOutput(conn net.Conn, limit int64, timeout time.Duration) *output {
	o := &output{conn: conn, limit: limit, timeout: timeout}
	o.drained.L = &o.mu
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			o.direct = newNonBlockingWriter(raw)
		}
	}
	return o
}

// send writes b (or queues what the socket does not take at once). It returns once b
// is written or queued and no more than the limit waits, or with the error that
// ends the session. b may be reused by the caller afterwards. It may be called from
// several goroutines (a subscriber's messages, a monitor's lines): each b stays whole.
func (o *output) send(b []byte) error { return o.writeOwned(b, true, nil) }

// sendOwned is send for b in a pooled buffer the output takes over (owned, which
// holds b): what the socket does not take at once is queued without a copy, and
// owned goes back to its pool once written.
func (o *output) sendOwned(b, owned []byte) error { return o.writeOwned(b, true, owned) }

// push is send for messages other goroutines deliver (pub/sub messages, MONITOR
// lines): it never waits. A client that leaves more than the limit unread is
// disconnected, as Redis disconnects a pub/sub client over its output buffer limit.
func (o *output) push(b []byte) error { return o.writeOwned(b, false, nil) }

// writeOwned writes or queues b; owned, when not nil, is the pooled buffer holding b,
// which the output then owns: it goes back to its pool once b is written, and what
// the socket does not take at once is queued by reference, not copied.
func (o *output) writeOwned(b []byte, wait bool, owned []byte) error {
	referenced := false // a queued chunk refers to owned
	keep := func(b []byte) []byte {
		if owned == nil {
			return bytes.Clone(b)
		}
		// With no room after it: a small reply queued later must not be appended
		// into the bytes that follow it.
		referenced = true
		return b[:len(b):len(b)]
	}
	o.mu.Lock()
	defer func() {
		if owned != nil {
			if referenced {
				o.owned = append(o.owned, owned)
			} else {
				putBigBuf(owned)
			}
		}
		o.mu.Unlock()
	}()
	if o.err != nil {
		return o.err
	}
	if !o.running && !o.writing && len(o.chunks) == 0 {
		o.writing = true // other senders queue behind this write meanwhile
		o.mu.Unlock()
		n, err := o.tryWrite(b)
		o.mu.Lock()
		o.writing = false
		if err != nil {
			o.err = err
			return err
		}
		if n == len(b) && len(o.chunks) == 0 {
			return nil
		}
		// The rest of b goes before what others queued meanwhile.
		if n < len(b) {
			o.chunks = append([][]byte{keep(b[n:])}, o.chunks...)
			o.queued += int64(len(b) - n)
		}
		b = nil
	}
	if len(b) > 0 {
		// Small replies share a chunk; a large one is a chunk of its own (no buffer
		// that grows and is copied again as replies pile up).
		if last := len(o.chunks) - 1; last >= 0 && len(b) < smallChunk && cap(o.chunks[last])-len(o.chunks[last]) >= len(b) {
			o.chunks[last] = append(o.chunks[last], b...)
		} else if len(b) < smallChunk {
			o.chunks = append(o.chunks, append(make([]byte, 0, smallChunk), b...))
		} else {
			o.chunks = append(o.chunks, keep(b))
		}
		o.queued += int64(len(b))
	}
	if !o.running && !o.writing && len(o.chunks) > 0 { // a direct writer starts the loop when it is done
		o.running = true
		go o.writeLoop()
	}
	if !wait && o.queued > o.limit {
		o.err = fmt.Errorf("more than %d bytes of messages left unread (client_output_limit)", o.limit)
		_ = o.conn.Close()
	}
	for wait && o.queued > o.limit && o.err == nil {
		o.drained.Wait()
	}
	return o.err
}

// idle reports whether nothing is being written or waits to be (and no error
// ended the output): then the output can be dropped and made again.
func (o *output) idle() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.running && !o.writing && len(o.chunks) == 0 && o.err == nil
}

// smallChunk is the size of the chunks small replies are gathered in.
const smallChunk = 16 << 10

// tryWrite writes what the socket takes now, without waiting.
func (o *output) tryWrite(b []byte) (int, error) {
	if o.direct == nil {
		return 0, nil
	}
	return o.direct.write(b)
}

// writeLoop writes the queued chunks (with one writev each round) until none is
// left, then exits. Bytes being written still count against the limit.
func (o *output) writeLoop() {
	for {
		o.mu.Lock()
		if len(o.chunks) == 0 || o.err != nil {
			o.running = false
			o.drained.Broadcast()
			o.mu.Unlock()
			return
		}
		bufs := net.Buffers(o.chunks)
		owned := o.owned
		o.chunks, o.owned = nil, nil
		o.mu.Unlock()

		if o.timeout > 0 && !o.closing {
			_ = o.conn.SetWriteDeadline(time.Now().Add(o.timeout))
		}
		if o.wr == nil {
			o.wr = newSockWriter(o.conn)
		}
		n, err := o.wr.WriteBuffers(bufs)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("replies left unread for %v (client_output_timeout)", o.timeout)
		}

		if err == nil {
			for _, b := range owned {
				putBigBuf(b) // written: nothing refers to it any more
			}
		}
		o.mu.Lock()
		o.queued -= n
		if err != nil && o.err == nil {
			o.err = err
		}
		o.drained.Broadcast()
		o.mu.Unlock()
	}
}

// close waits, at most for wait, until what is pending has been written (the replies
// before a QUIT or a protocol error), then stops the writer.
func (o *output) close(wait time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.running {
		return
	}
	o.closing = true
	_ = o.conn.SetWriteDeadline(time.Now().Add(wait))
	for o.running {
		o.drained.Wait()
	}
}
