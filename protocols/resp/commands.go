package resp

import (
	"slices"
	"strings"

	"github.com/dynode/dynode-broadcaster/protocols"
)

//go:generate go run ./internal/gencommands -o commands_table.go

// commandFlags are the Redis command flags (and ACL categories) the classifier uses.
type commandFlags uint16

const (
	flagWrite commandFlags = 1 << iota
	flagReadonly
	flagBlocking
	flagPubSub
	flagAdmin
	flagMayReplicate
	flagNoScript
	flagDangerous
	flagConnection
	flagTransaction
)

// commandSpec is one row of the command table.
type commandSpec struct {
	name        string
	flags       commandFlags
	arity       int16           // Redis arity: n exact, -n at least n (the name counts)
	keys        []keySpec       // key specifications (keys.go)
	subcommands bool            // the class depends on the subcommand ("CLIENT SETNAME")
	class       protocols.Class // classify's answer, set once at start (init)
}

// init records each table row's class in it: Classify then costs one map lookup.
func init() {
	for _, table := range []map[string]commandSpec{commandTable, newerCommands} {
		for name, spec := range table {
			spec.class = classify(spec)
			table[name] = spec
		}
	}
}

// classOverrides are the commands whose class does not follow from their flags.
var classOverrides = map[string]protocols.Class{
	// Answered by the gateway.
	"PING": protocols.Local, "ECHO": protocols.Local, "QUIT": protocols.Local,
	"HELLO": protocols.Local, "SELECT": protocols.Local,
	"CLIENT|SETNAME": protocols.Local, "CLIENT|GETNAME": protocols.Local,
	"CLIENT|SETINFO": protocols.Local, "CLIENT|ID": protocols.Local,
	// The gateway's own clients (gateway/clients.go), and MONITOR of what they send.
	"CLIENT|LIST": protocols.Local, "CLIENT|INFO": protocols.Local, "CLIENT|KILL": protocols.Local,
	"CLIENT|UNBLOCK": protocols.Local, "CLIENT|NO-EVICT": protocols.Local, "CLIENT|NO-TOUCH": protocols.Local,
	"CLIENT|TRACKING": protocols.Local, "MONITOR": protocols.Local, "RESET": protocols.Local,

	// Scripts must exist on every backend for EVALSHA to replay everywhere.
	"SCRIPT|LOAD": protocols.Write, "SCRIPT|FLUSH": protocols.Write,
	// Configuration: read from the primary, changed on every backend.
	"CONFIG|GET": protocols.Read, "CONFIG|SET": protocols.Write,
	"CONFIG|RESETSTAT": protocols.Write, "CONFIG|REWRITE": protocols.Write,

	// Scripts and functions may write; Redis 7.0 flags them only "noscript".
	"EVAL": protocols.Write, "EVALSHA": protocols.Write, "FCALL": protocols.Write,
	// Blocking commands are served by the gateway (gateway/blocking.go), which sends
	// them only inside MULTI, where Redis runs them without blocking; as such they
	// are ordinary writes (XREAD a read), in transactions too.
	"BLPOP": protocols.Write, "BRPOP": protocols.Write, "BLMOVE": protocols.Write,
	"BRPOPLPUSH": protocols.Write, "BLMPOP": protocols.Write, "BZPOPMIN": protocols.Write,
	"BZPOPMAX": protocols.Write, "BZMPOP": protocols.Write, "XREADGROUP": protocols.Write,
	"XREAD": protocols.Read,

	// Subscriptions are served on a connection of the client's own (gateway/pubsub.go);
	// PUBSUB introspection answers for one backend.
	"SUBSCRIBE": protocols.Local, "PSUBSCRIBE": protocols.Local, "SSUBSCRIBE": protocols.Local,
	"UNSUBSCRIBE": protocols.Local, "PUNSUBSCRIBE": protocols.Local, "SUNSUBSCRIBE": protocols.Local,
	"PUBSUB|CHANNELS": protocols.Read, "PUBSUB|NUMSUB": protocols.Read, "PUBSUB|NUMPAT": protocols.Read,
	"PUBSUB|SHARDCHANNELS": protocols.Read, "PUBSUB|SHARDNUMSUB": protocols.Read, "PUBSUB|HELP": protocols.Read,

	// A message published through the gateway reaches subscribers of every backend.
	"PUBLISH": protocols.Write, "SPUBLISH": protocols.Write,

	// Transactions: the gateway queues MULTI ... EXEC and appends it whole to every
	// backend. It answers WATCH from the writes it sequences (gateway/watch.go).
	"MULTI": protocols.Local, "EXEC": protocols.Local, "DISCARD": protocols.Local,
	"WATCH": protocols.Local, "UNWATCH": protocols.Local,

	// Connection state that would leak into the shared backend pipelines.
	// AUTH is answered by the gateway (gateway/auth.go); it AUTHs its own backend
	// connections itself.
	"AUTH":         protocols.Local,
	"CLIENT|REPLY": protocols.Unsupported, "CLIENT|CACHING": protocols.Unsupported,
	"READONLY":  protocols.Unsupported,
	"READWRITE": protocols.Unsupported, "ASKING": protocols.Unsupported,
	// WAIT is answered by the gateway from its own acknowledgements (gateway/wait.go).
	"WAIT": protocols.Local, "WAITAOF": protocols.Unsupported,
	"SYNC":  protocols.Unsupported,
	"PSYNC": protocols.Unsupported, "REPLCONF": protocols.Unsupported,
	// SCRIPT DEBUG turns the connection's next EVAL into a debugging session: on a
	// shared pipeline every other client's commands would go to the Lua debugger.
	"SCRIPT|DEBUG": protocols.Unsupported,
	// SCRIPT KILL and FUNCTION KILL go to every backend on side connections, not
	// behind the busy script in the pipeline (gateway/scriptkill.go).
	"SCRIPT|KILL": protocols.Local, "FUNCTION|KILL": protocols.Local,
}

