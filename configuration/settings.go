package configuration

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// setting is one configuration key: its default (as text, as it would appear in a
// .properties file), a one-line description, and how its text is applied to a Config.
type setting struct {
	key   string
	def   string
	help  string
	apply applier
}

// applier parses a setting's text into a Config; kind names the type of value it
// takes (bool, int, bytes, seconds, choice, path, text), for flags and the reference.
type applier struct {
	kind    string
	set     func(c *Config, v string) error
	choices []string // kind choice: the accepted values
}

// entry is a setting with the title of the group it belongs to.
type entry struct {
	setting
	group string
}

// group is a titled run of settings, as the seed file groups them.
type group struct {
	title    string
	settings []setting
}

// grouped flattens groups into entries, in order.
func grouped(groups ...group) []entry {
	var out []entry
	for _, g := range groups {
		for _, s := range g.settings {
			out = append(out, entry{s, g.title})
		}
	}
	return out
}

// settings lists every key, grouped and ordered as the original's seed file (its
// keys first, in its order), then ours.
var settings = grouped(
	group{"Backend servers", []setting{
		{"servers", "127.0.0.1:6379", "backend servers, comma separated host:port, or redis://user:password@host:port for a backend's own credentials", text(func(c *Config, v string) (err error) {
			c.Servers, c.ServerCredentials, err = parseServers(v)
			return err
		})},
	}},
	group{"Auto-update (HTTP)", []setting{
		{"servers_autoupdate", "false", "load the backend list from an HTTP endpoint", boolInto(func(c *Config) *bool { return &c.ServersAutoupdate })},
		{"servers_autoupdate_method", "POST", "HTTP method of the auto-update request: GET, POST, PUT, PATCH, DELETE",
			oneOf(strings.ToUpper, func(c *Config) *string { return &c.ServersAutoupdateMethod }, "GET", "POST", "PUT", "PATCH", "DELETE")},
		{"servers_autoupdate_url", "http://example.com", "URL returning a JSON array of \"host:port\" strings", text(func(c *Config, v string) error {
			u, err := url.Parse(strings.TrimSpace(v))
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%q is not an http(s) URL", v)
			}
			c.ServersAutoupdateURL = u.String()
			return nil
		})},
		{"servers_autoupdate_parameters", "", "URL-encoded parameters sent with the auto-update request", text(func(c *Config, v string) error {
			if _, err := url.ParseQuery(v); err != nil {
				return fmt.Errorf("not URL-encoded parameters: %v", err)
			}
			c.ServersAutoupdateParameters = v
			return nil
		})},
		{"servers_autoupdate_refresh", "10", "seconds between auto-update requests; 0 = only once", durationInto(func(c *Config) *time.Duration { return &c.ServersAutoupdateRefresh })},
		{"servers_autoupdate_allow_empty", "false", "apply an empty list from the endpoint (else it is an error and the last list stays)",
			boolInto(func(c *Config) *bool { return &c.ServersAutoupdateAllowEmpty })},
	}},
	group{"Discovery by DNS and file", []setting{
		{"servers_dns", "", "DNS name whose A/AAAA records are backends (port servers_dns_port), or _service._proto.name for SRV records", text(func(c *Config, v string) error {
			c.ServersDNS = strings.TrimSuffix(strings.TrimSpace(v), ".")
			return nil
		})},
		{"servers_dns_port", "6379", "port of the backends found by A/AAAA records", intInto(1, 65535, func(c *Config) *int { return &c.ServersDNSPort })},
		{"servers_dns_refresh", "30", "seconds between DNS lookups", durationInto(func(c *Config) *time.Duration { return &c.ServersDNSRefresh })},
		{"servers_dns_server", "", "DNS server to ask, host:port; empty = the system's resolver", text(func(c *Config, v string) error {
			v = strings.TrimSpace(v)
			if v != "" {
				if _, _, err := net.SplitHostPort(v); err != nil {
					return fmt.Errorf("%q is not host:port", v)
				}
			}
			c.ServersDNSServer = v
			return nil
		})},
		{"servers_file", "", "file of backends, one host:port a line (# comments), watched for changes", text(func(c *Config, v string) error {
			c.ServersFile = strings.TrimSpace(v)
			return nil
		})},
	}},
	group{"General settings", []setting{
		{"host", "localhost", "address the gateway listens on", text(func(c *Config, v string) error {
			c.Host = strings.TrimSpace(v)
			return nil
		})},
		{"port", "9000", "port the gateway listens on", intInto(0, 65535, func(c *Config) *int { return &c.Port })},
		{"log_level", "INFO", "TRACE, DEBUG, INFO, WARN or ERROR",
			oneOf(strings.ToUpper, func(c *Config) *string { return &c.LogLevel }, "TRACE", "DEBUG", "INFO", "WARN", "ERROR")},
		{"log_format", "text", "log lines as text (log/slog's key=value) or json (one object a line)",
			oneOf(strings.ToLower, func(c *Config) *string { return &c.LogFormat }, "text", "json")},
	}},
	group{"Network settings", []setting{
		{"backlog_size", "128", "listen backlog of the client socket", intInto(1, 1<<20, func(c *Config) *int { return &c.BacklogSize })},
		{"reuse_addr", "true", "set SO_REUSEADDR on the listening socket", boolInto(func(c *Config) *bool { return &c.ReuseAddr })},
		{"discard_responses", "false", "send clients no replies at all (write-and-forget); backend replies are still read and checked", boolInto(func(c *Config) *bool { return &c.DiscardResponses })},
	}},
	group{"Timeout settings", []setting{
		{"connect_timeout", "5", "seconds to wait for a backend connection", durationInto(func(c *Config) *time.Duration { return &c.ConnectTimeout })},
		{"reconnect_delay_timeout", "10", "seconds between reconnection attempts to a backend (capped backoff starts here)", durationInto(func(c *Config) *time.Duration { return &c.ReconnectDelayTimeout })},
		{"read_idle_timeout", "60", "seconds without data after which a client is disconnected; 0 = never", durationInto(func(c *Config) *time.Duration { return &c.ReadIdleTimeout })},
	}},
	group{"Replication", []setting{
		{"protocol", "redis", "client and backend protocol: redis, memcache or raw",
			oneOf(strings.ToLower, func(c *Config) *string { return &c.Protocol }, "redis", "memcache", "raw")},
		{"write_reply", "primary", "which reply a write returns: primary, first, quorum or all",
			oneOf(strings.ToLower, func(c *Config) *string { return &c.WriteReply }, "primary", "first", "quorum", "all")},
		{"read_from", "primary", "where reads go: primary, or any in-sync backend (round robin)",
			oneOf(strings.ToLower, func(c *Config) *string { return &c.ReadFrom }, "primary", "any")},
		{"primary", "", "host:port of the primary backend; empty = the first of servers", text(func(c *Config, v string) error {
			v = strings.TrimSpace(v)
			if v != "" {
				if err := checkAddr(v); err != nil {
					return err
				}
			}
			c.Primary = v
			return nil
		})},
		{"backend_timeout", "2", "seconds a backend may leave its oldest command unanswered before its connection is reset (its reads are retried elsewhere; it is resynced when it answers again); below the read timeouts of common clients (go-redis 3 s, StackExchange.Redis 5 s)", durationInto(func(c *Config) *time.Duration { return &c.BackendTimeout })},
		{"backend_backlog_bytes", "67108864", "bytes of writes kept per backend while it is down or slow, not counting its largest request; beyond, it is marked out of sync", int64Into(1<<10, 1<<40, func(c *Config) *int64 { return &c.BackendBacklogBytes })},
		{"absolute_ttl", "true", "send relative expiries (EXPIRE, SET EX, SETEX, GETEX, RESTORE ttl...) to backends as absolute times computed once by the gateway, so a backend that applies a write late expires the key when the others do", boolInto(func(c *Config) *bool { return &c.AbsoluteTTL })},
		{"databases", "16", "Redis databases the backends have (SELECT range)", intInto(1, 1<<20, func(c *Config) *int { return &c.Databases })},
	}},
	group{"Resync and convergence checks", []setting{
		{"auto_resync", "true", "resync a backend as soon as it is out of sync and up: Redis from an in-sync backend (REPLICAOF), memcached by a flush and warm_seconds of warming", boolInto(func(c *Config) *bool { return &c.AutoResync })},
		{"resync_via", "auto", "how a resynced Redis backend reaches its source: direct (REPLICAOF its servers address), gateway (through a relay in the gateway, for backends that cannot reach each other), or auto (direct, then through the gateway if the link never comes up)",
			oneOf(strings.ToLower, func(c *Config) *string { return &c.ResyncVia }, "auto", "direct", "gateway")},
		{"warm_seconds", "0", "protocol=memcache: seconds a backend flushed by a resync serves no reads; 0 = the largest TTL clients set, at most 3600", durationInto(func(c *Config) *time.Duration { return &c.WarmPeriod })},
		{"verify_interval", "0", "seconds between rounds of the online convergence check (a sample of keys compared across in-sync backends at one point of the global order); 0 = only on POST /verify", durationInto(func(c *Config) *time.Duration { return &c.VerifyInterval })},
		{"verify_keys", "1000", "keys compared per convergence check round (SCAN moves on between rounds)", intInto(1, 1<<20, func(c *Config) *int { return &c.VerifyKeys })},
		{"verify_suspect_threshold", "1", "keys found different in one round that put a backend out of sync (and so resynced with auto_resync)", intInto(1, 1<<20, func(c *Config) *int { return &c.VerifySuspectThreshold })},
	}},
	group{"Durable backlog", []setting{
		{"backlog_dir", "", "directory keeping each down backend's backlog and the backends' identity and sync state across gateway restarts; empty = memory only", text(func(c *Config, v string) error {
			c.BacklogDir = strings.TrimSpace(v)
			return nil
		})},
		{"backlog_fsync", "everysec", "when backlog_dir files are flushed to disk: always (before each write is acknowledged), everysec or no",
			oneOf(strings.ToLower, func(c *Config) *string { return &c.BacklogFsync }, "always", "everysec", "no")},
		{"backlog_memory_bytes", "8388608", "with backlog_dir: bytes of a connected backend's queue kept in memory; past it (the backend is behind), its queue goes to a spill file until it catches up", int64Into(64<<10, 1<<40, func(c *Config) *int64 { return &c.BacklogMemoryBytes })},
	}},
	group{"Authentication", []setting{
		{"requirepass", "", "password clients must AUTH with (the default user), as Redis's requirepass; empty = no AUTH", text(func(c *Config, v string) error {
			c.RequirePass = v
			return nil
		})},
		{"users", "", "more client users, comma separated name:password (AUTH name password, HELLO 2 AUTH name password)", text(func(c *Config, v string) error {
			c.Users = map[string]string{}
			for _, part := range strings.Split(v, ",") {
				if part = strings.TrimSpace(part); part == "" {
					continue
				}
				name, pass, ok := strings.Cut(part, ":")
				if !ok || name == "" || pass == "" {
					return fmt.Errorf("a users entry is not name:password")
				}
				c.Users[name] = pass
			}
			return nil
		})},
		{"backend_username", "", "username the gateway AUTHs with on every backend (empty: the default user)", text(func(c *Config, v string) error {
			c.BackendUsername = strings.TrimSpace(v)
			return nil
		})},
		{"backend_password", "", "password the gateway AUTHs with on every backend; empty = no AUTH (a redis:// servers entry's own credentials win)", text(func(c *Config, v string) error {
			c.BackendPassword = v
			return nil
		})},
	}},
	group{"TLS", []setting{
		{"tls_port", "0", "port of the TLS listener for clients (beside port); 0 = none", intInto(0, 65535, func(c *Config) *int { return &c.TLSPort })},
		{"tls_cert_file", "", "the gateway's certificate (PEM) for TLS clients; reloaded when the file changes", pathInto(func(c *Config) *string { return &c.TLSCertFile })},
		{"tls_key_file", "", "its private key (PEM)", pathInto(func(c *Config) *string { return &c.TLSKeyFile })},
		{"tls_ca_cert_file", "", "CA certificates (PEM) client certificates must chain to", pathInto(func(c *Config) *string { return &c.TLSCACertFile })},
		{"tls_auth_clients", "yes", "client certificates: yes (required), optional (verified when given), no (not asked), as Redis's tls-auth-clients",
			oneOf(strings.ToLower, func(c *Config) *string { return &c.TLSAuthClients }, "yes", "no", "optional")},
		{"backend_tls", "false", "connect to the backends with TLS", boolInto(func(c *Config) *bool { return &c.BackendTLS })},
		{"backend_tls_ca_cert_file", "", "CA certificates (PEM) of the backends' certificates; empty = the system's", pathInto(func(c *Config) *string { return &c.BackendTLSCACertFile })},
		{"backend_tls_server_name", "", "name the backends' certificates must have; empty = each backend's host", text(func(c *Config, v string) error {
			c.BackendTLSServerName = strings.TrimSpace(v)
			return nil
		})},
		{"backend_tls_cert_file", "", "client certificate (PEM) the gateway presents to backends; reloaded when the file changes", pathInto(func(c *Config) *string { return &c.BackendTLSCertFile })},
		{"backend_tls_key_file", "", "its private key (PEM)", pathInto(func(c *Config) *string { return &c.BackendTLSKeyFile })},
	}},
	group{"Client limits", []setting{
		{"max_clients", "10000", "client connections accepted at once; 0 = no limit", intInto(0, 1<<24, func(c *Config) *int { return &c.MaxClients })},
		{"max_request_bytes", "536870912", "largest client request accepted (a single request is always admitted to a backend that keeps up, whatever backend_backlog_bytes says)", int64Into(1<<10, 4<<30, func(c *Config) *int64 { return &c.MaxRequestBytes })},
		{"client_output_limit", "67108864", "bytes of replies a client may leave unread; beyond, the gateway stops reading its commands until it reads (backpressure)", int64Into(1<<10, 1<<40, func(c *Config) *int64 { return &c.ClientOutputLimit })},
		{"client_output_timeout", "60", "seconds a client may leave its pending replies unread before it is disconnected; 0 = never", durationInto(func(c *Config) *time.Duration { return &c.ClientOutputTimeout })},
		{"client_dormant_after", "10", "seconds a plain TCP client may send nothing before its session goes dormant (no goroutine until it sends again; Linux); 0 = never", durationInto(func(c *Config) *time.Duration { return &c.ClientDormantAfter })},
	}},
	group{"Raw mode", []setting{
		{"raw_reply", "all", "protocol=raw: which backend bytes clients receive: all (the original's), primary or none",
			oneOf(strings.ToLower, func(c *Config) *string { return &c.RawReply }, "all", "primary", "none")},
		{"raw_backend_buffer_bytes", "4194304", "protocol=raw: bytes queued per backend of a client before raw_slow_backend applies (counted by the buffers holding them: a short read is kept in one of at most 4x its size, 512 bytes at least)", int64Into(ChunkFloor, 1<<34, func(c *Config) *int64 { return &c.RawBackendBufferBytes })},
		{"raw_slow_backend", "slow_client", "protocol=raw: when a backend's buffer is full, slow_client (wait for it) or cut (drop a backend whose buffer stays full for 1s, counting the bytes it misses)",
			oneOf(strings.ToLower, func(c *Config) *string { return &c.RawSlowBackend }, "slow_client", "cut")},
	}},
	group{"Operations", []setting{
		{"admin_port", "0", "port of the admin HTTP server on host (status page, /metrics, /status, /backends, /healthz, /readyz; docs/ADMIN.md); 0 = off", intInto(0, 65535, func(c *Config) *int { return &c.AdminPort })},
		{"admin_token", "", "bearer token the admin server's POST routes require (Authorization: Bearer TOKEN; 401 without it); empty = none", text(func(c *Config, v string) error {
			c.AdminToken = strings.TrimSpace(v)
			return nil
		})},
		{"admin_pprof", "false", "serve Go's profiler at /debug/pprof/ on the admin port", boolInto(func(c *Config) *bool { return &c.AdminPprof })},
		{"shutdown_timeout", "10", "seconds SIGTERM or SIGINT waits for clients' pending replies and the backends' queues before the gateway exits", durationInto(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
		{"threads", "0", "CPU threads running Go code (GOMAXPROCS); 0 = half the CPUs, at least 1", intInto(0, 1024, func(c *Config) *int { return &c.Threads })},
	}},
)

// oneOf accepts one of choices after normalizing the case with norm.
func oneOf(norm func(string) string, field func(*Config) *string, choices ...string) applier {
	return applier{kind: "choice", choices: choices, set: func(c *Config, v string) error {
		v = norm(strings.TrimSpace(v))
		if !slices.Contains(choices, v) {
			return fmt.Errorf("%q is not one of %s", v, strings.Join(choices, ", "))
		}
		*field(c) = v
		return nil
	}}
}

// text takes free text (addresses, names, lists) parsed by set.
func text(set func(c *Config, v string) error) applier { return applier{kind: "text", set: set} }

// ChunkFloor is the smallest raw_backend_buffer_bytes. (A link's empty queue takes one
// client read of any size; the bound limits what waits behind it.)
const ChunkFloor = 32 << 10

// pathInto takes a file path.
func pathInto(field func(*Config) *string) applier {
	return applier{kind: "path", set: func(c *Config, v string) error {
		*field(c) = strings.TrimSpace(v)
		return nil
	}}
}

func boolInto(field func(*Config) *bool) applier {
	return applier{kind: "bool", set: func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*field(c) = b
		return nil
	}}
}

