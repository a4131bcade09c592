package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/redis/go-redis/v9"
)

// testPKI is a CA and certificates it signed, written as PEM files.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
	pool   *x509.CertPool
	serial int64
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dynode test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key, pool: x509.NewCertPool(), serial: 1}
	p.pool.AddCert(ca)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue writes a certificate for cn (a server one for 127.0.0.1 and localhost, or a
// client one) and its key; it returns the two paths and the serial.
func (p *testPKI) issue(t testing.TB, name, cn string, client bool) (certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile = p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
	certFile = p.write(t, name+".pem", "CERTIFICATE", der)
	return certFile, keyFile, p.serial
}

// TestTLSBothSides: clients reach the gateway over TLS (go-redis, redis-cli --tls)
// beside the plain port; the gateway reaches redis-servers that accept TLS only from
// clients with a certificate of the CA, presenting its own. A plain-text client on
// the TLS port fails its handshake (logged at WARN) without disturbing anyone; a
// renewed certificate file is used by the next connection; bad files are start-up
// errors naming the file.
func TestTLSBothSides(t *testing.T) {
	pki := newTestPKI(t)
	srvCert, srvKey, _ := pki.issue(t, "redis", "redis", false)
	gwCert, gwKey, firstSerial := pki.issue(t, "gateway", "gateway", false)
	clientCert, clientKey, _ := pki.issue(t, "gateway-client", "gateway-client", true)
	var backends []*redisServer
	var addrs []string
	for range 2 {
		tlsPort := freePort(t)
		r := testserver.StartRedisWith(t, freePort(t), t.TempDir(), "--tls-port", strconv.Itoa(tlsPort),
			"--tls-cert-file", srvCert, "--tls-key-file", srvKey, "--tls-ca-cert-file", pki.caFile, "--tls-auth-clients", "yes")
		backends = append(backends, r)
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(tlsPort))
	}
	tlsPort := freePort(t)
	settings := []string{"backend_tls=true", "backend_tls_ca_cert_file=" + pki.caFile,
		"backend_tls_cert_file=" + clientCert, "backend_tls_key_file=" + clientKey,
		"tls_port=" + strconv.Itoa(tlsPort), "tls_cert_file=" + gwCert, "tls_key_file=" + gwKey,
		"tls_ca_cert_file=" + pki.caFile, "tls_auth_clients=optional"}
	h := startGateway(t, addrs, settings...)
	h.backends = backends
	tlsAddr := h.gw.TLSAddr().String()

	secure := redis.NewClient(&redis.Options{Addr: tlsAddr, Protocol: 2, TLSConfig: &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1"}})
	defer secure.Close()
	if err := secure.Set(ctx, "over", "tls", 0).Err(); err != nil {
		t.Fatalf("SET over TLS: %v", err)
	}
	if v := h.client(t, 0).Get(ctx, "over").Val(); v != "tls" {
		t.Fatalf("GET on the plain port = %q", v)
	}
	cli := testserver.Require(t, "redis-cli", "redis-tools")
	out, err := exec.Command(cli, "--tls", "--cacert", pki.caFile, "-h", "127.0.0.1", "-p", strconv.Itoa(tlsPort), "INCR", "cli").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("redis-cli --tls: %v %s", err, out)
	}
	// A plain-text client on the TLS port.
	plain, err := net.Dial("tcp", tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(plain, "PING\r\n")
	_ = plain.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.ReadAll(plain)
	_ = plain.Close()
	eventually(t, func() bool { return strings.Contains(h.logs.String(), "TLS handshake with a client failed") }, "handshake failure logged")
	if err := secure.Incr(ctx, "cli").Err(); err != nil {
		t.Fatalf("TLS client after a failed handshake: %v", err)
	}
	h.converged(t)

	// Renewal: the next connection gets the new certificate.
	_, _, renewed := pki.issue(t, "gateway", "gateway renewed", false)
	serialOf := func() int64 {
		c, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1"})
		if err != nil {
			return 0
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serialOf(); s != firstSerial && s != renewed {
		t.Fatalf("serial %d", s)
	}
	eventually(t, func() bool { return serialOf() == renewed }, "renewed certificate served")

	// Bad files are start-up errors that name the file.
	for _, tc := range []struct{ settings []string }{
		{[]string{"tls_port=1", "tls_cert_file=/nonexistent/cert.pem", "tls_key_file=" + gwKey, "tls_auth_clients=no"}},
		{[]string{"tls_port=1", "tls_cert_file=" + gwCert, "tls_key_file=" + srvKey, "tls_auth_clients=no"}},
		{[]string{"backend_tls=true", "backend_tls_ca_cert_file=" + gwKey}},
	} {
		env := []string{"DYNODE_SERVERS=127.0.0.1:1"}
		for _, s := range tc.settings {
			k, v, _ := strings.Cut(s, "=")
			env = append(env, "DYNODE_"+strings.ToUpper(k)+"="+v)
		}
		cfg, err := configuration.Load(configuration.Sources{Environ: env})
		if err != nil {
			t.Fatal(err)
		}
		_, err = gateway.New(cfg, slog.New(slog.DiscardHandler))
		named := strings.Split(tc.settings[len(tc.settings)-1], "=")[1]
		if strings.HasPrefix(tc.settings[0], "tls_port") {
			named = strings.Split(tc.settings[1], "=")[1]
		}
		if err == nil || !strings.Contains(err.Error(), named) {
			t.Errorf("%v: error %v, want one naming %s", tc.settings, err, named)
		}
	}
}
