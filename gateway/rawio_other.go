//go:build !unix

package gateway

import "net"

// sockReader and sockWriter are the connection's own Read and Write here.
type sockReader struct{ net.Conn }

func newSockReader(conn net.Conn) *sockReader { return &sockReader{conn} }

type sockWriter struct{ net.Conn }

func newSockWriter(conn net.Conn) *sockWriter { return &sockWriter{conn} }
