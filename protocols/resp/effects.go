package resp

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
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
//
// Approximate trimming (XADD or XTRIM with MAXLEN ~ or MINID ~) trims what the
// server's memory layout allows: for those, probe is a command the authority runs
// right after (XLEN, or the stream's first entry), and the effect trims exactly as
// far, as Redis rewrites the command for its replicas. probe is nil otherwise, and the
// function is then called with a nil probe reply.
//
// withoutProbe asks for an effect that needs no probe (inside MULTI, where none can
// run): approximate trimming then stays approximate (alike on backends with the same
// stream-node settings and history), while XADD's ID is still the authority's.
func Effect(name string, args [][]byte, withoutProbe bool) (of func(reply, probe []byte) ([]byte, bool), probe []byte) {
	if name == "XADD" || name == "XTRIM" {
		return streamEffect(name, args, withoutProbe)
	}
	f := simpleEffect(name, args)
	if f == nil {
		return nil, nil
	}
	return func(reply, _ []byte) ([]byte, bool) { return f(reply) }, nil
}

// simpleEffect is Effect for the commands whose effect follows from their reply.
func simpleEffect(name string, args [][]byte) func(reply []byte) ([]byte, bool) {
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
	}
	return nil
}

// streamEffect handles XADD with a server-chosen ID and XADD or XTRIM with
// approximate trimming.
func streamEffect(name string, args [][]byte, withoutProbe bool) (func(reply, probe []byte) ([]byte, bool), []byte) {
	at := -1 // XADD's ID
	if name == "XADD" {
		if at = xaddIDIndex(args); at < 0 {
			return nil, nil
		}
	}
	trim, approx := trimIndex(args, name)
	approx = approx && !withoutProbe
	auto := at >= 0 && autoID(args[at])
	if !auto && !approx {
		return nil, nil // explicit ID, exact trim: deterministic as sent
	}
	own := cloneArgs(args)
	var probe []byte
	if approx {
		if bytes.EqualFold(own[trim], []byte("MINID")) {
			probe = AppendCommand(nil, [][]byte{[]byte("XRANGE"), own[1], []byte("-"), []byte("+"), []byte("COUNT"), []byte("1")})
		} else {
			probe = AppendCommand(nil, [][]byte{[]byte("XLEN"), own[1]})
		}
	}
	return func(reply, probed []byte) ([]byte, bool) {
		out := append([][]byte(nil), own...)
		if name == "XADD" {
			id, ok := bulk(reply)
			if !ok || id == nil {
				return nil, false // NOMKSTREAM on a missing key: nothing was added
			}
			out[at] = id
		}
		if approx {
			exact, ok := trimmedTo(own[trim], probed)
			if !ok {
				return nil, false
			}
			// "MAXLEN ~ n [LIMIT c]" -> "MAXLEN = <exact>", LIMIT dropped (it needs ~).
			rest := out[trim+3:]
			if len(rest) >= 2 && bytes.EqualFold(rest[0], []byte("LIMIT")) {
				rest = rest[2:]
			}
			out = append(append(out[:trim+1:trim+1], []byte("="), exact), rest...)
		}
		return AppendCommand(nil, out), true
	}, probe
}

// trimIndex finds the MAXLEN or MINID option and whether it is approximate ("~").
func trimIndex(args [][]byte, name string) (int, bool) {
	from := 2
	for i := from; i < len(args); i++ {
		if bytes.EqualFold(args[i], []byte("MAXLEN")) || bytes.EqualFold(args[i], []byte("MINID")) {
			return i, i+2 < len(args) && string(args[i+1]) == "~"
		}
		if name == "XADD" && i >= xaddIDIndex(args) {
			break
		}
	}
	return -1, false
}

