package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynode/dynode-broadcaster/gateway/backlog"
	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// BackendState is where a backend is in its life cycle.
type BackendState int32

const (
	// StateConnecting: no connection yet, or reconnecting after a failure.
	StateConnecting BackendState = iota
	// StateUp: connected; commands are written and replies read.
	StateUp
	// StateDown: the connection failed; writes queue in the backlog until it is back.
	StateDown
	// StateStopped: the gateway closed the backend.
	StateStopped
)

func (s BackendState) String() string {
	return [...]string{"connecting", "up", "down", "stopped"}[s]
}

// pending is a command queued to or in flight on a backend, waiting for its reply.
type pending struct {
	b         *batch // nil: nobody waits (backlog written while down, injected SELECT)
	idx       int32  // command index in b
	write     bool   // the command changes data (its loss puts the backend out of sync)
	kind      uint8  // the codec's reply kind, for protocols whose replies need it
	authority bool   // gate != nil: this backend evaluates the condition
	gate      *gate  // a conditional write replicated by effect
	probe     bool   // with gate and authority: the probe whose reply resolves the gate
}

// backend is one backend server reached through one pipelined TCP connection.
//
//	sequencer ──append(frame, pending)──> out + queue ──writer──> conn
//	                                                    conn ──reader──> pop queue ─> batch.deliver
//
// The run goroutine owns the connection: it dials, starts one writer and one reader
// goroutine per connection, waits for both to exit, and dials again. While the
// backend is down, writes accumulate in out (the backlog, bounded by backend_backlog_bytes)
// and are written in order once it is back.
type backend struct {
	addr  string
	index int
	gw    *Gateway
	log   *slog.Logger

	wake    chan struct{} // cap 1: out has bytes for the writer
	authCmd []byte        // AUTH sent first on every connection; nil: none (auth.go)

	// retired: removed from the backend list (discovery.go): nothing new is queued
	// to it; it is never the reply source nor read from.
	retired   atomic.Bool
	runMu     sync.Mutex         // guards stopRun
	stopRun   context.CancelFunc // ends the connection loop; nil: not running
	up        atomic.Bool        // connected (readable without mu, for the sequencer's pre-pass)
	outOfSync atomic.Bool        // a write was lost: the data may differ from the others
	resyncing atomic.Bool        // a resync is rebuilding it: never the reply source nor read from
	behind    atomic.Bool        // spilling: far behind the others, so neither reply source nor read target
	warmUntil atomic.Int64       // memcached: Unix nanoseconds until which it warms after a flush
	queued    atomic.Int64       // bytes in out (for metrics)
	connects  atomic.Int64       // successful connections so far
	replies   atomic.Int64       // replies read (for ops/s in status views)
	diverged  atomic.Int64       // divergences where it sent a reply the majority did not

	// switching is held by the resync whose switch point pauses this backend as a
	// source (CLIENT PAUSE ... CLIENT UNPAUSE): the pause is the server's, one for all
	// clients, so another resync's UNPAUSE would end it in the middle of this switch.
	switching sync.Mutex

	mu        sync.Mutex // guards everything below, up to syncMu
	state     BackendState
	conn      net.Conn
	out       outStream // bytes for the writer, in order
	queue     ring      // pending replies: the first inflight entries are written
	inflight  int
	gated     []gatedWrite // conditional writes not yet written, and the bytes behind them
	held      int          // queue entries in gated (the last ones of queue)
	heldBytes int          // bytes in gated
	selectBuf []byte
	db        int           // database the stream selects after everything queued (out and gated)
	outDB     int           // database selected after the bytes in out
	writtenDB int           // database selected after the bytes already given to the writer
	largest   int           // the largest request waiting for the writer (see admitLocked)
	identity  string        // the backend process last connected (see noteIdentity)
	source    string        // where its address came from: static, http, dns, file
	added     time.Time     // when it joined the backend list
	since     time.Time     // when state last changed
	phase     syncPhase     // where a resync of it is (resync.go)
	disk      *backlog.File // with backlog_dir: its backlog file (durable.go); nil: memory only
	spill     *backlog.File // with backlog_dir: where its queue goes past backlog_memory_bytes (spill.go)
	spilling  bool          // new commands go to spill until the writer has read it all
	// spillEntries and spillBytes are the commands (and their bytes) in spill not yet
	// read back; spillOff is the file offset of the next one.
	spillEntries, spillBytes int
	spillOff                 int64
	replaying                bool // connected with a backlog not yet answered
	// relayNext: its last resync's replication link never came up directly, so the
	// next one goes through the gateway (resync_via=auto). Only resyncs use it, one at
	// a time.
	relayNext bool

	lostWrites int64 // writes dropped (backlog full) or unacknowledged (connection lost)
	losses     int64 // times writes were lost (wait.go)
	// lastError and lastErrorAt: the last connection failure or error reply of it
	// that nobody waited for, and when.
	lastError   string
	lastErrorAt time.Time
	// progressAt is when the backend last made progress while commands were in flight:
	// the first write after idling, or the last reply read.
	progressAt time.Time
	// pausedUntil is when the CLIENT PAUSE of a resync's switch (this backend its
	// source) ends at the latest; the time it spends paused is not a hang (stalled).
	pausedUntil time.Time

	syncMu     sync.Mutex      // guards syncReason, syncSince, lostInResync and resync
	syncReason string          // why it is out of sync
	syncSince  time.Time       // when it went out of sync
	resync     *ResyncProgress // the running or last resync of it; nil if none
	// lostInResync is set by every markOutOfSync: a resync that finds it set after
	// its switch point fails, as the backend missed a write the copy does not hold.
	lostInResync bool
}

