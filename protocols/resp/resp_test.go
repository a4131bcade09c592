package resp

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/tidwall/redcon"
)

func TestCommandParserNext(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantN     int
		wantName  string
		wantClass protocols.Class
		wantFrame string
		wantErr   string // "" ok, "incomplete", or the protocol error text
	}{
		{"set", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", 27, "SET", protocols.Write, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", ""},
		{"get lower case", "*2\r\n$3\r\nget\r\n$1\r\nk\r\n", 20, "GET", protocols.Read, "*2\r\n$3\r\nget\r\n$1\r\nk\r\n", ""},
		{"pipelined keeps rest", "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", 14, "PING", protocols.Local, "*1\r\n$4\r\nPING\r\n", ""},
		{"subcommand", "*3\r\n$6\r\nclient\r\n$7\r\nsetname\r\n$1\r\na\r\n", 36, "CLIENT|SETNAME", protocols.Local, "", ""},
		{"unknown is write", "*1\r\n$5\r\nFOOBA\r\n", 15, "UNKNOWN", protocols.Write, "", ""},
		{"blocking served as a write", "*3\r\n$5\r\nBLPOP\r\n$1\r\nl\r\n$1\r\n0\r\n", 29, "BLPOP", protocols.Write, "", ""},
		{"inline re-encoded", "SET k \"a b\"\r\n", 13, "SET", protocols.Write, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na b\r\n", ""},
		{"inline lf only", "PING\n", 5, "PING", protocols.Local, "*1\r\n$4\r\nPING\r\n", ""},
		{"incomplete header", "*3\r\n$3\r\nSE", 0, "", 0, "", "incomplete"},
		{"incomplete inline", "PIN", 0, "", 0, "", "incomplete"},
		{"tile38 frame rejected", "$4 PING\r\n", 0, "", 0, "", "Protocol error: expected '*', got '$'"},
		{"bad multibulk length", "*x\r\n", 0, "", 0, "", "Protocol error: invalid multibulk length"},
		{"bad bulk length", "*1\r\n$-5\r\nabc\r\n", 0, "", 0, "", "Protocol error: invalid bulk length"},
		{"missing dollar", "*1\r\n+PING\r\n", 0, "", 0, "", "Protocol error: expected '$', got '+'"},
		{"bulk not ended by crlf", "*1\r\n$4\r\nPINGxx", 0, "", 0, "", "Protocol error: bulk argument not followed by CRLF"},
		// Inputs that crashed redcon.ReadNextCommand, and lengths it accepted as pending.
		{"negative bulk length -2", "*1\r\n$-2\r\n", 0, "", 0, "", "Protocol error: invalid bulk length"},
		{"bulk length -1 as argument", "*1\r\n$-1\r\n", 0, "", 0, "", "Protocol error: invalid bulk length"},
		{"bulk length max int64", "*1\r\n$9223372036854775807\r\nab", 0, "", 0, "", "Protocol error: invalid bulk length"},
		{"bulk length 2^62", "*1\r\n$4611686018427387904\r\n", 0, "", 0, "", "Protocol error: invalid bulk length"},
		{"bulk length overflows int64", "*1\r\n$99999999999999999999\r\n", 0, "", 0, "", "Protocol error: invalid bulk length"},
		{"bulk length leading zero", "*1\r\n$04\r\nPING\r\n", 0, "", 0, "", "Protocol error: invalid bulk length"},
		{"bulk length plus sign", "*1\r\n$+4\r\nPING\r\n", 0, "", 0, "", "Protocol error: invalid bulk length"},
		{"multibulk count over INT_MAX", "*2147483648\r\n", 0, "", 0, "", "Protocol error: invalid multibulk length"},
		{"multibulk header without LF", "*1\rx", 0, "", 0, "", "Protocol error: expected CRLF"},
		{"negative multibulk count skipped", "*-10\r\n", 6, "", 0, "", ""},
		{"inline tab separates", "SET\tk4\tv\r\n", 10, "SET", protocols.Write, "*3\r\n$3\r\nSET\r\n$2\r\nk4\r\n$1\r\nv\r\n", ""},
		{"inline hex escape", "SET k1 \"x\\x41y\"\r\n", 17, "SET", protocols.Write, "*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$3\r\nxAy\r\n", ""},
		{"inline single quotes keep backslash", "SET k2 'x\\ny'\r\n", 15, "SET", protocols.Write, "*3\r\n$3\r\nSET\r\n$2\r\nk2\r\n$4\r\nx\\ny\r\n", ""},
		{"inline quote inside word", "SET k3 b\"c\"\r\n", 13, "SET", protocols.Write, "*3\r\n$3\r\nSET\r\n$2\r\nk3\r\n$2\r\nbc\r\n", ""},
		{"inline closing quote then letter", "SET k \"a\"b\r\n", 0, "", 0, "", "Protocol error: unbalanced quotes in request"},
		{"inline unterminated quote", "SET k \"ab\r\n", 0, "", 0, "", "Protocol error: unbalanced quotes in request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p CommandParser
			cmd, n, err := p.Next([]byte(tt.in))
			switch {
			case tt.wantErr == "incomplete":
				if !errors.Is(err, protocols.ErrIncomplete) {
					t.Fatalf("err = %v, want ErrIncomplete", err)
				}
				return
			case tt.wantErr != "":
				if !protocols.IsProtocolError(err) || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want protocol error %q", err, tt.wantErr)
				}
				return
			case err != nil:
				t.Fatalf("unexpected error %v", err)
			}
			if n != tt.wantN || cmd.Name != tt.wantName || cmd.Class != tt.wantClass {
				t.Fatalf("got n=%d name=%q class=%v, want n=%d name=%q class=%v", n, cmd.Name, cmd.Class, tt.wantN, tt.wantName, tt.wantClass)
			}
			if tt.wantFrame != "" && string(cmd.Frame) != tt.wantFrame {
				t.Fatalf("frame = %q, want %q", cmd.Frame, tt.wantFrame)
			}
		})
	}
}