// trimmedTo reads the exact threshold from the authority's probe reply: its length
// (MAXLEN) or its first entry's ID (MINID; an empty stream keeps MINID as 0).
func trimmedTo(opt, probed []byte) ([]byte, bool) {
	if bytes.EqualFold(opt, []byte("MAXLEN")) {
		if len(probed) < 3 || probed[0] != ':' {
			return nil, false
		}
		return bytes.Clone(probed[1 : len(probed)-2]), true
	}
	entries, ok := elements(probed)
	if !ok {
		return nil, false
	}
	if len(entries) == 0 {
		return []byte("0"), true
	}
	ids, ok := claimedIDs(probed)
	if !ok || len(ids) == 0 {
		return nil, false
	}
	return ids[0], true
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
	elems, ok := elements(reply)
	if !ok {
		return nil, false
	}
	out := make([][]byte, 0, len(elems))
	for _, e := range elems {
		v, ok := bulk(e)
		if !ok || v == nil {
			return nil, false
		}
		out = append(out, v)
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
// replies [next, claimed, deleted]. The others get one XCLAIM (one command: one reply
// for the one queue entry) of the claimed and the deleted IDs with min-idle 0: Redis
// 7.0's XCLAIM claims the first and drops the second from the pending list, as the
// authority's XAUTOCLAIM did.
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
		if len(claimed)+len(deleted) == 0 {
			return nil, false
		}
		cmd := append(append([][]byte{[]byte("XCLAIM"), key, group, consumer, []byte("0")}, claimed...), deleted...)
		if justID {
			cmd = append(cmd, []byte("JUSTID"))
		}
		return AppendCommand(nil, cmd), true
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

// Bulks returns the values of a reply that is one bulk string, a null, or an array or
// set of bulk strings.
func Bulks(reply []byte) ([][]byte, bool) { return bulks(reply) }

// BulkValue returns a bulk string reply's value (nil for a null); ok false for any
// other reply.
func BulkValue(reply []byte) ([]byte, bool) { return bulk(reply) }

// Pairs splits a RESP3 map reply, or a RESP2 array standing for one, into its keys
// and values, alternating.
func Pairs(reply []byte) ([][]byte, bool) {
	if len(reply) > 0 && reply[0] == '%' {
		i := bytes.IndexByte(reply, '\r')
		n, ok := parseInt(reply[1:i])
		if !ok || n < 0 {
			return nil, false
		}
		return elementsAfter(reply[i+2:], 2*n)
	}
	return elements(reply)
}

// Elements splits an array reply into its elements' bytes (ok false for any other
// reply, a nil array included).
func Elements(reply []byte) ([][]byte, bool) { return elements(reply) }

// elements splits an array (or RESP3 set) reply into its elements' bytes; ok is
// false for a nil array and for any other reply.
func elements(reply []byte) ([][]byte, bool) {
	if len(reply) == 0 || reply[0] != '*' && reply[0] != '~' {
		return nil, false
	}
	i := bytes.IndexByte(reply, '\r')
	n, ok := parseInt(reply[1:i])
	if !ok || n < 0 {
		return nil, false
	}
	return elementsAfter(reply[i+2:], n)
}

// elementsAfter splits the n elements at the start of rest.
func elementsAfter(rest []byte, n int64) ([][]byte, bool) {
	var out [][]byte
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

// ScriptName names the script a command runs, for divergence logs and metrics:
// "sha1:<hex>" for EVAL and EVALSHA (the SHA1 Redis itself gives the script),
// "function:<name>" for FCALL; "" for other commands.
func ScriptName(name string, args [][]byte) string {
	if len(args) < 2 {
		return ""
	}
	switch name {
	case "EVAL", "EVAL_RO":
		sum := sha1.Sum(args[1])
		return "sha1:" + hex.EncodeToString(sum[:])
	case "EVALSHA", "EVALSHA_RO":
		return "sha1:" + string(bytes.ToLower(args[1]))
	case "FCALL", "FCALL_RO":
		return "function:" + string(args[1])
	}
	return ""
}
