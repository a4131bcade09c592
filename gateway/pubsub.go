package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// Pub/sub. PUBLISH and SPUBLISH are writes: every backend gets each message once, so
// a subscriber connected directly to any backend (another region's applications)
// receives it once. A client that subscribes through the gateway gets a connection of
// its own to one backend (the reply source: the primary, or the first in-sync backend
// up) and its SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and UNSUBSCRIBE forms go there, so it
// too receives each message once, in Redis's own RESP2 or RESP3 form. A relay
// goroutine copies what that connection receives (confirmations and messages, whole)
// to the client; the session waits for a command's confirmations before it answers
// the client's next command, so replies keep their order. When the last subscription
// ends the connection is closed; when the backend connection fails the client is
// disconnected, as when a Redis server goes away (clients resubscribe on reconnect).
// Each subscribed client costs one backend connection.

// subscriber is a session's subscription connection and what it is subscribed to.
type subscriber struct {
	side      *sideConn
	confirmed chan struct{} // one value per confirmation relayed
	gone      chan struct{} // closed when the relay stops
	channels  map[string]bool
	patterns  map[string]bool
	shards    map[string]bool
}

// count is the number of subscriptions (the client is in subscriber mode while > 0).
func (sub *subscriber) count() int {
	if sub == nil {
		return 0
	}
	return len(sub.channels) + len(sub.patterns) + len(sub.shards)
}

// pubsubCall is a (un)subscribe command the session runs once the commands before it
// are answered.
type pubsubCall struct {
	name  string
	args  [][]byte // owned copies
	frame []byte
}

// isSubscribeCommand reports the six (un)subscribe commands.
func isSubscribeCommand(name string) bool {
	switch name {
	case "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE":
		return true
	}
	return false
}

// allowedSubscribed reports the commands a RESP2 client may send in subscriber mode.
func allowedSubscribed(name string) bool {
	return isSubscribeCommand(name) || name == "PING" || name == "QUIT" || name == "RESET"
}

func newPubsubCall(cmd protocols.Command) *pubsubCall {
	pc := &pubsubCall{name: cmd.Name, frame: bytes.Clone(cmd.Frame)}
	for _, a := range cmd.Args {
		pc.args = append(pc.args, bytes.Clone(a))
	}
	return pc
}

// subscribedPing is PING's reply in RESP2 subscriber mode.
func subscribedPing(dst []byte, args [][]byte) []byte {
	dst = resp.AppendArray(dst, 2)
	dst = resp.AppendBulkString(dst, "pong")
	if len(args) > 1 {
		return resp.AppendBulk(dst, args[1])
	}
	return resp.AppendBulkString(dst, "")
}

// servePubsub runs one (un)subscribe command: it opens the subscription connection
// if needed, sends the command, and waits until its confirmations have been relayed.
// gone reports that the client must be disconnected.
func (s *session) servePubsub(ctx context.Context, pc *pubsubCall) (gone bool) {
	r := s.codec.(*respCodec)
	sub := r.sub
	var set map[string]bool
	subscribe := true
	switch pc.name {
	case "SUBSCRIBE", "UNSUBSCRIBE":
		subscribe = pc.name == "SUBSCRIBE"
	case "PSUBSCRIBE", "PUNSUBSCRIBE":
		subscribe = pc.name == "PSUBSCRIBE"
	case "SSUBSCRIBE", "SUNSUBSCRIBE":
		subscribe = pc.name == "SSUBSCRIBE"
	}
	if sub == nil {
		if !subscribe {
			// Not subscribed: Redis confirms with a nil channel and a count of 0 (or one
			// confirmation per channel named). No connection is needed for that.
			kind := strings.ToLower(pc.name)
			var out []byte
			names := pc.args[1:]
			if len(names) == 0 {
				names = [][]byte{nil}
			}
			for _, n := range names {
				out = r.appendPushHeader(out, 3)
				out = resp.AppendBulkString(out, kind)
				if n == nil {
					out = append(out, r.nullBulk()...)
				} else {
					out = resp.AppendBulk(out, n)
				}
				out = resp.AppendInt(out, 0)
			}
			return s.send(out) != nil
		}
		var err error
		if sub, err = s.openSubscriber(ctx); err != nil {
			s.log.Warn("cannot open a subscription connection", "err", err)
			return s.send(resp.AppendError(nil, "ERR dynode-broadcaster: no backend available for subscriptions: "+err.Error())) != nil
		}
		r.sub = sub
	}
	switch pc.name {
	case "SUBSCRIBE", "UNSUBSCRIBE":
		set = sub.channels
	case "PSUBSCRIBE", "PUNSUBSCRIBE":
		set = sub.patterns
	default:
		set = sub.shards
	}
	expect := len(pc.args) - 1
	if subscribe {
		for _, a := range pc.args[1:] {
			set[string(a)] = true
		}
	} else if expect == 0 {
		expect = max(len(set), 1)
		clear(set)
	} else {
		for _, a := range pc.args[1:] {
			delete(set, string(a))
		}
	}
	if _, err := sub.side.conn.Write(pc.frame); err != nil {
		s.log.Warn("subscription connection failed", "err", err)
		return true
	}
	timeout := time.NewTimer(max(s.gw.conf().BackendTimeout, time.Second))
	defer timeout.Stop()
	for range expect {
		select {
		case <-sub.confirmed:
		case <-sub.gone:
			return true
		case <-timeout.C:
			s.log.Warn("subscription backend did not confirm in time (backend_timeout)", "cmd", pc.name)
			return true
		case <-ctx.Done():
			return true
		}
	}
	s.client.update(func(c *client) { c.sub, c.psub, c.ssub = len(sub.channels), len(sub.patterns), len(sub.shards) })
	if sub.count() == 0 {
		r.closeSubscriber()
	}
	return false
}

