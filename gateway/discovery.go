package gateway

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/discovery"
)

// Backends come from the static servers setting and, when configured, from discovery
// sources (the original's HTTP auto-update, DNS, a watched file: package discovery).
// Each new effective list is applied live, without dropping a client:
//
//   - an added backend joins the sequencer under its lock, so it receives every write
//     from that exact point of the global order on (queued while it connects). It has
//     none of the data written before, so it is out of sync from the start (never
//     reported in sync with data it does not have) and auto_resync rebuilds it from
//     an in-sync backend, as for a backend that restarted empty. Backends of the first
//     list, when the gateway starts without static servers, are the initial set and
//     in sync by definition;
//   - a removed backend is retired under the same lock: no new command is queued to
//     it and it is never the reply source or a read target; what was queued for it is
//     still delivered and its replies collected (up to shutdown_timeout), then its
//     connection closes. It keeps its index (commands in flight refer to it);
//   - an address that comes back is the same backend revived: out of sync (it missed
//     the writes in between), resynced;
//   - the primary changes only when it is removed: the sequencer then takes the first
//     in-sync backend in list order (pick), as when the primary is down.

// discoverySources builds the configured discovery sources.
func discoverySources(cfg *configuration.Config) []discovery.Source {
	var out []discovery.Source
	if cfg.ServersAutoupdate {
		out = append(out, &discovery.HTTP{Method: cfg.ServersAutoupdateMethod, URL: cfg.ServersAutoupdateURL,
			Parameters: cfg.ServersAutoupdateParameters, Every: cfg.ServersAutoupdateRefresh, Timeout: cfg.ConnectTimeout,
			AllowEmpty: cfg.ServersAutoupdateAllowEmpty, UserAgent: "dynode-broadcaster/" + Version})
	}
	if cfg.ServersDNS != "" {
		out = append(out, &discovery.DNS{Query: cfg.ServersDNS, Port: cfg.ServersDNSPort, Every: cfg.ServersDNSRefresh,
			Timeout: cfg.ConnectTimeout, Server: cfg.ServersDNSServer})
	}
	if cfg.ServersFile != "" {
		out = append(out, &discovery.File{Path: cfg.ServersFile})
	}
	return out
}

// DiscoverySources returns the sources a configuration names (for check-config
// --resolve).
func DiscoverySources(cfg *configuration.Config) []discovery.Source { return discoverySources(cfg) }

// discoveryState is what /backends and the metrics say about discovery.
type discoveryState struct {
	mu         sync.Mutex
	lastChange time.Time
	errors     map[string]int64 // per source
	lastError  map[string]string
}

func (d *discoveryState) noteError(source string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.errors == nil {
		d.errors, d.lastError = map[string]int64{}, map[string]string{}
	}
	d.errors[source]++
	d.lastError[source] = err.Error()
}

// DiscoveryErrors returns how many times each source failed (a new error, or a
// failed fetch after a good one).
func (g *Gateway) DiscoveryErrors() map[string]int64 {
	g.disc.mu.Lock()
	defer g.disc.mu.Unlock()
	out := map[string]int64{}
	for k, v := range g.disc.errors {
		out[k] = v
	}
	return out
}

// ListChanged returns when the backend list last changed (zero: never since start).
func (g *Gateway) ListChanged() time.Time {
	g.disc.mu.Lock()
	defer g.disc.mu.Unlock()
	return g.disc.lastChange
}

// runDiscovery watches the sources and applies every new list until ctx ends. ready
// is closed once the first list is applied (or at once when there are static
// servers: the gateway serves with them while the first fetch runs).
func (g *Gateway) runDiscovery(ctx context.Context, ready chan<- struct{}) {
	static := g.servers // set before this goroutine starts (restartDiscovery)
	w := &discovery.Watcher{Static: static, Sources: discoverySources(g.conf()),
		OnError: func(source string, err error) {
			g.disc.noteError(source, err)
			g.log.Warn("backend discovery failed; keeping the last good list", "source", source, "err", err)
		},
		OnRecover: func(source string) { g.log.Info("backend discovery answers again", "source", source) },
	}
	updates := make(chan discovery.Update, 1)
	go w.Run(ctx, updates)
	first := true
	for {
		select {
		case <-ctx.Done():
			if first {
				close(ready)
			}
			return
		case u := <-updates:
			g.applyServers(u, first && len(static) == 0)
			if first {
				first = false
				close(ready)
			}
		}
	}
}

