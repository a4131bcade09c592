//go:build linux

package gateway

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// listen opens a TCP listener with the given accept backlog and SO_REUSEADDR, which
// the standard library does not let a caller choose (it uses somaxconn).
func listen(addr string, backlog int, reuseAddr bool) (net.Listener, error) {
	tcpAddr, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	family, sa := syscall.AF_INET, syscall.Sockaddr(nil)
	if ip4 := tcpAddr.IP.To4(); ip4 != nil || tcpAddr.IP == nil {
		a := &syscall.SockaddrInet4{Port: tcpAddr.Port}
		if ip4 != nil {
			copy(a.Addr[:], ip4)
		}
		sa = a
	} else {
		family = syscall.AF_INET6
		a := &syscall.SockaddrInet6{Port: tcpAddr.Port}
		copy(a.Addr[:], tcpAddr.IP.To16())
		sa = a
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close() // FileListener dups the descriptor
	if reuseAddr {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			return nil, fmt.Errorf("SO_REUSEADDR: %w", err)
		}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return net.FileListener(f)
}
