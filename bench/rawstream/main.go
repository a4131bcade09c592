// Command rawstream measures protocol=raw: it starts N sink backends on loopback,
// runs the gateway binary in front of them, streams SIZE bytes through it to all of
// them, and prints throughput and the gateway's CPU per MiB. With -direct it streams
// straight to one sink instead, as the baseline.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "rawstream:", err)
		os.Exit(1)
	}
}

// run does the measurement; every path out of it stops the gateway it started.
func run() error {
	bin := flag.String("gateway", "bench/out/dynode-broadcaster", "gateway binary")
	n := flag.Int("backends", 1, "sink backends")
	size := flag.Int64("size", 1<<30, "bytes to stream")
	direct := flag.Bool("direct", false, "stream straight to one sink (baseline)")
	flag.Parse()

	sinks, done, err := startSinks(*n)
	if err != nil {
		return err
	}
	target := sinks[0]
	var gw *exec.Cmd
	if !*direct {
		port, err := freePort()
		if err != nil {
			return err
		}
		gw = exec.Command(*bin)
		gw.Env = append(os.Environ(), "DYNODE_PROTOCOL=raw", "DYNODE_RAW_REPLY=none", "DYNODE_HOST=127.0.0.1",
			"DYNODE_PORT="+strconv.Itoa(port), "DYNODE_LOG_LEVEL=WARN", "DYNODE_SERVERS="+strings.Join(sinks, ","))
		gw.Stderr = os.Stderr
		if err := gw.Start(); err != nil {
			return fmt.Errorf("start gateway: %w", err)
		}
		defer func() { _ = gw.Process.Kill(); _ = gw.Wait() }()
		target = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := waitPort(target); err != nil {
			return err
		}
	}
	conn, err := net.Dial("tcp", target)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	cpu0 := cpuSeconds(gw)
	start := time.Now()
	buf := make([]byte, 256<<10)
	for sent := int64(0); sent < *size; {
		m := int(min(int64(len(buf)), *size-sent))
		if _, err := conn.Write(buf[:m]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		sent += int64(m)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	for range sinks {
		if got := <-done; got != *size {
			return fmt.Errorf("a sink got %d bytes, want %d", got, *size)
		}
	}
	elapsed := time.Since(start).Seconds()
	mib := float64(*size) / (1 << 20)
	name := fmt.Sprintf("dynode raw, %d backend(s)", *n)
	cpu := "-"
	if *direct {
		name = "direct (no gateway)"
	} else {
		cpu = fmt.Sprintf("%.2f", (cpuSeconds(gw)-cpu0)*1000/mib)
	}
	fmt.Printf("| %s | %.0f | %.0f | %s |\n", name, mib/elapsed, mib*float64(*n)/elapsed, cpu)
	return nil
}

// startSinks starts n listeners that count what each connection receives until EOF.
func startSinks(n int) (addrs []string, done chan int64, err error) {
	done = make(chan int64, n)
	var once sync.Once
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("listen: %w", err)
		}
		addrs = append(addrs, ln.Addr().String())
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					got, err := drain(c)
					if err != nil {
						once.Do(func() { fmt.Fprintln(os.Stderr, "sink:", err) })
					}
					if got > 0 { // the gateway's readiness probe opens empty sessions
						done <- got
					}
				}()
			}
		}()
	}
	return addrs, done, nil
}

func cpuSeconds(cmd *exec.Cmd) float64 {
	if cmd == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks (USER_HZ = 100 on Linux)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(addr string) error {
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s never opened", addr)
}

// drain reads c until EOF into one buffer, as a backend that reads everything would,
// and counts the bytes. (io.Discard reads in 8 KiB pieces: the sinks then spent more
// CPU on system calls than the gateway fanning out to them.)
func drain(c net.Conn) (int64, error) {
	buf := make([]byte, 1<<20)
	var got int64
	for {
		n, err := c.Read(buf)
		got += int64(n)
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}
