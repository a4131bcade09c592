package memcache

import (
	"errors"
	"testing"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// FuzzParser checks any input parses into commands whose backend frames parse again
// to the same command without noreply or q, or stops with a classified error; never a
// panic, never a step of zero bytes.
func FuzzParser(f *testing.F) {
	for _, s := range []string{
		"set k 0 0 3\r\nabc\r\n", "get a b\r\n", "cas k 1 2 1 9 noreply\r\nx\r\n", "gat 5 k\r\n",
		"incr k 1\r\n", "ms k 2 q T5\r\nhi\r\n", "mg Zm9v b v q\r\n", "mn\r\n", "ma k C5 q D2\r\n", "md k C9\r\n", "\x80\x01", "set k 0 0 -1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Parser
		for len(data) > 0 {
			cmd, n, err := p.Next(data)
			var ce *ClientError
			switch {
			case errors.Is(err, protocols.ErrIncomplete), protocols.IsProtocolError(err):
				return
			case errors.As(err, &ce):
				if ce.N <= 0 || ce.N > len(data) || n != ce.N {
					t.Fatalf("client error consumes %d (n=%d) of %d", ce.N, n, len(data))
				}
			case err != nil:
				t.Fatalf("unexpected error %T %v", err, err)
			default:
				if n <= 0 || n > len(data) {
					t.Fatalf("n = %d of %d", n, len(data))
				}
				var q Parser
				again, m, err := q.Next(cmd.Frame)
				if err != nil || m != len(cmd.Frame) || again.Name != cmd.Name || again.NoReply || again.Quiet {
					t.Fatalf("backend frame %q of %q does not parse back cleanly: m=%d err=%v %+v", cmd.Frame, data[:n], m, err, again)
				}
				if cmd.ByEffect != nil {
					var r Parser
					eff, m, err := r.Next(cmd.ByEffect)
					if err != nil || m != len(cmd.ByEffect) || eff.ByEffect != nil || eff.Class != protocols.Write || eff.NoReply || eff.Quiet {
						t.Fatalf("effect frame %q of %q is not an unconditional write: m=%d err=%v %+v", cmd.ByEffect, data[:n], m, err, eff)
					}
				}
			}
			data = data[n:]
		}
	})
}

// FuzzScanReply checks reply scanning never panics and never claims more than it has.
func FuzzScanReply(f *testing.F) {
	for _, s := range []string{"STORED\r\n", "VALUE a 0 1\r\nx\r\nEND\r\n", "STAT a 1\r\nEND\r\n", "VA 2 f1\r\nhi\r\n", "ERROR\r\n"} {
		f.Add(uint8(0), []byte(s))
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		n, _, err := ScanReply(ReplyKind(kind%4), data)
		if err == nil && (n <= 0 || n > len(data)) {
			t.Fatalf("n = %d of %d", n, len(data))
		}
		if err == nil {
			if c, _ := Comparable(nil, data[:n]); len(c) > n {
				t.Fatalf("comparable form %q longer than reply %q", c, data[:n])
			}
		}
	})
}
