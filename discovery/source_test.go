package discovery

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestStatic(t *testing.T) {
	if _, err := NewStatic([]string{"a:1", "a:1"}); err == nil {
		t.Fatal("duplicate backend accepted")
	}
	if _, err := NewStatic([]string{"nohost"}); err == nil {
		t.Fatal("address without port accepted")
	}
	s, err := NewStatic([]string{"a:1", "b:2"})
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Fetch(context.Background()); !slices.Equal(l, []string{"a:1", "b:2"}) {
		t.Fatalf("Fetch = %v", l)
	}
}

// TestHTTP: each method sends the parameters where the original does (query string for
// GET and DELETE, form body otherwise) with a User-Agent; the JSON array is read with
// spaces tolerated; every kind of bad response is an error that names what is wrong.
func TestHTTP(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	body := `[" 10.0.0.1:6379", "10.0.0.2:6380 "]`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %s %s %s %s", r.Method, r.URL.RawQuery, b, r.Header.Get("Content-Type"), r.Header.Get("User-Agent")))
		reply := body
		mu.Unlock()
		switch reply {
		case "hang":
			<-r.Context().Done()
			return
		case "500":
			http.Error(w, "boom", 500)
			return
		case "huge":
			w.Write([]byte("[" + strings.Repeat(`"a:1",`, 200_000) + `"a:1"]`))
			return
		}
		w.Write([]byte(reply))
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		h := &HTTP{Method: m, URL: srv.URL, Parameters: "cluster=eu&x=1", Timeout: time.Second, UserAgent: "dynode-broadcaster/test"}
		l, err := h.Fetch(ctx)
		if err != nil || !slices.Equal(l, []string{"10.0.0.1:6379", "10.0.0.2:6380"}) {
			t.Fatalf("%s: %v %v", m, l, err)
		}
	}
	want := []string{
		"GET cluster=eu&x=1   dynode-broadcaster/test",
		"POST  cluster=eu&x=1 application/x-www-form-urlencoded dynode-broadcaster/test",
		"PUT  cluster=eu&x=1 application/x-www-form-urlencoded dynode-broadcaster/test",
		"PATCH  cluster=eu&x=1 application/x-www-form-urlencoded dynode-broadcaster/test",
		"DELETE cluster=eu&x=1   dynode-broadcaster/test",
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("requests:\n%q\nwant:\n%q", seen, want)
	}
	for reply, wantErr := range map[string]string{
		"<html>oops</html>":          "not a JSON array",
		`{"servers": ["a:1"]}`:       "not a JSON array",
		`[6379]`:                     "not a \"host:port\" string",
		`["redis.local"]`:            "missing port",
		`["a:70000"]`:                "port out of range",
		`["a:1", "a:1"]`:             "listed twice",
		`[]`:                         "empty list",
		"500":                        "status 500",
		"hang":                       "deadline exceeded",
		"huge":                       "larger than",
		`[":6379"]`:                  "no host",
		`["a:1",`:                    "not a JSON array",
		`["a:1"] trailing`:           "not a JSON array",
		`["` + "a:1\\n\\r" + `"]`:    "",
		`[null]`:                     "not a \"host:port\" string",
		`["[::1]:6379", "b:2"]`:      "",
		`["b:2", "[::1]:6379" ]`:     "",
		`  ["b:2"]  `:                "",
		`["b:2", "a:1", "c:3"]`:      "",
		`["b:2","a:1","c:3","d:4"]`:  "",
		`["host-with-dash.eu:6379"]`: "",
	} {
		mu.Lock()
		body = reply
		mu.Unlock()
		timeout := 5 * time.Second
		if reply == "hang" {
			timeout = 300 * time.Millisecond
		}
		h := &HTTP{Method: "GET", URL: srv.URL, Timeout: timeout}
		_, err := h.Fetch(ctx)
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("%q: %v", reply, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("%q: error %v, want one containing %q", reply, err, wantErr)
		}
	}
	mu.Lock()
	body = `[]`
	mu.Unlock()
	if l, err := (&HTTP{Method: "GET", URL: srv.URL, AllowEmpty: true}).Fetch(ctx); err != nil || len(l) != 0 {
		t.Fatalf("empty list allowed: %v %v", l, err)
	}
}

