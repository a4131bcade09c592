package gateway

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// Stats are the gateway's counters. All fields are safe for concurrent use.
type Stats struct {
	ClientsConnected atomic.Int64 // client connections open now
	ClientsDormant   atomic.Int64 // of those, idle ones whose session is dormant (no goroutine)
	ClientsAccepted  atomic.Int64 // client connections accepted since start
	ClientsRejected  atomic.Int64 // connections refused by max_clients
	ProtocolErrors   atomic.Int64 // client connections closed for malformed input
	SessionPanics    atomic.Int64 // client sessions ended by a recovered panic (a bug: see the log)
	ClientErrors     atomic.Int64 // protocol=memcache: bad commands answered with an error line (the connection stays)
	Divergences      atomic.Int64 // commands whose backends replied differently
	// DivergencesByClass counts divergences by DivergenceClass.
	DivergencesByClass [numDivergenceClasses]atomic.Int64
	OutOfSyncEvents    atomic.Int64 // backends that went out of sync
	ResyncsStarted     atomic.Int64 // resyncs started (resync.go)
	ResyncsFailed      atomic.Int64 // resyncs that failed (the backend stays out of sync)
	ReadsRetried       atomic.Int64 // reads sent again because their backend failed before replying
	Spills             atomic.Int64 // times a backend fell behind and its queue spilled to backlog_dir
	VerifyRounds       atomic.Int64 // convergence check rounds (verify.go)
	VerifyKeys         atomic.Int64 // keys compared by them
	VerifyMismatches   atomic.Int64 // keys found different, summed over backends
	BackendErrors      atomic.Int64 // error replies to writes no client waited for
	BackendBytesOut    atomic.Int64 // bytes written to backends
	BackendBytesIn     atomic.Int64 // reply bytes read from backends
	Commands           [numClasses]atomic.Int64
	// Latency counts client requests by how long they took (latency.go).
	Latency        LatencyHistogram
	RawBytesIn     atomic.Int64 // protocol=raw: bytes read from clients
	RawBytesOut    atomic.Int64 // protocol=raw: bytes written to backends
	RawMissedBytes atomic.Int64 // protocol=raw: client bytes a backend did not get (down or cut)
	RawBackendsCut atomic.Int64 // protocol=raw: connections cut by raw_slow_backend=cut

	scriptMu          sync.Mutex       // guards scriptDivergences
	scriptDivergences map[string]int64 // by script SHA1 or function name (at most maxScriptLabels)
}

// maxScriptLabels bounds how many scripts are told apart in the divergence metric (a
// client sending endless distinct scripts must not grow it); the rest count as "other".
const maxScriptLabels = 1000

func (s *Stats) countScriptDivergence(script string) {
	s.scriptMu.Lock()
	defer s.scriptMu.Unlock()
	if s.scriptDivergences == nil {
		s.scriptDivergences = map[string]int64{}
	}
	if _, ok := s.scriptDivergences[script]; !ok && len(s.scriptDivergences) >= maxScriptLabels {
		script = "other"
	}
	s.scriptDivergences[script]++
}

// ScriptDivergences returns divergences counted per script SHA1 or function name.
func (s *Stats) ScriptDivergences() map[string]int64 {
	s.scriptMu.Lock()
	defer s.scriptMu.Unlock()
	return maps.Clone(s.scriptDivergences)
}

// CommandsOf returns how many commands of a class clients sent.
func (s *Stats) CommandsOf(c protocols.Class) int64 { return s.Commands[c].Load() }

// BackendStatus is a snapshot of one backend.
type BackendStatus struct {
	Addr string `json:"addr"`
	// Source is where the address came from: static (servers), http
	// (servers_autoupdate), dns (servers_dns) or file (servers_file).
	Source string `json:"source"`
	// Added is when the backend joined the list (the gateway's start for the first).
	Added   time.Time `json:"added"`
	Primary bool      `json:"primary"`
	// State is connecting, down or stopped while not connected; when connected, up,
	// or what its data is: resyncing, out_of_sync (it missed writes), warming
	// (memcached flushed by a resync), behind (its queue spills to backlog_dir) or
	// replaying (catching up on its backlog).
	State       string `json:"state"`
	Connected   bool   `json:"connected"`
	OutOfSync   bool   `json:"out_of_sync"`
	QueuedBytes int64  `json:"queued_bytes"` // bytes waiting to be written (the backlog while down)
	InFlight    int    `json:"in_flight"`    // commands written, reply not yet read
	// LagCommands is how many commands it has yet to answer: in flight, queued in
	// memory, and spilled to backlog_dir.
	LagCommands int64 `json:"lag_commands"`
	// Replies counts the replies read from it (commands it answered) since the start;
	// the rate of it is its ops/s.
	Replies int64 `json:"replies_total"`
	// Divergences counts commands where it sent a reply the majority did not (the
	// first backend of each minority reply is counted).
	Divergences int64     `json:"divergences_total"`
	LostWrites  int64     `json:"lost_writes_total"` // writes dropped (backlog full) or unacknowledged (connection lost)
	Connects    int64     `json:"connects_total"`
	Since       time.Time `json:"since"`   // when State last changed
	Process     string    `json:"process"` // the backend process last connected: Redis run_id, memcached pid and start
	// LastError and LastErrorAt: its last connection failure, or error reply to a
	// write no client waited for.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// OutOfSyncReason and OutOfSyncSince say why and since when it is out of sync.
	OutOfSyncReason string    `json:"out_of_sync_reason,omitempty"`
	OutOfSyncSince  time.Time `json:"out_of_sync_since,omitzero"`
	// Resync is the running or last resync of it.
	Resync *ResyncProgress `json:"resync,omitempty"`
}
