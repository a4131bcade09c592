package configuration

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/magiconair/properties"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Config is the gateway's effective configuration. Field names follow the keys of the
// original Dynode Broadcaster (servers_autoupdate_url -> ServersAutoupdateURL).
type Config struct {
	Servers                     []string      // static backend list, host:port
	ServersAutoupdate           bool          // load backends from an HTTP endpoint
	ServersAutoupdateMethod     string        // GET, POST, PUT, PATCH or DELETE
	ServersAutoupdateURL        string        // endpoint returning a JSON array of addresses
	ServersAutoupdateParameters string        // URL-encoded request parameters
	ServersAutoupdateRefresh    time.Duration // 0 = fetch once
	ServersAutoupdateAllowEmpty bool          // apply an empty fetched list
	ServersDNS                  string        // name (A/AAAA) or _service._proto.name (SRV)
	ServersDNSPort              int           // port of A/AAAA backends
	ServersDNSRefresh           time.Duration // between DNS lookups
	ServersDNSServer            string        // DNS server host:port; empty: the system's
	ServersFile                 string        // file of host:port lines, watched
	TLSPort                     int           // client TLS listener; 0 = none
	TLSCertFile, TLSKeyFile     string        // the gateway's certificate for clients
	TLSCACertFile               string        // CA that client certificates must chain to
	TLSAuthClients              string        // yes, no or optional: client certificates
	BackendTLS                  bool          // connect to backends with TLS
	BackendTLSCACertFile        string        // CA of the backends' certificates; empty: the system's
	BackendTLSServerName        string        // name checked in backend certificates; empty: the host
	BackendTLSCertFile          string        // client certificate presented to backends
	BackendTLSKeyFile           string
	Host                        string        // listen host
	Port                        int           // listen port
	LogLevel                    string        // TRACE, DEBUG, INFO, WARN or ERROR
	BacklogSize                 int           // listen backlog
	ReuseAddr                   bool          // SO_REUSEADDR on the listener
	DiscardResponses            bool          // write-and-forget: clients get no replies
	ConnectTimeout              time.Duration // backend dial timeout
	ReconnectDelayTimeout       time.Duration // first delay between reconnection attempts
	ReadIdleTimeout             time.Duration // idle client timeout; 0 = never

	Protocol            string            // redis, memcache or raw
	WriteReply          string            // primary, first, quorum or all
	ReadFrom            string            // primary or any
	Primary             string            // primary backend; "" = Servers[0]
	BackendTimeout      time.Duration     // longest wait for a backend reply
	BackendBacklogBytes int64             // queued write bytes per backend before out of sync
	MaxRequestBytes     int64             // largest client request
	AbsoluteTTL         bool              // relative expiries sent as absolute times
	ClientOutputLimit   int64             // unread reply bytes per client before its reading pauses
	ClientOutputTimeout time.Duration     // longest a client may leave replies unread
	ClientDormantAfter  time.Duration     // a client idle this long has its session go dormant; 0: never
	AutoResync          bool              // resync a backend as soon as it is out of sync
	ResyncVia           string            // auto, direct or gateway: how a resync's target reaches its source
	ShutdownTimeout     time.Duration     // longest a graceful shutdown waits for replies and backend queues
	BacklogDir          string            // directory of the durable backlogs and state; "" = memory only
	RequirePass         string            // password of the default user clients AUTH with; "" = none
	Users               map[string]string // more client users: name -> password
	BackendUsername     string            // AUTH username toward every backend ("" = default)
	BackendPassword     string            // AUTH password toward every backend ("" = no AUTH)
	// ServerCredentials are per-backend credentials from servers entries written
	// redis://user:pass@host:port, by host:port; they override the two above.
	ServerCredentials      map[string]Credentials
	VerifyInterval         time.Duration // seconds between convergence check rounds; 0 = only on POST /verify
	VerifyKeys             int           // keys compared per round
	VerifySuspectThreshold int           // keys differing in a round that put a backend out of sync
	BacklogFsync           string        // always, everysec or no
	BacklogMemoryBytes     int64         // with BacklogDir: a connected backend's queue in memory before it spills
	WarmPeriod             time.Duration // memcached: how long a flushed backend warms; 0 = largest TTL seen, at most 1 h
	MaxClients             int           // 0 = unlimited
	Threads                int           // GOMAXPROCS; 0 = half the CPUs, at least 1
	AdminPort              int           // admin HTTP port; 0 = off
	AdminToken             string        // bearer token POST admin routes require; "" = none
	AdminPprof             bool          // serve /debug/pprof on the admin port
	LogFormat              string        // text or json

	RawReply              string // protocol=raw: all, primary or none
	RawBackendBufferBytes int64  // protocol=raw: queued bytes per backend of a client
	RawSlowBackend        string // protocol=raw: slow_client or cut
	Databases             int    // Redis databases per backend
}

