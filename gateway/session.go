package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
)

const (
	// readBufSize is a client's read buffer while it sends small commands (10,000
	// idle clients hold none: parkedReader; 1,000 pipelining ones 4 MiB in all). A
	// client that sent a command larger than that but within largeReadBufSize reads
	// largeReadBufSize at once from then on: a 16 KiB value arrives in one read
	// instead of a read, a copy and a second read; it goes back to small reads after
	// smallReadsBack reads that would have fit a small buffer, or once it sends a
	// command beyond largeReadBufSize (read into a buffer of its announced size after
	// a small read: a large first read would only make the copy larger).
	readBufSize      = 4 << 10
	largeReadBufSize = 32 << 10
	smallReadsBack   = 16
	keepBufLimit     = 64 << 10 // a larger read buffer is dropped once the burst is handled

	// A burst takes at most burstCap commands of what the client sent; the rest waits
	// in the read buffer for the next burst. The cap starts at firstBurstCap and
	// follows the replies' size: a burst's replies are held whole until the last is
	// chosen, so bursts of large replies are kept to about a quarter of
	// client_output_limit (one command at least), bursts of small ones grow to
	// maxBurstCap, or, for a burst read ahead (readAvailable), to one command per
	// readAheadPerCmd bytes of its read-ahead buffer, at most deepBurstCap, as far as
	// the gateway's deepBurstLimit allows (burstLimit). Together with the output's
	// backpressure this bounds what one client that pipelines and never reads can
	// make the gateway hold.
	firstBurstCap   = 16
	maxBurstCap     = 1024
	deepBurstCap    = 8192
	readAheadPerCmd = 64
	// keptBurstCap: a burst's command arrays (the batch's, the session's queue) are
	// kept for the next burst up to this capacity, which appending maxBurstCap
	// commands can reach (Go grows a slice by up to 2x); a deep burst's larger ones
	// are let go. Letting go from maxBurstCap up made a client pipelining bursts of
	// 1,024 allocate both arrays at every burst: another client's p99 went from 2 to 4
	// ms beside it.
	keptBurstCap = 2 * maxBurstCap
	// farTrip: a session takes bursts beyond maxBurstCap only once the first reply
	// to farTripsToDeepen bursts in a row, of farTripMinCmds commands or more each,
	// took this long (burstLimit): the backends that answer it are far away, in
	// another region. Within 20 ms, bursts of 1,024 commands give one client 50,000
	// commands a second, and the burst's own work at a near but busy backend stays
	// below it: on this 2-CPU machine, bursts of 1,024 SETs to a local Redis beside
	// a redis-cli --pipe took 5-6 ms to their first reply, once 21 ms.
	farTrip          = 20 * time.Millisecond
	farTripMinCmds   = 64
	farTripsToDeepen = 2
	// deepBurstLimit bounds the commands that bursts take beyond maxBurstCap, for
	// all sessions together. A command costs about 400 bytes of bookkeeping until
	// its burst is answered (its batch entry and its queue entry), and 32 more per
	// backend: 16,384 of them, two clients with bursts of 8,192, take about 7 MiB.
	// Without a bound of their own, 50 clients pipelining 4,000 SETs each through a
	// primary 20 ms away peaked at 200 MiB RSS against 70 MiB with bursts of 1,024
	// (bench/RESULTS.md, tenth session).
	deepBurstLimit = 16384
	// largeReplies: replies gathered for one write are sent once they reach this; a
	// burst with large replies (bigReply) sends those by reference, without a copy.
	largeReplies = 256 << 10
)

