package main

import (
	"io"
	"log/slog"
)

// levelTrace is the original's TRACE level, below slog's DEBUG.
const levelTrace = slog.Level(-8)

// parseLevel maps the levels TRACE, DEBUG, INFO, WARN, ERROR to slog's.
func parseLevel(level string) slog.Level {
	return map[string]slog.Level{
		"TRACE": levelTrace, "DEBUG": slog.LevelDebug, "INFO": slog.LevelInfo,
		"WARN": slog.LevelWarn, "ERROR": slog.LevelError,
	}[level]
}

// newLogger returns a text logger whose level can change while it runs.
func newLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.LevelKey && a.Value.Any() == levelTrace {
				a.Value = slog.StringValue("TRACE")
			}
			return a
		},
	}))
}
