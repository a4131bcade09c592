// Command bigvalue measures one large SET and one GET of it through a server (the
// gateway, twemproxy or Redis itself): how long each takes, and, given the PID of the
// process in between, its RSS before, at its peak while the value passes, and in the
// seconds after (how soon the memory is given back). Used by bench/values.sh.
//
//	bigvalue -addr 127.0.0.1:6380 -pid 1234 -size 64MiB
//
// prints one tab-separated line: set_seconds get_seconds base_rss_mib
// set_peak_rss_mib get_peak_rss_mib rss_after_1s rss_after_3s rss_after_5s (RSS
// figures are "-" without -pid).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dynode/dynode-broadcaster/internal/procstat"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "server to SET and GET through")
	pid := flag.Int("pid", 0, "process whose RSS is sampled (0: none)")
	size := flag.Int("size", 64<<20, "value size in bytes")
	key := flag.String("key", "bigvalue", "key to write")
	flag.Parse()
	if err := run(*addr, *pid, *size, *key); err != nil {
		log.Fatal(err)
	}
}

func run(addr string, pid, size int, key string) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	value := bytes.Repeat([]byte("v"), size)

	base := rss(pid)
	var peak atomic.Int64
	peak.Store(base)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // RSS every 2 ms while the value passes
		defer close(sampled)
		for {
			peak.Store(max(peak.Load(), rss(pid)))
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	start := time.Now()
	header := fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(key), key, size)
	bufs := net.Buffers{[]byte(header), value, []byte("\r\n")}
	if _, err := bufs.WriteTo(conn); err != nil {
		return fmt.Errorf("SET: %w", err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
		return fmt.Errorf("SET: reply %q, %v", line, err)
	}
	setTime := time.Since(start)
	setPeak := peak.Load()
	peak.Store(rss(pid))

	start = time.Now()
	if _, err := fmt.Fprintf(conn, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key); err != nil {
		return fmt.Errorf("GET: %w", err)
	}
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "$") {
		return fmt.Errorf("GET: reply %q, %v", line, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n != size {
		return fmt.Errorf("GET: %d bytes announced, want %d", n, size)
	}
	if _, err := io.CopyN(io.Discard, r, int64(n)+2); err != nil {
		return fmt.Errorf("GET: %w", err)
	}
	getTime := time.Since(start)
	close(stop)
	<-sampled

	after := make([]string, 0, 3)
	began := time.Now()
	for _, at := range []time.Duration{time.Second, 3 * time.Second, 5 * time.Second} {
		time.Sleep(time.Until(began.Add(at)))
		after = append(after, mib(pid, rss(pid)))
	}
	fmt.Printf("%.3f\t%.3f\t%s\t%s\t%s\t%s\n", setTime.Seconds(), getTime.Seconds(), mib(pid, base),
		mib(pid, setPeak), mib(pid, peak.Load()), strings.Join(after, "\t"))
	return nil
}

// rss is the resident set of pid in bytes (0 without a pid, or when unreadable).
func rss(pid int) int64 {
	if pid == 0 {
		return 0
	}
	b, _ := procstat.RSS(pid)
	return b
}

func mib(pid int, b int64) string {
	if pid == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(b)/(1<<20))
}
