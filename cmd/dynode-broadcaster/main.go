// Command dynode-broadcaster is a replication gateway for Redis and memcached: clients
// talk to it as to one server, and it replicates every write to all backends in one
// order.
//
//	dynode-broadcaster -c ./configuration          run with a configuration file
//	dynode-broadcaster check-config -c FILE        print the effective settings, or every problem
//	                  [--resolve]                  and the backend list each discovery source returns now
//	dynode-broadcaster demo [--protocol memcache]  gateway + two local backends
//	dynode-broadcaster demo --topology two-regions docker-compose.yml's services as local processes
//	dynode-broadcaster resync ADDR -c FILE         resync a backend of the running gateway (admin_port)
//	dynode-broadcaster status [--admin HOST:PORT] [--watch] [-c FILE]
//	                                               the gateway's backends and rates, as a table
//	dynode-broadcaster health [--ready] [--admin HOST:PORT] [-c FILE]
//	                                               exit 0 when /healthz (/readyz) answers 200: for container HEALTHCHECKs
//	dynode-broadcaster version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/discovery"
	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/dynode/dynode-broadcaster/internal/logging"
	"github.com/spf13/pflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dynode-broadcaster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := "run"
	if len(args) > 0 && (args[0] == "run" || args[0] == "demo" || args[0] == "check-config" || args[0] == "version" || args[0] == "resync" || args[0] == "status" || args[0] == "health") {
		sub, args = args[0], args[1:]
	}
	fs := pflag.NewFlagSet("dynode-broadcaster "+sub, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.StringP("config", "c", "", "configuration file (.properties as the original, or .yaml/.toml/.json)")
	resolve, watch, adminAddr := false, false, ""
	topology, composeDir := "", ""
	switch sub {
	case "demo":
		fs.StringVar(&topology, "topology", "pair", "pair (a gateway and two backends) or two-regions (docker-compose.yml's services as local processes)")
		fs.StringVar(&composeDir, "compose-dir", filepath.Join("deploy", "compose"), "two-regions: the directory of the gateways' configuration files docker-compose.yml mounts")
	case "check-config":
		fs.BoolVar(&resolve, "resolve", false, "also fetch the backend list from each discovery source (HTTP, DNS, file) now")
	case "status":
		fs.StringVar(&adminAddr, "admin", "", "admin server of the gateway, HOST:PORT (default: host and admin_port of -c FILE)")
		fs.BoolVarP(&watch, "watch", "w", false, "refresh every second until interrupted")
	case "health":
		fs.StringVar(&adminAddr, "admin", "", "admin server of the gateway, HOST:PORT (default: host and admin_port of -c FILE)")
		fs.BoolVar(&watch, "ready", false, "ask /readyz (clients can be served) instead of /healthz (the process serves)")
	}
	configuration.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: dynode-broadcaster %s [flags]\n\n%s\nSettings: each is also a key of the configuration file and an environment variable DYNODE_<KEY> (docs/CONFIGURATION.md).\n%s",
			sub, configuration.OtherFlagUsages(fs), configuration.FlagUsages(fs))
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	if sub == "version" {
		_, err := fmt.Fprintln(stdout, "dynode-broadcaster", gateway.Version)
		return err
	}
	if sub == "demo" {
		return runDemo(ctx, fs, topology, composeDir, stdout, stderr)
	}
	cfg, err := configuration.Load(configuration.Sources{Path: *path, Environ: os.Environ(), Flags: fs})
	if err != nil {
		return err
	}
	switch sub {
	case "check-config":
		if err := cfg.WriteEffective(stdout); err != nil || !resolve {
			return err
		}
		return resolveSources(ctx, cfg, stdout)
	case "health":
		admin, err := newAdminClient(cfg, adminAddr)
		if err != nil {
			return fmt.Errorf("health: %w", err)
		}
		return admin.health(ctx, watch, stdout)
	case "status":
		admin, err := newAdminClient(cfg, adminAddr)
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		return runStatus(ctx, admin, watch, stdout)
	case "resync":
		if fs.NArg() != 1 {
			return errors.New("usage: dynode-broadcaster resync HOST:PORT [-c FILE]: the backend to resync, as in servers")
		}
		return runResync(ctx, cfg, fs.Arg(0), stdout)
	}
	return serve(ctx, cfg, stderr, configuration.Sources{Path: *path, Environ: os.Environ(), Flags: fs})
}

// resolveSources prints the list each discovery source returns now, or why it failed;
// it fails when one does.
func resolveSources(ctx context.Context, cfg *configuration.Config, stdout io.Writer) error {
	sources := gateway.DiscoverySources(cfg)
	fmt.Fprintf(stdout, "\nbackends:\n  static: %s\n", strings.Join(cfg.Servers, ", "))
	if len(sources) == 0 {
		_, err := fmt.Fprintln(stdout, "  (no discovery source configured)")
		return err
	}
	lists, errs := discovery.Resolve(ctx, sources)
	var failed []string
	for _, s := range sources {
		if err := errs[s.Name()]; err != nil {
			fmt.Fprintf(stdout, "  %s: FAILED: %v\n", s.Name(), err)
			failed = append(failed, s.Name())
			continue
		}
		fmt.Fprintf(stdout, "  %s: %s\n", s.Name(), strings.Join(lists[s.Name()], ", "))
	}
	if len(failed) > 0 {
		return fmt.Errorf("discovery failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// serve runs a gateway with cfg until ctx ends. SIGHUP, or an edit of the
// configuration file, loads src again and puts it in force (Gateway.Reload); a file
// with problems is refused whole, each problem logged with its line.
func serve(ctx context.Context, cfg *configuration.Config, stderr io.Writer, src configuration.Sources) error {
	runtime.GOMAXPROCS(cfg.EffectiveThreads(runtime.NumCPU()))
	level := new(slog.LevelVar)
	level.Set(logging.ParseLevel(cfg.LogLevel))
	log, flush := logging.New(stderr, cfg.LogFormat, level)
	defer flush()
	g, err := gateway.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reloads := make(chan string, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		var edited <-chan struct{}
		if src.Path != "" {
			ch, err := (&discovery.File{Path: src.Path}).Changed(ctx)
			if err != nil {
				log.Warn("configuration file not watched; reload with SIGHUP", "err", err)
			}
			edited = ch
		}
		request := func(why string) {
			select {
			case reloads <- why:
			case <-ctx.Done():
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				request("SIGHUP")
			case <-edited:
				time.Sleep(100 * time.Millisecond) // let the editor finish
				request("configuration file changed")
			}
		}
	}()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case why := <-reloads:
				next, err := configuration.Load(src)
				if err != nil {
					log.Error("configuration reload refused; the running configuration stays whole", "trigger", why, "problems", err.Error())
					continue
				}
				if changes := g.Reload(next); len(changes) == 0 {
					log.Info("configuration reloaded: nothing changed", "trigger", why)
				}
				level.Set(logging.ParseLevel(g.Config().LogLevel))
			}
		}
	}()
	return g.Run(ctx)
}