// TestCommandParserResumes feeds a command of many arguments in small pieces: the
// parser must not re-parse complete arguments (it keeps its position) and must end
// with the same command as when parsing it whole.
func TestCommandParserResumes(t *testing.T) {
	const nargs = 20000
	frame := []byte("*" + strconv.Itoa(nargs+1) + "\r\n$5\r\nRPUSH\r\n")
	for i := range nargs - 1 {
		frame = append(frame, "$"+strconv.Itoa(len(strconv.Itoa(i)))+"\r\n"+strconv.Itoa(i)+"\r\n"...)
	}
	frame = append(frame, "$4\r\nlast\r\n"...)
	var p CommandParser
	for end := 1; end <= len(frame); end += 7 {
		if _, _, err := p.Next(frame[:end]); !errors.Is(err, protocols.ErrIncomplete) {
			t.Fatalf("at %d of %d bytes: err = %v, want ErrIncomplete", end, len(frame), err)
		}
		if p.mb.active && p.mb.pos > end {
			t.Fatalf("position %d beyond the %d bytes seen", p.mb.pos, end)
		}
	}
	cmd, n, err := p.Next(frame)
	if err != nil || n != len(frame) || len(cmd.Args) != nargs+1 || string(cmd.Args[nargs]) != "last" || cmd.Name != "RPUSH" {
		t.Fatalf("n=%d of %d, %d args, err=%v", n, len(frame), len(cmd.Args), err)
	}
}

func TestCommandParserInlineTooBig(t *testing.T) {
	var p CommandParser
	_, _, err := p.Next(bytes.Repeat([]byte("a"), MaxInlineSize+1))
	if !protocols.IsProtocolError(err) {
		t.Fatalf("err = %v, want protocol error", err)
	}
}

func TestCommandParserEmptyCommands(t *testing.T) {
	var p CommandParser
	for _, in := range []string{"\r\n", "*0\r\n"} {
		cmd, n, err := p.Next([]byte(in))
		if err != nil || n != len(in) || cmd.Args != nil {
			t.Fatalf("%q: got n=%d args=%v err=%v, want an empty command of %d bytes", in, n, cmd.Args, err, len(in))
		}
	}
}

