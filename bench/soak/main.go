// Command soak runs the gateway under a long mixed load, for bench/soak.sh: it
// starts its own redis-servers and gateway on loopback, drives 1,000 clients
// (reads, writes, pipelines, a BLPOP job queue, pub/sub) with connection churn,
// restarts a secondary backend periodically, and samples the gateway's RSS,
// goroutines, open file descriptors and ops/s. It ends by waiting for every backend
// to be in sync again and comparing DEBUG DIGEST across them, then writes the
// samples (TSV), a PNG chart and a Markdown summary.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dynode/dynode-broadcaster/internal/chart"
	"github.com/dynode/dynode-broadcaster/internal/procstat"
	"github.com/redis/go-redis/v9"
)

type options struct {
	gateway      string
	duration     time.Duration
	clients      int
	backends     int
	rate         int
	restartEvery time.Duration
	sampleEvery  time.Duration
	out          string
	chart        string
}

func main() {
	var o options
	flag.StringVar(&o.gateway, "gateway", "bench/out/dynode-broadcaster", "gateway binary")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long the load runs")
	flag.IntVar(&o.clients, "clients", 1000, "client connections (each reconnects after a random 100-1,000 commands)")
	flag.IntVar(&o.backends, "backends", 3, "redis-server backends")
	flag.IntVar(&o.rate, "rate", 20000, "commands per second, all clients together")
	flag.DurationVar(&o.restartEvery, "restart-every", time.Minute, "interval between restarts of a secondary backend (0 = none)")
	flag.DurationVar(&o.sampleEvery, "sample-every", 10*time.Second, "sampling interval")
	flag.StringVar(&o.out, "out", "bench/out/soak", "directory for the servers' files, logs and the samples")
	flag.StringVar(&o.chart, "chart", "bench/soak.png", "PNG chart written at the end")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatalf("soak: %v", err)
	}
}

// sample is one reading of the gateway.
type sample struct {
	at                  time.Duration
	rssMiB              float64
	goroutines, fds     float64
	opsPerSec, errors   float64
	clients, inSync, up float64
	dormant             float64 // clients whose session is dormant
}

func run(ctx context.Context, o options) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	procs := &processes{}
	defer procs.stopAll()
	servers := make([]*server, o.backends)
	addrs := make([]string, o.backends)
	for i := range servers {
		s, err := procs.startRedis(o.out, i)
		if err != nil {
			return err
		}
		servers[i], addrs[i] = s, s.addr
	}
	gw, err := procs.startGateway(o.gateway, o.out, addrs)
	if err != nil {
		return err
	}
	log.Printf("gateway %s (pid %d, admin %s) in front of %s", gw.addr, gw.pid(), gw.admin, strings.Join(addrs, ", "))

	load := newLoad(gw.addr, o)
	loadCtx, stopLoad := context.WithTimeout(ctx, o.duration)
	defer stopLoad()
	var wg sync.WaitGroup
	wg.Go(func() { load.run(loadCtx) })
	if o.restartEvery > 0 && o.backends > 1 {
		wg.Go(func() { restartSecondaries(loadCtx, procs, servers[1:], o.restartEvery) })
	}
	var samples []sample
	start := time.Now()
	tick := time.NewTicker(o.sampleEvery)
	lastOps, lastErrs := int64(0), int64(0)
