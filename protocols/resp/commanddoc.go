package resp

import (
	"fmt"
	"strings"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// Handling is how the gateway serves a command, as docs/COMMANDS.md names it.
type Handling string

// The handlings of docs/COMMANDS.md.
const (
	HandlingWrite     Handling = "broadcast write"
	HandlingEffect    Handling = "broadcast write, by effect"
	HandlingRead      Handling = "read"
	HandlingLocal     Handling = "local"
	HandlingPerClient Handling = "per-client"
	HandlingRefused   Handling = "refused"
)

// perClient are the commands served with state the gateway keeps for one client.
var perClient = map[string]string{
	"BLPOP": "blocking: the client waits in the gateway; each attempt runs inside MULTI on every backend (gateway/blocking.go)",
	"BRPOP": "blocking, as BLPOP", "BLMOVE": "blocking, as BLPOP", "BRPOPLPUSH": "blocking, as BLPOP",
	"BLMPOP": "blocking, as BLPOP", "BZPOPMIN": "blocking, as BLPOP", "BZPOPMAX": "blocking, as BLPOP",
	"BZMPOP":       "blocking, as BLPOP",
	"XREAD":        "a read; with BLOCK the client waits in the gateway; `$` is resolved once, when the command arrives",
	"XREADGROUP":   "a write (it changes the pending list); with BLOCK the client waits in the gateway",
	"SUBSCRIBE":    "on a connection of the client's own to the reply source (gateway/pubsub.go)",
	"PSUBSCRIBE":   "as SUBSCRIBE",
	"SSUBSCRIBE":   "as SUBSCRIBE",
	"UNSUBSCRIBE":  "as SUBSCRIBE",
	"PUNSUBSCRIBE": "as SUBSCRIBE",
	"SUNSUBSCRIBE": "as SUBSCRIBE",
	"WATCH":        "answered from the writes the gateway sequences, expiry included (gateway/watch.go)",
	"UNWATCH":      "as WATCH",
	"MULTI":        "queued by the gateway; EXEC sends the block to every backend at one place of the order",
	"EXEC":         "as MULTI", "DISCARD": "as MULTI",
	"MONITOR":        "the gateway's own clients' commands, in Redis's format",
	"SELECT":         "per client; the gateway selects each backend connection's database in front of the commands",
	"HELLO":          "RESP2 and RESP3 per client (HELLO 3/2 injected into the shared pipelines)",
	"AUTH":           "requirepass / users of the gateway; backends are authenticated by the gateway",
	"RESET":          "resets the client's state in the gateway",
	"CLIENT|LIST":    "the gateway's clients",
	"CLIENT|INFO":    "the gateway's client",
	"CLIENT|KILL":    "the gateway's clients",
	"CLIENT|UNBLOCK": "the gateway's blocked clients",
	"CLIENT|ID":      "the gateway's client id", "CLIENT|SETNAME": "kept by the gateway", "CLIENT|GETNAME": "kept by the gateway",
	"CLIENT|SETINFO":  "accepted (Redis 7.2; sent by clients on connect)",
	"CLIENT|NO-EVICT": "accepted: the gateway never evicts clients", "CLIENT|NO-TOUCH": "accepted",
	"CLIENT|TRACKING": "OFF accepted; ON refused (invalidations would need every backend)",
	"WAIT":            "answered from the backends' acknowledgements (gateway/wait.go)",
	"SCRIPT|KILL":     "sent to every backend on side connections, not behind the busy pipeline",
	"FUNCTION|KILL":   "as SCRIPT KILL",
}

// notes explain commands whose handling is not obvious from their class.
var notes = map[string]string{
	"SPOP":          "the others get SREM of the members popped",
	"XADD":          "the others get XADD with the authority's ID; MAXLEN/MINID ~ exact",
	"XTRIM":         "MAXLEN/MINID ~ made exact",
	"XCLAIM":        "delivery times from the gateway's clock",
	"XAUTOCLAIM":    "the others get XCLAIM of the IDs claimed",
	"INCRBYFLOAT":   "the others get SET ... KEEPTTL of the result",
	"HINCRBYFLOAT":  "the others get HSET of the result",
	"EVAL":          "as sent: deterministic scripts only; divergence is logged with the SHA1",
	"EVALSHA":       "as EVAL; scripts clients sent are loaded on every (re)connected backend",
	"FCALL":         "as EVAL",
	"PUBLISH":       "every backend's subscribers get the message once; reply from the reply source",
	"SPUBLISH":      "as PUBLISH",
	"PFCOUNT":       "a write: it updates the HyperLogLog's cached cardinality",
	"SCRIPT|LOAD":   "kept by the gateway for backends rebuilt or reconnected",
	"SCRIPT|FLUSH":  "empties the gateway's script cache too",
	"CONFIG|SET":    "changes every backend",
	"CONFIG|GET":    "the reply source's",
	"SET":           "EX/PX become PXAT (absolute_ttl)",
	"EXPIRE":        "becomes PEXPIREAT (absolute_ttl)",
	"PEXPIRE":       "becomes PEXPIREAT (absolute_ttl)",
	"SETEX":         "becomes SET ... PXAT (absolute_ttl)",
	"PSETEX":        "becomes SET ... PXAT (absolute_ttl)",
	"GETEX":         "EX/PX become PXAT (absolute_ttl)",
	"RESTORE":       "a relative TTL becomes ABSTTL (absolute_ttl)",
	"FLUSHALL":      "fails every WATCH",
	"FLUSHDB":       "fails every WATCH of the database",
	"INFO":          "the reply source's",
	"DBSIZE":        "the read target's",
	"SCRIPT|DEBUG":  "would turn the shared pipeline into a debugging session",
	"CLIENT|REPLY":  "would silence the shared pipeline",
	"CLIENT|PAUSE":  "pauses whole servers: use it on the backends",
	"SHUTDOWN":      "stops one server: use it on the backends",
	"REPLICAOF":     "the gateway is the replication: use it on the backends",
	"SLAVEOF":       "as REPLICAOF",
	"SYNC":          "replication protocol",
	"PSYNC":         "replication protocol",
	"DEBUG":         "one server's internals: use it on the backends",
	"READONLY":      "cluster commands",
	"READWRITE":     "cluster commands",
	"ASKING":        "cluster commands",
	"PUBSUB|NUMSUB": "the reply source's subscribers",
}

// handling is how the gateway serves a command of the table.
func handling(spec commandSpec, class protocols.Class) Handling {
	if _, ok := perClient[spec.name]; ok {
		return HandlingPerClient
	}
	switch class {
	case protocols.Write:
		switch spec.name {
		case "SPOP", "XADD", "XTRIM", "XCLAIM", "XAUTOCLAIM", "INCRBYFLOAT", "HINCRBYFLOAT":
			return HandlingEffect
		}
		return HandlingWrite
	case protocols.Read:
		return HandlingRead
	case protocols.Local:
		return HandlingLocal
	}
	return HandlingRefused
}

// CommandsDoc renders docs/COMMANDS.md from the command table: every Redis 7.0
// command and subcommand with how the gateway serves it.
func CommandsDoc() string {
	var b strings.Builder
	b.WriteString("# Redis commands through dynode-broadcaster\n\n")
	b.WriteString("Generated from the gateway's command table (`go test ./protocols/resp -run TestCommandsDoc -update`);\n")
	b.WriteString("a test fails when it is out of date. The table is Redis 7.0.15's `COMMAND` reply with\n")
	b.WriteString("the gateway's class for each command:\n\n")
	b.WriteString("- **broadcast write**: sent to every backend in the one global order; the client gets the reply `write_reply` picks.\n")
	b.WriteString("- **broadcast write, by effect**: the reply source runs it; the others get its effect at the same place of the order ([REPLICATION-BY-EFFECT.md](REPLICATION-BY-EFFECT.md)).\n")
	b.WriteString("- **read**: sent to one backend (`read_from`), behind the client's earlier writes.\n")
	b.WriteString("- **local**: answered by the gateway.\n")
	b.WriteString("- **per-client**: served with state the gateway keeps for the client (blocking, pub/sub, transactions, WATCH...).\n")
	b.WriteString("- **refused**: an error naming the command; nothing is sent anywhere.\n\n")
	b.WriteString("Commands Redis does not know are broadcast as writes (the safe default for a replicator)\n")
	b.WriteString("and the backends answer them.\n\n")
	b.WriteString("| command | class | notes |\n|---|---|---|\n")
	counts := map[Handling]int{}
	for _, c := range allCommands() {
		h := handling(commandTable[c.Name], c.Class)
		counts[h]++
		note := perClient[c.Name]
		if note == "" {
			note = notes[c.Name]
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", strings.ReplaceAll(c.Name, "|", " "), h, note)
	}
	fmt.Fprintf(&b, "\n%d commands: ", len(allCommands()))
	for i, h := range []Handling{HandlingWrite, HandlingEffect, HandlingRead, HandlingLocal, HandlingPerClient, HandlingRefused} {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %s", counts[h], h)
	}
	b.WriteString(".\n")
	return b.String()
}

// allCommands is Commands with the newer ones the gateway answers (CLIENT SETINFO).
func allCommands() []CommandInfo {
	out := Commands()
	for _, spec := range newerCommands {
		out = append(out, CommandInfo{Name: spec.name, Class: classify(spec), Arity: int(spec.arity)})
	}
	return out
}
