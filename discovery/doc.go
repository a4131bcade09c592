// Package discovery produces the list of backend servers. A Source yields complete
// lists: the static "servers" setting, the original's HTTP auto-update
// (servers_autoupdate_*), DNS A/AAAA and SRV records (servers_dns), a watched file
// (servers_file). A Watcher runs them and sends the merged list whenever it changes;
// the gateway diffs and applies it. This package never imports the gateway.
package discovery