// TestDNS: A records with servers_dns_port, and SRV records with their own ports,
// from a DNS server started here.
func TestDNS(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	aRecords := []string{"10.1.0.2", "10.1.0.1"}
	mux := dns.NewServeMux()
	mux.HandleFunc("redis.svc.test.", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if r.Question[0].Qtype == dns.TypeA {
			mu.Lock()
			for _, ip := range aRecords {
				rr, _ := dns.NewRR("redis.svc.test. 5 IN A " + ip)
				m.Answer = append(m.Answer, rr)
			}
			mu.Unlock()
		}
		_ = w.WriteMsg(m)
	})
	mux.HandleFunc("_redis._tcp.svc.test.", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, s := range []string{"10 5 7001 r1.svc.test.", "10 5 7002 r2.svc.test."} {
			rr, _ := dns.NewRR("_redis._tcp.svc.test. 5 IN SRV " + s)
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})
	server := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = server.ActivateAndServe() }()
	defer server.Shutdown()
	ctx := context.Background()
	a := &DNS{Query: "redis.svc.test", Port: 6379, Server: pc.LocalAddr().String(), Timeout: 2 * time.Second}
	if l, err := a.Fetch(ctx); err != nil || !slices.Equal(l, []string{"10.1.0.1:6379", "10.1.0.2:6379"}) {
		t.Fatalf("A: %v %v", l, err)
	}
	srv := &DNS{Query: "_redis._tcp.svc.test", Server: pc.LocalAddr().String(), Timeout: 2 * time.Second}
	if l, err := srv.Fetch(ctx); err != nil || !slices.Equal(l, []string{"r1.svc.test:7001", "r2.svc.test:7002"}) {
		t.Fatalf("SRV: %v %v", l, err)
	}
	if _, err := (&DNS{Query: "nothing.svc.test", Port: 1, Server: pc.LocalAddr().String(), Timeout: time.Second}).Fetch(ctx); err == nil {
		t.Fatal("a name without records gave a list")
	}
}

// TestFileAndWatcher: a watched file (rewritten in place and replaced by rename, as
// editors do) and a failing source feed the Watcher: the effective list is the static
// servers plus the file's, an error is reported once per change and the last good
// list stays.
func TestFileAndWatcher(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backends.txt")
	write := func(text string) {
		tmp := filepath.Join(dir, ".backends.tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("# backends\nb:2\n\nc:3 # the third\n")
	var mu sync.Mutex
	var errs []string
	w := &Watcher{Static: []string{"a:1"}, Sources: []Source{&File{Path: path}},
		OnError: func(src string, err error) { mu.Lock(); errs = append(errs, src+": "+err.Error()); mu.Unlock() }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan Update, 10)
	go w.Run(ctx, out)
	next := func() Update {
		select {
		case u := <-out:
			return u
		case <-time.After(5 * time.Second):
			t.Fatal("no update")
		}
		return Update{}
	}
	if u := next(); !slices.Equal(u.Servers, []string{"a:1", "b:2", "c:3"}) || u.Sources["b:2"] != "file" || u.Sources["a:1"] != "static" {
		t.Fatalf("first update %+v", u)
	}
	write("c:3\nd:4\n")
	if u := next(); !slices.Equal(u.Servers, []string{"a:1", "c:3", "d:4"}) {
		t.Fatalf("after replace: %+v", u)
	}
	if err := os.WriteFile(path, []byte("d:4\nbroken\n"), 0o644); err != nil { // in place, invalid
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := os.WriteFile(path, []byte("d:4\nbroken\n#\n"), 0o644); err != nil { // same error again
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	n := len(errs)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("errors reported %d times, want once: %q", n, errs)
	}
	select {
	case u := <-out:
		t.Fatalf("an invalid file changed the list: %+v", u)
	default:
	}
	write("e:5\n")
	if u := next(); !slices.Equal(u.Servers, []string{"a:1", "e:5"}) {
		t.Fatalf("after recovery: %+v", u)
	}
}