// session serves one client connection in one goroutine: read a burst, decode every
// complete command in it (the protocol's clientCodec), answer local ones, hand the
// rest to the sequencer as one batch, wait until each command's reply is chosen, and
// write all replies in request order with one write.
type session struct {
	gw     *Gateway
	conn   net.Conn
	log    *slog.Logger
	id     int64
	codec  clientCodec
	client *client // what other clients see of this one (CLIENT LIST, KILL, UNBLOCK)

	ctx      context.Context // the sessions' context (serve's)
	sessions *sync.WaitGroup // the gateway's running sessions: a dormant one counts

	idle deadline // the next read's deadline: read_idle_timeout, or client_dormant_after
	// quietSince: the client has sent nothing since then (its read deadline fired at
	// least once); zero once it sends.
	quietSince time.Time
	// idleTimedOut: the idlePoller took the dormant session up because it was idle
	// for read_idle_timeout: it ends.
	idleTimedOut bool
	output       *output
	rbuf         []byte
	items        []queuedCmd
	scratch      []byte
	out          []byte

	marks    waitMarks    // protocol=redis: where this client's commands went, for WAIT
	wait     *waitRequest // a WAIT ending the current burst (wait.go)
	blocking *blockCall   // a blocking command ending the current burst (blocking.go)
	pubsub   *pubsubCall  // a (un)subscribe command ending the current burst (pubsub.go)
	again    bool         // rbuf may hold complete commands after a WAIT: decode before reading
	// afterSend, set while decoding, runs once the burst's replies are sent (MONITOR
	// starts after its +OK); the burst ended at the command that set it.
	afterSend func()
	burstCap  int // commands the next burst may take (see firstBurstCap)
	// parked reads a plain TCP client between bursts without holding rbuf (nil on
	// TLS connections and where the platform has no raw reads).
	parked *parkedReader
	// rest reads into rbuf what parked did not (the rest of a command larger than
	// its buffer), made at the first such read.
	rest *sockReader
	// burstClasses counts the burst's commands by class, for the latency histogram.
	burstClasses [numClasses]int32
	// untimed: the burst waited for something other than backends (a blocking
	// command's wake-up, subscriptions, WAIT): its time is not request latency.
	untimed bool
	// lent: large frames of rbuf went to the backends by reference (queue): the
	// buffer is not written again; the next burst reads into another, and rbuf goes
	// back to its pool once every backend has written those frames.
	lent *lentBuf
	// largeReads: the client sent a command larger than readBufSize, the parked
	// reader reads largeReadBufSize at once; smallReads counts the reads since that a
	// small buffer would have held.
	largeReads bool
	smallReads uint8
	// bigCmds: the client sent a command larger than largeReadBufSize, and its
	// reads have filled their buffers since: they are that command's, read into a
	// buffer of its size, not a pipeline for readAvailable.
	bigCmds bool
	// pipelines: the last burst had more than one command.
	pipelines bool
	// readAhead: bytes of the gateway's read-ahead budget that rbuf holds
	// (readAvailable), given back before the next read.
	readAhead int32
	// deepBurst: commands of the gateway's deepBurstLimit that the burst in hand
	// took (burstLimit), given back once it is answered.
	deepBurst int32
	// farTrips counts the session's last bursts of farTripMinCmds commands or more
	// whose first reply took farTrip or longer, in a row (burstLimit).
	farTrips uint8
}

// clientCodec is the protocol-specific half of a session: it decodes commands and
// keeps per-client protocol state (a RESP client's database and transaction).
type clientCodec interface {
	// decode adds the complete commands at the start of buf to b, at most limit of
	// them, those for backends also to s.items. It returns the bytes consumed,
	// whether the connection closes once the replies are written, and a protocol
	// error that closes it.
	decode(b *batch, buf []byte, limit int) (n int, closeAfter bool, perr error)
	// submitted runs once the batch's frames have been copied to the backends.
	submitted()
	// replied runs once every command of the batch is answered.
	replied(b *batch)
	// closed runs when the session ends: release what the client held.
	closed()
	// appendFatal appends the reply to a protocol error that closes the connection.
	appendFatal(dst []byte, perr error) []byte
	// need is, after decode stopped at an incomplete command, how many bytes that
	// command is known to take from its first byte (0: not known yet).
	need() int
	// shed lets go of scratch storage before the session goes dormant (between
	// commands). It reports whether other goroutines send to the client's output
	// (subscriptions, MONITOR), which must then stay.
	shed() (outputShared bool)
}

// serve serves the client until it leaves or the gateway stops; the session may go
// dormant in between (dormant.go), its goroutine then ending and another taking it up.
func (s *session) serve(ctx context.Context, sessions *sync.WaitGroup) {
	s.ctx, s.sessions = ctx, sessions
	s.parked = newParkedReader(s.conn, s.getReadBuf, putReadBuf) // nil where not available
	if s.parked == nil {
		s.rbuf = make([]byte, 0, readBufSize)
	}
	if dc, ok := s.conn.(*dormantConn); ok {
		dc.session = s
	}
	s.burstCap = firstBurstCap
	s.codec = s.gw.wire.newCodec(s)
	s.run()
}

