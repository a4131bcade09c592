package testserver

import (
	"bufio"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Memcached is a memcached process started for one test.
type Memcached struct {
	Addr string
	Port int
	cmd  *exec.Cmd
}

// StartMemcached starts memcached on a free loopback port; it is stopped when the
// test ends.
func StartMemcached(t testing.TB) *Memcached {
	t.Helper()
	return StartMemcachedOnPort(t, FreePort(t))
}

// StartMemcachedOnPort starts memcached on the given loopback port (to restart a
// stopped one at the same address).
func StartMemcachedOnPort(t testing.TB, port int) *Memcached {
	t.Helper()
	bin := Require(t, "memcached", "memcached")
	m := &Memcached{Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	m.cmd = exec.Command(bin, "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "64", "-I", "4m", "-u", "root")
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start memcached: %v", err)
	}
	t.Cleanup(m.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, err := m.Command("version"); err == nil && strings.HasPrefix(v, "VERSION") {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("memcached on %s did not answer within 10s", m.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Command sends one text-protocol line and returns the first reply line.
func (m *Memcached) Command(line string) (string, error) {
	c, err := net.DialTimeout("tcp", m.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(line + "\r\n")); err != nil {
		return "", err
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(reply, "\r\n"), err
}

// Stop kills the server (idempotent).
func (m *Memcached) Stop() {
	kill(&m.cmd)
}
