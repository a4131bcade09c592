package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/discovery"
	"github.com/dynode/dynode-broadcaster/protocols/raw"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// Gateway is a running replication gateway. Create it with New, run it with Run.
type Gateway struct {
	cfg     atomic.Pointer[configuration.Config] // conf(); replaced whole by Reload
	log     *slog.Logger
	wire    *wire // protocol=redis or memcache; nil for raw
	stats   Stats
	seq     sequencer
	started time.Time
	rates   rateSampler // ops/s for status views, sampled by the admin server

	settings atomic.Pointer[batchSettings] // what every new batch shares; replaced by Reload

	// backends are the shared pipelines, in the order they were added (index =
	// backend.index; a removed backend keeps its place, retired). Read with all();
	// changed only under seq.mu (discovery.go).
	backends     atomic.Pointer[[]*backend]
	servers      []string                 // backend addresses, in configuration order
	primaryIndex int                      // index of the primary in servers
	rawReply     raw.ReplyMode            // protocol=raw: what clients receive
	rawServers   atomic.Pointer[[]string] // protocol=raw with discovery: the list new clients get

	noReply   []byte // client reply when every addressed backend failed
	noBackend []byte // client reply when no backend is up

	// idle watches dormant sessions' connections (dormant.go); nil where sessions
	// never go dormant (protocol raw, platforms without epoll).
	idle *idlePoller

	ready          chan struct{} // closed once the listeners are bound
	ln             net.Listener
	tlsLn          net.Listener // tls_port; nil: none
	tls            *tlsSetup
	adminAddrBound net.Addr // nil when admin_port is 0

	resyncs resyncer      // running resyncs (resync.go)
	durable *durable      // backlog_dir; nil: backlogs in memory only (durable.go)
	verify  verifier      // the convergence check's state (verify.go)
	auth    authenticator // client AUTH (auth.go)
	scripts scriptCache   // Lua scripts clients sent, for resynced backends (scripts.go)
	maxTTL  atomic.Int64  // protocol=memcache: the largest TTL clients set, in seconds
	// draining: shutting down; sessions read nothing more (see shutdown).
	draining atomic.Bool
	// readAhead: bytes of sessions' read-ahead buffers (readAheadLimit).
	readAhead atomic.Int64
	// deepBurst: commands that sessions' bursts took beyond maxBurstCap and that
	// are not answered yet (deepBurstLimit).
	deepBurst atomic.Int64

	mu      sync.Mutex // guards clients and nextID
	clients map[net.Conn]*client
	nextID  int64

	keys keyWatch // clients waiting on keys: WATCH, blocking pops (keywatch.go)
	disc discoveryState

	runMu       sync.Mutex        // guards the three below
	runBackends func(be *backend) // starts a backend's connection loop; nil outside Run
	// startDiscovery runs discovery (closing ready after the first list) until
	// stopDiscovery or the end of Run; nil outside Run.
	startDiscovery func(ready chan<- struct{})
	stopDiscovery  context.CancelFunc
	monitors       monitors // MONITOR clients (monitor.go)
}

