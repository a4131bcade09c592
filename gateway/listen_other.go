//go:build !linux

package gateway

import "net"

// listen opens a TCP listener; backlog and SO_REUSEADDR are the platform's defaults.
func listen(addr string, _ int, _ bool) (net.Listener, error) {
	return net.Listen("tcp", addr)
}
