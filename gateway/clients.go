package gateway

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// client is what the gateway knows of one client connection, for CLIENT LIST, CLIENT
// KILL and CLIENT UNBLOCK from other clients. Its session updates it once per burst
// and when the client's state changes; other sessions read it under mu.
type client struct {
	id      int64
	conn    net.Conn
	created time.Time

	mu         sync.Mutex // guards everything below
	name       string
	db         int
	lastCmd    string
	lastActive time.Time
	multi      int // commands queued in MULTI; -1 outside a transaction
	sub, psub  int // channels and patterns subscribed (ssub: shard channels)
	ssub       int
	monitor    bool
	blocked    bool // waiting in a blocking command (blocking.go)
	watching   int  // keys WATCHed
	proto      int  // 2 or 3
	// unblock receives CLIENT UNBLOCK's request while the client is blocked; made
	// (by the client's session, under mu) when it first blocks, then never replaced.
	unblock chan unblockRequest
}

// unblockRequest is CLIENT UNBLOCK's: answer the blocked command as at its timeout,
// or with an -UNBLOCKED error.
type unblockRequest struct{ withError bool }

func newClient(id int64, conn net.Conn) *client {
	now := time.Now()
	return &client{id: id, conn: conn, created: now, lastActive: now, multi: -1, proto: 2}
}

// touch records the client's latest command.
func (c *client) touch(cmd string, now time.Time) {
	c.mu.Lock()
	c.lastCmd, c.lastActive = cmd, now
	c.mu.Unlock()
}

// update changes the client's state under its lock.
func (c *client) update(f func(c *client)) {
	c.mu.Lock()
	f(c)
	c.mu.Unlock()
}

// appendInfo appends the client's CLIENT LIST line (Redis 7.0's fields; those that
// describe a Redis server's buffers are the gateway's where it has them, else 0).
func (c *client) appendInfo(dst []byte, now time.Time) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	flags := ""
	switch {
	case c.monitor:
		flags += "O"
	case c.sub+c.psub+c.ssub > 0:
		flags += "P"
	}
	if c.blocked {
		flags += "b"
	}
	if c.multi >= 0 {
		flags += "x"
	}
	if flags == "" {
		flags = "N"
	}
	cmd := strings.ToLower(c.lastCmd)
	if cmd == "" {
		cmd = "NULL"
	}
	dst = append(dst, "id="...)
	dst = strconv.AppendInt(dst, c.id, 10)
	dst = append(dst, " addr="...)
	dst = append(dst, c.conn.RemoteAddr().String()...)
	dst = append(dst, " laddr="...)
	dst = append(dst, c.conn.LocalAddr().String()...)
	dst = append(dst, " fd=-1 name="...)
	dst = append(dst, c.name...)
	dst = append(dst, " age="...)
	dst = strconv.AppendInt(dst, int64(now.Sub(c.created)/time.Second), 10)
	dst = append(dst, " idle="...)
	dst = strconv.AppendInt(dst, int64(now.Sub(c.lastActive)/time.Second), 10)
	dst = append(dst, " flags="...)
	dst = append(dst, flags...)
	dst = append(dst, " db="...)
	dst = strconv.AppendInt(dst, int64(c.db), 10)
	for _, kv := range []struct {
		k string
		v int
	}{{"sub", c.sub}, {"psub", c.psub}, {"ssub", c.ssub}, {"multi", c.multi}, {"watch", c.watching}} {
		dst = append(dst, ' ')
		dst = append(dst, kv.k...)
		dst = append(dst, '=')
		dst = strconv.AppendInt(dst, int64(kv.v), 10)
	}
	dst = append(dst, " qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd="...)
	dst = append(dst, cmd...)
	dst = append(dst, " user=default redir=-1 resp="...)
	dst = strconv.AppendInt(dst, int64(c.proto), 10)
	return append(dst, '\n')
}

// clientsSorted returns the registered clients with a session, by id.
func (g *Gateway) clientsSorted() []*client {
	g.mu.Lock()
	out := make([]*client, 0, len(g.clients))
	for _, c := range g.clients {
		out = append(out, c)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b *client) int { return int(a.id - b.id) })
	return out
}

// clientByID finds a connected client.
func (g *Gateway) clientByID(id int64) *client {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.clients {
		if c.id == id {
			return c
		}
	}
	return nil
}

