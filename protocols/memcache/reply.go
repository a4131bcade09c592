package memcache

import (
	"bytes"
	"strconv"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// ScanReply returns the length of the complete reply at the start of buf for a
// command whose replies are of the given kind; isErr reports ERROR, CLIENT_ERROR and
// SERVER_ERROR replies. protocols.ErrIncomplete: read more. *protocols.ProtocolError:
// the backend sent something no command of this kind can get.
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
					return 0, false, err
				}
				pos = end
			case kind == ReplyStats && bytes.HasPrefix(cur, []byte("STAT ")):
			case pos == next && kind == ReplyStats:
				return pos, false, nil // "stats reset" -> RESET, "stats detail on" -> OK
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

// ClientSees reports whether the client should receive a backend reply to cmd:
// never for noreply commands, and for quiet meta commands not the nominal codes
// memcached itself would have suppressed (mg: EN; ms: HD; md and ma: HD and NF).
// Errors are always seen.
func ClientSees(cmd *Command, reply []byte) bool {
	if cmd.NoReply {
		return false
	}
	if !cmd.Quiet || len(reply) < 2 {
		return true
	}
	code := string(reply[:2])
	switch cmd.Name {
	case "mg":
		return code != "EN"
	case "ms":
		return code != "HD"
	case "md", "ma":
		return code != "HD" && code != "NF"
	}
	return true
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
		return 0, false, protocols.ErrIncomplete
	}
	if buf[end-2] != '\r' || buf[end-1] != '\n' {
		return 0, false, malformed("data block")
	}
	return end, false, nil
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