// New validates what the engine needs from cfg and builds a gateway.
func New(cfg *configuration.Config, log *slog.Logger) (*Gateway, error) {
	policy, ok := ParseReplyPolicy(cfg.WriteReply)
	if !ok {
		return nil, fmt.Errorf("gateway: write_reply %q: unknown policy", cfg.WriteReply)
	}
	servers, err := discovery.NewStatic(cfg.Servers)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if len(servers) == 0 && !cfg.Discovers() {
		return nil, errors.New("gateway: no backend servers: set servers, servers_autoupdate, servers_dns or servers_file")
	}
	g := &Gateway{
		log:     log,
		started: time.Now(),
		ready:   make(chan struct{}),
		clients: map[net.Conn]*client{},
	}
	g.cfg.Store(cfg)
	g.servers = servers
	if g.tls, err = newTLSSetup(cfg); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.auth = authenticator{requirePass: cfg.RequirePass, users: cfg.Users}
	if cfg.Protocol != "redis" && (g.auth.required() || cfg.BackendPassword != "" || len(cfg.ServerCredentials) > 0) {
		return nil, fmt.Errorf("gateway: requirepass, users, backend_password and redis:// credentials are for protocol=redis only")
	}
	g.primaryIndex = slices.Index(servers, cfg.PrimaryAddr())
	if cfg.Protocol == "raw" {
		if g.rawReply, err = raw.ParseReplyMode(cfg.RawReply); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		if cfg.DiscardResponses {
			g.rawReply = raw.ReplyNone
		}
		return g, nil
	}
	switch cfg.Protocol {
	case "redis":
		g.wire = &respWire
	case "memcache":
		g.wire = &memcacheWire
	default:
		return nil, fmt.Errorf("gateway: unknown protocol %q", cfg.Protocol)
	}
	g.settings.Store(&batchSettings{policy: policy, onFinish: g.finish, comparable: g.wire.comparable,
		isError: g.wire.isError, missing: g.wire.missing, onLostWrite: g.lostWrite, appendError: g.wire.appendError})
	g.noReply = g.wire.appendError(nil, "dynode-broadcaster: no backend replied")
	g.noBackend = g.wire.appendError(nil, "dynode-broadcaster: no backend available")
	list := make([]*backend, 0, len(servers))
	for i, addr := range servers {
		be := newBackend(g, i, addr)
		be.source = "static"
		list = append(list, be)
	}
	g.backends.Store(&list)
	if cfg.BacklogDir != "" {
		d, prev, err := openDurable(cfg.BacklogDir, cfg.BacklogFsync)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		g.durable = d
		if err := g.restoreDurable(prev); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	g.seq = sequencer{
		backends:         list,
		primary:          g.primaryIndex,
		readAny:          cfg.ReadFrom == "any",
		queueWhenAllDown: cfg.DiscardResponses,
	}
	if g.wire == &respWire {
		g.seq.keys = &g.keys
	}
	return g, nil
}

// Run listens and serves until ctx ends, then closes every client and backend
// connection and returns once all goroutines have exited.
func (g *Gateway) Run(ctx context.Context) error {
	ln, err := listen(g.conf().ListenAddr(), g.conf().BacklogSize, g.conf().ReuseAddr)
	if err != nil {
		return fmt.Errorf("gateway: listen on %s: %w", g.conf().ListenAddr(), err)
	}
	g.ln = ln
	if cfg := g.conf(); cfg.TLSPort > 0 {
		addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.TLSPort))
		tl, err := listen(addr, cfg.BacklogSize, cfg.ReuseAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("gateway: listen on %s (tls_port): %w", addr, err)
		}
		g.tlsLn = tls.NewListener(tl, g.tls.server)
	}
	var adminLn net.Listener
	if g.conf().AdminPort > 0 {
		if adminLn, err = net.Listen("tcp", g.adminAddr()); err != nil {
			_ = ln.Close()
			return fmt.Errorf("gateway: admin listen on %s: %w", g.adminAddr(), err)
		}
		g.adminAddrBound = adminLn.Addr()
	}
	close(g.ready)
	g.log.Info("dynode-broadcaster listening", "addr", ln.Addr().String(), "protocol", g.conf().Protocol,
		"backends", strings.Join(g.conf().Servers, ","), "primary", g.conf().PrimaryAddr(),
		"write_reply", g.conf().WriteReply, "discard_responses", g.conf().DiscardResponses)

	// Three lifetimes: ctx ends accepting (and resyncs); the sessions run until they
	// have answered what they read, or shutdown_timeout; the backends, until their
	// queues are delivered, or shutdown_timeout.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sessCtx, stopSessions := context.WithCancel(context.Background())
	defer stopSessions()
	backCtx, stopBackends := context.WithCancel(context.Background())
	defer stopBackends()
	var wg, sessions sync.WaitGroup
	g.runMu.Lock()
	g.runBackends = func(be *backend) {
		be.runMu.Lock()
		defer be.runMu.Unlock()
		if be.stopRun != nil {
			return // running (a removed backend added again before it closed)
		}
		bctx, stop := context.WithCancel(backCtx)
		be.stopRun = stop
		wg.Go(func() { be.run(bctx) })
	}
	for _, be := range g.all() {
		g.runBackends(be)
	}
	g.startDiscovery = func(ready chan<- struct{}) {
		dctx, stop := context.WithCancel(ctx)
		g.stopDiscovery = stop
		wg.Go(func() { g.runDiscovery(dctx, ready) })
	}
	g.runMu.Unlock()
	defer func() {
		g.runMu.Lock()
		g.runBackends, g.startDiscovery = nil, nil
		g.runMu.Unlock()
	}()
	g.resyncs.mu.Lock()
	g.resyncs.ctx, g.resyncs.wg = ctx, &wg
	g.resyncs.running, g.resyncs.failures, g.resyncs.nextTry = map[*backend]bool{}, map[*backend]int{}, map[*backend]time.Time{}
	g.resyncs.mu.Unlock()
	if g.wire != nil { // backends can be added later (discovery, Reload): always watch
		wg.Go(func() { g.autoResync(ctx) })
	}
	// Very large values' memory, and the stacks of sessions gone dormant, go back to
	// the system soon after they are let go.
	rec := &reclaimer{interval: 500 * time.Millisecond, free: debug.FreeOSMemory}
	if g.wire != nil {
		if g.idle, err = newIdlePoller(); err != nil {
			g.log.Warn("idle clients keep their goroutines: no idle poller", "err", err)
		} else if g.idle != nil {
			rec.dormant = g.idle.slept.Load
			wg.Go(func() {
				if err := g.idle.run(func() time.Duration { return g.conf().ReadIdleTimeout }); err != nil {
					g.log.Error("idle poller stopped; dormant clients are closed at shutdown only", "err", err)
				}
			})
		}
	}
	wg.Go(func() { rec.run(ctx) })
	if g.conf().VerifyInterval > 0 && (len(g.all()) > 1 || g.conf().Discovers()) {
		wg.Go(func() { g.verifyEvery(ctx) })
	}
	if g.conf().Discovers() {
		ready := make(chan struct{})
		g.runMu.Lock()
		g.startDiscovery(ready)
		g.runMu.Unlock()
		if len(g.servers) == 0 {
			// No static servers: wait for the first list (up to connect_timeout).
			select {
			case <-ready:
			case <-time.After(g.conf().ConnectTimeout):
				g.log.Warn("no backend list within connect_timeout: serving without backends until one arrives")
			}
		}
	}
	wg.Go(func() {
		<-ctx.Done()
		_ = ln.Close()
		if g.tlsLn != nil {
			_ = g.tlsLn.Close()
		}
	})
	g.tls.watch(ctx, g.log)
	if g.tlsLn != nil {
		wg.Go(func() {
			if err := g.accept(ctx, sessCtx, g.tlsLn, &sessions); err != nil {
				g.log.Error("TLS listener stopped", "err", err)
			}
		})
	}
	if adminLn != nil {
		wg.Go(func() {
			if err := g.serveAdmin(backCtx, adminLn); err != nil {
				g.log.Error("admin server stopped", "err", err)
			}
		})
	}
	err = g.accept(ctx, sessCtx, ln, &sessions)
	cancel()
	g.shutdown(&sessions, stopSessions)
	if g.idle != nil {
		g.idle.stop() // every session has ended: none is dormant
	}
	stopBackends()
	wg.Wait()
	return errors.Join(err, g.closeDurable())
}

