package memcache

import (
	"bytes"
	"strconv"
)

// Effect returns, for incr, decr and ma, how the other servers reproduce the
// authority's result exactly: memcached rewrites a counter in place, padded with
// trailing spaces, only when no other connection holds the item at that moment
// (do_add_delta), so the same command leaves "4" on one server and "4 " on another,
// and an append to that counter then really diverges. The authority runs the command
// and then probe (mg with flags, remaining TTL and value); the others get ms of those
// exact bytes, flags and TTL (to the second, memcached's granularity). It returns nil
// for other commands and for base64 keys.
func Effect(cmd *Command) (of func(reply, probe []byte) ([]byte, bool), probe []byte) {
	switch cmd.Name {
	case "incr", "decr", "ma":
	default:
		return nil, nil
	}
	if len(cmd.Keys) != 1 || cmd.Name == "ma" && hasFlag(cmd.Args[2:], 'b') {
		return nil, nil
	}
	key := bytes.Clone(cmd.Keys[0])
	probe = append(append([]byte("mg "), key...), " f t v\r\n"...)
	return func(_, probed []byte) ([]byte, bool) {
		line := firstLine(probed)
		if !bytes.HasPrefix(line, []byte("VA ")) {
			return nil, false // the counter is gone (EN): nothing to reproduce
		}
		var size int
		flags, ttl := []byte("0"), []byte("0")
		for i, tok := range tokens(line[3:]) {
			switch {
			case i == 0:
				n, err := strconv.Atoi(string(tok))
				if err != nil {
					return nil, false
				}
				size = n
			case len(tok) > 1 && tok[0] == 'f':
				flags = tok[1:]
			case len(tok) > 1 && tok[0] == 't' && string(tok[1:]) != "-1":
				ttl = tok[1:]
			}
		}
		data := probed[len(line)+2:]
		if len(data) < size+2 {
			return nil, false
		}
		out := append(append([]byte("ms "), key...), ' ')
		out = strconv.AppendInt(out, int64(size), 10)
		out = append(append(append(out, " F"...), flags...), " T"...)
		out = append(append(out, ttl...), "\r\n"...)
		return append(out, data[:size+2]...), true
	}, probe
}

func hasFlag(toks [][]byte, f byte) bool {
	for _, t := range toks {
		if len(t) > 0 && t[0] == f {
			return true
		}
	}
	return false
}