// lookup finds the table row of a command; args[0] is the name in any case, args[1]
// the subcommand for container commands. ok is false for commands Redis does not know.
func lookup(args [][]byte) (spec commandSpec, ok bool) {
	var buf [64]byte
	name := upper(buf[:0], args[0])
	spec, ok = commandTable[string(name)]
	if !ok || !spec.subcommands || len(args) < 2 {
		return spec, ok
	}
	full := upper(append(name, '|'), args[1])
	if sub, found := commandTable[string(full)]; found {
		return sub, true
	}
	if sub, found := newerCommands[string(full)]; found {
		return sub, true
	}
	return spec, true
}

// newerCommands are commands of Redis versions after the table's (7.0) that clients
// send on their own, answered by the gateway. go-redis and redis-py send CLIENT
// SETINFO on every new connection (Redis 7.2); forwarded, it would wait behind
// whatever the primary's pipeline is busy with.
var newerCommands = map[string]commandSpec{
	"CLIENT|SETINFO": {name: "CLIENT|SETINFO", flags: flagNoScript | flagConnection, arity: 4},
}

// classify turns a table row into the gateway's class.
func classify(spec commandSpec) protocols.Class {
	if c, ok := classOverrides[spec.name]; ok {
		return c
	}
	switch f := spec.flags; {
	case f&flagPubSub != 0, f&flagBlocking != 0:
		return protocols.Unsupported
	case f&(flagWrite|flagMayReplicate) != 0:
		return protocols.Write
	case f&flagReadonly != 0:
		return protocols.Read
	case f&flagAdmin != 0, f&flagConnection != 0 && f&flagNoScript != 0:
		// SHUTDOWN, DEBUG, CONFIG, REPLICAOF, CLIENT KILL...: operate on one server's
		// process or connection, which a replicated gateway cannot express.
		return protocols.Unsupported
	}
	return protocols.Read // INFO, TIME, COMMAND, ...: answered by the primary
}

