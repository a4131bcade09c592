package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLimiterStorm: 1,000 identical warnings in one window log 10 lines and then
// one line counting the other 990; other messages and lower levels are not limited.
func TestLimiterStorm(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := NewLimiter(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: LevelTrace}), 10, 10*time.Second, func() time.Time { return now })
	log := slog.New(l).With("backend", "a:1")
	for i := range 1000 {
		log.Warn("backends replied differently", "cmd", "INCR", "i", i)
		log.Debug("a debug line", "i", i)
	}
	log.Error("backend connection lost")
	if n := strings.Count(buf.String(), "backends replied differently"); n != 10 {
		t.Fatalf("%d warnings logged in the window, want 10", n)
	}
	if n := strings.Count(buf.String(), "a debug line"); n != 1000 {
		t.Fatalf("debug lines limited: %d", n)
	}
	if !strings.Contains(buf.String(), "rate_limit=") {
		t.Fatal("the last line before suppression does not say so")
	}
	buf.Reset()
	now = now.Add(11 * time.Second)
	log.Warn("backends replied differently", "cmd", "SET")
	out := buf.String()
	if !strings.Contains(out, `msg="repeated log lines suppressed" backend=a:1 message="backends replied differently" suppressed=990`) {
		t.Fatalf("no summary line with the count:\n%s", out)
	}
	if !strings.Contains(out, `cmd=SET`) {
		t.Fatalf("the first warning of the new window was not logged:\n%s", out)
	}
	buf.Reset()
	for range 15 { // 16 in this window with the SET above: 6 over the burst
		log.Warn("backends replied differently")
	}
	l.Flush()
	if !strings.Contains(buf.String(), "suppressed=6") {
		t.Fatalf("Flush did not count the suppressed lines:\n%s", buf.String())
	}
}

// TestJSONFormat: log_format=json writes one JSON object a line, TRACE named so.
func TestJSONFormat(t *testing.T) {
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	level.Set(LevelTrace)
	log, flush := New(&buf, "json", level)
	log.Log(t.Context(), LevelTrace, "a trace line", "k", 1)
	log.Info("listening", "addr", "127.0.0.1:9000")
	flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), buf.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first["level"] != "TRACE" || first["msg"] != "a trace line" {
		t.Fatalf("line %q: %v %v", lines[0], first, err)
	}
	if ParseLevel("WARN") != slog.LevelWarn || ParseLevel("TRACE") != LevelTrace {
		t.Fatal("ParseLevel")
	}
}
