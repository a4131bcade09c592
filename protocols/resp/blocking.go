package resp

import (
	"bytes"
	"math"
	"strconv"
	"time"
)

// BlockingCall is what a gateway needs to serve a blocking command (BLPOP, BZPOPMIN,
// XREAD BLOCK, ...) without ever sending a blocking command to a shared backend
// connection: the keys it waits on and for how long.
type BlockingCall struct {
	Keys    [][]byte      // the keys the client waits on, in argument order
	Timeout time.Duration // 0: forever
	// Blocks is false for XREAD and XREADGROUP without BLOCK: they run once.
	Blocks bool
	// Stream: an XREAD or XREADGROUP. Every client waiting on a stream may be served
	// by one new entry, so all of them are woken; list and sorted-set pops wake the
	// first client in line only.
	Stream bool
	// NullBulk: at the timeout the reply is a null bulk string (BLMOVE, BRPOPLPUSH);
	// otherwise a null array.
	NullBulk bool
	// LastIDs are the indexes in args of XREAD IDs given as "$" (the stream's last
	// ID at the time the command runs), which the gateway resolves once, up front.
	LastIDs []int
}

// IsBlocking reports whether a command (canonical name) may block a Redis connection.
func IsBlocking(name string) bool {
	switch name {
	case "BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "XREAD", "XREADGROUP":
		return true
	}
	return false
}

// ParseBlocking reads a blocking command's keys and timeout. It returns Redis's error
// text (without "-") for arguments Redis refuses before it could block; other syntax
// errors are left to the backend, which answers them at once.
func ParseBlocking(name string, args [][]byte) (call BlockingCall, errMsg string) {
	n := len(args)
	call.Blocks = true
	var timeout []byte
	switch name {
	case "BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX":
		call.Keys, timeout = args[1:n-1], args[n-1]
	case "BLMOVE":
		call.Keys, timeout, call.NullBulk = args[1:2], args[5], true
	case "BRPOPLPUSH":
		call.Keys, timeout, call.NullBulk = args[1:2], args[3], true
	case "BLMPOP", "BZMPOP":
		timeout = args[1]
		numkeys, err := strconv.ParseInt(string(args[2]), 10, 64)
		if err != nil {
			return call, "ERR numkeys should be greater than 0"
		}
		if numkeys <= 0 || numkeys > int64(n-3) {
			if numkeys <= 0 {
				return call, "ERR numkeys should be greater than 0"
			}
			return call, "ERR syntax error"
		}
		call.Keys = args[3 : 3+numkeys]
	case "XREAD", "XREADGROUP":
		return parseXRead(name, args)
	}
	d, msg := secondsTimeout(timeout)
	call.Timeout = d
	return call, msg
}

// secondsTimeout parses a blocking pop's timeout, in seconds with decimals.
func secondsTimeout(b []byte) (time.Duration, string) {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, "ERR timeout is not a float or out of range"
	}
	if f < 0 {
		return 0, "ERR timeout is negative"
	}
	if f > float64(math.MaxInt64/int64(time.Second)) {
		return 0, "ERR timeout is out of range"
	}
	d := time.Duration(f * float64(time.Second))
	if f > 0 && d < time.Millisecond {
		d = time.Millisecond
	}
	return d, ""
}

// parseXRead reads XREAD [COUNT n] [BLOCK ms] STREAMS key... id... and XREADGROUP
// GROUP g c [COUNT n] [BLOCK ms] [NOACK] STREAMS key... id....
func parseXRead(name string, args [][]byte) (call BlockingCall, errMsg string) {
	call.Stream = true
	group := name == "XREADGROUP"
	streams := -1
	for i := 1; i < len(args); i++ {
		opt := args[i]
		switch {
		case bytes.EqualFold(opt, []byte("STREAMS")):
			streams = i + 1
		case bytes.EqualFold(opt, []byte("BLOCK")) && i+1 < len(args):
			ms, err := strconv.ParseInt(string(args[i+1]), 10, 64)
			if err != nil {
				return call, "ERR timeout is not an integer or out of range"
			}
			if ms < 0 {
				return call, "ERR timeout is negative"
			}
			call.Blocks, call.Timeout = true, time.Duration(ms)*time.Millisecond
			i++
		case bytes.EqualFold(opt, []byte("COUNT")) && i+1 < len(args):
			i++
		case group && bytes.EqualFold(opt, []byte("GROUP")) && i+2 < len(args):
			i += 2
		case group && bytes.EqualFold(opt, []byte("NOACK")):
		default:
			return call, "ERR syntax error"
		}
		if streams > 0 {
			break
		}
	}
	if streams < 0 {
		return call, "ERR syntax error"
	}
	rest := len(args) - streams
	if rest == 0 || rest%2 != 0 {
		return call, "ERR Unbalanced '" + lower(name) + "' list of streams: for each stream key an ID or '$' must be specified."
	}
	call.Keys = args[streams : streams+rest/2]
	for i := streams + rest/2; i < len(args); i++ {
		if !group && string(args[i]) == "$" {
			call.LastIDs = append(call.LastIDs, i)
		}
	}
	return call, ""
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
