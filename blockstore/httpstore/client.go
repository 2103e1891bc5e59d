package httpstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/internal/netstore"
)

// Defaults for zero ClientOptions fields: every network store's, from
// blockstore/internal/netstore.
const (
	DefaultRequestTimeout = netstore.DefaultRequestTimeout
	DefaultMaxAttempts    = netstore.DefaultMaxAttempts
	DefaultRetryBase      = netstore.DefaultRetryBase
	DefaultRetryMax       = netstore.DefaultRetryMax
)

// ClientOptions say how to talk to a `blockfs serve`. Zero fields take
// the defaults.
type ClientOptions struct {
	// Token is sent as "Authorization: Bearer <token>" when not "".
	Token string
	// TLS configures https (nil: the system roots).
	TLS *tls.Config
	// RequestTimeout bounds each attempt (default 30s). A listing is
	// bounded by it until its answer starts and then per gap between
	// lines, so a long listing is not cut off.
	RequestTimeout time.Duration
	// MaxAttempts bounds attempts per call, the first included (default
	// 5; 1 means no retries). A 503 (server busy) does not count: it is
	// retried until the call's context ends (a Pool's fetch deadline), or
	// for netstore.DefaultBusyFor (2 min) without a deadline.
	MaxAttempts int
	// RetryBase and RetryMax shape the backoff before retry n: a uniform
	// random duration in [0, min(RetryMax, RetryBase·2^(n−1))] (defaults
	// 100ms and 5s). After a 503 with Retry-After the wait is that value,
	// capped at RetryMax, plus up to a quarter more (so a crowd of
	// clients told the same thing does not come back in one instant).
	RetryBase, RetryMax time.Duration
	// FailFast ends a call after one failed attempt, unless the server
	// said 503 (busy: retried as above). For a caller that fails over to
	// another server (blockstore/tier) instead of retrying this one.
	FailFast bool
}

// Errors. Test with errors.Is.
var (
	// ErrUnauthorized: the server refused the token (401: missing or
	// wrong; 403: the server takes no writes).
	ErrUnauthorized = errors.New("httpstore: unauthorized")
	// ErrUnreachable: Open could not get an answer (refused, DNS,
	// timeout).
	ErrUnreachable = errors.New("httpstore: server unreachable")
	// ErrTLS: the TLS handshake failed (unknown authority, wrong host
	// name, https spoken to an http server or the reverse).
	ErrTLS = errors.New("httpstore: TLS failure")
)

// Client is a blockstore.Store and blockstore.RefStore served by a
// `blockfs serve` over HTTP. It is safe for concurrent use.
//
// Failures are handled as in blockstore/s3: each attempt runs under
// RequestTimeout; network errors, timeouts, 5xx, 429 and 408 are retried
// with backoff and full jitter up to MaxAttempts; other answers are final.
// A call that keeps failing returns within about
// MaxAttempts × RequestTimeout + (MaxAttempts−1) × 1.25 × RetryMax, or as
// soon as its context ends. The exception is 503: a busy server is alive
// and queues its clients, so 503s are retried (honouring Retry-After) until
// the context ends; the error then wraps both context.DeadlineExceeded and
// blockstore.ErrBusy.
type Client struct {
	base    string // scheme://host[:port][/prefix], no trailing "/"
	hc      *http.Client
	token   string
	timeout time.Duration // per attempt
	retry   netstore.Retry

	c netstore.Counters
	// What the server's ref answers said of its own store (refs.go's
	// stale-if-error): how many came flagged stale, and whether the last
	// one did, so a client of a tier can tell its store is down.
	staleRefs atomic.Int64
	storeDown atomic.Bool
}

var (
	_ blockstore.Store    = (*Client)(nil)
	_ blockstore.RefStore = (*Client)(nil)
)

// Open returns a client for the server at baseURL (http:// or https://,
// optionally with a path prefix) after checking, with one GET /healthz
// (retried like any other request), that it answers and accepts the
// token. Its error is one line, wrapping ErrUnreachable, ErrTLS or
// ErrUnauthorized when one of those is the problem.
func Open(ctx context.Context, baseURL string, opts ClientOptions) (*Client, error) {
	c, err := New(baseURL, opts)
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx); err != nil {
		c.hc.CloseIdleConnections()
		return nil, err
	}
	return c, nil
}

