package configuration

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/spf13/pflag"
)

// TestSeedFileLoadsUnchanged loads the configuration block of the original README,
// pasted verbatim, and checks every seed default.
func TestSeedFileLoadsUnchanged(t *testing.T) {
	c, err := Load(Sources{Path: "testdata/seed.properties"})
	if err != nil {
		t.Fatalf("seed file: %v", err)
	}
	want := Config{
		Servers: []string{"127.0.0.1:6379"}, ServersAutoupdate: false, ServersAutoupdateMethod: "POST",
		ServersAutoupdateURL: "http://example.com", ServersAutoupdateParameters: "",
		ServersAutoupdateRefresh: 10 * time.Second, ServersDNSPort: 6379, ServersDNSRefresh: 30 * time.Second, TLSAuthClients: "yes", Host: "localhost", Port: 9000, LogLevel: "INFO", LogFormat: "text",
		BacklogSize: 128, ReuseAddr: true, DiscardResponses: false, ConnectTimeout: 5 * time.Second,
		ReconnectDelayTimeout: 10 * time.Second, ReadIdleTimeout: 60 * time.Second,
		Protocol: "redis", WriteReply: "primary", ReadFrom: "primary", Primary: "",
		BackendTimeout: 2 * time.Second, BackendBacklogBytes: 64 << 20, MaxRequestBytes: 512 << 20,
		ClientOutputLimit: 64 << 20, ClientOutputTimeout: 60 * time.Second, ClientDormantAfter: 10 * time.Second, AbsoluteTTL: true, AutoResync: true, ResyncVia: "auto", ShutdownTimeout: 10 * time.Second, BacklogFsync: "everysec", Users: map[string]string{}, ServerCredentials: map[string]Credentials{}, BacklogMemoryBytes: 8 << 20, VerifyKeys: 1000, VerifySuspectThreshold: 1,
		MaxClients: 10000, Databases: 16, Threads: 0, AdminPort: 0,
		RawReply: "all", RawBackendBufferBytes: 4 << 20, RawSlowBackend: "slow_client",
	}
	if got := *c; !equalConfig(got, want) {
		t.Fatalf("seed config:\n got %+v\nwant %+v", got, want)
	}
	if d := Defaults(); !equalConfig(*d, want) {
		t.Fatalf("defaults differ from the seed file:\n got %+v\nwant %+v", *d, want)
	}
	if c.PrimaryAddr() != "127.0.0.1:6379" {
		t.Fatalf("PrimaryAddr = %q", c.PrimaryAddr())
	}
}

func equalConfig(a, b Config) bool {
	if strings.Join(a.Servers, ",") != strings.Join(b.Servers, ",") {
		return false
	}
	a.Servers, b.Servers = nil, nil
	return reflect.DeepEqual(a, b)
}

func write(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFormatsAndOverrides(t *testing.T) {
	yaml := write(t, "c.yaml", "servers: [\"10.0.0.1:6379\", \"10.0.0.2:6380\"]\nport: 7000\nwrite_reply: quorum\nconnect_timeout: 1500ms\n")
	toml := write(t, "c.toml", "servers = \"10.0.0.1:6379,10.0.0.2:6380\"\nport = 7000\nwrite_reply = \"quorum\"\nconnect_timeout = \"1500ms\"\n")
	for _, p := range []string{yaml, toml} {
		c, err := Load(Sources{Path: p})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(c.Servers) != 2 || c.Port != 7000 || c.WriteReply != "quorum" || c.ConnectTimeout != 1500*time.Millisecond {
			t.Fatalf("%s: got %+v", p, c)
		}
	}

	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse([]string{"--port", "7002"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Sources{Path: yaml, Environ: []string{"DYNODE_PORT=7001", "DYNODE_DISCARD_RESPONSES=true", "HOME=/x"}, Flags: fs})
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 7002 || !c.DiscardResponses {
		t.Fatalf("flag must beat env, env must beat file: port=%d discard=%v", c.Port, c.DiscardResponses)
	}
}

func TestEveryProblemReportedWithLine(t *testing.T) {
	p := write(t, "bad.properties", strings.Join([]string{
		"# comment",
		"servers=127.0.0.1:6379, nohost",
		"port=99999",
		"write_reply=majority",
		"discard_respones=true",
		"connect_timeout=-3",
	}, "\n"))
	_, err := Load(Sources{Path: p, Environ: []string{"DYNODE_PROTOCL=raw"}})
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v, want Problems", err)
	}
	text := err.Error()
	for _, want := range []string{
		"servers (line 2):", "port (line 3):", "write_reply (line 4):",
		"discard_respones (line 5): unknown setting (did you mean discard_responses?)",
		"connect_timeout (line 6):", "DYNODE_PROTOCL: unknown setting (did you mean protocol?)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("problems do not mention %q:\n%s", want, text)
		}
	}
}

