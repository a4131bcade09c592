package gateway

import (
	"context"
	"strconv"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// WAIT numbackends timeout is answered by the gateway from its own acknowledgements,
// as Redis answers it from its replicas' acknowledged offsets: the reply is how many
// backends have acknowledged every command this client sent before the WAIT, once
// that is at least numbackends or timeout milliseconds have passed (0: no limit).
// Each backend's queue counts the entries pushed and answered (ring.pushed, popped);
// a client remembers, per backend, the position of its last command there. A backend
// counts when it is connected, in sync, has answered up to that position, and lost no
// write since the client first wrote to it.

// waitMarks is what a client's WAIT compares with each backend's progress.
type waitMarks struct {
	pos    []int64 // per backend: queue position of the client's last command there
	losses []int64 // per backend: its loss count when the client first wrote to it
}

// note records that the client's latest commands were queued to be (the caller
// holds be.mu).
func (m *waitMarks) note(be *backend, n int) {
	for len(m.pos) < n { // backends added since (discovery.go)
		m.pos, m.losses = append(m.pos, 0), append(m.losses, 0)
	}
	if m.pos[be.index] == 0 {
		m.losses[be.index] = be.losses
	}
	m.pos[be.index] = be.queue.pushed
}

// acknowledged counts the backends that acknowledged everything the client sent.
func (m *waitMarks) acknowledged(backends []*backend) int {
	n := 0
	for _, be := range backends {
		be.mu.Lock()
		ok := be.state == StateUp && !be.outOfSync.Load() && !be.retired.Load()
		if ok && be.index < len(m.pos) && m.pos[be.index] > 0 {
			ok = be.queue.popped >= m.pos[be.index] && be.losses == m.losses[be.index]
		}
		be.mu.Unlock()
		if ok {
			n++
		}
	}
	return n
}

// waitRequest is a WAIT the session answers once the commands before it are.
type waitRequest struct {
	backends int
	timeout  time.Duration // 0: no limit
}

// parseWait reads WAIT's arguments, or returns Redis's error.
func parseWait(cmd protocols.Command) (waitRequest, string) {
	if len(cmd.Args) != 3 {
		return waitRequest{}, "ERR wrong number of arguments for 'wait' command"
	}
	n, err1 := strconv.ParseInt(string(cmd.Args[1]), 10, 64)
	ms, err2 := strconv.ParseInt(string(cmd.Args[2]), 10, 64)
	switch {
	case err1 != nil:
		return waitRequest{}, "ERR value is not an integer or out of range"
	case err2 != nil:
		return waitRequest{}, "ERR timeout is not an integer or out of range"
	case ms < 0:
		return waitRequest{}, "ERR timeout is negative"
	}
	return waitRequest{backends: int(n), timeout: time.Duration(ms) * time.Millisecond}, ""
}

// answerWait blocks the client until w is satisfied (as WAIT blocks a Redis client)
// and appends the reply.
func (s *session) answerWait(ctx context.Context, dst []byte, w waitRequest) []byte {
	var deadline time.Time
	if w.timeout > 0 {
		deadline = time.Now().Add(w.timeout)
	}
	pause := 100 * time.Microsecond
	for {
		n := s.marks.acknowledged(s.gw.all())
		if n >= w.backends || !deadline.IsZero() && !time.Now().Before(deadline) || s.gw.draining.Load() {
			return resp.AppendInt(dst, int64(n))
		}
		d := pause
		if !deadline.IsZero() {
			d = min(d, time.Until(deadline))
		}
		if !sleep(ctx, d) {
			return resp.AppendInt(dst, int64(n))
		}
		pause = min(2*pause, 10*time.Millisecond)
	}
}
