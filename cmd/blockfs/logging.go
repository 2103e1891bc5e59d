package main

import (
	"io"
	"log/slog"
	"time"

	"blockfs/internal/logx"

	"github.com/spf13/pflag"
)

// logFlags are --log-level, --log-format and --log-file.
type logFlags struct {
	level, format, file *string
}

func addLogFlags(fl *pflag.FlagSet) *logFlags {
	return &logFlags{
		level:  fl.String("log-level", "info", "least severe messages logged: debug, info, warn or error (--debug implies debug)"),
		format: fl.String("log-format", "text", "log lines as text or json"),
		file:   fl.String("log-file", "", "append logs to this file instead of stderr (with --daemon: the process's stderr too)"),
	}
}

// repeatInterval is how often a failure that keeps repeating (the same
// block failing every read) gets a "repeated=N" line after its first.
const repeatInterval = time.Minute

// check validates the flags before anything starts.
func (f *logFlags) check() error {
	_, c, err := logx.Open(logx.Config{Level: *f.level, Format: *f.format}, io.Discard)
	if err != nil {
		return usagef("%v", err)
	}
	return c.Close()
}

// open builds the logger: repeats limited, no timestamps of our own when
// the journal stamps stderr. The returned function writes the pending
// repeat counts and closes the file.
func (f *logFlags) open(stderr io.Writer, debug bool) (*slog.Logger, func(), error) {
	level := *f.level
	if debug {
		level = "debug"
	}
	h, c, err := logx.Open(logx.Config{Level: level, Format: *f.format, File: *f.file, NoTime: logx.UnderJournal()}, stderr)
	if err != nil {
		return nil, nil, err
	}
	rl := logx.NewRateLimiter(h, repeatInterval)
	return slog.New(rl.Handler()), func() { rl.Close(); c.Close() }, nil
}
