package memcache

import (
	"errors"
	"strings"
	"testing"

	"github.com/dynode/dynode-broadcaster/protocols"
)

func TestParserNext(t *testing.T) {
	long := strings.Repeat("k", 251)
	tests := []struct {
		in        string
		wantName  string
		wantClass protocols.Class
		wantN     int    // bytes consumed
		wantFrame string // "" = the consumed bytes unchanged
		noreply   bool
		quiet     bool
		wantErr   string // "incomplete", "close:<text>" or the client error line
	}{
		{in: "set k 5 0 3\r\nabc\r\nget k\r\n", wantName: "set", wantClass: protocols.Write, wantN: 18},
		{in: "set k 5 0 3 noreply\r\nabc\r\n", wantName: "set", wantClass: protocols.Write, wantN: 26, wantFrame: "set k 5 0 3\r\nabc\r\n", noreply: true},
		{in: "cas k 0 0 1 99\r\nx\r\n", wantName: "cas", wantClass: protocols.Write, wantN: 19},
		{in: "get a b c\r\n", wantName: "get", wantClass: protocols.Read, wantN: 11},
		{in: "gat 100 a b\r\n", wantName: "gat", wantClass: protocols.Write, wantN: 13},
		{in: "incr n 5 noreply\r\n", wantName: "incr", wantClass: protocols.Write, wantN: 18, wantFrame: "incr n 5\r\n", noreply: true},
		{in: "delete k\r\n", wantName: "delete", wantClass: protocols.Write, wantN: 10},
		{in: "touch k 10\r\n", wantName: "touch", wantClass: protocols.Write, wantN: 12},
		{in: "flush_all 10 noreply\r\n", wantName: "flush_all", wantClass: protocols.Write, wantN: 22, wantFrame: "flush_all 10\r\n", noreply: true},
		{in: "version\r\n", wantName: "version", wantClass: protocols.Read, wantN: 9},
		{in: "stats slabs\r\n", wantName: "stats", wantClass: protocols.Read, wantN: 13},
		{in: "mg k v f q k O123\r\n", wantName: "mg", wantClass: protocols.Read, wantN: 19, wantFrame: "mg k v f k O123\r\n", quiet: true},
		{in: "mg k v T30\r\n", wantName: "mg", wantClass: protocols.Write, wantN: 12},
		{in: "ms k 2 T60 F5 q\r\nhi\r\n", wantName: "ms", wantClass: protocols.Write, wantN: 21, wantFrame: "ms k 2 T60 F5\r\nhi\r\n", quiet: true},
		{in: "mg Zm9v b v\r\n", wantName: "mg", wantClass: protocols.Read, wantN: 13},
		{in: "md k q\r\n", wantName: "md", wantClass: protocols.Write, wantN: 8, wantFrame: "md k\r\n", quiet: true},
		{in: "ma k D5 v\r\n", wantName: "ma", wantClass: protocols.Write, wantN: 11},
		{in: "mn\r\n", wantName: "mn", wantClass: protocols.Local, wantN: 4},
		{in: "set k 0 0 3\r\nab", wantErr: "incomplete"},
		{in: "get k", wantErr: "incomplete"},
		{in: "bogus k\r\n", wantN: 9, wantErr: "ERROR"},
		{in: "set k 0 0 -1\r\n", wantN: 14, wantErr: errFormat},
		{in: "set k 0 0 x\r\n", wantN: 13, wantErr: errFormat},
		{in: "set k 0 0 3\r\nabcd\r\n", wantN: 18, wantErr: errDataChunk},
		{in: "get " + long + "\r\n", wantN: 257, wantErr: errFormat},
		{in: "get a\x01b\r\n", wantN: 9, wantErr: errFormat},
		{in: "incr k abc\r\n", wantN: 12, wantErr: "CLIENT_ERROR invalid numeric delta argument"},
		{in: "mg !!! b v\r\n", wantN: 12, wantErr: "CLIENT_ERROR error decoding key"},
		{in: "\x80\x00\x00\x05", wantErr: "close:CLIENT_ERROR the binary protocol is not supported; use the text or meta protocol"},
		{in: strings.Repeat("x", MaxLineLen+1), wantErr: "close:CLIENT_ERROR line too long"},
	}
	for _, tt := range tests {
		var p Parser
		cmd, n, err := p.Next([]byte(tt.in))
		var ce *ClientError
		switch {
		case tt.wantErr == "incomplete":
			if !errors.Is(err, protocols.ErrIncomplete) {
				t.Errorf("%q: err %v, want incomplete", tt.in, err)
			}
		case strings.HasPrefix(tt.wantErr, "close:"):
			if !protocols.IsProtocolError(err) || err.Error() != strings.TrimPrefix(tt.wantErr, "close:") {
				t.Errorf("%q: err %v, want protocol error %q", tt.in, err, tt.wantErr)
			}
		case tt.wantErr != "":
			if !errors.As(err, &ce) || ce.Reply != tt.wantErr || ce.N != tt.wantN || n != tt.wantN {
				t.Errorf("%q: err %v n=%d, want client error %q consuming %d", tt.in, err, n, tt.wantErr, tt.wantN)
			}
		case err != nil:
			t.Errorf("%q: unexpected error %v", tt.in, err)
		default:
			frame := tt.wantFrame
			if frame == "" {
				frame = tt.in[:tt.wantN]
			}
			if cmd.Name != tt.wantName || cmd.Class != tt.wantClass || n != tt.wantN || string(cmd.Frame) != frame ||
				cmd.NoReply != tt.noreply || cmd.Quiet != tt.quiet {
				t.Errorf("%q: got %s %v n=%d frame=%q noreply=%v quiet=%v", tt.in, cmd.Name, cmd.Class, n, cmd.Frame, cmd.NoReply, cmd.Quiet)
			}
		}
	}
}

