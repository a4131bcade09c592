// Package discovery produces the list of backend servers. A Source yields complete
// lists; the gateway diffs and applies them. Today the only source is the static
// "servers" setting; the HTTP auto-update of the original (servers_autoupdate_*), DNS
// and a watched file are further sources of the same shape. This package never
// imports the gateway.
package discovery
