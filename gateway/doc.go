// Package gateway is the replication engine: it accepts client connections, decodes
// their commands, sends every write to every backend in one global order, sends reads
// to one backend, and answers each command with one reply chosen by the write_reply
// policy.
//
// The walk of a write: session (one goroutine per busy client: read burst, decode, local
// commands) -> sequencer (the one lock: append the batch to every backend's queue) ->
// backend (one connection each: a writer goroutine coalesces queued frames into one
// write, a reader goroutine matches replies FIFO) -> batch (collects replies, counts
// divergence, chooses the client reply) -> session (writes the burst's replies in
// request order, one write). The batch keeps the bytes of a reply the client may get
// and only the digest of the others' large replies (collector.go: keepsBytes);
// divergences that only backends already known out of sync explain are counted apart.
//
// A backend connection is used only once the backend has answered the wire's probe
// and told its process identity (backend.go: handshake), so a backlog is never
// written to a process that cannot answer, and a backend that restarted is known to
// be out of sync. The sequencer admits each request (a transaction: its whole block) to a
// backend's queue or not at all (admitLocked), and never makes a backend that missed
// writes (out of sync) the reply source or the read target while an in-sync one is
// up. An out-of-sync backend is resynced (resync.go): Redis by REPLICAOF from an
// in-sync backend (directly, or through a relay in the gateway: relay.go), joined to
// the global order at a CLIENT PAUSE placed in the source's stream (one such switch
// at a time per source: the pause is the whole server's; refused up front when the
// target is too far to switch within the pause, and never taken for a hung source);
// memcached by a
// flush at a point of the order, then warming.
// With backlog_dir, down backends' backlogs and every backend's identity and sync
// state are kept on disk (durable.go, package backlog) across gateway restarts, and
// a backend that falls behind spills its queue there (spill.go).
// A client's replies go out through output.go, which never blocks the session's
// reading on the client; between its commands a plain TCP client is waited for
// without a read buffer held (read_unix.go); a read takes 4 KiB, or 32 KiB once the
// client has sent a command of 4 to 32 KiB (session.go: one read per 16 KiB value).
// A larger command is read into a buffer of its announced size, with the socket's
// receive low-water mark raised to what it still owes (lowat_linux.go: one wake-up
// for most of it, not one per segment); a large command that a pipelining client
// sent behind a burst's gets room for several like it, so one burst carries several.
// A read that fills its buffer is followed by reads that do not wait, into buffers
// grown up to 1 MiB within a gateway-wide read-ahead budget (readAvailable): a burst
// takes all a pipelining client has sent, one round trip to the backends for all of
// it, which matters when the primary is far away. When the first reply to a
// client's bursts takes 20 ms or more (backends in another region), such a burst
// may take more than the usual 1,024 commands, up to 8,192, within a gateway-wide
// bound on the commands taken beyond that (session.burstLimit).
// The reads and writes of clients and of plain TCP backend connections, large ones
// and writevs included, are raw system calls on their non-blocking sockets
// (rawio_unix.go): made the scheduler's way, each would wake the runtime's monitor
// thread after an idle moment, and one that copies a large value for longer than the
// monitor's tick would have its P handed to another thread.
// A plain TCP client idle for client_dormant_after costs no goroutine either: its
// session goes dormant (dormant.go), the gateway's own epoll instance watches the
// connection (idlePoller, Linux), and a new goroutine takes the session up, with its
// state, when the client sends or closes.
//
// Large values are not copied per backend: a command or reply whose size is
// announced is read into a buffer of that size at once; a command of 64 KiB or more
// stays in its session's read buffer, which is lent to every backend queue by
// reference (outStream, written with writev) and goes back to its pool when the last
// backend has written it (lentBuf); a large reply is kept in a pooled buffer that
// travels on to the client's output. A reply of one value of 256 KiB or more (a
// Redis bulk string, a memcached get of one key) is read into that buffer directly,
// up to its end and no further (backend.go: readLoop); a smaller one is copied there
// from the backend reader's buffer. Buffers from 8 KiB to 4 MiB are pooled by size
// class (bigbuf.go); larger ones are allocated exactly, and their memory is returned
// to the system shortly after they passed (reclaimer).
//
// Commands that need client state never hold a shared backend connection: blocking
// commands wait in the gateway and run inside MULTI when they can be served
// (blocking.go), WATCH is answered from the writes the sequencer sees (keywatch.go,
// watch.go), subscribers get a connection of their own (pubsub.go), RESP3 clients get
// HELLO 3 injected into the pipelines as SELECT is, and MONITOR and CLIENT LIST/KILL/
// UNBLOCK describe the gateway's own clients (monitor.go, clients.go).
//
// Redis and memcached go through the same engine: a wire (wire.go) tells it how
// replies end and compare, and each session's clientCodec decodes its client's
// commands. Writes only one backend can evaluate (memcached cas) or whose outcome
// depends on the server (SPOP, XADD *, INCRBYFLOAT) are replicated by effect behind a
// gate (gate.go). protocol=raw does not use the
// engine: raw.go gives each client its own backend connections.
//
// The admin server (admin.go) serves metrics, the JSON status and backends, the
// status page (statuspage.go, web/), resyncs and convergence checks (verify.go); the
// session times each burst into a latency histogram (latency.go) and the admin
// server samples rates every second (status.go).
//
// It knows backends only by address; where the list comes from is the discovery
// package's business (HTTP, DNS, a watched file; discovery.go applies each new list
// live, and reload.go a new configuration), and wire formats are the protocols
// packages'.
package gateway