func TestClassifyTable(t *testing.T) {
	for name, want := range map[string]protocols.Class{
		"SET": protocols.Write, "INCR": protocols.Write, "FLUSHALL": protocols.Write,
		"EVAL": protocols.Write, "PUBLISH": protocols.Write, "GET": protocols.Read,
		"INFO": protocols.Read, "COMMAND": protocols.Read, "EVAL_RO": protocols.Read,
		"SUBSCRIBE": protocols.Local, "BLPOP": protocols.Write, "XREAD": protocols.Read,
		"SHUTDOWN": protocols.Unsupported, "MULTI": protocols.Local, "WATCH": protocols.Local,
		"MONITOR": protocols.Local, "SYNC": protocols.Unsupported, "ECHO": protocols.Local, "SELECT": protocols.Local,
	} {
		if _, got := Classify([][]byte{[]byte(name)}); got != want {
			t.Errorf("Classify(%s) = %v, want %v", name, got, want)
		}
	}
	if name, got := Classify([][]byte{[]byte("command"), []byte("docs")}); name != "COMMAND|DOCS" || got != protocols.Read {
		t.Errorf("COMMAND DOCS = %s %v, want COMMAND|DOCS read", name, got)
	}
	if name, got := Classify([][]byte{[]byte("script"), []byte("load")}); name != "SCRIPT|LOAD" || got != protocols.Write {
		t.Errorf("SCRIPT LOAD = %s %v, want write", name, got)
	}
}

func TestScanReply(t *testing.T) {
	tests := []struct {
		in      string
		wantN   int
		wantErr string // "", "incomplete", "malformed"
		isErr   bool
	}{
		{"+OK\r\n", 5, "", false},
		{"-ERR boom\r\n", 11, "", true},
		{":42\r\n", 5, "", false},
		{":-1\r\n", 5, "", false},
		{"$3\r\nfoo\r\n", 9, "", false},
		{"$-1\r\n", 5, "", false},
		{"$0\r\n\r\n", 6, "", false},
		{"*-1\r\n", 5, "", false},
		{"*0\r\n", 4, "", false},
		{"*2\r\n$1\r\na\r\n:1\r\n+next\r\n", 15, "", false},
		{"*2\r\n*1\r\n$1\r\na\r\n*0\r\n", 19, "", false},
		{"_\r\n", 3, "", false},
		{"#t\r\n", 4, "", false},
		{",3.14\r\n", 7, "", false},
		{"(12345678901234567890\r\n", 23, "", false},
		{"!3\r\nerr\r\n", 9, "", true},
		{"=7\r\ntxt:abc\r\n", 13, "", false},
		{"%1\r\n+k\r\n:1\r\n", 12, "", false},
		{"~2\r\n:1\r\n:2\r\n", 12, "", false},
		{">2\r\n+message\r\n+x\r\n", 18, "", false},
		{"|1\r\n+key\r\n+val\r\n:7\r\n", 20, "", false},
		{"$3\r\nfo", 0, "incomplete", false},
		{"*2\r\n:1\r\n", 0, "incomplete", false},
		{"+OK", 0, "incomplete", false},
		{"", 0, "incomplete", false},
		{"?x\r\n", 0, "malformed", false},
		{"$3\r\nfoox\r\n", 0, "malformed", false},
		{"$-2\r\n", 0, "malformed", false},
		{"!-1\r\n", 0, "malformed", false},
		{"%-1\r\n", 0, "malformed", false},
		{":abc\r\n", 0, "malformed", false},
		{"#x\r\n", 0, "malformed", false},
		{"+OK\n", 0, "malformed", false},
		{"$999999999999\r\n", 0, "malformed", false},
	}
	for _, tt := range tests {
		n, isErr, err := ScanReply([]byte(tt.in))
		switch tt.wantErr {
		case "incomplete":
			if !errors.Is(err, protocols.ErrIncomplete) {
				t.Errorf("%q: err = %v, want incomplete", tt.in, err)
			}
		case "malformed":
			if !protocols.IsProtocolError(err) {
				t.Errorf("%q: err = %v, want protocol error", tt.in, err)
			}
		default:
			if err != nil || n != tt.wantN || isErr != tt.isErr {
				t.Errorf("%q: got n=%d isErr=%v err=%v, want n=%d isErr=%v", tt.in, n, isErr, err, tt.wantN, tt.isErr)
			}
		}
	}
}