// Credentials are a username (empty: the default user) and a password.
type Credentials struct{ Username, Password string }

// BackendCredentials are the credentials the gateway AUTHs with on the backend at
// addr; an empty Password means no AUTH.
func (c *Config) BackendCredentials(addr string) Credentials {
	if cr, ok := c.ServerCredentials[addr]; ok {
		return cr
	}
	return Credentials{Username: c.BackendUsername, Password: c.BackendPassword}
}

// EnvPrefix is the prefix of environment variables that override settings.
const EnvPrefix = "DYNODE_"

// Problem is one invalid setting.
type Problem struct {
	Key    string // the setting's key, or the environment variable / file
	Line   int    // line in the configuration file, 0 when unknown or not from the file
	Reason string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", p.Key, p.Line, p.Reason)
	}
	return fmt.Sprintf("%s: %s", p.Key, p.Reason)
}

// Problems is every problem found in a configuration; Load returns it as its error.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return "invalid configuration:\n  " + strings.Join(lines, "\n  ")
}

// Sources are where settings come from, later ones winning: defaults, the file at
// Path (if any), environment variables DYNODE_<KEY> from Environ, then Flags.
type Sources struct {
	Path    string
	Environ []string       // os.Environ() in production
	Flags   *pflag.FlagSet // flags registered by RegisterFlags; may be nil
}

// RegisterFlags adds a --<key> flag for every setting to fs, typed as the setting
// (a value is checked when the flag is parsed).
func RegisterFlags(fs *pflag.FlagSet) {
	for _, s := range settings {
		// Bool flags take their value as the others do (--reuse_addr false), as they
		// did when every flag was text.
		fs.Var(&flagValue{text: s.def, apply: s.apply}, s.key, s.help)
	}
}

// flagValue is a setting's flag: its text, checked by the setting's parser.
type flagValue struct {
	text  string
	apply applier
}

func (f *flagValue) String() string { return f.text }

// Type is the kind of value shown by --help: bool, int, bytes, seconds, ...
func (f *flagValue) Type() string {
	if f.apply.kind == "choice" {
		return strings.Join(f.apply.choices, "|")
	}
	return f.apply.kind
}

func (f *flagValue) Set(v string) error {
	if err := f.apply.set(&Config{}, v); err != nil {
		return err
	}
	f.text = v
	return nil
}

// OtherFlagUsages is the --help text of the flags in fs that are not settings.
func OtherFlagUsages(fs *pflag.FlagSet) string {
	other := pflag.NewFlagSet("other", pflag.ContinueOnError)
	fs.VisitAll(func(f *pflag.Flag) {
		if !isKey(f.Name) {
			other.AddFlag(f)
		}
	})
	return other.FlagUsagesWrapped(100)
}

// FlagUsages is the --help text of the settings' flags in fs, under the titles of
// their groups, as the seed file groups them.
func FlagUsages(fs *pflag.FlagSet) string {
	var b strings.Builder
	var part *pflag.FlagSet
	title := ""
	flush := func() {
		if part != nil {
			b.WriteString("\n" + title + ":\n" + part.FlagUsagesWrapped(100))
		}
	}
	for _, s := range settings {
		if s.group != title || part == nil {
			flush()
			title, part = s.group, pflag.NewFlagSet(s.group, pflag.ContinueOnError)
			part.SortFlags = false
		}
		if f := fs.Lookup(s.key); f != nil {
			part.AddFlag(f)
		}
	}
	flush()
	return b.String()
}

