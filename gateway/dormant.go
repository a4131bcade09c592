package gateway

import (
	"errors"
	"net"
	"time"
)

// A plain TCP client that sends nothing for client_dormant_after (10 s) has its
// session go dormant: its goroutine ends, the idlePoller watches the connection, and
// a new goroutine takes the session up when the client sends again (or closes).
// Clients idle in connection pools then cost memory for their state only (10,000
// idle clients: no goroutine stacks), while a client that sends more often than that
// never pays for a wake-up (a new goroutine, its stack grown again, two epoll_ctl).

// errDormant ends a session's goroutine, not the session: the idlePoller holds it.
var errDormant = errors.New("session dormant")

// errQuiet is a read's client_dormant_after deadline: nothing arrived for that long.
var errQuiet = errors.New("client quiet")

// dormantConn is a plain TCP client connection whose session may go dormant. Its
// Close takes the connection out of the idlePoller before closing it, whoever closes
// it (CLIENT KILL, the output limit, shutdown), so a dormant session always wakes to
// end.
type dormantConn struct {
	*net.TCPConn
	poller  *idlePoller
	session *session

	// Guarded by poller.mu.
	fd     int32     // the descriptor registered while asleep
	asleep bool      // registered with the poller, its session's goroutine ended
	closed bool      // Close ran: never sleep again
	since  time.Time // asleep: idle since then, for read_idle_timeout
}

// Close wakes a dormant session (its read then fails) and closes the connection.
func (c *dormantConn) Close() error {
	c.poller.forget(c)
	return c.TCPConn.Close()
}

// wrapClient returns conn as a dormantConn when sessions can go dormant (a plain
// TCP connection, protocol redis or memcache, a platform with an idlePoller).
func (g *Gateway) wrapClient(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok || g.idle == nil || g.wire == nil {
		return conn
	}
	return &dormantConn{TCPConn: tc, poller: g.idle}
}

// goDormant hands the session to the idlePoller, which takes it up again in a new
// goroutine; false when it cannot (the caller keeps reading).
func (s *session) goDormant() bool {
	dc, ok := s.conn.(*dormantConn)
	if !ok || s.gw.conf().ClientDormantAfter <= 0 {
		return false // (set to 0 by a reload since the read began)
	}
	s.shed()
	// Counted before it can be woken, so shutdown's wait never sees zero meanwhile;
	// the goroutine resume starts gives it back.
	s.sessions.Add(1)
	s.gw.stats.ClientsDormant.Add(1)
	if !dc.poller.sleep(dc, s.quietSince) {
		s.gw.stats.ClientsDormant.Add(-1)
		s.sessions.Done()
		return false
	}
	return true
}

// shed lets go of what a session needs only while it serves commands: scratch
// buffers, and the output where no other goroutine sends to it.
func (s *session) shed() {
	s.items, s.scratch, s.out = nil, nil, nil
	if !s.codec.shed() && s.output != nil && s.output.idle() {
		s.output = nil // made again at the next reply
	}
}

// resume takes a dormant session up again in a new goroutine. idleTimeout: it was
// idle for read_idle_timeout, and ends.
func (s *session) resume(idleTimeout bool) {
	s.gw.stats.ClientsDormant.Add(-1)
	s.idleTimedOut = idleTimeout
	go func() {
		defer s.sessions.Done()
		s.run()
	}()
}
