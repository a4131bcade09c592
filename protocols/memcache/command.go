package memcache

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// Limits.
const (
	MaxKeyLen  = 250     // memcached's KEY_MAX_LENGTH
	MaxLineLen = 8 << 10 // a command line longer than this closes the connection
	// MaxRetrievalLineLen is the limit for get, gets, gat and gats lines, which clients
	// fill with many keys (a GetMulti of thousands of keys is one line).
	MaxRetrievalLineLen = 4 << 20
	MaxValueLen         = 1 << 30 // a larger data block is refused before it is read
	// BackendLineLimit is the longest command line memcached reliably accepts: when
	// more than 2048 bytes of a line are buffered without its end, memcached closes the
	// connection unless the line is a get or gets (proto_text.c, try_read_command_ascii).
	// Lines toward backends stay within it.
	BackendLineLimit = 2048
)

// ReplyKind tells how a backend's reply to a command ends.
type ReplyKind uint8

const (
	// ReplyLine is one line: STORED, DELETED, a number, VERSION x, an error...
	ReplyLine ReplyKind = iota
	// ReplyValues is VALUE blocks up to END (get, gets, gat, gats).
	ReplyValues
	// ReplyStats is lines up to END (STAT, ITEM or PREFIX lines), or one line: an
	// error, RESET or OK.
	ReplyStats
	// ReplyMeta is one meta line; a VA line is followed by its data block.
	ReplyMeta
)

// Command is one decoded memcached command.
type Command struct {
	protocols.Command
	Reply ReplyKind
	// NoReply: the client sent noreply; the frame toward backends has it removed, and
	// the client is sent nothing.
	NoReply bool
	// Quiet: a meta command with the q flag, removed toward backends; the client sees
	// only the replies Visibility lets through.
	Quiet bool
	// Keys are the command's keys as sent (base64 for meta commands with b).
	Keys [][]byte
	// Parts, for a gat or gats whose line is longer than memcached accepts from a
	// client (BackendLineLimit), are the frames of the same command split by keys;
	// their replies, without the END of all but the last, are the command's reply.
	Parts [][]byte
	// ByEffect is set for conditional writes whose condition only one server can
	// evaluate (cas, and ms/md/ma with a C compare-CAS flag): the CAS token a client
	// holds comes from one server. It is the unconditional form of the command (cas
	// becomes set with the same flags, exptime and data; a meta command loses its C
	// flag) that reproduces the effect on the other servers once that server has
	// applied it (see Applied).
	ByEffect []byte
}

// ClientError is input memcached answers with an error line and then goes on reading
// the same connection: N bytes are consumed, Reply goes to the client, nothing to
// backends.
type ClientError struct {
	Reply string // the line without CRLF, e.g. "CLIENT_ERROR bad data chunk"
	N     int
	// Silent: the command asked for noreply before memcached found the error, so
	// memcached sends nothing at all (set_noreply_maybe runs first in every text
	// command); only errors found before that (a wrong token count: ERROR) are sent.
	Silent bool
}

func (e *ClientError) Error() string { return e.Reply }

const (
	errFormat    = "CLIENT_ERROR bad command line format"
	errDataChunk = "CLIENT_ERROR bad data chunk"
	errExptime   = "CLIENT_ERROR invalid exptime argument"
)

// Parser splits a client's stream into commands. It reuses its buffers; Reset once
// every Command returned since the last Reset has been consumed.
type Parser struct {
	rewritten []byte // frames rebuilt without noreply / q
	tokens    [][]byte
	need      int // see Need
	// tokensUsed is how many entries of tokens hold slices since the last Reset,
	// which clears them (they point into the caller's buffer).
	tokensUsed int
}

// Need is, after Next returned ErrIncomplete, the length the incomplete command
// will have (its line and data block) when its data size is known, else 0: a
// reader can make room for it at once instead of growing step by step.
func (p *Parser) Need() int { return p.need }

// Reset makes the parser's buffers reusable.
func (p *Parser) Reset() {
	p.rewritten = p.rewritten[:0]
	clear(p.tokens[:p.tokensUsed])
	p.tokensUsed = 0
}

