package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/dynode/dynode-broadcaster/gateway/backlog"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// With backlog_dir set, what the gateway knows about each backend outlives it:
//
//   - backlog-<addr>.log: the backlog of a backend that is not connected, one record
//     per queued command (or run of commands), appended before the command's client
//     is acknowledged. A connected backend's queue lives in memory only; when its
//     connection fails, what was not written yet is saved in its place.
//   - state.json: each backend's process identity, whether it is out of sync and
//     why, whether it was connected, and whether the gateway stopped cleanly.
//
// At start, a backend that was down keeps its place: its backlog is loaded and
// replayed when it connects, its identity is compared with the process that answers,
// and its out-of-sync flag is kept. After a crash (no clean stop), a backend that was
// connected may or may not have applied the writes that were in flight or still in
// memory: every such backend except the reference (the primary, or the first in-sync
// one) is out of sync, and its stale backlog is dropped; a resync brings it back.

// stateFile is the name of the gateway's state in backlog_dir.
const stateFile = "state.json"

// persistedState is state.json.
type persistedState struct {
	Clean    bool                         `json:"clean"`
	Backends map[string]*persistedBackend `json:"backends"`
}

// persistedBackend is one backend's entry in state.json.
type persistedBackend struct {
	Identity  string `json:"identity,omitempty"`
	OutOfSync bool   `json:"out_of_sync,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Connected bool   `json:"connected,omitempty"`
}

// durable is backlog_dir: the state file and the backends' backlog files.
type durable struct {
	dir   string
	fsync backlog.Fsync

	mu    sync.Mutex // guards state and the state file
	state persistedState
}

// openDurable checks that dir is a writable directory (creating it if needed) and
// reads the state a previous gateway left there.
func openDurable(dir, fsync string) (*durable, persistedState, error) {
	mode, err := backlog.ParseFsync(fsync)
	if err != nil {
		return nil, persistedState{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, persistedState{}, fmt.Errorf("backlog_dir %s: %w", dir, err)
	}
	probe := filepath.Join(dir, ".write-test")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		return nil, persistedState{}, fmt.Errorf("backlog_dir %s is not writable: %w", dir, err)
	}
	_ = os.Remove(probe)
	d := &durable{dir: dir, fsync: mode, state: persistedState{Backends: map[string]*persistedBackend{}}}
	var prev persistedState
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		prev.Clean = true // nothing was running
	case err != nil:
		return nil, prev, fmt.Errorf("backlog_dir %s: %w", dir, err)
	default:
		if err := json.Unmarshal(raw, &prev); err != nil {
			return nil, prev, fmt.Errorf("backlog_dir %s: %s: %w", dir, stateFile, err)
		}
	}
	if prev.Backends == nil {
		prev.Backends = map[string]*persistedBackend{}
	}
	return d, prev, nil
}

// logPath is the backlog file of the backend at addr.
func (d *durable) logPath(addr string) string {
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, addr)
	return filepath.Join(d.dir, "backlog-"+safe+".log")
}

// update changes a backend's entry and writes the state file.
func (d *durable) update(addr string, f func(b *persistedBackend)) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.state.Backends[addr]
	if b == nil {
		b = &persistedBackend{}
		d.state.Backends[addr] = b
	}
	f(b)
	d.saveLocked()
}

// setClean records whether the gateway is stopped cleanly (true) or running.
func (d *durable) setClean(clean bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state.Clean = clean
	return d.saveLocked()
}

// saveLocked writes the state file atomically (the caller holds mu).
func (d *durable) saveLocked() error {
	raw, err := json.MarshalIndent(d.state, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(d.dir, stateFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("backlog_dir: %w", err)
	}
	_, err = f.Write(raw)
	if err == nil && d.fsync != backlog.FsyncNo {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("backlog_dir: %s: %w", stateFile, err)
	}
	return nil
}

// restoreDurable opens every backend's backlog file and restores what the previous
// gateway knew (see the top of this file). It runs in New, before any goroutine.
func (g *Gateway) restoreDurable(prev persistedState) error {
	d := g.durable
	reference := ""
	if !prev.Clean {
		reference = crashReference(g.servers, g.primaryIndex, prev)
	}
	for _, be := range g.all() {
		if err := g.openBackendFiles(be); err != nil {
			return err
		}
		l := be.disk
		leftover := be.spill.Size() > 0
		if leftover {
			if err := be.spill.Rewrite(nil); err != nil {
				return err
			}
		}
		was := prev.Backends[be.addr]
		if was == nil {
			was = &persistedBackend{}
		}
		be.identity = was.Identity
		d.state.Backends[be.addr] = &persistedBackend{Identity: was.Identity, OutOfSync: was.OutOfSync, Reason: was.Reason}
		if was.OutOfSync {
			be.restoreOutOfSync(was.Reason)
		}
		if leftover {
			be.markOutOfSync("it was behind (its queue spilled to backlog_dir) when the gateway stopped: what of the spill it applied is not known")
		}
		if !prev.Clean && was.Connected && be.addr != reference {
			if err := l.Rewrite(nil); err != nil {
				return err
			}
			be.markOutOfSync("the gateway stopped without a clean shutdown while this backend was connected: writes in flight then may or may not have reached it")
			continue
		}
		if err := be.loadBacklog(); err != nil {
			return err
		}
	}
	if !prev.Clean {
		g.log.Warn("the previous gateway did not stop cleanly: backends that were connected, except the reference, are out of sync", "reference", reference)
	}
	return d.setClean(false)
}

// crashReference is the backend whose data counts as right after a crash: the
// primary if it was connected and in sync, else the first such backend.
func crashReference(servers []string, primary int, prev persistedState) string {
	ok := func(addr string) bool {
		b := prev.Backends[addr]
		return b != nil && b.Connected && !b.OutOfSync
	}
	if primary >= 0 && ok(servers[primary]) {
		return servers[primary]
	}
	for _, addr := range servers {
		if ok(addr) {
			return addr
		}
	}
	return ""
}

// restoreOutOfSync sets the flag a previous gateway left, without counting a new event.
func (be *backend) restoreOutOfSync(reason string) {
	be.syncMu.Lock()
	be.syncReason = "(before the gateway restarted) " + reason
	be.syncMu.Unlock()
	be.outOfSync.Store(true)
}

// loadBacklog puts the backend's backlog file into its queue, in queue order, then
// rewrites the file as one record numbered from the new queue's start. A gap in the
// positions (a write by effect whose outcome was not known yet) or a torn tail means
// writes are missing: the backend is out of sync.
func (be *backend) loadBacklog() error {
	recs, torn, err := be.disk.Records()
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return be.disk.Rewrite(nil)
	}
	slices.SortStableFunc(recs, func(a, b backlog.Record) int { return compareUint64(a.Seq, b.Seq) })
	gap := false
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq != recs[i-1].Seq+uint64(len(recs[i-1].Kinds)) {
			gap = true
		}
	}
	var kinds, frames []byte
	for _, r := range recs {
		kinds = append(kinds, r.Kinds...)
		frames = append(frames, r.Frames...)
	}
	if be.gw.wire == &respWire {
		// The stream's database after the backlog is not recorded: end on a known one.
		frames = resp.AppendSelect(frames, 0)
		kinds = append(kinds, 0)
	}
	be.out.set(frames)
	for _, k := range kinds {
		be.queue.push(pending{write: true, kind: k})
	}
	be.queued.Store(int64(be.out.len()))
	be.log.Info("backlog loaded from backlog_dir", "commands", len(kinds), "bytes", len(frames), "file", be.disk.Path())
	switch {
	case torn:
		be.markOutOfSync("its on-disk backlog ends in a torn record (the machine stopped mid-write)")
	case gap:
		be.markOutOfSync("its on-disk backlog has a gap: a write by effect was not yet resolved when the gateway stopped")
	}
	return be.disk.Rewrite([]backlog.Record{{Seq: 1, Kinds: kinds, Frames: frames}})
}

func compareUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// persistLocked appends one record to the backlog file (the caller holds mu). A
// failed write loses the command for a restart: the backend is out of sync.
func (be *backend) persistLocked(r backlog.Record) {
	if err := be.disk.Append(r); err != nil {
		be.log.Error("backlog_dir write failed", "err", err)
		be.markOutOfSync("its backlog could not be written to backlog_dir: " + err.Error())
	}
}

// persistGatedLocked writes the gated writes whose frames are now known, in queue
// order, while the backend is not connected (the caller holds mu).
func (be *backend) persistGatedLocked() {
	for i := range be.gated {
		gw := &be.gated[i]
		if gw.persisted {
			continue
		}
		frame, ready := be.gatedFrame(gw)
		if !ready {
			return // the ones after it wait (their positions leave a gap until then)
		}
		be.persistLocked(backlog.Record{Seq: gw.seq, Kinds: gw.kinds, Frames: frame})
		gw.persisted = true
	}
}

// saveBacklogLocked replaces the backlog file with what is queued and not yet
// written, when the connection fails (the caller holds mu; in-flight entries are
// already popped).
func (be *backend) saveBacklogLocked() {
	var recs []backlog.Record
	base := uint64(be.queue.popped) + 1
	nOut := be.queue.len() - be.held
	kinds := make([]byte, 0, nOut+1)
	frames := be.out.bytes()
	if be.writtenDB != 0 && be.gw.wire == &respWire {
		// The bytes in out were built for the database (and protocol) the connection
		// had selected.
		sel, n := appendStateChange(nil, 0, be.writtenDB)
		frames = append(sel, frames...)
		for range n {
			kinds = append(kinds, 0)
			base-- // an extra entry in front of the first
		}
	}
	for i := range nOut {
		kinds = append(kinds, be.queue.at(i).kind)
	}
	recs = append(recs, backlog.Record{Seq: base, Kinds: kinds, Frames: frames})
	if be.spilling {
		// The gated writes go to the spill, after what is there (spill.go); a restart
		// finds the spill and puts the backend out of sync.
		be.rewriteBacklog(recs)
		return
	}
	pos := uint64(be.queue.popped) + 1 + uint64(nOut)
	at := nOut
	for i := range be.gated {
		gw := &be.gated[i]
		gw.seq = pos
		gw.kinds = gw.kinds[:0]
		for j := range gw.entries {
			gw.kinds = append(gw.kinds, be.queue.at(at+j).kind)
		}
		if frame, ready := be.gatedFrame(gw); ready {
			recs = append(recs, backlog.Record{Seq: pos, Kinds: gw.kinds, Frames: frame})
			gw.persisted = true
		}
		pos += uint64(gw.entries)
		at += gw.entries
		after := make([]byte, 0, gw.nAfter)
		for j := range gw.nAfter {
			after = append(after, be.queue.at(at+j).kind)
		}
		recs = append(recs, backlog.Record{Seq: pos, Kinds: after, Frames: gw.after})
		pos += uint64(gw.nAfter)
		at += gw.nAfter
	}
	be.rewriteBacklog(recs)
}

// rewriteBacklog replaces the backlog file with recs (the caller holds mu).
func (be *backend) rewriteBacklog(recs []backlog.Record) {
	if err := be.disk.Rewrite(recs); err != nil {
		be.log.Error("backlog_dir write failed", "err", err)
		be.markOutOfSync("its backlog could not be written to backlog_dir: " + err.Error())
	}
}

// openBackendFiles opens a backend's backlog and spill files in backlog_dir.
func (g *Gateway) openBackendFiles(be *backend) error {
	d := g.durable
	l, err := backlog.Open(d.logPath(be.addr), d.fsync)
	if err != nil {
		return err
	}
	be.disk = l
	if be.spill, err = backlog.Open(d.spillPath(be.addr), d.fsync); err != nil {
		return err
	}
	return nil
}