func intInto(lo, hi int, field func(*Config) *int) applier {
	return applier{kind: "int", set: func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("%q is not a whole number from %d to %d", v, lo, hi)
		}
		*field(c) = n
		return nil
	}}
}

func int64Into(lo, hi int64, field func(*Config) *int64) applier {
	return applier{kind: "bytes", set: func(c *Config, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("%q is not a whole number from %d to %d", v, lo, hi)
		}
		*field(c) = n
		return nil
	}}
}

// durationInto accepts whole seconds, as the original does ("5"), or a Go duration
// ("1500ms", "2m").
func durationInto(field func(*Config) *time.Duration) applier {
	return applier{kind: "seconds", set: func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 && n < 1<<31 {
			*field(c) = time.Duration(n) * time.Second
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%q is not a number of seconds or a duration like 1500ms", v)
		}
		*field(c) = d
		return nil
	}}
}

// parseServers reads the servers list: host:port entries, or
// redis://[user[:password]@]host:port entries whose credentials are returned by
// host:port.
func parseServers(v string) ([]string, map[string]Credentials, error) {
	var addrs []string
	creds := map[string]Credentials{}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "://") {
			if err := checkAddr(part); err != nil {
				return nil, nil, err
			}
			addrs = append(addrs, part)
			continue
		}
		u, err := url.Parse(part)
		if err != nil || u.Scheme != "redis" || u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			return nil, nil, fmt.Errorf("a servers entry is not redis://user:password@host:port (%s)", redactURL(part))
		}
		if err := checkAddr(u.Host); err != nil {
			return nil, nil, err
		}
		addrs = append(addrs, u.Host)
		if u.User != nil {
			pass, _ := u.User.Password()
			creds[u.Host] = Credentials{Username: u.User.Username(), Password: pass}
		}
	}
	return addrs, creds, nil
}

// redactURL is a servers entry without its password, for error messages.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable entry)"
}

// checkAddr requires "host:port" with both parts, as the original does.
func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q has no valid port", a)
	}
	return nil
}