// Shed lets go of the parser's scratch storage, which grows again when it is next
// used: for a client that went idle.
func (p *Parser) Shed() {
	p.Reset()
	p.rewritten, p.tokens = nil, nil
}

// Next parses the first command of buf. Errors: protocols.ErrIncomplete (read more),
// *ClientError (answer it, skip its N bytes, continue), *protocols.ProtocolError
// (answer it, close the connection).
func (p *Parser) Next(buf []byte) (cmd Command, n int, err error) {
	p.need = 0
	if len(buf) == 0 {
		return cmd, 0, protocols.ErrIncomplete
	}
	if buf[0] == 0x80 {
		return cmd, 0, &protocols.ProtocolError{Msg: "CLIENT_ERROR the binary protocol is not supported; use the text or meta protocol"}
	}
	eol := bytes.IndexByte(buf, '\n')
	if n := eol; n < 0 || n > MaxLineLen {
		if n < 0 {
			n = len(buf)
		}
		if n > MaxLineLen && (n > MaxRetrievalLineLen || !isRetrieval(buf)) {
			return cmd, 0, &protocols.ProtocolError{Msg: "CLIENT_ERROR line too long"}
		}
		if eol < 0 {
			return cmd, 0, protocols.ErrIncomplete
		}
	}
	line := buf[:eol]
	line = bytes.TrimSuffix(line, []byte("\r"))
	lineEnd := eol + 1
	p.tokens = splitTokens(p.tokens[:0], line)
	p.tokensUsed = max(p.tokensUsed, len(p.tokens))
	toks := p.tokens
	if len(toks) == 0 {
		return cmd, lineEnd, &ClientError{Reply: "ERROR", N: lineEnd}
	}
	cmd.Args = toks
	name := string(toks[0])
	spec, ok := commands[name]
	if !ok {
		return cmd, lineEnd, &ClientError{Reply: "ERROR", N: lineEnd}
	}
	cmd.Name, cmd.Class, cmd.Reply = spec.name, spec.class, spec.reply
	cmd.Frame = buf[:lineEnd]
	switch spec.shape {
	case shapeStorage:
		return p.storage(cmd, buf, lineEnd)
	case shapeRetrieval:
		first := 1
		if name == "gat" || name == "gats" {
			if len(toks) >= 2 && !isInt(toks[1]) {
				return cmd, lineEnd, &ClientError{Reply: errExptime, N: lineEnd}
			}
			first = 2
		}
		if len(toks) <= first {
			return cmd, lineEnd, &ClientError{Reply: "ERROR", N: lineEnd}
		}
		for _, k := range toks[first:] {
			if !validKey(k) {
				return cmd, lineEnd, &ClientError{Reply: errFormat, N: lineEnd}
			}
		}
		cmd.Keys = toks[first:]
		if first == 2 && lineEnd > BackendLineLimit {
			cmd.Parts = p.split(toks[:2], toks[2:])
		}
	case shapeKeyed: // incr decr touch delete
		if reply := keyedTokensError(name, toks); reply != "" {
			return cmd, lineEnd, &ClientError{Reply: reply, N: lineEnd}
		}
		noreply := lastIsNoreply(toks)
		if reply := keyedArgsError(name, toks, noreply); reply != "" {
			return cmd, lineEnd, &ClientError{Reply: reply, N: lineEnd, Silent: noreply}
		}
		cmd.Keys = toks[1:2]
		cmd = p.dropNoreply(cmd, noreply, nil)
	case shapeAdmin: // flush_all verbosity
		n := len(toks)
		if name == "flush_all" && n > 3 || name == "verbosity" && (n < 2 || n > 3) {
			return cmd, lineEnd, &ClientError{Reply: "ERROR", N: lineEnd}
		}
		noreply := lastIsNoreply(toks)
		bare := 1 // flush_all's tokens without a delay: its name, and noreply if given
		if noreply {
			bare = 2
		}
		switch {
		case name == "verbosity" && !isUint(toks[1], 32):
			return cmd, lineEnd, &ClientError{Reply: errFormat, N: lineEnd, Silent: noreply}
		case name == "flush_all" && n != bare && !isInt32(toks[1]):
			return cmd, lineEnd, &ClientError{Reply: errExptime, N: lineEnd, Silent: noreply}
		}
		cmd = p.dropNoreply(cmd, noreply, nil)
	case shapeMeta:
		cmd, n, err = p.meta(cmd, buf, lineEnd)
		if err == nil {
			cmd, err = p.withinLineLimit(cmd)
		}
		return cmd, n, err
	case shapePlain:
		if name == "stats" && len(toks) > 1 {
			switch string(toks[1]) {
			case "dynode": // the gateway's own statistics
				cmd.Class = protocols.Local
			case "reset": // changes every server's counters
				cmd.Class = protocols.Write
			case "detail":
				if len(toks) > 2 && string(toks[2]) != "dump" {
					cmd.Class = protocols.Write
				}
			}
		}
	}
	cmd, err = p.withinLineLimit(cmd)
	return cmd, lineEnd, err
}

