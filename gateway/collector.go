package gateway

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// ReplyPolicy decides which backend reply a client receives for a write (the names
// follow mcrouter's route handles: primary ~ AllInitial, first ~ AllFastest,
// quorum ~ AllMajority, all ~ AllSync).
type ReplyPolicy uint8

const (
	// ReplyPrimary returns the primary's reply (or, if the primary fails, the first
	// reply of another backend).
	ReplyPrimary ReplyPolicy = iota
	// ReplyFirst returns the first reply to arrive.
	ReplyFirst
	// ReplyQuorum returns the reply a majority of the addressed backends agree on;
	// without a majority, the primary's once all have answered.
	ReplyQuorum
	// ReplyAll waits for every addressed backend, then returns the primary's reply.
	ReplyAll
)

func (p ReplyPolicy) String() string {
	return [...]string{"primary", "first", "quorum", "all"}[p]
}

// ParseReplyPolicy maps the write_reply setting to a policy.
func ParseReplyPolicy(s string) (ReplyPolicy, bool) {
	switch s {
	case "primary":
		return ReplyPrimary, true
	case "first":
		return ReplyFirst, true
	case "quorum":
		return ReplyQuorum, true
	case "all":
		return ReplyAll, true
	}
	return 0, false
}

// bigReply is the size from which a reply is kept in a buffer of its own.
const bigReply = 64 << 10

// maxVariants is how many different replies to one command are told apart; more
// than that is still counted as divergence, the extra variants are not kept.
const maxVariants = 4

// variant is one distinct reply to a command, with how many backends sent it.
type variant struct {
	hash    uint64
	off     int32 // reply bytes in batch.arena; negative: batch.big[-off-1]
	n       int32
	count   int16
	from    int16 // the first backend (index) that sent it
	isErr   bool  // an error reply
	missing bool  // a reply meaning "no such key or value" (nil, 0, empty, miss)
	// digest: only hash and size were kept (a large reply of a backend that is not
	// the reply source); a later equal reply may still supply the bytes.
	digest bool
}

// command is the reply state of one command of a batch.
type command struct {
	name      string
	expect    int16 // replies expected from backends that were up when it was queued
	got       int16
	failed    int16
	source    int16 // preferred backend (the primary, or the first one up); -1 none
	srcFailed bool
	srcVar    int8  // variant the source sent; -1 until it replies
	srcQueued bool  // the source was up and the command was queued to it
	decided   bool  // the client reply is chosen
	chosen    int8  // variant index of the client reply; -1 = local reply at off/n
	off, n    int32 // local reply bytes in arena (chosen == -1)
	variants  [maxVariants]variant
	nvariants uint8
	extra     bool // more variants than maxVariants
	// readFailed: a read whose one backend failed before replying; the session
	// retries it once on another backend (session.retryReads).
	readFailed bool
	hidden     bool    // the client does not see this reply (MULTI and QUEUED inside EXEC)
	write      bool    // the command changes data: an error where others applied it is a lost write
	detail     string  // for divergence logs: a script's SHA1 or a function's name
	applied    bool    // write: a backend answered it without an error
	errFrom    []int16 // write: backends that answered an error while none had applied it
	// visible, when set, decides from the chosen reply whether the client sees it
	// (memcached noreply and quiet meta commands).
	visible func(reply []byte) bool
	// trim, when set, is the part of the chosen reply the client sees (one part of a
	// command split toward the backends: its reply joins the next part's).
	trim func(reply []byte) []byte
}

// batchSettings are what every batch of a gateway shares.
type batchSettings struct {
	policy   ReplyPolicy
	onFinish func(b *batch, c *command) // every expected reply arrived (under b.mu)
	// comparable, when set, appends the form in which replies are compared (without
	// fields that differ between healthy servers); ok false: compare the reply as is.
	comparable func(dst, reply []byte) (out []byte, ok bool)
	// isError reports whether a reply is an error reply; missing, whether it means
	// "no such key or value" (how an expired key answers).
	isError, missing func(reply []byte) bool
	// onLostWrite runs (under b.mu) for a backend that answered a write with an
	// error while another backend applied it: that backend missed the write.
	onLostWrite func(backend int, c *command, reply []byte)
	// appendError appends an error reply of the gateway's own (write_reply=all or
	// quorum not met because backends failed).
	appendError func(dst []byte, msg string) []byte
}

