package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols/memcache"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// A resync makes an out-of-sync backend hold the others' data again and joins it to
// the global order at an exact point, after which it is in sync.
//
// Redis: the target replicates from the source (the primary, or the first in-sync
// backend) with Redis's own REPLICAOF: a full copy of every database, expiries and
// all types included, made by the server. Meanwhile the gateway sends the target
// nothing (phaseCopying): every write it misses is in the source's data or in the
// replication stream. The switch point is a CLIENT PAUSE WRITE placed in the source's
// stream by the sequencer, at the same instant as the target starts holding the
// writes sequenced after it (phaseSwitching): once the source answers the pause, it
// has applied exactly the writes before the point and its replication stream stops
// there. The gateway waits until the target's replication offset equals the
// source's, detaches it (REPLICAOF NO ONE), checks that the source's offset did not
// move meanwhile (so no later write reached the target twice), then releases the
// target's held writes and unpauses the source. The pause lasts a few round trips to
// the target, so a target too far for them to fit in the pause is refused before the
// source is paused; the source's replies held by the pause do not count towards its
// backend_timeout (backend.pausedUntil). A failed switch unpauses the source first.
// Copying by REPLICAOF needs the target to reach the source: at its address in
// servers, or, when the backends cannot reach each other (cross-region), through a
// relay in the gateway, which reaches both (relay.go; resync_via).
//
// Memcached cannot be copied (no command lists every item): the target is flushed at
// a point of the global order, is then in sync (it holds nothing the others do not),
// and is warming: no reads nor reply source until warm_seconds pass, while clients'
// writes fill it again.

// syncPhase is where a resync of a backend is.
type syncPhase uint8

const (
	phaseNone      syncPhase = iota
	phaseCopying             // it replicates from the source: the sequencer sends it nothing
	phaseSwitching           // its writes after the switch point are held until it caught up
)

