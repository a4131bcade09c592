package gateway_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestLargeCommandInPieces sends large SETs (300 KiB, which owes less than the
// size that raises the socket's receive low-water mark once its first piece is in,
// then 1 and 3 MiB, beyond it and beyond its cap) in pieces with pauses between
// them, the last piece a few bytes: the gateway reads each piece as it comes
// (the mark never asks for more than the command still owes), answers, and is woken
// by a one-byte command right after (the mark is back at its default). Every backend
// holds each value; a client that leaves in the middle of a large command is noticed
// and nothing of its command reaches the backends. No deadline of the gateway's
// (client_dormant_after) falls within the test to wake a read that waits too long.
func TestLargeCommandInPieces(t *testing.T) {
	h := withRedis(t, 2, "client_dormant_after=5m")
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	reply := func(what string) string {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: no reply: %v", what, err)
		}
		return line
	}
	write := func(b []byte) {
		t.Helper()
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	sizes := []int{300 << 10, 1<<20 + 5, 3<<20 + 11}
	for i, size := range sizes {
		value := largeValue(uint64(i+1), size)
		cmd := append(fmt.Appendf(nil, "*3\r\n$3\r\nSET\r\n$7\r\npieces%d\r\n$%d\r\n", i, size), value...)
		cmd = append(cmd, "\r\n"...)
		// A first piece that announces the value, then pieces of a third of what is
		// left each, a pause after each, and the last 7 bytes alone.
		write(cmd[:100<<10])
		rest := cmd[100<<10:]
		for len(rest) > 7 {
			n := max((len(rest)-7)/3, 1)
			time.Sleep(20 * time.Millisecond)
			write(rest[:n])
			rest = rest[n:]
		}
		time.Sleep(20 * time.Millisecond)
		write(rest)
		if got := reply("SET"); got != "+OK\r\n" {
			t.Fatalf("SET of %d bytes in pieces = %q", size, got)
		}
		// A command of a few bytes right after: the socket wakes the gateway for it.
		time.Sleep(20 * time.Millisecond)
		write([]byte("PING\r\n"))
		if got := reply("PING"); got != "+PONG\r\n" {
			t.Fatalf("PING after a large SET = %q", got)
		}
		h.eachBackend(t, 0, func(b int, c *redis.Client) {
			if got, err := c.Get(ctx, fmt.Sprintf("pieces%d", i)).Bytes(); err != nil || !bytes.Equal(got, value) {
				t.Fatalf("backend %d: pieces%d holds %d bytes that differ from the %d written (err %v)", b, i, len(got), size, err)
			}
		})
	}

	// A client leaving half-way through a 2 MiB value.
	connected := h.gw.Stats().ClientsConnected.Load()
	quitter, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return h.gw.Stats().ClientsConnected.Load() == connected+1 }, "the client connected")
	head := fmt.Appendf(nil, "*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$%d\r\n", 2<<20)
	if _, err := quitter.Write(append(head, largeValue(9, 1<<20)...)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	_ = quitter.Close()
	eventually(t, func() bool { return h.gw.Stats().ClientsConnected.Load() == connected }, "the client that left mid-command is gone")
	write([]byte("PING\r\n"))
	if got := reply("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING from another client = %q", got)
	}
	h.drained(t)
	h.eachBackend(t, 0, func(b int, c *redis.Client) {
		if n, err := c.Exists(ctx, "half").Result(); err != nil || n != 0 {
			t.Fatalf("backend %d: the half-sent SET's key exists (%d, %v)", b, n, err)
		}
	})
	h.converged(t)
}
