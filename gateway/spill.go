package gateway

import (
	"bytes"
	"fmt"

	"github.com/dynode/dynode-broadcaster/gateway/backlog"
)

// With backlog_dir, a connected backend that falls behind (its link or the server is
// slower than the writes) keeps at most backlog_memory_bytes of its queue in memory:
// beyond that, the commands queued for it go to its spill file (spill-<addr>.log) in
// order, and its writer reads them back, a part at a time, once it has written what
// is in memory. Nobody waits for a spilled command's reply (as for a backlog
// replayed after a reconnection: an error reply that means a lost write still puts
// the backend out of sync), and while it spills the backend is neither the reply
// source nor read from, so clients never wait on it. It is never made to spill
// while it is the reply source. backend_backlog_bytes bounds memory and spill
// together; past it, writes are lost for it and it goes out of sync, as without a
// spill.
//
// Gated writes (replicated by effect) carry their gate only in memory: while a
// backend spills, the effects it receives go to the spill once known (they are plain
// commands for it), and a gated write it evaluates itself (it became the reply source
// while spilling, with no other backend left) waits in memory until the spill has
// been read back. Gated writes queued before it started spilling (someone may wait
// for their replies) go to memory, ahead of everything spilled.
//
// A spill is for a running gateway's memory, not for restarts: a gateway that
// starts and finds a spill left over cannot tell what of it was applied, so that
// backend is out of sync (and resynced).

// spillFileName is the spill file of the backend at addr, in backlog_dir.
func (d *durable) spillPath(addr string) string {
	return d.logPath(addr)[:len(d.logPath(addr))-len(".log")] + ".spill"
}

// maybeSpillLocked starts spilling once the queue in memory reaches
// backlog_memory_bytes (the caller holds mu; the backend is connected, spill is set,
// and it is not the reply source).
func (be *backend) maybeSpillLocked() {
	if int64(be.out.len()+be.heldBytes) < be.gw.conf().BacklogMemoryBytes {
		return
	}
	be.spilling = true
	be.behind.Store(true)
	be.gw.stats.Spills.Add(1)
	be.log.Warn("backend is behind: its queue goes to backlog_dir until it catches up", "memory_bytes", be.out.len(), "file", be.spill.Path())
}

// spillLocked appends commands to the spill (the caller holds mu): frames, one reply
// kind per command, and the database the stream selects after them. Their queue
// positions are counted now (ring.skip), as if pushed, so WAIT's marks stay exact.
func (be *backend) spillLocked(frames, kinds []byte, dbAfter int) {
	if err := be.spill.Append(backlog.Record{Seq: uint64(dbAfter), Kinds: kinds, Frames: frames}); err != nil {
		be.log.Error("backlog_dir write failed", "err", err)
		be.lostWrites += int64(len(kinds))
		be.losses++
		be.markOutOfSync("its queue could not be spilled to backlog_dir: " + err.Error())
		return
	}
	be.queue.skip(len(kinds))
	be.spillEntries += len(kinds)
	be.spillBytes += len(frames)
	be.queued.Store(int64(be.queuedBytesLocked()))
}

// spillGatedLocked moves the first gated write, now known, and the commands held
// behind it to the spill (the caller holds mu). Their queue entries leave the ring;
// they come back, without their gate, when the spill is read.
func (be *backend) spillGatedLocked(gw *gatedWrite, frame []byte) {
	n := gw.entries + gw.nAfter
	at := be.queue.len() - be.held
	kinds := make([]byte, 0, n)
	for i := range n {
		kinds = append(kinds, be.queue.at(at+i).kind)
	}
	be.queue.removeAt(at, n)
	be.queue.pushed -= int64(n) // spillLocked counts them again, in the same places
	be.held -= n
	be.heldBytes -= len(gw.frame) + len(gw.after)
	be.spillLocked(append(bytes.Clone(frame), gw.after...), kinds, gw.dbAfter)
	be.gated[0] = gatedWrite{}
	be.gated = be.gated[1:]
}

// unspillLocked reads the next part of the spill into out (the caller holds mu and
// is the writer, with out empty). Once all of it is read, the backend stops spilling.
func (be *backend) unspillLocked() {
	chunk := int(max(64<<10, be.gw.conf().BacklogMemoryBytes/2))
	recs, next, err := be.spill.ReadFrom(be.spillOff, chunk)
	if err != nil {
		be.log.Error("backlog_dir read failed: the spilled writes are lost for this backend", "err", err)
		be.lostWrites += int64(be.spillEntries)
		be.losses++
		be.markOutOfSync(fmt.Sprintf("%d spilled writes could not be read back: %v", be.spillEntries, err))
		be.spillEntries, be.spillBytes, recs = 0, 0, nil
	}
	for _, r := range recs {
		be.out.append(r.Frames)
		for _, k := range r.Kinds {
			be.queue.pushCounted(pending{write: true, kind: k})
		}
		be.spillEntries -= len(r.Kinds)
		be.spillBytes -= len(r.Frames)
		be.outDB = int(r.Seq)
	}
	be.spillOff = next
	if be.spillEntries > 0 {
		return
	}
	if err := be.spill.Rewrite(nil); err != nil {
		be.log.Error("backlog_dir write failed", "err", err)
	}
	be.spillOff = 0
	be.spilling = false // it stays behind until it has answered most of it (caughtUpLocked)
}

// caughtUpLimit is how many unanswered commands a backend that stopped spilling may
// have and count as caught up (no longer behind).
const caughtUpLimit = 1024

// caughtUpLocked clears behind once the spill is read back and the backend has
// answered all but caughtUpLimit of its commands (the caller holds mu). Until then
// reads and replies keep avoiding it: what it was sent may still sit in its socket.
func (be *backend) caughtUpLocked() {
	if !be.spilling && be.queue.len() < caughtUpLimit {
		be.behind.Store(false)
		be.log.Info("backend caught up: its queue is in memory again", "state", be.displayStateLocked())
	}
}

// spillPending reports whether the writer has more to read back from the spill.
func (be *backend) spillPending() bool {
	be.mu.Lock()
	defer be.mu.Unlock()
	return be.spilling
}