// run serves the client in the calling goroutine until it leaves, or until it goes
// dormant (then nothing of the session is touched here any more: another goroutine
// may already have taken it up).
func (s *session) run() {
	dormant := false
	defer s.recoverPanic()
	defer func() {
		if !dormant {
			s.end()
		}
	}()
	if s.idleTimedOut {
		s.log.Debug("client connection closed", "err", s.idleError())
		return
	}
	for {
		if s.again {
			s.again = false
		} else if err := s.readMore(); err != nil {
			if err == errDormant {
				dormant = true
				return
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("client connection closed", "err", err)
			}
			return
		}
		consumed, closeAfter, err := s.handleBurst(s.ctx)
		if err != nil {
			s.log.Debug("client write failed", "err", err)
			return
		}
		if closeAfter {
			return
		}
		s.keepUnconsumed(consumed)
	}
}

// end releases what the session holds and closes the connection. The replies
// before a QUIT or a protocol error are delivered before the close.
func (s *session) end() {
	s.codec.closed()
	s.releaseReadAhead()
	s.closeOutput()
	if s.parked != nil {
		s.parked.release()
	}
	s.gw.unregister(s.conn)
}

// keepUnconsumed moves what follows the consumed bytes to the front of a read
// buffer: rbuf itself, or a new one when rbuf was lent to the backends, is large, or
// is too small for the large commands a pipelining client sends (restBufSize).
func (s *session) keepUnconsumed(consumed int) {
	rest := s.rbuf[consumed:]
	switch {
	case s.lent != nil || cap(s.rbuf) > keepBufLimit && len(rest) < readBufSize ||
		consumed > 0 && len(rest) > 0 && cap(s.rbuf) < s.restBufSize(consumed, len(rest)):
		old, lent := s.rbuf, s.lent
		s.rbuf, s.lent = nil, nil
		if len(rest) > 0 || s.parked == nil {
			s.rbuf = append(s.newReadBuf(s.restBufSize(consumed, len(rest))), rest...)
		}
		if lent != nil {
			lent.release()
		} else {
			s.dropReadBuf(old)
		}
	case consumed > 0:
		s.rbuf = s.rbuf[:copy(s.rbuf, rest)]
	}
}

// restBufSize is the size of the buffer that takes the rest bytes a burst left
// after the consumed ones, the start of a command announced need bytes long: room
// for it, and, when it is large and followed commands the burst took (the client
// pipelines), for the ones the client sends behind it. A burst then carries several
// large commands (one round trip to the backends for all of them) instead of one: a
// client pipelining 100 KiB SETs 16 deep ran at 0.6x twemproxy's rate with room for
// one (bench/RESULTS.md, eighth session).
func (s *session) restBufSize(consumed, rest int) int {
	need := s.codec.need()
	if consumed == 0 || rest == 0 || need <= readBufSize {
		return max(readBufSize, rest, need)
	}
	return max(rest, need, min(pipelinedCmds*need, pipelinedReadMax))
}

// A large command that follows others in one read is read with room for
// pipelinedCmds like it, up to pipelinedReadMax bytes.
const (
	pipelinedCmds    = 8
	pipelinedReadMax = 1 << 20
)

// dropReadBuf lets go of a read buffer nothing refers to any more: the parked
// reader's own goes back to its pool through it, a grown one to the big buffers'.
// (A frame lent to the backends is never in the parked reader's buffer: lent frames
// are of sharedFrameMin or more, beyond largeReadBufSize.)
func (s *session) dropReadBuf(b []byte) {
	if s.parked != nil && s.parked.holds(b) {
		s.parked.release()
		return
	}
	putBigBuf(b)
}

// The parked reader's buffer is smaller than any frame lent to the backends.
var _ [sharedFrameMin - largeReadBufSize - 1]struct{}

// newReadBuf returns an empty read buffer with room for size bytes (a pooled one
// when large), within max_request_bytes.
func (s *session) newReadBuf(size int) []byte {
	limit := s.requestLimit()
	size = min(size, limit)
	if size < minBigBuf {
		return make([]byte, 0, size)
	}
	b := getBigBuf(size)
	if cap(b) > limit {
		b = b[:0:limit] // no further than the limit (then not pooled again)
	}
	return b
}

