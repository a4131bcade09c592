package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/gateway"
)

// runResync asks a running gateway (its admin server, found from the configuration)
// to resync the backend at addr, then follows the resync until it ends.
func runResync(ctx context.Context, cfg *configuration.Config, addr string, stdout io.Writer) error {
	if cfg.AdminPort == 0 {
		return fmt.Errorf("resync: admin_port is 0 in this configuration: the gateway has no admin server to ask")
	}
	host := cfg.Host
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	base := "http://" + net.JoinHostPort(host, strconv.Itoa(cfg.AdminPort))
	client := &http.Client{Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/backends/"+url.PathEscape(addr)+"/resync", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	var reply struct{ Status, Error string }
	err = json.NewDecoder(resp.Body).Decode(&reply)
	_ = resp.Body.Close()
	if err != nil {
		return fmt.Errorf("resync: reply from %s: %w", base, err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("resync of %s refused: %s", addr, reply.Error)
	}
	fmt.Fprintf(stdout, "resync of %s started\n", addr)
	started := time.Now()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		p, err := resyncProgress(ctx, client, base, addr)
		if err != nil {
			return err
		}
		if p == nil || p.Started.Before(started.Add(-time.Second)) {
			continue // not the one just started yet
		}
		line := p.Step
		if p.Step == "copying" {
			line = fmt.Sprintf("copying from %s: %d bytes", p.Source, p.Bytes)
			if p.TotalBytes > 0 {
				line += fmt.Sprintf(" of %d", p.TotalBytes)
			}
		}
		if line != last {
			fmt.Fprintln(stdout, line)
			last = line
		}
		switch p.Step {
		case "done":
			fmt.Fprintf(stdout, "%s is in sync (took %v)\n", addr, p.Finished.Sub(p.Started).Round(time.Millisecond))
			return nil
		case "failed":
			return fmt.Errorf("resync of %s failed: %s", addr, p.Error)
		}
	}
}

// resyncProgress reads the backend's resync from /backends.
func resyncProgress(ctx context.Context, client *http.Client, base, addr string) (*gateway.ResyncProgress, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/backends", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("resync: %w", err)
	}
	defer resp.Body.Close()
	var backends []gateway.BackendStatus
	if err := json.NewDecoder(resp.Body).Decode(&backends); err != nil {
		return nil, fmt.Errorf("resync: /backends: %w", err)
	}
	for _, b := range backends {
		if b.Addr == addr {
			return b.Resync, nil
		}
	}
	return nil, fmt.Errorf("resync: %s is not a backend of the gateway at %s", addr, base)
}
