package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveAdmin runs the admin HTTP server until ctx ends (docs/ADMIN.md):
//
//	/          status page (HTML, refreshes itself)
//	/status    JSON: the gateway and its backends at a glance, with rates
//	/metrics   Prometheus metrics (dynode_*)
//	/backends  JSON: every backend's state, queued bytes, commands in flight, sync
//	/healthz   200 while the process serves
//	/readyz    200 when clients can be served (a backend is up; always in raw mode)
//	POST /backends/{addr}/resync  start a resync of a backend (202; 404 unknown, 409 refused)
//	POST /verify  run one round of the convergence check; JSON result (409 while one runs)
//	/debug/pprof/  Go's profiler, with admin_pprof=true
//
// With admin_token set, POST routes require "Authorization: Bearer <admin_token>".
func (g *Gateway) serveAdmin(ctx context.Context, ln net.Listener) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(statsCollector{g}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	page, err := newStatusPage()
	if err != nil {
		return err
	}
	sampler, stopSampler := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		g.rates.run(sampler, g)
	}()
	defer func() {
		stopSampler()
		<-sampled
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", page.serve(g))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, g.Status()) })
	mux.HandleFunc("GET /backends", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, g.Backends()) })
	mux.HandleFunc("POST /backends/{addr}/resync", g.authorized(func(w http.ResponseWriter, r *http.Request) {
		addr := r.PathValue("addr")
		err := g.Resync(addr)
		code := http.StatusAccepted
		switch {
		case errors.Is(err, ErrUnknownBackend):
			code = http.StatusNotFound
		case err != nil:
			code = http.StatusConflict
		}
		body := map[string]string{"backend": addr, "status": "started"}
		if err != nil {
			body["status"], body["error"] = "refused", err.Error()
		}
		writeJSON(w, code, body)
	}))
	mux.HandleFunc("POST /verify", g.authorized(func(w http.ResponseWriter, r *http.Request) {
		res, err := g.Verify(r.Context())
		if err != nil {
			code := http.StatusServiceUnavailable
			if errors.Is(err, ErrVerifyRunning) {
				code = http.StatusConflict
			}
			writeJSON(w, code, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, res)
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if msg := g.notReady(); msg != "" {
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if g.conf().AdminPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway: admin server: %w", err)
	}
	return nil
}

// authorized wraps a POST route: with admin_token set, the request must carry it
// as a bearer token (401 otherwise).
func (g *Gateway) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := g.conf().AdminToken
		if token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="dynode-broadcaster admin"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "admin_token required: Authorization: Bearer <token>"})
				return
			}
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// notReady says why clients cannot be served correctly now, or "" when they can: no
// backend is up, or every backend up is out of sync (replies would come from a
// backend known to have missed writes).
func (g *Gateway) notReady() string {
	if len(g.all()) == 0 {
		return "" // raw mode connects per client
	}
	up, inSync := 0, 0
	for _, be := range g.all() {
		if be.up.Load() && !be.retired.Load() {
			up++
			if !be.outOfSync.Load() {
				inSync++
			}
		}
	}
	switch {
	case up == 0:
		return "no backend up"
	case inSync == 0:
		return fmt.Sprintf("no in-sync backend up: all %d backends up are out of sync (they missed writes)", up)
	}
	return ""
}

// statsCollector exposes Stats and backend states as Prometheus metrics, read at
// scrape time: the hot path only increments atomics.
type statsCollector struct{ g *Gateway }

