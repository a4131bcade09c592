package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
)

// adminClient talks to a running gateway's admin server.
type adminClient struct {
	base  string // http://host:port
	token string // admin_token, sent on POST routes
	http  *http.Client
}

// newAdminClient reaches the admin server at addr (host:port), or the one cfg
// describes (host and admin_port) when addr is empty.
func newAdminClient(cfg *configuration.Config, addr string) (*adminClient, error) {
	if addr == "" {
		if cfg.AdminPort == 0 {
			return nil, fmt.Errorf("no admin server to ask: admin_port is 0 in this configuration (give --admin HOST:PORT or -c FILE)")
		}
		host := cfg.Host
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		addr = net.JoinHostPort(host, strconv.Itoa(cfg.AdminPort))
	}
	return &adminClient{base: "http://" + addr, token: cfg.AdminToken, http: &http.Client{Timeout: 5 * time.Second}}, nil
}

// do sends a request and decodes a JSON reply into out; code is the HTTP status.
func (a *adminClient) do(ctx context.Context, method, path string, out any) (code int, err error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, nil)
	if err != nil {
		return 0, err
	}
	if method != http.MethodGet && a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: %w", method, a.base+path, err)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: %d, not JSON: %.80q", method, a.base+path, resp.StatusCode, body)
	}
	return resp.StatusCode, nil
}

// health asks /healthz (or /readyz) and succeeds on 200; the container
// HEALTHCHECK of the image runs it (the image has no shell nor curl).
func (a *adminClient) health(ctx context.Context, ready bool, stdout io.Writer) error {
	path := "/healthz"
	if ready {
		path = "/readyz"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s: HTTP %d: %s", a.base+path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	_, err = fmt.Fprint(stdout, string(body))
	return err
}
