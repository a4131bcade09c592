package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"
)

// regionService is one service of docker-compose.yml, as the two-regions demo runs
// it: a backend server, a gateway (from its configuration file in the compose
// directory), or an app.
type regionService struct {
	name   string
	kind   string // redis, memcache, gateway or app
	config string // gateway: its configuration file, relative to the compose directory
}

// twoRegionServices are docker-compose.yml's services, in start order (a test checks
// the compose file has exactly these).
var twoRegionServices = []regionService{
	{name: "redis-us", kind: "redis"},
	{name: "redis-eu", kind: "redis"},
	{name: "memcached-a", kind: "memcache"},
	{name: "memcached-b", kind: "memcache"},
	{name: "broadcaster-us", kind: "gateway", config: "broadcaster-us.properties"},
	{name: "broadcaster-eu", kind: "gateway", config: "broadcaster-eu.properties"},
	{name: "broadcaster-mc", kind: "gateway", config: "broadcaster-mc.properties"},
	{name: "app-us", kind: "app"},
	{name: "app-eu", kind: "app"},
}

// runTwoRegions runs docker-compose.yml's services as local processes: the backend
// servers on free loopback ports, each gateway from its configuration file in
// composeDir with the compose service names in servers mapped to those ports (as
// compose's DNS would), and the two apps, which write through their region's
// gateway and read the other region's writes from their region's Redis.
func runTwoRegions(ctx context.Context, fs *pflag.FlagSet, composeDir, dir string, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var stops []func() // backends and loggers, stopped after the gateways and apps
	defer func() {
		cancel()
		wg.Wait()
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	local := map[string]string{} // compose address (service:port) -> local address
	errc := make(chan error, len(twoRegionServices))
	for _, svc := range twoRegionServices {
		switch svc.kind {
		case "redis", "memcache":
			addrs, kind, stop, err := startDemoBackends(svc.kind, 1, filepath.Join(dir, svc.name))
			if err != nil {
				if svc.kind == "memcache" {
					fmt.Fprintf(stderr, "%s: not started: %v\n", svc.name, err)
					continue
				}
				return err
			}
			stops = append(stops, stop)
			port := "6379"
			if svc.kind == "memcache" {
				port = "11211"
			}
			local[net.JoinHostPort(svc.name, port)] = addrs[0]
			fmt.Fprintf(stdout, "%-15s %s (%s)\n", svc.name, addrs[0], strings.Replace(kind, "processes", "process", 1))
		case "gateway":
			cfg, g, gerr, flush, err := startRegionGateway(ctx, fs, filepath.Join(composeDir, svc.config), local, stderr)
			if errors.Is(err, errServiceMissing) {
				fmt.Fprintf(stderr, "%s: not started: %v\n", svc.name, err)
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", svc.name, err)
			}
			stops = append(stops, flush)
			wg.Go(func() {
				if err := <-gerr; err != nil {
					errc <- fmt.Errorf("%s: %w", svc.name, err)
				}
			})
			local[net.JoinHostPort(svc.name, strconv.Itoa(portOf(svc.config)))] = g.Addr().String()
			fmt.Fprintf(stdout, "%-15s %s -> %s (status page http://%s/)\n", svc.name, g.Addr(), strings.Join(cfg.Servers, ", "), g.AdminAddr())
		case "app":
			region := strings.TrimPrefix(svc.name, "app-")
			other := map[string]string{"us": "eu", "eu": "us"}[region]
			gw, rd := local["broadcaster-"+region+":6379"], local["redis-"+region+":6379"]
			wg.Go(func() { runRegionApp(ctx, svc.name, region, other, gw, rd, stdout) })
		}
	}
	fmt.Fprintf(stdout, "\nThe services of docker-compose.yml, as local processes (configuration files from %s).\nCtrl-C stops them all.\n\n", composeDir)
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	return nil
}

// startRegionGateway starts the gateway of a compose configuration file
// (loadRegionConfig). The admin server's port is picked free and bound a moment
// later, and in between another process may take it (a connection's local port): the
// gateway is then started again with another port, up to three more times.
func startRegionGateway(ctx context.Context, fs *pflag.FlagSet, path string, local map[string]string, stderr io.Writer) (
	cfg *configuration.Config, g *gateway.Gateway, gerr chan error, flush func(), err error) {
	for range 4 {
		if cfg, err = loadRegionConfig(fs, path, local); err != nil {
			return nil, nil, nil, nil, err
		}
		g, gerr, flush, err = startDemoGateway(ctx, cfg, stderr)
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return cfg, g, gerr, flush, err
}

// errServiceMissing: a gateway's configuration names a service that did not start.
var errServiceMissing = errors.New("a backend service did not start")

// loadRegionConfig loads a gateway's compose configuration file with its servers
// mapped to the local services, listening on free loopback ports.
func loadRegionConfig(fs *pflag.FlagSet, path string, local map[string]string) (*configuration.Config, error) {
	file, err := configuration.Load(configuration.Sources{Path: path})
	if err != nil {
		return nil, err
	}
	servers := make([]string, 0, len(file.Servers))
	for _, s := range file.Servers {
		addr, ok := local[s]
		if !ok {
			return nil, fmt.Errorf("%w: %s (servers of %s)", errServiceMissing, s, path)
		}
		servers = append(servers, addr)
	}
	adminPort, err := freeLocalPort()
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(), "DYNODE_SERVERS="+strings.Join(servers, ","), "DYNODE_HOST=127.0.0.1", "DYNODE_PORT=0",
		"DYNODE_ADMIN_PORT="+strconv.Itoa(adminPort))
	return configuration.Load(configuration.Sources{Path: path, Environ: env, Flags: fs})
}

// portOf is the port a gateway configuration file listens on (as in the container).
func portOf(configFile string) int {
	if strings.Contains(configFile, "-mc") {
		return 11211
	}
	return 6379
}

func freeLocalPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// runRegionApp is docker-compose.yml's app-<region>: once a second it increments
// region:<region>:counter through its gateway and reads region:<other>:counter from
// its own region's Redis.
func runRegionApp(ctx context.Context, name, region, other, gatewayAddr, redisAddr string, stdout io.Writer) {
	gw := redis.NewClient(&redis.Options{Addr: gatewayAddr, Protocol: 2})
	defer func() { _ = gw.Close() }()
	rd := redis.NewClient(&redis.Options{Addr: redisAddr, Protocol: 2})
	defer func() { _ = rd.Close() }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		n, err := gw.Incr(ctx, "region:"+region+":counter").Result()
		seen, rerr := rd.Get(ctx, "region:"+other+":counter").Result()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			fmt.Fprintf(stdout, "%s: write through broadcaster-%s failed: %v\n", name, region, err)
		case rerr != nil && !errors.Is(rerr, redis.Nil):
			fmt.Fprintf(stdout, "%s: read from redis-%s failed: %v\n", name, region, rerr)
		default:
			fmt.Fprintf(stdout, "%s wrote region:%s:counter=%d through broadcaster-%s; reads region:%s:counter=%s from redis-%s\n",
				name, region, n, region, other, seen, region)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
