package resp

import (
	"bytes"
	"math"
	"strconv"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/tidwall/redcon"
)

// Limits Redis applies to client requests, which the parser applies the same way.
const (
	// MaxInlineSize is the longest inline command line, and the longest multibulk
	// header line, accepted (Redis's PROTO_INLINE_MAX_SIZE).
	MaxInlineSize = 64 << 10
	// MaxMultibulkLen is the largest argument count a multibulk header may declare
	// (Redis refuses counts above INT_MAX).
	MaxMultibulkLen = math.MaxInt32
	// keepArgs is how many arguments' worth of scratch space a parser keeps between
	// bursts; a larger command's buffers are dropped once it has been handled.
	keepArgs = 4096
)

// CommandParser splits a client's byte stream into commands, as Redis's own request
// parser does (processMultibulkBuffer and processInlineBuffer): the same limits, the
// same error texts, the same inline quoting rules (sdssplitargs).
//
// It resumes: when a multibulk command is incomplete, the arguments already parsed
// are kept, and the next call (with the same command at the start of buf and more
// bytes after it) continues after the last complete argument instead of parsing the
// command from its first byte again. So a command of a million arguments arriving in
// small reads costs linear time.
//
// It reuses its argument slice and its buffer of re-encoded inline commands; Reset
// releases them for reuse once every Command handed out since the last Reset has been
// consumed. The zero value is ready to use.
type CommandParser struct {
	// MaxBulkLen is the largest bulk argument accepted; 0 means Redis's default
	// proto-max-bulk-len (512 MiB).
	MaxBulkLen int64

	args   [][]byte
	inline []byte // re-encoded inline commands of the current burst
	words  []byte // scratch: an inline line's arguments, each as a length and its bytes
	offs   []int  // scratch: where each inline argument starts in inline
	mb     multibulk
	need   int // see Need
	// argsUsed is how many entries of args hold slices since the last Reset, which
	// clears them: they point into the caller's buffer, which must not stay
	// reachable through the parser (a 64 MiB argument's buffer would).
	argsUsed int
	last     lastCommand
}

// Need is, after Next returned ErrIncomplete, how long the incomplete command is at
// least known to be (up to the end of the bulk argument it stopped in), else 0: a
// reader can make room for a large argument at once instead of growing step by step.
func (p *CommandParser) Need() int { return p.need }

// multibulk is the state of a multibulk command being parsed: offsets are relative
// to the command's first byte, so they stay valid when the caller moves the
// incomplete command to the front of a new buffer.
type multibulk struct {
	active bool
	nargs  int   // arguments declared by the header
	pos    int   // offset after the last complete argument
	spans  []int // start and end of each complete argument
}

// Reset makes the parser's buffers reusable. Commands returned before are invalid
// after it. A multibulk command in progress is kept.
func (p *CommandParser) Reset() {
	clear(p.args[:p.argsUsed])
	p.argsUsed = 0
	p.inline = p.inline[:0]
	if cap(p.args) > keepArgs {
		p.args = nil
	}
	if !p.mb.active && cap(p.mb.spans) > 2*keepArgs {
		p.mb.spans = nil
	}
}

// Next parses the first command in buf. It returns the command and the number of
// bytes it used; protocols.ErrIncomplete when buf holds no complete command; a
// *protocols.ProtocolError when buf can never start a valid command. An empty command
// (a blank inline line, "*0\r\n", a negative count) is returned with Args == nil and
// n > 0: skip it, as Redis does.
//
// After ErrIncomplete, the next call must pass the same command at the start of buf.
func (p *CommandParser) Next(buf []byte) (cmd protocols.Command, n int, err error) {
	p.need = 0
	if len(buf) == 0 {
		return cmd, 0, protocols.ErrIncomplete
	}
	switch buf[0] {
	case '*':
		return p.multibulk(buf)
	case '$':
		// redcon would read this as a Tile38 command; Redis reads it as an inline
		// command named "$..." that no server knows. Refuse it outright.
		return cmd, 0, &protocols.ProtocolError{Msg: "Protocol error: expected '*', got '$'"}
	}
	return p.inlineCommand(buf)
}