// TestReplyScannerResumes feeds a reply one byte at a time and checks the scanner
// finds exactly its end, resuming instead of restarting.
func TestReplyScannerResumes(t *testing.T) {
	reply := "*3\r\n$5\r\nhello\r\n%1\r\n+k\r\n*2\r\n:1\r\n_\r\n-ERR x\r\n"
	stream := []byte(reply + "+NEXT\r\n")
	var s ReplyScanner
	for i := 1; i <= len(stream); i++ {
		n, _, err := s.Scan(stream[:i])
		if errors.Is(err, protocols.ErrIncomplete) {
			continue
		}
		if err != nil || n != len(reply) || i != len(reply) {
			t.Fatalf("at %d bytes: n=%d err=%v, want n=%d at %d bytes", i, n, err, len(reply), len(reply))
		}
		n2, _, err := s.Scan(stream[n:])
		if err != nil || n2 != len("+NEXT\r\n") {
			t.Fatalf("next reply: n=%d err=%v", n2, err)
		}
		return
	}
	t.Fatal("reply never completed")
}

// TestScanReplyAcceptsWhatRedisSends: replies Redis can produce from a Lua script (an
// error line of 2 MB, tables nested 10,000 deep) are complete replies, also when they
// arrive in small pieces, not protocol errors that would reset the backend.
func TestScanReplyAcceptsWhatRedisSends(t *testing.T) {
	longErr := append(append([]byte("-"), bytes.Repeat([]byte("x"), 2_000_000)...), "\r\n"...)
	deep := append(bytes.Repeat([]byte("*1\r\n"), 10_000), ":1\r\n"...)
	for name, reply := range map[string][]byte{"2 MB error line": longErr, "10,000 levels": deep} {
		if n, _, err := ScanReply(reply); err != nil || n != len(reply) {
			t.Fatalf("%s: n=%d of %d, err=%v", name, n, len(reply), err)
		}
		var s ReplyScanner
		for end := 16 << 10; ; end += 16 << 10 {
			n, _, err := s.Scan(reply[:min(end, len(reply))])
			if errors.Is(err, protocols.ErrIncomplete) && end < len(reply) {
				continue
			}
			if err != nil || n != len(reply) {
				t.Fatalf("%s in 16 KiB pieces: n=%d of %d, err=%v", name, n, len(reply), err)
			}
			break
		}
	}
}

func TestAppendSelect(t *testing.T) {
	if got := string(AppendSelect(nil, 13)); got != "*2\r\n$6\r\nSELECT\r\n$2\r\n13\r\n" {
		t.Fatalf("AppendSelect = %q", got)
	}
}

// connectionState lists the commands that change the state of the connection they
// run on (its user, protocol, database, reply mode, transaction, subscriptions,
// tracking, debugger, replication role, or parking it). Sent on a pipeline shared by
// many clients, each would change what every other client gets, so none may be a
// read or a write: the gateway answers it itself (Local) or refuses it.
var connectionState = []string{
	"AUTH", "HELLO", "SELECT", "RESET", "QUIT", "READONLY", "READWRITE", "ASKING",
	"MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "MONITOR",
	"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
	"CLIENT|REPLY", "CLIENT|TRACKING", "CLIENT|CACHING", "CLIENT|NO-EVICT", "CLIENT|SETNAME",
	"CLIENT|PAUSE", "CLIENT|UNPAUSE", "CLIENT|KILL", "CLIENT|UNBLOCK",
	"SCRIPT|DEBUG", "SYNC", "PSYNC", "REPLCONF", "REPLICAOF", "SLAVEOF", "WAIT", "WAITAOF",
	"DEBUG", "SHUTDOWN", "FAILOVER",
}

func TestConnectionStateCommandsNeverReachSharedPipelines(t *testing.T) {
	for _, name := range connectionState {
		spec, ok := commandTable[name]
		if !ok {
			if name == "WAITAOF" {
				continue // Redis 7.2; the table is generated from 7.0
			}
			t.Errorf("%s is not in the command table", name)
			continue
		}
		if c := classify(spec); c != protocols.Local && c != protocols.Unsupported {
			t.Errorf("%s changes connection state but is classed %v", name, c)
		}
	}
	// Every command Redis puts in @connection, and every blocking or subscribing
	// command, is covered by the rule, not only the list above; the exceptions are
	// stateless.
	stateless := map[string]bool{"PING": true, "ECHO": true, "CLIENT|HELP": true, "CLIENT": true,
		"PUBLISH": true, "SPUBLISH": true}
	for name, spec := range commandTable {
		if stateless[name] || strings.HasPrefix(name, "PUBSUB") || strings.HasPrefix(name, "COMMAND") {
			continue
		}
		if spec.flags&(flagConnection|flagBlocking|flagPubSub) == 0 {
			continue
		}
		if spec.flags&flagBlocking != 0 {
			// Served by the gateway (gateway/blocking.go), which sends them to backends
			// only inside MULTI, where they do not block: their class is what they are
			// there.
			if !IsBlocking(name) {
				t.Errorf("%s blocks but is not served as a blocking command", name)
			}
			continue
		}
		if c := classify(spec); c != protocols.Local && c != protocols.Unsupported {
			t.Errorf("%s (flags %b) is classed %v", name, spec.flags, c)
		}
	}
}

