// Package backlog keeps a backend's backlog on disk: an append-only file of records,
// each a run of queued commands with the queue position of the first, so a gateway
// that restarts while a backend is down replays what it had acknowledged to clients.
// It knows nothing of protocols or backends: a record's frames and reply kinds are
// opaque bytes. The interface is narrow (Append, Records, Rewrite, Sync, Close) so
// the same log can later be backed by a replicated log shared by several gateways.
package backlog
