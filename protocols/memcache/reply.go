package memcache

import (
	"bytes"
	"strconv"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// ScanReply returns the length of the complete reply at the start of buf for a
// command whose replies are of the given kind; isErr reports ERROR, CLIENT_ERROR and
// SERVER_ERROR replies. protocols.ErrIncomplete: read more; n is then the length the
// reply is at least known to have when it stopped in a data block (0 otherwise), so a
// reader can make room for a large value at once. *protocols.ProtocolError: the
// backend sent something no command of this kind can get.
func ScanReply(kind ReplyKind, buf []byte) (n int, isErr bool, err error) {
	line, next, err := replyLine(buf, 0)
	if err != nil {
		return 0, false, err
	}
	if isErrorLine(line) {
		return next, true, nil
	}
	switch kind {
	case ReplyLine:
		return next, false, nil
	case ReplyMeta:
		if !bytes.HasPrefix(line, []byte("VA ")) {
			return next, false, nil
		}
		size, ok := sizeToken(line, 1)
		if !ok {
			return 0, false, malformed("VA")
		}
		return dataBlock(buf, next, size)
	case ReplyValues, ReplyStats:
		pos, cur := next, line
		for {
			switch {
			case bytes.Equal(cur, []byte("END")):
				return pos, false, nil
			case kind == ReplyValues && bytes.HasPrefix(cur, []byte("VALUE ")):
				size, ok := sizeToken(cur, 3)
				if !ok {
					return 0, false, malformed("VALUE")
				}
				end, _, err := dataBlock(buf, pos, size)
				if err != nil {
					return end, false, err
				}
				pos = end
			case kind == ReplyStats && pos == next && (bytes.Equal(cur, []byte("RESET")) || bytes.Equal(cur, []byte("OK"))):
				return pos, false, nil // "stats reset" -> RESET, "stats detail on|off" -> OK
			case kind == ReplyStats:
				// STAT lines, or ITEM lines (stats cachedump), PREFIX lines (stats
				// detail dump): every line up to END belongs to the reply.
			default:
				return 0, false, malformed(string(firstWord(cur)))
			}
			if cur, pos, err = replyLine(buf, pos); err != nil {
				return 0, false, err
			}
		}
	}
	return 0, false, malformed("reply")
}

// Visibility returns which backend replies to cmd the client sees, or nil when it
// sees every reply. A noreply command shows nothing, errors included (memcached's
// out_string sends nothing once a text command has asked for noreply); a quiet meta
// command hides the codes memcached itself suppresses in quiet mode (checked against
// memcached 1.6: EN for mg, HD for ms, md and ma).
func Visibility(cmd *Command) func(reply []byte) bool {
	switch {
	case cmd.NoReply:
		return nothing
	case !cmd.Quiet:
		return nil
	case cmd.Name == "mg":
		return hideEN
	case cmd.Name == "ms" || cmd.Name == "md" || cmd.Name == "ma":
		return hideHD
	}
	return nil
}

func nothing([]byte) bool      { return false }
func hideEN(reply []byte) bool { return !hasCode(reply, "EN") }
func hideHD(reply []byte) bool { return !hasCode(reply, "HD") }

// hasCode reports whether a meta reply's status code is code.
func hasCode(reply []byte, code string) bool {
	return len(reply) > 2 && string(reply[:2]) == code && (reply[2] == ' ' || reply[2] == '\r')
}

// WithoutEnd returns a retrieval reply without its final END line: the reply of one
// part of a split command, when the parts' replies are joined into one.
func WithoutEnd(reply []byte) []byte { return bytes.TrimSuffix(reply, []byte("END\r\n")) }

// Applied reports whether a server applied a conditional write (cas, or a meta
// command with C), judging by its reply: STORED, or a meta HD or VA.
func Applied(reply []byte) bool {
	return string(reply) == "STORED\r\n" || hasCode(reply, "HD") || hasCode(reply, "VA")
}

// Comparable appends to dst the reply without the fields that differ between
// servers holding the same data: the CAS unique of VALUE lines (gats), and the c
// (CAS), h (hit before), l (last access) and t (remaining TTL) flags of meta replies.
// ok is false, and dst returned as it is, when the reply has no such fields and can
// be compared as it is. Replies are compared in this form to find backends that
// diverge.
func Comparable(dst, reply []byte) (out []byte, ok bool) {
	meta := len(reply) > 3 && reply[2] == ' ' && isUpper(reply[0]) && isUpper(reply[1])
	if !meta && !bytes.HasPrefix(reply, []byte("VALUE ")) {
		return dst, false
	}
	for len(reply) > 0 {
		line := firstLine(reply)
		rest := reply[min(len(line)+2, len(reply)):]
		crlf := len(line)+2 <= len(reply) // the line is ended (a malformed last one may not be)
		size := -1
		switch {
		case bytes.HasPrefix(line, []byte("VALUE ")): // VALUE key flags bytes [cas]
			for i, tok := range tokens(line) {
				if i < 4 {
					dst = append(append(dst, tok...), ' ')
				}
				if i == 3 {
					size = blockSize(tok)
				}
			}
			dst = dst[:len(dst)-1]
			if crlf {
				dst = append(dst, '\r', '\n')
			}
		case meta && len(line) > 2:
			dst = append(dst, line[:2]...)
			for i, tok := range tokens(line[3:]) {
				if i == 0 && string(line[:2]) == "VA" {
					size = blockSize(tok)
				} else if len(tok) > 0 && bytes.IndexByte([]byte("chlt"), tok[0]) >= 0 {
					continue
				}
				dst = append(append(dst, ' '), tok...)
			}
			if crlf {
				dst = append(dst, '\r', '\n')
			}
			meta = false // only the first line is a meta status line
		default:
			dst = append(dst, line...)
			if crlf {
				dst = append(dst, '\r', '\n')
			}
		}
		if size >= 0 && size+2 <= len(rest) {
			dst = append(dst, rest[:size+2]...)
			rest = rest[size+2:]
		}
		reply = rest
	}
	return dst, true
}

// tokens yields the space-separated tokens of line with their index.
func tokens(line []byte) func(yield func(int, []byte) bool) {
	return func(yield func(int, []byte) bool) {
		for i := 0; len(line) > 0; i++ {
			tok := line
			if j := bytes.IndexByte(line, ' '); j >= 0 {
				tok, line = line[:j], line[j+1:]
			} else {
				line = nil
			}
			if !yield(i, tok) {
				return
			}
		}
	}
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }

// firstLine is reply up to its first CRLF (all of it when there is none).
func firstLine(reply []byte) []byte {
	if i := bytes.Index(reply, []byte("\r\n")); i >= 0 {
		return reply[:i]
	}
	return reply
}

func replyLine(buf []byte, from int) (line []byte, next int, err error) {
	i := bytes.IndexByte(buf[from:], '\n')
	if i < 0 {
		if len(buf)-from > MaxLineLen {
			return nil, 0, &protocols.ProtocolError{Msg: "SERVER_ERROR backend reply line too long"}
		}
		return nil, 0, protocols.ErrIncomplete
	}
	if i == 0 || buf[from+i-1] != '\r' {
		return nil, 0, &protocols.ProtocolError{Msg: "SERVER_ERROR backend reply line not ended by CRLF"}
	}
	return buf[from : from+i-1], from + i + 1, nil
}

// dataBlock checks size bytes plus CRLF at buf[at:] and returns where they end.
func dataBlock(buf []byte, at, size int) (int, bool, error) {
	end := at + size + 2
	if end > len(buf) {
		return end, false, protocols.ErrIncomplete // where it will end: see ScanReply
	}
	if buf[end-2] != '\r' || buf[end-1] != '\n' {
		return 0, false, malformed("data block")
	}
	return end, false, nil
}

// blockSize is a data length token's value, or -1 when it is not one memcached can
// send (not a number, negative, or over MaxValueLen: a huge one would overflow).
func blockSize(tok []byte) int {
	n, err := strconv.Atoi(string(tok))
	if err != nil || n < 0 || n > MaxValueLen {
		return -1
	}
	return n
}

// sizeToken parses the i-th space-separated token of line as a data length.
func sizeToken(line []byte, i int) (int, bool) {
	fields := bytes.Fields(line)
	if len(fields) <= i {
		return 0, false
	}
	n, err := strconv.Atoi(string(fields[i]))
	return n, err == nil && n >= 0 && n <= MaxValueLen
}

// Stat returns the value of "STAT name value" in a stats reply, or "".
func Stat(reply []byte, name string) string {
	for line := range bytes.Lines(reply) {
		if v, ok := bytes.CutPrefix(line, []byte("STAT "+name+" ")); ok {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// IsError reports whether a complete reply is an error (ERROR, CLIENT_ERROR or
// SERVER_ERROR).
func IsError(reply []byte) bool { return isErrorLine(firstLine(reply)) }

func isErrorLine(line []byte) bool {
	return bytes.Equal(line, []byte("ERROR")) || bytes.HasPrefix(line, []byte("CLIENT_ERROR")) ||
		bytes.HasPrefix(line, []byte("SERVER_ERROR"))
}

func firstWord(b []byte) []byte {
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		return b[:i]
	}
	return b
}

func malformed(what string) error {
	return &protocols.ProtocolError{Msg: "SERVER_ERROR malformed " + what + " in backend reply"}
}
