package resp

import (
	"bytes"
	"errors"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// Limits on what a reply may declare, so a broken backend cannot make the gateway
// wait for, or account for, absurd sizes. They are above anything Redis sends: a
// reply the gateway refuses costs the backend connection (it cannot be resynchronised
// mid-stream), so the scanner accepts every reply Redis can produce. Nesting has no
// limit of its own: the scanner keeps no recursion, only a counter per open aggregate,
// and each level needs bytes that are already buffered.
const (
	MaxBulkLen   = 512 << 20 // Redis's proto-max-bulk-len default (a client request's bulk)
	maxReplyBulk = 1 << 32   // a bulk or verbatim reply: Lua can return strings beyond 512 MiB
	MaxArrayLen  = 1 << 32   // elements in one aggregate
	maxLineBytes = 1 << 32   // a simple string or error line (Lua's error_reply has no limit)
)

// ReplyScanner finds reply boundaries in a backend's byte stream. It understands
// every RESP2 and RESP3 type:
//
//	+OK\r\n  -ERR x\r\n  :1\r\n  $3\r\nfoo\r\n  *2\r\n...  (RESP2)
//	_\r\n  #t\r\n  ,1.5\r\n  (12345\r\n  !3\r\nerr\r\n  =7\r\ntxt:abc\r\n
//	%1\r\n...  ~2\r\n...  >3\r\n...  |1\r\n... (attribute, then the reply)  (RESP3)
//
// It tells an incomplete reply (protocols.ErrIncomplete) from a malformed one
// (*protocols.ProtocolError), and it resumes where it stopped: after ErrIncomplete,
// call Scan again with the same reply start and more bytes, and elements already
// scanned are not scanned again. The zero value is ready to use.
type ReplyScanner struct {
	pos      int     // bytes of the current reply scanned so far (whole elements only)
	searched int     // bytes before this offset hold no line end of the element at pos
	stack    []int64 // elements still expected by each open aggregate
	need     int     // see Need
}

// Need is, after Scan returned ErrIncomplete, how long the reply is at least known
// to be (up to the end of the bulk it stopped in), else 0: a reader can make room
// for a large bulk at once instead of growing step by step.
func (s *ReplyScanner) Need() int { return s.need }

// Scan looks for the end of the reply that starts at buf[0]. It returns the reply's
// length n once buf holds all of it; the scanner is then ready for the next reply
// (which starts at buf[n]). isErr reports a top-level error reply ('-' or '!').
func (s *ReplyScanner) Scan(buf []byte) (n int, isErr bool, err error) {
	s.need = 0
	for {
		if s.pos >= len(buf) {
			return 0, false, protocols.ErrIncomplete
		}
		end, children, err := scanElement(buf, s.pos, max(s.pos+1, s.searched))
		if err == errNoLineEnd {
			s.searched = len(buf) // a long line: search only the new bytes next time
			return 0, false, protocols.ErrIncomplete
		}
		if err != nil {
			if err != protocols.ErrIncomplete {
				s.reset()
			}
			s.need = end // a bulk's end; 0 otherwise
			return 0, false, err
		}
		s.pos, s.searched = end, 0
		if children > 0 {
			s.stack = append(s.stack, children)
			continue
		}
		// A complete element closes every aggregate it completes.
		for len(s.stack) > 0 {
			top := len(s.stack) - 1
			s.stack[top]--
			if s.stack[top] > 0 {
				break
			}
			s.stack = s.stack[:top]
		}
		if len(s.stack) == 0 {
			n = s.pos
			s.reset()
			return n, buf[0] == '-' || buf[0] == '!', nil
		}
	}
}

func (s *ReplyScanner) reset() {
	s.pos, s.searched = 0, 0
	if cap(s.stack) > 1024 {
		s.stack = nil
	}
	s.stack = s.stack[:0]
}

// ScanReply returns the length of the complete reply at the start of buf.
func ScanReply(buf []byte) (n int, isErr bool, err error) {
	var s ReplyScanner
	return s.Scan(buf)
}

// scanElement scans one element header (and a bulk's payload) at buf[at:]. It returns
// where the element ends and, for a non-empty aggregate, how many child elements follow.
// The line end is searched from searchFrom on (bytes before it are known to hold none).
func scanElement(buf []byte, at, searchFrom int) (end int, children int64, err error) {
	line, next, err := readLine(buf, at+1, searchFrom)
	if err != nil {
		return 0, 0, err
	}
	switch buf[at] {
	case '+', '-', '_', '#', ',', '(':
		// Simple types; the line is the value. Validate the few with fixed shapes.
		if buf[at] == '_' && len(line) != 0 || buf[at] == '#' && !(len(line) == 1 && (line[0] == 't' || line[0] == 'f')) {
			return 0, 0, malformed(buf[at])
		}
		return next, 0, nil
	case ':':
		if _, ok := parseInt(line); !ok {
			return 0, 0, malformed(':')
		}
		return next, 0, nil
	case '$', '!', '=':
		n, ok := parseInt(line)
		if !ok || n < -1 || n > maxReplyBulk || (n == -1 && buf[at] != '$') {
			return 0, 0, malformed(buf[at])
		}
		if n == -1 {
			return next, 0, nil
		}
		end = next + int(n) + 2
		if end > len(buf) {
			return end, 0, protocols.ErrIncomplete // where it will end, for Need
		}
		if buf[end-2] != '\r' || buf[end-1] != '\n' {
			return 0, 0, malformed(buf[at])
		}
		return end, 0, nil
	case '*', '%', '~', '>', '|':
		n, ok := parseInt(line)
		if !ok || n < -1 || n > MaxArrayLen || (n == -1 && buf[at] != '*') {
			return 0, 0, malformed(buf[at])
		}
		switch buf[at] {
		case '%':
			n *= 2
		case '|':
			n = n*2 + 1 // the attribute map, then the reply it annotates
		}
		if n <= 0 {
			return next, 0, nil
		}
		return next, n, nil
	}
	return 0, 0, &protocols.ProtocolError{Msg: "Protocol error: unknown reply type byte " + quoteByte(buf[at])}
}

// errNoLineEnd is ErrIncomplete for a line whose end has not arrived yet.
var errNoLineEnd = errors.New("incomplete line")

// readLine returns the bytes of buf[from:] up to "\r\n" and the index after it,
// searching for the line end from searchFrom (>= from) on.
func readLine(buf []byte, from, searchFrom int) (line []byte, next int, err error) {
	if searchFrom > len(buf) {
		return nil, 0, protocols.ErrIncomplete
	}
	i := bytes.IndexByte(buf[searchFrom:], '\n')
	if i < 0 {
		if len(buf)-from > maxLineBytes {
			return nil, 0, &protocols.ProtocolError{Msg: "Protocol error: reply line too long"}
		}
		return nil, 0, errNoLineEnd
	}
	i += searchFrom - from
	if i == 0 || buf[from+i-1] != '\r' {
		return nil, 0, &protocols.ProtocolError{Msg: "Protocol error: reply line not ended by CRLF"}
	}
	return buf[from : from+i-1], from + i + 1, nil
}

func malformed(typ byte) error {
	return &protocols.ProtocolError{Msg: "Protocol error: malformed " + quoteByte(typ) + " reply"}
}

func quoteByte(b byte) string {
	const hex = "0123456789abcdef"
	if b >= 0x20 && b < 0x7f {
		return "'" + string(rune(b)) + "'"
	}
	return "0x" + string([]byte{hex[b>>4], hex[b&15]})
}

// parseInt parses a decimal int64 with an optional minus sign; no spaces, no plus.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if neg {
		return -n, true
	}
	return n, true
}
