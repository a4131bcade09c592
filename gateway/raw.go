package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols/raw"
)

// rawSession serves one client in protocol=raw: the original broadcaster's generic
// mode. The client gets its own connection to every backend (a rawLink each); every
// chunk it sends is queued, shared and in order, to every link; backend bytes come
// back per raw_reply.
//
//	client ──read chunk──> link 1 queue ──writer──> backend 1 ──reader──┐
//	                   └─> link N queue ──writer──> backend N ──reader──┴─> client (raw_reply)
//
// The session goroutine reads the client; each link has a run goroutine (dial,
// write, reconnect) and, while connected, a reader goroutine. stop ends them all.
type rawSession struct {
	gw    *Gateway
	conn  net.Conn
	log   *slog.Logger
	links []*rawLink

	outMu sync.Mutex // serializes writes to the client: each backend read stays whole

	done      chan struct{} // closed by stop
	stopOnce  sync.Once
	eofCh     chan struct{} // closed when the client half-closes its side
	clientEOF atomic.Bool   // the same, for readers
}

func (g *Gateway) newRawSession(conn net.Conn, log *slog.Logger) *rawSession {
	s := &rawSession{gw: g, conn: conn, log: log, done: make(chan struct{}), eofCh: make(chan struct{})}
	servers, primary := g.servers, g.conf().PrimaryAddr()
	if p := g.rawServers.Load(); p != nil {
		servers = *p // from discovery: the list when the client connected
	}
	for i, addr := range servers {
		isPrimary := addr == primary || primary == "" && i == 0
		l := &rawLink{s: s, addr: addr, primary: isPrimary, log: log.With("backend", addr), ready: make(chan struct{})}
		l.cond.L = &l.mu
		s.links = append(s.links, l)
	}
	return s
}

func (s *rawSession) serve(ctx context.Context) {
	var wg sync.WaitGroup
	for _, l := range s.links {
		wg.Go(l.run)
	}
	stopWatch := context.AfterFunc(ctx, s.stop)
	defer stopWatch()
	// Connect every backend (or fail to, within connect_timeout) before reading the
	// client, so its first bytes reach every backend that is up.
	for _, l := range s.links {
		select {
		case <-l.ready:
		case <-s.done:
		}
	}
	var idle deadline
	read := s.reader()
	for {
		idle.extend(s.conn, s.gw.conf().ReadIdleTimeout)
		c, err := read()
		if c != nil {
			c.Hold(len(s.links))
			s.gw.stats.RawBytesIn.Add(int64(c.Len()))
			for _, l := range s.links {
				l.enqueue(c)
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			// Half-close: every backend gets FIN once its queue is written; the client
			// is closed when every backend has finished answering.
			s.clientEOF.Store(true)
			close(s.eofCh)
			for _, l := range s.links {
				l.finish()
			}
			s.waitLinks(&wg)
		} else if !errors.Is(err, net.ErrClosed) {
			s.log.Debug("raw client closed", "err", err)
		}
		s.stop()
		wg.Wait()
		s.reportMissed()
		return
	}
}

// reader returns the client's read: one chunk per read (nil when it got nothing),
// with a ChunkSize buffer taken from the pool only once the socket has bytes
// (parkedReader), so an idle raw client holds none.
func (s *rawSession) reader() func() (*raw.Chunk, error) {
	if parked := newParkedReader(s.conn, raw.ReadBuffer, raw.PutReadBuffer); parked != nil {
		return func() (*raw.Chunk, error) {
			b, err := parked.read()
			if len(b) == 0 {
				return nil, err
			}
			return raw.NewChunk(parked.take(), len(b)), err
		}
	}
	return func() (*raw.Chunk, error) {
		bp := raw.ReadBuffer()
		n, err := s.conn.Read(*bp)
		if n == 0 {
			raw.PutReadBuffer(bp)
			return nil, err
		}
		return raw.NewChunk(bp, n), err
	}
}

// waitLinks waits for every link to finish, or for stop.
func (s *rawSession) waitLinks(wg *sync.WaitGroup) {
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-s.done:
	}
}

// stop closes the client and every backend connection of this session.
func (s *rawSession) stop() {
	s.stopOnce.Do(func() {
		close(s.done)
		_ = s.conn.Close()
		for _, l := range s.links {
			l.mu.Lock()
			l.stopped = true
			if l.conn != nil {
				_ = l.conn.Close()
			}
			l.cond.Broadcast()
			l.mu.Unlock()
		}
	})
}

// writeClient forwards one backend read to the client, whole.
func (s *rawSession) writeClient(b []byte) {
	s.outMu.Lock()
	_, err := s.conn.Write(b)
	s.outMu.Unlock()
	if err != nil {
		s.stop()
	}
}