// multibulk parses "*<count>\r\n" followed by count "$<len>\r\n<bytes>\r\n" arguments.
func (p *CommandParser) multibulk(buf []byte) (cmd protocols.Command, n int, err error) {
	mb := &p.mb
	if !mb.active {
		line, next, err := headerLine(buf, 1, "Protocol error: too big mbulk count string")
		if err != nil {
			return cmd, 0, err
		}
		count, ok := string2ll(line)
		if !ok || count > MaxMultibulkLen {
			return cmd, 0, &protocols.ProtocolError{Msg: "Protocol error: invalid multibulk length"}
		}
		if count <= 0 {
			return cmd, next, nil
		}
		mb.active, mb.nargs, mb.pos, mb.spans = true, int(count), next, mb.spans[:0]
	}
	maxBulk := p.MaxBulkLen
	if maxBulk <= 0 {
		maxBulk = MaxBulkLen
	}
	for len(mb.spans) < 2*mb.nargs {
		at := mb.pos
		if at >= len(buf) {
			return cmd, 0, protocols.ErrIncomplete
		}
		if buf[at] != '$' {
			p.mb.active = false
			return cmd, 0, &protocols.ProtocolError{Msg: "Protocol error: expected '$', got " + quoteByte(buf[at])}
		}
		line, next, err := headerLine(buf, at+1, "Protocol error: too big bulk count string")
		if err != nil {
			if protocols.IsProtocolError(err) {
				p.mb.active = false
			}
			return cmd, 0, err
		}
		size, ok := string2ll(line)
		if !ok || size < 0 || size > maxBulk {
			p.mb.active = false
			return cmd, 0, &protocols.ProtocolError{Msg: "Protocol error: invalid bulk length"}
		}
		end := next + int(size) + 2
		if end > len(buf) {
			p.need = end
			return cmd, 0, protocols.ErrIncomplete
		}
		if buf[end-2] != '\r' || buf[end-1] != '\n' {
			p.mb.active = false
			return cmd, 0, &protocols.ProtocolError{Msg: "Protocol error: bulk argument not followed by CRLF"}
		}
		mb.spans = append(mb.spans, next, next+int(size))
		mb.pos = end
	}
	args := p.args[:0]
	for i := 0; i < len(mb.spans); i += 2 {
		args = append(args, buf[mb.spans[i]:mb.spans[i+1]])
	}
	p.args, p.argsUsed = args, max(p.argsUsed, len(args))
	n = mb.pos
	mb.active = false
	cmd.Args = args
	cmd.Frame = buf[:n]
	cmd.Name, cmd.Class = p.classify(args)
	return cmd, n, nil
}

// inlineCommand parses one inline command line, splitting it as Redis's sdssplitargs
// does, and re-encodes it as a multibulk frame so backends only see canonical RESP.
func (p *CommandParser) inlineCommand(buf []byte) (cmd protocols.Command, n int, err error) {
	eol := bytes.IndexByte(buf, '\n')
	if eol < 0 {
		if len(buf) > MaxInlineSize {
			return cmd, 0, &protocols.ProtocolError{Msg: "Protocol error: too big inline request"}
		}
		return cmd, 0, protocols.ErrIncomplete
	}
	if eol > MaxInlineSize {
		return cmd, 0, &protocols.ProtocolError{Msg: "Protocol error: too big inline request"}
	}
	n = eol + 1
	line := buf[:eol]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	words, ok := splitArgs(p.words[:0], line)
	p.words = words
	if !ok {
		return cmd, 0, &protocols.ProtocolError{Msg: "Protocol error: unbalanced quotes in request"}
	}
	nargs := 0
	for rest := words; len(rest) > 0; nargs++ {
		rest = rest[4+wordLen(rest):]
	}
	if nargs == 0 {
		return cmd, n, nil
	}
	frameStart := len(p.inline)
	p.inline = redcon.AppendArray(p.inline, nargs)
	offs := p.offs[:0]
	for rest := words; len(rest) > 0; {
		size := wordLen(rest)
		p.inline = append(strconv.AppendInt(append(p.inline, '$'), int64(size), 10), '\r', '\n')
		offs = append(offs, len(p.inline))
		p.inline = append(append(p.inline, rest[4:4+size]...), '\r', '\n')
		rest = rest[4+size:]
	}
	p.offs = offs
	args := p.args[:0]
	for i, rest := 0, words; len(rest) > 0; i++ {
		size := wordLen(rest)
		args = append(args, p.inline[offs[i]:offs[i]+size])
		rest = rest[4+size:]
	}
	p.args, p.argsUsed = args, max(p.argsUsed, len(args))
	frame := p.inline[frameStart:]
	cmd.Args = args
	cmd.Frame = frame
	cmd.Name, cmd.Class = p.classify(args)
	return cmd, n, nil
}

