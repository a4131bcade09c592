package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

const (
	readBufSize  = 4 << 10  // per idle client: small, so 10,000 idle clients stay cheap
	keepBufLimit = 64 << 10 // a larger read buffer is dropped once the burst is handled
)

// session serves one client connection in one goroutine: read a burst, decode every
// complete command in it, answer local ones, hand the rest to the sequencer as one
// batch, wait until each command's reply is chosen, and write all replies in request
// order with one write. Session state (SELECT db, name) lives here.
type session struct {
	gw   *Gateway
	conn net.Conn
	log  *slog.Logger
	id   int64
	name string
	db   int

	idle       deadline
	tx         transaction
	execFrames []byte // frames of transactions executed in the current burst
	parser     resp.CommandParser
	rbuf       []byte
	items      []queuedCmd
	scratch    []byte
	out        []byte
}

func (s *session) serve(ctx context.Context) {
	s.rbuf = make([]byte, 0, readBufSize)
	for {
		if err := s.readMore(); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("client connection closed", "err", err)
			}
			return
		}
		consumed, closeAfter, err := s.handleBurst(ctx)
		if err != nil {
			s.log.Debug("client write failed", "err", err)
			return
		}
		if closeAfter {
			return
		}
		s.rbuf = s.rbuf[:copy(s.rbuf, s.rbuf[consumed:])]
		if cap(s.rbuf) > keepBufLimit && len(s.rbuf) < readBufSize {
			s.rbuf = append(make([]byte, 0, readBufSize), s.rbuf...)
		}
	}
}

// readMore reads at least one byte into rbuf, growing it up to max_request_bytes.
func (s *session) readMore() error {
	if len(s.rbuf) == cap(s.rbuf) {
		if int64(cap(s.rbuf)) >= s.gw.cfg.MaxRequestBytes {
			s.protocolError("Protocol error: request larger than max_request_bytes")
			return errors.New("request too large")
		}
		nb := make([]byte, len(s.rbuf), min(2*cap(s.rbuf), int(s.gw.cfg.MaxRequestBytes)))
		copy(nb, s.rbuf)
		s.rbuf = nb
	}
	s.idle.extend(s.conn, s.gw.cfg.ReadIdleTimeout)
	n, err := s.conn.Read(s.rbuf[len(s.rbuf):cap(s.rbuf)])
	s.rbuf = s.rbuf[:len(s.rbuf)+n]
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("idle for %v (read_idle_timeout)", s.gw.cfg.ReadIdleTimeout)
	}
	return err
}

// handleBurst runs every complete command in rbuf and writes their replies. It
// returns how many bytes it consumed and whether the connection must close.
func (s *session) handleBurst(ctx context.Context) (consumed int, closeAfter bool, err error) {
	gw := s.gw
	b := newBatch(gw.policy, gw.finishFn)
	s.items = s.items[:0]
	var perr error
	pos := 0
	for pos < len(s.rbuf) && !closeAfter {
		cmd, n, err := s.parser.Next(s.rbuf[pos:])
		if errors.Is(err, protocols.ErrIncomplete) {
			break
		}
		if err != nil {
			perr = err
			break
		}
		pos += n
		if cmd.Args == nil {
			continue
		}
		gw.stats.Commands[cmd.Class].Add(1)
		if s.transact(b, cmd) {
			continue
		}
		switch cmd.Class {
		case protocols.Local:
			var quit bool
			s.scratch, quit = s.local(s.scratch[:0], cmd)
			b.addLocal(cmd.Name, s.scratch)
			closeAfter = quit
		case protocols.Unsupported:
			s.scratch = unsupported(s.scratch[:0], cmd.Name)
			b.addLocal(cmd.Name, s.scratch)
		default:
			idx := b.add(cmd.Name, -1)
			s.items = append(s.items, queuedCmd{idx: idx, frame: cmd.Frame, class: cmd.Class, db: s.db})
		}
	}
	if len(s.items) > 0 {
		gw.seq.submit(b, s.items, gw.noBackend)
	} else {
		b.seal(gw.noBackend)
	}
	s.execFrames = s.execFrames[:0] // submit copied them to the backends
	s.parser.Reset()
	defer b.release()
	if len(b.cmds) > 0 {
		select {
		case <-b.done:
		case <-ctx.Done():
			return pos, true, nil
		}
	}
	s.out = s.out[:0]
	if !gw.cfg.DiscardResponses {
		s.out = b.appendReplies(s.out)
	}
	if perr != nil {
		gw.stats.ProtocolErrors.Add(1)
		s.log.Warn("closing client after a protocol error", "err", perr)
		s.out = resp.AppendError(s.out, "ERR "+perr.Error())
		closeAfter = true
	}
	if len(s.out) > 0 {
		if _, err := s.conn.Write(s.out); err != nil {
			return pos, true, err
		}
	}
	if cap(s.out) > keepBufLimit {
		s.out = nil
	}
	return pos, closeAfter, nil
}

// protocolError tells the client why it is disconnected.
func (s *session) protocolError(msg string) {
	s.gw.stats.ProtocolErrors.Add(1)
	s.log.Warn("closing client after a protocol error", "err", msg)
	_, _ = s.conn.Write(resp.AppendError(nil, "ERR "+msg))
}
