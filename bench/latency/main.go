// Command latency measures one client's unpipelined request latency against several
// Redis-protocol targets in alternating rounds, with exact percentiles from every
// sample (redis-benchmark reports histogram steps of 16 us at 0.1 ms). Each round
// runs every target in turn, starting with a different one, on one connection
// each, and the table gives each target's median over the rounds of p50, p95 and
// p99, and how often its p95 and p99 were at or below the first target's in the
// same round.
//
//	latency -targets twemproxy=127.0.0.1:22121,dynode=127.0.0.1:6380 -rounds 7
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"slices"
	"strings"
	"time"
)

type target struct{ name, addr string }

func main() {
	targets := flag.String("targets", "", "name=host:port,... (the first is the one the others are compared with)")
	rounds := flag.Int("rounds", 5, "rounds")
	n := flag.Int("n", 20000, "requests per target, test and round")
	tests := flag.String("tests", "set,get", "set and/or get")
	flag.Parse()
	var ts []target
	for _, t := range strings.Split(*targets, ",") {
		name, addr, ok := strings.Cut(t, "=")
		if !ok {
			log.Fatalf("latency: target %q is not name=host:port", t)
		}
		ts = append(ts, target{name, addr})
	}
	if len(ts) == 0 {
		log.Fatal("latency: -targets is required")
	}
	for _, test := range strings.Split(*tests, ",") {
		// pct[target][round] = {p50, p95, p99} in microseconds
		pct := make([][][3]float64, len(ts))
		for r := range *rounds {
			for k := range ts {
				i := (k + r) % len(ts)
				p, err := measure(ts[i].addr, test, *n)
				if err != nil {
					log.Fatalf("latency: %s %s: %v", ts[i].name, test, err)
				}
				pct[i] = append(pct[i], p)
			}
		}
		fmt.Printf("%s, one client unpipelined, %d requests per round, %d rounds (us):\n\n", strings.ToUpper(test), *n, *rounds)
		fmt.Println("| target | p50 | p95 | p99 | p95 at or below the first's | p99 at or below |")
		fmt.Println("|---|---|---|---|---|---|")
		for i, t := range ts {
			var at95, at99 int
			for r := range *rounds {
				if pct[i][r][1] <= pct[0][r][1] {
					at95++
				}
				if pct[i][r][2] <= pct[0][r][2] {
					at99++
				}
			}
			fmt.Printf("| %s | %.1f | %.1f | %.1f | %d of %d | %d of %d |\n", t.name,
				median(pct[i], 0), median(pct[i], 1), median(pct[i], 2), at95, *rounds, at99, *rounds)
		}
		fmt.Println()
	}
}

// measure sends n requests one at a time and returns their p50, p95 and p99 in
// microseconds.
func measure(addr, test string, n int) ([3]float64, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return [3]float64{}, err
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	samples := make([]time.Duration, 0, n)
	for i := range n + n/10 { // the first tenth warms up
		key := fmt.Sprintf("lat:%d", i%1000)
		var req string
		if test == "get" {
			req = fmt.Sprintf("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key)
		} else {
			req = fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$3\r\nxyz\r\n", len(key), key)
		}
		start := time.Now()
		if _, err := conn.Write([]byte(req)); err != nil {
			return [3]float64{}, err
		}
		if err := skipReply(r); err != nil {
			return [3]float64{}, err
		}
		if i >= n/10 {
			samples = append(samples, time.Since(start))
		}
	}
	slices.Sort(samples)
	at := func(q float64) float64 { return float64(samples[int(q*float64(len(samples)-1))].Nanoseconds()) / 1e3 }
	return [3]float64{at(0.50), at(0.95), at(0.99)}, nil
}

// skipReply reads one simple reply: a status, an error, an integer, or a bulk string.
func skipReply(r *bufio.Reader) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	switch line[0] {
	case '+', ':':
		return nil
	case '-':
		return fmt.Errorf("error reply %q", strings.TrimSpace(line))
	case '$':
		var size int
		if _, err := fmt.Sscanf(line, "$%d\r\n", &size); err != nil {
			return fmt.Errorf("bad bulk header %q", line)
		}
		if size < 0 {
			return nil
		}
		_, err := r.Discard(size + 2)
		return err
	}
	return fmt.Errorf("unexpected reply %q", line)
}

// median is the median over the rounds of percentile k.
func median(rounds [][3]float64, k int) float64 {
	v := make([]float64, len(rounds))
	for i, p := range rounds {
		v[i] = p[k]
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