var (
	descClients    = prometheus.NewDesc("dynode_clients", "Client connections open now.", nil, nil)
	descDormant    = prometheus.NewDesc("dynode_clients_dormant", "Idle client connections whose session went dormant (no goroutine).", nil, nil)
	descAccepted   = prometheus.NewDesc("dynode_clients_accepted_total", "Client connections accepted.", nil, nil)
	descRejected   = prometheus.NewDesc("dynode_clients_rejected_total", "Client connections refused by max_clients.", nil, nil)
	descProtoErr   = prometheus.NewDesc("dynode_protocol_errors_total", "Clients disconnected for malformed input.", nil, nil)
	descClientErr  = prometheus.NewDesc("dynode_client_errors_total", "Malformed memcached commands answered with an error line (the connection stays open).", nil, nil)
	descPanics     = prometheus.NewDesc("dynode_session_panics_total", "Client sessions closed after a recovered panic (a bug; the log has the stack). Other clients are unaffected.", nil, nil)
	descCommands   = prometheus.NewDesc("dynode_commands_total", "Client commands by class.", []string{"class"}, nil)
	descDivergence = prometheus.NewDesc("dynode_divergence_total", "Commands whose backends replied differently (not counting those explained by backends already known out of sync).", nil, nil)
	descDivClass   = prometheus.NewDesc("dynode_divergence_by_class_total", "Divergences by class: error_text (errors in different words), missing_vs_present (a key expiring about then, or data that already differed), other; known_out_of_sync (only backends already out of sync or resyncing differed: not in dynode_divergence_total).", []string{"class"}, nil)
	descDivScript  = prometheus.NewDesc("dynode_script_divergence_total", "Divergences of EVAL, EVALSHA and FCALL by script SHA1 or function name (scripts must be deterministic; see README).", []string{"script"}, nil)
	descOutOfSync  = prometheus.NewDesc("dynode_out_of_sync_events_total", "Backends that lost writes.", nil, nil)
	descRetried    = prometheus.NewDesc("dynode_reads_retried_total", "Reads sent again to another backend because theirs failed before replying (connection lost, or backend_timeout).", nil, nil)
	descVerify     = prometheus.NewDesc("dynode_verify_total", "Convergence check: rounds, keys compared, and keys found different (summed over backends).", []string{"what"}, nil)
	descSpills     = prometheus.NewDesc("dynode_backend_spills_total", "Times a backend fell behind and its queue spilled to backlog_dir (backlog_memory_bytes).", nil, nil)
	descResyncs    = prometheus.NewDesc("dynode_resyncs_total", "Backend resyncs by result: started, failed.", []string{"result"}, nil)
	descState      = prometheus.NewDesc("dynode_backend_state", "1 for the backend's current state: connecting, up, replaying, down, out_of_sync, resyncing, warming, stopped.", []string{"backend", "state"}, nil)
	descResyncByte = prometheus.NewDesc("dynode_backend_resync_bytes", "Bytes of the source's snapshot the backend has read in its running resync.", []string{"backend"}, nil)
	descBackendErr = prometheus.NewDesc("dynode_backend_unwaited_errors_total", "Error replies to writes no client waited for.", nil, nil)
	descBytes      = prometheus.NewDesc("dynode_backend_bytes_total", "Bytes to and from backends.", []string{"direction"}, nil)
	descRawBytes   = prometheus.NewDesc("dynode_raw_bytes_total", "protocol=raw: bytes from clients and to backends.", []string{"direction"}, nil)
	descRawMissed  = prometheus.NewDesc("dynode_raw_missed_bytes_total", "protocol=raw: client bytes a backend did not get.", nil, nil)
	descRawCut     = prometheus.NewDesc("dynode_raw_backends_cut_total", "protocol=raw: backend connections cut as too slow.", nil, nil)
	descUp         = prometheus.NewDesc("dynode_backend_up", "1 if the backend is connected.", []string{"backend"}, nil)
	descInSync     = prometheus.NewDesc("dynode_backend_in_sync", "0 once the backend lost writes.", []string{"backend"}, nil)
	descQueued     = prometheus.NewDesc("dynode_backend_queued_bytes", "Bytes waiting to be written (the backlog while down).", []string{"backend"}, nil)
	descLag        = prometheus.NewDesc("dynode_backend_lag_commands", "Commands a backend has yet to answer (in flight, queued, spilled): how far it is behind.", []string{"backend"}, nil)
	descInFlight   = prometheus.NewDesc("dynode_backend_in_flight", "Commands written, reply not yet read.", []string{"backend"}, nil)
	descLost       = prometheus.NewDesc("dynode_backend_lost_writes_total", "Writes a backend may not have applied (backlog full, or unacknowledged when its connection was lost).", []string{"backend"}, nil)
	descDiscErr    = prometheus.NewDesc("dynode_discovery_errors_total", "Backend discovery failures by source (http, dns, file): a new error, or a failure after a good list.", []string{"source"}, nil)
	descListChange = prometheus.NewDesc("dynode_backend_list_changed_timestamp_seconds", "When the backend list last changed (Unix time; 0: not since start).", nil, nil)
	descLatency    = prometheus.NewDesc("dynode_request_duration_seconds", "Client requests by the time from reading them to handing their replies to the client's connection, by class (the commands of a pipelined burst count with the burst's time; blocking commands, subscriptions and WAIT are not counted).", []string{"class"}, nil)
	descSource     = prometheus.NewDesc("dynode_backend_source", "1 for each backend, labelled with where its address came from: static, http, dns, file.", []string{"backend", "source"}, nil)
)

