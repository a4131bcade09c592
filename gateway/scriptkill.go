package gateway

import (
	"context"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// A script or function that runs long (EVAL "while true do end" 0) keeps every
// backend busy, and with it their pipelines: the commands queued behind it wait. Two
// things keep that from turning into resets and lost writes:
//
//   - SCRIPT KILL and FUNCTION KILL from any client are sent to every connected
//     backend on a side connection of their own (not behind the busy pipeline; both
//     commands are allowed while a script runs), and the client gets the primary's
//     reply. The killed script's EVAL then gets the same error from every backend,
//     wrote nothing, and writes flow again: nobody is out of sync.
//   - A backend whose pipeline has made no progress for backend_timeout is asked on a
//     side connection whether it is alive but busy (PING answers -BUSY): then it is
//     not reset, and is asked again after each backend_timeout. Redis answers -BUSY
//     only after busy-reply-threshold (lua-time-limit, 5 s by default); before that it
//     does not answer the side connection either, and a backend_timeout shorter than
//     that resets it (its unanswered writes are lost: out of sync, resync). A script
//     that has written cannot be killed (-UNKILLABLE): the backends stay busy until it
//     ends or an operator runs SHUTDOWN NOSAVE on them.

// killScripts sends SCRIPT KILL or FUNCTION KILL (name) to every connected backend
// and returns the primary's reply (the first connected backend's when the primary
// is not).
func (g *Gateway) killScripts(dst []byte, name string) []byte {
	cmd := resp.AppendCommand(nil, [][]byte{[]byte(strings.Split(name, "|")[0]), []byte("KILL")})
	replies := make([][]byte, len(g.all()))
	var wg sync.WaitGroup
	for i, be := range g.all() {
		if !be.up.Load() || be.retired.Load() {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*g.conf().ConnectTimeout)
			defer cancel()
			c, err := g.dialSideBusy(ctx, be)
			if err != nil {
				be.log.Warn(name+" could not reach the backend", "err", err)
				return
			}
			defer c.close()
			reply, _, buf, err := be.roundTrip(c.conn, c.scan, cmd, 0, c.buf)
			c.buf = buf
			if err == nil {
				replies[i] = append([]byte(nil), reply...)
			}
		})
	}
	wg.Wait()
	if p := g.primaryIndex; p >= 0 && replies[p] != nil {
		return append(dst, replies[p]...)
	}
	for _, r := range replies {
		if r != nil {
			return append(dst, r...)
		}
	}
	return g.wire.appendError(dst, "dynode-broadcaster: no backend replied")
}

// dialSideBusy opens a side connection that works while the backend runs a script:
// AUTH (allowed then) but no probe (PING is refused with -BUSY).
func (g *Gateway) dialSideBusy(ctx context.Context, be *backend) (*sideConn, error) {
	conn, err := be.dial(ctx)
	if err != nil {
		return nil, err
	}
	c := &sideConn{be: be, conn: conn, scan: g.wire.newScanner()}
	if c.buf, err = be.authenticate(conn, c.scan, nil); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// busyScript reports whether the backend, whose pipeline made no progress, is alive
// but running a script or function: a PING on a side connection answers -BUSY. A busy
// Redis answers at once; a hung process (its kernel still accepts connections) does
// not, so the question waits at most busyProbeTimeout before the backend is reset.
func (be *backend) busyScript() bool {
	if be.gw.wire != &respWire {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), busyProbeTimeout)
	defer cancel()
	c, err := be.gw.dialSideBusy(ctx, be)
	if err != nil {
		return false
	}
	defer c.close()
	_ = c.conn.SetDeadline(time.Now().Add(busyProbeTimeout))
	if _, err := c.conn.Write(be.gw.wire.probe); err != nil {
		return false
	}
	var buf [64]byte
	n, err := io.ReadAtLeast(c.conn, buf[:], len("-BUSY"))
	return err == nil && strings.HasPrefix(string(buf[:n]), "-BUSY")
}

// busyProbeTimeout bounds busyScript.
const busyProbeTimeout = 250 * time.Millisecond

// busyWait is how often a busy backend is asked again (see busyScript).
func busyWait(timeout time.Duration) time.Duration { return max(timeout, time.Second) }
