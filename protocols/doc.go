// Package protocols is the contract between the gateway engine and the wire codecs.
//
// It defines what a decoded client command looks like to the engine (Command and its
// Class) and the errors codecs return (ErrIncomplete for "need more bytes", ProtocolError
// for input that can never become valid). Codecs live in sub-packages (resp, memcache,
// raw); they are pure functions over byte slices: no sockets, no goroutines, no logging,
// and no knowledge of backends or of the gateway.
package protocols