func (statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClients, descDormant, descAccepted, descRejected, descProtoErr, descClientErr, descPanics, descCommands,
		descDivergence, descDivClass, descDivScript, descOutOfSync, descSpills, descVerify, descRetried, descResyncs, descState, descResyncByte, descBackendErr, descBytes, descRawBytes, descRawMissed, descRawCut,
		descUp, descInSync, descQueued, descLag, descInFlight, descLost, descDiscErr, descListChange, descSource, descLatency} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := &c.g.stats
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descClients, s.ClientsConnected.Load())
	gauge(descDormant, s.ClientsDormant.Load())
	counter(descAccepted, s.ClientsAccepted.Load())
	counter(descRejected, s.ClientsRejected.Load())
	counter(descProtoErr, s.ProtocolErrors.Load())
	counter(descClientErr, s.ClientErrors.Load())
	counter(descPanics, s.SessionPanics.Load())
	for _, class := range []protocols.Class{protocols.Write, protocols.Read, protocols.Local, protocols.Unsupported} {
		counter(descCommands, s.CommandsOf(class), class.String())
	}
	for _, class := range []protocols.Class{protocols.Write, protocols.Read, protocols.Local} {
		buckets, count, sum := s.Latency.Snapshot(class)
		ch <- prometheus.MustNewConstHistogram(descLatency, count, sum, buckets, class.String())
	}
	counter(descDivergence, s.Divergences.Load())
	for class := range s.DivergencesByClass {
		counter(descDivClass, s.DivergencesByClass[class].Load(), DivergenceClass(class).String())
	}
	for script, n := range s.ScriptDivergences() {
		counter(descDivScript, n, script)
	}
	counter(descOutOfSync, s.OutOfSyncEvents.Load())
	counter(descRetried, s.ReadsRetried.Load())
	counter(descSpills, s.Spills.Load())
	counter(descVerify, s.VerifyRounds.Load(), "rounds")
	counter(descVerify, s.VerifyKeys.Load(), "keys")
	counter(descVerify, s.VerifyMismatches.Load(), "mismatches")
	counter(descResyncs, s.ResyncsStarted.Load(), "started")
	counter(descResyncs, s.ResyncsFailed.Load(), "failed")
	counter(descBackendErr, s.BackendErrors.Load())
	counter(descBytes, s.BackendBytesOut.Load(), "out")
	counter(descBytes, s.BackendBytesIn.Load(), "in")
	counter(descRawBytes, s.RawBytesIn.Load(), "in")
	counter(descRawBytes, s.RawBytesOut.Load(), "out")
	counter(descRawMissed, s.RawMissedBytes.Load())
	counter(descRawCut, s.RawBackendsCut.Load())
	for source, n := range c.g.DiscoveryErrors() {
		counter(descDiscErr, n, source)
	}
	var changed int64
	if t := c.g.ListChanged(); !t.IsZero() {
		changed = t.Unix()
	}
	gauge(descListChange, changed)
	for _, b := range c.g.Backends() {
		gauge(descSource, 1, b.Addr, b.Source)
		up, inSync := int64(0), int64(1)
		if b.Connected {
			up = 1
		}
		gauge(descState, 1, b.Addr, b.State)
		if b.Resync != nil && b.Resync.Finished.IsZero() {
			gauge(descResyncByte, b.Resync.Bytes, b.Addr)
		}
		if b.OutOfSync {
			inSync = 0
		}
		gauge(descUp, up, b.Addr)
		gauge(descInSync, inSync, b.Addr)
		gauge(descQueued, b.QueuedBytes, b.Addr)
		gauge(descInFlight, int64(b.InFlight), b.Addr)
		gauge(descLag, b.LagCommands, b.Addr)
		counter(descLost, b.LostWrites, b.Addr)
	}
}

// adminAddr is host:admin_port.
func (g *Gateway) adminAddr() string {
	return net.JoinHostPort(g.conf().Host, strconv.Itoa(g.conf().AdminPort))
}
