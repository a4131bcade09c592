package resp

import (
	"bytes"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/tidwall/redcon"
)

// MaxInlineSize is the longest inline command line accepted, as in Redis
// (PROTO_INLINE_MAX_SIZE).
const MaxInlineSize = 64 << 10

// CommandParser splits a client's byte stream into commands. It reuses its argument
// slice and its buffer of re-encoded inline commands; Reset releases them for reuse
// once every Command handed out since the last Reset has been consumed.
//
// The parsing itself is redcon.ReadNextCommand; around it the parser rejects frames
// Redis would not accept (Tile38 "$" frames, oversized inline lines) and turns inline
// commands into multibulk frames, so backends only ever see canonical RESP.
type CommandParser struct {
	args   [][]byte
	inline []byte // re-encoded inline commands of the current burst
}

// Reset makes the parser's buffers reusable. Commands returned before are invalid after it.
func (p *CommandParser) Reset() { p.inline = p.inline[:0] }

// Next parses the first command in buf. It returns the command and the number of
// bytes it used; protocols.ErrIncomplete when buf holds no complete command; a
// *protocols.ProtocolError when buf can never start a valid command. An empty command
// (a blank inline line, "*0\r\n") is returned with Args == nil and n > 0: skip it.
func (p *CommandParser) Next(buf []byte) (cmd protocols.Command, n int, err error) {
	if len(buf) == 0 {
		return cmd, 0, protocols.ErrIncomplete
	}
	switch buf[0] {
	case '$':
		return cmd, 0, &protocols.ProtocolError{Msg: "Protocol error: expected '*', got '$'"}
	case '*':
	default:
		if bytes.IndexByte(buf, '\n') < 0 {
			if len(buf) > MaxInlineSize {
				return cmd, 0, &protocols.ProtocolError{Msg: "Protocol error: too big inline request"}
			}
			return cmd, 0, protocols.ErrIncomplete
		}
	}
	complete, args, _, leftover, perr := redcon.ReadNextCommand(buf, p.args[:0])
	if perr != nil {
		return cmd, 0, &protocols.ProtocolError{Msg: perr.Error()}
	}
	if !complete {
		return cmd, 0, protocols.ErrIncomplete
	}
	p.args = args
	n = len(buf) - len(leftover)
	if len(args) == 0 {
		return cmd, n, nil
	}
	cmd.Args = args
	cmd.Frame = buf[:n]
	if buf[0] != '*' {
		start := len(p.inline)
		p.inline = AppendCommand(p.inline, args)
		cmd.Frame = p.inline[start:]
	}
	cmd.Name, cmd.Class = Classify(args)
	return cmd, n, nil
}

// AppendCommand appends args as one RESP multibulk command.
func AppendCommand(dst []byte, args [][]byte) []byte {
	dst = redcon.AppendArray(dst, len(args))
	for _, a := range args {
		dst = redcon.AppendBulk(dst, a)
	}
	return dst
}
