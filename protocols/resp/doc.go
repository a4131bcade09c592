// Package resp is the Redis protocol codec: client commands (RESP2 multibulk and inline
// commands) and backend replies (every RESP2 and RESP3 type), plus the command table
// that classifies each command as a read, a write, a local or an unsupported command.
//
// It is pure: functions over byte slices that return how much they consumed, with
// protocols.ErrIncomplete for "need more bytes" and *protocols.ProtocolError for input
// that can never be valid. No I/O, no goroutines, no logging, no knowledge of backends.
package resp