// batch holds the commands of one client read burst and collects their replies.
// Backend readers deliver into it concurrently; the session waits on done, then
// writes the chosen replies in order. It is recycled once the session and every
// addressed backend are finished with it.
type batch struct {
	mu        sync.Mutex // guards everything below
	cmds      []command
	arena     []byte   // reply bytes: local replies and one copy of each variant
	big       [][]byte // variants of at least bigReply bytes, each on its own (variant.off = -1 - index)
	undecided int      // commands whose client reply is not chosen yet
	refs      int      // the session + every backend reply still expected
	sealed    bool     // all commands are queued; done may fire
	settings  *batchSettings
	cmpBuf    []byte        // scratch for comparable forms
	done      chan struct{} // one signal when undecided reaches 0 after sealing
	// readFails counts reads whose only backend failed (readable without mu).
	readFails atomic.Int32
	// timeFirst: firstAt is wanted, the time a backend's reply first decided a
	// command of the batch (session.farTrips); set before the batch is submitted.
	timeFirst bool
	firstAt   time.Time
}

var batchPool = sync.Pool{New: func() any { return &batch{done: make(chan struct{}, 1)} }}

// newBatch returns an empty batch owned by the caller (refs = 1).
func newBatch(settings *batchSettings) *batch {
	b := batchPool.Get().(*batch)
	b.cmds = b.cmds[:0]
	b.arena = b.arena[:0]
	b.undecided = 0
	b.refs = 1
	b.sealed = false
	b.settings = settings
	b.readFails.Store(0)
	b.timeFirst, b.firstAt = false, time.Time{}
	return b
}

// add appends a command expecting backend replies; the caller holds b.mu or owns b alone.
func (b *batch) add(name string, source int) int {
	b.cmds = append(b.cmds, command{name: name, source: int16(source), chosen: -1, srcVar: -1})
	b.undecided++
	return len(b.cmds) - 1
}

// addLocal appends a command whose reply is already known.
func (b *batch) addLocal(name string, reply []byte) {
	off := len(b.arena)
	b.arena = append(b.arena, reply...)
	b.cmds = append(b.cmds, command{name: name, decided: true, chosen: -1, off: int32(off), n: int32(len(reply))})
}

// expectFrom records that backend will reply to command i; caller holds b.mu.
func (b *batch) expectFrom(i int) {
	b.cmds[i].expect++
	b.refs++
}

// seal ends queueing: commands no backend was addressed for get errReply, the
// preferred source counts as failed if it was not addressed, and done fires if
// everything is already decided.
func (b *batch) seal(errReply []byte) {
	b.mu.Lock()
	for i := range b.cmds {
		c := &b.cmds[i]
		if c.decided {
			continue
		}
		if c.expect == 0 {
			b.decideLocal(c, errReply)
			continue
		}
		if !c.srcQueued {
			c.srcFailed = true
			b.decide(c, errReply)
		}
	}
	b.sealed = true
	b.signalIfDone()
	b.mu.Unlock()
}

func (b *batch) decideLocal(c *command, reply []byte) {
	c.off, c.n = int32(len(b.arena)), int32(len(reply))
	b.arena = append(b.arena, reply...)
	c.chosen = -1
	c.decided = true
	b.undecided--
}

func (b *batch) signalIfDone() {
	if b.sealed && b.undecided == 0 {
		select {
		case b.done <- struct{}{}:
		default:
		}
	}
}

// deliver records backend's reply (or its failure, reply == nil) to command i.
// noReply is the client reply used when every addressed backend failed. lent: the
// reply's bytes never change (its reader gave the buffer up), so it is kept by
// reference rather than copied.
func (b *batch) deliver(i int, backend int, reply []byte, lent bool, noReply []byte) {
	b.mu.Lock()
	c := &b.cmds[i]
	if reply == nil {
		c.failed++
		if int(c.source) == backend {
			c.srcFailed = true
		}
		if !c.write && c.expect == 1 {
			c.readFailed = true
			b.readFails.Add(1)
		}
	} else {
		c.got++
		if v := b.record(c, backend, reply, lent); int(c.source) == backend {
			c.srcVar = v
		}
		if c.write && b.settings.onLostWrite != nil {
			b.checkApplied(c, backend, reply)
		}
	}
	if !c.decided {
		b.decide(c, noReply)
	}
	finished := c.got+c.failed == c.expect
	if finished && b.settings.onFinish != nil {
		b.settings.onFinish(b, c)
	}
	b.refs--
	release := b.refs == 0
	b.mu.Unlock()
	if release {
		b.recycle()
	}
}

