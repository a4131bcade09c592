package resp

import (
	"bytes"
	"strconv"
)

// Effect returns, for a write whose outcome depends on the server that runs it, the
// function that turns that server's reply into the command with the same effect for
// the others: what Redis itself propagates to its replicas instead of the command.
// It returns nil for every other command. The function holds copies of what it needs
// from args, which may alias a buffer that is reused.
//
//	SPOP key [count]          -> SREM key <members popped>       (nothing if none)
//	XADD key ... * | ms-* ... -> XADD key ... <ID assigned> ...   (nothing on nil)
//	INCRBYFLOAT key incr      -> SET key <result> KEEPTTL
//	HINCRBYFLOAT key f incr   -> HSET key f <result>
//
// The reply is the authority's, already known not to be an error.
func Effect(name string, args [][]byte) func(reply []byte) ([]byte, bool) {
	switch name {
	case "SPOP":
		if len(args) < 2 || len(args) > 3 {
			return nil
		}
		key := bytes.Clone(args[1])
		return func(reply []byte) ([]byte, bool) {
			members, ok := bulks(reply)
			if !ok || len(members) == 0 {
				return nil, false
			}
			return AppendCommand(nil, append([][]byte{[]byte("SREM"), key}, members...)), true
		}
	case "INCRBYFLOAT":
		if len(args) != 3 {
			return nil
		}
		key := bytes.Clone(args[1])
		return func(reply []byte) ([]byte, bool) {
			v, ok := bulk(reply)
			if !ok || v == nil {
				return nil, false
			}
			return AppendCommand(nil, [][]byte{[]byte("SET"), key, v, []byte("KEEPTTL")}), true
		}
	case "HINCRBYFLOAT":
		if len(args) != 4 {
			return nil
		}
		key, field := bytes.Clone(args[1]), bytes.Clone(args[2])
		return func(reply []byte) ([]byte, bool) {
			v, ok := bulk(reply)
			if !ok || v == nil {
				return nil, false
			}
			return AppendCommand(nil, [][]byte{[]byte("HSET"), key, field, v}), true
		}
	case "XCLAIM":
		return xclaimEffect(args)
	case "XAUTOCLAIM":
		return xautoclaimEffect(args)
	case "XADD":
		at := xaddIDIndex(args)
		if at < 0 || !autoID(args[at]) {
			return nil // an explicit ID: the command is deterministic as it is
		}
		own := cloneArgs(args)
		return func(reply []byte) ([]byte, bool) {
			id, ok := bulk(reply)
			if !ok || id == nil {
				return nil, false // NOMKSTREAM on a missing key: nothing was added
			}
			withID := append([][]byte(nil), own...)
			withID[at] = id
			return AppendCommand(nil, withID), true
		}
	}
	return nil
}

// xaddIDIndex returns the index of XADD's ID argument, or -1 if the arguments do not
// reach it: XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] id ...
func xaddIDIndex(args [][]byte) int {
	i := 2
	for i < len(args) {
		var buf [16]byte
		switch string(upper(buf[:0], args[i][:min(len(args[i]), 16)])) {
		case "NOMKSTREAM":
			i++
		case "MAXLEN", "MINID":
			i++
			if i < len(args) && (string(args[i]) == "=" || string(args[i]) == "~") {
				i++
			}
			i++ // threshold
		case "LIMIT":
			i += 2
		default:
			return i
		}
	}
	return -1
}

// autoID reports whether an XADD ID is chosen by the server: "*" or "<ms>-*".
func autoID(id []byte) bool {
	return string(id) == "*" || bytes.HasSuffix(id, []byte("-*"))
}

func cloneArgs(args [][]byte) [][]byte {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(args))
	for i, a := range args {
		buf = append(buf, a...)
		out[i] = buf[len(buf)-len(a):]
	}
	return out
}

// bulk returns a bulk string reply's value; nil for a null reply; ok false for any
// other reply.
func bulk(reply []byte) (v []byte, ok bool) {
	if len(reply) >= 3 && (string(reply[:3]) == "$-1" || reply[0] == '_') {
		return nil, true
	}
	if len(reply) < 4 || reply[0] != '$' {
		return nil, false
	}
	i := bytes.IndexByte(reply, '\r')
	n, ok := parseInt(reply[1:i])
	if !ok || n < 0 || i+2+int(n)+2 > len(reply) {
		return nil, false
	}
	return bytes.Clone(reply[i+2 : i+2+int(n)]), true
}

// bulks returns the bulk strings of a reply that is one bulk string, a null, or an
// array or set of bulk strings (SPOP without and with a count).
func bulks(reply []byte) ([][]byte, bool) {
	if len(reply) == 0 {
		return nil, false
	}
	if reply[0] != '*' && reply[0] != '~' {
		v, ok := bulk(reply)
		if !ok || v == nil {
			return nil, ok
		}
		return [][]byte{v}, true
	}
	i := bytes.IndexByte(reply, '\r')
	n, ok := parseInt(reply[1:i])
	if !ok {
		return nil, false
	}
	var out [][]byte
	rest := reply[i+2:]
	for range max(n, 0) {
		end, _, err := ScanReply(rest)
		if err != nil {
			return nil, false
		}
		v, ok := bulk(rest[:end])
		if !ok || v == nil {
			return nil, false
		}
		out = append(out, v)
		rest = rest[end:]
	}
	return out, true
}

