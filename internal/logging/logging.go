// Package logging builds the gateway's log/slog logger: text or JSON lines, the
// original's levels (TRACE, INFO, ERROR) plus DEBUG and WARN, and a limit on
// repeated identical warnings so that a storm (every command diverging, say) logs a
// few lines and a count instead of one line per event.
package logging

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// LevelTrace is the original's TRACE level, below slog's DEBUG.
const LevelTrace = slog.Level(-8)

// ParseLevel maps TRACE, DEBUG, INFO, WARN and ERROR to slog's levels (INFO for
// anything else: the configuration package has checked the name).
func ParseLevel(level string) slog.Level {
	if l, ok := map[string]slog.Level{
		"TRACE": LevelTrace, "DEBUG": slog.LevelDebug, "INFO": slog.LevelInfo,
		"WARN": slog.LevelWarn, "ERROR": slog.LevelError,
	}[level]; ok {
		return l
	}
	return slog.LevelInfo
}

// Default limits of repeated warnings: Burst lines of one message per Window, the
// rest counted.
const (
	DefaultBurst  = 10
	DefaultWindow = 10 * time.Second
)

// New returns a logger writing format ("text" or "json") lines to w at level (which
// may change while it runs), with repeated warnings limited to DefaultBurst per
// DefaultWindow. Call the returned flush before exiting: it logs the counts of
// lines still suppressed.
func New(w io.Writer, format string, level slog.Leveler) (log *slog.Logger, flush func()) {
	opts := &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.LevelKey && a.Value.Any() == LevelTrace {
				a.Value = slog.StringValue("TRACE")
			}
			return a
		},
	}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	l := NewLimiter(h, DefaultBurst, DefaultWindow, time.Now)
	return slog.New(l), l.Flush
}

// Limiter is a slog.Handler that passes at most burst records of the same level
// and message per window at WARN and above; the others are counted, and when the
// window ends a line "repeated log lines suppressed" says how many (with the
// message), before the next record or at Flush. Lower levels pass untouched.
type Limiter struct {
	next  slog.Handler
	state *limitState // shared with the handlers WithAttrs and WithGroup derive
}

type limitState struct {
	mu     sync.Mutex
	burst  int
	window time.Duration
	now    func() time.Time
	seen   map[limitKey]*limitCount
}

type limitKey struct {
	level slog.Level
	msg   string
}

type limitCount struct {
	start      time.Time
	n          int
	suppressed int
	next       slog.Handler // the handler (with its attributes) that saw the first suppressed record
}

// maxKeys bounds the messages remembered (messages are constants of the code; this
// only guards against one built from data).
const maxKeys = 1024

// NewLimiter wraps next; now is the clock (time.Now outside tests).
func NewLimiter(next slog.Handler, burst int, window time.Duration, now func() time.Time) *Limiter {
	return &Limiter{next: next, state: &limitState{burst: burst, window: window, now: now, seen: map[limitKey]*limitCount{}}}
}

// Enabled reports whether next handles level.
func (l *Limiter) Enabled(ctx context.Context, level slog.Level) bool {
	return l.next.Enabled(ctx, level)
}

// Handle passes r on unless it is one repetition too many.
func (l *Limiter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return l.next.Handle(ctx, r)
	}
	st := l.state
	now := st.now()
	st.mu.Lock()
	summaries := st.expiredLocked(now)
	key := limitKey{r.Level, r.Message}
	c := st.seen[key]
	if c == nil {
		if len(st.seen) >= maxKeys {
			clear(st.seen)
		}
		c = &limitCount{start: now}
		st.seen[key] = c
	}
	c.n++
	pass := c.n <= st.burst
	if !pass {
		if c.suppressed == 0 {
			c.next = l.next
		}
		c.suppressed++
	}
	st.mu.Unlock()
	for _, s := range summaries {
		_ = s()
	}
	if !pass {
		return nil
	}
	if c.n == st.burst {
		r = r.Clone()
		r.AddAttrs(slog.String("rate_limit", "more of this line within "+st.window.String()+" are counted, not logged"))
	}
	return l.next.Handle(ctx, r)
}

// expiredLocked drops the windows that ended and returns the summary lines to log
// for those that suppressed records.
func (st *limitState) expiredLocked(now time.Time) []func() error {
	var out []func() error
	for key, c := range st.seen {
		if now.Sub(c.start) < st.window {
			continue
		}
		delete(st.seen, key)
		if c.suppressed > 0 {
			out = append(out, summary(key, c, now))
		}
	}
	return out
}

func summary(key limitKey, c *limitCount, now time.Time) func() error {
	return func() error {
		r := slog.NewRecord(now, key.level, "repeated log lines suppressed", 0)
		r.AddAttrs(slog.String("message", key.msg), slog.Int("suppressed", c.suppressed), slog.Duration("window", now.Sub(c.start).Round(time.Millisecond)))
		return c.next.Handle(context.Background(), r)
	}
}

// Flush logs the counts of records suppressed in windows not yet ended.
func (l *Limiter) Flush() {
	st := l.state
	st.mu.Lock()
	now := st.now()
	var out []func() error
	for key, c := range st.seen {
		if c.suppressed > 0 {
			out = append(out, summary(key, c, now))
		}
		delete(st.seen, key)
	}
	st.mu.Unlock()
	for _, s := range out {
		_ = s()
	}
}

// WithAttrs returns a Limiter over next.WithAttrs, sharing the counts.
func (l *Limiter) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Limiter{next: l.next.WithAttrs(attrs), state: l.state}
}

// WithGroup returns a Limiter over next.WithGroup, sharing the counts.
func (l *Limiter) WithGroup(name string) slog.Handler {
	return &Limiter{next: l.next.WithGroup(name), state: l.state}
}