// closeDurable closes the backlog files and records a clean stop.
func (g *Gateway) closeDurable() error {
	if g.durable == nil {
		return nil
	}
	var errs []error
	for _, be := range g.all() {
		errs = append(errs, be.disk.Close(), be.spill.Close())
	}
	errs = append(errs, g.durable.setClean(true))
	return errors.Join(errs...)
}

// shutdown runs once the gateway stopped accepting: every session answers the
// commands it has read and closes, then every backend is given what is queued for
// it, all within shutdown_timeout. What is still queued then (a backend down or
// hung) is lost, and logged so.
func (g *Gateway) shutdown(sessions *sync.WaitGroup, stopSessions context.CancelFunc) {
	timeout := g.conf().ShutdownTimeout
	deadline := time.Now().Add(timeout)
	g.log.Info("shutting down: no new clients; answering the commands read and delivering the backends' queues", "shutdown_timeout", timeout)
	g.draining.Store(true)
	if g.idle != nil {
		g.idle.wakeAll() // dormant sessions end too
	}
	if g.conf().Protocol == "raw" {
		stopSessions() // a raw stream has no command boundary to stop at
	}
	g.mu.Lock()
	for conn := range g.clients {
		_ = conn.SetReadDeadline(time.Now()) // wakes sessions waiting for input
	}
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { sessions.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
		g.log.Warn("clients still waiting for replies at shutdown_timeout: closing them")
		stopSessions()
		g.closeClients()
		<-done
	}
	stopSessions()
	for time.Now().Before(deadline) && g.backendsBusy() {
		time.Sleep(5 * time.Millisecond)
	}
	for _, st := range g.Backends() {
		switch {
		case st.QueuedBytes == 0 && st.InFlight == 0:
		case g.durable != nil:
			g.log.Warn("shutdown: writes queued for a backend are kept in backlog_dir for the next start", "backend", st.Addr,
				"state", st.State, "queued_bytes", st.QueuedBytes, "in_flight_lost", st.InFlight)
		default:
			g.log.Error("shutdown: writes queued for a backend are lost; it will have missed them", "backend", st.Addr,
				"state", st.State, "queued_bytes", st.QueuedBytes, "in_flight", st.InFlight)
		}
	}
	g.log.Info("shutdown complete")
}

