package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
)

// A resync relay lets a target that cannot reach the source replicate from it
// through the gateway, which reaches both (resync_via=gateway, or auto after a
// direct attempt whose replication link never came up). The target is told
// REPLICAOF the relay's address: a listener on the gateway's own address as the
// target sees it (the local end of the gateway's connection to it), on a free port.
// Each connection it accepts is piped to a new connection to the source, both ways,
// byte for byte: the replication handshake, AUTH, the snapshot and the stream pass
// through unchanged, so offsets and the switch point work as for a direct link. The
// relay lives as long as the resync.
type relay struct {
	ln     net.Listener
	source *backend
	wg     sync.WaitGroup

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

// startRelay listens on local's IP (the gateway as the target sees it).
func startRelay(source *backend, local net.Addr) (*relay, error) {
	host := "0.0.0.0"
	if tcp, ok := local.(*net.TCPAddr); ok {
		host = tcp.IP.String()
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("resync relay: %w", err)
	}
	r := &relay{ln: ln, source: source, conns: map[net.Conn]struct{}{}}
	r.wg.Go(r.accept)
	return r, nil
}

// addr is the host and port the target replicates from.
func (r *relay) addr() (host, port string, err error) {
	return net.SplitHostPort(r.ln.Addr().String())
}

func (r *relay) accept() {
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return // closed
		}
		out, err := r.source.dial(context.Background())
		if err != nil {
			r.source.log.Warn("resync relay: cannot reach the source", "err", err)
			_ = in.Close()
			continue
		}
		if !r.track(in, out) {
			return
		}
		r.source.log.Info("resync relay: a replica connected through the gateway", "replica", in.RemoteAddr().String())
		r.wg.Go(func() { r.pipe(out, in) })
		r.wg.Go(func() { r.pipe(in, out) })
	}
}

// track remembers open connections, so close can end them; false once closed.
func (r *relay) track(conns ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		r.conns[c] = struct{}{}
	}
	return true
}

// pipe copies src to dst until either ends, then closes both.
func (r *relay) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

// close stops the relay and every connection through it, and waits for its
// goroutines.
func (r *relay) close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	_ = r.ln.Close()
	r.wg.Wait()
}
