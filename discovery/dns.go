package discovery

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DNS resolves a name into backends: A/AAAA records with a fixed port, or, for a name
// starting with "_" (_redis._tcp.name), SRV records with their own ports: Kubernetes
// headless services and Consul.
type DNS struct {
	Query   string        // the name to resolve
	Port    int           // port for A/AAAA records
	Every   time.Duration // servers_dns_refresh
	Timeout time.Duration // one lookup
	// Server, when set, is the DNS server asked ("host:port"), instead of the system's.
	Server string
}

// Name is "dns".
func (d *DNS) Name() string { return "dns" }

// Refresh is servers_dns_refresh.
func (d *DNS) Refresh() time.Duration { return d.Every }

func (d *DNS) resolver() *net.Resolver {
	if d.Server == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, network, d.Server)
	}}
}

// Fetch resolves the name now. The list is sorted, so an unchanged record set is an
// unchanged list whatever order the server answers in.
func (d *DNS) Fetch(ctx context.Context) ([]string, error) {
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	r := d.resolver()
	var list []string
	if strings.HasPrefix(d.Query, "_") {
		_, srvs, err := r.LookupSRV(ctx, "", "", d.Query)
		if err != nil {
			return nil, fmt.Errorf("dns SRV %s: %w", d.Query, err)
		}
		for _, s := range srvs {
			list = append(list, net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port))))
		}
	} else {
		ips, err := r.LookupIPAddr(ctx, d.Query)
		if err != nil {
			return nil, fmt.Errorf("dns %s: %w", d.Query, err)
		}
		for _, ip := range ips {
			list = append(list, net.JoinHostPort(ip.IP.String(), strconv.Itoa(d.Port)))
		}
	}
	slices.Sort(list)
	list = slices.Compact(list)
	if len(list) == 0 {
		return nil, fmt.Errorf("dns %s: no records", d.Query)
	}
	if err := validate(list); err != nil {
		return nil, fmt.Errorf("dns %s: %w", d.Query, err)
	}
	return list, nil
}
