package resp

import (
	"flag"
	"testing"

	"github.com/dynode/dynode-broadcaster/internal/testserver"
)

var update = flag.Bool("update", false, "rewrite docs/COMMANDS.md from the command table")

// TestCommandsDoc: docs/COMMANDS.md is what the command table says; -update rewrites it.
func TestCommandsDoc(t *testing.T) {
	testserver.CheckGenerated(t, "../../docs/COMMANDS.md", CommandsDoc(), *update, "go test ./protocols/resp -run TestCommandsDoc -update")
}

// TestWrittenKeys: the keys a write changes, from Redis's key specifications.
func TestWrittenKeys(t *testing.T) {
	for _, tc := range []struct {
		cmd  []string
		want string
		use  KeyUse
	}{
		{[]string{"SET", "k", "v"}, "k", KeysListed},
		{[]string{"MSET", "a", "1", "b", "2"}, "a b", KeysListed},
		{[]string{"LMOVE", "src", "dst", "LEFT", "RIGHT"}, "src dst", KeysListed},
		{[]string{"BLMPOP", "0", "2", "l1", "l2", "LEFT"}, "l1 l2", KeysListed},
		{[]string{"EVAL", "return 1", "2", "x", "y", "arg"}, "x y", KeysListed},
		{[]string{"SORT", "l", "BY", "w_*", "STORE", "out"}, "out", KeysListed},
		{[]string{"MOVE", "k", "3"}, "k k@3", KeysListed},
		{[]string{"COPY", "a", "b", "DB", "2"}, "b@2", KeysListed},
		{[]string{"GET", "k"}, "", KeysListed},
		{[]string{"XREADGROUP", "GROUP", "g", "c", "STREAMS", "s1", "s2", ">", ">"}, "", KeysListed}, // Redis flags them RO
		{[]string{"FLUSHDB"}, "", KeysDatabase},
		{[]string{"FLUSHALL"}, "", KeysAllDatabases},
		{[]string{"NOSUCHCOMMAND", "x"}, "", KeysUnknown},
	} {
		args := make([][]byte, len(tc.cmd))
		for i, a := range tc.cmd {
			args[i] = []byte(a)
		}
		var got []string
		use := WrittenKeys(args, func(key []byte, db int) {
			if db >= 0 {
				got = append(got, string(key)+"@"+string(rune('0'+db)))
				return
			}
			got = append(got, string(key))
		})
		if s := join(got); s != tc.want || use != tc.use {
			t.Errorf("%v: keys %q use %d, want %q %d", tc.cmd, s, use, tc.want, tc.use)
		}
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}
