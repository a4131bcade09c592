package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server process started for one test.
type Redis struct {
	Addr string
	Port int
	// Password is the server's requirepass, when started with one (its clients use it).
	Password string
	dir      string
	cmd      *exec.Cmd
	t        testing.TB
}

// Require returns the path of a server binary, skipping the test when it is missing,
// or failing it under CI=true.
func Require(t testing.TB, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found on PATH (Debian package %s; ./scripts/test installs it)", name, debianPackage)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartRedis starts redis-server on a free port with DEBUG enabled and no
// persistence; it is stopped when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	return StartRedisOnPort(t, FreePort(t))
}

// StartRedisOnPort starts redis-server on a given port (to bring a backend back on
// the address the gateway knows).
func StartRedisOnPort(t testing.TB, port int) *Redis {
	t.Helper()
	return StartRedisWith(t, port, t.TempDir())
}

// StartRedisWith starts redis-server on port with its data directory dir (an RDB
// file there is loaded at start) and extra arguments. It returns once the server
// answers, which may be while it still loads its dataset (PING answers -LOADING).
func StartRedisWith(t testing.TB, port int, dir string, extra ...string) *Redis {
	t.Helper()
	bin := Require(t, "redis-server", "redis-server")
	r := &Redis{Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, t: t}
	for i, a := range extra {
		if a == "--requirepass" && i+1 < len(extra) {
			r.Password = extra[i+1]
		}
	}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--enable-debug-command", "yes",
		"--protected-mode", "no", "--loglevel", "warning",
		"--repl-diskless-sync-delay", "0"}, extra...)
	r.cmd = exec.Command(bin, args...)
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(r.Stop)
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, Password: r.Password})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := c.Ping(context.Background()).Err(); err == nil || strings.HasPrefix(err.Error(), "LOADING") {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer within 10s", r.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Signal sends sig to the server process (SIGSTOP and SIGCONT to hang and resume it).
func (r *Redis) Signal(sig os.Signal) error {
	if r.cmd == nil || r.cmd.Process == nil {
		return errors.New("testserver: redis-server not running")
	}
	return r.cmd.Process.Signal(sig)
}

// Dir is the server's data directory.
func (r *Redis) Dir() string { return r.dir }

// Stop kills the server (idempotent).
func (r *Redis) Stop() {
	kill(&r.cmd)
}

// Client returns a go-redis client connected directly to this server, closed at the end of the test.
func (r *Redis) Client(db int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, DB: db, Protocol: 2, Password: r.Password})
	r.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Digest returns DEBUG DIGEST: one hash of the whole dataset.
func (r *Redis) Digest(t testing.TB) string {
	t.Helper()
	d, err := r.Client(0).Do(context.Background(), "DEBUG", "DIGEST").Text()
	if err != nil {
		t.Fatalf("DEBUG DIGEST on %s: %v", r.Addr, err)
	}
	return d
}

// kill ends a started process and forgets it, so a second call does nothing.
func kill(cmd **exec.Cmd) {
	if *cmd == nil || (*cmd).Process == nil {
		return
	}
	_ = (*cmd).Process.Kill()
	_ = (*cmd).Wait()
	*cmd = nil
}