// withinLineLimit makes sure the command line a backend receives is one memcached
// accepts (see BackendLineLimit): a longer line is rebuilt with single spaces between
// its tokens, and a command whose tokens alone are too long is refused as memcached
// refuses it, by closing the connection. get and gets lines may be any length, and
// a long gat or gats is split (Parts).
func (p *Parser) withinLineLimit(cmd Command) (Command, error) {
	line := cmd.Frame
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i+1]
	}
	if len(line) <= BackendLineLimit || cmd.Name == "get" || cmd.Name == "gets" || cmd.Parts != nil {
		return cmd, nil
	}
	canonical := 2
	for _, t := range cmd.Args {
		canonical += len(t) + 1
	}
	if canonical-1 > BackendLineLimit {
		return cmd, &protocols.ProtocolError{Msg: "CLIENT_ERROR line too long"}
	}
	cmd.Frame = p.rebuild(cmd.Args, len(cmd.Args), "", cmd.Frame[len(line):])
	return cmd, nil
}

// split returns the frames of a gat or gats (head: the command and its exptime)
// with keys spread over lines of at most BackendLineLimit bytes.
func (p *Parser) split(head, keys [][]byte) [][]byte {
	var parts [][]byte
	for len(keys) > 0 {
		start := len(p.rewritten)
		p.rewritten = append(append(append(p.rewritten, head[0]...), ' '), head[1]...)
		n := 0
		for n < len(keys) && (n == 0 || len(p.rewritten)-start+1+len(keys[n])+2 <= BackendLineLimit) {
			p.rewritten = append(append(p.rewritten, ' '), keys[n]...)
			n++
		}
		p.rewritten = append(p.rewritten, '\r', '\n')
		parts = append(parts, p.rewritten[start:])
		keys = keys[n:]
	}
	return parts
}

// storage parses set/add/replace/append/prepend/cas and their data block.
func (p *Parser) storage(cmd Command, buf []byte, lineEnd int) (Command, int, error) {
	toks := cmd.Args
	want := 5 // tokens with the command's name; one more is optional ("noreply" or ignored)
	if cmd.Name == "cas" {
		want = 6
	}
	if len(toks) != want && len(toks) != want+1 {
		return cmd, lineEnd, &ClientError{Reply: "ERROR", N: lineEnd}
	}
	noreply := lastIsNoreply(toks)
	args := toks[1:want]
	if !validKey(args[0]) || !isUint(args[1], 32) || !isInt32(args[2]) || (want == 6 && !isUint(args[4], 64)) {
		return cmd, lineEnd, &ClientError{Reply: errFormat, N: lineEnd, Silent: noreply}
	}
	size, err := strconv.Atoi(string(args[3]))
	if err != nil || size < 0 || size > MaxValueLen {
		return cmd, lineEnd, &ClientError{Reply: errFormat, N: lineEnd, Silent: noreply}
	}
	end := lineEnd + size + 2
	if len(buf) < end {
		p.need = end
		return cmd, 0, protocols.ErrIncomplete
	}
	if buf[end-2] != '\r' || buf[end-1] != '\n' {
		return cmd, end, &ClientError{Reply: errDataChunk, N: end, Silent: noreply}
	}
	cmd.Keys = args[:1]
	cmd.Frame = buf[:end]
	if len(toks) == want+1 {
		// The optional last token goes: "noreply" is the gateway's to honour, anything
		// else memcached ignores.
		cmd.NoReply = noreply
		cmd.Frame = p.rebuild(toks[:want], want, "", buf[lineEnd:end])
	}
	if cmd.Name == "cas" {
		start := len(p.rewritten)
		p.rewritten = append(p.rewritten, "set"...)
		for _, t := range args[:4] { // key flags exptime bytes
			p.rewritten = append(append(p.rewritten, ' '), t...)
		}
		p.rewritten = append(p.rewritten, '\r', '\n')
		p.rewritten = append(p.rewritten, buf[lineEnd:end]...)
		cmd.ByEffect = p.rewritten[start:]
	}
	return cmd, end, nil
}