// appendPushHeader appends the header of a pub/sub message: an array in RESP2, a
// push in RESP3.
func (r *respCodec) appendPushHeader(dst []byte, n int) []byte {
	if r.proto == 3 {
		return append(strconv.AppendInt(append(dst, '>'), int64(n), 10), '\r', '\n')
	}
	return resp.AppendArray(dst, n)
}

// openSubscriber connects to the reply source and starts the relay.
func (s *session) openSubscriber(ctx context.Context) (*subscriber, error) {
	gw := s.gw
	gw.seq.mu.Lock()
	source, _ := gw.seq.targets()
	gw.seq.mu.Unlock()
	if source < 0 {
		return nil, errors.New("no backend is up")
	}
	side, err := gw.dialSide(ctx, gw.all()[source])
	if err != nil {
		return nil, err
	}
	r := s.codec.(*respCodec)
	if r.proto == 3 {
		if _, err := side.do("HELLO", "3"); err != nil {
			side.close()
			return nil, err
		}
	}
	_ = side.conn.SetDeadline(time.Time{})
	sub := &subscriber{side: side, confirmed: make(chan struct{}, 1024), gone: make(chan struct{}),
		channels: map[string]bool{}, patterns: map[string]bool{}, shards: map[string]bool{}}
	out := s.clientOutput()
	go sub.relay(out, s.conn, s.log)
	return sub, nil
}

// relay copies every complete message from the subscription connection to the
// client, counting confirmations, until the connection fails or is closed. A failure
// while the client is subscribed disconnects the client.
func (sub *subscriber) relay(out *output, client net.Conn, log *slog.Logger) {
	defer close(sub.gone)
	var scan resp.ReplyScanner
	buf := make([]byte, 0, 16<<10)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, cap(buf))...)[:len(buf)]
		}
		n, err := sub.side.conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		// Every complete message of this read goes to the client in one write; the
		// confirmations among them are counted once they are handed over.
		start, confirmations := 0, 0
		for start < len(buf) {
			m, _, serr := scan.Scan(buf[start:])
			if serr != nil {
				if !errors.Is(serr, protocols.ErrIncomplete) {
					err = serr
				}
				break
			}
			if isConfirmation(buf[start : start+m]) {
				confirmations++
			}
			start += m
		}
		if start > 0 {
			if perr := out.push(buf[:start]); perr != nil {
				_ = sub.side.conn.Close()
				return
			}
			for range confirmations {
				select {
				case sub.confirmed <- struct{}{}:
				default:
				}
			}
		}
		buf = buf[:copy(buf, buf[start:])]
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Warn("subscription connection to the backend lost: disconnecting the subscriber", "err", err)
				_ = client.Close()
			}
			return
		}
	}
}

// isConfirmation reports whether a message answers a (un)subscribe command (its first
// element names one) rather than delivering a published message.
func isConfirmation(msg []byte) bool {
	if len(msg) == 0 || msg[0] != '*' && msg[0] != '>' {
		return false
	}
	i := bytes.Index(msg, []byte("\r\n"))
	if i < 0 {
		return false
	}
	first, ok := resp.BulkValue(msg[i+2:]) // the first element, followed by the others
	if !ok {
		return false
	}
	switch strings.ToLower(string(first)) {
	case "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ssubscribe", "sunsubscribe":
		return true
	}
	return false
}

// closeSubscriber closes the subscription connection and waits for its relay.
func (r *respCodec) closeSubscriber() {
	if r.sub == nil {
		return
	}
	r.sub.side.close()
	<-r.sub.gone
	r.sub = nil
	r.s.client.update(func(c *client) { c.sub, c.psub, c.ssub = 0, 0, 0 })
}
