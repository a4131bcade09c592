//go:build !unix

package gateway

import "syscall"

// writeNow writes nothing where non-blocking writes are not available: every reply
// goes through the output's writer goroutine.
func writeNow(syscall.RawConn, []byte) (int, error) { return 0, nil }