func (s *rawSession) reportMissed() {
	for _, l := range s.links {
		l.mu.Lock()
		missed := l.missed
		l.mu.Unlock()
		if missed > 0 {
			l.log.Warn("raw backend missed part of this client's stream", "missed_bytes", missed)
		}
	}
}

// rawLink is one client's connection to one backend.
type rawLink struct {
	s       *rawSession
	addr    string
	primary bool
	log     *slog.Logger
	ready   chan struct{} // closed after the first connection attempt

	mu      sync.Mutex // guards everything below; cond waits on it
	cond    sync.Cond
	conn    net.Conn     // nil while down
	q       []*raw.Chunk // chunks to write, in order
	qbytes  int64        // the memory q holds (Chunk.Size): what raw_backend_buffer_bytes bounds
	missed  int64        // bytes this backend did not get since it was last reported
	eof     bool         // the client half-closed: send FIN after the queue
	stopped bool
}

// rawCutGrace is how long a backend's buffer may stay full before
// raw_slow_backend=cut drops it: long enough that a burst a healthy backend drains
// at once never cuts it.
const rawCutGrace = time.Second

// enqueue queues a chunk (the caller holds one reference for this link). While the
// backend is down the chunk is dropped and counted. When the queue is full,
// raw_slow_backend=slow_client waits for room; cut waits at most rawCutGrace, then
// drops the connection.
func (l *rawLink) enqueue(c *raw.Chunk) {
	cfg := l.s.gw.conf()
	cut := cfg.RawSlowBackend == "cut"
	var waitStart time.Time
	l.mu.Lock()
	for l.conn != nil && !l.stopped && l.qbytes > 0 && l.qbytes+int64(c.Size()) > cfg.RawBackendBufferBytes {
		if cut {
			if waitStart.IsZero() {
				waitStart = time.Now()
				wake := time.AfterFunc(rawCutGrace, func() {
					l.mu.Lock()
					l.cond.Broadcast()
					l.mu.Unlock()
				})
				defer wake.Stop()
			} else if time.Since(waitStart) >= rawCutGrace {
				l.s.gw.stats.RawBackendsCut.Add(1)
				l.log.Warn("raw backend too slow: connection cut (raw_slow_backend=cut)", "queued_bytes", l.qbytes)
				l.dropLocked(l.conn)
				break
			}
		}
		l.cond.Wait()
	}
	if l.conn == nil || l.stopped {
		l.missed += int64(c.Len())
		l.mu.Unlock()
		l.s.gw.stats.RawMissedBytes.Add(int64(c.Len()))
		c.Release()
		return
	}
	l.q = append(l.q, c)
	l.qbytes += int64(c.Size())
	l.cond.Broadcast()
	l.mu.Unlock()
}

// finish asks the link to send FIN once its queue is written.
func (l *rawLink) finish() {
	l.mu.Lock()
	l.eof = true
	l.cond.Broadcast()
	l.mu.Unlock()
}

// dropLocked marks conn down: queued chunks are dropped and counted. Caller holds mu.
func (l *rawLink) dropLocked(conn net.Conn) {
	if l.conn != conn || conn == nil {
		return
	}
	l.conn = nil
	for _, c := range l.q {
		l.missed += int64(c.Len())
		l.s.gw.stats.RawMissedBytes.Add(int64(c.Len()))
		c.Release()
	}
	l.q, l.qbytes = l.q[:0], 0
	_ = conn.Close()
	l.cond.Broadcast()
}

func (l *rawLink) drop(conn net.Conn) {
	l.mu.Lock()
	l.dropLocked(conn)
	l.mu.Unlock()
}

// run connects, writes, and reconnects after failures until the session stops or
// the client's stream is finished.
func (l *rawLink) run() {
	cfg := l.s.gw.conf()
	failures := 0
	var readyOnce sync.Once
	defer readyOnce.Do(func() { close(l.ready) })
	for {
		l.mu.Lock()
		over := l.stopped || l.eof && l.conn == nil // nothing left to send
		l.mu.Unlock()
		if over {
			return
		}
		conn, err := l.s.gw.dialBackend(context.Background(), l.addr)
		if err != nil {
			readyOnce.Do(func() { close(l.ready) })
			failures++
			if failures == 1 {
				l.log.Error("raw backend unreachable; this client's bytes are not delivered to it until it is back", "err", err, "retry_in", cfg.ReconnectDelayTimeout)
			}
			if !l.pause(cfg.ReconnectDelayTimeout) {
				return
			}
			continue
		}
		l.mu.Lock()
		if l.stopped {
			l.mu.Unlock()
			_ = conn.Close()
			return
		}
		l.conn = conn
		if l.missed > 0 {
			l.log.Warn("raw backend connected; it missed bytes of this client's stream", "missed_bytes", l.missed)
			l.missed = 0
		}
		l.mu.Unlock()
		readyOnce.Do(func() { close(l.ready) })
		failures = 0
		backendEOF := make(chan bool, 1)
		go l.read(conn, backendEOF)
		finished := l.write(conn)
		if finished {
			<-backendEOF
			l.drop(conn)
			return
		}
		l.drop(conn)
		if eof := <-backendEOF; eof && l.primary && l.s.gw.rawReply == raw.ReplyPrimary {
			l.log.Debug("primary closed the connection: closing the raw client")
			l.s.stop()
			return
		}
		if !l.pause(cfg.ReconnectDelayTimeout) {
			return
		}
	}
}

