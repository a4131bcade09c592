package gateway

import (
	"slices"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/discovery"
)

// Reload puts a new configuration in force while the gateway runs (SIGHUP, or an edit
// of the configuration file: see the command). What can change live does: the
// backend list and discovery, timeouts, write_reply, read_from, discard_responses,
// limits (per-connection ones for new connections); each change is logged as old ->
// new. Settings that need a restart (configuration.Live) keep their running value
// and are logged as such. next must be valid (configuration.Load checks it; an
// invalid file never reaches here). It returns every difference found.
func (g *Gateway) Reload(next *configuration.Config) []configuration.Change {
	running := g.conf()
	changes := configuration.Changes(running, next)
	if len(changes) == 0 {
		return nil
	}
	merged := next.KeepRestartSettings(running)
	for _, c := range changes {
		if c.Live {
			g.log.Info("configuration changed", "key", c.Key, "old", c.Old, "new", c.New)
		} else {
			g.log.Warn("configuration change needs a restart; keeping the running value", "key", c.Key, "running", c.Old, "file", c.New)
		}
	}
	g.cfg.Store(merged)
	if g.wire == nil {
		if !slices.Equal(running.Servers, merged.Servers) && !merged.Discovers() {
			list := slices.Clone(merged.Servers)
			g.rawServers.Store(&list)
		}
		return changes
	}
	if policy, ok := ParseReplyPolicy(merged.WriteReply); ok {
		s := *g.settings.Load()
		s.policy = policy
		g.settings.Store(&s)
	}
	g.seq.mu.Lock()
	g.seq.readAny = merged.ReadFrom == "any"
	g.seq.queueWhenAllDown = merged.DiscardResponses
	g.seq.mu.Unlock()
	if discoveryChanged(running, merged) {
		g.restartDiscovery(merged)
	}
	return changes
}

// discoveryChanged reports whether the backend list's sources differ.
func discoveryChanged(a, b *configuration.Config) bool {
	return !slices.Equal(a.Servers, b.Servers) || a.ServersAutoupdate != b.ServersAutoupdate ||
		a.ServersAutoupdateMethod != b.ServersAutoupdateMethod || a.ServersAutoupdateURL != b.ServersAutoupdateURL ||
		a.ServersAutoupdateParameters != b.ServersAutoupdateParameters || a.ServersAutoupdateRefresh != b.ServersAutoupdateRefresh ||
		a.ServersAutoupdateAllowEmpty != b.ServersAutoupdateAllowEmpty || a.ServersDNS != b.ServersDNS ||
		a.ServersDNSPort != b.ServersDNSPort || a.ServersDNSRefresh != b.ServersDNSRefresh ||
		a.ServersDNSServer != b.ServersDNSServer || a.ServersFile != b.ServersFile
}

// restartDiscovery stops the running discovery and applies cfg's sources: the static
// list at once when there is no other source.
func (g *Gateway) restartDiscovery(cfg *configuration.Config) {
	g.runMu.Lock()
	if g.stopDiscovery != nil {
		g.stopDiscovery()
		g.stopDiscovery = nil
	}
	g.servers = slices.Clone(cfg.Servers)
	if cfg.Discovers() {
		if g.startDiscovery != nil { // nil: Run has not started, or is stopping
			g.startDiscovery(make(chan struct{}))
		}
		g.runMu.Unlock()
		return
	}
	g.runMu.Unlock()
	sources := map[string]string{}
	for _, a := range cfg.Servers {
		sources[a] = "static"
	}
	g.applyServers(discovery.Update{Servers: cfg.Servers, Sources: sources}, false) // takes runMu itself
}

// Config returns the configuration in force (after the last Reload).
func (g *Gateway) Config() *configuration.Config { return g.conf() }
