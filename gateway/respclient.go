package gateway

import (
	"errors"
	"strings"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// respCodec is the Redis side of a session: RESP decoding, the client's SELECTed
// database and name, and MULTI/EXEC queuing.
type respCodec struct {
	s          *session
	parser     *resp.CommandParser // nil while the session is dormant
	maxBulkLen int64               // the parser's MaxBulkLen
	name       string
	db         int
	tx         *transaction // made at the first MULTI (or EXEC, DISCARD)
	execFrames []byte       // frames of transactions executed in the current burst
	rewritten  []byte       // frames the gateway rewrote (absolute TTLs) in the current burst
	authed     bool         // the client authenticated, or needs not (auth.go)
	proto      int          // RESP version the client speaks: 2, or 3 after HELLO 3

	watching     *watchState  // WATCHed keys (watch.go); nil: none
	watchProbes  []watchProbe // this burst's PEXPIRETIME reads for WATCH
	unwatchAfter bool         // EXEC or DISCARD ends the WATCH once the burst is submitted
	killSelf     bool         // CLIENT KILL named this client: close after the reply

	sub          *subscriber // subscriptions (pubsub.go); nil: none
	monitor      *output     // this client is a MONITOR (monitor.go)
	monitorLines []byte      // MONITOR lines of the burst being decoded
}

func newRespCodec(s *session) clientCodec {
	r := &respCodec{s: s, authed: !s.gw.auth.required(), proto: 2}
	// A bulk argument that cannot fit in max_request_bytes is refused at its header,
	// with Redis's own error, instead of being read up to the limit.
	r.maxBulkLen = min(s.gw.conf().MaxRequestBytes, resp.MaxBulkLen)
	return r
}

func (r *respCodec) shed() bool {
	r.parser = nil // made again at the next command: 176 bytes less per idle client
	if r.tx != nil && !r.tx.active {
		r.tx = nil
	}
	r.execFrames, r.rewritten, r.watchProbes, r.monitorLines = nil, nil, nil, nil
	return r.sub != nil || r.monitor != nil
}

func (r *respCodec) decode(b *batch, buf []byte, limit int) (pos int, closeAfter bool, perr error) {
	s := r.s
	var now int64 // Unix milliseconds, read once per burst when a TTL is rewritten
	var monitorNow time.Time
	if s.gw.monitors.n.Load() > 0 {
		monitorNow = time.Now()
		defer r.publishMonitorLines()
	}
	for taken := 0; pos < len(buf) && !closeAfter && s.afterSend == nil && taken < limit; taken++ {
		if r.parser == nil {
			r.parser = &resp.CommandParser{MaxBulkLen: r.maxBulkLen}
		}
		cmd, n, err := r.parser.Next(buf[pos:])
		if errors.Is(err, protocols.ErrIncomplete) {
			break
		}
		if err != nil {
			return pos, true, err
		}
		pos += n
		if cmd.Args == nil {
			continue
		}
		s.countCommand(cmd.Class)
		if !r.authed && cmd.Name != "AUTH" && cmd.Name != "HELLO" && cmd.Name != "QUIT" {
			b.addLocal(cmd.Name, resp.AppendError(s.scratch[:0], errNoAuth))
			continue
		}
		if !monitorNow.IsZero() && cmd.Name != "MONITOR" {
			r.monitorLines = appendMonitorLine(r.monitorLines, monitorNow, r.db, s.conn.RemoteAddr().String(), cmd)
		}
		if cmd.Class == protocols.Write && s.gw.conf().AbsoluteTTL {
			if now == 0 {
				now = time.Now().UnixMilli()
			}
			start := len(r.rewritten)
			if out, ok := resp.AbsoluteTTL(r.rewritten, cmd.Name, cmd.Args, now); ok {
				r.rewritten, cmd.Frame = out, out[start:]
			}
		}
		if cmd.Name == "XCLAIM" {
			// Delivery times from the gateway's clock, the same on every backend.
			if now == 0 {
				now = time.Now().UnixMilli()
			}
			start := len(r.rewritten)
			if out, ok := resp.XClaimTime(r.rewritten, cmd.Name, cmd.Args, now); ok {
				r.rewritten, cmd.Frame = out, out[start:]
				var p resp.CommandParser // the effect is built from the rewritten arguments
				if again, _, err := p.Next(cmd.Frame); err == nil {
					cmd.Args = again.Args
				}
			}
		}
		if cmd.Name == "WAIT" && !r.inMulti() {
			w, msg := parseWait(cmd)
			if msg != "" {
				b.addLocal(cmd.Name, resp.AppendError(s.scratch[:0], msg))
				continue
			}
			s.wait = &w
			return pos, false, nil // the burst ends here: WAIT is answered after it
		}
		if r.transact(b, cmd) {
			continue
		}
		if r.sub.count() > 0 && r.proto == 2 && !r.inMulti() {
			// RESP2 subscriber mode: only these commands, PING in its pub/sub form.
			if !allowedSubscribed(cmd.Name) {
				b.addLocal(cmd.Name, resp.AppendError(s.scratch[:0], "ERR Can't execute '"+strings.ToLower(strings.ReplaceAll(cmd.Name, "|", " "))+
					"': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"))
				continue
			}
			if cmd.Name == "PING" && len(cmd.Args) <= 2 {
				b.addLocal(cmd.Name, subscribedPing(s.scratch[:0], cmd.Args))
				continue
			}
		}
		if isSubscribeCommand(cmd.Name) && !r.inMulti() {
			if msg := resp.Reject(cmd.Args); msg != "" {
				b.addLocal(cmd.Name, resp.AppendError(s.scratch[:0], msg))
				continue
			}
			s.pubsub = newPubsubCall(cmd)
			return pos, false, nil // the burst ends here (pubsub.go)
		}
		if resp.IsBlocking(cmd.Name) {
			msg := resp.Reject(cmd.Args)
			var call resp.BlockingCall
			if msg == "" {
				call, msg = resp.ParseBlocking(cmd.Name, cmd.Args)
			}
			if msg != "" {
				b.addLocal(cmd.Name, resp.AppendError(s.scratch[:0], msg))
				continue
			}
			s.blocking = newBlockCall(cmd, r.db, r.stream(), call)
			return pos, false, nil // the burst ends here: answered after it (blocking.go)
		}
		switch cmd.Name {
		case "WATCH":
			r.watch(b, cmd)
			continue
		case "UNWATCH":
			r.unwatch()
			b.addLocal(cmd.Name, resp.AppendOK(s.scratch[:0]))
			continue
		}
		switch cmd.Class {
		case protocols.Local:
			var quit bool
			s.scratch, quit = r.local(s.scratch[:0], cmd)
			b.addLocal(cmd.Name, s.scratch)
			closeAfter = quit || r.killSelf
		case protocols.Unsupported:
			s.scratch = unsupported(s.scratch[:0], cmd.Name)
			b.addLocal(cmd.Name, s.scratch)
		default:
			it := queuedCmd{frame: cmd.Frame, class: cmd.Class, db: r.stream()}
			if cmd.Class == protocols.Write && len(s.gw.all()) > 1 {
				it.effectOf, it.probe = resp.Effect(cmd.Name, cmd.Args, false) // SPOP, XADD *, INCRBYFLOAT...
			}
			if c := s.queue(b, cmd.Name, it); cmd.Class == protocols.Write {
				c.detail = resp.ScriptName(cmd.Name, cmd.Args)
				if c.detail != "" || cmd.Name == "SCRIPT|LOAD" || cmd.Name == "SCRIPT|FLUSH" {
					r.noteScript(cmd)
				}
			}
		}
	}
	return pos, closeAfter, nil
}

// noteScript keeps the scripts clients send, for backends rebuilt later (scripts.go).
func (r *respCodec) noteScript(cmd protocols.Command) {
	if len(r.s.gw.all()) < 2 {
		return
	}
	switch {
	case (cmd.Name == "EVAL" || cmd.Name == "EVAL_RO") && len(cmd.Args) > 1:
		r.s.gw.scripts.note(cmd.Args[1])
	case cmd.Name == "SCRIPT|LOAD" && len(cmd.Args) == 3:
		r.s.gw.scripts.note(cmd.Args[2])
	case cmd.Name == "SCRIPT|FLUSH":
		r.s.gw.scripts.flush()
	}
}

func (r *respCodec) submitted() {
	if r.unwatchAfter {
		r.unwatchAfter = false
		r.unwatch()
	}
	r.execFrames = r.execFrames[:0] // submit copied them to the backends
	r.rewritten = r.rewritten[:0]
	if r.parser != nil {
		r.parser.Reset()
	}
}

func (r *respCodec) replied(b *batch) { r.watchReplied(b) }

func (r *respCodec) need() int {
	if r.parser == nil {
		return 0
	}
	return r.parser.Need()
}

// closed releases what the client held: its WATCH, subscriptions, MONITOR.
func (r *respCodec) closed() {
	r.unwatch()
	r.closeSubscriber()
	if r.monitor != nil {
		r.s.gw.monitors.remove(r.monitor)
	}
}

// publishMonitorLines sends the burst's MONITOR lines.
func (r *respCodec) publishMonitorLines() {
	if len(r.monitorLines) > 0 {
		r.s.gw.monitors.publish(r.monitorLines)
	}
	r.monitorLines = r.monitorLines[:0]
	if cap(r.monitorLines) > keepBufLimit {
		r.monitorLines = nil
	}
}

// startMonitor makes the client a MONITOR once its +OK is sent.
func (r *respCodec) startMonitor() {
	if r.monitor != nil {
		return
	}
	r.s.afterSend = func() {
		if r.s.output != nil {
			r.monitor = r.s.output
			r.s.gw.monitors.add(r.monitor)
			r.s.client.update(func(c *client) { c.monitor = true })
		}
	}
}

// reset answers RESET: the connection's state as it was when it connected.
func (r *respCodec) reset(dst []byte) []byte {
	if r.tx != nil {
		r.tx.reset()
	}
	r.unwatch()
	r.closeSubscriber()
	if r.monitor != nil {
		r.s.gw.monitors.remove(r.monitor)
		r.monitor = nil
	}
	r.db, r.name, r.proto = 0, "", 2
	r.authed = !r.s.gw.auth.required()
	r.s.client.update(func(c *client) { c.db, c.name, c.proto, c.monitor, c.multi = 0, "", 2, false, -1 })
	return resp.AppendSimple(dst, "RESET")
}

// stream is the backend stream state the client's commands need: its database, and
// resp3Bit when it speaks RESP3.
func (r *respCodec) stream() int {
	if r.proto == 3 {
		return r.db | resp3Bit
	}
	return r.db
}

// nullArray is the client's protocol's null array (RESP3 has one null).
func (r *respCodec) nullArray() []byte {
	if r.proto == 3 {
		return []byte("_\r\n")
	}
	return []byte("*-1\r\n")
}

// nullBulk is the client's protocol's null bulk string.
func (r *respCodec) nullBulk() []byte {
	if r.proto == 3 {
		return []byte("_\r\n")
	}
	return []byte("$-1\r\n")
}

func (r *respCodec) appendFatal(dst []byte, perr error) []byte {
	return resp.AppendError(dst, "ERR "+perr.Error())
}
