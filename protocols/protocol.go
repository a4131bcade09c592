package protocols

import (
	"errors"
	"fmt"
)

// Class tells the engine where a command goes and who answers it.
type Class uint8

const (
	// Write commands change data: broadcast to every backend in the global order.
	Write Class = iota
	// Read commands only read data: sent to one backend (the primary by default).
	Read
	// Local commands are answered by the gateway itself (PING, ECHO, SELECT, ...).
	Local
	// Unsupported commands cannot be served correctly through a shared, replicated
	// pipeline (blocking pops, SUBSCRIBE, MONITOR, replication commands, ...); the client
	// receives an error naming the command and nothing is forwarded.
	Unsupported
)

// String returns the lower-case name of the class, as used in logs and metrics.
func (c Class) String() string {
	switch c {
	case Write:
		return "write"
	case Read:
		return "read"
	case Local:
		return "local"
	case Unsupported:
		return "unsupported"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Command is one decoded client command. Frame and Args alias the caller's buffer:
// they are valid only until that buffer is reused.
type Command struct {
	// Name is the canonical upper-case command name from the codec's table
	// ("SET", "CLIENT|SETNAME"); for commands not in the table it is "UNKNOWN".
	Name string
	// Class is where the command goes.
	Class Class
	// Frame is the command's bytes as they go to a backend: the client's bytes
	// unchanged whenever the client used the canonical framing.
	Frame []byte
	// Args are the command's arguments, Args[0] being the command name as sent.
	Args [][]byte
}

// ErrIncomplete is returned by parsers when the buffer holds only part of a frame.
// It is not a failure: read more bytes and parse again.
var ErrIncomplete = errors.New("incomplete frame")

// ProtocolError is input that can never become a valid frame. Msg is the text the
// client sees (for RESP, after "-ERR "); the connection is closed after it is sent.
type ProtocolError struct {
	Msg string
}

// Error returns the client-visible message.
func (e *ProtocolError) Error() string { return e.Msg }

// IsProtocolError reports whether err is (or wraps) a *ProtocolError.
func IsProtocolError(err error) bool {
	var pe *ProtocolError
	return errors.As(err, &pe)
}