// Defaults returns the configuration with every key at its default.
func Defaults() *Config {
	c, err := Load(Sources{})
	if err != nil {
		panic("configuration: defaults do not validate: " + err.Error())
	}
	return c
}

// Load reads, merges and validates the settings. The error is a Problems listing
// every invalid key, or an error reading the file.
func Load(src Sources) (*Config, error) {
	v := viper.NewWithOptions(viper.WithCodecRegistry(codecs()))
	for _, s := range settings {
		v.SetDefault(s.key, s.def)
	}
	var problems Problems
	var fileText []byte
	if src.Path != "" {
		b, err := os.ReadFile(src.Path)
		if err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
		fileText = b
		v.SetConfigType(configType(src.Path))
		if err := v.ReadConfig(strings.NewReader(string(b))); err != nil {
			return nil, fmt.Errorf("configuration: parse %s: %w", src.Path, err)
		}
	}
	problems = append(problems, envOverrides(v, src.Environ)...)
	if src.Flags != nil {
		src.Flags.VisitAll(func(f *pflag.Flag) {
			if f.Changed && isKey(f.Name) {
				v.Set(f.Name, f.Value.String())
			}
		})
	}
	for _, k := range v.AllKeys() {
		if !isKey(k) {
			problems = append(problems, Problem{Key: k, Line: lineOf(fileText, k), Reason: "unknown setting" + suggest(k)})
		}
	}
	c := &Config{}
	for _, s := range settings {
		if err := s.apply.set(c, valueText(v.Get(s.key))); err != nil {
			problems = append(problems, Problem{Key: s.key, Line: lineOf(fileText, s.key), Reason: err.Error()})
		}
	}
	for _, p := range c.crossCheck() {
		p.Line = lineOf(fileText, p.Key)
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return c, nil
}

// Discovers reports whether backends come from a source besides the static servers
// (servers_autoupdate, servers_dns, servers_file).
func (c *Config) Discovers() bool {
	return c.ServersAutoupdate || c.ServersDNS != "" || c.ServersFile != ""
}

// crossCheck validates relations between keys.
func (c *Config) crossCheck() Problems {
	var ps Problems
	if len(c.Servers) == 0 && !c.Discovers() {
		ps = append(ps, Problem{Key: "servers", Reason: "no backend servers: set servers, servers_autoupdate=true, servers_dns or servers_file"})
	}
	if c.TLSPort > 0 && (c.TLSCertFile == "" || c.TLSKeyFile == "") {
		ps = append(ps, Problem{Key: "tls_port", Reason: "needs tls_cert_file and tls_key_file"})
	}
	if c.TLSPort > 0 && c.TLSAuthClients != "no" && c.TLSCACertFile == "" {
		ps = append(ps, Problem{Key: "tls_auth_clients", Reason: "verifying client certificates (yes or optional) needs tls_ca_cert_file; set tls_auth_clients=no to accept any client"})
	}
	if (c.BackendTLSCertFile == "") != (c.BackendTLSKeyFile == "") {
		ps = append(ps, Problem{Key: "backend_tls_cert_file", Reason: "backend_tls_cert_file and backend_tls_key_file go together"})
	}
	if c.Primary != "" && !c.Discovers() && !slices.Contains(c.Servers, c.Primary) {
		ps = append(ps, Problem{Key: "primary", Reason: fmt.Sprintf("%q is not one of servers", c.Primary)})
	}
	return ps
}

// envOverrides applies DYNODE_<KEY> variables and reports unknown ones.
func envOverrides(v *viper.Viper, environ []string) Problems {
	var ps Problems
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		key := strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
		if !isKey(key) {
			ps = append(ps, Problem{Key: name, Reason: "unknown setting" + suggest(key)})
			continue
		}
		v.Set(key, val)
	}
	return ps
}

