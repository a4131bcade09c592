//go:build !unix

package gateway

import "net"

// sockReader and sockWriter are the connection's own Read and Write here.
type sockReader struct{ net.Conn }

func newSockReader(conn net.Conn) *sockReader { return &sockReader{conn} }

type sockWriter struct{ net.Conn }

func newSockWriter(conn net.Conn) *sockWriter { return &sockWriter{conn} }

// WriteBuffers writes vec with vec.WriteTo.
func (w *sockWriter) WriteBuffers(vec net.Buffers) (int64, error) { return vec.WriteTo(w.Conn) }