// TestMayReplicateCommandsAreWrites: every command Redis may propagate to its
// replicas (flag write or may_replicate) changes data somewhere, so it goes to every
// backend (or is refused, for blocking forms); PFCOUNT included.
func TestMayReplicateCommandsAreWrites(t *testing.T) {
	for _, name := range []string{"PFCOUNT", "EVAL", "EVALSHA", "FCALL", "PUBLISH", "SPUBLISH"} {
		if commandTable[name].flags&flagMayReplicate == 0 {
			t.Errorf("%s is not flagged may_replicate in the generated table", name)
		}
	}
	for name, spec := range commandTable {
		if spec.flags&(flagWrite|flagMayReplicate) == 0 {
			continue
		}
		switch c := classify(spec); {
		case c == protocols.Write, c == protocols.Unsupported:
		default:
			t.Errorf("%s may replicate but is classed %v", name, c)
		}
	}
}

// BenchmarkLargeCommandInPieces parses an RPUSH of 1,000,000 arguments arriving in
// 1 KiB reads, as a session sees it: the parser resumes after the last complete
// argument, so the cost is linear in the command's size (redcon re-parsed it from
// its first byte on every read).
func BenchmarkLargeCommandInPieces(b *testing.B) {
	const nargs = 1_000_000
	frame := []byte("*" + strconv.Itoa(nargs+2) + "\r\n$5\r\nRPUSH\r\n$1\r\nl\r\n")
	for range nargs {
		frame = append(frame, "$1\r\nx\r\n"...)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		var p CommandParser
		for end := 1024; ; end += 1024 {
			_, _, err := p.Next(frame[:min(end, len(frame))])
			if err == nil {
				break
			}
			if !errors.Is(err, protocols.ErrIncomplete) {
				b.Fatal(err)
			}
		}
	}
}

// TestNeed checks that the parser and the reply scanner announce how long an
// incomplete large bulk makes its command or reply, so readers can make room once.
func TestNeed(t *testing.T) {
	cmd := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n"
	var p CommandParser
	for _, tt := range []struct {
		buf  string
		want int
	}{
		{"*3\r\n$3\r\nSE", 13},                // stopped inside a bulk: its end
		{cmd[:len(cmd)-3], 0},                 // inside a bulk's header: not known
		{cmd + "abc", len(cmd) + 1000000 + 2}, // the large argument's end
	} {
		if _, _, err := p.Next([]byte(tt.buf)); !errors.Is(err, protocols.ErrIncomplete) {
			t.Fatalf("Next(%q): %v, want ErrIncomplete", tt.buf, err)
		}
		if got := p.Need(); got != tt.want {
			t.Errorf("Need after %q = %d, want %d", tt.buf, got, tt.want)
		}
		p = CommandParser{}
	}
	if _, _, err := p.Next([]byte("*1\r\n$4\r\nPING\r\n")); err != nil || p.Need() != 0 {
		t.Fatalf("after a complete command: err %v, Need %d", err, p.Need())
	}

	var s ReplyScanner
	reply := "$2000000\r\nxyz"
	if _, _, err := s.Scan([]byte(reply)); !errors.Is(err, protocols.ErrIncomplete) || s.Need() != len("$2000000\r\n")+2000000+2 {
		t.Fatalf("Scan(%q): err %v, Need %d", reply, err, s.Need())
	}
	if _, _, err := s.Scan([]byte("+OK\r\n")); err != nil || s.Need() != 0 {
		t.Fatalf("after a complete reply: err %v, Need %d", err, s.Need())
	}
}