// meta parses mg ms md ma mn me.
func (p *Parser) meta(cmd Command, buf []byte, lineEnd int) (Command, int, error) {
	toks := cmd.Args
	if cmd.Name == "mn" {
		return cmd, lineEnd, nil
	}
	if len(toks) < 2 {
		reply := "ERROR"
		if cmd.Name == "me" || cmd.Name == "ms" {
			reply = errFormat
		}
		return cmd, lineEnd, &ClientError{Reply: reply, N: lineEnd}
	}
	flagStart := 2
	size := -1
	if cmd.Name == "ms" {
		if len(toks) < 3 {
			return cmd, lineEnd, &ClientError{Reply: errFormat, N: lineEnd}
		}
		n, err := strconv.Atoi(string(toks[2]))
		if err != nil || n < 0 || n > MaxValueLen {
			return cmd, lineEnd, &ClientError{Reply: errFormat, N: lineEnd}
		}
		size, flagStart = n, 3
	}
	// Once ms's size is known, memcached skips the data block of a command it refuses
	// for its flags or its base64 key.
	swallow := func(reply string) (Command, int, error) {
		end := lineEnd
		if size >= 0 {
			end += size + 2
		}
		if len(buf) < end {
			return cmd, 0, protocols.ErrIncomplete
		}
		return cmd, end, &ClientError{Reply: reply, N: end}
	}
	b64, quiet, compare := false, false, false
	for _, f := range toks[flagStart:] {
		if len(f) == 0 || !isFlagChar(f[0]) {
			return swallow("CLIENT_ERROR invalid flag")
		}
		switch f[0] {
		case 'b':
			b64 = true
		case 'q':
			quiet = true
		case 'C':
			compare = cmd.Name != "mg" && cmd.Name != "me"
		case 'T', 'N', 'R':
			if cmd.Name == "mg" {
				cmd.Class = protocols.Write // touches or creates the item
			}
		}
	}
	if !validKey(toks[1]) {
		return cmd, lineEnd, &ClientError{Reply: errFormat, N: lineEnd}
	}
	if b64 && !validBase64Key(toks[1]) {
		return swallow("CLIENT_ERROR error decoding key")
	}
	cmd.Keys = toks[1:2]
	end := lineEnd
	if size >= 0 {
		end = lineEnd + size + 2
		if len(buf) < end {
			p.need = end
			return cmd, 0, protocols.ErrIncomplete
		}
		if buf[end-2] != '\r' || buf[end-1] != '\n' {
			return cmd, end, &ClientError{Reply: errDataChunk, N: end}
		}
		cmd.Frame = buf[:end]
	}
	if quiet {
		cmd.Quiet = true
		cmd.Frame = p.rebuild(toks, flagStart, "q", buf[lineEnd:end])
	}
	if compare {
		cmd.ByEffect = p.rebuild(toks, flagStart, "qC", buf[lineEnd:end])
	}
	return cmd, end, nil
}

