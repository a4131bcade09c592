package discovery

import (
	"context"
	"fmt"
	"net"
	"slices"
)

// Source yields complete backend lists ("host:port" each) on its channel until ctx
// ends, then closes it. A source that cannot produce a good list keeps silent, so the
// last good list stays in force.
type Source interface {
	Watch(ctx context.Context) <-chan []string
}

// Static is a fixed backend list: the "servers" setting.
type Static []string

// NewStatic validates a fixed list: every entry must be host:port, with no duplicates.
func NewStatic(addrs []string) (Static, error) {
	for i, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("discovery: backend %q: %w", a, err)
		}
		if slices.Contains(addrs[:i], a) {
			return nil, fmt.Errorf("discovery: backend %q listed twice", a)
		}
	}
	return Static(slices.Clone(addrs)), nil
}

// Watch sends the list once and closes the channel when ctx ends.
func (s Static) Watch(ctx context.Context) <-chan []string {
	ch := make(chan []string, 1)
	ch <- slices.Clone(s)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch
}
