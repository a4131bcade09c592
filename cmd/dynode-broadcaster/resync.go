package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/gateway"
)

// runResync asks a running gateway (its admin server, found from the configuration)
// to resync the backend at addr, then follows the resync until it ends.
func runResync(ctx context.Context, cfg *configuration.Config, addr string, stdout io.Writer) error {
	admin, err := newAdminClient(cfg, "")
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	var reply struct{ Status, Error string }
	code, err := admin.do(ctx, http.MethodPost, "/backends/"+url.PathEscape(addr)+"/resync", &reply)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	if code != http.StatusAccepted {
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
		p, err := resyncProgress(ctx, admin, addr)
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
func resyncProgress(ctx context.Context, admin *adminClient, addr string) (*gateway.ResyncProgress, error) {
	var backends []gateway.BackendStatus
	if _, err := admin.do(ctx, http.MethodGet, "/backends", &backends); err != nil {
		return nil, fmt.Errorf("resync: %w", err)
	}
	for _, b := range backends {
		if b.Addr == addr {
			return b.Resync, nil
		}
	}
	return nil, fmt.Errorf("resync: %s is not a backend of the gateway at %s", addr, admin.base)
}