func newBackend(gw *Gateway, index int, addr string) *backend {
	be := &backend{
		addr:  addr,
		index: index,
		gw:    gw,
		log:   gw.log.With("backend", addr),
		wake:  make(chan struct{}, 1),
		since: time.Now(),
		added: time.Now(),
	}
	if gw.wire == &respWire {
		cr := gw.conf().BackendCredentials(addr)
		be.authCmd = backendAuth(cr.Username, cr.Password)
	}
	return be
}

// admitLocked decides whether a request (one command, or a transaction's commands)
// may join the backend's queue (the caller holds mu). backend_backlog_bytes bounds
// what waits for the writer, not counting the largest single request waiting: so one
// request of any size up to max_request_bytes is always admitted by a backend that
// keeps up, and the memory a backend holds stays below backend_backlog_bytes plus one
// max_request_bytes. Refused writes are lost for this backend, which is then out of
// sync; nothing of a refused request reaches its stream.
func (be *backend) admitLocked(req []queuedCmd, write bool) bool {
	need := 0
	for i := range req {
		need += len(req[i].frame) + 32 // room for an injected SELECT
	}
	waiting := be.queuedBytesLocked()
	if int64(waiting+need-max(be.largest, need)) <= be.gw.conf().BackendBacklogBytes {
		be.largest = max(be.largest, need)
		return true
	}
	if write {
		be.lostWrites += int64(len(req))
		be.losses++
		be.markOutOfSync("backlog full (backend_backlog_bytes)")
	}
	return false
}

// appendLocked queues one admitted frame (the caller holds mu), preceded by a SELECT
// when the command's database differs from the stream's.
// A frame in a lent buffer (owner not nil) is referenced, not copied (see
// outStream.appendShared).
func (be *backend) appendLocked(frame []byte, owner *lentBuf, db int, p pending) {
	be.selectLocked(db)
	be.enqueueLocked(frame, owner, p)
	be.queued.Store(int64(be.queuedBytesLocked()))
}

// selectLocked queues a SELECT when the next command's database differs from the
// stream's, and a HELLO when its protocol does (the caller holds mu). db is a stream
// state: a database, with resp3Bit for commands of RESP3 clients.
func (be *backend) selectLocked(db int) {
	if db == be.db {
		return
	}
	from := be.db
	be.db = db
	var n int
	be.selectBuf, n = appendStateChange(be.selectBuf[:0], from, db)
	for i, frame := 0, be.selectBuf; i < n; i++ {
		end, _, _ := resp.ScanReply(frame) // a command is an array: the scanner finds its end
		be.enqueueLocked(frame[:end], nil, pending{write: true})
		frame = frame[end:]
	}
}

// resp3Bit, in a stream state (queuedCmd.db, backend.db), marks commands of RESP3
// clients: the connection is switched with HELLO 3 (back with HELLO 2) in front of
// them, as SELECT switches databases, so RESP2 and RESP3 clients share a pipeline.
const resp3Bit = 1 << 30

// appendStateChange appends the commands that take a connection from stream state
// from to state to (SELECT, HELLO) and returns how many it appended.
func appendStateChange(dst []byte, from, to int) ([]byte, int) {
	n := 0
	if from&^resp3Bit != to&^resp3Bit {
		dst = resp.AppendSelect(dst, to&^resp3Bit)
		n++
	}
	if from&resp3Bit != to&resp3Bit {
		if to&resp3Bit != 0 {
			dst = append(dst, hello3Frame...)
		} else {
			dst = append(dst, hello2Frame...)
		}
		n++
	}
	return dst, n
}

