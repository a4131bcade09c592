package testserver

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Proxy is a Shopify toxiproxy proxy run in the test's process on 127.0.0.1, in
// front of one upstream server: it can be taken down and up (its port refuses
// connections meanwhile) and given toxics (latency, bandwidth, reset_peer, timeout).
type Proxy struct {
	Addr string
	p    *toxiproxy.Proxy
	t    testing.TB
}

// StartProxy runs a proxy to upstream on a free port until the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	p := toxiproxy.NewProxy(srv, "proxy-"+upstream, addr, upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy: %v", err)
	}
	t.Cleanup(p.Stop)
	return &Proxy{Addr: addr, p: p, t: t}
}

// Down closes the proxy's listener and every connection through it.
func (p *Proxy) Down() { p.p.Stop() }

// Up listens again on the same address.
func (p *Proxy) Up() {
	p.t.Helper()
	if err := p.p.Start(); err != nil {
		p.t.Fatalf("toxiproxy up: %v", err)
	}
}

// AddToxic adds a toxic given as toxiproxy's JSON, e.g.
// {"name":"slow","type":"bandwidth","stream":"downstream","attributes":{"rate":100}}.
func (p *Proxy) AddToxic(json string) {
	p.t.Helper()
	if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(json)); err != nil {
		p.t.Fatalf("toxiproxy toxic: %v", err)
	}
}

// RemoveToxic removes a toxic by name.
func (p *Proxy) RemoveToxic(name string) {
	p.t.Helper()
	if err := p.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		p.t.Fatalf("toxiproxy remove toxic: %v", err)
	}
}