// rebuild appends the command line without the tokens from index from on that start
// with one of the bytes of drop, then data, to the parser's buffer and returns that
// frame.
func (p *Parser) rebuild(toks [][]byte, from int, drop string, data []byte) []byte {
	start := len(p.rewritten)
	for i, t := range toks {
		if i >= from && strings.IndexByte(drop, t[0]) >= 0 {
			continue
		}
		if len(p.rewritten) > start {
			p.rewritten = append(p.rewritten, ' ')
		}
		p.rewritten = append(p.rewritten, t...)
	}
	p.rewritten = append(p.rewritten, '\r', '\n')
	p.rewritten = append(p.rewritten, data...)
	return p.rewritten[start:]
}

// dropNoreply rebuilds the frame without its last token when it is noreply (and
// without a delete's legacy "0"), so every backend answers and the answers compare.
func (p *Parser) dropNoreply(cmd Command, noreply bool, data []byte) Command {
	if !noreply {
		return cmd
	}
	cmd.NoReply = true
	cmd.Frame = p.rebuild(cmd.Args, len(cmd.Args)-1, "n", data)
	return cmd
}

// isRetrieval reports whether a line starts with get, gets, gat or gats.
func isRetrieval(line []byte) bool {
	for _, p := range []string{"get ", "gets ", "gat ", "gats "} {
		if bytes.HasPrefix(line, []byte(p)) {
			return true
		}
	}
	return false
}

// lastIsNoreply is memcached's set_noreply_maybe: a command is noreply when its last
// token is "noreply", whatever position that is.
func lastIsNoreply(toks [][]byte) bool {
	return len(toks) > 1 && string(toks[len(toks)-1]) == "noreply"
}

// keyedTokensError is memcached's token count check of incr, decr, touch (name, key,
// argument, one optional token) and delete (name, key, two optional tokens), made
// before it looks for noreply: its ERROR is always sent.
func keyedTokensError(name string, toks [][]byte) string {
	n := len(toks)
	if name == "delete" && (n < 2 || n > 4) || name != "delete" && n != 3 && n != 4 {
		return "ERROR"
	}
	return ""
}

// keyedArgsError checks the arguments of incr, decr, touch and delete as memcached
// does once noreply is known, and returns its error line, or "".
func keyedArgsError(name string, toks [][]byte, noreply bool) string {
	if name == "delete" && len(toks) > 2 {
		hold0 := string(toks[2]) == "0"
		if !(len(toks) == 3 && (hold0 || noreply) || len(toks) == 4 && hold0 && noreply) {
			return "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"
		}
	}
	if !validKey(toks[1]) {
		return errFormat
	}
	switch name {
	case "incr", "decr":
		if !isUint(toks[2], 64) {
			return "CLIENT_ERROR invalid numeric delta argument"
		}
	case "touch":
		if !isInt32(toks[2]) {
			return errExptime
		}
	}
	return ""
}

func splitTokens(dst [][]byte, line []byte) [][]byte {
	for len(line) > 0 {
		i := 0
		for i < len(line) && line[i] == ' ' {
			i++
		}
		line = line[i:]
		j := 0
		for j < len(line) && line[j] != ' ' {
			j++
		}
		if j > 0 {
			dst = append(dst, line[:j])
		}
		line = line[j:]
	}
	return dst
}

// validKey: 1 to 250 bytes, no control characters or spaces.
func validKey(k []byte) bool {
	if len(k) == 0 || len(k) > MaxKeyLen {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// validBase64Key: a meta key with the b flag must decode to 1..250 bytes.
func validBase64Key(k []byte) bool {
	n, err := base64.StdEncoding.Decode(make([]byte, base64.StdEncoding.DecodedLen(len(k))), k)
	return err == nil && n > 0 && n <= MaxKeyLen
}

func isFlagChar(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isInt(b []byte) bool {
	_, err := strconv.ParseInt(string(b), 10, 64)
	return err == nil
}

// isInt32 is memcached's safe_strtol: a 32-bit signed decimal.
func isInt32(b []byte) bool {
	_, err := strconv.ParseInt(string(b), 10, 32)
	return err == nil
}

func isUint(b []byte, bits int) bool {
	_, err := strconv.ParseUint(string(b), 10, bits)
	return err == nil
}
