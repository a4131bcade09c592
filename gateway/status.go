package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// Status is the gateway at a glance, as GET /status, the status command and the
// admin server's status page show it.
type Status struct {
	Version       string    `json:"version"`
	Protocol      string    `json:"protocol"`
	Listen        string    `json:"listen"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Clients       int64     `json:"clients"`
	Dormant       int64     `json:"clients_dormant"` // of Clients, idle ones whose session is dormant
	// CommandsTotal counts client commands since the start; OpsPerSec is their rate
	// over the last second the admin server sampled.
	CommandsTotal int64   `json:"commands_total"`
	OpsPerSec     float64 `json:"ops_per_sec"`
	// Latency quantiles of client requests by class (write, read), in milliseconds:
	// the upper bound of the histogram bucket they fall in.
	Latency     map[string]LatencyQuantiles `json:"latency_ms"`
	Divergences int64                       `json:"divergences_total"`
	Ready       bool                        `json:"ready"`
	NotReady    string                      `json:"not_ready,omitempty"`
	Backends    []BackendView               `json:"backends"`
}

// LatencyQuantiles are a class's p50, p95 and p99 latencies in milliseconds.
type LatencyQuantiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// BackendView is a backend's status with its role and rate.
type BackendView struct {
	BackendStatus
	Role      string  `json:"role"` // primary or secondary
	OpsPerSec float64 `json:"ops_per_sec"`
}

// rateSampler turns counters into per-second rates, sampled by the admin server.
type rateSampler struct {
	mu       sync.Mutex
	at       time.Time
	commands int64
	replies  map[string]int64 // by backend address
	opsRate  float64
	rates    map[string]float64
}

// sample reads the counters now and updates the rates from the previous reading.
func (r *rateSampler) sample(g *Gateway, now time.Time) {
	var commands int64
	for c := range numClasses {
		commands += g.stats.CommandsOf(protocols.Class(c))
	}
	replies := make(map[string]int64, len(g.all()))
	for _, be := range g.all() {
		replies[be.addr] = be.replies.Load()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if secs := now.Sub(r.at).Seconds(); !r.at.IsZero() && secs > 0 {
		r.opsRate = float64(commands-r.commands) / secs
		rates := make(map[string]float64, len(replies))
		for addr, n := range replies {
			if prev, ok := r.replies[addr]; ok {
				rates[addr] = float64(n-prev) / secs
			}
		}
		r.rates = rates
	}
	r.at, r.commands, r.replies = now, commands, replies
}

// run samples every second until ctx ends.
func (r *rateSampler) run(ctx context.Context, g *Gateway) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	r.sample(g, time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			r.sample(g, now)
		}
	}
}

// Status returns the gateway's status now. Rates are those of the last second the
// admin server sampled (0 without an admin server).
func (g *Gateway) Status() Status {
	cfg := g.conf()
	st := Status{
		Version: Version, Protocol: cfg.Protocol, Listen: cfg.ListenAddr(), Started: g.started,
		UptimeSeconds: time.Since(g.started).Seconds(), Clients: g.stats.ClientsConnected.Load(),
		Dormant:     g.stats.ClientsDormant.Load(),
		Divergences: g.stats.Divergences.Load(), Latency: map[string]LatencyQuantiles{},
	}
	for c := range numClasses {
		st.CommandsTotal += g.stats.CommandsOf(protocols.Class(c))
	}
	for _, c := range []protocols.Class{protocols.Write, protocols.Read} {
		ms := func(q float64) float64 { return float64(g.stats.Latency.Quantile(c, q)) / float64(time.Millisecond) }
		st.Latency[c.String()] = LatencyQuantiles{P50: ms(0.5), P95: ms(0.95), P99: ms(0.99)}
	}
	if g.ln != nil {
		st.Listen = g.ln.Addr().String() // the bound port when port=0
	}
	st.NotReady = g.notReady()
	st.Ready = st.NotReady == ""
	g.rates.mu.Lock()
	st.OpsPerSec = g.rates.opsRate
	rates := g.rates.rates
	g.rates.mu.Unlock()
	for _, b := range g.Backends() {
		role := "secondary"
		if b.Primary {
			role = "primary"
		}
		st.Backends = append(st.Backends, BackendView{BackendStatus: b, Role: role, OpsPerSec: rates[b.Addr]})
	}
	return st
}
