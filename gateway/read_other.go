//go:build !unix

package gateway

import "net"

// parkedReader is not available here: sessions read into a buffer of their own.
type parkedReader struct{}

func newParkedReader(net.Conn, func() *[]byte, func(*[]byte)) *parkedReader { return nil }

func (*parkedReader) read() ([]byte, error) { panic("gateway: parkedReader on a platform without it") }

func (*parkedReader) release() {}

func (*parkedReader) expect(int) {}

func (*parkedReader) readNow([]byte) int { return 0 }

func (*parkedReader) holds([]byte) bool { return false }

func (*parkedReader) take() *[]byte { panic("gateway: parkedReader on a platform without it") }