// Classify returns the canonical name and class of a command from its arguments.
// Unknown commands are writes: broadcasting is the safe default for a replicator.
func Classify(args [][]byte) (name string, class protocols.Class) {
	if len(args) == 0 {
		return "", protocols.Unsupported
	}
	spec, ok := lookup(args)
	if !ok {
		return "UNKNOWN", protocols.Write
	}
	return spec.name, spec.class
}

// lastCommand is a parser's last classified command: a pipeline's commands mostly
// repeat one name, whose row is then found without hashing it.
type lastCommand struct {
	raw   [16]byte // the name as the client spelled it
	n     uint8    // bytes of raw in use; 0: nothing recorded
	name  string
	class protocols.Class
}

// classify is Classify, through the parser's last command.
func (p *CommandParser) classify(args [][]byte) (name string, class protocols.Class) {
	last := &p.last
	if len(args) > 0 && last.n > 0 && string(args[0]) == string(last.raw[:last.n]) {
		return last.name, last.class
	}
	if len(args) == 0 {
		return Classify(args)
	}
	spec, ok := lookup(args)
	if !ok {
		return "UNKNOWN", protocols.Write
	}
	last.n = 0
	if !spec.subcommands && !strings.Contains(spec.name, "|") && len(args[0]) <= len(last.raw) {
		// (A container command's row is its subcommand's: not remembered by name.)
		last.n = uint8(copy(last.raw[:], args[0]))
		last.name, last.class = spec.name, spec.class
	}
	return spec.name, spec.class
}

// upper appends the ASCII upper-case form of s to dst.
func upper(dst, s []byte) []byte {
	for _, c := range s {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// Reject returns the error Redis answers before running a command (unknown command,
// unknown subcommand of a container command, wrong number of arguments), without
// the leading "-" and trailing CRLF, or "" when the command passes these checks.
// Inside MULTI, Redis answers these at once and aborts the transaction.
func Reject(args [][]byte) string {
	if len(args) == 0 {
		return ""
	}
	spec, ok := lookup(args)
	if !ok {
		quoted := make([]byte, 0, 64)
		for _, a := range args[1:] {
			if len(quoted) >= 128 {
				break
			}
			quoted = append(quoted, '\'')
			quoted = append(quoted, a[:min(len(a), 128-len(quoted)+1)]...)
			quoted = append(quoted, "' "...)
		}
		return noNewlines("ERR unknown command '" + clip(args[0], 128) + "', with args beginning with: " + string(quoted))
	}
	if spec.subcommands {
		if len(args) < 2 {
			return "ERR wrong number of arguments for '" + strings.ToLower(spec.name) + "' command"
		}
		var buf [64]byte
		return noNewlines("ERR unknown subcommand '" + clip(args[1], 128) + "'. Try " + string(upper(buf[:0], args[0])) + " HELP.")
	}
	if n := len(args); int(spec.arity) > 0 && n != int(spec.arity) || n < -int(spec.arity) {
		return "ERR wrong number of arguments for '" + strings.ToLower(spec.name) + "' command"
	}
	return ""
}

func clip(b []byte, n int) string { return string(b[:min(len(b), n)]) }

// noNewlines replaces CR and LF with spaces, as Redis does in error replies.
func noNewlines(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// CommandInfo is one command of the table as the gateway classes it.
type CommandInfo struct {
	Name  string // upper case; subcommands as "PARENT|SUB"
	Class protocols.Class
	Arity int // Redis arity: n exact, -n at least n (the name counts)
}

// Commands returns every command of the table (container commands themselves
// excluded), sorted by name.
func Commands() []CommandInfo {
	out := make([]CommandInfo, 0, len(commandTable))
	for _, spec := range commandTable {
		if spec.subcommands {
			continue
		}
		out = append(out, CommandInfo{Name: spec.name, Class: classify(spec), Arity: int(spec.arity)})
	}
	slices.SortFunc(out, func(a, b CommandInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}
