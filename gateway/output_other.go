//go:build !unix

package gateway

import "syscall"

// nonBlockingWriter writes nothing where non-blocking writes are not available:
// every reply goes through the output's writer goroutine.
type nonBlockingWriter struct{}

func newNonBlockingWriter(syscall.RawConn) *nonBlockingWriter { return &nonBlockingWriter{} }

func (*nonBlockingWriter) write([]byte) (int, error) { return 0, nil }
