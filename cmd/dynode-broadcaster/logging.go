package main

import (
	"io"
	"log/slog"
)

// levelTrace is the original's TRACE level, below slog's DEBUG.
const levelTrace = slog.Level(-8)

// newLogger returns a text logger at one of the levels TRACE, DEBUG, INFO, WARN, ERROR.
func newLogger(w io.Writer, level string) *slog.Logger {
	lvl := map[string]slog.Level{
		"TRACE": levelTrace, "DEBUG": slog.LevelDebug, "INFO": slog.LevelInfo,
		"WARN": slog.LevelWarn, "ERROR": slog.LevelError,
	}[level]
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: lvl,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.LevelKey && a.Value.Any() == levelTrace {
				a.Value = slog.StringValue("TRACE")
			}
			return a
		},
	}))
}
