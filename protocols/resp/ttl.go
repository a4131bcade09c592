package resp

import (
	"bytes"
	"strconv"
)

// maxTTLMillis bounds the relative times rewritten: beyond it Redis answers an error
// (an overflowing expire), which the command as sent reproduces on every backend.
const maxTTLMillis = 1 << 46

// AbsoluteTTL appends to dst the command with its relative expiry turned into an
// absolute one computed from nowMillis (Unix milliseconds), and reports whether it
// did. Redis replicates these commands so to its replicas and AOF; a gateway must do
// it for every backend, since a backend that applies the write late (its backlog
// replayed after downtime) would otherwise expire the key late.
//
//	EXPIRE key s [NX|XX|GT|LT]   -> PEXPIREAT key now+s*1000 [...]
//	PEXPIRE key ms [...]         -> PEXPIREAT key now+ms [...]
//	SETEX key s v                -> SET key v PXAT now+s*1000
//	PSETEX key ms v              -> SET key v PXAT now+ms
//	SET key v ... EX s | PX ms   -> SET key v ... PXAT ...
//	GETEX key EX s | PX ms       -> GETEX key PXAT ...
//	RESTORE key ttl v ...        -> RESTORE key now+ttl v ... ABSTTL   (ttl > 0)
//
// Commands whose time is not a positive integer in range are left as they are:
// Redis's own error (or immediate deletion) then happens alike everywhere, with
// Redis's own text.
func AbsoluteTTL(dst []byte, name string, args [][]byte, nowMillis int64) ([]byte, bool) {
	abs := func(v []byte, unit int64) ([]byte, bool) {
		n, ok := string2ll(v)
		if !ok || n <= 0 || n > maxTTLMillis/unit {
			return nil, false
		}
		return strconv.AppendInt(nil, nowMillis+n*unit, 10), true
	}
	unit := int64(1000) // the relative time of EXPIRE and SETEX is in seconds
	if name == "PEXPIRE" || name == "PSETEX" {
		unit = 1
	}
	switch name {
	case "EXPIRE", "PEXPIRE":
		if len(args) < 3 {
			return dst, false
		}
		at, ok := abs(args[2], unit)
		if !ok {
			return dst, false
		}
		out := append([][]byte{[]byte("PEXPIREAT"), args[1], at}, args[3:]...)
		return AppendCommand(dst, out), true
	case "SETEX", "PSETEX":
		if len(args) != 4 {
			return dst, false
		}
		at, ok := abs(args[2], unit)
		if !ok {
			return dst, false
		}
		return AppendCommand(dst, [][]byte{[]byte("SET"), args[1], args[3], []byte("PXAT"), at}), true
	case "SET", "GETEX":
		first := 3 // options start after the value (SET) or the key (GETEX)
		if name == "GETEX" {
			first = 2
		}
		for i := first; i+1 < len(args); i++ {
			var buf [8]byte
			opt := upper(buf[:0], args[i][:min(len(args[i]), len(buf))])
			unit := int64(0)
			switch string(opt) {
			case "EX":
				unit = 1000
			case "PX":
				unit = 1
			case "KEEPTTL", "NX", "XX", "GET", "PERSIST":
				continue
			default:
				i++ // EXAT/PXAT and their value: already absolute
				continue
			}
			at, ok := abs(args[i+1], unit)
			if !ok {
				return dst, false
			}
			out := append([][]byte(nil), args...)
			out[i], out[i+1] = []byte("PXAT"), at
			return AppendCommand(dst, out), true
		}
		return dst, false
	case "RESTORE":
		if len(args) < 4 {
			return dst, false
		}
		for _, a := range args[4:] {
			if bytes.EqualFold(a, []byte("ABSTTL")) {
				return dst, false
			}
		}
		at, ok := abs(args[2], 1)
		if !ok {
			return dst, false // 0: no expiry
		}
		out := append([][]byte(nil), args...)
		out[2] = at
		return AppendCommand(dst, append(out, []byte("ABSTTL"))), true
	}
	return dst, false
}
