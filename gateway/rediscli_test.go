package gateway_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/redis/go-redis/v9"
)

// TestRedisCLIInteractive drives redis-cli through its stdin, as a person would type.
func TestRedisCLIInteractive(t *testing.T) {
	cli := testserver.Require(t, "redis-cli", "redis-tools")
	h := withRedis(t, 2)
	cmd := exec.Command(cli, "-h", "127.0.0.1", "-p", port(h.addr))
	cmd.Stdin = strings.NewReader("SET greeting hello\nGET greeting\nINCR visits\nINCR visits\nSELECT 2\nSET in2 yes\nPING\nECHO \"a b\"\nRPUSH q job\nBLPOP q 0\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli: %v\n%s", err, out)
	}
	want := "OK\nhello\n1\n2\nOK\nOK\nPONG\na b\n1\nq\njob\n"
	if strings.TrimSpace(string(out)) != strings.TrimSpace(want) {
		t.Fatalf("redis-cli output:\n%s\nwant:\n%s", out, want)
	}
	h.drained(t)
	h.eachBackend(t, 2, func(i int, d *redis.Client) {
		if d.Get(ctx, "in2").Val() != "yes" {
			t.Errorf("backend %d: db 2 lacks in2", i)
		}
	})
	h.converged(t)
}

// TestRedisCLIPipe runs redis-cli --pipe with 100,000 SETs (mass insertion).
func TestRedisCLIPipe(t *testing.T) {
	const n = 100000
	cli := testserver.Require(t, "redis-cli", "redis-tools")
	h := withRedis(t, 2)
	var in bytes.Buffer
	for i := range n {
		k, v := "key:"+strconv.Itoa(i), "value:"+strconv.Itoa(i)
		fmt.Fprintf(&in, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
	}
	cmd := exec.Command(cli, "-h", "127.0.0.1", "-p", port(h.addr), "--pipe")
	cmd.Stdin = &in
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --pipe: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "errors: 0, replies: 100000") {
		t.Fatalf("redis-cli --pipe output:\n%s", out)
	}
	h.drained(t)
	h.eachBackend(t, 0, func(i int, d *redis.Client) {
		if got := d.DBSize(ctx).Val(); got != n {
			t.Errorf("backend %d holds %d keys, want %d", i, got, n)
		}
		if v := d.Get(ctx, "key:99999").Val(); v != "value:99999" {
			t.Errorf("backend %d key:99999 = %q", i, v)
		}
	})
	h.converged(t)
}

func port(addr string) string {
	return addr[strings.LastIndexByte(addr, ':')+1:]
}