var (
	hello3Frame = []byte("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
	hello2Frame = []byte("*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n")
)

// enqueueLocked appends a frame to the stream: to out, or behind the last gated
// write while there is one. A frame in a lent buffer (owner) is referenced by out;
// everywhere else it is copied.
func (be *backend) enqueueLocked(frame []byte, owner *lentBuf, p pending) {
	if be.spilling {
		// Gated writes whose outcome is known leave the way (their writer may be stuck
		// on a backend that takes nothing: it does not have to release them).
		be.releaseGatedLocked()
		if len(be.gated) == 0 {
			be.spillLocked(frame, []byte{p.kind}, be.db)
			return
		}
	}
	if n := len(be.gated); n > 0 {
		gw := &be.gated[n-1]
		gw.after = append(gw.after, frame...)
		gw.nAfter++
		gw.dbAfter = be.db
		be.held++
		be.heldBytes += len(frame)
	} else {
		if owner != nil {
			be.out.appendShared(frame, owner)
		} else {
			be.out.append(frame)
		}
		be.outDB = be.db
	}
	be.queue.push(p)
	if be.disk != nil && be.state != StateUp && !be.spilling {
		be.persistLocked(backlog.Record{Seq: uint64(be.queue.pushed), Kinds: []byte{p.kind}, Frames: frame})
	}
}

// queuedBytesLocked is how many bytes wait for the writer, spilled ones included.
func (be *backend) queuedBytesLocked() int { return be.out.len() + be.heldBytes + be.spillBytes }

// kick wakes the writer after appends.
func (be *backend) kick() {
	select {
	case be.wake <- struct{}{}:
	default:
	}
}

// markOutOfSync flags the backend: its data may differ from the others'. With a
// single backend there are no others to differ from: lost writes are counted, the
// flag is not set (it would only stop the gateway from serving).
func (be *backend) markOutOfSync(reason string) {
	if len(be.gw.all()) < 2 {
		return
	}
	be.syncMu.Lock() // not mu: callers may hold it
	be.lostInResync = true
	first := be.outOfSync.CompareAndSwap(false, true)
	if first {
		be.syncReason, be.syncSince = reason, time.Now()
	}
	be.syncMu.Unlock()
	if first {
		be.gw.durable.update(be.addr, func(b *persistedBackend) { b.OutOfSync, b.Reason = true, reason })
		be.gw.stats.OutOfSyncEvents.Add(1)
		be.log.Error("backend out of sync: its data may differ from the other backends", "reason", reason)
	}
}

// markInSync clears the out-of-sync flag once a resync has made the backend's data
// the others' again, unless it lost a write since lostInResync was last cleared: then
// it reports false and the flag stays.
func (be *backend) markInSync() bool {
	be.syncMu.Lock()
	defer be.syncMu.Unlock()
	if be.lostInResync {
		return false
	}
	be.syncReason, be.syncSince = "", time.Time{}
	be.outOfSync.Store(false)
	be.gw.durable.update(be.addr, func(b *persistedBackend) { b.OutOfSync, b.Reason = false, "" })
	return true
}

// Identity is the backend process last connected ("" before the first connection).
func (be *backend) Identity() string {
	be.mu.Lock()
	defer be.mu.Unlock()
	return be.identity
}

// setStateLocked changes the state and remembers when (the caller holds mu).
func (be *backend) setStateLocked(s BackendState) {
	if be.state != s {
		be.state, be.since = s, time.Now()
	}
}

// displayStateLocked is the state /backends, metrics and logs show (the caller holds
// mu): the connection's state, refined while connected by what the backend's data
// is (being rebuilt, known to differ, warming after a flush, catching up on a
// backlog).
func (be *backend) displayStateLocked() string {
	switch {
	case be.state != StateUp:
		return be.state.String()
	case be.phase != phaseNone:
		return "resyncing"
	case be.outOfSync.Load():
		return "out_of_sync"
	case be.warming():
		return "warming"
	case be.behind.Load():
		return "behind"
	case be.replaying:
		return "replaying"
	}
	return "up"
}

// warming reports whether the backend was flushed by a resync too recently to serve
// reads (memcached: its items come back as clients write them).
func (be *backend) warming() bool {
	u := be.warmUntil.Load()
	if u == 0 {
		return false
	}
	if time.Now().UnixNano() < u {
		return true
	}
	if be.warmUntil.CompareAndSwap(u, 0) {
		be.log.Info("backend warmed up", "state", "up")
	}
	return false
}

// preferred reports whether the backend may be the reply source or read target while
// another backend can: up, in sync, not being rebuilt, not warming.
func (be *backend) preferred() bool {
	return be.up.Load() && !be.retired.Load() && !be.outOfSync.Load() && !be.resyncing.Load() && !be.behind.Load() && !be.warming()
}

// syncState returns why and since when the backend is out of sync.
func (be *backend) syncState() (string, time.Time) {
	be.syncMu.Lock()
	defer be.syncMu.Unlock()
	return be.syncReason, be.syncSince
}

// State returns the backend's state.
func (be *backend) State() BackendState {
	be.mu.Lock()
	defer be.mu.Unlock()
	return be.state
}

// run dials and serves connections until ctx ends. A connection counts as up only
// once the backend has answered the wire's probe (so a process that accepts and
// closes, or a hung one whose kernel still accepts, never receives the backlog).
// Failed attempts, and connections that die young, are retried after
// reconnect_delay_timeout, doubled per consecutive failure up to a cap.
func (be *backend) run(ctx context.Context) {
	defer func() {
		be.mu.Lock()
		be.setStateLocked(StateStopped)
		be.mu.Unlock()
	}()
	failures := 0
	for ctx.Err() == nil {
		conn, err := be.dial(ctx)
		if err == nil {
			var identity string
			if identity, err = be.handshake(ctx, conn); err == nil {
				be.noteIdentity(identity)
			} else {
				_ = conn.Close()
			}
		}
		if err != nil {
			failures++
			lvl := slog.LevelDebug
			if failures == 1 {
				lvl = slog.LevelError
			}
			delay := be.retryDelay(failures)
			be.noteError(err.Error())
			be.log.Log(ctx, lvl, "backend unreachable; writes are kept in its backlog", "err", err, "retry_in", delay)
			if !be.sleepDown(ctx, delay) {
				return
			}
			continue
		}
		if failures > 0 || be.connects.Load() > 0 {
			state := "up"
			if be.outOfSync.Load() {
				state = "out_of_sync"
			} else if be.queued.Load() > 0 {
				state = "replaying"
			}
			be.log.Info("backend connected", "state", state, "process", be.Identity(), "replaying_bytes", be.queued.Load())
		}
		be.connects.Add(1)
		start := time.Now()
		be.serve(ctx, conn)
		if time.Since(start) >= time.Second {
			failures = 0
			continue
		}
		// It died young: wait as after a failed attempt, so a backend that accepts
		// and closes is not redialled in a tight loop.
		failures++
		if !be.sleepDown(ctx, be.retryDelay(failures)) {
			return
		}
	}
}

// sleepDown waits d while the backend is not connected. With backlog_dir, gated
// writes whose outcome becomes known meanwhile go to the backlog file then.
func (be *backend) sleepDown(ctx context.Context, d time.Duration) bool {
	if be.disk == nil {
		return sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-be.wake:
			be.mu.Lock()
			if be.spilling {
				be.releaseGatedLocked() // known effects go to the spill
			} else {
				be.persistGatedLocked()
			}
			be.mu.Unlock()
		}
	}
}

