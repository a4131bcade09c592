// Package memcache is the memcached codec: the text protocol (storage, retrieval,
// incr/decr, touch, gat/gats, delete, flush_all, verbosity, version, stats, noreply)
// and the meta commands (mg ms md ma mn me). Like every codec it is pure: bytes in,
// commands and reply boundaries out; no sockets, no goroutines.
//
// Replies of memcached are not self-describing (a get ends at END, a set is one line,
// a meta get may carry a value), so a backend reply is scanned with the kind of the
// command it answers (ScanReply). Quiet and noreply commands are rewritten toward the
// backends without q / noreply, so that every command gets exactly one reply to match
// and check; whether the client sees it is decided by Visibility.
//
// A cas token is only meaningful on the server that issued it, so conditional writes
// carry ByEffect, their unconditional form: the gateway sends the command to one
// server and, once Applied says that server stored it, the unconditional form to
// the others, at the same place in their streams.
package memcache
