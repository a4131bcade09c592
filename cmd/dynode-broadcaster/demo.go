package main

import (
	"context"
	"errors"
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
	"github.com/dynode/dynode-broadcaster/internal/logging"
	"github.com/spf13/pflag"
)

// runDemo starts two backends and the gateway in front of them on 127.0.0.1:9000,
// until ctx ends. With protocol redis (or raw) the backends are redis-server
// processes when redis-server is on PATH, else embedded miniredis servers; with
// protocol memcache they are memcached processes (memcached must be installed).
// With --topology two-regions it runs docker-compose.yml's services instead
// (regions.go).
func runDemo(ctx context.Context, fs *pflag.FlagSet, topology, composeDir string, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "dynode-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	switch topology {
	case "two-regions":
		return runTwoRegions(ctx, fs, composeDir, dir, stdout, stderr)
	case "", "pair":
	default:
		return fmt.Errorf("demo: --topology %q: want pair or two-regions", topology)
	}
	// The protocol decides which backends to start: read it before they exist.
	probe, err := configuration.Load(configuration.Sources{Environ: append(os.Environ(), "DYNODE_SERVERS=127.0.0.1:1"), Flags: fs})
	if err != nil {
		return err
	}
	backends, kind, stopBackends, err := startDemoBackends(probe.Protocol, 2, dir)
	if err != nil {
		return err
	}
	defer stopBackends()
	env := append(os.Environ(), "DYNODE_SERVERS="+backends[0]+","+backends[1])
	if !fs.Changed("host") {
		env = append(env, "DYNODE_HOST=127.0.0.1")
	}
	cfg, err := configuration.Load(configuration.Sources{Environ: env, Flags: fs})
	if err != nil {
		return err
	}
	runtime.GOMAXPROCS(cfg.EffectiveThreads(runtime.NumCPU()))
	g, errc, flush, err := startDemoGateway(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer flush()
	gw := g.Addr().(*net.TCPAddr)
	fmt.Fprintf(stdout, "\ndynode-broadcaster demo (protocol %s): gateway on %s, backends %s and %s (%s)\n\n", cfg.Protocol, gw, backends[0], backends[1], kind)
	if cfg.Protocol == "memcache" {
		fmt.Fprintf(stdout, `  printf 'set greeting 0 0 5\r\nhello\r\n' | nc -q1 127.0.0.1 %[1]d   # write through the gateway: lands on both backends
  printf 'get greeting\r\n' | nc -q1 %[2]s %[3]s            # read it back from backend 1
  printf 'get greeting\r\n' | nc -q1 %[4]s %[5]s            # ... and from backend 2
`, gw.Port, host(backends[0]), port(backends[0]), host(backends[1]), port(backends[1]))
	} else {
		fmt.Fprintf(stdout, `  redis-cli -p %[1]d set greeting hello       # write through the gateway: lands on both backends
  redis-cli -h %[2]s -p %[3]s get greeting    # read it back from backend 1
  redis-cli -h %[4]s -p %[5]s get greeting    # ... and from backend 2
`, gw.Port, host(backends[0]), port(backends[0]), host(backends[1]), port(backends[1]))
	}
	fmt.Fprintf(stdout, "\nCtrl-C stops the gateway and the backends.\n")
	return <-errc
}

// startDemoBackends starts n backends of protocol in dir: server processes when the
// server is on PATH, else (Redis only) embedded miniredis servers. kind describes
// them; stop ends them all.
func startDemoBackends(protocol string, n int, dir string) (addrs []string, kind string, stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, s := range stops {
			s()
		}
	}
	switch bin, lookErr := lookBackend(protocol); {
	case protocol == "memcache" && lookErr != nil:
		return nil, "", nil, errors.New("demo --protocol memcache needs memcached on PATH: install the Debian package memcached (apt-get install memcached)")
	case lookErr == nil:
		kind = filepath.Base(bin) + " processes"
		for i := range n {
			addr, stopServer, err := startBackend(protocol, bin, filepath.Join(dir, protocol+strconv.Itoa(i)))
			if err != nil {
				stop()
				return nil, "", nil, fmt.Errorf("demo: %w", err)
			}
			stops = append(stops, stopServer)
			addrs = append(addrs, addr)
		}
	default:
		kind = "embedded miniredis servers (install redis-server for real ones)"
		for range n {
			m := miniredis.NewMiniRedis()
			if err := m.Start(); err != nil {
				stop()
				return nil, "", nil, fmt.Errorf("demo: miniredis: %w", err)
			}
			stops = append(stops, m.Close)
			addrs = append(addrs, m.Addr())
		}
	}
	return addrs, kind, stop, nil
}

// startDemoGateway runs a gateway with cfg until ctx ends (its result on errc) and
// returns once it listens and its backends answered (5 s at most: a slow start is
// shown as it is). flush ends its logger.
func startDemoGateway(ctx context.Context, cfg *configuration.Config, stderr io.Writer) (g *gateway.Gateway, errc chan error, flush func(), err error) {
	log, flush := logging.New(stderr, cfg.LogFormat, logging.ParseLevel(cfg.LogLevel))
	g, err = gateway.New(cfg, log)
	if err != nil {
		return nil, nil, nil, err
	}
	errc = make(chan error, 1)
	go func() { errc <- g.Run(ctx) }()
	select {
	case err := <-errc:
		flush()
		return nil, nil, nil, err
	case <-g.Ready():
	}
	// Announce the demo once the backends have answered, so a first write goes to
	// all at once rather than into a backlog.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		up := 0
		for _, b := range g.Backends() {
			if b.State == "up" {
				up++
			}
		}
		if up == len(g.Backends()) {
			break
		}
	}
	return g, errc, flush, nil
}

// lookBackend finds the server binary the demo runs for protocol.
func lookBackend(protocol string) (string, error) {
	if protocol == "memcache" {
		return exec.LookPath("memcached")
	}
	return exec.LookPath("redis-server")
}

func host(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// startBackend runs redis-server (no persistence) or memcached on a free loopback
// port and waits until it accepts connections. The port is picked free and bound by
// the server a moment later; another process may take it in between (a connection's
// local port), and the server then exits at once: it is started again on another
// port, up to three more times.
func startBackend(protocol, bin, dir string) (addr string, stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	for range 4 {
		if addr, stop, err = startBackendOnce(protocol, bin, dir); !errors.Is(err, errBackendExited) {
			break
		}
	}
	return addr, stop, err
}

// errBackendExited: the server exited before it accepted a connection.
var errBackendExited = errors.New("exited before it accepted connections")

// startBackendOnce is one try of startBackend.
func startBackendOnce(protocol, bin, dir string) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	p := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	args := []string{"--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}
	if protocol == "memcache" {
		args = []string{"-l", "127.0.0.1", "-p", p, "-U", "0"}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root") // memcached refuses to run as root without -u
		}
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	addr = net.JoinHostPort("127.0.0.1", p)
	stop = func() { _ = cmd.Process.Kill(); <-exited }
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			return "", nil, fmt.Errorf("%s on %s: %w", bin, addr, errBackendExited)
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("%s on %s did not start", bin, addr)
}
