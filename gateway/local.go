package gateway

import (
	"strconv"
	"strings"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// Version is the gateway version reported by HELLO and the version subcommand.
const Version = "0.1.0"

// local answers a command the gateway handles itself, appending its reply to dst.
// quit reports that the connection closes after the reply.
func (r *respCodec) local(dst []byte, cmd protocols.Command) (reply []byte, quit bool) {
	args := cmd.Args
	switch cmd.Name {
	case "PING":
		switch len(args) {
		case 1:
			return resp.AppendSimple(dst, "PONG"), false
		case 2:
			return resp.AppendBulk(dst, args[1]), false
		}
	case "ECHO":
		if len(args) == 2 {
			return resp.AppendBulk(dst, args[1]), false
		}
	case "QUIT":
		return resp.AppendOK(dst), true
	case "SELECT":
		if len(args) == 2 {
			db, err := strconv.Atoi(string(args[1]))
			if err != nil {
				return resp.AppendError(dst, "ERR value is not an integer or out of range"), false
			}
			if db < 0 || db >= r.s.gw.conf().Databases {
				return resp.AppendError(dst, "ERR DB index is out of range"), false
			}
			r.db = db
			r.s.client.update(func(c *client) { c.db = db })
			return resp.AppendOK(dst), false
		}
	case "HELLO":
		return r.hello(dst, args), false
	case "AUTH":
		return r.auth(dst, args), false
	case "SCRIPT|KILL", "FUNCTION|KILL":
		if len(args) == 2 {
			return r.s.gw.killScripts(dst, cmd.Name), false
		}
	case "MONITOR":
		if len(args) == 1 {
			r.startMonitor()
			return resp.AppendOK(dst), false
		}
	case "RESET":
		if len(args) == 1 {
			return r.reset(dst), false
		}
	case "CLIENT|LIST", "CLIENT|INFO", "CLIENT|KILL", "CLIENT|UNBLOCK", "CLIENT|NO-EVICT", "CLIENT|NO-TOUCH", "CLIENT|TRACKING":
		return r.clientCommand(dst, cmd), false
	case "CLIENT|ID":
		if len(args) == 2 {
			return resp.AppendInt(dst, r.s.id), false
		}
	case "CLIENT|GETNAME":
		if len(args) == 2 {
			if r.name == "" {
				return append(dst, r.nullBulk()...), false
			}
			return resp.AppendBulkString(dst, r.name), false
		}
	case "CLIENT|SETNAME":
		if len(args) == 3 {
			if strings.ContainsAny(string(args[2]), " \n") {
				return resp.AppendError(dst, "ERR Client names cannot contain spaces, newlines or special characters."), false
			}
			r.name = string(args[2])
			r.s.client.update(func(c *client) { c.name = r.name })
			return resp.AppendOK(dst), false
		}
	case "CLIENT|SETINFO":
		if len(args) == 4 {
			switch strings.ToUpper(string(args[2])) {
			case "LIB-NAME", "LIB-VER":
				return resp.AppendOK(dst), false
			}
			return resp.AppendError(dst, "ERR Unrecognized option '"+string(args[2])+"'"), false
		}
	default:
		return resp.AppendError(dst, "ERR unknown command '"+strings.ToLower(cmd.Name)+"'"), false
	}
	return wrongArity(dst, cmd.Name), false
}

func wrongArity(dst []byte, name string) []byte {
	name = strings.ToLower(strings.ReplaceAll(name, "|", " "))
	return resp.AppendError(dst, "ERR wrong number of arguments for '"+name+"' command")
}

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]] (AUTH as the AUTH
// command; nothing changes when it fails). HELLO 3 switches the client to RESP3: its
// commands reach the backends behind a HELLO 3 of the shared pipeline (see
// appendStateChange), so their replies come back in RESP3 as Redis sends them, and
// the gateway's own replies to it are RESP3 too.
func (r *respCodec) hello(dst []byte, args [][]byte) []byte {
	proto := r.proto
	if len(args) >= 2 {
		v, err := strconv.Atoi(string(args[1]))
		if err != nil {
			return resp.AppendError(dst, "ERR Protocol version is not an integer or out of range")
		}
		if v != 2 && v != 3 {
			return resp.AppendError(dst, "NOPROTO sorry, this protocol version is not supported")
		}
		proto = v
		authed, name := r.authed, r.name
		for i := 2; i < len(args); i++ {
			switch opt := strings.ToUpper(string(args[i])); {
			case opt == "AUTH" && i+2 < len(args):
				if !r.s.gw.auth.check(string(args[i+1]), string(args[i+2])) {
					r.s.log.Warn("client authentication failed", "user", string(args[i+1])) // never the password
					return resp.AppendError(dst, errWrongPass)
				}
				authed = true
				i += 2
			case opt == "SETNAME" && i+1 < len(args):
				name = string(args[i+1])
				i++
			default:
				return resp.AppendError(dst, "ERR Syntax error in HELLO option '"+string(args[i])+"'")
			}
		}
		if !authed {
			return resp.AppendError(dst, errHelloAuth)
		}
		r.authed, r.name, r.proto = authed, name, proto
		r.s.client.update(func(c *client) { c.name, c.proto = name, proto })
	} else if !r.authed {
		return resp.AppendError(dst, errHelloAuth)
	}
	if r.proto == 3 {
		dst = append(dst, "%7\r\n"...)
	} else {
		dst = resp.AppendArray(dst, 14)
	}
	for _, kv := range [][2]string{{"server", "dynode-broadcaster"}, {"version", Version}} {
		dst = resp.AppendBulkString(dst, kv[0])
		dst = resp.AppendBulkString(dst, kv[1])
	}
	dst = resp.AppendBulkString(dst, "proto")
	dst = resp.AppendInt(dst, int64(r.proto))
	dst = resp.AppendBulkString(dst, "id")
	dst = resp.AppendInt(dst, r.s.id)
	for _, kv := range [][2]string{{"mode", "standalone"}, {"role", "master"}} {
		dst = resp.AppendBulkString(dst, kv[0])
		dst = resp.AppendBulkString(dst, kv[1])
	}
	dst = resp.AppendBulkString(dst, "modules")
	return resp.AppendArray(dst, 0)
}

// unsupported is the reply to a command the gateway cannot replicate correctly.
func unsupported(dst []byte, name string) []byte {
	name = strings.ToLower(strings.ReplaceAll(name, "|", " "))
	return resp.AppendError(dst, "ERR command '"+name+"' is not supported by dynode-broadcaster (it cannot be replicated through a shared pipeline)")
}