// splitArgs splits an inline line into arguments by Redis's sdssplitargs rules and
// appends each to dst as a 4-byte big-endian length and its bytes. ok is false for
// unbalanced quotes (or a closing quote not followed by a space). As in Redis, whose
// line is a C string there, a NUL byte ends the line.
func splitArgs(dst, line []byte) (out []byte, ok bool) {
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i]
	}
	p := 0
	for {
		for p < len(line) && isSpace(line[p]) {
			p++
		}
		if p >= len(line) {
			return dst, true
		}
		lenAt := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		inq, insq, done := false, false, false
		for !done {
			var c byte // 0 stands for the end of the line
			if p < len(line) {
				c = line[p]
			}
			var next byte
			if p+1 < len(line) {
				next = line[p+1]
			}
			switch {
			case inq:
				switch {
				case c == '\\' && next == 'x' && p+3 < len(line) && isHex(line[p+2]) && isHex(line[p+3]):
					dst = append(dst, unhex(line[p+2])<<4|unhex(line[p+3]))
					p += 3
				case c == '\\' && next != 0:
					p++
					switch next {
					case 'n':
						next = '\n'
					case 'r':
						next = '\r'
					case 't':
						next = '\t'
					case 'b':
						next = '\b'
					case 'a':
						next = '\a'
					}
					dst = append(dst, next)
				case c == '"':
					// The closing quote must be followed by a space or nothing.
					if next != 0 && !isSpace(next) {
						return dst, false
					}
					done = true
				case c == 0:
					return dst, false // unterminated quotes
				default:
					dst = append(dst, c)
				}
			case insq:
				switch {
				case c == '\\' && next == '\'':
					p++
					dst = append(dst, '\'')
				case c == '\'':
					if next != 0 && !isSpace(next) {
						return dst, false
					}
					done = true
				case c == 0:
					return dst, false
				default:
					dst = append(dst, c)
				}
			default:
				switch c {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					dst = append(dst, c)
				}
			}
			if p < len(line) {
				p++
			}
		}
		size := len(dst) - lenAt - 4
		dst[lenAt], dst[lenAt+1], dst[lenAt+2], dst[lenAt+3] = byte(size>>24), byte(size>>16), byte(size>>8), byte(size)
	}
}

// wordLen is the length prefix splitArgs writes before each argument.
func wordLen(b []byte) int { return int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3]) }

// isSpace is C's isspace in the "C" locale.
func isSpace(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// headerLine returns the line of buf that starts at from and ends with CRLF, and the
// index after it. Like Redis, it looks for the first '\r'; a line longer than
// MaxInlineSize without one is the protocol error tooBig.
func headerLine(buf []byte, from int, tooBig string) (line []byte, next int, err error) {
	i := bytes.IndexByte(buf[from:], '\r')
	if i < 0 {
		if len(buf)-from > MaxInlineSize {
			return nil, 0, &protocols.ProtocolError{Msg: tooBig}
		}
		return nil, 0, protocols.ErrIncomplete
	}
	if i > MaxInlineSize {
		return nil, 0, &protocols.ProtocolError{Msg: tooBig}
	}
	end := from + i
	if end+1 >= len(buf) {
		return nil, 0, protocols.ErrIncomplete
	}
	if buf[end+1] != '\n' {
		return nil, 0, &protocols.ProtocolError{Msg: "Protocol error: expected CRLF"}
	}
	return buf[from:end], end + 2, nil
}

// string2ll parses a decimal int64 as Redis's string2ll does: parseInt's syntax
// (an optional minus sign, no plus sign, no spaces) without leading zeros ("0"
// itself excepted, "-0" refused).
func string2ll(b []byte) (int64, bool) {
	digits := b
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) > 0 && digits[0] == '0' && (len(b) > 1) {
		return 0, false
	}
	return parseInt(b)
}

// AppendCommand appends args as one RESP multibulk command.
func AppendCommand(dst []byte, args [][]byte) []byte {
	dst = redcon.AppendArray(dst, len(args))
	for _, a := range args {
		dst = redcon.AppendBulk(dst, a)
	}
	return dst
}