sampling:
	for {
		select {
		case <-loadCtx.Done():
			break sampling
		case <-tick.C:
		}
		if loadCtx.Err() != nil {
			break sampling // the load is stopping: a sample now would show it leave
		}
		ops, errs := load.ops.Load(), load.errs.Load()
		s, err := read(gw)
		if err != nil {
			log.Printf("sample: %v", err)
			continue
		}
		s.at = time.Since(start)
		s.opsPerSec = float64(ops-lastOps) / o.sampleEvery.Seconds()
		s.errors = float64(errs - lastErrs)
		lastOps, lastErrs = ops, errs
		samples = append(samples, s)
		log.Printf("%4.0fs rss %.1f MiB, goroutines %.0f, fds %.0f, clients %.0f, %.0f ops/s, %.0f errors, backends up %.0f in sync %.0f",
			s.at.Seconds(), s.rssMiB, s.goroutines, s.fds, s.clients, s.opsPerSec, s.errors, s.up, s.inSync)
	}
	tick.Stop()
	if err := saveProfile(gw.admin, "heap", filepath.Join(o.out, "heap.pprof")); err != nil {
		log.Printf("heap profile: %v", err)
	}
	stopLoad()
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	converged, detail := converge(ctx, gw, servers, 2*time.Minute)
	log.Print(detail)
	if err := writeTSV(filepath.Join(o.out, "samples.tsv"), samples); err != nil {
		return err
	}
	if err := draw(o.chart, samples); err != nil {
		return err
	}
	fmt.Print(summary(o, samples, load, converged, detail))
	if !converged {
		return errors.New("backends did not converge")
	}
	return nil
}

// load is the mixed client workload.
type load struct {
	addr      string
	o         options
	ops, errs atomic.Int64
	reconnect atomic.Int64
	jobsIn    atomic.Int64
	jobsOut   atomic.Int64
	messages  atomic.Int64
}

func newLoad(addr string, o options) *load { return &load{addr: addr, o: o} }

// run drives o.clients clients until ctx ends: 20 of them are BLPOP workers and 10
// are subscribers; the rest send a mix of commands at o.rate in total.
func (l *load) run(ctx context.Context) {
	const workers, subscribers = 20, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { l.worker(ctx) })
	}
	for range subscribers {
		wg.Go(func() { l.subscriber(ctx) })
	}
	mixers := max(l.o.clients-workers-subscribers, 1)
	interval := time.Duration(float64(time.Second) * float64(mixers) / float64(max(l.o.rate, 1)))
	for i := range mixers {
		wg.Go(func() { l.mixer(ctx, i, interval) })
	}
	wg.Wait()
}

func (l *load) client() *redis.Client {
	l.reconnect.Add(1)
	return redis.NewClient(&redis.Options{Addr: l.addr, Protocol: 2, PoolSize: 1, MaxRetries: -1,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, DisableIdentity: true})
}

// mixer sends one command (or a pipeline of 10) per interval, reconnecting after a
// random 100-1,000 commands. Every tenth mixer is a pooled client that idles 5-15 s
// between its commands instead (past client_dormant_after, 10 s, its session goes
// dormant and wakes again).
func (l *load) mixer(ctx context.Context, id int, interval time.Duration) {
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	// Spread the clients' first commands over one interval.
	if !sleep(ctx, time.Duration(rng.Int64N(int64(interval)+1))) {
		return
	}
	value := make([]byte, 4096)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	for ctx.Err() == nil {
		c := l.client()
		for n := 100 + rng.IntN(900); n > 0 && ctx.Err() == nil; n-- {
			k := rng.IntN(10000)
			var err error
			switch p := rng.IntN(100); {
			case p < 45:
				err = c.Get(ctx, "soak:"+strconv.Itoa(k)).Err()
			case p < 65:
				err = c.Set(ctx, "soak:"+strconv.Itoa(k), value[:16+rng.IntN(4080)], 0).Err()
			case p < 72:
				err = c.Incr(ctx, "soak:ctr:"+strconv.Itoa(k%100)).Err()
			case p < 78:
				_, err = c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
					pipe.LPush(ctx, "soak:list:"+strconv.Itoa(k%100), k)
					pipe.LTrim(ctx, "soak:list:"+strconv.Itoa(k%100), 0, 99)
					return nil
				})
			case p < 83:
				err = c.HSet(ctx, "soak:h:"+strconv.Itoa(k%1000), "f"+strconv.Itoa(k%10), k).Err()
			case p < 88:
				err = c.MGet(ctx, "soak:"+strconv.Itoa(k), "soak:"+strconv.Itoa((k+1)%10000), "soak:"+strconv.Itoa((k+2)%10000)).Err()
			case p < 90:
				if err = c.RPush(ctx, "soak:queue", k).Err(); err == nil {
					l.jobsIn.Add(1)
				}
			case p < 91:
				err = c.Publish(ctx, "soak:news", k).Err()
			case p < 93:
				// Long enough not to expire during the run: a key expiring between two
				// backends' DEBUG DIGEST would differ for a moment (expiry itself is
				// tested in gateway/ttl_test.go).
				err = c.Expire(ctx, "soak:"+strconv.Itoa(k), time.Duration(3600+rng.IntN(3600))*time.Second).Err()
			default:
				_, err = c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
					for j := range 10 {
						pipe.Get(ctx, "soak:"+strconv.Itoa((k+j)%10000))
					}
					return nil
				})
			}
			l.count(err)
			pause := interval
			if id%10 == 0 {
				pause = 5*time.Second + time.Duration(rng.Int64N(int64(10*time.Second)))
			}
			if !sleep(ctx, pause) {
				break
			}
		}
		_ = c.Close()
	}
}