// checkApplied tracks which backends applied a write: once one has, every backend
// that answered it with an error (before or after) missed it.
func (b *batch) checkApplied(c *command, backend int, reply []byte) {
	if b.settings.isError(reply) {
		if c.applied {
			b.settings.onLostWrite(backend, c, reply)
		} else {
			c.errFrom = append(c.errFrom, int16(backend))
		}
		return
	}
	if !c.applied {
		c.applied = true
		for _, e := range c.errFrom {
			b.settings.onLostWrite(int(e), c, nil)
		}
		c.errFrom = nil
	}
}

// record adds a reply to the command's variants and returns its variant index
// (-1 when it is one variant too many to keep).
func (b *batch) record(c *command, backend int, reply []byte, lent bool) int8 {
	var h uint64 // a lone reply has nothing to be compared with
	if c.expect > 1 || c.nvariants > 0 {
		h = b.fingerprint(reply)
	}
	for i := range c.variants[:c.nvariants] {
		if v := &c.variants[i]; v.hash == h {
			v.count++
			if v.digest && !c.decided && b.keepsBytes(c, backend, reply) {
				v.off, v.digest = b.keepBig(reply, lent), false
			}
			return int8(i)
		}
	}
	if int(c.nvariants) == maxVariants {
		c.extra = true
		return -1
	}
	v := variant{hash: h, off: int32(len(b.arena)), n: int32(len(reply)), count: 1, from: int16(backend)}
	switch {
	case c.decided: // once decided, a new variant only needs its hash
	case !b.keepsBytes(c, backend, reply):
		v.digest = true
	case len(reply) >= bigReply:
		v.off = b.keepBig(reply, lent)
	default:
		b.arena = append(b.arena, reply...)
	}
	if st := b.settings; st.isError != nil {
		v.isErr, v.missing = st.isError(reply), st.missing(reply)
	}
	c.variants[c.nvariants] = v
	c.nvariants++
	return int8(c.nvariants - 1)
}

// keepsBytes reports whether a reply's bytes are kept, not only its digest: small
// replies always; a large one (bigReply and up) only where the policy may answer
// the client with it. Under write_reply=primary and all, that is the reply source
// while it is up, so a 64 MiB EVAL reply from three backends is held once, not
// three times; once the source has failed, any backend's.
func (b *batch) keepsBytes(c *command, backend int, reply []byte) bool {
	if len(reply) < bigReply {
		return true
	}
	switch b.settings.policy {
	case ReplyPrimary, ReplyAll:
		return int(c.source) == backend || c.srcFailed || !c.srcQueued
	}
	return true
}

// keepBig copies a large reply into a pooled buffer of its own (appended to the
// arena it would be copied again at every growth), or keeps a lent one as it is, and
// returns its variant.off. The buffer goes back to its pool when the batch is
// recycled, or travels on to the client's output (eachReply). A lent reply's
// capacity says what goes back: a pooled buffer the reply starts (its whole
// capacity), or nothing (capacity = length, left to the collector).
func (b *batch) keepBig(reply []byte, lent bool) int32 {
	if lent {
		b.big = append(b.big, reply)
	} else {
		b.big = append(b.big, append(getBigBuf(len(reply)), reply...))
	}
	return int32(-len(b.big))
}

// fingerprint hashes the comparable form of reply.
func (b *batch) fingerprint(reply []byte) uint64 {
	if b.settings.comparable != nil {
		if cmp, ok := b.settings.comparable(b.cmpBuf[:0], reply); ok {
			b.cmpBuf = cmp[:0]
			return xxhash.Sum64(cmp)
		}
	}
	return xxhash.Sum64(reply)
}

