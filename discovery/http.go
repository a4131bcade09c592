package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxHTTPBody is the largest auto-update response read: a backend list is small.
const maxHTTPBody = 1 << 20

// HTTP is the original's servers_autoupdate: a request to an endpoint that answers a
// JSON array of "host:port" strings.
type HTTP struct {
	Method string // GET, POST, PUT, PATCH or DELETE
	URL    string
	// Parameters are already URL-encoded: the query string for GET and DELETE, an
	// application/x-www-form-urlencoded body otherwise.
	Parameters string
	Every      time.Duration // 0: fetch once
	Timeout    time.Duration // the whole request
	AllowEmpty bool          // apply an empty array (else it is an error)
	UserAgent  string
	Client     *http.Client // nil: a client of its own
}

// Name is "http".
func (h *HTTP) Name() string { return "http" }

// Refresh is servers_autoupdate_refresh.
func (h *HTTP) Refresh() time.Duration { return h.Every }

// Fetch sends the request and reads the list from the response.
func (h *HTTP) Fetch(ctx context.Context) ([]string, error) {
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	url, body := h.URL, io.Reader(nil)
	if h.Parameters != "" {
		switch h.Method {
		case http.MethodGet, http.MethodDelete:
			sep := "?"
			if strings.Contains(url, "?") {
				sep = "&"
			}
			url += sep + h.Parameters
		default:
			body = strings.NewReader(h.Parameters)
		}
	}
	req, err := http.NewRequestWithContext(ctx, h.Method, url, body)
	if err != nil {
		return nil, fmt.Errorf("http %s %s: %w", h.Method, h.URL, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")
	if h.UserAgent != "" {
		req.Header.Set("User-Agent", h.UserAgent)
	}
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("http %s %s: %w", h.Method, h.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("http %s %s: status %s", h.Method, h.URL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		return nil, fmt.Errorf("http %s %s: reading the response: %w", h.Method, h.URL, err)
	}
	if len(data) > maxHTTPBody {
		return nil, fmt.Errorf("http %s %s: response larger than %d bytes", h.Method, h.URL, maxHTTPBody)
	}
	list, err := ParseJSONList(data)
	if err != nil {
		return nil, fmt.Errorf("http %s %s: %w", h.Method, h.URL, err)
	}
	if len(list) == 0 && !h.AllowEmpty {
		return nil, errors.New("http " + h.Method + " " + h.URL + ": empty list (set servers_autoupdate_allow_empty=true to apply one)")
	}
	return list, nil
}

// ParseJSONList reads a JSON array of "host:port" strings; spaces around entries
// are tolerated, anything else (an object, numbers, a host without a port, a port out
// of range, duplicates) is an error.
func ParseJSONList(data []byte) ([]string, error) {
	var raw []any
	if err := json.Unmarshal(data, &raw); err != nil {
		snippet := strings.TrimSpace(string(data[:min(len(data), 40)]))
		return nil, fmt.Errorf("not a JSON array of \"host:port\" strings (%v; starts %q)", err, snippet)
	}
	list := make([]string, 0, len(raw))
	for i, v := range raw {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("entry %d is %T, not a \"host:port\" string", i, v)
		}
		list = append(list, strings.TrimSpace(s))
	}
	if err := validate(list); err != nil {
		return nil, err
	}
	return list, nil
}
