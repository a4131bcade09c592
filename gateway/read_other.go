//go:build !unix

package gateway

import "syscall"

// parkedReader is not available here: sessions read into a buffer of their own.
type parkedReader struct{}

func newParkedReader(syscall.RawConn) *parkedReader { return nil }

func (*parkedReader) read() ([]byte, error) { panic("gateway: parkedReader on a platform without it") }

func (*parkedReader) release() {}