// applyServers makes the backends those of u. initial: the first list of a gateway
// that started without static servers (its backends are in sync by definition).
func (g *Gateway) applyServers(u discovery.Update, initial bool) {
	if g.wire == nil {
		// protocol=raw: each client has its own connections; new clients get the new list.
		list := slices.Clone(u.Servers)
		g.rawServers.Store(&list)
		g.disc.mu.Lock()
		g.disc.lastChange = time.Now()
		g.disc.mu.Unlock()
		g.log.Info("backend list changed: new raw clients connect to it", "backends", u.Servers)
		return
	}
	var added, removed, revived []string
	g.seq.mu.Lock()
	list := g.all()
	next := slices.Clone(list)
	for _, be := range list {
		keep := slices.Contains(u.Servers, be.addr)
		switch {
		case !keep && !be.retired.Load():
			be.retired.Store(true)
			removed = append(removed, be.addr)
			if be.index == g.seq.primary {
				g.log.Warn("the primary was removed from the backend list: replies and reads move to the first in-sync backend", "primary", be.addr)
			}
			go g.drainRetired(be)
		case keep && be.retired.Load():
			be.retired.Store(false)
			revived = append(revived, be.addr)
			be.mu.Lock()
			be.added = time.Now()
			be.mu.Unlock()
			be.markOutOfSync("removed from the backend list and added again: it missed the writes in between")
			g.startBackend(be)
		}
		if keep {
			be.setSource(u.Sources[be.addr])
		}
	}
	for _, addr := range u.Servers {
		if slices.ContainsFunc(list, func(be *backend) bool { return be.addr == addr }) {
			continue
		}
		be := newBackend(g, len(next), addr)
		be.setSource(u.Sources[addr])
		if g.durable != nil {
			if err := g.openBackendFiles(be); err != nil {
				g.log.Error("backlog_dir: cannot open the new backend's files; its backlog stays in memory", "backend", addr, "err", err)
			}
		}
		next = append(next, be)
		added = append(added, addr)
		if addr == g.conf().PrimaryAddr() || g.conf().Primary == "" && g.seq.primary < 0 {
			g.seq.primary = be.index
		}
	}
	g.seq.backends = next
	g.backends.Store(&next)
	for _, be := range next[len(list):] {
		if !initial {
			be.markOutOfSync("added to the backend list: it has none of the data written before")
		}
		g.startBackend(be)
	}
	g.seq.mu.Unlock()
	if len(added)+len(removed)+len(revived) == 0 {
		return
	}
	g.disc.mu.Lock()
	g.disc.lastChange = time.Now()
	g.disc.mu.Unlock()
	g.log.Info("backend list changed", "added", added, "removed", removed, "added_again", revived, "backends", u.Servers)
}

// startBackend runs a backend's connection loop under the gateway's backend lifetime
// (see Run); before Run, Run starts it.
func (g *Gateway) startBackend(be *backend) {
	g.runMu.Lock()
	defer g.runMu.Unlock()
	if g.runBackends == nil {
		return
	}
	g.runBackends(be)
}

// drainRetired waits until a removed backend has answered what was queued for it
// (at most shutdown_timeout), then stops its connection, unless it was added again.
func (g *Gateway) drainRetired(be *backend) {
	deadline := time.Now().Add(g.conf().ShutdownTimeout)
	for time.Now().Before(deadline) {
		be.mu.Lock()
		busy := be.state == StateUp && (be.queue.len() > 0 || be.spillEntries > 0)
		be.mu.Unlock()
		if !busy || !be.retired.Load() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !be.retired.Load() {
		return
	}
	be.mu.Lock()
	left := be.queue.len()
	be.mu.Unlock()
	if left > 0 {
		be.log.Warn("removed backend closed with commands still queued", "queued", left)
	}
	be.stopRunning()
	be.log.Info("removed backend closed")
}

// setSource records where the backend's address came from.
func (be *backend) setSource(source string) {
	be.mu.Lock()
	be.source = source
	be.mu.Unlock()
}

// stopRunning ends the backend's connection loop, if it runs.
func (be *backend) stopRunning() {
	be.runMu.Lock()
	stop := be.stopRun
	be.stopRun = nil
	be.runMu.Unlock()
	if stop != nil {
		stop()
	}
}