// retryDelay is the wait before the next attempt after n consecutive failures:
// reconnect_delay_timeout, doubled per failure, capped at 8 times the setting or a
// minute, whichever is less (never below the setting itself).
func (be *backend) retryDelay(n int) time.Duration {
	base := be.gw.conf().ReconnectDelayTimeout
	limit := max(base, min(8*base, time.Minute))
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// handshake sends the wire's probe on a new connection and reads its reply within
// connect_timeout. A backend still loading its dataset, or busy running a script,
// answers with an error that means "later" (wire.busy): the probe is repeated on the
// same connection until it passes. Any other error reply fails the attempt. Then it
// asks the backend who it is and returns that identity (a Redis run_id; memcached's
// pid and start time).
func (be *backend) handshake(ctx context.Context, conn net.Conn) (identity string, err error) {
	w := be.gw.wire
	scan := w.newScanner()
	buf, err := be.authenticate(conn, scan, nil)
	if err != nil {
		return "", err
	}
	loggedBusy := false
	for {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		var reply []byte
		var isErr bool
		reply, isErr, buf, err = be.roundTrip(conn, scan, w.probe, 0, buf)
		if err != nil {
			return "", err
		}
		if !isErr {
			break
		}
		if !w.busy(reply) {
			return "", fmt.Errorf("backend %s: handshake: %s", be.addr, bytes.TrimSpace(reply))
		}
		if !loggedBusy {
			be.log.Warn("backend is not ready; waiting before sending it anything", "reply", truncate(reply, 80))
			loggedBusy = true
		}
		if !sleep(ctx, min(100*time.Millisecond, be.gw.conf().ConnectTimeout)) {
			return "", ctx.Err()
		}
	}
	reply, isErr, buf, err := be.roundTrip(conn, scan, w.identify, w.identifyKind, buf)
	if err != nil {
		return "", err
	}
	if !isErr {
		identity = w.parseIdentity(reply)
	}
	if w == &respWire {
		// Every script clients sent goes to the backend before anything else: a
		// backend that restarted (or was added) has an empty script cache, and an
		// EVALSHA it is sent later, refused there with NOSCRIPT while the others ran
		// it, would be a lost write.
		for _, body := range be.gw.scripts.all() {
			load := resp.AppendCommandStrings(nil, "SCRIPT", "LOAD", body)
			if reply, isErr, buf, err = be.roundTrip(conn, scan, load, 0, buf); err != nil {
				return "", err
			}
			if isErr {
				be.log.Warn("backend refused a script clients use; EVALSHA of it will put the backend out of sync", "reply", truncate(firstLine(reply), 80))
			}
		}
	}
	if identity == "" && be.connects.Load() == 0 {
		// A compatible server that does not say which process it is (miniredis, for
		// one) is served all the same; only its restarts go unnoticed.
		be.log.Warn("backend does not tell its process identity: a restart of it cannot be detected", "reply", truncate(firstLine(reply), 80))
	}
	return identity, conn.SetDeadline(time.Time{})
}

// roundTrip writes req and reads its one reply (of the given kind) within
// connect_timeout; buf is reused and returned.
func (be *backend) roundTrip(conn net.Conn, scan replyScanner, req []byte, kind uint8, buf []byte) (reply []byte, isErr bool, _ []byte, err error) {
	const maxReply = 1 << 20
	_ = conn.SetDeadline(time.Now().Add(be.gw.conf().ConnectTimeout))
	if _, err := conn.Write(req); err != nil {
		return nil, false, buf, fmt.Errorf("backend %s: %w", be.addr, err)
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= maxReply {
				return nil, false, buf, fmt.Errorf("backend %s: reply over %d bytes", be.addr, maxReply)
			}
			buf = append(buf, make([]byte, max(512, cap(buf)))...)[:len(buf)]
		}
		m, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, false, buf, fmt.Errorf("backend %s: %w", be.addr, err)
		}
		n, isErr, err := scan.scan(kind, buf)
		if err == nil {
			return buf[:n], isErr, buf, nil
		}
		if !errors.Is(err, protocols.ErrIncomplete) {
			return nil, false, buf, fmt.Errorf("backend %s: %w", be.addr, err)
		}
	}
}

// noteError records the backend's last error for status views.
func (be *backend) noteError(msg string) {
	be.mu.Lock()
	be.lastError, be.lastErrorAt = msg, time.Now()
	be.mu.Unlock()
}

// noteIdentity records which process the backend is. A backend that comes back as
// another process (it restarted: empty, or loaded from a snapshot older than what the
// others hold) cannot be shown to hold the others' data, so it is out of sync; this
// runs before the connection is up, so no read or reply ever comes from it meanwhile.
// The first identity seen is taken as in sync, as every backend is at start.
func (be *backend) noteIdentity(identity string) {
	be.mu.Lock()
	prev := be.identity
	be.identity = identity
	be.mu.Unlock()
	if identity != prev {
		be.gw.durable.update(be.addr, func(b *persistedBackend) { b.Identity = identity })
	}
	if prev != "" && identity != "" && prev != identity {
		be.markOutOfSync(fmt.Sprintf("it restarted as another process (%s, was %s): its data may differ from the others'", identity, prev))
	}
}