// ResyncProgress is a running or finished resync, as /backends shows it.
type ResyncProgress struct {
	Source  string    `json:"source"`
	Started time.Time `json:"started"`
	// Step is draining (its queued commands), copying (the snapshot), switching
	// (catching up to the switch point), done or failed.
	Step string `json:"step"`
	// Bytes of the source's snapshot the target has read, of TotalBytes (-1: not
	// known, a diskless transfer).
	Bytes      int64 `json:"bytes"`
	TotalBytes int64 `json:"total_bytes"`
	// Via is how the target reached the source: direct, or gateway (a relay).
	Via      string    `json:"via"`
	Finished time.Time `json:"finished,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// Errors of Resync, told apart by the admin server.
var (
	ErrUnknownBackend = errors.New("no such backend")
	ErrResyncRunning  = errors.New("a resync of this backend is already running")
	ErrNoResyncSource = errors.New("no in-sync backend is up to resync from")
	ErrBackendDown    = errors.New("the backend is not connected")
)

// resyncer starts resyncs and remembers which run, so none runs twice.
type resyncer struct {
	mu       sync.Mutex // guards everything below
	ctx      context.Context
	wg       *sync.WaitGroup
	running  map[*backend]bool
	failures map[*backend]int
	nextTry  map[*backend]time.Time
}

// Resync starts rebuilding the backend at addr from an in-sync one and returns at
// once; its progress shows in Backends. It fails when the backend is unknown, down, a
// resync of it runs already, or no other backend can be the source.
func (g *Gateway) Resync(addr string) error {
	for _, be := range g.all() {
		if be.addr == addr && !be.retired.Load() {
			return g.startResync(be)
		}
	}
	return fmt.Errorf("%w: %s", ErrUnknownBackend, addr)
}

func (g *Gateway) startResync(be *backend) error {
	r := &g.resyncs
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.ctx == nil || r.ctx.Err() != nil:
		return errors.New("the gateway is not running")
	case r.running[be]:
		return fmt.Errorf("%w: %s", ErrResyncRunning, be.addr)
	case !be.up.Load():
		return fmt.Errorf("%w: %s", ErrBackendDown, be.addr)
	}
	source := g.resyncSource(be)
	if source == nil {
		return ErrNoResyncSource
	}
	r.running[be] = true
	r.wg.Go(func() {
		err := g.resync(r.ctx, be, source)
		r.mu.Lock()
		delete(r.running, be)
		if err != nil {
			r.failures[be]++
			r.nextTry[be] = time.Now().Add(min(5*time.Second<<(r.failures[be]-1), 2*time.Minute))
		} else {
			delete(r.failures, be)
			delete(r.nextTry, be)
		}
		r.mu.Unlock()
	})
	return nil
}

// autoResync starts a resync of every backend that is up and out of sync, once a
// second, after a failed attempt waiting 5 s doubled per failure up to 2 min.
func (g *Gateway) autoResync(ctx context.Context) {
	every(ctx, time.Second, func() {
		if !g.conf().AutoResync { // it can change live (Reload)
			return
		}
		for _, be := range g.all() {
			if !be.up.Load() || !be.outOfSync.Load() || be.resyncing.Load() || be.retired.Load() {
				continue
			}
			g.resyncs.mu.Lock()
			wait := time.Now().Before(g.resyncs.nextTry[be])
			g.resyncs.mu.Unlock()
			if !wait {
				_ = g.startResync(be) // refused: tried again on a later tick
			}
		}
	})
}

// every runs f every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// resyncSource is the backend a resync of target copies from (target nil: the
// reference of a verify round): the primary if it is preferred, else the first
// preferred backend; nil if none.
func (g *Gateway) resyncSource(target *backend) *backend {
	g.seq.mu.Lock()
	defer g.seq.mu.Unlock()
	if p := g.seq.primary; p >= 0 && g.all()[p] != target && g.all()[p].preferred() {
		return g.all()[p]
	}
	for _, be := range g.all() {
		if be != target && be.preferred() {
			return be
		}
	}
	return nil
}

// resync runs one resync of target from source and records how it went.
func (g *Gateway) resync(ctx context.Context, target, source *backend) error {
	start := time.Now()
	target.setResync(&ResyncProgress{Source: source.addr, Started: start, Step: "draining", TotalBytes: -1})
	target.log.Warn("backend resync started", "state", "resyncing", "source", source.addr)
	g.stats.ResyncsStarted.Add(1)
	var err error
	if g.conf().Protocol == "memcache" {
		err = g.flushForResync(target)
	} else {
		err = g.resyncRedis(ctx, target, source)
	}
	target.updateResync(func(p *ResyncProgress) {
		p.Finished = time.Now()
		p.Step = "done"
		if err != nil {
			p.Step, p.Error = "failed", err.Error()
		}
	})
	if err != nil {
		g.stats.ResyncsFailed.Add(1)
		target.log.Error("backend resync failed; it stays out of sync", "state", "out_of_sync", "source", source.addr, "err", err)
		return err
	}
	state := "up"
	if target.warming() {
		state = "warming"
	}
	target.log.Warn("backend resync done: it is in sync", "state", state, "source", source.addr, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// flushForResync empties a memcached backend at a point of the global order: it is
// then in sync, and warming for warm_seconds.
func (g *Gateway) flushForResync(target *backend) error {
	g.seq.mu.Lock()
	defer g.seq.mu.Unlock()
	target.mu.Lock()
	defer target.mu.Unlock()
	if target.state != StateUp {
		return fmt.Errorf("%w: %s", ErrBackendDown, target.addr)
	}
	warm := g.warmDuration()
	target.appendLocked([]byte("flush_all\r\n"), nil, 0, pending{write: true, kind: uint8(memcache.ReplyLine)})
	target.warmUntil.Store(time.Now().Add(warm).UnixNano())
	target.clearLostInResync()
	target.markInSync() // nothing can be lost in between: the sequencer's lock is held
	target.kick()
	target.log.Info("backend flushed: warming before it serves reads", "warm_for", warm)
	return nil
}

// warmDuration is how long a flushed memcached backend warms: warm_seconds, or the
// largest TTL clients set (an item without expiry counts as an hour), at most an hour.
func (g *Gateway) warmDuration() time.Duration {
	if g.conf().WarmPeriod > 0 {
		return g.conf().WarmPeriod
	}
	return min(time.Duration(g.maxTTL.Load())*time.Second, time.Hour)
}

// noteTTL records the TTL of a memcached write, in seconds (see warmDuration).
func (g *Gateway) noteTTL(seconds int64) {
	for {
		cur := g.maxTTL.Load()
		if seconds <= cur || g.maxTTL.CompareAndSwap(cur, seconds) {
			return
		}
	}
}

// resyncRedis rebuilds target from source by replication (see the top of this file).
func (g *Gateway) resyncRedis(ctx context.Context, target, source *backend) (err error) {
	if !target.outOfSync.Load() {
		// A resync asked for on an in-sync backend: it misses writes from now on.
		target.markOutOfSync("a resync was requested")
	}
	target.mu.Lock()
	target.phase = phaseCopying
	target.resyncing.Store(true)
	target.mu.Unlock()
	var tconn, sconn *sideConn
	replicating, paused, switching := false, false, false
	defer func() {
		// On failure: detach and unpause whatever was done, and let the target's held
		// writes go (it stays out of sync until the next attempt).
		if err != nil {
			err = errors.Join(err, g.undoResync(target, source, tconn, sconn, replicating, paused))
		}
		if switching {
			source.switching.Unlock() // after the undo's UNPAUSE
		}
		target.mu.Lock()
		target.phase = phaseNone
		target.resyncing.Store(false)
		target.mu.Unlock()
		target.kick()
		tconn.close()
		sconn.close()
	}()

	// What was queued before goes out first (REPLICAOF then drops it with the data).
	if err := g.waitFor(ctx, g.conf().BackendTimeout+g.conf().ConnectTimeout, "the backend to answer what was queued for it", func() (bool, error) {
		target.mu.Lock()
		defer target.mu.Unlock()
		if target.state != StateUp {
			return false, fmt.Errorf("%w: %s", ErrBackendDown, target.addr)
		}
		return target.queue.len() == 0 && target.spillEntries == 0, nil
	}); err != nil {
		return err
	}
	if tconn, err = g.dialSide(ctx, target); err != nil {
		return err
	}
	if sconn, err = g.dialSide(ctx, source); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(source.addr)
	if err != nil {
		return fmt.Errorf("source address %s: %w", source.addr, err)
	}
	via := g.conf().ResyncVia
	if via == "auto" {
		via = "direct"
		if target.relayNext {
			via = "gateway" // the last direct attempt never got a replication link
		}
	}
	if via == "gateway" {
		rl, err := startRelay(source, tconn.conn.LocalAddr())
		if err != nil {
			return err
		}
		defer rl.close()
		if host, port, err = rl.addr(); err != nil {
			return err
		}
	}
	target.updateResync(func(p *ResyncProgress) { p.Via = via })
	if cr := g.conf().BackendCredentials(source.addr); cr.Password != "" {
		// The target authenticates to the source as the gateway does.
		if _, err := tconn.do("CONFIG", "SET", "masteruser", cr.Username, "masterauth", cr.Password); err != nil {
			return err
		}
	}
	if _, err := tconn.do("REPLICAOF", host, port); err != nil {
		return err
	}
	replicating = true
	target.updateResync(func(p *ResyncProgress) { p.Step = "copying" })
	linked, err := g.awaitReplicaLink(ctx, target, source, tconn)
	target.relayNext = !linked && via != "gateway" && g.conf().ResyncVia == "auto"
	if err != nil {
		if target.relayNext {
			err = fmt.Errorf("%w; the next attempt replicates through the gateway (resync_via=auto)", err)
		}
		return err
	}

	// A switch makes a few round trips to the target while every client's writes
	// wait (catching up, REPLICAOF NO ONE, a SCRIPT LOAD per script): refuse one that
	// cannot end within the pause, before pausing the source.
	pause := max(2*time.Second, g.conf().BackendTimeout/2)
	rttStart := time.Now()
	if _, err := tconn.do("PING"); err != nil {
		return err
	}
	rtt := time.Since(rttStart)
	if need := time.Duration(2+len(g.scripts.all())) * rtt; need > pause*3/4 {
		return fmt.Errorf("a round trip to the backend takes %v: too long for a switch within the source's pause of %v (backend_timeout/2, at least 2s)",
			rtt.Round(time.Millisecond), pause)
	}

	// The switch point: CLIENT PAUSE WRITE in the source's stream, and from the same
	// instant the target holds its writes.
	target.updateResync(func(p *ResyncProgress) { p.Step = "switching" })
	source.switching.Lock() // one switch at a time pauses a source
	switching = true
	marker := newReplyGate()
	frame := resp.AppendCommand(nil, [][]byte{[]byte("CLIENT"), []byte("PAUSE"), []byte(strconv.FormatInt(pause.Milliseconds(), 10)), []byte("WRITE")})
	pausedAt := time.Now()
	g.seq.mu.Lock()
	source.mu.Lock()
	sourceUp := source.state == StateUp && source.preferred()
	if sourceUp {
		source.appendLocked(frame, nil, source.db, pending{gate: marker, authority: true})
		source.pausedUntil = pausedAt.Add(pause)
	}
	source.mu.Unlock()
	if sourceUp {
		target.mu.Lock()
		target.phase = phaseSwitching
		target.mu.Unlock()
		target.clearLostInResync()
	}
	g.seq.mu.Unlock()
	if !sourceUp {
		return fmt.Errorf("the source %s is no longer up and in sync", source.addr)
	}
	source.kick()
	paused = true
	select {
	case <-marker.done:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(pause / 2):
		return fmt.Errorf("the source %s did not answer CLIENT PAUSE within %v", source.addr, pause/2)
	}
	if _, reply := marker.result(); string(reply) != "+OK\r\n" {
		return fmt.Errorf("the source %s refused CLIENT PAUSE WRITE: %s", source.addr, truncate(firstLine(reply), 80))
	}
	offset, err := sconn.infoInt("master_repl_offset")
	if err != nil {
		return err
	}
	deadline := pause - time.Since(pausedAt) - pause/4 // margin: the pause must outlast the switch
	if err := g.waitFor(ctx, deadline, "the backend to reach the source's replication offset", func() (bool, error) {
		got, err := tconn.infoInt("slave_repl_offset")
		if err != nil {
			return false, err
		}
		if got > offset {
			return false, fmt.Errorf("the backend's replication offset %d passed the switch point %d", got, offset)
		}
		return got == offset, nil
	}); err != nil {
		return err
	}
	if _, err := tconn.do("REPLICAOF", "NO", "ONE"); err != nil {
		return err
	}
	replicating = false
	if err := g.loadScripts(tconn); err != nil { // before the held writes (EVALSHA) reach it
		return err
	}
	if after, err := sconn.infoInt("master_repl_offset"); err != nil {
		return err
	} else if after != offset || time.Since(pausedAt) >= pause {
		return fmt.Errorf("the source's replication moved past the switch point (offset %d, then %d)", offset, after)
	}
	// Exact: the target holds the source's data as of the switch point, and its held
	// writes are every write after it.
	if !target.markInSync() {
		return errors.New("the backend lost writes after the switch point (its backlog overflowed, or a write was refused)")
	}
	paused = false
	if _, err := sconn.do("CLIENT", "UNPAUSE"); err != nil {
		source.log.Warn("CLIENT UNPAUSE failed: the source resumes writes when its pause ends", "err", err, "pause", pause)
	} else {
		source.unpaused()
	}
	return nil
}

// awaitReplicaLink waits until target has loaded the source's snapshot and follows
// its replication stream, updating the progress. It fails when the copy makes no
// progress for a while (the target cannot reach the source, say); linked reports
// whether the target's replication link to the source ever came up.
func (g *Gateway) awaitReplicaLink(ctx context.Context, target, source *backend, tconn *sideConn) (linked bool, _ error) {
	stall := max(30*time.Second, 6*g.conf().ConnectTimeout)
	var last string
	lastChange, lastLog := time.Now(), time.Now()
	for {
		info, err := tconn.do("INFO", "replication")
		if err != nil {
			return linked, err
		}
		link, inProgress := infoField(info, "master_link_status"), infoField(info, "master_sync_in_progress")
		read, _ := strconv.ParseInt(infoField(info, "master_sync_read_bytes"), 10, 64)
		total, err := strconv.ParseInt(infoField(info, "master_sync_total_bytes"), 10, 64)
		if err != nil {
			total = -1
		}
		linked = linked || inProgress == "1" || link == "up"
		if inProgress == "1" {
			target.updateResync(func(p *ResyncProgress) { p.Bytes, p.TotalBytes = read, total })
			if time.Since(lastLog) >= 5*time.Second {
				target.log.Info("backend resync progress", "state", "resyncing", "source", source.addr, "bytes", read, "of_bytes", total)
				lastLog = time.Now()
			}
		}
		if link == "up" && inProgress == "0" {
			return true, nil
		}
		if now := link + inProgress + strconv.FormatInt(read, 10); now != last {
			last, lastChange = now, time.Now()
		} else if time.Since(lastChange) > stall {
			return linked, fmt.Errorf("the backend made no progress replicating from %s for %v (master_link_status:%s; the backends must reach each other at the addresses in servers)", source.addr, stall, link)
		}
		if !target.up.Load() {
			return linked, fmt.Errorf("%w: %s", ErrBackendDown, target.addr)
		}
		if !source.preferred() {
			return linked, fmt.Errorf("the source %s is no longer up and in sync", source.addr)
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return linked, ctx.Err()
		}
	}
}

// undoResync detaches the target and unpauses the source after a failed resync, on
// new connections when the old ones failed.
func (g *Gateway) undoResync(target, source *backend, tconn, sconn *sideConn, replicating, paused bool) error {
	// Not the resync's context: it may have ended (shutdown), and this must still run.
	ctx, cancel := context.WithTimeout(context.Background(), 2*g.conf().ConnectTimeout)
	defer cancel()
	var errs []error
	// The source first: its pause holds every client's writes, and the target is
	// out of sync whatever it replicates meanwhile.
	if paused {
		if sconn == nil || sconn.broken {
			sconn.close()
			sconn, _ = g.dialSide(ctx, source)
		}
		if _, err := sconn.do("CLIENT", "UNPAUSE"); err != nil {
			errs = append(errs, fmt.Errorf("CLIENT UNPAUSE on %s: %w", source.addr, err))
		} else {
			source.unpaused()
		}
		sconn.close()
	}
	if replicating {
		if tconn == nil || tconn.broken {
			tconn.close()
			tconn, _ = g.dialSide(ctx, target)
		}
		if _, err := tconn.do("REPLICAOF", "NO", "ONE"); err != nil {
			errs = append(errs, fmt.Errorf("REPLICAOF NO ONE on %s: %w", target.addr, err))
		}
		tconn.close()
	}
	return errors.Join(errs...)
}

// unpaused records that a switch's CLIENT UNPAUSE ended the backend's pause: its
// commands in flight have backend_timeout from now on (stalled).
func (be *backend) unpaused() {
	be.mu.Lock()
	if now := time.Now(); be.pausedUntil.After(now) {
		be.pausedUntil = now
	}
	be.mu.Unlock()
}

// waitFor polls cond every millisecond or so until it is true, fails, or timeout
// passes.
func (g *Gateway) waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// clearLostInResync marks the point after which a lost write fails the resync.
func (be *backend) clearLostInResync() {
	be.syncMu.Lock()
	be.lostInResync = false
	be.syncMu.Unlock()
}

// setResync records a new resync of the backend.
func (be *backend) setResync(p *ResyncProgress) {
	be.syncMu.Lock()
	be.resync = p
	be.syncMu.Unlock()
}

// updateResync changes the current resync's progress.
func (be *backend) updateResync(f func(p *ResyncProgress)) {
	be.syncMu.Lock()
	if be.resync != nil {
		f(be.resync)
	}
	be.syncMu.Unlock()
}

// resyncProgress returns a copy of the running or last resync, or nil.
func (be *backend) resyncProgress() *ResyncProgress {
	be.syncMu.Lock()
	defer be.syncMu.Unlock()
	if be.resync == nil {
		return nil
	}
	p := *be.resync
	return &p
}

// sideConn is a connection of the gateway's own to a backend, beside its pipeline,
// for commands that are not part of the global order (INFO, REPLICAOF, CLIENT).
type sideConn struct {
	be     *backend
	conn   net.Conn
	scan   replyScanner
	buf    []byte
	broken bool
}

// dialSide connects to the backend and checks it answers the probe.
func (g *Gateway) dialSide(ctx context.Context, be *backend) (*sideConn, error) {
	conn, err := be.dial(ctx)
	if err != nil {
		return nil, err
	}
	c := &sideConn{be: be, conn: conn, scan: g.wire.newScanner()}
	buf, err := be.authenticate(conn, c.scan, nil)
	if err != nil {
		c.close()
		return nil, err
	}
	reply, isErr, buf, err := be.roundTrip(conn, c.scan, g.wire.probe, 0, buf)
	c.buf = buf
	if err == nil && isErr {
		err = fmt.Errorf("backend %s: %s", be.addr, truncate(firstLine(reply), 120))
	}
	if err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// do sends one Redis command and returns its reply; an error reply is an error.
func (c *sideConn) do(args ...string) ([]byte, error) {
	if c == nil || c.broken {
		return nil, errors.New("no connection")
	}
	bargs := make([][]byte, len(args))
	for i, a := range args {
		bargs[i] = []byte(a)
	}
	reply, isErr, buf, err := c.be.roundTrip(c.conn, c.scan, resp.AppendCommand(nil, bargs), 0, c.buf)
	c.buf = buf
	if err != nil {
		c.broken = true
		return nil, err
	}
	if isErr {
		return nil, fmt.Errorf("%s on %s: %s", args[0], c.be.addr, truncate(firstLine(reply), 120))
	}
	return reply, nil
}

// infoInt reads an integer field of INFO replication.
func (c *sideConn) infoInt(field string) (int64, error) {
	info, err := c.do("INFO", "replication")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(infoField(info, field), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("INFO replication on %s: no %s", c.be.addr, field)
	}
	return n, nil
}

func (c *sideConn) close() {
	if c != nil && c.conn != nil {
		_ = c.conn.Close()
	}
}
