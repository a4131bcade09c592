// Package raw will hold the passthrough "codec" of protocol=raw: no parsing, every
// read from a client is one chunk broadcast to all backends, as the original Dynode
// Broadcaster does for any TCP protocol. Until it lands, protocol=raw is refused at
// start-up with a clear error.
package raw