func TestCrossChecks(t *testing.T) {
	_, err := Load(Sources{Environ: []string{"DYNODE_SERVERS=", "DYNODE_PRIMARY=1.2.3.4:5"}})
	if err == nil || !strings.Contains(err.Error(), "no backend servers") || !strings.Contains(err.Error(), "primary") {
		t.Fatalf("err = %v", err)
	}
}

func TestWriteEffectiveRoundTrips(t *testing.T) {
	c, err := Load(Sources{Environ: []string{"DYNODE_SERVERS=a:1,b:2", "DYNODE_BACKEND_TIMEOUT=1500ms"}})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := c.WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	again, err := Load(Sources{Path: write(t, "eff.properties", b.String())})
	if err != nil {
		t.Fatalf("effective output does not load: %v\n%s", err, b.String())
	}
	if !equalConfig(*c, *again) {
		t.Fatalf("round trip changed config:\n%+v\n%+v", *c, *again)
	}
}

// TestCredentials: servers entries may carry a backend's own credentials; secrets
// never appear in check-config output nor in errors.
func TestCredentials(t *testing.T) {
	c, err := Load(Sources{Environ: []string{
		"DYNODE_SERVERS=redis://app:s3cret@10.0.0.1:6379,10.0.0.2:6379,redis://:p2@10.0.0.3:6380",
		"DYNODE_BACKEND_PASSWORD=c0mm0n-pw", "DYNODE_REQUIREPASS=gwpass", "DYNODE_USERS=alice:apw,bob:bpw"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Servers; len(got) != 3 || got[0] != "10.0.0.1:6379" || got[2] != "10.0.0.3:6380" {
		t.Fatalf("servers: %v", got)
	}
	for addr, want := range map[string]Credentials{"10.0.0.1:6379": {"app", "s3cret"}, "10.0.0.2:6379": {"", "c0mm0n-pw"}, "10.0.0.3:6380": {"", "p2"}} {
		if got := c.BackendCredentials(addr); got != want {
			t.Errorf("%s: %+v, want %+v", addr, got, want)
		}
	}
	if c.Users["bob"] != "bpw" || c.RequirePass != "gwpass" {
		t.Fatalf("client users: %v", c.Users)
	}
	var out strings.Builder
	if err := c.WriteEffective(&out); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret", "c0mm0n-pw", "gwpass", "apw", "bpw", "p2@"} {
		if strings.Contains(out.String(), secret) {
			t.Fatalf("check-config shows a secret (%s):\n%s", secret, out.String())
		}
	}
	_, err = Load(Sources{Environ: []string{"DYNODE_SERVERS=rediss://u:topsecret@h:1"}})
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("bad entry: %v", err)
	}
}

var update = flag.Bool("update", false, "rewrite docs/CONFIGURATION.md from the settings")

// TestReferenceDoc: docs/CONFIGURATION.md is what the settings say; -update rewrites it.
func TestReferenceDoc(t *testing.T) {
	want := Reference()
	testserver.CheckGenerated(t, "../docs/CONFIGURATION.md", want, *update, "go test ./configuration -run TestReferenceDoc -update")
	for _, s := range settings {
		if !strings.Contains(want, "| `"+s.key+"` |") {
			t.Fatalf("%s is missing from the reference", s.key)
		}
	}
}

// TestTypedFlags: flags carry their setting's kind and check values when parsed.
func TestTypedFlags(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	RegisterFlags(fs)
	for key, kind := range map[string]string{"port": "int", "connect_timeout": "seconds", "reuse_addr": "bool",
		"client_output_limit": "bytes", "protocol": "redis|memcache|raw", "servers": "text", "tls_cert_file": "path"} {
		if got := fs.Lookup(key).Value.Type(); got != kind {
			t.Errorf("--%s is %s, want %s", key, got, kind)
		}
	}
	if err := fs.Parse([]string{"--port", "70000"}); err == nil || !strings.Contains(err.Error(), "0 to 65535") {
		t.Fatalf("--port 70000: %v", err)
	}
	if err := fs.Parse([]string{"--discard_responses", "true", "--connect_timeout", "1500ms", "--port", "7000"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Sources{Flags: fs})
	if err != nil {
		t.Fatal(err)
	}
	if !c.DiscardResponses || c.ConnectTimeout != 1500*time.Millisecond || c.Port != 7000 {
		t.Fatalf("flags not applied: %+v", c)
	}
	usage := FlagUsages(fs)
	if i, j := strings.Index(usage, "General settings:"), strings.Index(usage, "--log_level"); i < 0 || j < i {
		t.Fatalf("--help is not grouped as the seed file:\n%s", usage)
	}
}
