package gateway

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/memcache"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// wire is what the engine needs to know of the protocol it speaks to clients and
// backends (protocol=redis or memcache). Everything protocol-specific the sequencer,
// backends and collector use goes through it; sessions use their clientCodec.
type wire struct {
	// newScanner returns a reply scanner for one backend connection.
	newScanner func() replyScanner
	// kinded: where a reply ends depends on the command it answers (memcached), so
	// the reader scans each reply with its pending command's kind.
	kinded bool
	// comparable: see batchSettings.comparable.
	comparable func(dst, reply []byte) ([]byte, bool)
	// applied reports whether the authority applied a conditional write (by effect).
	applied func(reply []byte) bool
	// noop is a command with exactly one reply and no effect, written in place of an
	// unconditional form whose condition failed on the authority.
	noop []byte
	// appendError appends an error reply the gateway itself sends to a client.
	appendError func(dst []byte, msg string) []byte
	// tooLarge is the protocol error for a request over max_request_bytes.
	tooLarge string
	// newCodec returns the client-side codec of one session.
	newCodec func(s *session) clientCodec
	// probe is a command with one reply and no effect, sent on every new backend
	// connection before anything else: a backend is up once it answers it.
	probe []byte
	// busy reports whether an error reply means the backend cannot serve yet but will
	// (Redis loading its dataset or running a script): wait, do not fail.
	busy func(reply []byte) bool
	// stateError reports whether an error reply to a write means the server refused
	// it for its own state (out of memory, loading, read-only, no such script...), not
	// for the command: another server would have applied it, so it is a lost write.
	stateError func(reply []byte) bool
	// isError reports whether a complete reply is an error reply.
	isError func(reply []byte) bool
	// missing reports whether a reply means "no such key or value".
	missing func(reply []byte) bool
	// identify asks a backend which process it is, after the probe; identifyKind is
	// its reply kind, and parseIdentity reads the identity from the reply ("" if none).
	identify      []byte
	identifyKind  uint8
	parseIdentity func(reply []byte) string
}

// replyScanner finds where each backend reply ends; kind is the pending command's
// reply kind (ignored by self-describing protocols).
type replyScanner interface {
	scan(kind uint8, buf []byte) (n int, isErr bool, err error)
	// need is, after scan found the reply incomplete, how long it is at least
	// known to be (0: not known).
	need() int
	// wholeLen is, after scan found the reply at buf[0] incomplete, how long the
	// reply is when it holds one value, as the common large reply does (a Redis
	// bulk string, a memcached get of one key), else 0. A reader may then read the
	// reply alone into a buffer of that length; a reply that turns out to go on is
	// read on as usual.
	wholeLen(buf []byte) int
}

var respWire = wire{
	newScanner:  func() replyScanner { return &respScanner{} },
	appendError: func(dst []byte, msg string) []byte { return resp.AppendError(dst, "ERR "+msg) },
	tooLarge:    "Protocol error: request larger than max_request_bytes",
	newCodec:    newRespCodec,
	noop:        []byte("*1\r\n$4\r\nPING\r\n"),
	probe:       []byte("*1\r\n$4\r\nPING\r\n"),
	busy:        func(r []byte) bool { return hasAnyPrefix(r, "-LOADING", "-BUSY ", "-BUSY\r") },
	stateError: func(r []byte) bool {
		return hasAnyPrefix(r, "-LOADING", "-BUSY", "-OOM", "-READONLY", "-MISCONF", "-NOSCRIPT",
			"-MASTERDOWN", "-NOREPLICAS", "-NOAUTH", "-NOPERM", "-TRYAGAIN", "-CLUSTERDOWN", "-MOVED", "-ASK ")
	},
	isError: func(r []byte) bool { return len(r) > 0 && (r[0] == '-' || r[0] == '!') },
	missing: func(r []byte) bool {
		switch string(r) {
		case "$-1\r\n", "*-1\r\n", "_\r\n", ":0\r\n", "*0\r\n", "+none\r\n", ":-2\r\n":
			return true
		}
		return false
	},
	// INFO server's run_id is new for every redis-server process.
	identify: []byte("*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"),
	parseIdentity: func(r []byte) string {
		if id := infoField(r, "run_id"); id != "" {
			return "run_id " + id
		}
		return ""
	},
}

