package resp

import "bytes"

// keySpec is one of Redis 7's key specifications of a command (COMMAND DOCS "key
// specs"): where the search for keys begins, and how the keys are found from there.
// The table is generated from a live Redis (internal/gencommands).
type keySpec struct {
	write bool // the keys may be changed (flags RW, OW, RM, insert, delete, update)
	// unknown: Redis cannot say where these keys are (SORT ... STORE, MIGRATE KEYS).
	unknown bool

	// Begin search: at a fixed argument index, or after a keyword searched from
	// startFrom (negative: backwards from the end).
	index     int
	keyword   string
	startFrom int

	// Find keys: a range (lastKey relative to the first key, or from the end when
	// negative; step; limit divides the remaining arguments) or a key count at
	// keyNumIdx (relative to the begin search) with the keys from firstKey on.
	keyNum    bool
	lastKey   int
	step      int
	limit     int
	keyNumIdx int
	firstKey  int
}

// KeyUse says how a command uses keys beyond what its key specifications give.
type KeyUse uint8

const (
	// KeysListed: the keys passed to the callback are all the command touches.
	KeysListed KeyUse = iota
	// KeysUnknown: the command may change keys that cannot be listed (SORT ... STORE
	// is listed; MIGRATE, for one, is not): treat it as touching every key of the
	// database.
	KeysUnknown
	// KeysAllDatabases: the command changes every key of every database (FLUSHALL,
	// SWAPDB).
	KeysAllDatabases
	// KeysDatabase: the command changes every key of the current database (FLUSHDB).
	KeysDatabase
)

// WrittenKeys calls fn with each key the command may change (key specifications
// flagged RW, OW, RM, insert, delete or update), in argument order. db, when not -1,
// is a database other than the client's that the key belongs to (MOVE, COPY ... DB).
// The returned KeyUse tells commands that touch more than they can list.
func WrittenKeys(args [][]byte, fn func(key []byte, db int)) KeyUse {
	if len(args) == 0 {
		return KeysListed
	}
	spec, ok := lookup(args)
	if !ok {
		return KeysUnknown // an unknown command is broadcast: assume the worst
	}
	switch spec.name {
	case "FLUSHALL", "SWAPDB":
		return KeysAllDatabases
	case "FLUSHDB":
		return KeysDatabase
	case "MOVE":
		if len(args) == 3 {
			fn(args[1], -1)
			if db, ok := parseInt(args[2]); ok {
				fn(args[1], int(db))
			}
		}
		return KeysListed
	case "COPY":
		// COPY source destination [DB n] [REPLACE]: the destination is in db n.
		if len(args) >= 3 {
			for i := 3; i+1 < len(args); i++ {
				if bytes.EqualFold(args[i], []byte("DB")) {
					if db, ok := parseInt(args[i+1]); ok {
						fn(args[2], int(db))
						return KeysListed
					}
				}
			}
			fn(args[2], -1)
		}
		return KeysListed
	case "SORT":
		// The STORE destination is an "unknown" key spec: find it here.
		for i := 2; i+1 < len(args); i++ {
			if bytes.EqualFold(args[i], []byte("STORE")) {
				fn(args[i+1], -1)
			}
		}
		return KeysListed
	}
	use := KeysListed
	for i := range spec.keys {
		ks := &spec.keys[i]
		if !ks.write {
			continue
		}
		if ks.unknown {
			use = KeysUnknown
			continue
		}
		ks.each(args, func(k []byte) { fn(k, -1) })
	}
	return use
}

// each calls fn with every key of args the specification designates, as Redis's
// getKeysUsingKeySpecs finds them; arguments that do not fit are ignored.
func (ks *keySpec) each(args [][]byte, fn func([]byte)) {
	argc := len(args)
	first := ks.index
	if ks.keyword != "" {
		first = -1
		if ks.startFrom >= 0 {
			for i := ks.startFrom; i < argc; i++ {
				if bytes.EqualFold(args[i], []byte(ks.keyword)) {
					first = i + 1
					break
				}
			}
		} else {
			for i := argc + ks.startFrom; i > 0; i-- {
				if bytes.EqualFold(args[i], []byte(ks.keyword)) {
					first = i + 1
					break
				}
			}
		}
		if first < 0 {
			return
		}
	}
	if first <= 0 || first >= argc {
		return
	}
	last, step := 0, max(ks.step, 1)
	switch {
	case ks.keyNum:
		at := first + ks.keyNumIdx
		if at >= argc {
			return
		}
		n, ok := parseInt(args[at])
		if !ok || n <= 0 || n > int64(argc) {
			return
		}
		first += ks.firstKey
		last = first + int(n-1)*step
	case ks.lastKey >= 0:
		last = first + ks.lastKey
	case ks.limit <= 1:
		last = argc + ks.lastKey
	default:
		last = first + (argc-first)/ks.limit + ks.lastKey
	}
	for i := first; i <= last && i < argc; i += step {
		fn(args[i])
	}
}