// growReadBuf moves what rbuf holds to a new read buffer with room for size bytes
// and lets the old one go: nothing refers to it (the burst before was handled).
func (s *session) growReadBuf(size int) {
	old := s.rbuf
	s.rbuf = append(s.newReadBuf(size), old...)
	s.dropReadBuf(old)
}

// requestLimit is max_request_bytes as a buffer size.
func (s *session) requestLimit() int { return int(min(s.gw.conf().MaxRequestBytes, math.MaxInt)) }

// send writes replies through the session's output, made at the first reply: an
// idle client costs no output (nor the stack it would take in serve).
func (s *session) send(b []byte) error { return s.clientOutput().send(b) }

// clientOutput is the session's output, made at its first use.
func (s *session) clientOutput() *output {
	if s.output == nil {
		s.output = newOutput(s.conn, s.gw.conf().ClientOutputLimit, s.gw.conf().ClientOutputTimeout)
	}
	return s.output
}

// closeOutput delivers what is still pending (within 5 s) and stops the output.
func (s *session) closeOutput() {
	if s.output != nil {
		s.output.close(5 * time.Second)
	}
}

// recoverPanic turns a panic while serving this client into the loss of this client
// only: it is logged with its stack and counted, and the connection is closed by the
// caller; every other client and every backend backlog stay as they are.
func (s *session) recoverPanic() {
	r := recover()
	if r == nil {
		return
	}
	s.gw.stats.SessionPanics.Add(1)
	s.log.Error("client session panicked; closing this client only", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}

// readMore reads at least one byte into rbuf, growing it up to max_request_bytes.
// With nothing left in rbuf on a plain TCP connection, it waits for the client
// without holding a read buffer (parkedReader), and returns errDormant once the
// session went dormant.
func (s *session) readMore() error {
	s.releaseReadAhead()
	if len(s.rbuf) == 0 && s.parked != nil {
		// What it held is handled: a grown buffer goes back to its pool, the parked
		// reader's own is recycled by it.
		if s.lent == nil {
			s.dropReadBuf(s.rbuf)
		}
		s.rbuf = nil
		for {
			if err := s.readyToRead(); err != nil {
				return err
			}
			b, err := s.parked.read()
			if err = s.readError(err); err != errQuiet {
				s.rbuf = b
				s.noteReadSize(len(b))
				if len(b) < cap(b) {
					s.bigCmds = false
				} else if err == nil && !s.bigCmds {
					s.readAvailable()
				}
				return err
			}
			if s.goDormant() {
				return errDormant
			}
		}
	}
	if need := s.codec.need(); len(s.rbuf) == cap(s.rbuf) || need > cap(s.rbuf) {
		if need > readBufSize {
			// A command like this one fits one large read next time; a larger one
			// is read into a buffer of its announced size after a small read.
			s.largeReads, s.smallReads = need <= largeReadBufSize, 0
			s.bigCmds = need > largeReadBufSize
		}
		if cap(s.rbuf) >= s.requestLimit() {
			err := &protocols.ProtocolError{Msg: s.gw.wire.tooLarge}
			s.protocolError(err)
			return err
		}
		// Room for the whole of a large argument whose size is announced (read once
		// into its final place), else twice the room.
		s.growReadBuf(max(2*cap(s.rbuf), need))
	}
	if s.parked != nil {
		s.parked.expect(s.codec.need() - len(s.rbuf))
	}
	for {
		if err := s.readyToRead(); err != nil {
			return err
		}
		if s.rest == nil {
			s.rest = newSockReader(s.conn)
		}
		n, err := s.rest.Read(s.rbuf[len(s.rbuf):cap(s.rbuf)])
		s.rbuf = s.rbuf[:len(s.rbuf)+n]
		if err = s.readError(err); err != errQuiet {
			if err == nil && s.parked != nil && !s.bigCmds && len(s.rbuf) == cap(s.rbuf) && len(s.rbuf) != s.codec.need() {
				s.readAvailable() // full, and not with this command alone
			}
			return err
		}
		// Quiet in the middle of a command: it does not go dormant (the start of
		// the command is in rbuf), it waits on.
	}
}

// readAvailable follows a read that filled its buffer: the client has sent more
// than the buffer holds (it pipelines). What the socket holds beyond that is read
// now, without waiting, into larger buffers up to pipelinedReadMax, so that the
// burst takes every command the client has sent and not one buffer's worth. Each
// burst waits for its replies, one round trip to the backends: one client
// pipelining 1,000 SETs through a backend 1 ms away ran at a quarter of twemproxy's
// rate with a burst per 4 KiB read (bench/RESULTS.md, ninth session). The larger buffers
// come out of the gateway's read-ahead budget (chargeReadAhead).
func (s *session) readAvailable() {
	limit := min(pipelinedReadMax, s.requestLimit())
	for len(s.rbuf) == cap(s.rbuf) && cap(s.rbuf) < limit {
		if cap(s.rbuf) >= largeReadBufSize && !s.pipelines {
			return // a large command may have begun: readMore sizes its buffer
		}
		size := min(max(8*cap(s.rbuf), largeReadBufSize), limit)
		if !s.chargeReadAhead(size) {
			return
		}
		s.growReadBuf(size)
		n := s.parked.readNow(s.rbuf[len(s.rbuf):cap(s.rbuf)])
		if n == 0 {
			return
		}
		s.rbuf = s.rbuf[:len(s.rbuf)+n]
	}
}

// readAheadLimit bounds the bytes of the buffers that sessions grew to read what
// their clients had sent ahead (readAvailable), for all sessions together: 1,000
// clients pipelining 16 SETs of 1 KiB each took 75-105 MiB more RSS without a bound
// (a 32 KiB buffer each during its burst, and all 16 commands in flight at once
// instead of about 4); 8 MiB keeps their RSS where it was (bench/RESULTS.md, ninth
// session) and still lets 8 clients read 1 MiB ahead.
const readAheadLimit = 8 << 20

// chargeReadAhead takes a read-ahead buffer of size bytes out of the gateway's
// budget, in place of the one the session holds: false, and nothing taken, when the
// budget has not that much left.
func (s *session) chargeReadAhead(size int) bool {
	more := int64(size) - int64(s.readAhead)
	if s.gw.readAhead.Add(more) > readAheadLimit {
		s.gw.readAhead.Add(-more)
		return false
	}
	s.readAhead = int32(size)
	return true
}

// releaseReadAhead gives the session's read-ahead back to the budget: its commands
// were handled (the session reads again, or ends).
func (s *session) releaseReadAhead() {
	if s.readAhead != 0 {
		s.gw.readAhead.Add(-int64(s.readAhead))
		s.readAhead = 0
	}
}

// readBufs and largeReadBufs are the parked readers' buffers of sessions: of
// readBufSize, and of largeReadBufSize for clients that send large commands.
var (
	readBufs      = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
	largeReadBufs = sync.Pool{New: func() any { b := make([]byte, largeReadBufSize); return &b }}
)

// getReadBuf is the parked reader's buffer for the client's next read.
func (s *session) getReadBuf() *[]byte {
	if s.largeReads {
		return largeReadBufs.Get().(*[]byte)
	}
	return readBufs.Get().(*[]byte)
}

// putReadBuf gives a parked reader's buffer back to its pool.
func putReadBuf(bp *[]byte) {
	if cap(*bp) == largeReadBufSize {
		largeReadBufs.Put(bp)
	} else {
		readBufs.Put(bp)
	}
}

// noteReadSize takes the size of a parked read: a client reading large buffers goes
// back to small ones after smallReadsBack reads that a small one would have held.
func (s *session) noteReadSize(n int) {
	switch {
	case !s.largeReads:
	case n >= readBufSize:
		s.smallReads = 0
	case s.smallReads < smallReadsBack-1:
		s.smallReads++
	default:
		s.largeReads, s.smallReads = false, 0
	}
}

// noteBurst records what a burst of cmds commands in size bytes says of the client:
// whether it pipelines, and whether it sends commands larger than a small read
// buffer. Such a command, read whole by readAvailable (a full small read, then the
// rest at once), makes the next reads large ones: a 16 KiB SET then arrives in one
// read instead of two and a copy. A burst of none (the incomplete command a burst
// left) says nothing.
func (s *session) noteBurst(cmds, size int) {
	if cmds == 0 {
		return
	}
	s.pipelines = cmds > 1
	if cmds == 1 && size > readBufSize && size <= largeReadBufSize {
		s.largeReads, s.smallReads = true, 0
	}
}

// readTimeout is the next read's deadline: client_dormant_after where the session
// can go dormant and read_idle_timeout is longer (or 0), else read_idle_timeout.
func (s *session) readTimeout() time.Duration {
	cfg := s.gw.conf()
	t := cfg.ReadIdleTimeout
	if _, ok := s.conn.(*dormantConn); ok {
		if d := cfg.ClientDormantAfter; d > 0 && (t <= 0 || t > d) {
			return d
		}
	}
	return t
}

// readyToRead sets the deadline for the next read, or says the gateway is shutting
// down.
func (s *session) readyToRead() error {
	s.idle.extend(s.conn, s.readTimeout())
	// Checked after extend: shutdown sets draining before it moves the read deadline
	// to now (and wakes dormant sessions), so either this sees it or the read sees
	// that deadline.
	if s.gw.draining.Load() {
		return io.EOF
	}
	return nil
}

// readError turns a read's deadline into the reason the client is closed, or into
// errQuiet when the client has been quiet for client_dormant_after but not yet for
// read_idle_timeout.
func (s *session) readError(err error) error {
	if err == nil {
		if !s.quietSince.IsZero() {
			s.quietSince = time.Time{}
		}
		return nil
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if s.gw.draining.Load() {
		return io.EOF
	}
	if s.quietSince.IsZero() {
		s.quietSince = s.idle.set // the read that set the deadline began the quiet
	}
	if t := s.gw.conf().ReadIdleTimeout; t > 0 && time.Since(s.quietSince) >= t-t/16 {
		return s.idleError()
	}
	return errQuiet
}

// idleError is read_idle_timeout's reason to close the client.
func (s *session) idleError() error {
	return fmt.Errorf("idle for %v (read_idle_timeout)", s.gw.conf().ReadIdleTimeout)
}

// handleBurst runs every complete command in rbuf and writes their replies. It
// returns how many bytes it consumed and whether the connection must close.
func (s *session) handleBurst(ctx context.Context) (consumed int, closeAfter bool, err error) {
	gw := s.gw
	b := newBatch(gw.settings.Load())
	limit := s.burstLimit()
	defer s.releaseDeepBurst()
	if cap(s.items) > keptBurstCap && limit <= maxBurstCap {
		s.items = nil // the last burst was a deep one, this one is not
	}
	clear(s.items) // the last burst's frames: its read buffer need not stay reachable
	s.items = s.items[:0]
	start := time.Now()
	pos, closeAfter, perr := s.codec.decode(b, s.rbuf, limit)
	if n := len(b.cmds); n > 0 {
		s.client.touch(b.cmds[n-1].name, start)
	}
	s.noteBurst(len(b.cmds), pos)
	defer s.timeBurst(start)
	var submitted time.Time
	if len(s.items) >= farTripMinCmds {
		b.timeFirst, submitted = true, time.Now()
	}
	if len(s.items) > 0 {
		marks := &s.marks
		if gw.wire != &respWire {
			marks = nil // WAIT is Redis's
		}
		gw.seq.submit(b, s.items, gw.noBackend, marks)
	} else {
		b.seal(gw.noBackend)
	}
	s.codec.submitted()
	defer b.release()
	if len(b.cmds) > 0 {
		select {
		case <-b.done:
		case <-ctx.Done():
			return pos, true, nil
		}
		if b.timeFirst {
			if b.firstAt.Sub(submitted) < farTrip {
				s.farTrips = 0
			} else if s.farTrips < farTripsToDeepen {
				s.farTrips++
			}
		}
	}
	if b.failedReads() {
		s.retryReads(ctx, b)
	}
	s.codec.replied(b)
	s.out = s.out[:0]
	if !gw.conf().DiscardResponses {
		if n := b.replyBytes(); n >= bigReply {
			if err := s.sendLargeReplies(b); err != nil {
				return pos, true, err
			}
			s.adaptBurst(n, len(b.cmds))
		} else {
			s.out = b.appendReplies(s.out)
			s.adaptBurst(len(s.out), len(b.cmds))
		}
	}
	if bc := s.blocking; bc != nil {
		// The burst ended at a blocking command: the replies before it go out now, as
		// Redis sends them before the client blocks.
		s.blocking, s.untimed = nil, true
		if len(s.out) > 0 {
			if err := s.send(s.out); err != nil {
				return pos, true, err
			}
			s.out = s.out[:0]
		}
		var gone bool
		if s.out, gone = s.serveBlocking(ctx, s.out, bc); gone {
			return pos, true, nil
		}
		if gw.conf().DiscardResponses {
			s.out = s.out[:0] // write-and-forget: no reply, this one included
		}
		s.again = pos < len(s.rbuf) && perr == nil && !closeAfter
	}
	if pc := s.pubsub; pc != nil {
		s.pubsub, s.untimed = nil, true
		if len(s.out) > 0 {
			if err := s.send(s.out); err != nil {
				return pos, true, err
			}
			s.out = s.out[:0]
		}
		if s.servePubsub(ctx, pc) {
			return pos, true, nil
		}
		s.again = pos < len(s.rbuf) && perr == nil && !closeAfter
	}
	if s.wait != nil {
		// The burst ended at a WAIT: answer it now that everything before it is, then
		// decode what follows it.
		s.out = s.answerWait(ctx, s.out, *s.wait)
		s.wait, s.untimed = nil, true
		s.again = pos < len(s.rbuf) && perr == nil && !closeAfter
	}
	if perr != nil {
		gw.stats.ProtocolErrors.Add(1)
		s.log.Warn("closing client after a protocol error", "err", perr)
		s.out = s.codec.appendFatal(s.out, perr)
		closeAfter = true
	}
	if len(s.out) > 0 {
		if err := s.send(s.out); err != nil {
			return pos, true, err
		}
	}
	if f := s.afterSend; f != nil {
		s.afterSend = nil
		f()
		s.again = pos < len(s.rbuf) && perr == nil && !closeAfter
	}
	if cap(s.out) > keepBufLimit {
		putBigBuf(s.out) // sent: send copied what the socket did not take
		s.out = nil
	}
	if pos > 0 && pos < len(s.rbuf) && perr == nil && !closeAfter {
		// The burst stopped before the end of what was read (its command cap, or a
		// command that ends bursts): decode the rest before reading more.
		s.again = true
	}
	return pos, closeAfter, nil
}

// sendLargeReplies sends a burst's replies when they are large: small ones are
// gathered in s.out and sent every largeReplies bytes, large ones go out from the
// buffer the batch kept them in, which the output owns from then on (no copy of a
// 64 MiB GET's reply). send blocks while the client is over client_output_limit.
// What s.out still holds at the end is sent with the burst's other output.
func (s *session) sendLargeReplies(b *batch) error {
	return b.eachReply(func(r, owned []byte) error {
		if owned == nil {
			if len(s.out)+len(r) > cap(s.out) && cap(s.out) < largeReplies {
				// A pooled buffer (back at the burst's end) holds the replies
				// gathered between writes: a client reading many mid-sized replies,
				// 16 KiB GETs pipelined 16 deep, had this buffer grown afresh at
				// every burst (the runtime zeroing it, the collector and the
				// scavenger freeing it).
				s.out = append(getBigBuf(largeReplies+bigReply), s.out...)
			}
			s.out = append(s.out, r...)
			if len(s.out) < largeReplies {
				return nil
			}
			err := s.send(s.out)
			s.out = s.out[:0]
			return err
		}
		if len(s.out) > 0 {
			if err := s.send(s.out); err != nil {
				putBigBuf(owned)
				return err
			}
			s.out = s.out[:0]
		}
		return s.clientOutput().sendOwned(r, owned)
	})
}

// countCommand counts a decoded command of class c, for the gateway and the burst.
func (s *session) countCommand(c protocols.Class) {
	s.gw.stats.Commands[c].Add(1)
	s.burstClasses[c]++
}

// timeBurst adds the burst's commands to the latency histogram (unless it waited
// for a client-side event) and starts the next burst's counts.
func (s *session) timeBurst(start time.Time) {
	if !s.untimed && s.burstClasses != [numClasses]int32{} {
		s.gw.stats.Latency.observe(time.Since(start), &s.burstClasses)
	}
	s.burstClasses, s.untimed = [numClasses]int32{}, false
}

// adaptBurst sets the next burst's command cap from this burst's reply bytes.
func (s *session) adaptBurst(replyBytes, cmds int) {
	if cmds == 0 {
		return
	}
	avg := max(replyBytes/cmds, 1)
	s.burstCap = min(max(int(s.gw.conf().ClientOutputLimit/4)/avg, 1), deepBurstCap)
}

// burstLimit is how many commands the burst about to be decoded may take: burstCap,
// and beyond maxBurstCap only when the session's backends are far away (farTrip), as
// far as its read-ahead buffer allows (one command per readAheadPerCmd bytes of it)
// and the gateway's deepBurstLimit has room left; the burst gives that room back
// once it is answered (releaseDeepBurst). A client pipelining thousands of commands
// through a primary 20 ms away needs such bursts: with bursts of 1,024 commands, one
// per round trip, redis-cli --pipe ran at 22,000 SETs/s (bench/RESULTS.md, tenth
// session). With the primary near, 1,024 commands a round trip are more than a
// client sends, and a deeper burst only queues other clients' commands behind more
// of one client's at the backends: with bursts of up to 8,192 from a redis-cli
// --pipe to a local Redis, another client's p99 went from 2 to 8 ms.
func (s *session) burstLimit() int {
	if s.farTrips < farTripsToDeepen {
		return min(s.burstCap, maxBurstCap)
	}
	limit := min(s.burstCap, max(maxBurstCap, int(s.readAhead)/readAheadPerCmd))
	extra := int64(limit - maxBurstCap)
	if extra <= 0 {
		return limit
	}
	if over := s.gw.deepBurst.Add(extra) - deepBurstLimit; over > 0 {
		over = min(over, extra) // what others took meanwhile is theirs to give back
		s.gw.deepBurst.Add(-over)
		extra -= over
	}
	s.deepBurst = int32(extra)
	return maxBurstCap + int(extra)
}

// releaseDeepBurst gives back the room the session's burst took in deepBurstLimit.
func (s *session) releaseDeepBurst() {
	if s.deepBurst != 0 {
		s.gw.deepBurst.Add(-int64(s.deepBurst))
		s.deepBurst = 0
	}
}

// retryReads sends again, once, the reads whose backend failed before replying
// (its connection was lost, or it gave no reply within backend_timeout). They go
// through the sequencer like any read, so they land behind the client's earlier
// writes on the backend picked now, and their replies take the failed ones' place.
// Reads inside a transaction are not retried: a block is answered whole.
func (s *session) retryReads(ctx context.Context, b *batch) {
	gw := s.gw
	var items []queuedCmd
	var orig []int
	b.mu.Lock()
	for i := 0; i < len(s.items); i++ {
		it := s.items[i]
		if it.block > 0 {
			i += it.block - 1
			continue
		}
		if it.class == protocols.Read && b.cmds[it.idx].readFailed {
			orig = append(orig, it.idx)
			items = append(items, it)
		}
	}
	b.mu.Unlock()
	if len(items) == 0 {
		return
	}
	r := newBatch(gw.settings.Load())
	defer r.release()
	for i := range items {
		items[i].idx = r.add(b.cmds[orig[i]].name, -1)
	}
	gw.seq.submit(r, items, gw.noBackend, nil)
	select {
	case <-r.done:
	case <-ctx.Done():
		return
	}
	r.mu.Lock()
	b.mu.Lock()
	for i, idx := range orig {
		b.replaceReplyLocked(idx, r.reply(&r.cmds[i]))
	}
	b.mu.Unlock()
	r.mu.Unlock()
	gw.stats.ReadsRetried.Add(int64(len(items)))
}

// queue adds a command for backends to the batch and to s.items.
// A large frame read in place goes to the backends by reference (it.owner), and
// rbuf is lent to them from then on.
func (s *session) queue(b *batch, name string, it queuedCmd) *command {
	if len(it.frame) >= sharedFrameMin && within(s.rbuf, it.frame) {
		if s.lent == nil {
			s.lent = &lentBuf{buf: s.rbuf}
			s.lent.acquire() // the session's own, released once the burst is done
		}
		it.owner = s.lent
	}
	it.idx = b.add(name, -1)
	s.items = append(s.items, it)
	c := &b.cmds[it.idx]
	c.write = it.class != protocols.Read
	return c
}

// within reports whether sub is a slice of buf's array at or after buf's start (it
// then ends where buf's capacity does, or before).
func within(buf, sub []byte) bool {
	at := cap(buf) - cap(sub)
	return len(sub) > 0 && at >= 0 && at < len(buf) && &buf[at] == &sub[0]
}

// protocolError tells the client why it is disconnected.
func (s *session) protocolError(perr error) {
	s.gw.stats.ProtocolErrors.Add(1)
	s.log.Warn("closing client after a protocol error", "err", perr)
	_ = s.send(s.codec.appendFatal(nil, perr))
}