// XClaimTime rewrites XCLAIM and XAUTOCLAIM for the authority so the delivery time it
// sets is the gateway's (nowMillis) rather than each server's clock: XCLAIM's IDLE
// becomes TIME now-idle, and a missing TIME is added (XAUTOCLAIM has no such option:
// it is left as sent). It appends the frame to dst and reports whether it changed.
func XClaimTime(dst []byte, name string, args [][]byte, nowMillis int64) ([]byte, bool) {
	if name != "XCLAIM" || len(args) < 6 {
		return dst, false
	}
	out := append([][]byte(nil), args...)
	for i := 6; i < len(out); i++ {
		var buf [16]byte
		switch string(upper(buf[:0], out[i][:min(len(out[i]), len(buf))])) {
		case "TIME":
			return dst, false // already absolute
		case "IDLE":
			if i+1 >= len(out) {
				return dst, false
			}
			idle, ok := string2ll(out[i+1])
			if !ok {
				return dst, false
			}
			out[i], out[i+1] = []byte("TIME"), strconv.AppendInt(nil, nowMillis-max(idle, 0), 10)
			return AppendCommand(dst, out), true
		case "RETRYCOUNT", "LASTID":
			i++
		}
	}
	out = append(out, []byte("TIME"), strconv.AppendInt(nil, nowMillis, 10))
	return AppendCommand(dst, out), true
}

// xclaimEffect: XCLAIM key group consumer min-idle id... [options]. The others claim
// exactly the IDs the authority claimed, whatever their own idle times say: min-idle
// 0, the claimed IDs, the same options (TIME as rewritten by XClaimTime).
func xclaimEffect(args [][]byte) func([]byte) ([]byte, bool) {
	if len(args) < 6 {
		return nil
	}
	firstOpt := len(args)
	for i := 5; i < len(args); i++ {
		if !looksLikeID(args[i]) {
			firstOpt = i
			break
		}
	}
	head, opts := cloneArgs(args[:4]), cloneArgs(args[firstOpt:])
	return func(reply []byte) ([]byte, bool) {
		ids, ok := claimedIDs(reply)
		if !ok || len(ids) == 0 {
			return nil, false
		}
		out := append(append(append(append([][]byte(nil), head...), []byte("0")), ids...), opts...)
		return AppendCommand(nil, out), true
	}
}

// xautoclaimEffect: XAUTOCLAIM key group consumer min-idle start [COUNT n] [JUSTID]
// replies [next, claimed, deleted]. The others get XCLAIM of the claimed IDs (min-idle
// 0) and XACK of the deleted ones, which left the authority's pending list.
func xautoclaimEffect(args [][]byte) func([]byte) ([]byte, bool) {
	if len(args) < 6 {
		return nil
	}
	key, group, consumer := bytes.Clone(args[1]), bytes.Clone(args[2]), bytes.Clone(args[3])
	justID := false
	for _, a := range args[6:] {
		justID = justID || bytes.EqualFold(a, []byte("JUSTID"))
	}
	return func(reply []byte) ([]byte, bool) {
		parts, ok := elements(reply)
		if !ok || len(parts) < 2 {
			return nil, false
		}
		claimed, ok := claimedIDs(parts[1])
		if !ok {
			return nil, false
		}
		var deleted [][]byte
		if len(parts) > 2 {
			if deleted, ok = bulks(parts[2]); !ok {
				return nil, false
			}
		}
		var out []byte
		if len(claimed) > 0 {
			cmd := append([][]byte{[]byte("XCLAIM"), key, group, consumer, []byte("0")}, claimed...)
			if justID {
				cmd = append(cmd, []byte("JUSTID"))
			}
			out = AppendCommand(out, cmd)
		}
		if len(deleted) > 0 {
			out = AppendCommand(out, append([][]byte{[]byte("XACK"), key, group}, deleted...))
		}
		return out, out != nil
	}
}

// claimedIDs reads the IDs of an XCLAIM reply: IDs (JUSTID) or [id, fields] entries.
func claimedIDs(reply []byte) ([][]byte, bool) {
	entries, ok := elements(reply)
	if !ok {
		return nil, false
	}
	ids := make([][]byte, 0, len(entries))
	for _, e := range entries {
		if e[0] == '$' {
			id, ok := bulk(e)
			if !ok || id == nil {
				return nil, false
			}
			ids = append(ids, id)
			continue
		}
		fields, ok := elements(e)
		if !ok || len(fields) == 0 {
			return nil, false
		}
		id, ok := bulk(fields[0])
		if !ok || id == nil {
			return nil, false
		}
		ids = append(ids, id)
	}
	return ids, true
}

// elements splits an array reply into its elements' bytes.
func elements(reply []byte) ([][]byte, bool) {
	if len(reply) == 0 || reply[0] != '*' {
		return nil, false
	}
	i := bytes.IndexByte(reply, '\r')
	n, ok := parseInt(reply[1:i])
	if !ok {
		return nil, false
	}
	var out [][]byte
	rest := reply[i+2:]
	for range max(n, 0) {
		end, _, err := ScanReply(rest)
		if err != nil {
			return nil, false
		}
		out = append(out, rest[:end])
		rest = rest[end:]
	}
	return out, true
}

// looksLikeID reports whether an argument is a stream ID (ms or ms-seq), not an option.
func looksLikeID(b []byte) bool {
	if len(b) == 0 || b[0] < '0' || b[0] > '9' {
		return false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}
