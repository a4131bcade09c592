package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/redis/go-redis/v9"
)

func TestCheckConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	seed := filepath.Join("..", "..", "configuration", "testdata", "seed.properties")
	if err := run(context.Background(), []string{"check-config", "-c", seed}, &out, &errOut); err != nil {
		t.Fatalf("check-config of the seed file: %v", err)
	}
	for _, want := range []string{"servers=127.0.0.1:6379\n", "port=9000\n", "discard_responses=false\n", "write_reply=primary\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("effective settings lack %q:\n%s", want, out.String())
		}
	}

	bad := filepath.Join(t.TempDir(), "bad.properties")
	if err := os.WriteFile(bad, []byte("servers=x\nprot=redis\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"check-config", "-c", bad}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "servers (line 1)") || !strings.Contains(err.Error(), "prot (line 2): unknown setting") {
		t.Fatalf("check-config of a bad file: %v", err)
	}
	if err := run(context.Background(), []string{"check-config", "--port", "70000"}, &out, &errOut); err == nil {
		t.Fatal("an invalid flag value passed")
	}
}

// TestCheckConfigResolve: check-config --resolve prints each discovery source's list
// now, or why it failed, and fails when one did.
func TestCheckConfigResolve(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "backends")
	if err := os.WriteFile(list, []byte("10.0.0.5:6379\n# spare\n10.0.0.6:6379\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`["10.0.0.7:6379"]`))
	}))
	defer srv.Close()
	cfg := filepath.Join(dir, "gw.properties")
	if err := os.WriteFile(cfg, []byte("servers=10.0.0.1:6379\nservers_autoupdate=true\nservers_autoupdate_url="+srv.URL+"\nservers_file="+list+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"check-config", "-c", cfg, "--resolve"}, &out, &errOut); err != nil {
		t.Fatalf("check-config --resolve: %v\n%s", err, out.String())
	}
	for _, want := range []string{"static: 10.0.0.1:6379\n", "http: 10.0.0.7:6379\n", "file: 10.0.0.5:6379, 10.0.0.6:6379\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--resolve output lacks %q:\n%s", want, out.String())
		}
	}
	if err := os.Remove(list); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(context.Background(), []string{"check-config", "-c", cfg, "--resolve"}, &out, &errOut)
	if err == nil || !strings.Contains(out.String(), "file: FAILED:") {
		t.Fatalf("--resolve with a missing file: %v\n%s", err, out.String())
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &out); err != nil || !strings.HasPrefix(out.String(), "dynode-broadcaster ") {
		t.Fatalf("version: %q %v", out.String(), err)
	}
}

// background runs the command with args until the test ends, when it must stop
// without an error within 15 s; out collects its output, done its result.
func background(t *testing.T, args ...string) (out *testserver.Buffer, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &testserver.Buffer{}
	result := make(chan error, 1)
	go func() { result <- run(ctx, args, out, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-result:
			if err != nil {
				t.Errorf("%v: %v", args, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%v did not stop", args)
		}
	})
	return out, result
}

// startDemo runs the demo with args until the test ends and returns the gateway
// and backend addresses it prints.
func startDemo(t *testing.T, args ...string) (gw string, backends []string) {
	t.Helper()
	out, done := background(t, append([]string{"demo", "--port", "0", "--log_level", "ERROR"}, args...)...)
	re := regexp.MustCompile(`gateway on (\S+), backends (\S+) and (\S+) \(`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1], m[2:]
		}
		select {
		case err := <-done:
			t.Fatalf("demo stopped: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo did not start:\n%s", out.String())
		}
	}
}

// TestDemoEmbedded runs the demo without redis-server on PATH: two embedded backends,
// a write through the gateway lands on both.
func TestDemoEmbedded(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	addr, backends := startDemo(t)
	gw := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	defer gw.Close()
	if err := gw.Set(context.Background(), "greeting", "hello", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range backends {
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
		// write_reply=primary: the SET returned once the primary had it; a secondary
		// may apply it a moment later.
		v, err := eventually(func() (string, error) { return c.Get(context.Background(), "greeting").Result() }, "hello")
		c.Close()
		if err != nil || v != "hello" {
			t.Fatalf("backend %s: greeting = %q, %v", addr, v, err)
		}
	}
}

// eventually calls get until it returns want, for up to 5 s, and returns its last result.
func eventually(get func() (string, error), want string) (v string, err error) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if v, err = get(); err == nil && v == want {
			break
		}
	}
	return v, err
}