// New returns a client for the server at baseURL without asking the
// server anything: for a tier, whose members may be down when it starts
// and come back later. Its only errors are a baseURL that does not parse.
func New(baseURL string, opts ClientOptions) (*Client, error) {
	policy := netstore.Policy{
		RequestTimeout: opts.RequestTimeout, MaxAttempts: opts.MaxAttempts,
		RetryBase: opts.RetryBase, RetryMax: opts.RetryMax,
	}.WithDefaults()
	u, err := netstore.ParseURL(baseURL, true)
	if err != nil {
		shown, hint := baseURL, ""
		if pu, perr := url.Parse(baseURL); perr == nil && pu.User != nil {
			shown, hint = pu.Redacted(), " (the token goes in ClientOptions)" // the password stays out of the error
		}
		return nil, fmt.Errorf("httpstore: open %q: %v%s", shown, err, hint)
	}
	c := &Client{
		base:    u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/"),
		hc:      &http.Client{Transport: netstore.HTTPTransport(policy.RequestTimeout, opts.TLS)},
		token:   opts.Token,
		timeout: policy.RequestTimeout,
	}
	c.retry = policy.Retry(&c.c)
	c.retry.Transient, c.retry.Busy, c.retry.After, c.retry.Describe = transient, isBusy, retryAfter, describe
	c.retry.FailFast = opts.FailFast
	return c, nil
}

// Ping checks, with one GET /healthz (retried like any other request),
// that the server answers and accepts the token. Its error is one line,
// wrapping ErrUnreachable, ErrTLS or ErrUnauthorized when one of those is
// the problem.
func (c *Client) Ping(ctx context.Context) error {
	err := c.do(ctx, &c.c.Other, func(ctx context.Context) error {
		resp, err := c.send(ctx, http.MethodGet, "/healthz", nil)
		if err != nil {
			return err
		}
		drain(resp)
		return nil
	})
	if err != nil {
		return fmt.Errorf("httpstore: open %s: %w", c.base, classifyOpen(err))
	}
	return nil
}

// Close closes idle connections. The client stays usable.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// URL returns the server's base URL.
func (c *Client) URL() string { return c.base }

// classifyOpen maps Open's check failure to a sentinel and a short cause.
func classifyOpen(err error) error {
	var se *statusError
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && !netstore.IsAttemptTimeout(err):
		return err
	case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrTLS):
		return err
	case errors.As(err, &se):
		return fmt.Errorf("/healthz answered HTTP %d (%s): not a blockfs server, or the wrong path?", se.code, se.msg)
	}
	return fmt.Errorf("%w (%s)", ErrUnreachable, describe(err))
}

// path builders: every piece is a hash, a locator or a checked ref name,
// none of which needs escaping.
func blockPath(s string) string  { return "/v1/blocks/" + s }
func refPath(name string) string { return "/v1/refs/" + name }

// send makes one request and returns a response with a 2xx status; any
// other status comes back as a *statusError (body read and closed).
func (c *Client) send(ctx context.Context, method, path string, body []byte, hdr ...string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, permanent{err}
	}
	if body != nil && len(body) == 0 {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if isTLSError(err) {
			return nil, permanent{fmt.Errorf("%w: %s", ErrTLS, describe(err))}
		}
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	se := &statusError{code: resp.StatusCode, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	drain(resp)
	se.msg = strings.TrimSpace(strings.SplitN(string(msg), "\n", 2)[0])
	if se.msg == "" {
		se.msg = http.StatusText(se.code)
	}
	if se.code == http.StatusServiceUnavailable {
		c.c.Busy.Add(1)
	}
	if se.code == http.StatusBadRequest && strings.Contains(se.msg, "HTTPS server") {
		return nil, permanent{fmt.Errorf("%w: %s (http:// spoken to an https server)", ErrTLS, se.msg)}
	}
	return nil, se
}

// drain reads a little of what is left (so the connection can be reused)
// and closes the body.
func drain(resp *http.Response) {
	io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}

func isTLSError(err error) bool {
	var (
		rh  tls.RecordHeaderError
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		ci  x509.CertificateInvalidError
		ale tls.AlertError
	)
	return errors.As(err, &rh) || errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) ||
		errors.As(err, &ci) || errors.As(err, &ale) || strings.Contains(err.Error(), "HTTP response to HTTPS client")
}

// parseRetryAfter reads delta-seconds or an HTTP date; -1 if absent or
// unreadable.
func parseRetryAfter(s string) time.Duration {
	if s == "" {
		return -1
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return time.Duration(min(n, 1<<20)) * time.Second
	}
	if t, err := http.ParseTime(s); err == nil {
		return max(0, time.Until(t))
	}
	return -1
}

// statusError is a non-2xx answer.
type statusError struct {
	code       int
	msg        string
	retryAfter time.Duration // -1: none given
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.msg) }

