package memcache

import (
	"math"
	"strconv"
	"time"
)

// relativeLimit is memcached's REALTIME_MAXDELTA: an exptime above it is a Unix time.
const relativeLimit = 60 * 60 * 24 * 30

// Never is the TTL of an item stored without expiry.
const Never = math.MaxInt64

// TTL returns how many seconds the item a command stores or touches lives (Never for
// no expiry), reading the exptime of set, add, replace, append, prepend, cas, touch,
// gat and gats, and the T (and N, autovivify) flags of ms, mg and ma. ok is false for
// commands without one. now converts an absolute exptime.
func TTL(cmd *Command, now time.Time) (seconds int64, ok bool) {
	var tok []byte
	switch cmd.Name {
	case "set", "add", "replace", "append", "prepend", "cas":
		if len(cmd.Args) > 3 {
			tok = cmd.Args[3]
		}
	case "touch":
		if len(cmd.Args) > 2 {
			tok = cmd.Args[2]
		}
	case "gat", "gats":
		if len(cmd.Args) > 1 {
			tok = cmd.Args[1]
		}
	case "ms", "mg", "ma":
		for _, f := range cmd.Args[min(2, len(cmd.Args)):] {
			if len(f) > 1 && (f[0] == 'T' || f[0] == 'N') {
				tok = f[1:]
			}
		}
	}
	if tok == nil {
		return 0, false
	}
	v, err := strconv.ParseInt(string(tok), 10, 64)
	switch {
	case err != nil:
		return 0, false
	case v == 0:
		return Never, true
	case v < 0:
		return 0, true
	case v > relativeLimit:
		return max(0, v-now.Unix()), true
	}
	return v, true
}
