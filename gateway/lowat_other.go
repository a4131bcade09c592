//go:build !linux

package gateway

import "syscall"

// adjustRecvLowat leaves the default mark here: other kernels' epoll-like waits do
// not all follow SO_RCVLOWAT, and a mark that no wake-up honours only stalls.
func adjustRecvLowat(syscall.RawConn, *int32, int) {}