// Unwrap maps the status to the sentinel callers test for.
func (e *statusError) Unwrap() error {
	switch e.code {
	case http.StatusNotFound:
		return blockstore.ErrNotFound
	case http.StatusPreconditionFailed:
		return blockstore.ErrConflict
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUnauthorized
	case http.StatusRequestEntityTooLarge:
		return blockstore.ErrTooLarge
	case http.StatusBadRequest:
		return blockstore.ErrMalformed
	case http.StatusServiceUnavailable:
		return blockstore.ErrBusy
	case http.StatusNotImplemented:
		return errors.ErrUnsupported // (the store keeps no refs)
	}
	return nil
}

// permanent marks an attempt's error as final: never retried.
type permanent struct{ err error }

func (e permanent) Error() string { return e.err.Error() }
func (e permanent) Unwrap() error { return e.err }

// do runs one call under the client's retry policy (netstore.Retry, as
// blockstore/s3 does); kind counts attempts.
func (c *Client) do(ctx context.Context, kind *atomic.Int64, attempt func(ctx context.Context) error) error {
	return c.retry.Do(ctx, kind, attempt)
}

// retryAfter is the wait a 503 asked for.
func retryAfter(err error) (time.Duration, bool) {
	var se *statusError
	if errors.As(err, &se) && se.retryAfter >= 0 {
		return se.retryAfter, true
	}
	return 0, false
}

// transient reports whether a failed attempt is worth retrying
// (netstore.Transient): any failure to get an answer, and answers that say
// "later" (5xx, 429, 408). Definite answers and our own verdicts are final.
func transient(err error) bool {
	return netstore.Transient(err, func(err error) (retry, ok bool) {
		var p permanent
		if errors.As(err, &p) {
			return false, true
		}
		var se *statusError
		if !errors.As(err, &se) {
			return false, false
		}
		switch se.code {
		case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported:
			return false, true
		}
		return se.code >= 500 || se.code == http.StatusTooManyRequests || se.code == http.StatusRequestTimeout, true
	})
}

// isBusy reports whether err is the server saying it is overloaded (503),
// which is retried until the call's deadline rather than MaxAttempts times.
func isBusy(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.code == http.StatusServiceUnavailable
}

// describe renders err in one short line (netstore.Describe).
func describe(err error) string { return netstore.Describe(err, nil) }

// fail counts a failed call and wraps err for the caller; definite answers
// (not found, conflict) are not counted as errors.
func (c *Client) fail(op string, err error) error {
	if !errors.Is(err, blockstore.ErrNotFound) && !errors.Is(err, blockstore.ErrConflict) {
		c.c.Errors.Add(1)
	}
	return fmt.Errorf("httpstore: %s: %w", op, err)
}

// Get implements blockstore.Store: one GET of exactly loc.Size bytes into
// dst. The bytes are not verified here (the caller's Pool does that); a
// body of the wrong length is an error wrapping ErrCorrupt.
func (c *Client) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	if err := loc.Check(); err != nil {
		return 0, fmt.Errorf("httpstore: get: %w", err)
	}
	if int64(len(dst)) < loc.Size {
		return 0, fmt.Errorf("httpstore: get %v: %w: buffer of %d bytes", loc, io.ErrShortBuffer, len(dst))
	}
	var n int
	err := c.do(ctx, &c.c.Gets, func(ctx context.Context) error {
		n = 0
		resp, err := c.send(ctx, http.MethodGet, blockPath(loc.String()), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.ContentLength >= 0 && resp.ContentLength != loc.Size {
			return fmt.Errorf("%w: httpstore get %v: server sent %d bytes", blockstore.ErrCorrupt, loc, resp.ContentLength)
		}
		n, err = io.ReadFull(resp.Body, dst[:loc.Size])
		c.c.BytesIn.Add(int64(n))
		if err != nil {
			return fmt.Errorf("reading body after %d of %d bytes: %w", n, loc.Size, err)
		}
		var extra [1]byte
		if m, _ := io.ReadFull(resp.Body, extra[:]); m > 0 {
			return fmt.Errorf("%w: httpstore get %v: server sent more than %d bytes", blockstore.ErrCorrupt, loc, loc.Size)
		}
		return nil
	})
	if err != nil {
		return 0, c.fail(fmt.Sprintf("get %v", loc), err)
	}
	return n, nil
}

