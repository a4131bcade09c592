// Package memcache will hold the memcached codec: the text protocol (storage,
// retrieval, incr/decr, touch, gat, delete, flush_all, stats, version, verbosity,
// noreply) and the meta commands (mg ms md ma mn me). Like every codec it is pure:
// bytes in, commands and reply boundaries out; no sockets, no goroutines. Until it
// lands, protocol=memcache is refused at start-up with a clear error.
package memcache
