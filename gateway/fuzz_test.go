package gateway_test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzSession sends arbitrary bytes as one client of a gateway in front of real
// redis-server backends (the whole session path: parser, transactions, local
// commands, sequencer, backends, collector, client output) and checks what must hold
// whatever the input: no session panics, the client gets either replies or one
// protocol error and a close, and another client is still served afterwards.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"*1\r\n$-2\r\n", "*1\r\n$-1\r\n", "*1\r\n$0\r\n\r\n", "*1\r\n$9223372036854775807\r\nab",
		"*-1\r\n", "*2147483648\r\n", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"MULTI\r\nSET a 1\r\nFOO\r\nEXEC\r\n", "MULTI\r\nINCR n\r\nEXEC\r\nDISCARD\r\n", "SET k \"a\\x41\" \r\nGET k\r\n",
		"SELECT 3\r\nSET x 1\r\nSELECT 0\r\n", "PING\r\nECHO hi\r\nHELLO 2\r\nCLIENT SETNAME n\r\nQUIT\r\n",
		"SCRIPT DEBUG YES\r\nEVAL \"return 1\" 0\r\n", "$4\r\nPING\r\n", "\r\n\r\n", "'unbalanced\r\n",
		"BLPOP l 0.01\r\nRPUSH l x\r\nBRPOP l 0\r\nXREAD BLOCK 1 STREAMS s $\r\n", "SUBSCRIBE a\r\nPING\r\nGET k\r\nUNSUBSCRIBE\r\n",
		"WATCH k\r\nMULTI\r\nSET k 1\r\nEXEC\r\nUNWATCH\r\n", "MONITOR\r\nSET a 1\r\nRESET\r\n", "HELLO 3\r\nHGETALL h\r\nHELLO 2\r\n",
		"CLIENT LIST\r\nCLIENT UNBLOCK 1\r\nCLIENT INFO\r\n",
	} {
		f.Add([]byte(s))
	}
	h := withRedis(f, 1, "max_request_bytes=1048576")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.DialTimeout("tcp", h.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		go func() {
			_, _ = c.Write(data)
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		out, _ := io.ReadAll(c) // a blocking command may leave it open: the deadline ends it
		if i := strings.Index(string(out), "-ERR Protocol error"); i >= 0 && !strings.HasSuffix(string(out), "\r\n") {
			t.Fatalf("protocol error reply not terminated: %q", out)
		}
		if n := h.gw.Stats().SessionPanics.Load(); n != 0 {
			t.Fatalf("%d session panics; input %q", n, data)
		}
		if got := exchange(t, h.addr, "PING\r\n"); got != "+PONG\r\n" {
			t.Fatalf("after input %q another client got %q", data, got)
		}
	})
}
