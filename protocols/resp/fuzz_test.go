package resp

import (
	"errors"
	"testing"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// FuzzCommandParser checks that any input either parses into commands whose frames
// are canonical multibulk commands that parse back to the same arguments, or stops
// with ErrIncomplete or a ProtocolError; never a panic, never a zero-length step.
func FuzzCommandParser(f *testing.F) {
	for _, s := range []string{
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", "PING\r\n", "SET a \"b c\"\r\n",
		"*1\r\n$-1\r\n", "$4 PING\r\n", "*0\r\n", "\r\n", "*2\r\n$3\r\nGET\r\n$100\r\nk\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p CommandParser
		buf := data
		for len(buf) > 0 {
			cmd, n, err := p.Next(buf)
			if errors.Is(err, protocols.ErrIncomplete) || protocols.IsProtocolError(err) {
				return
			}
			if err != nil {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if n <= 0 || n > len(buf) {
				t.Fatalf("n = %d for %d bytes", n, len(buf))
			}
			if cmd.Args != nil {
				args := append([][]byte(nil), cmd.Args...)
				var q CommandParser
				again, m, err := q.Next(cmd.Frame)
				if err != nil || m != len(cmd.Frame) || len(again.Args) != len(args) {
					t.Fatalf("frame %q does not parse back: m=%d err=%v", cmd.Frame, m, err)
				}
				for i := range args {
					if string(again.Args[i]) != string(args[i]) {
						t.Fatalf("arg %d: %q != %q", i, again.Args[i], args[i])
					}
				}
			}
			buf = buf[n:]
		}
	})
}

// FuzzReplyScanner checks that scanning all at once and scanning byte by byte (the
// resume path) agree on every reply boundary.
func FuzzReplyScanner(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n", "*2\r\n$1\r\na\r\n:1\r\n", "%1\r\n+k\r\n~1\r\n_\r\n", "|1\r\n+a\r\n+b\r\n#t\r\n",
		"$-1\r\n*-1\r\n", "!3\r\nerr\r\n=5\r\ntxt:a\r\n", ">1\r\n(1\r\n,1.5\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole, _, errWhole := ScanReply(data)
		var s ReplyScanner
		var n int
		var err error
		for i := 1; i <= len(data); i++ {
			n, _, err = s.Scan(data[:i])
			if !errors.Is(err, protocols.ErrIncomplete) {
				break
			}
		}
		if len(data) == 0 {
			return
		}
		if (errWhole == nil) != (err == nil) || n != whole {
			t.Fatalf("whole: n=%d err=%v; resumed: n=%d err=%v", whole, errWhole, n, err)
		}
		if errWhole == nil && (whole <= 0 || whole > len(data)) {
			t.Fatalf("n = %d for %d bytes", whole, len(data))
		}
	})
}