func (be *backend) dial(ctx context.Context) (net.Conn, error) {
	conn, err := be.gw.dialBackend(ctx, be.addr)
	if err != nil {
		return nil, fmt.Errorf("backend %s: connect: %w", be.addr, err)
	}
	return conn, nil
}

// serve runs one connection's writer and reader until either fails or ctx ends.
func (be *backend) serve(ctx context.Context, conn net.Conn) {
	be.mu.Lock()
	be.conn = conn
	be.setStateLocked(StateUp)
	// A new connection starts in database 0, RESP2: restore the state the queued bytes
	// were built for. The SELECT (and HELLO) go in front of the backlog.
	if be.writtenDB != 0 {
		sel, n := appendStateChange(nil, 0, be.writtenDB)
		be.out.prepend(sel)
		for range n {
			be.queue.pushFront(pending{write: true}, be.inflight)
		}
	}
	be.up.Store(true)
	be.replaying = be.queue.len() > 0 || be.spillEntries > 0
	if be.disk != nil && !be.replaying {
		be.dropBacklogFileLocked()
	}
	be.mu.Unlock()
	be.gw.durable.update(be.addr, func(b *persistedBackend) { b.Connected = true })
	be.kick()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); be.writeLoop(conn, stop) }()
	go func() { defer wg.Done(); be.readLoop(conn) }()
	select {
	case <-ctx.Done():
		be.fail(conn, ctx.Err())
	case <-stop:
	}
	wg.Wait()
}

// fail closes conn (once) and fails every command in flight on it. Writes queued but
// not yet written stay in the backlog; their waiting clients stop waiting.
func (be *backend) fail(conn net.Conn, err error) {
	be.mu.Lock()
	if be.conn != conn {
		be.mu.Unlock()
		return
	}
	be.conn = nil
	be.setStateLocked(StateDown)
	be.up.Store(false)
	be.replaying = false
	lost := be.queue.popInto(nil, be.inflight)
	be.inflight = 0
	be.cancelGatedLocked()
	for _, p := range lost {
		if p.gate != nil && p.authority {
			p.gate.resolve(false, nil) // its fate is unknown: the others do not apply it
		}
	}
	// Queued commands stay, but nobody waits for them any more.
	var detached []pending
	be.queue.each(func(p *pending) {
		if p.b != nil {
			detached = append(detached, *p)
			p.b = nil
		}
	})
	unacked := 0
	for _, p := range lost {
		if p.write {
			unacked++
		}
	}
	be.lostWrites += int64(unacked)
	if unacked > 0 {
		be.losses++
	}
	if be.disk != nil {
		be.saveBacklogLocked()
	}
	be.mu.Unlock()
	be.gw.durable.update(be.addr, func(b *persistedBackend) { b.Connected = false })
	be.kick() // let the writer see the connection is gone

	_ = conn.Close()
	if !errors.Is(err, context.Canceled) {
		be.noteError("connection lost: " + err.Error())
		be.log.Error("backend connection lost", "err", err, "in_flight", len(lost), "unacknowledged_writes", unacked)
	}
	if unacked > 0 {
		be.markOutOfSync(fmt.Sprintf("%d writes unacknowledged when the connection was closed", unacked))
	}
	for _, p := range append(lost, detached...) {
		if p.b != nil {
			p.b.deliver(int(p.idx), be.index, nil, false, be.gw.noReply)
		}
	}
}

// dropBacklogFileLocked empties the backlog file once everything in it was
// answered (the caller holds mu).
func (be *backend) dropBacklogFileLocked() {
	if be.disk.Size() == 0 {
		return
	}
	if err := be.disk.Rewrite(nil); err != nil {
		be.log.Error("backlog_dir write failed", "err", err)
	}
}

// writeLoop writes everything queued, one write per wake-up.
func (be *backend) writeLoop(conn net.Conn, stop chan struct{}) {
	defer close(stop)
	var buf []byte
	var vec net.Buffers   // shared frames and the tails between them (outStream)
	var owners []*lentBuf // the lent buffers of vec's pieces
	wr := newSockWriter(conn)
	for range be.wake {
		// Let the sessions that are runnable now append their commands first, so one
		// write carries many clients' commands (twemproxy's writev of its send chain).
		runtime.Gosched()
		be.mu.Lock()
		if be.conn != conn {
			be.mu.Unlock()
			return
		}
		if be.phase == phaseSwitching {
			be.mu.Unlock() // a resync holds what is queued until it ends (resync.go)
			continue
		}
		be.releaseGatedLocked()
		if be.out.len() == 0 && be.spilling {
			be.unspillLocked()
		}
		if be.inflight == 0 && be.out.len() > 0 {
			be.progressAt = time.Now()
		}
		vec, owners, buf = be.out.take(vec[:0], owners[:0], buf)
		be.largest = 0
		be.inflight = be.queue.len() - be.held
		be.writtenDB = be.outDB
		be.queued.Store(int64(be.heldBytes))
		be.mu.Unlock()
		if len(buf) == 0 && len(vec) == 0 {
			continue
		}
		written, err := be.write(conn, wr, vec, buf)
		clear(vec) // the shared frames are written (or lost with the connection)
		releaseOwners(owners)
		if err != nil {
			be.fail(conn, fmt.Errorf("backend %s: write: %w", be.addr, err))
			return
		}
		be.gw.stats.BackendBytesOut.Add(written)
		if be.spillPending() {
			be.kick() // read the next part of the spill once this one is written
		}
		if cap(buf) > 4<<20 {
			buf = nil // keep no huge backlog buffer around
		}
	}
}

