package memcache_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/memcache"
)

// TestAgainstMemcached sends each command's backend frame (noreply and q removed) to
// a real memcached and checks ScanReply finds exactly the reply memcached sent: one
// reply per command, boundaries right, so replies can be matched FIFO.
func TestAgainstMemcached(t *testing.T) {
	m := testserver.StartMemcached(t)
	conn, err := net.Dial("tcp", m.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	script := []struct {
		cmd       string
		wantStart string // the reply starts with this
	}{
		{"set a 7 0 3\r\nabc\r\n", "STORED"},
		{"set b 0 0 1 noreply\r\nx\r\n", "STORED"},
		{"add a 0 0 1\r\nz\r\n", "NOT_STORED"},
		{"append a 0 0 2\r\nde\r\n", "STORED"},
		{"get a b missing\r\n", "VALUE a 7 5"},
		{"gets a\r\n", "VALUE a 7 5 "},
		{"gat 100 a\r\n", "VALUE a"},
		{"cas a 0 0 1 1\r\nq\r\n", "EXISTS"},
		{"set n 0 0 1\r\n5\r\n", "STORED"},
		{"incr n 10\r\n", "15"},
		{"decr n 100 noreply\r\n", "0"},
		{"touch a 50\r\n", "TOUCHED"},
		{"delete b\r\n", "DELETED"},
		{"delete b noreply\r\n", "NOT_FOUND"},
		{"version\r\n", "VERSION "},
		{"stats\r\n", "STAT pid"},
		{"stats reset\r\n", "RESET"},
		{"verbosity 1\r\n", "OK"},
		{"ms m 2 T60 F3\r\nhi\r\n", "HD"},
		{"ms m 2 q\r\nho\r\n", "HD"},
		{"mg m v f t\r\n", "VA 2 f0"},
		{"mg nokey v q\r\n", "EN"},
		{"mg bQ== b v k O9\r\n", "VA 2"},
		{"ma n D3 v\r\n", "VA 1"},
		{"ma nokey q\r\n", "NF"},
		{"md m q\r\n", "HD"},
		{"me a\r\n", "ME a "},
		{"mn\r\n", "MN"},
		{"flush_all\r\n", "OK"},
		{"get a\r\n", "END"},
	}
	var p memcache.Parser
	for _, step := range script {
		cmd, n, err := p.Next([]byte(step.cmd))
		if err != nil || n != len(step.cmd) {
			t.Fatalf("%q: parse n=%d err=%v", step.cmd, n, err)
		}
		if _, err := conn.Write(cmd.Frame); err != nil {
			t.Fatal(err)
		}
		var got []byte
		buf := make([]byte, 64<<10)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			k, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("%q: read after %q: %v", step.cmd, got, err)
			}
			got = append(got, buf[:k]...)
			m, _, serr := memcache.ScanReply(cmd.Reply, got)
			if errors.Is(serr, protocols.ErrIncomplete) {
				continue
			}
			if serr != nil || m != len(got) {
				t.Fatalf("%q: ScanReply n=%d err=%v on %d bytes %q", step.cmd, m, serr, len(got), got)
			}
			break
		}
		if !strings.HasPrefix(string(got), step.wantStart) {
			t.Fatalf("%q: memcached replied %q, want it to start with %q", step.cmd, got, step.wantStart)
		}
		p.Reset()
	}
}
