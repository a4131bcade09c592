package resp

import (
	"strings"
	"testing"
)

func TestAbsoluteTTL(t *testing.T) {
	const now = 1_700_000_000_000
	tests := []struct{ in, want string }{
		{"EXPIRE k 10", "PEXPIREAT k 1700000010000"},
		{"EXPIRE k 10 GT", "PEXPIREAT k 1700000010000 GT"},
		{"PEXPIRE k 1500 NX", "PEXPIREAT k 1700000001500 NX"},
		{"SETEX k 5 v", "SET k v PXAT 1700000005000"},
		{"PSETEX k 5 v", "SET k v PXAT 1700000000005"},
		{"SET k v EX 7", "SET k v PXAT 1700000007000"},
		{"SET k v NX GET px 20", "SET k v NX GET PXAT 1700000000020"},
		{"GETEX k EX 3", "GETEX k PXAT 1700000003000"},
		{"RESTORE k 250 payload REPLACE", "RESTORE k 1700000000250 payload REPLACE ABSTTL"},
		// Left as sent: already absolute, no expiry, or Redis's own error everywhere.
		{"SET k v", ""}, {"SET k v KEEPTTL", ""}, {"SET k v PXAT 5", ""}, {"GETEX k PERSIST", ""},
		{"EXPIRE k 0", ""}, {"EXPIRE k -1", ""}, {"EXPIRE k x", ""}, {"SETEX k 0 v", ""},
		{"RESTORE k 0 payload", ""}, {"RESTORE k 5 payload ABSTTL", ""}, {"EXPIRE k 99999999999999999", ""},
		{"INCR k", ""},
	}
	for _, tt := range tests {
		args := [][]byte{}
		for _, f := range strings.Fields(tt.in) {
			args = append(args, []byte(f))
		}
		name, _ := Classify(args)
		out, ok := AbsoluteTTL(nil, name, args, now)
		if tt.want == "" {
			if ok {
				t.Errorf("%s: rewritten to %q, want it left as sent", tt.in, out)
			}
			continue
		}
		var wantArgs [][]byte
		for _, f := range strings.Fields(tt.want) {
			wantArgs = append(wantArgs, []byte(f))
		}
		if want := string(AppendCommand(nil, wantArgs)); !ok || string(out) != want {
			t.Errorf("%s: got %q (%v), want %q", tt.in, out, ok, want)
		}
	}
}