// infoField returns the value of "name:value" in an INFO reply, or "".
func infoField(reply []byte, name string) string {
	for line := range bytes.Lines(reply) {
		if v, ok := bytes.CutPrefix(line, []byte(name+":")); ok {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

var memcacheWire = wire{
	newScanner: func() replyScanner { return &memcacheScanner{} },
	kinded:     true,
	comparable: memcache.Comparable,
	applied:    memcache.Applied,
	noop:       []byte("mn\r\n"),
	appendError: func(dst []byte, msg string) []byte {
		return append(append(append(dst, "SERVER_ERROR "...), msg...), "\r\n"...)
	},
	tooLarge: "SERVER_ERROR request larger than max_request_bytes",
	newCodec: func(s *session) clientCodec { return &memcacheCodec{s: s} },
	probe:    []byte("version\r\n"),
	busy:     func([]byte) bool { return false },
	// memcached refuses a storage command for its state only when out of memory (an
	// item too large is refused by every server configured alike).
	stateError: func(r []byte) bool { return hasAnyPrefix(r, "SERVER_ERROR out of memory") },
	isError:    memcache.IsError,
	missing: func(r []byte) bool {
		switch string(r) {
		case "END\r\n", "NOT_FOUND\r\n", "EN\r\n", "NF\r\n":
			return true
		}
		return false
	},
	// A memcached process is its pid and its start time (time - uptime: both come from
	// the same clock tick, so the difference is constant for a process).
	identify:     []byte("stats\r\n"),
	identifyKind: uint8(memcache.ReplyStats),
	parseIdentity: func(r []byte) string {
		pid, now, up := memcache.Stat(r, "pid"), memcache.Stat(r, "time"), memcache.Stat(r, "uptime")
		t, err1 := strconv.ParseInt(now, 10, 64)
		u, err2 := strconv.ParseInt(up, 10, 64)
		if pid == "" || err1 != nil || err2 != nil {
			return ""
		}
		return "pid " + pid + " started " + strconv.FormatInt(t-u, 10)
	},
}

// hasAnyPrefix reports whether b starts with one of the prefixes.
func hasAnyPrefix(b []byte, prefixes ...string) bool {
	for _, p := range prefixes {
		if len(b) >= len(p) && string(b[:len(p)]) == p {
			return true
		}
	}
	return false
}

type respScanner struct{ resp.ReplyScanner }

func (r *respScanner) scan(_ uint8, buf []byte) (int, bool, error) { return r.Scan(buf) }

func (r *respScanner) need() int { return r.Need() }

// wholeLen: a bulk string's length is exact once its header is read.
func (r *respScanner) wholeLen(buf []byte) int {
	if len(buf) > 0 && buf[0] == '$' {
		return r.Need()
	}
	return 0
}

type memcacheScanner struct{ needed int }

func (m *memcacheScanner) scan(kind uint8, buf []byte) (int, bool, error) {
	n, isErr, err := memcache.ScanReply(memcache.ReplyKind(kind), buf)
	if m.needed = 0; errors.Is(err, protocols.ErrIncomplete) {
		m.needed, n = n, 0
	}
	return n, isErr, err
}

func (m *memcacheScanner) need() int { return m.needed }

// wholeLen: a meta get's value ends the reply; a get's is followed by END when it
// is the only one.
func (m *memcacheScanner) wholeLen(buf []byte) int {
	switch {
	case m.needed == 0:
		return 0
	case bytes.HasPrefix(buf, []byte("VA ")):
		return m.needed
	case bytes.HasPrefix(buf, []byte("VALUE ")):
		return m.needed + len("END\r\n")
	}
	return 0
}
