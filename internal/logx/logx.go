// Package logx builds the process's slog.Logger from the operator's
// choices (level, text or JSON, stderr or a file) and keeps a failure that
// repeats from flooding the log: the same block failing on every read is
// one line and then a count, not a line per read.
package logx

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Config is how the operator wants logs written.
type Config struct {
	Level  string // debug, info, warn or error (default info)
	Format string // text or json (default text)
	File   string // append to this file instead of stderr
	// NoTime drops timestamps, for a sink that adds its own (the journal:
	// JOURNAL_STREAM is set when stderr is connected to it).
	NoTime bool
}

// ParseLevel reads a --log-level value.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

// UnderJournal reports whether stderr goes to the systemd journal, which
// stamps every line itself.
func UnderJournal() bool { return os.Getenv("JOURNAL_STREAM") != "" }

// Open builds the handler cfg asks for, writing to stderr unless cfg.File
// is set. The returned closer closes the file (if any).
func Open(cfg Config, stderr io.Writer) (slog.Handler, io.Closer, error) {
	level, err := ParseLevel(cfg.Level)
	if err != nil {
		return nil, nil, err
	}
	w, closer := stderr, io.Closer(nopCloser{})
	if cfg.File != "" {
		f, err := os.OpenFile(cfg.File, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("log file: %w", err)
		}
		w, closer = f, f
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.NoTime && cfg.File == "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	switch strings.ToLower(cfg.Format) {
	case "", "text":
		return slog.NewTextHandler(w, opts), closer, nil
	case "json":
		return slog.NewJSONHandler(w, opts), closer, nil
	}
	closer.Close()
	return nil, nil, fmt.Errorf("unknown log format %q (want text or json)", cfg.Format)
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