func TestScanReply(t *testing.T) {
	tests := []struct {
		kind  ReplyKind
		in    string
		wantN int // 0 = incomplete; -1 = malformed
		isErr bool
	}{
		{ReplyLine, "STORED\r\nrest", 8, false},
		{ReplyLine, "SERVER_ERROR out of memory\r\n", 28, true},
		{ReplyValues, "VALUE a 0 3\r\nabc\r\nVALUE b 5 1 77\r\nx\r\nEND\r\n", 42, false},
		{ReplyValues, "END\r\n", 5, false},
		{ReplyValues, "VALUE a 0 3\r\nab", 0, false},
		{ReplyValues, "VALUE a 0 3\r\nabcd\r\nEND\r\n", -1, false},
		{ReplyValues, "STORED\r\n", -1, false},
		{ReplyValues, "CLIENT_ERROR bad command line format\r\n", 38, true},
		{ReplyStats, "STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n", 32, false},
		{ReplyStats, "RESET\r\n", 7, false},
		{ReplyMeta, "VA 2 f5 t-1\r\nhi\r\n", 17, false},
		{ReplyMeta, "HD c99\r\n", 8, false},
		{ReplyMeta, "EN\r\n", 4, false},
		{ReplyMeta, "VA x\r\n", -1, false},
		{ReplyLine, "STORED\n", -1, false},
	}
	for _, tt := range tests {
		n, isErr, err := ScanReply(tt.kind, []byte(tt.in))
		switch tt.wantN {
		case 0:
			if !errors.Is(err, protocols.ErrIncomplete) {
				t.Errorf("%q: %v, want incomplete", tt.in, err)
			}
		case -1:
			if !protocols.IsProtocolError(err) {
				t.Errorf("%q: %v, want malformed", tt.in, err)
			}
		default:
			if err != nil || n != tt.wantN || isErr != tt.isErr {
				t.Errorf("%q: n=%d isErr=%v err=%v, want n=%d isErr=%v", tt.in, n, isErr, err, tt.wantN, tt.isErr)
			}
		}
	}
}

func TestVisibility(t *testing.T) {
	for _, tt := range []struct {
		cmd   Command
		reply string
		want  bool
	}{
		{Command{NoReply: true}, "STORED\r\n", false},
		{Command{NoReply: true}, "SERVER_ERROR out of memory storing object\r\n", false}, // memcached: noreply silences errors too
		{Command{Quiet: true, Command: protocols.Command{Name: "mg"}}, "EN\r\n", false},
		{Command{Quiet: true, Command: protocols.Command{Name: "mg"}}, "VA 1\r\nx\r\n", true},
		{Command{Quiet: true, Command: protocols.Command{Name: "ms"}}, "HD\r\n", false},
		{Command{Quiet: true, Command: protocols.Command{Name: "ms"}}, "HD O12\r\n", false},
		{Command{Quiet: true, Command: protocols.Command{Name: "ms"}}, "NS\r\n", true},
		{Command{Quiet: true, Command: protocols.Command{Name: "ms"}}, "EX\r\n", true},
		{Command{Quiet: true, Command: protocols.Command{Name: "md"}}, "HD\r\n", false},
		{Command{Quiet: true, Command: protocols.Command{Name: "md"}}, "NF\r\n", true},
		{Command{Quiet: true, Command: protocols.Command{Name: "mg"}}, "HD kx\r\n", true},
		{Command{Quiet: true, Command: protocols.Command{Name: "ma"}}, "EX\r\n", true},
		{Command{Command: protocols.Command{Name: "mg"}}, "EN\r\n", true},
	} {
		got := true
		if f := Visibility(&tt.cmd); f != nil {
			got = f([]byte(tt.reply))
		}
		if got != tt.want {
			t.Errorf("%+v %q: %v, want %v", tt.cmd, tt.reply, got, tt.want)
		}
	}
}

