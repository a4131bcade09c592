package resp

import "bytes"

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
