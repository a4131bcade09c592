// Command dynode-broadcaster is a replication gateway for Redis and memcached: clients
// talk to it as to one server, and it replicates every write to all backends in one
// order.
//
//	dynode-broadcaster -c ./configuration          run with a configuration file
//	dynode-broadcaster check-config -c FILE        print the effective settings, or every problem
//	dynode-broadcaster demo [--protocol memcache]  gateway + two local backends
//	dynode-broadcaster resync ADDR -c FILE         resync a backend of the running gateway (admin_port)
//	dynode-broadcaster version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/gateway"
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
	if len(args) > 0 && (args[0] == "run" || args[0] == "demo" || args[0] == "check-config" || args[0] == "version" || args[0] == "resync") {
		sub, args = args[0], args[1:]
	}
	fs := pflag.NewFlagSet("dynode-broadcaster "+sub, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.StringP("config", "c", "", "configuration file (.properties as the original, or .yaml/.toml/.json)")
	configuration.RegisterFlags(fs)
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
		return runDemo(ctx, fs, stdout, stderr)
	}
	cfg, err := configuration.Load(configuration.Sources{Path: *path, Environ: os.Environ(), Flags: fs})
	if err != nil {
		return err
	}
	switch sub {
	case "check-config":
		return cfg.WriteEffective(stdout)
	case "resync":
		if fs.NArg() != 1 {
			return errors.New("usage: dynode-broadcaster resync HOST:PORT [-c FILE]: the backend to resync, as in servers")
		}
		return runResync(ctx, cfg, fs.Arg(0), stdout)
	}
	return serve(ctx, cfg, stderr)
}

// serve runs a gateway with cfg until ctx ends.
func serve(ctx context.Context, cfg *configuration.Config, stderr io.Writer) error {
	runtime.GOMAXPROCS(cfg.EffectiveThreads(runtime.NumCPU()))
	g, err := gateway.New(cfg, newLogger(stderr, cfg.LogLevel))
	if err != nil {
		return err
	}
	return g.Run(ctx)
}
