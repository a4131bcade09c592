// Package raw is the passthrough "codec" of protocol=raw: no parsing at all. Every
// read from a client is one Chunk, sent whole and in order to every backend, as the
// original Dynode Broadcaster does for any TCP protocol. It owns the chunk buffers
// (pooled, shared by all backends of a client, released when the last one has
// written them) and the reply modes; the gateway owns the sockets.
package raw
