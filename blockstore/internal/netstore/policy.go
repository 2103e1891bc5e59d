// Package netstore is the one policy of the block stores that talk over a
// network (blockstore/s3 and blockstore/httpstore): their defaults, how
// they retry, which failures they retry, how they render errors, their HTTP
// transport and their request counters. The two stores differ only in
// what their server answers look like; everything else is decided here so
// that a mount behaves the same over S3 as over a `blockfs serve`.
package netstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"blockfs/blockstore"
)

// Defaults for zero Policy fields (and the stores' zero options).
const (
	DefaultRequestTimeout = 30 * time.Second
	DefaultMaxAttempts    = 5
	DefaultRetryBase      = 100 * time.Millisecond
	DefaultRetryMax       = 5 * time.Second
	// DefaultBusyFor bounds the retries of overload answers for a call
	// whose context has no deadline; it matches mount's --fetch-timeout.
	DefaultBusyFor = 2 * time.Minute
)

// Policy is how hard a network store tries: the fields every store's
// options share. Zero fields take the defaults.
type Policy struct {
	RequestTimeout      time.Duration // per attempt
	MaxAttempts         int           // per call, the first included
	RetryBase, RetryMax time.Duration // backoff shape
}

// WithDefaults returns p with zero (or negative) fields set to the
// defaults.
func (p Policy) WithDefaults() Policy {
	if p.RequestTimeout <= 0 {
		p.RequestTimeout = DefaultRequestTimeout
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.RetryBase <= 0 {
		p.RetryBase = DefaultRetryBase
	}
	if p.RetryMax <= 0 {
		p.RetryMax = DefaultRetryMax
	}
	return p
}

// Retry returns the retry policy for p (defaults filled in), counting its
// retries in c; the store sets how its failures are classified.
func (p Policy) Retry(c *Counters) Retry {
	p = p.WithDefaults()
	return Retry{
		MaxAttempts: p.MaxAttempts, Timeout: p.RequestTimeout,
		Base: p.RetryBase, Max: p.RetryMax,
		Transient: func(err error) bool { return Transient(err, nil) },
		Describe:  func(err error) string { return Describe(err, nil) },
		Retries:   &c.Retries,
	}
}

// Transient reports whether a failed attempt is worth retrying. answer,
// if set, judges the store's own answers first (ok false: not one of
// them). Then an attempt that timed out is retried; our own verdicts
// (a wrong-sized block, not found, conflict, too large, malformed) and a
// cancelled call are final; anything else means the request or its answer
// got lost on the way, and is retried.
func Transient(err error, answer func(error) (retry, ok bool)) bool {
	if answer != nil {
		if retry, ok := answer(err); ok {
			return retry
		}
	}
	if IsAttemptTimeout(err) {
		return true
	}
	return !Final(err)
}

// Final reports whether err is a verdict no retry can change.
func Final(err error) bool {
	return errors.Is(err, blockstore.ErrCorrupt) || errors.Is(err, blockstore.ErrNotFound) ||
		errors.Is(err, blockstore.ErrConflict) || errors.Is(err, blockstore.ErrTooLarge) ||
		errors.Is(err, blockstore.ErrMalformed) || errors.Is(err, context.Canceled)
}

// Describe renders err in one short line, for errors that end up in logs
// and EIO messages: a timed-out attempt says so, answer (if set) renders
// the store's own answers, and a transport error loses its request URL
// (which repeats the path the caller already names).
func Describe(err error, answer func(error) (string, bool)) string {
	var at *AttemptTimeoutError
	if errors.As(err, &at) {
		return fmt.Sprintf("attempt timed out after %v: %s", at.Timeout, Describe(at.Err, answer))
	}
	if answer != nil {
		if s, ok := answer(err); ok {
			return s
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// ParseURL checks a network store's address: http or https, a host, and no
// user, query or fragment (credentials go in the options, never in a URL
// that ends up in logs); a path (a prefix under the host) only if withPath.
func ParseURL(raw string, withPath bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	want := "scheme://host[:port]"
	if withPath {
		want += "[/path]"
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("scheme %q: want http or https", u.Scheme)
	case u.Host == "":
		return nil, errors.New("no host")
	case u.User != nil, u.RawQuery != "", u.Fragment != "", !withPath && u.Path != "" && u.Path != "/":
		return nil, fmt.Errorf("want only %s", want)
	}
	return u, nil
}