// decide chooses the client reply if the policy allows it yet.
func (b *batch) decide(c *command, noReply []byte) {
	complete := c.got+c.failed == c.expect
	pick := int8(-1)
	switch b.settings.policy {
	case ReplyFirst:
		if c.nvariants > 0 {
			pick = 0
		}
	case ReplyQuorum:
		for v := range c.variants[:c.nvariants] {
			if int(c.variants[v].count) > int(c.expect)/2 {
				pick = int8(v)
			}
		}
	case ReplyPrimary:
		if pick = c.sourceVariant(); pick < 0 && c.srcFailed && c.nvariants > 0 {
			pick = 0 // the primary failed: the first reply of another backend
		}
	}
	if complete && c.failed > 0 && c.got > 0 && c.expect > 1 && b.settings.appendError != nil &&
		(b.settings.policy == ReplyAll || b.settings.policy == ReplyQuorum && pick < 0) {
		// Backends failed before replying (connection lost, or no reply within
		// backend_timeout): the policy's promise cannot be kept; say how far it got.
		b.decideLocal(c, b.errorReply(fmt.Sprintf("dynode-broadcaster: write_reply=%s: %d of %d backends answered",
			b.settings.policy, c.got, c.expect), noReply))
		b.signalIfDone()
		return
	}
	if pick < 0 && complete {
		if pick = c.sourceVariant(); pick < 0 {
			pick = c.mostCommon()
		}
	}
	if pick >= 0 && c.variants[pick].digest {
		// Only the digest of that reply was kept (its source failed after it came):
		// wait for another backend's equal reply, or say what happened.
		if !complete {
			return
		}
		b.decideLocal(c, b.errorReply(fmt.Sprintf("dynode-broadcaster: the reply source failed and the other backends' reply (%d bytes) was not kept", c.variants[pick].n), noReply))
		b.signalIfDone()
		return
	}
	if pick < 0 {
		if complete {
			b.decideLocal(c, noReply)
			b.signalIfDone()
		}
		return
	}
	c.chosen = pick
	c.decided = true
	b.undecided--
	if b.timeFirst && b.firstAt.IsZero() {
		b.firstAt = time.Now()
	}
	b.signalIfDone()
}

// errorReply is the gateway's own error reply msg, or fallback where the protocol
// has none configured.
func (b *batch) errorReply(msg string, fallback []byte) []byte {
	if b.settings.appendError == nil {
		return fallback
	}
	return b.settings.appendError(nil, msg)
}

// sourceVariant is the variant the preferred backend sent, or -1.
func (c *command) sourceVariant() int8 { return c.srcVar }

func (c *command) mostCommon() int8 {
	best := int8(-1)
	for v := range c.variants[:c.nvariants] {
		if best < 0 || c.variants[v].count > c.variants[best].count {
			best = int8(v)
		}
	}
	return best
}

// failedReads reports whether a read's only backend failed before replying.
func (b *batch) failedReads() bool { return b.readFails.Load() > 0 }

// replaceReplyLocked makes reply the client reply of command i (the caller holds mu).
func (b *batch) replaceReplyLocked(i int, reply []byte) {
	c := &b.cmds[i]
	c.off, c.n = int32(len(b.arena)), int32(len(reply))
	b.arena = append(b.arena, reply...)
	c.chosen = -1
}

// appendReplies appends the client replies of every command, in order, to dst.
// Backends may still deliver late replies, so it holds the lock.
func (b *batch) appendReplies(dst []byte) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range b.cmds {
		if r, ok := b.visibleReplyLocked(i); ok {
			dst = append(dst, r...)
		}
	}
	return dst
}

// visibleReplyLocked is what the client sees of command i's reply; ok is false when
// it sees nothing (a hidden command, a quiet or noreply one). The caller holds mu.
func (b *batch) visibleReplyLocked(i int) (reply []byte, ok bool) {
	c := &b.cmds[i]
	if c.hidden {
		return nil, false
	}
	r := b.reply(c)
	if c.trim != nil {
		r = c.trim(r)
	}
	return r, c.visible == nil || c.visible(r)
}

// replyBytes is the size of the client replies (an upper bound: trimmed or invisible
// ones count whole).
func (b *batch) replyBytes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for i := range b.cmds {
		if c := &b.cmds[i]; !c.hidden {
			n += len(b.reply(c))
		}
	}
	return n
}

