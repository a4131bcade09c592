package gateway

import (
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
}

// replyScanner finds where each backend reply ends; kind is the pending command's
// reply kind (ignored by self-describing protocols).
type replyScanner interface {
	scan(kind uint8, buf []byte) (n int, isErr bool, err error)
}

var respWire = wire{
	newScanner:  func() replyScanner { return &respScanner{} },
	appendError: func(dst []byte, msg string) []byte { return resp.AppendError(dst, "ERR "+msg) },
	tooLarge:    "Protocol error: request larger than max_request_bytes",
	newCodec:    newRespCodec,
}

var memcacheWire = wire{
	newScanner: func() replyScanner { return memcacheScanner{} },
	kinded:     true,
	comparable: memcache.Comparable,
	applied:    memcache.Applied,
	noop:       []byte("mn\r\n"),
	appendError: func(dst []byte, msg string) []byte {
		return append(append(append(dst, "SERVER_ERROR "...), msg...), "\r\n"...)
	},
	tooLarge: "SERVER_ERROR request larger than max_request_bytes",
	newCodec: func(s *session) clientCodec { return &memcacheCodec{s: s} },
}

type respScanner struct{ resp.ReplyScanner }

func (r *respScanner) scan(_ uint8, buf []byte) (int, bool, error) { return r.Scan(buf) }

type memcacheScanner struct{}

func (memcacheScanner) scan(kind uint8, buf []byte) (int, bool, error) {
	return memcache.ScanReply(memcache.ReplyKind(kind), buf)
}