// Put implements blockstore.Store: it verifies the hash, then one PUT with
// Content-Length (the server checks the hash again before storing).
func (c *Client) Put(ctx context.Context, h blockstore.Hash, data []byte) error {
	if err := blockstore.CheckPut(h, data); err != nil {
		return fmt.Errorf("httpstore: %w", err)
	}
	return c.PutHashed(ctx, h, data)
}

// PutHashed implements blockstore.HashedPutter: Put without re-hashing data
// here (the server still checks it before storing).
func (c *Client) PutHashed(ctx context.Context, h blockstore.Hash, data []byte) error {
	if len(data) > blockstore.MaxBlockSize {
		return fmt.Errorf("%w: httpstore put %v: %d bytes", blockstore.ErrTooLarge, h, len(data))
	}
	if data == nil {
		data = []byte{}
	}
	err := c.do(ctx, &c.c.Puts, func(ctx context.Context) error {
		resp, err := c.send(ctx, http.MethodPut, blockPath(h.String()), data)
		if err != nil {
			return err
		}
		drain(resp)
		c.c.BytesOut.Add(int64(len(data)))
		return nil
	})
	if err != nil {
		return c.fail(fmt.Sprintf("put %v", h), err)
	}
	return nil
}

// Has implements blockstore.Store: one HEAD.
func (c *Client) Has(ctx context.Context, h blockstore.Hash) (bool, error) {
	found := false
	err := c.do(ctx, &c.c.Heads, func(ctx context.Context) error {
		resp, err := c.send(ctx, http.MethodHead, blockPath(h.String()), nil)
		if errors.Is(err, blockstore.ErrNotFound) {
			found = false
			return nil
		}
		if err != nil {
			return err
		}
		drain(resp)
		found = true
		return nil
	})
	if err != nil {
		return false, c.fail(fmt.Sprintf("has %v", h), err)
	}
	return found, nil
}

// stopped carries fn's own error out of a List attempt unretried.
type stopped struct{ err error }

func (e stopped) Error() string { return e.err.Error() }

// List implements blockstore.Store: one streamed GET /v1/blocks. It is
// retried only until the first locator has been passed to fn; a listing
// cut off after that is an error (fn is never called twice for a block
// because of a retry).
func (c *Client) List(ctx context.Context, fn func(blockstore.Locator) error) error {
	delivered := 0
	// The attempt bounds itself with an idle timer instead of a timeout.
	untimed := c.retry
	untimed.Timeout = 0
	err := untimed.Do(ctx, &c.c.Lists, func(pctx context.Context) error {
		ctx, cancel := context.WithCancel(pctx)
		defer cancel()
		// Idle timer: RequestTimeout until the answer starts and then
		// between lines, so a long listing is not cut off but a stalled
		// one is.
		idle := time.AfterFunc(c.timeout, cancel)
		defer idle.Stop()
		resp, err := c.send(ctx, http.MethodGet, "/v1/blocks", nil)
		if err != nil {
			if ctx.Err() != nil && pctx.Err() == nil {
				return &netstore.AttemptTimeoutError{Timeout: c.timeout, Err: err}
			}
			return err
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if delivered%256 == 0 {
				idle.Reset(c.timeout)
			}
			c.c.BytesIn.Add(int64(len(sc.Bytes()) + 1))
			loc, err := blockstore.ParseLocator(sc.Text())
			if err != nil {
				return permanent{fmt.Errorf("bad listing line %d: %w", delivered+1, err)}
			}
			delivered++
			if err := fn(loc); err != nil {
				return permanent{stopped{err}}
			}
		}
		if err := sc.Err(); err != nil {
			if ctx.Err() != nil && pctx.Err() == nil {
				err = &netstore.AttemptTimeoutError{Timeout: c.timeout, Err: fmt.Errorf("listing stalled: %w", err)}
			}
			if delivered > 0 {
				return permanent{fmt.Errorf("listing cut off after %d blocks: %w", delivered, err)}
			}
			return err
		}
		return nil
	})
	var st stopped
	if errors.As(err, &st) {
		return st.err
	}
	if err != nil {
		return c.fail("list", err)
	}
	return nil
}

// Delete implements blockstore.Store: one DELETE; 404 is ErrNotFound.
func (c *Client) Delete(ctx context.Context, h blockstore.Hash) error {
	err := c.do(ctx, &c.c.Deletes, func(ctx context.Context) error {
		resp, err := c.send(ctx, http.MethodDelete, blockPath(h.String()), nil)
		if err != nil {
			return err
		}
		drain(resp)
		return nil
	})
	if err != nil {
		return c.fail(fmt.Sprintf("delete %v", h), err)
	}
	return nil
}