// BenchmarkPipelinedCommands parses bursts of 16 SETs and 16 GETs, as a session
// decodes a pipelining client's read: the per-command cost of the parser and the
// command table, with the names in runs ("runs") and alternating ("mixed").
func BenchmarkPipelinedCommands(b *testing.B) {
	set := "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$3\r\nxxx\r\n"
	get := "*2\r\n$3\r\nget\r\n$16\r\nkey:%012d\r\n"
	var runs, mixed []byte
	for i := range 16 {
		runs = fmt.Appendf(runs, set, i)
		mixed = fmt.Appendf(fmt.Appendf(mixed, set, i), get, i)
	}
	for i := range 16 {
		runs = fmt.Appendf(runs, get, i)
	}
	for _, bench := range []struct {
		name  string
		burst []byte
	}{{"runs", runs}, {"mixed", mixed}} {
		b.Run(bench.name, func(b *testing.B) {
			b.SetBytes(int64(len(bench.burst)))
			b.ReportAllocs()
			var p CommandParser
			for b.Loop() {
				for pos := 0; pos < len(bench.burst); {
					cmd, n, err := p.Next(bench.burst[pos:])
					if err != nil || cmd.Class == protocols.Unsupported {
						b.Fatal(err, cmd.Name)
					}
					pos += n
				}
				p.Reset()
			}
		})
	}
}

// TestParserClassifiesEachCommand: the parser's memory of its last command (a
// pipeline's names mostly repeat) never gives one command another's row: names that
// share a prefix, the same name in another case, container commands whose row is
// their subcommand's, unknown commands and names too long to remember.
func TestParserClassifiesEachCommand(t *testing.T) {
	var p CommandParser
	for _, c := range []struct {
		args  []string
		name  string
		class protocols.Class
	}{
		{[]string{"GET", "k"}, "GET", protocols.Read},
		{[]string{"GET", "k"}, "GET", protocols.Read},
		{[]string{"GETDEL", "k"}, "GETDEL", protocols.Write},
		{[]string{"GE"}, "UNKNOWN", protocols.Write},
		{[]string{"get", "k"}, "GET", protocols.Read},
		{[]string{"gEt", "k"}, "GET", protocols.Read},
		{[]string{"CLIENT", "SETNAME", "x"}, "CLIENT|SETNAME", protocols.Local},
		{[]string{"CLIENT", "PAUSE", "10"}, "CLIENT|PAUSE", protocols.Unsupported},
		{[]string{"CLIENT", "SETNAME", "x"}, "CLIENT|SETNAME", protocols.Local},
		{[]string{"ZRANGEBYSCORE", "z", "0", "1"}, "ZRANGEBYSCORE", protocols.Read},
		{[]string{"ZREMRANGEBYSCORE", "z", "0", "1"}, "ZREMRANGEBYSCORE", protocols.Write},
		{[]string{"ZREMRANGEBYSCORE", "z", "0", "1"}, "ZREMRANGEBYSCORE", protocols.Write},
		{[]string{"GEORADIUSBYMEMBER_RO", "g", "m", "1", "km"}, "GEORADIUSBYMEMBER_RO", protocols.Read},
		{[]string{"GEORADIUSBYMEMBER", "g", "m", "1", "km"}, "GEORADIUSBYMEMBER", protocols.Write},
		{[]string{"NOSUCHCOMMAND"}, "UNKNOWN", protocols.Write},
		{[]string{"SET", "k", "v"}, "SET", protocols.Write},
		{[]string{"NOSUCHCOMMAND"}, "UNKNOWN", protocols.Write},
		{[]string{"SET", "k", "v"}, "SET", protocols.Write},
	} {
		frame := redcon.AppendArray(nil, len(c.args))
		for _, a := range c.args {
			frame = redcon.AppendBulkString(frame, a)
		}
		cmd, _, err := p.Next(frame)
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if cmd.Name != c.name || cmd.Class != c.class {
			t.Errorf("%q: %s, %v; want %s, %v", c.args, cmd.Name, cmd.Class, c.name, c.class)
		}
		if name, class := Classify(cmd.Args); name != cmd.Name || class != cmd.Class {
			t.Errorf("%q: the parser says %s, %v, Classify %s, %v", c.args, cmd.Name, cmd.Class, name, class)
		}
	}
}
