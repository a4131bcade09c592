//go:build unix

package gateway

import (
	"fmt"
	"syscall"
)

// nonBlockingWriter writes what a socket takes at once (a non-blocking write), never
// waiting for it to become writable. Its callback is made once, not per write.
type nonBlockingWriter struct {
	raw  syscall.RawConn
	fn   func(fd uintptr) bool
	buf  []byte
	n    int
	werr error
}

func newNonBlockingWriter(raw syscall.RawConn) *nonBlockingWriter {
	w := &nonBlockingWriter{raw: raw}
	w.fn = func(fd uintptr) bool {
		w.n, w.werr = rawWrite(fd, w.buf)
		return true // done, even on EAGAIN: never wait here
	}
	return w
}

func (w *nonBlockingWriter) write(b []byte) (int, error) {
	w.buf = b
	err := w.raw.Write(w.fn)
	w.buf = nil
	if err != nil {
		return 0, fmt.Errorf("client write: %w", err)
	}
	switch {
	case w.werr == syscall.EAGAIN:
		return 0, nil
	case w.werr != nil:
		return 0, fmt.Errorf("client write: %w", w.werr)
	}
	return w.n, nil
}