// eachReply hands the client replies of every command, in order, to send, without
// holding the batch's lock while send runs (it may wait for the client): once every
// command is decided, the arena they live in no longer changes. A large reply's own
// buffer (keepBig) is handed on with it as owned: send must give it back to its pool
// (putBigBuf) once written, and the batch no longer holds it. It is called once per
// batch, after which its replies are not read again.
func (b *batch) eachReply(send func(reply, owned []byte) error) error {
	type visible struct{ reply, owned []byte }
	b.mu.Lock()
	replies := make([]visible, 0, len(b.cmds))
	for i := range b.cmds {
		if r, ok := b.visibleReplyLocked(i); ok {
			v := visible{reply: r}
			if c := &b.cmds[i]; c.chosen >= 0 && c.variants[c.chosen].off < 0 {
				big := &b.big[-c.variants[c.chosen].off-1]
				v.owned, *big = *big, nil
			}
			replies = append(replies, v)
		}
	}
	b.mu.Unlock()
	for i, r := range replies {
		if err := send(r.reply, r.owned); err != nil {
			for _, rest := range replies[i+1:] {
				putBigBuf(rest.owned)
			}
			return err
		}
	}
	return nil
}

// reply returns the client reply bytes of a decided command; caller holds mu.
func (b *batch) reply(c *command) []byte {
	if c.chosen < 0 {
		return b.arena[c.off : c.off+c.n]
	}
	v := c.variants[c.chosen]
	if v.off < 0 {
		return b.big[-v.off-1]
	}
	return b.arena[v.off : v.off+v.n]
}

// DivergenceClass names why backends' replies to a command differed.
type DivergenceClass uint8

const (
	// DivergenceErrorText: every reply was an error, in different words.
	DivergenceErrorText DivergenceClass = iota
	// DivergenceMissing: some backends found no key or value where others did: a key
	// expiring at about that moment (the window is the backends' clock skew and the
	// time between them applying the command), or data that already differed.
	DivergenceMissing
	// DivergenceOther: anything else (a non-deterministic script, data that differed).
	DivergenceOther
	// DivergenceKnownOutOfSync: no more backends replied otherwise than are already
	// known out of sync (they lost writes or restarted empty, and wait for or run a
	// resync): expected, not logged per command nor counted in dynode_divergence_total.
	DivergenceKnownOutOfSync
	numDivergenceClasses
)

// String returns the class's name as used in logs and metrics.
func (d DivergenceClass) String() string {
	return [...]string{"error_text", "missing_vs_present", "other", "known_out_of_sync"}[d]
}

// divergenceClass classifies the variants of a diverged command.
func (c *command) divergenceClass() DivergenceClass {
	allErr, someMissing := true, false
	for _, v := range c.variants[:c.nvariants] {
		allErr = allErr && v.isErr
		someMissing = someMissing || v.missing
	}
	switch {
	case allErr:
		return DivergenceErrorText
	case someMissing:
		return DivergenceMissing
	}
	return DivergenceOther
}

// minorityReplies is how many replies differ from the most common one (every
// reply, when there were more variants than are kept).
func (c *command) minorityReplies() int {
	total, most := 0, 0
	for _, v := range c.variants[:c.nvariants] {
		total += int(v.count)
		most = max(most, int(v.count))
	}
	if c.extra {
		return int(c.got)
	}
	return total - most
}

// diverged reports whether the backends sent different replies.
func (c *command) diverged() bool { return c.nvariants > 1 || c.extra }

// release drops the caller's reference; the last one recycles the batch.
func (b *batch) release() {
	b.mu.Lock()
	b.refs--
	last := b.refs == 0
	b.mu.Unlock()
	if last {
		b.recycle()
	}
}

func (b *batch) recycle() {
	select {
	case <-b.done:
	default:
	}
	if cap(b.arena) > 1<<20 {
		b.arena = nil // do not keep a huge reply's memory in the pool
	}
	if cap(b.cmds) > keptBurstCap {
		b.cmds = nil // a deep burst's (session.burstLimit): the next burst is most likely not
	}
	for _, r := range b.big {
		if r != nil { // not handed on (eachReply)
			putBigBuf(r)
		}
	}
	clear(b.big)
	b.big = b.big[:0]
	if cap(b.cmpBuf) > 64<<10 {
		b.cmpBuf = nil
	}
	b.settings = nil
	batchPool.Put(b)
}