// TestDemoMemcache runs the memcached flavour: two memcached processes.
func TestDemoMemcache(t *testing.T) {
	testserver.Require(t, "memcached", "memcached")
	addr, backends := startDemo(t, "--protocol", "memcache")
	if err := memcache.New(addr).Set(&memcache.Item{Key: "greeting", Value: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	for _, b := range backends {
		v, err := eventually(func() (string, error) {
			it, err := memcache.New(b).Get("greeting")
			if err != nil {
				return "", err
			}
			return string(it.Value), nil
		}, "hello")
		if err != nil || v != "hello" {
			t.Fatalf("backend %s: greeting = %q, %v", b, v, err)
		}
	}
}

// TestDemoMemcacheMissing: without memcached the demo says which package to install.
func TestDemoMemcacheMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var out bytes.Buffer
	err := run(context.Background(), []string{"demo", "--protocol", "memcache", "--port", "0"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "Debian package memcached") {
		t.Fatalf("demo --protocol memcache without memcached: %v", err)
	}
}

// TestResyncCommand: `dynode-broadcaster resync ADDR` asks the running gateway's admin
// server to resync a backend that restarted empty, follows it, and reports it in sync.
func TestResyncCommand(t *testing.T) {
	a, b := testserver.StartRedis(t), testserver.StartRedis(t)
	admin := strconv.Itoa(testserver.FreePort(t))
	flags := []string{"--host", "127.0.0.1", "--port", "0", "--servers", a.Addr + "," + b.Addr, "--admin_port", admin,
		"--auto_resync", "false", "--reconnect_delay_timeout", "100ms", "--log_level", "ERROR", "--admin_token", "tok3n"}
	background(t, flags...)
	if err := a.Client(0).Set(context.Background(), "k", "v", 0).Err(); err != nil { // the data b lacks
		t.Fatal(err)
	}
	var out bytes.Buffer
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out.Reset()
		if err = run(context.Background(), append([]string{"resync", b.Addr}, flags...), &out, &out); err == nil {
			break
		}
	}
	if err != nil || !strings.Contains(out.String(), b.Addr+" is in sync") {
		t.Fatalf("resync: %v\n%s", err, out.String())
	}
	if v := b.Client(0).Get(context.Background(), "k").Val(); v != "v" {
		t.Fatalf("resynced backend: k = %q", v)
	}
	err = run(context.Background(), append([]string{"resync", "127.0.0.1:1"}, flags...), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "no such backend") {
		t.Fatalf("resync of an unknown backend: %v", err)
	}
}

// TestReloadOnFileEdit: the running command reloads its configuration file when it
// is edited: a backend added to servers joins; a file with a problem is refused
// whole, the problem logged with its line.
func TestReloadOnFileEdit(t *testing.T) {
	a, b := testserver.StartRedis(t), testserver.StartRedis(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	path := filepath.Join(t.TempDir(), "gw.properties")
	write := func(text string) {
		if err := os.WriteFile(path+".tmp", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	base := "host=127.0.0.1\nport=" + strconv.Itoa(port) + "\nreconnect_delay_timeout=100ms\n"
	write(base + "servers=" + a.Addr + "\n")
	logs, _ := background(t, "-c", path)
	ctx := context.Background()
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("dynode-broadcaster listening")
	write(base + "servers=" + a.Addr + "," + b.Addr + "\nwrite_reply=all\n")
	waitFor(`msg="configuration changed" key=write_reply old=primary new=all`)
	waitFor("backend list changed")
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), Protocol: 2})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.Client(0).Get(ctx, "k").Val() != "v" {
		if time.Now().After(deadline) {
			t.Fatalf("the added backend never got the write:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	write(base + "servers=" + a.Addr + "\nwrite_reply=sometimes\n")
	waitFor("configuration reload refused")
	waitFor("write_reply (line 5)")
	if strings.Contains(logs.String(), "new=sometimes") {
		t.Fatal("an invalid value was applied")
	}
}

// TestStatusCommand runs status against a live gateway with one backend stopped:
// the table shows each backend's role and state, --watch redraws every second, and
// an address where nothing listens is a one-line error.
func TestStatusCommand(t *testing.T) {
	a, b := testserver.StartRedis(t), testserver.StartRedis(t)
	admin := "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
	_, adminPort, _ := net.SplitHostPort(admin)
	flags := []string{"--host", "127.0.0.1", "--port", "0", "--servers", a.Addr + "," + b.Addr, "--admin_port", adminPort,
		"--reconnect_delay_timeout", "100ms", "--log_level", "ERROR"}
	background(t, flags...)
	row := regexp.MustCompile(`(?m)^(\S+)\s+(primary|secondary)\s+(\S+)\s+(yes|NO)`)
	var out bytes.Buffer
	var states map[string]string
	status := func(want string) {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			out.Reset()
			if err := run(context.Background(), []string{"status", "--admin", admin}, &out, &out); err != nil {
				continue
			}
			states = map[string]string{}
			for _, m := range row.FindAllStringSubmatch(out.String(), -1) {
				states[m[1]] = m[2] + " " + m[3]
			}
			if states[b.Addr] == want {
				return
			}
		}
	}
	status("secondary up")
	b.Stop()
	status("secondary down")
	if states[a.Addr] != "primary up" || states[b.Addr] != "secondary down" || !strings.Contains(out.String(), "BACKEND") ||
		!(strings.Contains(out.String(), "connection refused") || strings.Contains(out.String(), "connection lost")) {
		t.Fatalf("status: %v\n%s", states, out.String())
	}

	var watched testserver.Buffer
	wctx, wcancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer wcancel()
	// -c FILE gives the admin address as a running gateway's configuration would.
	conf := filepath.Join(t.TempDir(), "gw.properties")
	if err := os.WriteFile(conf, []byte("host=127.0.0.1\nadmin_port="+adminPort+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(wctx, []string{"status", "--watch", "-c", conf}, &watched, &watched); err != nil {
		t.Fatalf("status --watch: %v", err)
	}
	if frames := strings.Count(watched.String(), "\x1b[2J"); frames < 2 || strings.Count(watched.String(), a.Addr) < 2 {
		t.Fatalf("status --watch drew %d frames in 2.5 s:\n%q", frames, watched.String())
	}

	// Against an address where nothing listens: one line on stderr, exit status 1.
	nobody := "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
	cmd := exec.Command(os.Args[0], "status", "--admin", nobody)
	cmd.Env = append(os.Environ(), "TEST_RUN_DYNODE_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || stdout.Len() != 0 ||
		strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "connection refused") {
		t.Fatalf("status against nothing: %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
	}
	err = run(context.Background(), []string{"status"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "admin_port is 0") {
		t.Fatalf("status without an admin address: %v", err)
	}
}