// backendsBusy reports whether a connected backend still has commands queued or in
// flight.
func (g *Gateway) backendsBusy() bool {
	for _, be := range g.all() {
		be.mu.Lock()
		busy := be.state == StateUp && (be.queue.len() > 0 || be.spillEntries > 0)
		be.mu.Unlock()
		if busy {
			return true
		}
	}
	return false
}

// accept serves clients until ctx ends; sessions run with sessCtx, counted in wg.
func (g *Gateway) accept(ctx, sessCtx context.Context, ln net.Listener, wg *sync.WaitGroup) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("gateway: accept: %w", err)
		}
		conn = g.wrapClient(conn)
		cl, log, ok := g.register(conn)
		if !ok {
			g.stats.ClientsRejected.Add(1)
			switch g.conf().Protocol {
			case "redis":
				_, _ = conn.Write(resp.AppendError(nil, "ERR max number of clients reached"))
			case "memcache":
				_, _ = conn.Write([]byte("ERROR Too many open connections\r\n"))
			}
			_ = conn.Close()
			continue
		}
		wg.Go(func() {
			if !g.handshakeClient(conn) {
				g.unregister(conn)
				return
			}
			if g.conf().Protocol == "raw" {
				defer g.unregister(conn)
				g.newRawSession(conn, log).serve(sessCtx)
				return
			}
			s := &session{gw: g, conn: conn, id: cl.id, log: log, client: cl}
			s.serve(sessCtx, wg) // it unregisters conn when it ends
		})
	}
}

// register admits a client connection, or refuses it at max_clients.
func (g *Gateway) register(conn net.Conn) (*client, *slog.Logger, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conf().MaxClients > 0 && len(g.clients) >= g.conf().MaxClients {
		return nil, nil, false
	}
	if tc, ok := conn.(interface{ SetNoDelay(bool) error }); ok {
		_ = tc.SetNoDelay(true) // a *net.TCPConn, or a dormantConn holding one
	}
	g.nextID++
	cl := newClient(g.nextID, conn)
	g.clients[conn] = cl
	g.stats.ClientsConnected.Add(1)
	g.stats.ClientsAccepted.Add(1)
	return cl, slog.New(clientLog{Handler: g.log.Handler(), addr: conn.RemoteAddr()}), true
}

// clientLog adds the client's address to the records of a client's logger when
// they are logged, not when the logger is made (slog's With formats it at once:
// some 300 bytes kept for every idle client).
type clientLog struct {
	slog.Handler
	addr net.Addr
}

// Handle adds client=address to r.
func (h clientLog) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(slog.String("client", h.addr.String()))
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps adding the address.
func (h clientLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return clientLog{Handler: h.Handler.WithAttrs(attrs), addr: h.addr}
}

// WithGroup keeps adding the address (inside the group, with the record's own
// attributes; nothing in the gateway groups a client's logger).
func (h clientLog) WithGroup(name string) slog.Handler {
	return clientLog{Handler: h.Handler.WithGroup(name), addr: h.addr}
}

func (g *Gateway) unregister(conn net.Conn) {
	_ = conn.Close()
	g.mu.Lock()
	delete(g.clients, conn)
	g.mu.Unlock()
	g.stats.ClientsConnected.Add(-1)
}

func (g *Gateway) closeClients() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for conn := range g.clients {
		_ = conn.Close()
	}
}

