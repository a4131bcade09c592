package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/spf13/pflag"
)

// runDemo starts two Redis backends (redis-server processes when redis-server is on
// PATH, else embedded miniredis servers) and the gateway in front of them on
// 127.0.0.1:9000, until ctx ends.
func runDemo(ctx context.Context, fs *pflag.FlagSet, stdout, stderr io.Writer) error {
	var backends []string
	var kind string
	if bin, err := exec.LookPath("redis-server"); err == nil {
		kind = "redis-server processes"
		dir, err := os.MkdirTemp("", "dynode-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		for i := range 2 {
			addr, stopServer, err := startRedis(bin, filepath.Join(dir, strconv.Itoa(i)))
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			defer stopServer()
			backends = append(backends, addr)
		}
	} else {
		kind = "embedded miniredis servers (install redis-server for real ones)"
		for range 2 {
			m := miniredis.NewMiniRedis()
			if err := m.Start(); err != nil {
				return fmt.Errorf("demo: miniredis: %w", err)
			}
			defer m.Close()
			backends = append(backends, m.Addr())
		}
	}
	env := append(os.Environ(), "DYNODE_SERVERS="+backends[0]+","+backends[1])
	if !fs.Changed("host") {
		env = append(env, "DYNODE_HOST=127.0.0.1")
	}
	cfg, err := configuration.Load(configuration.Sources{Environ: env, Flags: fs})
	if err != nil {
		return err
	}
	runtime.GOMAXPROCS(cfg.EffectiveThreads(runtime.NumCPU()))
	g, err := gateway.New(cfg, newLogger(stderr, cfg.LogLevel))
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- g.Run(ctx) }()
	select {
	case err := <-errc:
		return err
	case <-g.Ready():
	}
	gw := g.Addr().(*net.TCPAddr)
	fmt.Fprintf(stdout, `
dynode-broadcaster demo: gateway on %[1]s, backends %[2]s and %[3]s (%[4]s)

  redis-cli -p %[5]d set greeting hello       # write through the gateway: lands on both backends
  redis-cli -h %[6]s -p %[7]s get greeting    # read it back from backend 1
  redis-cli -h %[8]s -p %[9]s get greeting    # ... and from backend 2

Ctrl-C stops the gateway and the backends.
`, gw, backends[0], backends[1], kind, gw.Port, host(backends[0]), port(backends[0]), host(backends[1]), port(backends[1]))
	return <-errc
}

func host(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// startRedis runs redis-server on a free loopback port with no persistence.
func startRedis(bin, dir string) (addr string, stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start redis-server: %w", err)
	}
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("redis-server on %s did not start", addr)
}