// TestByEffect checks the unconditional form of conditional writes.
func TestByEffect(t *testing.T) {
	for _, tt := range []struct{ in, frame, effect string }{
		{"cas k 5 60 2 77\r\nhi\r\n", "cas k 5 60 2 77\r\nhi\r\n", "set k 5 60 2\r\nhi\r\n"},
		{"cas k 5 60 2 77 noreply\r\nhi\r\n", "cas k 5 60 2 77\r\nhi\r\n", "set k 5 60 2\r\nhi\r\n"},
		{"ms k 2 C77 T60 F5 q\r\nhi\r\n", "ms k 2 C77 T60 F5\r\nhi\r\n", "ms k 2 T60 F5\r\nhi\r\n"},
		{"md k C77 O9\r\n", "md k C77 O9\r\n", "md k O9\r\n"},
		{"ma k q C77 D5\r\n", "ma k C77 D5\r\n", "ma k D5\r\n"},
		{"set k 0 0 2\r\nhi\r\n", "set k 0 0 2\r\nhi\r\n", ""},
		{"ms k 2 T60\r\nhi\r\n", "ms k 2 T60\r\nhi\r\n", ""},
	} {
		var p Parser
		cmd, n, err := p.Next([]byte(tt.in))
		if err != nil || n != len(tt.in) {
			t.Fatalf("%q: n=%d err=%v", tt.in, n, err)
		}
		if string(cmd.Frame) != tt.frame || string(cmd.ByEffect) != tt.effect {
			t.Errorf("%q: frame %q effect %q, want %q %q", tt.in, cmd.Frame, cmd.ByEffect, tt.frame, tt.effect)
		}
	}
}

func TestApplied(t *testing.T) {
	for reply, want := range map[string]bool{
		"STORED\r\n": true, "HD\r\n": true, "HD c5\r\n": true, "VA 1\r\n7\r\n": true,
		"EXISTS\r\n": false, "NOT_FOUND\r\n": false, "EX\r\n": false, "NF\r\n": false, "NS\r\n": false,
		"SERVER_ERROR x\r\n": false, "HDX\r\n": false,
	} {
		if got := Applied([]byte(reply)); got != want {
			t.Errorf("Applied(%q) = %v", reply, got)
		}
	}
}

func TestComparable(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"STORED\r\n", "STORED\r\n"},
		{"HD\r\n", "HD\r\n"},
		{"HD c123 O5 kfoo\r\n", "HD O5 kfoo\r\n"},
		{"VA 2 c9 t30 h0 l1 f3\r\nhi\r\n", "VA 2 f3\r\nhi\r\n"},
		{"VA 2 f3\r\nc \r\n", "VA 2 f3\r\nc \r\n"},
		{"VALUE a 0 2 77\r\nhi\r\nVALUE b 1 3 78\r\nVAL\r\nEND\r\n", "VALUE a 0 2\r\nhi\r\nVALUE b 1 3\r\nVAL\r\nEND\r\n"},
		{"VALUE a 0 2\r\nhi\r\nEND\r\n", "VALUE a 0 2\r\nhi\r\nEND\r\n"},
	} {
		got, ok := Comparable(nil, []byte(tt.in))
		if !ok {
			got = []byte(tt.in)
		}
		if string(got) != tt.want {
			t.Errorf("Comparable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestStatsClasses(t *testing.T) {
	for in, want := range map[string]protocols.Class{
		"stats\r\n": protocols.Read, "stats items\r\n": protocols.Read, "stats dynode\r\n": protocols.Local,
		"stats reset\r\n": protocols.Write, "stats detail on\r\n": protocols.Write, "stats detail dump\r\n": protocols.Read,
		"mg k T30 v\r\n": protocols.Write, "mg k v\r\n": protocols.Read, "mn\r\n": protocols.Local,
	} {
		var p Parser
		if cmd, _, err := p.Next([]byte(in)); err != nil || cmd.Class != want {
			t.Errorf("%q: class %v err %v, want %v", in, cmd.Class, err, want)
		}
	}
}

// TestScanReplyNeed checks that an incomplete reply stopped in a data block says
// how long it is at least, so a reader can make room for a large value at once.
func TestScanReplyNeed(t *testing.T) {
	for _, tt := range []struct {
		kind ReplyKind
		in   string
		want int
	}{
		{ReplyValues, "VALUE k 0 1000000\r\nabc", len("VALUE k 0 1000000\r\n") + 1000000 + 2},
		{ReplyValues, "VALUE a 0 1\r\nx\r\nVALUE b 0 500\r\n", len("VALUE a 0 1\r\nx\r\nVALUE b 0 500\r\n") + 502},
		{ReplyMeta, "VA 300000 f1\r\n", len("VA 300000 f1\r\n") + 300002},
		{ReplyValues, "VALUE k 0 10", 0}, // the line itself is incomplete
	} {
		n, _, err := ScanReply(tt.kind, []byte(tt.in))
		if !errors.Is(err, protocols.ErrIncomplete) || n != tt.want {
			t.Errorf("%q: n=%d err=%v, want n=%d and incomplete", tt.in, n, err, tt.want)
		}
	}
}