// finish runs when every addressed backend has answered a command (under the
// batch's lock): it counts and logs divergent replies, never their values.
func (g *Gateway) finish(b *batch, c *command) {
	if !c.diverged() || c.name == "PUBLISH" || c.name == "SPUBLISH" {
		return // each backend counts its own subscribers
	}
	if known := g.knownOutOfSync(); known > 0 && c.minorityReplies() <= known {
		// Backends already known to hold other data answer from it until their
		// resync; that was logged once, when they went out of sync.
		g.stats.DivergencesByClass[DivergenceKnownOutOfSync].Add(1)
		return
	}
	groups := make([]string, 0, c.nvariants)
	most := c.mostCommon()
	for i, v := range c.variants[:c.nvariants] {
		if int8(i) != most {
			g.all()[v.from].diverged.Add(1)
		}
		groups = append(groups, fmt.Sprintf("%s(+%d)", g.all()[v.from].addr, v.count-1))
	}
	class := c.divergenceClass()
	attrs := []any{"cmd", c.name, "class", class.String(), "reply_groups", strings.Join(groups, " vs ")}
	if c.detail != "" {
		attrs = append(attrs, "script", c.detail)
		g.stats.countScriptDivergence(c.detail)
	}
	g.log.Warn("backends replied differently", attrs...)
	g.stats.Divergences.Add(1)
	g.stats.DivergencesByClass[class].Add(1)
}

// knownOutOfSync counts the backends known to hold data that differs from the
// others': out of sync, or being resynced.
func (g *Gateway) knownOutOfSync() int {
	n := 0
	for _, be := range g.all() {
		if be.outOfSync.Load() || be.resyncing.Load() {
			n++
		}
	}
	return n
}

// lostWrite runs when a backend answered a write with an error that another backend
// applied: the backend missed the write, so its data differs.
func (g *Gateway) lostWrite(backend int, c *command, reply []byte) {
	be := g.all()[backend]
	be.mu.Lock()
	be.lostWrites++
	be.losses++
	be.mu.Unlock()
	reason := "it refused a write (" + c.name + ") that other backends applied"
	if reply != nil {
		reason += ": " + truncate(firstLine(reply), 60)
	}
	be.markOutOfSync(reason)
}

// conf is the configuration in force.
func (g *Gateway) conf() *configuration.Config { return g.cfg.Load() }

// all returns every backend, retired ones included, indexed by backend.index.
func (g *Gateway) all() []*backend {
	if p := g.backends.Load(); p != nil {
		return *p
	}
	return nil
}

// Ready is closed once the gateway listens.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// TLSAddr is the TLS listener's address (tls_port), nil without one; valid after Ready.
func (g *Gateway) TLSAddr() net.Addr {
	if g.tlsLn == nil {
		return nil
	}
	return g.tlsLn.Addr()
}

// Addr is the listening address; valid after Ready.
func (g *Gateway) Addr() net.Addr { return g.ln.Addr() }

// AdminAddr is the admin server's address, nil when admin_port is 0; valid after Ready.
func (g *Gateway) AdminAddr() net.Addr { return g.adminAddrBound }

// Stats returns the gateway's live counters.
func (g *Gateway) Stats() *Stats { return &g.stats }

// Backends returns a snapshot of every backend.
func (g *Gateway) Backends() []BackendStatus {
	out := make([]BackendStatus, 0, len(g.all()))
	g.seq.mu.Lock()
	primary := g.seq.primary
	g.seq.mu.Unlock()
	for _, be := range g.all() {
		reason, since := be.syncState()
		be.mu.Lock()
		retired := be.retired.Load()
		if retired && be.state == StateStopped {
			be.mu.Unlock()
			continue // removed from the list and closed
		}
		state := be.displayStateLocked()
		if retired {
			state = "removed"
		}
		out = append(out, BackendStatus{
			Addr: be.addr, Primary: be.index == primary, State: state, Connected: be.state == StateUp, Source: be.source, Added: be.added,
			OutOfSync: be.outOfSync.Load(), QueuedBytes: int64(be.queuedBytesLocked()), InFlight: be.inflight, LagCommands: int64(be.queue.len() + be.spillEntries),
			Connects: be.connects.Load(), LostWrites: be.lostWrites, Since: be.since, Process: be.identity,
			Replies: be.replies.Load(), Divergences: be.diverged.Load(), LastError: be.lastError, LastErrorAt: be.lastErrorAt,
			OutOfSyncReason: reason, OutOfSyncSince: since, Resync: be.resyncProgress(),
		})
		be.mu.Unlock()
	}
	return out
}