// write sends the pieces of vec and then tail: one write, or one writev when large
// frames were queued by reference. More than progressChunk bytes go out in pieces of
// that size, each counted as the backend's progress: a large value on a slow link is
// not taken for a hung backend (backend_timeout) while its bytes keep moving.
func (be *backend) write(conn net.Conn, wr *sockWriter, vec net.Buffers, tail []byte) (int64, error) {
	if len(vec) == 0 && len(tail) <= progressChunk {
		n, err := wr.Write(tail)
		return int64(n), err
	}
	if len(tail) > 0 {
		vec = append(vec, tail)
	}
	var total int64
	var piece net.Buffers
	for len(vec) > 0 {
		piece = piece[:0]
		for size := 0; len(vec) > 0 && size < progressChunk; {
			b := vec[0]
			if k := progressChunk - size; len(b) > k {
				piece, vec[0], size = append(piece, b[:k]), b[k:], progressChunk
				break
			}
			piece, vec, size = append(piece, b), vec[1:], size+len(b)
		}
		n, err := wr.WriteBuffers(piece) // consumes its own copy of the slice header only
		total += n
		if err != nil {
			return total, err
		}
		if len(vec) > 0 {
			be.noteProgress(conn)
		}
	}
	return total, nil
}

// progressChunk is the size of the pieces a large write goes out in (see write):
// large enough that values up to it go out in one system call (smaller pieces cost
// 1 MiB SETs through 3 backends 17 % of their rate), small enough that a piece
// crosses a 10 MB/s link well within the default backend_timeout.
const progressChunk = 4 << 20

// noteProgress records that conn took a piece of a large write.
func (be *backend) noteProgress(conn net.Conn) {
	be.mu.Lock()
	if be.conn == conn {
		be.progressAt = time.Now()
	}
	be.mu.Unlock()
}

// readLoop reads replies and hands each to the command waiting for it, in order.
func (be *backend) readLoop(conn net.Conn) {
	buf := make([]byte, 0, replyBufSize)
	rd := newSockReader(conn)
	scan := be.gw.wire.newScanner()
	var ends []int // reply end offsets in buf of this read
	var isErrs []bool
	var popped []pending
	timeout := be.gw.conf().BackendTimeout
	var dl deadline
	busyLogged := false
	start := 0 // start of the first unconsumed reply in buf
	// While home is not nil, buf is a pooled buffer holding one large reply of one
	// value alone, read up to its end and no further (soloEnd), and home is the
	// reader's own buffer.
	var home []byte
	soloEnd := 0
	for {
		dl.extend(conn, timeout)
		need := start + scan.need()
		if home != nil && len(buf) >= soloEnd {
			home = nil // not the end the header announced: read on as usual
		}
		if home == nil && need > len(buf) && need-start >= soloReplyMin {
			if whole := scan.wholeLen(buf[start:]); whole >= need-start && whole <= maxPooledBuf {
				// A large reply of one value (a GET's) still arriving: the rest of it
				// goes into a buffer of its own, which its command then keeps by
				// reference, rather than into buf, from where the collector would copy it.
				own := append(getBigBuf(whole), buf[start:]...)
				home, buf, start, need = buf[:0], own, 0, need-start
				soloEnd = whole
			}
		}
		limit := cap(buf)
		if home != nil {
			limit = soloEnd
		} else if len(buf) == cap(buf) || need > cap(buf) {
			buf = grow(buf, start, need-start)
			start = 0
			limit = cap(buf)
		}
		n, err := rd.Read(buf[len(buf):limit])
		buf = buf[:len(buf)+n]
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if next, stalled := be.stalled(conn, timeout); !stalled {
					// Wait exactly until the oldest command in flight has had timeout.
					_ = conn.SetReadDeadline(next)
					dl.set = time.Now()
					continue
				}
				if be.busyScript() { // alive, running a script: a kill can still help (scriptkill.go)
					if !busyLogged {
						be.log.Warn("backend is busy running a script or function; SCRIPT KILL or FUNCTION KILL through the gateway stops it")
						busyLogged = true
					}
					_ = conn.SetReadDeadline(time.Now().Add(busyWait(timeout)))
					dl.set = time.Now()
					continue
				}
				err = fmt.Errorf("no reply for %v (backend_timeout)", timeout)
			}
			be.fail(conn, fmt.Errorf("backend %s: read: %w", be.addr, err))
			return
		}
		var pos int
		pos, ends, isErrs, err = be.scanReplies(scan, buf, start, ends[:0], isErrs[:0])
		if err != nil {
			be.fail(conn, fmt.Errorf("backend %s: %w", be.addr, err))
			return
		}
		if len(ends) > 0 {
			var ok, lent bool
			whole := home != nil && len(ends) == 1 && pos == len(buf)
			if popped, lent, ok = be.dispatch(conn, buf, start, ends, isErrs, popped[:0], whole); !ok {
				return
			}
			if whole {
				// The reply was all buf held (reads stopped at its end), and it went to
				// its command by reference, or was copied: back to the reader's buffer.
				if !lent {
					putBigBuf(buf)
				}
				buf, home, start = home, nil, 0
				continue
			}
			home = nil // not one whole reply after all: buf is a plain buffer
			if lent || cap(buf) > maxReplyBuf && len(buf)-pos < replyBufSize {
				// A huge reply went to its command by reference: buf is not this
				// reader's any more. Or buf grew for a large reply: give it back
				// rather than keep it for the connection's life.
				rest := buf[pos:]
				old := buf
				buf = append(make([]byte, 0, max(replyBufSize, len(rest))), rest...)
				if !lent {
					putBigBuf(old)
				}
				pos = 0
			}
		}
		start = pos
		if start == len(buf) {
			buf, start = buf[:0], 0
		}
	}
}

