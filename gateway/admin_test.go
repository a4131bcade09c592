package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/redis/go-redis/v9"
)

// adminGet fetches path from the harness's admin server.
func adminDo(t testing.TB, h *harness, method, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+h.gw.AdminAddr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestAdminConventions: JSON in snake_case, /status with rates, metric names that
// pass Prometheus's linter (units in names, _total counters, HELP text), the request
// latency histogram, /debug/pprof only with admin_pprof, admin_token on POST routes.
func TestAdminConventions(t *testing.T) {
	h := withRedis(t, 2, "admin_port="+strconv.Itoa(freePort(t)), "admin_token=s3cret", "admin_pprof=true")
	c := h.client(t, 0)
	for i := range 200 {
		if err := c.Set(ctx, "k"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, "k"+strconv.Itoa(i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Rates are sampled every second.
	var st gateway.Status
	eventually(t, func() bool {
		_, body := adminDo(t, h, "GET", "/status", "")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		return st.UptimeSeconds > 1.2 && st.CommandsTotal >= 400
	}, "/status after a second")
	if len(st.Backends) != 2 || st.Backends[0].Role != "primary" || st.Backends[1].Role != "secondary" || st.Backends[0].Replies < 400 || !st.Ready {
		t.Fatalf("/status: %+v", st)
	}
	if st.Latency["write"].P99 <= 0 || st.Latency["read"].P50 <= 0 {
		t.Fatalf("/status latency: %+v", st.Latency)
	}
	upper := regexp.MustCompile(`"[A-Za-z_]*[A-Z][A-Za-z_]*":`)
	for _, path := range []string{"/status", "/backends"} {
		code, body := adminDo(t, h, "GET", path, "")
		if code != 200 || upper.MatchString(body) {
			t.Fatalf("%s (%d) has keys that are not snake_case: %s", path, code, upper.FindString(body))
		}
		for _, key := range []string{`"addr"`, `"state"`, `"in_flight"`, `"lag_commands"`, `"replies_total"`, `"connects_total"`} {
			if !strings.Contains(body, key) {
				t.Errorf("%s lacks %s", path, key)
			}
		}
	}

	code, metrics := adminDo(t, h, "GET", "/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	problems, err := promlint.New(strings.NewReader(metrics)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "dynode_") {
			t.Errorf("metric %s: %s", p.Metric, p.Text)
		}
	}
	for _, want := range []string{
		`dynode_request_duration_seconds_bucket{class="write",le="0.001"}`,
		`dynode_request_duration_seconds_count{class="read"} 200`,
		"# HELP dynode_request_duration_seconds ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	doc, err := os.ReadFile("../docs/ADMIN.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (dynode_[a-z_]+) `).FindAllStringSubmatch(metrics, -1) {
		if !strings.Contains(string(doc), "| `"+m[1]+"` |") {
			t.Errorf("docs/ADMIN.md does not document %s", m[1])
		}
	}
	if code, _ := adminDo(t, h, "GET", "/debug/pprof/", ""); code != 200 {
		t.Fatalf("/debug/pprof/ with admin_pprof=true: %d", code)
	}
	for _, token := range []string{"", "wrong"} {
		if code, body := adminDo(t, h, "POST", "/verify", token); code != http.StatusUnauthorized || !strings.Contains(body, "admin_token") {
			t.Fatalf("POST /verify with token %q: %d %s", token, code, body)
		}
	}
	code, body := adminDo(t, h, "POST", "/verify", "s3cret")
	var res map[string]any
	if err := json.Unmarshal([]byte(body), &res); code != 200 || err != nil || res["differ"] != 0.0 || res["took_seconds"] == nil {
		t.Fatalf("POST /verify with the token: %d %s", code, body)
	}
	if code, _ := adminDo(t, h, "GET", "/", ""); code != 200 {
		t.Fatalf("status page: %d", code)
	}

	plain := withRedis(t, 1, "admin_port="+strconv.Itoa(freePort(t)))
	if code, _ := adminDo(t, plain, "GET", "/debug/pprof/", ""); code != 404 {
		t.Fatalf("/debug/pprof/ without admin_pprof: %d, want 404", code)
	}
	if code, _ := adminDo(t, plain, "POST", "/verify", ""); code != 200 {
		t.Fatalf("POST /verify without admin_token set: %d", code)
	}
}

// TestStatusPageInBrowser loads the status page in headless Chromium against a live
// gateway with one backend stopped, and checks the rendered DOM shows it down and
// the other up.
func TestStatusPageInBrowser(t *testing.T) {
	chromium := testserver.Require(t, "chromium", "chromium")
	backends := startRedisBackends(t, 2)
	h := startGateway(t, []string{backends[0].Addr, backends[1].Addr}, "admin_port="+strconv.Itoa(freePort(t)))
	if err := h.client(t, 0).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	backends[1].Stop()
	eventually(t, func() bool { return h.gw.Backends()[1].State == "down" }, "backend 1 down")

	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(tctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--dump-dom", "http://"+h.gw.AdminAddr().String()+"/")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	rows := map[string]string{}
	for _, m := range regexp.MustCompile(`(?s)<tr class="state-[a-z_]+" data-backend="([^"]+)">(.*?)</tr>`).FindAllStringSubmatch(string(dom), -1) {
		rows[m[1]] = m[2]
	}
	state := regexp.MustCompile(`<td class="state">([a-z_]+)</td>`)
	for addr, want := range map[string]string{backends[0].Addr: "up", backends[1].Addr: "down"} {
		m := state.FindStringSubmatch(rows[addr])
		if m == nil || m[1] != want {
			t.Fatalf("rendered page shows %s as %v, want %s; DOM:\n%s", addr, m, want, dom)
		}
	}
	if !strings.Contains(rows[backends[1].Addr], "connection refused") && !strings.Contains(rows[backends[1].Addr], "connection lost") {
		t.Fatalf("the stopped backend's row shows no error: %s", rows[backends[1].Addr])
	}
	if _, port, _ := net.SplitHostPort(h.addr); !strings.Contains(string(dom), port) {
		t.Fatalf("the page does not show the listen address %s", h.addr)
	}
}

// TestLogLines: at DEBUG, ordinary commands write no log line (nothing per command
// above TRACE); a protocol error is one line with the client's address and never
// the values or passwords the client sent; a backend state change is one line.
func TestLogLines(t *testing.T) {
	h := withRedis(t, 2, "requirepass=gw-pass-123")
	before := len(strings.Split(h.logs.String(), "\n"))
	c := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2, Password: "gw-pass-123"})
	defer c.Close()
	for i := range 300 {
		if err := c.Set(ctx, "k"+strconv.Itoa(i), "value-never-logged", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, "k"+strconv.Itoa(i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Incr(ctx, "k1").Err(); err == nil {
		t.Fatal("INCR of a string answered without error")
	}
	if after := len(strings.Split(h.logs.String(), "\n")); after != before {
		t.Fatalf("601 commands wrote %d log lines at DEBUG:\n%s", after-before, h.logs.String())
	}
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	if _, err := conn.Write([]byte("*2\r\n$4\r\nAUTH\r\n$11\r\ngw-pass-123\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$x-secret-value\r\n")); err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(conn)
	eventually(t, func() bool { return strings.Contains(h.logs.String(), "protocol error") }, "protocol error logged")
	var lines []string
	for line := range strings.SplitSeq(h.logs.String(), "\n") {
		if strings.Contains(line, "protocol error") {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "client="+local) {
		t.Fatalf("protocol error lines %q, want one with client=%s", lines, local)
	}
	for _, secret := range []string{"gw-pass-123", "secret-value", "value-never-logged"} {
		if strings.Contains(h.logs.String(), secret) {
			t.Fatalf("the log shows %q:\n%s", secret, h.logs.String())
		}
	}
	h.drained(t) // the secondary has answered every write: stopping it loses none
	mark := len(h.logs.String())
	h.backends[1].Stop()
	eventually(t, func() bool { return strings.Contains(h.logs.String(), "backend unreachable") }, "reconnection attempts")
	time.Sleep(300 * time.Millisecond) // more attempts, 100 ms apart here, each at DEBUG
	var above []string
	for line := range strings.SplitSeq(h.logs.String()[mark:], "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") || strings.Contains(line, "level=INFO") {
			above = append(above, line)
		}
	}
	if len(above) != 1 || !strings.Contains(above[0], "backend connection lost") {
		t.Fatalf("a backend going down logged %d lines at INFO and above, want 1: %q", len(above), above)
	}
}
