// Command mcload is a small memcached load generator for values of a chosen size,
// which memcslap cannot vary: each of -clients connections sends one request at a
// time (set or get of one key, text protocol) until -n requests are done in all.
// Used by bench/memcache.sh.
//
//	mcload -addr 127.0.0.1:11211 -test get -size 102400 -clients 10 -n 5000
//
// prints one tab-separated line: ops/s, p50 ms, p99 ms.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:11211", "memcached or proxy address")
	test := flag.String("test", "set", "set or get")
	size := flag.Int("size", 16384, "value size in bytes")
	clients := flag.Int("clients", 10, "connections, each with one request in flight")
	n := flag.Int("n", 10000, "requests in all")
	flag.Parse()
	if err := run(*addr, *test, *size, *clients, *n); err != nil {
		log.Fatal(err)
	}
}

func run(addr, test string, size, clients, n int) error {
	const key = "mcload"
	value := bytes.Repeat([]byte("v"), size)
	setReq := append(fmt.Appendf(nil, "set %s 0 0 %d\r\n", key, size), append(value, "\r\n"...)...)
	getReq := []byte("get " + key + "\r\n")
	if err := once(addr, setReq, "STORED\r\n"); err != nil { // the key GETs read
		return err
	}
	req := setReq
	if test == "get" {
		req = getReq
	}
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			r := bufio.NewReaderSize(conn, 64<<10)
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				if _, err := conn.Write(req); err != nil {
					errs <- err
					return
				}
				if err := readReply(r, test, size); err != nil {
					errs <- err
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))]) / 1e6 }
	fmt.Printf("%.2f\t%.3f\t%.3f\n", float64(len(all))/elapsed.Seconds(), pct(0.50), pct(0.99))
	return nil
}

// readReply reads one set or get reply.
func readReply(r *bufio.Reader, test string, size int) error {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if test == "set" {
		if string(line) != "STORED\r\n" {
			return fmt.Errorf("set: %q", line)
		}
		return nil
	}
	fields := bytes.Fields(line)
	if len(fields) != 4 || string(fields[0]) != "VALUE" {
		return fmt.Errorf("get: %q", line)
	}
	if got, _ := strconv.Atoi(string(fields[3])); got != size {
		return fmt.Errorf("get: %d bytes, want %d", got, size)
	}
	if _, err := r.Discard(size + 2); err != nil {
		return err
	}
	end, err := r.ReadSlice('\n')
	if err != nil || string(end) != "END\r\n" {
		return fmt.Errorf("get: %q after the value, %v", end, err)
	}
	return nil
}

// once sends req on a new connection and checks the reply line.
func once(addr string, req []byte, want string) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write(req); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && err != io.EOF || line != want {
		return fmt.Errorf("setting the key: %q, %v", line, err)
	}
	return nil
}