// WriteEffective writes the configuration as a .properties file that Load accepts.
func (c *Config) WriteEffective(w io.Writer) error {
	vals := c.values()
	for _, s := range settings {
		if _, err := fmt.Fprintf(w, "# %s\n%s=%s\n", s.help, s.key, vals[s.key]); err != nil {
			return err
		}
	}
	return nil
}

// values renders each setting as text.
func (c *Config) values() map[string]string {
	secs := func(d time.Duration) string {
		if d%time.Second == 0 {
			return fmt.Sprint(int64(d / time.Second))
		}
		return d.String()
	}
	return map[string]string{
		"servers": strings.Join(c.Servers, ", "), "servers_autoupdate": fmt.Sprint(c.ServersAutoupdate),
		"servers_autoupdate_method": c.ServersAutoupdateMethod, "servers_autoupdate_url": c.ServersAutoupdateURL,
		"servers_autoupdate_parameters":  c.ServersAutoupdateParameters,
		"servers_autoupdate_refresh":     secs(c.ServersAutoupdateRefresh),
		"servers_autoupdate_allow_empty": fmt.Sprint(c.ServersAutoupdateAllowEmpty), "servers_dns": c.ServersDNS,
		"servers_dns_port": fmt.Sprint(c.ServersDNSPort), "servers_dns_refresh": secs(c.ServersDNSRefresh),
		"servers_dns_server": c.ServersDNSServer, "servers_file": c.ServersFile,
		"tls_port": fmt.Sprint(c.TLSPort), "tls_cert_file": c.TLSCertFile, "tls_key_file": c.TLSKeyFile,
		"tls_ca_cert_file": c.TLSCACertFile, "tls_auth_clients": c.TLSAuthClients, "backend_tls": fmt.Sprint(c.BackendTLS),
		"backend_tls_ca_cert_file": c.BackendTLSCACertFile, "backend_tls_server_name": c.BackendTLSServerName,
		"backend_tls_cert_file": c.BackendTLSCertFile, "backend_tls_key_file": c.BackendTLSKeyFile,
		"host": c.Host, "port": fmt.Sprint(c.Port), "log_level": c.LogLevel,
		"backlog_size": fmt.Sprint(c.BacklogSize), "reuse_addr": fmt.Sprint(c.ReuseAddr),
		"discard_responses": fmt.Sprint(c.DiscardResponses), "connect_timeout": secs(c.ConnectTimeout),
		"reconnect_delay_timeout": secs(c.ReconnectDelayTimeout), "read_idle_timeout": secs(c.ReadIdleTimeout),
		"protocol": c.Protocol, "write_reply": c.WriteReply, "read_from": c.ReadFrom, "primary": c.Primary,
		"backend_timeout": secs(c.BackendTimeout), "backend_backlog_bytes": fmt.Sprint(c.BackendBacklogBytes),
		"max_request_bytes": fmt.Sprint(c.MaxRequestBytes), "client_output_limit": fmt.Sprint(c.ClientOutputLimit), "absolute_ttl": fmt.Sprint(c.AbsoluteTTL),
		"auto_resync": fmt.Sprint(c.AutoResync), "resync_via": c.ResyncVia, "shutdown_timeout": secs(c.ShutdownTimeout),
		"backlog_dir": c.BacklogDir, "requirepass": masked(c.RequirePass), "users": maskedUsers(c.Users),
		"backend_username": c.BackendUsername, "backend_password": masked(c.BackendPassword), "backlog_fsync": c.BacklogFsync, "backlog_memory_bytes": fmt.Sprint(c.BacklogMemoryBytes),
		"verify_interval": secs(c.VerifyInterval), "verify_keys": fmt.Sprint(c.VerifyKeys), "verify_suspect_threshold": fmt.Sprint(c.VerifySuspectThreshold), "warm_seconds": secs(c.WarmPeriod),
		"client_output_timeout": secs(c.ClientOutputTimeout), "max_clients": fmt.Sprint(c.MaxClients),
		"client_dormant_after": secs(c.ClientDormantAfter),
		"raw_reply":            c.RawReply, "raw_backend_buffer_bytes": fmt.Sprint(c.RawBackendBufferBytes),
		"raw_slow_backend": c.RawSlowBackend,
		"admin_port":       fmt.Sprint(c.AdminPort), "admin_token": masked(c.AdminToken), "admin_pprof": fmt.Sprint(c.AdminPprof), "log_format": c.LogFormat, "threads": fmt.Sprint(c.Threads), "databases": fmt.Sprint(c.Databases),
	}
}