// pause waits d, or less if the client half-closes (no reconnection needed then);
// false means the session stopped.
func (l *rawLink) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.s.eofCh:
		return true
	case <-l.s.done:
		return false
	}
}

// write sends queued chunks until the connection fails (false) or the client's
// stream is complete and FIN is sent (true). Everything queued goes out in one
// writev: a link that fell behind catches up in fewer, larger system calls.
func (l *rawLink) write(conn net.Conn) (finished bool) {
	var taken []*raw.Chunk
	var vec net.Buffers
	wr := newSockWriter(conn)
	for {
		l.mu.Lock()
		for len(l.q) == 0 && !l.eof && !l.stopped && l.conn == conn {
			l.cond.Wait()
		}
		if l.stopped || l.conn != conn {
			l.mu.Unlock()
			return false
		}
		if len(l.q) == 0 { // eof and everything written
			l.mu.Unlock()
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return true
		}
		taken = append(taken[:0], l.q...)
		clear(l.q)
		l.q = l.q[:0]
		l.qbytes = 0
		l.cond.Broadcast()
		l.mu.Unlock()
		vec = vec[:0]
		size := int64(0)
		for _, c := range taken {
			vec = append(vec, c.Bytes())
			size += int64(c.Len())
		}
		written, err := wr.WriteBuffers(vec) // consumes its own copy of the slice header only
		l.s.gw.stats.RawBytesOut.Add(written)
		if err != nil {
			l.mu.Lock()
			l.missed += size - written
			l.mu.Unlock()
			l.s.gw.stats.RawMissedBytes.Add(size - written)
		}
		for _, c := range taken {
			c.Release()
		}
		clear(taken)
		if err != nil {
			l.log.Error("raw backend connection lost", "err", err)
			return false
		}
	}
}

// rawReplyRead is the largest read of a backend's bytes for the client (written to it
// whole).
const rawReplyRead = 32 << 10

// rawReplyBufs are the links' read buffers (rawReplyRead bytes), held by a link only
// while a read has bytes (parkedReader): an idle raw client's links hold none.
var rawReplyBufs = sync.Pool{New: func() any { b := make([]byte, rawReplyRead); return &b }}

func getReplyBuf() *[]byte   { return rawReplyBufs.Get().(*[]byte) }
func putReplyBuf(bp *[]byte) { rawReplyBufs.Put(bp) }

// linkReader returns conn's read (its bytes valid until the next call) and what
// gives its buffer back once reading ends.
func linkReader(conn net.Conn) (read func() ([]byte, error), done func()) {
	if parked := newParkedReader(conn, getReplyBuf, putReplyBuf); parked != nil {
		return parked.read, parked.release
	}
	buf := make([]byte, rawReplyRead)
	return func() ([]byte, error) {
		n, err := conn.Read(buf)
		return buf[:n], err
	}, func() {}
}

// read forwards or drops what the backend sends, per raw_reply, until the
// connection ends; it reports on eof whether the backend closed it (EOF).
func (l *rawLink) read(conn net.Conn, eof chan<- bool) {
	forward := l.s.gw.rawReply == raw.ReplyAll || l.s.gw.rawReply == raw.ReplyPrimary && l.primary
	read, done := linkReader(conn)
	defer done()
	var idle deadline
	for {
		if l.s.clientEOF.Load() {
			idle.extend(conn, l.s.gw.conf().ReadIdleTimeout) // bound the wait for a backend that never closes
		}
		b, err := read()
		if len(b) > 0 && forward {
			l.s.writeClient(b)
		}
		if err != nil {
			gotEOF := errors.Is(err, io.EOF)
			if !gotEOF && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
				l.log.Error("raw backend read failed", "err", err)
			}
			if !l.s.clientEOF.Load() {
				l.drop(conn) // a drop mid-stream: the writer reconnects
			}
			eof <- gotEOF
			return
		}
	}
}
