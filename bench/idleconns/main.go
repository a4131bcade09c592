// Command idleconns opens N client connections to a Redis-protocol server, checks
// each with one PING, holds them open idle for a while, then closes them. bench/run.sh
// reads the server's RSS while they are held.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "server address")
	n := flag.Int("n", 10000, "connections")
	hold := flag.Duration("hold", 5*time.Second, "how long to hold them idle")
	flag.Parse()

	conns := make([]net.Conn, 0, *n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	reply := make([]byte, 7)
	for i := range *n {
		c, err := net.Dial("tcp", *addr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "idleconns: connection %d: %v\n", i, err)
			os.Exit(1)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
			fmt.Fprintf(os.Stderr, "idleconns: ping %d: %v\n", i, err)
			os.Exit(1)
		}
		if _, err := bufio.NewReader(c).Read(reply); err != nil {
			fmt.Fprintf(os.Stderr, "idleconns: reply %d: %v\n", i, err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	time.Sleep(*hold)
}