// scanReplies finds the complete replies in buf from start on, appending where each
// ends and whether it is an error. When reply boundaries depend on the command
// (wire.kinded), it reads each in-flight command's reply kind under mu.
func (be *backend) scanReplies(scan replyScanner, buf []byte, start int, ends []int, isErrs []bool) (int, []int, []bool, error) {
	kinded := be.gw.wire.kinded
	if kinded {
		be.mu.Lock()
		defer be.mu.Unlock()
	}
	pos := start
	for pos < len(buf) {
		var kind uint8
		if kinded {
			if len(ends) >= be.inflight {
				return pos, ends, isErrs, fmt.Errorf("%d reply bytes with no command in flight", len(buf)-pos)
			}
			kind = be.queue.at(len(ends)).kind
		}
		m, isErr, err := scan.scan(kind, buf[pos:])
		if errors.Is(err, protocols.ErrIncomplete) {
			break
		}
		if err != nil {
			return pos, ends, isErrs, fmt.Errorf("bad reply: %w", err)
		}
		pos += m
		ends = append(ends, pos)
		isErrs = append(isErrs, isErr)
	}
	return pos, ends, isErrs, nil
}

// dispatch pops one pending entry per reply and delivers the replies. The collector
// copies what it keeps, except a reply larger than the pools' largest class, or a
// reply alone in a pooled buffer of its own (whole: buf holds that one reply and
// nothing else), which it keeps by reference: lent then says buf must not be reused.
// ps is scratch space, returned for reuse.
func (be *backend) dispatch(conn net.Conn, buf []byte, start int, ends []int, isErrs []bool, ps []pending, whole bool) (_ []pending, lent, ok bool) {
	be.mu.Lock()
	if be.conn != conn {
		be.mu.Unlock()
		return ps, false, false
	}
	if len(ends) > be.inflight {
		be.mu.Unlock()
		be.fail(conn, fmt.Errorf("backend %s: %d replies for %d commands in flight", be.addr, len(ends), be.inflight))
		return ps, false, false
	}
	ps = be.queue.popInto(ps, len(ends))
	be.inflight -= len(ends)
	if be.behind.Load() {
		be.caughtUpLocked()
	}
	if be.inflight > 0 {
		be.progressAt = time.Now()
	} else if be.replaying && be.queue.len() == 0 && be.spillEntries == 0 {
		be.replaying = false
		if be.disk != nil {
			be.dropBacklogFileLocked()
		}
		be.log.Info("backend caught up on its backlog", "state", be.displayStateLocked())
	}
	be.mu.Unlock()
	be.replies.Add(int64(len(ends)))
	be.gw.stats.BackendBytesIn.Add(int64(ends[len(ends)-1] - start))
	from := start
	for i := range ps {
		p := &ps[i]
		reply := buf[from:ends[i]]
		from = ends[i]
		if p.gate != nil {
			switch {
			case p.probe:
				p.gate.resolveProbe(reply)
				continue // the gateway's own read: nobody waits for it
			case p.authority && p.gate.probe != nil:
				p.gate.hold(be.gw.wire.gateApplied(p.gate, reply), reply)
			case p.authority:
				p.gate.resolve(be.gw.wire.gateApplied(p.gate, reply), reply)
			}
			reply = gatedReply(p, reply, be.gw.wire.isError)
		}
		if p.b != nil {
			// A reply too large for the pools is lent, not copied: buf is given up
			// (and left to the garbage collector: the reply's capacity ends with it).
			// So is a reply alone in its pooled buffer, which then goes back to its
			// pool once sent.
			l := len(reply) > maxPooledBuf
			if l {
				reply = reply[:len(reply):len(reply)]
			} else if whole && p.gate == nil {
				l = true
			}
			lent = lent || l
			p.b.deliver(int(p.idx), be.index, reply, l, be.gw.noReply)
			continue
		}
		if isErrs[i] {
			// Nobody waits for this reply (backlog replay or an injected SELECT): the
			// error is the only trace of a write that failed here. An error for the
			// server's state (not the command's) means the others applied it.
			be.gw.stats.BackendErrors.Add(1)
			be.noteError("error reply: " + truncate(firstLine(reply), 80))
			be.log.Warn("backend returned an error for a write no client waits for", "reply", truncate(reply, 80))
			if p.write && be.gw.wire.stateError(reply) {
				be.mu.Lock()
				be.lostWrites++
				be.losses++
				be.mu.Unlock()
				be.markOutOfSync("it refused a replayed write: " + truncate(firstLine(reply), 60))
			}
		}
	}
	return ps, lent, true
}

