package memcache

import "github.com/dynode/dynode-broadcaster/protocols"

type shape uint8

const (
	shapeStorage   shape = iota // <cmd> <key> <flags> <exptime> <bytes> [cas] [noreply] + data
	shapeRetrieval              // get/gets <key>+, gat/gats <exptime> <key>+
	shapeKeyed                  // incr/decr/touch/delete <key> ... [noreply]
	shapeAdmin                  // flush_all [delay] [noreply], verbosity <n> [noreply]
	shapePlain                  // version, stats [...], quit
	shapeMeta                   // mg ms md ma mn me
)

type spec struct {
	name  string
	class protocols.Class
	reply ReplyKind
	shape shape
}

// commands is the command table. Reads go to one backend; everything that changes
// an item, its TTL or the server goes to all.
var commands = map[string]spec{
	"set": {"set", protocols.Write, ReplyLine, shapeStorage}, "add": {"add", protocols.Write, ReplyLine, shapeStorage},
	"replace": {"replace", protocols.Write, ReplyLine, shapeStorage}, "append": {"append", protocols.Write, ReplyLine, shapeStorage},
	"prepend": {"prepend", protocols.Write, ReplyLine, shapeStorage}, "cas": {"cas", protocols.Write, ReplyLine, shapeStorage},
	"get": {"get", protocols.Read, ReplyValues, shapeRetrieval}, "gets": {"gets", protocols.Read, ReplyValues, shapeRetrieval},
	"gat": {"gat", protocols.Write, ReplyValues, shapeRetrieval}, "gats": {"gats", protocols.Write, ReplyValues, shapeRetrieval},
	"incr": {"incr", protocols.Write, ReplyLine, shapeKeyed}, "decr": {"decr", protocols.Write, ReplyLine, shapeKeyed},
	"touch": {"touch", protocols.Write, ReplyLine, shapeKeyed}, "delete": {"delete", protocols.Write, ReplyLine, shapeKeyed},
	"flush_all": {"flush_all", protocols.Write, ReplyLine, shapeAdmin}, "verbosity": {"verbosity", protocols.Write, ReplyLine, shapeAdmin},
	"version": {"version", protocols.Read, ReplyLine, shapePlain}, "stats": {"stats", protocols.Read, ReplyStats, shapePlain},
	"quit": {"quit", protocols.Local, ReplyLine, shapePlain},
	"mg":   {"mg", protocols.Read, ReplyMeta, shapeMeta}, "ms": {"ms", protocols.Write, ReplyMeta, shapeMeta},
	"md": {"md", protocols.Write, ReplyMeta, shapeMeta}, "ma": {"ma", protocols.Write, ReplyMeta, shapeMeta},
	"me": {"me", protocols.Read, ReplyMeta, shapeMeta}, "mn": {"mn", protocols.Local, ReplyMeta, shapeMeta},
}
