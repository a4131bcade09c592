//go:build unix

package gateway

import (
	"fmt"
	"syscall"
)

// writeNow writes what the socket takes at once (a non-blocking write), never
// waiting for it to become writable.
func writeNow(raw syscall.RawConn, b []byte) (int, error) {
	var n int
	var werr error
	err := raw.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				return true // done, even on EAGAIN: never wait here
			}
		}
	})
	if err != nil {
		return 0, fmt.Errorf("client write: %w", err)
	}
	switch {
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, fmt.Errorf("client write: %w", werr)
	}
	return n, nil
}