// masked shows whether a secret is set, never the secret.
func masked(secret string) string {
	if secret == "" {
		return ""
	}
	return "(set)"
}

// maskedUsers lists user names, without their passwords.
func maskedUsers(users map[string]string) string {
	names := make([]string, 0, len(users))
	for name := range users {
		names = append(names, name+":(set)")
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// PrimaryAddr is the primary backend: Primary, or the first server.
func (c *Config) PrimaryAddr() string {
	if c.Primary != "" || len(c.Servers) == 0 {
		return c.Primary
	}
	return c.Servers[0]
}

// EffectiveThreads is the GOMAXPROCS to run with for a machine of numCPU CPUs. The
// default leaves half the CPUs to the kernel's network stack and to co-located
// clients and backends: on a 2-CPU machine one thread beats two (measured in
// bench/RESULTS.md), as it avoids cross-thread wake-ups on every command.
func (c *Config) EffectiveThreads(numCPU int) int {
	if c.Threads > 0 {
		return c.Threads
	}
	return max(1, numCPU/2)
}

// ListenAddr is host:port of the client listener.
func (c *Config) ListenAddr() string {
	return fmt.Sprintf("%s:%d", c.Host, c.Port)
}

func isKey(k string) bool {
	for _, s := range settings {
		if s.key == k {
			return true
		}
	}
	return false
}

// suggest names the known key closest to an unknown one, for typos.
func suggest(k string) string {
	best, bestDist := "", 4
	for _, s := range settings {
		if d := editDistance(k, s.key); d < bestDist {
			best, bestDist = s.key, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// valueText turns a value from any source into the text the settings parse: lists
// (YAML/TOML arrays) become comma-separated.
func valueText(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ",")
	case []string:
		return strings.Join(t, ",")
	}
	return fmt.Sprint(v)
}

// lineOf finds the line of a key in a configuration file (1-based), 0 if absent.
func lineOf(text []byte, key string) int {
	for i, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, key)
		if !ok {
			rest, ok = strings.CutPrefix(line, `"`+key+`"`)
		}
		if ok && (rest == "" || strings.ContainsAny(rest[:1], "=: \t")) {
			return i + 1
		}
	}
	return 0
}

// configType picks the file format from the extension; no or unknown extension means
// the original's .properties format.
func configType(path string) string {
	switch ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), ".")); ext {
	case "yaml", "yml", "toml", "json":
		return ext
	}
	return "properties"
}

// codecs is viper's codec registry plus Java .properties, which viper no longer ships.
func codecs() viper.CodecRegistry {
	r := viper.NewCodecRegistry()
	for _, name := range []string{"properties", "props", "prop"} {
		if err := r.RegisterCodec(name, propertiesCodec{}); err != nil {
			panic(err)
		}
	}
	return r
}

// propertiesCodec reads Java .properties files (magiconair/properties) without
// ${...} expansion: values are taken literally, as the original does.
type propertiesCodec struct{}

func (propertiesCodec) Decode(b []byte, out map[string]any) error {
	l := &properties.Loader{Encoding: properties.UTF8, DisableExpansion: true}
	p, err := l.LoadBytes(b)
	if err != nil {
		return err
	}
	for _, k := range p.Keys() {
		out[strings.ToLower(k)] = p.GetString(k, "")
	}
	return nil
}

func (propertiesCodec) Encode(map[string]any) ([]byte, error) {
	return nil, errors.New("configuration: writing .properties is not supported")
}
