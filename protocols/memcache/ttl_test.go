package memcache

import (
	"testing"
	"time"
)

func TestTTL(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		line string
		want int64
		ok   bool
	}{
		{"set k 0 60 1\r\nv\r\n", 60, true},
		{"set k 0 0 1\r\nv\r\n", Never, true},
		{"add k 0 -1 1\r\nv\r\n", 0, true},
		{"set k 0 1800000300 1\r\nv\r\n", 300, true}, // absolute
		{"touch k 90\r\n", 90, true},
		{"gat 45 a b\r\n", 45, true},
		{"ms k 1 T120\r\nv\r\n", 120, true},
		{"mg k v N30\r\n", 30, true},
		{"get k\r\n", 0, false},
		{"delete k\r\n", 0, false},
		{"ms k 1\r\nv\r\n", 0, false},
	} {
		var p Parser
		cmd, _, err := p.Next([]byte(tc.line))
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		got, ok := TTL(&cmd, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("TTL(%q) = %d, %v; want %d, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}
