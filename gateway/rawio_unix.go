//go:build unix

package gateway

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// The gateway's hot sockets (a client's reads and replies, a backend connection's
// commands and replies) are non-blocking, and the runtime's poller waits for them;
// their read(2) and write(2) calls never block. They are made as raw system calls:
// a system call made the scheduler's way (entersyscall) wakes the runtime's monitor
// thread with a futex whenever every P was idle before it, which on a lightly loaded
// gateway is at almost every hop of a command (one client unpipelined: p50 / p95 /
// p99 0.119 / 0.207 / 0.271 ms made the scheduler's way, 0.095 / 0.143 / 0.191 raw,
// twemproxy 0.095 / 0.151 / 0.199). Large reads and writes (a value's bytes, a
// backend's writev of queued commands) are raw too: one that copies for longer than
// the monitor's 20 us tick has its P handed to another thread, and the monitor then
// keeps polling at that tick (10 clients sending 100 KiB SETs: 0.8-1.0 context
// switches per SET made the scheduler's way, 0.35 raw, and 10-15 % less CPU).

// rawRead is read(2) on a non-blocking descriptor as a raw system call, made again
// when a signal interrupted it (it never returns EINTR).
func rawRead(fd uintptr, b []byte) (int, error) {
	return rawIO(syscall.SYS_READ, fd, unsafe.Pointer(unsafe.SliceData(b)), len(b))
}

// rawWrite is write(2) on a non-blocking descriptor as a raw system call, made again
// when a signal interrupted it (it never returns EINTR).
func rawWrite(fd uintptr, b []byte) (int, error) {
	return rawIO(syscall.SYS_WRITE, fd, unsafe.Pointer(unsafe.SliceData(b)), len(b))
}

// rawWritev is writev(2) of iov on a non-blocking descriptor as a raw system call,
// made again when a signal interrupted it (it never returns EINTR).
func rawWritev(fd uintptr, iov []syscall.Iovec) (int, error) {
	return rawIO(syscall.SYS_WRITEV, fd, unsafe.Pointer(unsafe.SliceData(iov)), len(iov))
}

// rawIO makes the raw system call call (read, write or writev of n bytes or
// buffers at p) on fd until a signal does not interrupt it.
func rawIO(call, fd uintptr, p unsafe.Pointer, n int) (int, error) {
	for {
		r, _, e := syscall.RawSyscall(call, fd, uintptr(p), uintptr(n))
		switch e {
		case 0:
			return int(r), nil
		case syscall.EINTR:
		default:
			return 0, e
		}
	}
}

// rawConnOf is conn's descriptor access, nil for a connection without a descriptor
// of its own (TLS).
func rawConnOf(conn net.Conn) syscall.RawConn {
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			return raw
		}
	}
	return nil
}

// sockReader reads a connection as conn.Read does (waiting while there is nothing,
// io.EOF at the end, the read deadline's error), with rawRead where it can. One
// goroutine reads through it.
type sockReader struct {
	conn net.Conn
	raw  syscall.RawConn
	fn   func(fd uintptr) bool // made once, not per read
	b    []byte
	n    int
	err  error
}

func newSockReader(conn net.Conn) *sockReader {
	r := &sockReader{conn: conn, raw: rawConnOf(conn)}
	r.fn = func(fd uintptr) bool {
		r.n, r.err = rawRead(fd, r.b)
		return r.err != syscall.EAGAIN // EAGAIN: wait until readable
	}
	return r
}

// Read reads into b.
func (r *sockReader) Read(b []byte) (int, error) {
	if r.raw == nil || len(b) == 0 {
		return r.conn.Read(b)
	}
	r.b = b
	err := r.raw.Read(r.fn)
	r.b = nil
	switch {
	case err != nil: // the deadline, or the connection closed
		return 0, err
	case r.err != nil:
		return 0, sockError("read", r.conn, r.err)
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}

// sockWriter writes a connection as conn.Write does (all of b unless an error,
// waiting while the socket is full, the write deadline's error), with rawWrite where
// it can. One goroutine writes through it.
type sockWriter struct {
	conn net.Conn
	raw  syscall.RawConn
	fn   func(fd uintptr) bool // made once, not per write
	b    []byte                // what Write writes
	// vec, when not nil, is what WriteBuffers still has to write (instead of b);
	// iov is its scratch.
	vec net.Buffers
	iov []syscall.Iovec
	n   int
	err error
}

func newSockWriter(conn net.Conn) *sockWriter {
	w := &sockWriter{conn: conn, raw: rawConnOf(conn)}
	w.fn = func(fd uintptr) bool {
		for {
			var n int
			var err error
			switch {
			case w.vec != nil:
				if !w.fillIovecs() {
					return true
				}
				n, err = rawWritev(fd, w.iov)
			case w.n < len(w.b):
				n, err = rawWrite(fd, w.b[w.n:])
			default:
				return true
			}
			switch err {
			case nil:
				w.n += n
				if w.vec != nil {
					consumeBuffers(&w.vec, n)
				}
			case syscall.EAGAIN:
				return false // wait until writable
			default:
				w.err = err
				return true
			}
		}
	}
	return w
}

// fillIovecs points iov at vec's pieces (at most maxIovecs, empty ones left out) and
// reports whether there is anything to write.
func (w *sockWriter) fillIovecs() bool {
	w.iov = w.iov[:0]
	for _, b := range w.vec {
		if len(w.iov) == maxIovecs {
			break
		}
		if len(b) > 0 {
			w.iov = append(w.iov, syscall.Iovec{Base: unsafe.SliceData(b)})
			w.iov[len(w.iov)-1].SetLen(len(b))
		}
	}
	return len(w.iov) > 0
}

// consumeBuffers drops the first n bytes of v.
func consumeBuffers(v *net.Buffers, n int) {
	for len(*v) > 0 && n >= len((*v)[0]) {
		n -= len((*v)[0])
		(*v)[0] = nil
		*v = (*v)[1:]
	}
	if n > 0 {
		(*v)[0] = (*v)[0][n:]
	}
}

// maxIovecs is the most buffers one writev takes (IOV_MAX).
const maxIovecs = 1024

// WriteBuffers writes all of vec with writev, as vec.WriteTo does, or returns how
// much it wrote and why it stopped. It consumes vec's elements.
func (w *sockWriter) WriteBuffers(vec net.Buffers) (int64, error) {
	if w.raw == nil {
		return vec.WriteTo(w.conn)
	}
	if vec == nil {
		vec = net.Buffers{} // not nil: fn writes vec, not b
	}
	w.vec, w.n, w.err = vec, 0, nil
	err := w.raw.Write(w.fn)
	w.vec = nil
	clear(w.iov[:cap(w.iov)]) // keep no written buffer reachable
	if err == nil && w.err != nil {
		err = sockError("writev", w.conn, w.err)
	}
	return int64(w.n), err
}

// Write writes all of b, or returns how much it wrote and why it stopped.
func (w *sockWriter) Write(b []byte) (int, error) {
	if w.raw == nil {
		return w.conn.Write(b)
	}
	w.b, w.n, w.err = b, 0, nil
	err := w.raw.Write(w.fn)
	w.b = nil
	if err == nil && w.err != nil {
		err = sockError("write", w.conn, w.err)
	}
	return w.n, err
}

// sockError is a failed system call's error as the net package gives it.
func sockError(op string, conn net.Conn, errno error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: conn.LocalAddr(), Addr: conn.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
