package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/discovery"
)

// TLS on both sides, with Redis's setting names: clients may connect to tls_port
// (beside the plain port) with the gateway's certificate (tls_cert_file,
// tls_key_file), client certificates checked against tls_ca_cert_file as
// tls_auth_clients says; backends are reached with TLS when backend_tls=true, their
// certificates checked against backend_tls_ca_cert_file (or the system's roots) for
// backend_tls_server_name (or each backend's host), presenting backend_tls_cert_file
// if set. Certificate files are read at start (a bad file is a start-up error naming
// it) and again whenever they change; a changed file that does not load is logged
// and the previous certificate stays.

// certFiles is a certificate and its key, loaded from files and reloaded on change.
type certFiles struct {
	cert, key string
	cur       atomic.Pointer[tls.Certificate]
}

func loadCertFiles(cert, key string) (*certFiles, error) {
	c := &certFiles{cert: cert, key: key}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certFiles) load() error {
	for _, f := range []string{c.cert, c.key} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	}
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return fmt.Errorf("tls: certificate %s with key %s: %w", c.cert, c.key, err)
	}
	c.cur.Store(&pair)
	return nil
}

// watch reloads the pair whenever one of its files changes, until ctx ends.
func (c *certFiles) watch(ctx context.Context, log *slog.Logger) {
	var chans []<-chan struct{}
	for _, f := range []string{c.cert, c.key} {
		ch, err := (&discovery.File{Path: f}).Changed(ctx)
		if err != nil {
			log.Warn("certificate file not watched: changes need a restart", "file", f, "err", err)
			continue
		}
		chans = append(chans, ch)
	}
	for len(chans) > 0 {
		var changed bool
		select {
		case <-ctx.Done():
			return
		case _, changed = <-chans[0]:
		case _, changed = <-last(chans):
		}
		if !changed {
			return
		}
		time.Sleep(100 * time.Millisecond) // both files of a renewal
		if err := c.load(); err != nil {
			log.Warn("certificate files changed but do not load; keeping the previous certificate", "err", err)
			continue
		}
		log.Info("certificate reloaded", "cert", c.cert)
	}
}

func last(chans []<-chan struct{}) <-chan struct{} { return chans[len(chans)-1] }

// loadCAs reads PEM CA certificates from file.
func loadCAs(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// tlsSetup is the gateway's TLS configuration for clients and backends.
type tlsSetup struct {
	server     *tls.Config // nil: no tls_port
	serverCert *certFiles
	backend    *tls.Config // nil: backend_tls=false
	clientCert *certFiles  // the certificate presented to backends; nil: none
}

// newTLSSetup loads every file the configuration names.
func newTLSSetup(cfg *configuration.Config) (*tlsSetup, error) {
	t := &tlsSetup{}
	if cfg.TLSPort > 0 {
		cf, err := loadCertFiles(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, err
		}
		t.serverCert = cf
		t.server = &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cf.cur.Load(), nil }}
		if cfg.TLSCACertFile != "" {
			if t.server.ClientCAs, err = loadCAs(cfg.TLSCACertFile); err != nil {
				return nil, err
			}
		}
		switch cfg.TLSAuthClients {
		case "yes":
			t.server.ClientAuth = tls.RequireAndVerifyClientCert
		case "optional":
			t.server.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	if cfg.BackendTLS {
		t.backend = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.BackendTLSServerName}
		if cfg.BackendTLSCACertFile != "" {
			var err error
			if t.backend.RootCAs, err = loadCAs(cfg.BackendTLSCACertFile); err != nil {
				return nil, err
			}
		}
		if cfg.BackendTLSCertFile != "" {
			cf, err := loadCertFiles(cfg.BackendTLSCertFile, cfg.BackendTLSKeyFile)
			if err != nil {
				return nil, err
			}
			t.clientCert = cf
			t.backend.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cf.cur.Load(), nil }
		}
	}
	return t, nil
}

// watch reloads the certificates when their files change, until ctx ends.
func (t *tlsSetup) watch(ctx context.Context, log *slog.Logger) {
	for _, cf := range []*certFiles{t.serverCert, t.clientCert} {
		if cf != nil {
			go cf.watch(ctx, log)
		}
	}
}

// dialBackend connects to a backend, with TLS when backend_tls is set.
func (g *Gateway) dialBackend(ctx context.Context, addr string) (net.Conn, error) {
	cfg := g.conf()
	d := net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || g.tls == nil || g.tls.backend == nil {
		return conn, err
	}
	tc := g.tls.backend
	if tc.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		tc = tc.Clone()
		tc.ServerName = host
	}
	client := tls.Client(conn, tc)
	hctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := client.HandshakeContext(hctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return client, nil
}

// handshakeClient completes a TLS client's handshake within connect_timeout; a
// failure is logged at WARN with the client's address and closes only that client.
func (g *Gateway) handshakeClient(conn net.Conn) bool {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.conf().ConnectTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		var re tls.RecordHeaderError
		g.log.Warn("TLS handshake with a client failed", "client", conn.RemoteAddr().String(), "err", err,
			"plain_text_client", errors.As(err, &re))
		return false
	}
	return true
}
