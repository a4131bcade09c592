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

// Source produces complete backend lists ("host:port" each). Fetch returns the list
// as the source has it now, or why it cannot; a Watcher calls it every Refresh and,
// for sources that can tell (a watched file), whenever Changed fires.
type Source interface {
	// Name is the source's kind as reported: "static", "http", "dns" or "file".
	Name() string
	// Fetch returns the source's list now.
	Fetch(ctx context.Context) ([]string, error)
	// Refresh is how often to fetch again; 0: never (only at start, or on Changed).
	Refresh() time.Duration
}

// Notifier is a Source that can tell when its list may have changed.
type Notifier interface {
	// Changed returns a channel that receives when the list may have changed; it
	// stops, and releases what it holds, when ctx ends.
	Changed(ctx context.Context) (<-chan struct{}, error)
}

// Static is a fixed backend list: the "servers" setting.
type Static []string

// NewStatic validates a fixed list: every entry must be host:port, with no duplicates.
func NewStatic(addrs []string) (Static, error) {
	if err := validate(addrs); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	return Static(slices.Clone(addrs)), nil
}

// Name is "static".
func (Static) Name() string { return "static" }

// Fetch returns the list.
func (s Static) Fetch(context.Context) ([]string, error) { return slices.Clone(s), nil }

// Refresh is 0: a static list never changes.
func (Static) Refresh() time.Duration { return 0 }

// validate checks that every entry is host:port with a port in 1..65535 and that no
// entry is listed twice.
func validate(addrs []string) error {
	for i, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("backend %q: %w", a, err)
		}
		if host == "" {
			return fmt.Errorf("backend %q: no host", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("backend %q: port out of range", a)
		}
		if slices.Contains(addrs[:i], a) {
			return fmt.Errorf("backend %q listed twice", a)
		}
	}
	return nil
}

// Merge returns the union of lists, in order, without duplicates: the static servers
// first, then each source's ("instead, or in addition").
func Merge(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		for _, a := range l {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// cleanLines turns a text of one address per line into a list: blank lines and
// "#" comments are skipped, spaces trimmed.
func cleanLines(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}