// stalled reports whether conn has had commands in flight and made no progress for
// timeout; if not, next is when that would be (the next read deadline). So a hung
// backend is detected timeout after its last progress, and no command waits on it
// longer than that.
func (be *backend) stalled(conn net.Conn, timeout time.Duration) (next time.Time, stalled bool) {
	be.mu.Lock()
	defer be.mu.Unlock()
	now := time.Now()
	if be.conn != conn || be.inflight == 0 {
		return now.Add(timeout), false
	}
	// The gateway's own pause of a source holds its writes: count from its end.
	since := be.progressAt
	if be.pausedUntil.After(since) {
		since = be.pausedUntil
	}
	next = since.Add(timeout)
	return next, !now.Before(next)
}

const (
	replyBufSize = 16 << 10 // a backend reader's buffer
	// soloReplyMin: a reply of one value this large is read into a pooled buffer of
	// its own and kept by reference, not copied from the reader's buffer (readLoop).
	// 1 MiB GETs: 8-19 % less of the gateway's CPU each; 100 KiB ones: no gain beyond
	// noise (bench/RESULTS.md, fourteenth session), so smaller replies are copied.
	soloReplyMin = 256 << 10
	maxReplyBuf  = 2 << 20 // a reader's buffer grown past this is dropped once empty enough
)

// grow returns a buffer with buf[start:] at its front and free room after it: room
// for need bytes from the front when that is known (a large bulk's announced size,
// read straight into its final place), else twice the room.
func grow(buf []byte, start, need int) []byte {
	live := len(buf) - start
	if start > 0 && live < cap(buf)/2 && need <= cap(buf) {
		n := copy(buf, buf[start:])
		return buf[:n]
	}
	size := max(2*cap(buf), need)
	var nb []byte
	if size >= minBigBuf {
		nb = getBigBuf(size)[:live]
	} else {
		nb = make([]byte, live, size)
	}
	copy(nb, buf[start:])
	putBigBuf(buf) // replies delivered from it were copied
	return nb
}

// firstLine is b up to its first CRLF.
func firstLine(b []byte) []byte {
	if i := bytes.Index(b, []byte("\r\n")); i >= 0 {
		return b[:i]
	}
	return b
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ring is a FIFO of pending entries. pushed and popped count entries since the
// start: an entry pushed as the n-th has been answered (or lost) once popped >= n.
type ring struct {
	buf            []pending
	head, size     int
	pushed, popped int64
}

func (r *ring) len() int { return r.size }

func (r *ring) push(p pending) {
	if r.size == len(r.buf) {
		r.resize()
	}
	r.buf[(r.head+r.size)%len(r.buf)] = p
	r.size++
	r.pushed++
}

// pushFront inserts p at position at (0 = the head).
func (r *ring) pushFront(p pending, at int) {
	r.push(p)
	for i := r.size - 1; i > at; i-- {
		r.buf[(r.head+i)%len(r.buf)] = r.buf[(r.head+i-1)%len(r.buf)]
	}
	r.buf[(r.head+at)%len(r.buf)] = p
}

func (r *ring) resize() {
	nb := make([]pending, max(16, 2*len(r.buf)))
	for i := 0; i < r.size; i++ {
		nb[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = nb, 0
}

// skip counts n entries as pushed without holding them (they wait in a spill).
func (r *ring) skip(n int) { r.pushed += int64(n) }

// pushCounted adds an entry already counted by skip.
func (r *ring) pushCounted(p pending) {
	r.push(p)
	r.pushed--
}

// removeAt removes n entries from position at (0 = the head), keeping the order of
// the others. Their positions stay counted in pushed.
func (r *ring) removeAt(at, n int) {
	for i := at; i+n < r.size; i++ {
		r.buf[(r.head+i)%len(r.buf)] = r.buf[(r.head+i+n)%len(r.buf)]
	}
	for i := r.size - n; i < r.size; i++ {
		r.buf[(r.head+i)%len(r.buf)] = pending{}
	}
	r.size -= n
}

// popInto removes the first n entries and appends them to dst.
func (r *ring) popInto(dst []pending, n int) []pending {
	for i := 0; i < n; i++ {
		j := (r.head + i) % len(r.buf)
		dst = append(dst, r.buf[j])
		r.buf[j] = pending{}
	}
	if n > 0 {
		r.head = (r.head + n) % len(r.buf)
		r.size -= n
		r.popped += int64(n)
		if r.size == 0 && len(r.buf) > maxIdleRing {
			r.buf, r.head = nil, 0 // grown by a backlog now answered: let it go
		}
	}
	return dst
}

// maxIdleRing is the most entries a ring keeps room for once it is empty (2 MiB): a
// ring grown by a backlog of a million commands gives its 32 MiB back once drained.
const maxIdleRing = 1 << 16

// at returns the i-th entry from the head.
func (r *ring) at(i int) *pending { return &r.buf[(r.head+i)%len(r.buf)] }

func (r *ring) each(f func(p *pending)) {
	for i := 0; i < r.size; i++ {
		f(&r.buf[(r.head+i)%len(r.buf)])
	}
}

// deadline keeps a connection's read deadline about timeout ahead without setting it
// on every read: it is moved only once a sixteenth of timeout has passed, so the
// effective timeout lies between 15/16 and 16/16 of the setting.
type deadline struct {
	set time.Time // when the deadline was last moved
}

func (d *deadline) extend(conn net.Conn, timeout time.Duration) {
	if timeout <= 0 {
		return
	}
	now := time.Now()
	if now.Sub(d.set) < timeout/16 {
		return
	}
	d.set = now
	_ = conn.SetReadDeadline(now.Add(timeout))
}
