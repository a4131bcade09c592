// Command slowlink relays TCP connections from a local port to a server with a
// fixed latency added to each direction, for benchmarks of a gateway whose backend
// is in another zone or region (loopback has no latency of its own). It runs
// Shopify's toxiproxy in process with a latency toxic on both streams, until it is
// interrupted.
//
//	slowlink -listen 127.0.0.1:7001 -upstream 127.0.0.1:6379 -latency 5ms
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := flag.String("upstream", "", "server to relay to (host:port)")
	latency := flag.Duration("latency", 5*time.Millisecond, "latency added to each direction (whole milliseconds)")
	flag.Parse()
	if *upstream == "" {
		log.Fatal("slowlink: -upstream is required")
	}
	if *latency%time.Millisecond != 0 {
		log.Fatalf("slowlink: -latency %v is not whole milliseconds (toxiproxy's unit)", *latency)
	}
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "slowlink", *listen, *upstream)
	if err := p.Start(); err != nil {
		log.Fatalf("slowlink: %v", err)
	}
	for _, stream := range []string{"upstream", "downstream"} {
		toxic := fmt.Sprintf(`{"name":"delay-%s","type":"latency","stream":%q,"attributes":{"latency":%d}}`,
			stream, stream, latency.Milliseconds())
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
			log.Fatalf("slowlink: %v", err)
		}
	}
	fmt.Println(p.Listen) // the address, for scripts that asked for port 0
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	p.Stop()
}
