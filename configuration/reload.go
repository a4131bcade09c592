package configuration

// Change is one setting whose value differs between two configurations.
type Change struct {
	Key, Old, New string // values as check-config prints them (secrets masked)
	// Live: the running gateway applies it (to new connections for per-connection
	// limits); otherwise it needs a restart and the old value stays in force.
	Live bool
}

// restartOnly are the settings a running gateway cannot change, each with how to
// keep the running value: listening sockets, the protocol, the process, files opened
// at start, the backends' credentials and the primary.
var restartOnly = []struct {
	key  string
	keep func(dst, running *Config)
}{
	{"host", func(d, r *Config) { d.Host = r.Host }},
	{"port", func(d, r *Config) { d.Port = r.Port }},
	{"protocol", func(d, r *Config) { d.Protocol = r.Protocol }},
	{"admin_port", func(d, r *Config) { d.AdminPort = r.AdminPort }},
	{"admin_pprof", func(d, r *Config) { d.AdminPprof = r.AdminPprof }},
	{"log_format", func(d, r *Config) { d.LogFormat = r.LogFormat }},
	{"backlog_size", func(d, r *Config) { d.BacklogSize = r.BacklogSize }},
	{"reuse_addr", func(d, r *Config) { d.ReuseAddr = r.ReuseAddr }},
	{"threads", func(d, r *Config) { d.Threads = r.Threads }},
	{"databases", func(d, r *Config) { d.Databases = r.Databases }},
	{"primary", func(d, r *Config) { d.Primary = r.Primary }},
	{"backlog_dir", func(d, r *Config) { d.BacklogDir = r.BacklogDir }},
	{"backlog_fsync", func(d, r *Config) { d.BacklogFsync = r.BacklogFsync }},
	{"backlog_memory_bytes", func(d, r *Config) { d.BacklogMemoryBytes = r.BacklogMemoryBytes }},
	{"requirepass", func(d, r *Config) { d.RequirePass = r.RequirePass }},
	{"users", func(d, r *Config) { d.Users = r.Users }},
	{"backend_username", func(d, r *Config) { d.BackendUsername = r.BackendUsername }},
	{"backend_password", func(d, r *Config) { d.BackendPassword = r.BackendPassword }},
	{"verify_interval", func(d, r *Config) { d.VerifyInterval = r.VerifyInterval }},
	{"raw_reply", func(d, r *Config) { d.RawReply = r.RawReply }},
	{"raw_backend_buffer_bytes", func(d, r *Config) { d.RawBackendBufferBytes = r.RawBackendBufferBytes }},
	{"raw_slow_backend", func(d, r *Config) { d.RawSlowBackend = r.RawSlowBackend }},
	// TLS: the certificate files reload themselves when they change; other paths and
	// the listener need a restart.
	{"tls_port", func(d, r *Config) { d.TLSPort = r.TLSPort }},
	{"tls_cert_file", func(d, r *Config) { d.TLSCertFile = r.TLSCertFile }},
	{"tls_key_file", func(d, r *Config) { d.TLSKeyFile = r.TLSKeyFile }},
	{"tls_ca_cert_file", func(d, r *Config) { d.TLSCACertFile = r.TLSCACertFile }},
	{"tls_auth_clients", func(d, r *Config) { d.TLSAuthClients = r.TLSAuthClients }},
	{"backend_tls", func(d, r *Config) { d.BackendTLS = r.BackendTLS }},
	{"backend_tls_ca_cert_file", func(d, r *Config) { d.BackendTLSCACertFile = r.BackendTLSCACertFile }},
	{"backend_tls_server_name", func(d, r *Config) { d.BackendTLSServerName = r.BackendTLSServerName }},
	{"backend_tls_cert_file", func(d, r *Config) { d.BackendTLSCertFile = r.BackendTLSCertFile }},
	{"backend_tls_key_file", func(d, r *Config) { d.BackendTLSKeyFile = r.BackendTLSKeyFile }},
}

// Live reports whether a running gateway applies a change of the setting key.
func Live(key string) bool {
	for _, r := range restartOnly {
		if r.key == key {
			return false
		}
	}
	return true
}

// Changes lists the settings whose values differ from running to next, in the
// settings' order.
func Changes(running, next *Config) []Change {
	a, b := running.values(), next.values()
	var out []Change
	for _, s := range settings {
		if a[s.key] != b[s.key] {
			out = append(out, Change{Key: s.key, Old: a[s.key], New: b[s.key], Live: Live(s.key)})
		}
	}
	return out
}

// KeepRestartSettings returns a copy of c in which the settings that cannot change
// while running have running's values.
func (c *Config) KeepRestartSettings(running *Config) *Config {
	out := *c
	for _, r := range restartOnly {
		r.keep(&out, running)
	}
	return &out
}