func (l *load) count(err error) {
	l.ops.Add(1)
	if err != nil && !errors.Is(err, redis.Nil) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		if l.errs.Add(1)%1000 == 1 {
			log.Printf("client error (1 in 1,000 shown): %v", err)
		}
	}
}

// worker takes jobs off soak:queue with BLPOP (1 s timeout).
func (l *load) worker(ctx context.Context) {
	c := l.client()
	defer func() { _ = c.Close() }()
	for ctx.Err() == nil {
		_, err := c.BLPop(ctx, time.Second, "soak:queue").Result()
		if err == nil {
			l.jobsOut.Add(1)
		}
		l.count(err)
	}
}

// subscriber listens on soak:news, resubscribing when its connection ends.
func (l *load) subscriber(ctx context.Context) {
	c := l.client()
	defer func() { _ = c.Close() }()
	for ctx.Err() == nil {
		ps := c.Subscribe(ctx, "soak:news")
		for ctx.Err() == nil {
			if _, err := ps.ReceiveMessage(ctx); err != nil {
				break
			}
			l.messages.Add(1)
		}
		_ = ps.Close()
		sleep(ctx, 100*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// restartSecondaries stops and restarts one secondary backend (round robin) every
// interval, with its data gone, as a crashed and replaced Redis would be.
func restartSecondaries(ctx context.Context, procs *processes, servers []*server, every time.Duration) {
	for i := 0; sleep(ctx, every); i++ {
		s := servers[i%len(servers)]
		log.Printf("restarting backend %s", s.addr)
		if err := procs.restart(s, 2*time.Second); err != nil {
			log.Printf("restart %s: %v", s.addr, err)
		}
	}
}

// read samples the gateway: RSS and fds from /proc, the rest from /metrics.
func read(gw *gatewayProc) (sample, error) {
	var s sample
	rss, err := procstat.RSS(gw.pid())
	if err != nil {
		return s, err
	}
	s.rssMiB = float64(rss) / (1 << 20)
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", gw.pid()))
	if err != nil {
		return s, err
	}
	s.fds = float64(len(fds))
	m, err := metrics(gw.admin)
	if err != nil {
		return s, err
	}
	s.goroutines, s.clients, s.dormant = m["go_goroutines"], m["dynode_clients"], m["dynode_clients_dormant"]
	s.up, s.inSync = m["dynode_backend_up"], m["dynode_backend_in_sync"]
	return s, nil
}

// metrics fetches /metrics and sums each metric's samples over their labels.
func metrics(admin string) (map[string]float64, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err == nil {
			m[name] += v
		}
	}
	return m, sc.Err()
}

// saveProfile writes the gateway's pprof profile name (under load) to path.
func saveProfile(admin, name, path string) error {
	resp, err := http.Get("http://" + admin + "/debug/pprof/" + name)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// converge waits until every backend is up, in sync and has no lag, then compares
// DEBUG DIGEST across them.
func converge(ctx context.Context, gw *gatewayProc, servers []*server, within time.Duration) (bool, string) {
	deadline := time.Now().Add(within)
	start := time.Now()
	for {
		m, err := metrics(gw.admin)
		n := float64(len(servers))
		if err == nil && m["dynode_backend_up"] == n && m["dynode_backend_in_sync"] == n && m["dynode_backend_lag_commands"] == 0 {
			break
		}
		if time.Now().After(deadline) || !sleep(ctx, 500*time.Millisecond) {
			return false, fmt.Sprintf("backends not all up and in sync %s after the load stopped: %v", within, m)
		}
	}
	waited := time.Since(start)
	digests := make([]string, len(servers))
	for i, s := range servers {
		c := redis.NewClient(&redis.Options{Addr: s.addr, Protocol: 2})
		d, err := c.Do(ctx, "DEBUG", "DIGEST").Text()
		_ = c.Close()
		if err != nil {
			return false, fmt.Sprintf("DEBUG DIGEST %s: %v", s.addr, err)
		}
		digests[i] = d
	}
	for _, d := range digests[1:] {
		if d != digests[0] {
			return false, fmt.Sprintf("backends differ after the load: DEBUG DIGEST %s", strings.Join(digests, " "))
		}
	}
	return true, fmt.Sprintf("all %d backends in sync %.1f s after the load stopped; DEBUG DIGEST %s on every backend", len(servers), waited.Seconds(), digests[0])
}

func writeTSV(path string, samples []sample) error {
	var b strings.Builder
	b.WriteString("seconds\trss_mib\tgoroutines\tfds\tops_per_sec\terrors\tclients\tbackends_up\tbackends_in_sync\tclients_dormant\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%.0f\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\n",
			s.at.Seconds(), s.rssMiB, s.goroutines, s.fds, s.opsPerSec, s.errors, s.clients, s.up, s.inSync, s.dormant)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func draw(path string, samples []sample) error {
	x := make([]float64, len(samples))
	series := func(name string, f func(sample) float64) chart.Series {
		y := make([]float64, len(samples))
		for i, s := range samples {
			x[i], y[i] = s.at.Seconds(), f(s)
		}
		return chart.Series{Name: name, X: x, Y: y}
	}
	return chart.Lines(path, 2, []chart.LinePanel{
		{Title: "Gateway RSS", XLabel: "seconds", YLabel: "MiB", Series: []chart.Series{series("rss", func(s sample) float64 { return s.rssMiB })}},
		{Title: "Goroutines and open fds", XLabel: "seconds", YLabel: "count", Series: []chart.Series{
			series("goroutines", func(s sample) float64 { return s.goroutines }),
			series("fds", func(s sample) float64 { return s.fds }),
			series("clients", func(s sample) float64 { return s.clients }),
			series("dormant", func(s sample) float64 { return s.dormant })}},
		{Title: "Throughput", XLabel: "seconds", YLabel: "commands/s", Series: []chart.Series{series("ops/s", func(s sample) float64 { return s.opsPerSec })}},
		{Title: "Backends", XLabel: "seconds", YLabel: "count", Series: []chart.Series{
			series("up", func(s sample) float64 { return s.up }),
			series("in sync", func(s sample) float64 { return s.inSync })}},
	})
}

// summary is the Markdown table of the run: each series' first-third, middle-third
// and last-third means and its drift (last third against middle third).
func summary(o options, samples []sample, l *load, converged bool, detail string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%d clients (20 BLPOP workers, 10 subscribers, a tenth of the rest idle 5-15 s between commands), %s, %d backends, target %d commands/s, a secondary restarted every %s, sampled every %s\n\n",
		o.clients, o.duration, o.backends, o.rate, o.restartEvery, o.sampleEvery)
	b.WriteString("| series | first third | middle third | last third | max | drift (last vs middle) |\n|---|---|---|---|---|---|\n")
	third := max(len(samples)/3, 1)
	mean := func(f func(sample) float64, from, to int) float64 {
		to = min(to, len(samples))
		if from >= to {
			return 0
		}
		t := 0.0
		for _, s := range samples[from:to] {
			t += f(s)
		}
		return t / float64(to-from)
	}
	row := func(name string, f func(sample) float64) {
		a, m, z := mean(f, 0, third), mean(f, third, 2*third), mean(f, 2*third, len(samples))
		hi := 0.0
		for _, s := range samples {
			hi = max(hi, f(s))
		}
		drift := 0.0
		if m != 0 {
			drift = (z - m) / m * 100
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %.1f | %+.1f %% |\n", name, a, m, z, hi, drift)
	}
	row("RSS (MiB)", func(s sample) float64 { return s.rssMiB })
	row("goroutines", func(s sample) float64 { return s.goroutines })
	row("open fds", func(s sample) float64 { return s.fds })
	row("clients connected", func(s sample) float64 { return s.clients })
	row("clients dormant", func(s sample) float64 { return s.dormant })
	row("commands/s", func(s sample) float64 { return s.opsPerSec })
	fmt.Fprintf(&b, "\ncommands %d, client errors %d, client connections opened %d, jobs queued %d / taken %d, messages received %d\n\n%s (converged: %v)\n",
		l.ops.Load(), l.errs.Load(), l.reconnect.Load(), l.jobsIn.Load(), l.jobsOut.Load(), l.messages.Load(), detail, converged)
	return b.String()
}

// processes owns the servers the soak starts.
type processes struct {
	mu    sync.Mutex
	procs []*exec.Cmd
}

type server struct {
	addr, dir, port string
	cmd             *exec.Cmd
}

type gatewayProc struct {
	addr, admin string
	cmd         *exec.Cmd
}

func (g *gatewayProc) pid() int { return g.cmd.Process.Pid }

func (p *processes) start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p.mu.Lock()
	p.procs = append(p.procs, cmd)
	p.mu.Unlock()
	return nil
}

func (p *processes) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.procs {
		if c.ProcessState == nil {
			_ = c.Process.Signal(syscall.SIGTERM)
			_ = c.Wait()
		}
	}
}

func (p *processes) startRedis(out string, i int) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(out, "redis-"+strconv.Itoa(i))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &server{addr: "127.0.0.1:" + port, dir: dir, port: port}
	return s, p.launchRedis(s)
}

func (p *processes) launchRedis(s *server) error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.cmd = exec.Command("redis-server", "--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--enable-debug-command", "yes", "--loglevel", "warning")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := p.start(s.cmd); err != nil {
		return err
	}
	return waitPort(s.addr)
}

// restart stops s (SIGTERM, no save), waits down, and starts it again empty.
func (p *processes) restart(s *server, down time.Duration) error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
	time.Sleep(down)
	return p.launchRedis(s)
}

func (p *processes) startGateway(bin, out string, backends []string) (*gatewayProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(out, "gateway.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DYNODE_SERVERS="+strings.Join(backends, ","), "DYNODE_HOST=127.0.0.1",
		"DYNODE_PORT="+port, "DYNODE_ADMIN_PORT="+admin, "DYNODE_LOG_LEVEL=INFO", "DYNODE_ADMIN_PPROF=true")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := p.start(cmd); err != nil {
		return nil, err
	}
	g := &gatewayProc{addr: "127.0.0.1:" + port, admin: "127.0.0.1:" + admin, cmd: cmd}
	if err := waitPort(g.addr); err != nil {
		return nil, err
	}
	return g, waitPort(g.admin)
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = ln.Close() }()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	return port, err
}

func waitPort(addr string) error {
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			return c.Close()
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s never opened", addr)
}