// clientCommand answers the CLIENT subcommands about the gateway's own clients:
// LIST, INFO, KILL, UNBLOCK, NO-EVICT, TRACKING off (ID, GETNAME, SETNAME and
// SETINFO are in local.go).
func (r *respCodec) clientCommand(dst []byte, cmd protocols.Command) []byte {
	g, args, now := r.s.gw, cmd.Args, time.Now()
	switch cmd.Name {
	case "CLIENT|LIST":
		var ids []int64
		var typ string
		for i := 2; i < len(args); i++ {
			switch opt := strings.ToUpper(string(args[i])); {
			case opt == "TYPE" && i+1 < len(args):
				typ = strings.ToLower(string(args[i+1]))
				switch typ {
				case "normal", "pubsub", "master", "replica":
				default:
					return resp.AppendError(dst, "ERR Unknown client type '"+typ+"'")
				}
				i++
			case opt == "ID" && i+1 < len(args):
				for i++; i < len(args); i++ {
					id, err := strconv.ParseInt(string(args[i]), 10, 64)
					if err != nil || id <= 0 {
						return resp.AppendError(dst, "ERR Invalid client ID")
					}
					ids = append(ids, id)
				}
			default:
				return resp.AppendError(dst, "ERR syntax error")
			}
		}
		var list []byte
		for _, c := range g.clientsSorted() {
			if len(ids) > 0 && !slices.Contains(ids, c.id) || typ != "" && c.kind() != typ {
				continue
			}
			list = c.appendInfo(list, now)
		}
		return resp.AppendBulk(dst, list)
	case "CLIENT|INFO":
		if len(args) == 2 {
			return resp.AppendBulk(dst, r.s.client.appendInfo(nil, now))
		}
	case "CLIENT|KILL":
		return r.clientKill(dst, args)
	case "CLIENT|UNBLOCK":
		if len(args) == 3 || len(args) == 4 {
			id, err := strconv.ParseInt(string(args[2]), 10, 64)
			if err != nil {
				return resp.AppendError(dst, "ERR value is not an integer or out of range")
			}
			req := unblockRequest{}
			if len(args) == 4 {
				switch strings.ToUpper(string(args[3])) {
				case "TIMEOUT":
				case "ERROR":
					req.withError = true
				default:
					return resp.AppendError(dst, "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
				}
			}
			c := g.clientByID(id)
			if c == nil {
				return resp.AppendInt(dst, 0)
			}
			c.mu.Lock()
			blocked := c.blocked
			if blocked {
				select {
				case c.unblock <- req:
				default:
					blocked = false // already being unblocked
				}
			}
			c.mu.Unlock()
			return resp.AppendInt(dst, boolInt(blocked))
		}
	case "CLIENT|NO-EVICT", "CLIENT|NO-TOUCH":
		// The gateway never evicts clients, and its reads do not touch keys'
		// access times any differently: both settings are accepted as no-ops.
		if len(args) == 3 {
			switch strings.ToUpper(string(args[2])) {
			case "ON", "OFF":
				return resp.AppendOK(dst)
			}
			return resp.AppendError(dst, "ERR syntax error")
		}
	case "CLIENT|TRACKING":
		if len(args) >= 3 {
			if strings.EqualFold(string(args[2]), "OFF") {
				return resp.AppendOK(dst)
			}
			return unsupportedWhy(dst, "client tracking on", "server-assisted client-side caching needs invalidations from every backend")
		}
	}
	return wrongArity(dst, cmd.Name)
}

// kind is the client's CLIENT LIST TYPE: pubsub or normal.
func (c *client) kind() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sub+c.psub+c.ssub > 0 {
		return "pubsub"
	}
	return "normal"
}

// clientKill answers CLIENT KILL addr (old form: OK or an error) and CLIENT KILL
// filter value ... (ID, ADDR, LADDR, TYPE, USER, SKIPME: the number killed).
func (r *respCodec) clientKill(dst []byte, args [][]byte) []byte {
	g := r.s.gw
	if len(args) == 3 {
		for _, c := range g.clientsSorted() {
			if c.conn.RemoteAddr().String() == string(args[2]) {
				_ = c.conn.Close()
				return resp.AppendOK(dst)
			}
		}
		return resp.AppendError(dst, "ERR No such client")
	}
	if len(args) < 4 || len(args)%2 != 0 {
		return resp.AppendError(dst, "ERR syntax error")
	}
	var id int64
	var addr, laddr, typ, user string
	skipMe := true
	for i := 2; i+1 < len(args); i += 2 {
		v := string(args[i+1])
		switch strings.ToUpper(string(args[i])) {
		case "ID":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return resp.AppendError(dst, "ERR client-id should be greater than 0")
			}
			id = n
		case "ADDR":
			addr = v
		case "LADDR":
			laddr = v
		case "TYPE":
			typ = strings.ToLower(v)
			switch typ {
			case "normal", "pubsub", "master", "replica", "slave":
			default:
				return resp.AppendError(dst, "ERR Unknown client type '"+v+"'")
			}
		case "USER":
			user = v
		case "SKIPME":
			switch strings.ToLower(v) {
			case "yes":
				skipMe = true
			case "no":
				skipMe = false
			default:
				return resp.AppendError(dst, "ERR syntax error")
			}
		default:
			return resp.AppendError(dst, "ERR syntax error")
		}
	}
	killed := 0
	for _, c := range g.clientsSorted() {
		switch {
		case id != 0 && c.id != id,
			addr != "" && c.conn.RemoteAddr().String() != addr,
			laddr != "" && c.conn.LocalAddr().String() != laddr,
			typ != "" && c.kind() != typ,
			user != "" && user != "default",
			skipMe && c == r.s.client:
			continue
		}
		if c == r.s.client {
			r.killSelf = true // after this reply, as Redis closes the caller after replying
		} else {
			_ = c.conn.Close()
		}
		killed++
	}
	return resp.AppendInt(dst, int64(killed))
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// unsupportedWhy is the error for a form of a command the gateway refuses, and why.
func unsupportedWhy(dst []byte, what, why string) []byte {
	return resp.AppendError(dst, "ERR '"+what+"' is not supported by dynode-broadcaster: "+why)
}
