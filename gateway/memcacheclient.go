package gateway

import (
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/memcache"
)

// memcacheCodec is the memcached side of a session: text and meta command decoding,
// noreply and quiet replies, and the commands the gateway answers itself (mn, quit,
// stats dynode).
type memcacheCodec struct {
	s      *session
	parser memcache.Parser
}

func (m *memcacheCodec) shed() bool {
	m.parser.Shed()
	return false
}

func (m *memcacheCodec) decode(b *batch, buf []byte, limit int) (pos int, closeAfter bool, perr error) {
	s := m.s
	for taken := 0; pos < len(buf) && !closeAfter && taken < limit; taken++ {
		cmd, n, err := m.parser.Next(buf[pos:])
		if err != nil {
			var ce *memcache.ClientError
			switch {
			case errors.Is(err, protocols.ErrIncomplete):
				return pos, false, nil
			case errors.As(err, &ce):
				// memcached answers and goes on reading the connection; nothing is forwarded.
				pos += ce.N
				s.gw.stats.ClientErrors.Add(1)
				if !ce.Silent {
					s.scratch = append(append(s.scratch[:0], ce.Reply...), "\r\n"...)
					b.addLocal("error", s.scratch)
				}
				continue
			}
			return pos, true, err
		}
		pos += n
		s.countCommand(cmd.Class)
		if cmd.Parts != nil {
			// A gat or gats too long for memcached goes as several; the client sees one
			// reply: every part's values, one END.
			for i, part := range cmd.Parts {
				c := s.queue(b, cmd.Name, queuedCmd{frame: part, class: cmd.Class, kind: uint8(cmd.Reply)})
				if i < len(cmd.Parts)-1 {
					c.trim = memcache.WithoutEnd
				}
			}
			continue
		}
		if cmd.Class != protocols.Local {
			it := queuedCmd{frame: cmd.Frame, class: cmd.Class, kind: uint8(cmd.Reply), effect: cmd.ByEffect}
			if it.effect == nil {
				it.effectOf, it.probe = memcache.Effect(&cmd) // incr, decr, ma: exact bytes
				it.probeKind = uint8(memcache.ReplyMeta)
			}
			if cmd.Class == protocols.Write && len(s.gw.all()) > 1 {
				if ttl, ok := memcache.TTL(&cmd, time.Now()); ok {
					s.gw.noteTTL(ttl) // how long a flushed backend warms (resync.go)
				}
			}
			c := s.queue(b, cmd.Name, it)
			c.visible = memcache.Visibility(&cmd)
			continue
		}
		switch cmd.Name {
		case "quit":
			closeAfter = true
		case "mn":
			// Replies are written in request order, so MN after everything before it is
			// exactly the pipeline barrier meta clients expect.
			b.addLocal(cmd.Name, []byte("MN\r\n"))
		case "stats":
			s.scratch = m.gatewayStats(s.scratch[:0])
			b.addLocal(cmd.Name, s.scratch)
		}
	}
	return pos, closeAfter, nil
}

func (m *memcacheCodec) submitted() { m.parser.Reset() }

func (m *memcacheCodec) replied(*batch) {}

func (m *memcacheCodec) closed() {}

func (m *memcacheCodec) need() int { return m.parser.Need() }

func (m *memcacheCodec) appendFatal(dst []byte, perr error) []byte {
	return append(append(dst, perr.Error()...), "\r\n"...)
}

// gatewayStats answers "stats dynode": the gateway's own counters and every
// backend's state, in memcached's STAT format.
func (m *memcacheCodec) gatewayStats(dst []byte) []byte {
	gw := m.s.gw
	st := &gw.stats
	stat := func(name string, v string) {
		dst = append(dst, "STAT "...)
		dst = append(dst, name...)
		dst = append(dst, ' ')
		dst = append(dst, v...)
		dst = append(dst, "\r\n"...)
	}
	num := func(name string, v int64) { stat(name, strconv.FormatInt(v, 10)) }
	num("pid", int64(os.Getpid()))
	num("uptime", int64(time.Since(gw.started).Seconds()))
	stat("version", "dynode-broadcaster-"+Version)
	num("curr_connections", st.ClientsConnected.Load())
	num("total_connections", st.ClientsAccepted.Load())
	num("rejected_connections", st.ClientsRejected.Load())
	num("client_errors", st.ClientErrors.Load())
	num("protocol_errors", st.ProtocolErrors.Load())
	for c := range st.Commands {
		num("cmd_"+protocols.Class(c).String(), st.Commands[c].Load())
	}
	num("divergences", st.Divergences.Load())
	num("out_of_sync_events", st.OutOfSyncEvents.Load())
	num("backend_errors", st.BackendErrors.Load())
	num("backend_bytes_written", st.BackendBytesOut.Load())
	num("backend_bytes_read", st.BackendBytesIn.Load())
	for i, be := range gw.Backends() {
		p := "backend_" + strconv.Itoa(i) + "_"
		stat(p+"addr", be.Addr)
		stat(p+"state", be.State)
		stat(p+"primary", strconv.FormatBool(be.Primary))
		stat(p+"out_of_sync", strconv.FormatBool(be.OutOfSync))
		num(p+"queued_bytes", be.QueuedBytes)
		num(p+"in_flight", int64(be.InFlight))
		num(p+"lost_writes", be.LostWrites)
		num(p+"connects", be.Connects)
	}
	return append(dst, "END\r\n"...)
}
