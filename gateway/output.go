package gateway

import (
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
// takes everything. What the socket does not take waits in pending, written by a
// writer goroutine that exists only while something waits (so idle clients cost no
// goroutine). While more than client_output_limit bytes wait, send blocks the
// session: it stops reading that client's commands until the client reads
// (backpressure). A client that leaves its replies unread for client_output_timeout
// is disconnected.
type output struct {
	conn    net.Conn
	direct  *nonBlockingWriter // nil: no non-blocking write, pending and the writer only
	limit   int64
	timeout time.Duration

	mu      sync.Mutex // guards everything below
	drained sync.Cond  // signalled when pending shrinks or the writer stops
	pending []byte     // bytes not yet written, in order
	spare   []byte
	running bool  // the writer goroutine is running
	writing bool  // a sender writes directly, without the lock
	closing bool  // close is waiting: keep its deadline
	err     error // the write error that ends the session
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
func (o *output) send(b []byte) error { return o.write(b, true) }

// push is send for messages other goroutines deliver (pub/sub messages, MONITOR
// lines): it never waits. A client that leaves more than the limit unread is
// disconnected, as Redis disconnects a pub/sub client over its output buffer limit.
func (o *output) push(b []byte) error { return o.write(b, false) }

func (o *output) write(b []byte, wait bool) error {
	o.mu.Lock()
	if o.err != nil {
		defer o.mu.Unlock()
		return o.err
	}
	if !o.running && !o.writing && len(o.pending) == 0 {
		o.writing = true // other senders queue behind this write meanwhile
		o.mu.Unlock()
		n, err := o.tryWrite(b)
		o.mu.Lock()
		o.writing = false
		if err != nil {
			o.err = err
			o.mu.Unlock()
			return err
		}
		if n == len(b) && len(o.pending) == 0 {
			o.mu.Unlock()
			return nil
		}
		// What others queued meanwhile goes after the rest of b.
		rest := append(append(o.spare[:0], b[n:]...), o.pending...)
		o.spare, o.pending = o.pending[:0], rest
		b = nil
	}
	o.pending = append(o.pending, b...)
	if !o.running && !o.writing { // a direct writer starts the loop when it is done
		o.running = true
		go o.writeLoop()
	}
	if !wait && int64(len(o.pending)) > o.limit {
		o.err = fmt.Errorf("more than %d bytes of messages left unread (client_output_limit)", o.limit)
		_ = o.conn.Close()
	}
	for wait && int64(len(o.pending)) > o.limit && o.err == nil {
		o.drained.Wait()
	}
	err := o.err
	o.mu.Unlock()
	return err
}

// tryWrite writes what the socket takes now, without waiting.
func (o *output) tryWrite(b []byte) (int, error) {
	if o.direct == nil {
		return 0, nil
	}
	return o.direct.write(b)
}

// writeLoop writes pending until it is empty, then exits.
func (o *output) writeLoop() {
	for {
		o.mu.Lock()
		if len(o.pending) == 0 || o.err != nil {
			o.running = false
			o.drained.Broadcast()
			o.mu.Unlock()
			return
		}
		buf := o.pending
		o.pending = o.spare[:0]
		o.mu.Unlock()

		if o.timeout > 0 && !o.closing {
			_ = o.conn.SetWriteDeadline(time.Now().Add(o.timeout))
		}
		_, err := o.conn.Write(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("replies left unread for %v (client_output_timeout)", o.timeout)
		}

		o.mu.Lock()
		if cap(buf) <= keepBufLimit {
			o.spare = buf[:0]
		} else {
			o.spare = nil // give a large burst's memory back
		}
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