// GetRef implements blockstore.RefStore: one GET; the version is the ETag.
func (c *Client) GetRef(ctx context.Context, name string) ([]byte, string, error) {
	if err := blockstore.CheckRefName(name); err != nil {
		return nil, "", err
	}
	var data []byte
	var version string
	err := c.do(ctx, &c.c.Gets, func(ctx context.Context) error {
		resp, err := c.send(ctx, http.MethodGet, refPath(name), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		v, ok := unquoteETag(resp.Header.Get("ETag"))
		if !ok {
			return permanent{fmt.Errorf("ref answer without a usable ETag (%q)", clip(resp.Header.Get("ETag")))}
		}
		data, err = io.ReadAll(io.LimitReader(resp.Body, blockstore.MaxRefSize+1))
		c.c.BytesIn.Add(int64(len(data)))
		switch {
		case err != nil:
			return fmt.Errorf("reading ref body: %w", err)
		case len(data) > blockstore.MaxRefSize:
			return permanent{fmt.Errorf("%w: ref above MaxRefSize", blockstore.ErrTooLarge)}
		case resp.ContentLength >= 0 && int64(len(data)) != resp.ContentLength:
			return fmt.Errorf("reading ref body: %d bytes, expected %d: %w", len(data), resp.ContentLength, io.ErrUnexpectedEOF)
		}
		version = v
		stale := resp.Header.Get(staleHeader) != ""
		if stale {
			c.staleRefs.Add(1)
		}
		c.storeDown.Store(stale)
		return nil
	})
	if err != nil {
		return nil, "", c.fail("get ref "+name, err)
	}
	return data, version, nil
}

// Upstream reports what the server said of its own store in its ref
// answers: how many were stale (served from its last value because its
// store failed) and whether the last one was, i.e. whether its store is
// down as far as this client knows.
func (c *Client) Upstream() (staleRefs int64, storeDown bool) {
	return c.staleRefs.Load(), c.storeDown.Load()
}

// Health implements blockstore.HealthReporter: the server answers, but
// while its last ref answer was stale its store does not.
func (c *Client) Health() (bool, string) {
	if c.storeDown.Load() {
		return false, blockstore.ReasonStoreDown
	}
	return true, ""
}

// PutRef implements blockstore.RefStore with a conditional PUT:
// If-None-Match: * to create, If-Match: "<version>" to replace. Each call
// sends a random writer id (the same on every attempt), so that when an
// attempt's reply is lost and the retry finds the ref already changed, the
// server can tell that the change was this call's own and answer success.
func (c *Client) PutRef(ctx context.Context, name string, data []byte, ifVersion string) (string, error) {
	if err := blockstore.CheckRefName(name); err != nil {
		return "", err
	}
	if len(data) > blockstore.MaxRefSize {
		return "", fmt.Errorf("%w: httpstore ref %s: %d bytes", blockstore.ErrTooLarge, name, len(data))
	}
	cond := []string{"If-None-Match", "*"}
	if ifVersion != "" {
		if !validVersion(ifVersion) {
			return "", fmt.Errorf("%w: httpstore ref %s: version %q was never issued", blockstore.ErrConflict, name, clip(ifVersion))
		}
		cond = []string{"If-Match", `"` + ifVersion + `"`}
	}
	var id [16]byte
	rand.Read(id[:])
	hdr := append(cond, writerHeader, hex.EncodeToString(id[:]), "Content-Type", "application/octet-stream")
	if data == nil {
		data = []byte{}
	}
	var version string
	err := c.do(ctx, &c.c.Puts, func(ctx context.Context) error {
		resp, err := c.send(ctx, http.MethodPut, refPath(name), data, hdr...)
		if err != nil {
			return err
		}
		drain(resp)
		v, ok := unquoteETag(resp.Header.Get("ETag"))
		if !ok {
			return permanent{fmt.Errorf("ref answer without a usable ETag (%q)", clip(resp.Header.Get("ETag")))}
		}
		c.c.BytesOut.Add(int64(len(data)))
		version = v
		return nil
	})
	if err != nil {
		return "", c.fail("put ref "+name, err)
	}
	return version, nil
}

// ServerStats returns the raw JSON of the server's /v1/stats.
func (c *Client) ServerStats(ctx context.Context) ([]byte, error) {
	var out []byte
	err := c.do(ctx, &c.c.Other, func(ctx context.Context) error {
		resp, err := c.send(ctx, http.MethodGet, "/v1/stats", nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		out, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		return err
	})
	if err != nil {
		return nil, c.fail("server stats", err)
	}
	return out, nil
}
