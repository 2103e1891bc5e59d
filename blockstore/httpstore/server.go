package httpstore

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"blockfs/blockstore"
)

// Defaults for zero ServerOptions fields.
const (
	DefaultMaxClients  = 256
	DefaultRetryAfter  = time.Second
	DefaultMaxPutBytes = 256 << 20

	DefaultHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout   = time.Minute
	DefaultWriteTimeout  = 5 * time.Minute
	DefaultIdleTimeout   = 2 * time.Minute
)

// ServerOptions configure a Handler. Zero fields take the defaults.
type ServerOptions struct {
	// Token is the bearer token. "" means none is configured: reads are
	// open and writes are refused (403).
	Token string
	// Public lets reads through without the token even when one is set.
	// Writes and the listing always need it.
	Public bool
	// MaxClients bounds requests in service at once; beyond that a
	// request gets 503 with Retry-After at once (default 256). /healthz
	// and /v1/stats are not counted, so monitoring works under load, and
	// a PUT counts only once its body is in, so a client that announces a
	// body and sends none holds no slot (only BodyTimeout of its memory).
	MaxClients int
	// RetryAfter is what 503 answers tell clients to wait (default 1s;
	// the header carries whole seconds, rounded up).
	RetryAfter time.Duration
	// MaxPutBytes bounds the memory held by PUT bodies being received
	// (default 256 MiB); a PUT that does not fit gets 503.
	MaxPutBytes int64
	// HeaderTimeout bounds reading a request's headers (default 10s), so a
	// client that dribbles them (slowloris) is cut off.
	HeaderTimeout time.Duration
	// BodyTimeout bounds reading a PUT's body (default 1m).
	BodyTimeout time.Duration
	// WriteTimeout bounds a request from its headers to the end of its
	// answer (default 5m): a slow reader holds a pool buffer while it
	// reads.
	WriteTimeout time.Duration
	// IdleTimeout bounds a kept-alive connection between requests
	// (default 2m).
	IdleTimeout time.Duration
	// Extra, if set, adds members to the /v1/stats JSON (e.g. cache and
	// store stats). It cannot replace kind, pool, http or uptime_ns.
	Extra func() map[string]any
	// FixedRefs are refs the handler answers itself, read-only, ahead of
	// the store's: the format marker of the store behind it (storeurl's
	// Stack.MarkerRef). A directory store keeps its marker as a file, not
	// a ref, and a client must check the marker of what it opens the same
	// way over http as on S3: one ref read. A PUT to one is a conflict
	// (412): it exists already.
	FixedRefs map[string][]byte
}

// Handler serves the v1 protocol over a store and a pool reading from it.
// It implements http.Handler. Bound the server's read and write timeouts
// in the http.Server: a GET holds its pool buffer while the client reads.
type Handler struct {
	store   blockstore.Store
	refs    blockstore.RefStore // as found by blockstore.As; nil if store keeps none
	pool    *blockstore.Pool
	opts    ServerOptions
	token   [32]byte // SHA-256 of the token, compared in constant time
	slots   chan struct{}
	retryS  string // Retry-After value
	started time.Time

	putBytes atomic.Int64

	writersMu sync.Mutex
	writers   map[string]refWrite // recent successful ref PUTs by writer id
	writerQ   []string            // their ids, oldest first

	lastRefs  lastRefs    // for stale-if-error (refs.go)
	storeDown storeHealth // the last store call that tells failed (health.go)

	c serverCounters
}

// refWrite remembers a successful conditional ref PUT so that a client's
// retry after a lost reply is told it succeeded instead of conflicting with
// itself.
type refWrite struct {
	name, version string
}

const maxRememberedWriters = 4096

var _ http.Handler = (*Handler)(nil)

// NewHandler returns a Handler serving store through pool (which must read
// from store, or from a cache in front of it). /v1/refs serves the
// RefStore that blockstore.As finds in store.
func NewHandler(store blockstore.Store, pool *blockstore.Pool, opts ServerOptions) *Handler {
	if store == nil || pool == nil {
		panic("httpstore: NewHandler with nil store or pool")
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultMaxClients
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = DefaultRetryAfter
	}
	if opts.MaxPutBytes <= 0 {
		opts.MaxPutBytes = DefaultMaxPutBytes
	}
	opts.setTimeouts()
	h := &Handler{
		store:   store,
		pool:    pool,
		opts:    opts,
		token:   sha256.Sum256([]byte(opts.Token)),
		slots:   make(chan struct{}, opts.MaxClients),
		retryS:  strconv.FormatInt(int64((opts.RetryAfter+time.Second-1)/time.Second), 10),
		started: time.Now(),
		writers: make(map[string]refWrite),
	}
	// Through any wrappers (a disk cache, metrics) to the store that
	// keeps refs, if one does.
	h.refs, _ = blockstore.As[blockstore.RefStore](store)
	return h
}

func (o *ServerOptions) setTimeouts() {
	for _, t := range []struct {
		d   *time.Duration
		def time.Duration
	}{{&o.HeaderTimeout, DefaultHeaderTimeout}, {&o.BodyTimeout, DefaultBodyTimeout},
		{&o.WriteTimeout, DefaultWriteTimeout}, {&o.IdleTimeout, DefaultIdleTimeout}} {
		if *t.d <= 0 {
			*t.d = t.def
		}
	}
}

// NewServer returns the http.Server to run h in, every phase of a request
// bounded by h's options: headers (HeaderTimeout), the idle time between
// requests (IdleTimeout) and the time to answer (WriteTimeout). The body of
// a PUT is bounded by the Handler itself (BodyTimeout), not by the server's
// ReadTimeout: that one would also cut off the context of a GET still
// waiting for its block.
func NewServer(h *Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: h.opts.HeaderTimeout,
		WriteTimeout:      h.opts.WriteTimeout,
		IdleTimeout:       h.opts.IdleTimeout,
	}
}

// request kinds, for counting
const (
	kindBlockGet = iota
	kindBlockHead
	kindBlockPut
	kindBlockDelete
	kindList
	kindRefGet
	kindRefPut
	kindStats
	kindHealth
	kindOther
	nKinds
)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.c.inFlight.Add(1)
	defer h.c.inFlight.Add(-1)
	rw := &respWriter{ResponseWriter: w}
	defer func() {
		if r.ContentLength != 0 && !rw.bodyRead {
			// Answered without reading the body (refused, unauthorised,
			// malformed, timed out): read no further, or net/http would
			// wait for the rest of the body after the answer, for ever if
			// it never comes. The connection closes once the answer is out.
			http.NewResponseController(rw).SetReadDeadline(time.Now())
		}
		h.c.bytesOut.Add(rw.n)
		if !rw.aborted {
			h.c.status(rw.status)
		}
	}()
	h.route(rw, r)
}

func (h *Handler) route(w *respWriter, r *http.Request) {
	p := r.URL.Path
	if r.Method != http.MethodPut && r.ContentLength != 0 {
		h.c.kinds[h.kindOf(r)].Add(1)
		h.refuseBody(w, r)
		return
	}
	switch {
	case p == "/healthz":
		h.c.kinds[kindHealth].Add(1)
		if h.allowMethods(w, r, http.MethodGet, http.MethodHead) && h.authRead(w, r) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "ok\n")
		}
		return
	case p == "/v1/stats":
		h.c.kinds[kindStats].Add(1)
		if h.allowMethods(w, r, http.MethodGet, http.MethodHead) && h.authRead(w, r) {
			h.serveStats(w)
		}
		return
	}

	// Everything else is counted against MaxClients, once its request is
	// complete: a PUT takes its slot after its body is in (enter), so a
	// client that announces a body and never sends it holds no slot.
	if r.Method != http.MethodPut {
		if !h.enter(w) {
			h.c.kinds[h.kindOf(r)].Add(1)
			return
		}
		defer h.leave()
	}

	if r.URL.RawPath != "" || strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../") ||
		strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") {
		h.c.kinds[kindOther].Add(1)
		h.bad(w, http.StatusBadRequest, "bad path %q", clip(r.URL.EscapedPath()))
		return
	}
	switch {
	case p == "/v1/blocks":
		h.c.kinds[kindList].Add(1)
		if h.allowMethods(w, r, http.MethodGet) && h.authWrite(w, r) {
			h.serveList(w, r)
		}
	case strings.HasPrefix(p, "/v1/blocks/"):
		h.serveBlock(w, r, strings.TrimPrefix(p, "/v1/blocks/"))
	case strings.HasPrefix(p, "/v1/refs/"):
		h.serveRef(w, r, strings.TrimPrefix(p, "/v1/refs/"))
	default:
		h.c.kinds[kindOther].Add(1)
		h.fail(w, http.StatusNotFound, "no route %s", clip(p))
	}
}

// enter takes one of the MaxClients slots, or answers 503 at once.
func (h *Handler) enter(w *respWriter) bool {
	select {
	case h.slots <- struct{}{}:
		return true
	default:
		h.busy(w, "server busy: %d requests in service", h.opts.MaxClients)
		return false
	}
}

func (h *Handler) leave() { <-h.slots }

// refuseBody answers a request that announces a body its method does not
// take (a GET with Content-Length: 10 that never sends the 10 bytes was
// how clients held slots forever). The connection is closed rather than
// read on: net/http would otherwise wait for the body after the answer.
func (h *Handler) refuseBody(w *respWriter, r *http.Request) {
	w.Header().Set("Connection", "close") // and ServeHTTP reads no further
	h.bad(w, http.StatusBadRequest, "%s %s takes no request body", r.Method, clip(r.URL.Path))
}

// readBody reads a PUT body into dst, or up to limit bytes of it (dst
// nil), within BodyTimeout; timedOut says the client was too slow.
func (h *Handler) readBody(w *respWriter, r *http.Request, dst []byte, limit int64) (data []byte, timedOut bool, err error) {
	rc := http.NewResponseController(w)
	bounded := rc.SetReadDeadline(time.Now().Add(h.opts.BodyTimeout)) == nil
	if dst != nil {
		var n int
		n, err = io.ReadFull(r.Body, dst)
		data = dst[:n]
	} else {
		data, err = io.ReadAll(io.LimitReader(r.Body, limit))
	}
	h.c.bytesIn.Add(int64(len(data)))
	w.bodyRead = err == nil && (dst != nil || int64(len(data)) < limit) // (else more follows)
	switch {
	case err != nil:
		w.Header().Set("Connection", "close") // and ServeHTTP reads no further
	case bounded:
		// The body is in. Cleared, because net/http's check that the
		// client is still there reads under the same deadline, and would
		// cancel the request's context while the store works.
		rc.SetReadDeadline(time.Time{})
	}
	return data, errors.Is(err, os.ErrDeadlineExceeded), err
}

// kindOf classifies a request for counting before it is parsed.
func (h *Handler) kindOf(r *http.Request) int {
	p := r.URL.Path
	switch {
	case p == "/v1/blocks":
		return kindList
	case strings.HasPrefix(p, "/v1/blocks/"):
		switch r.Method {
		case http.MethodGet:
			return kindBlockGet
		case http.MethodHead:
			return kindBlockHead
		case http.MethodPut:
			return kindBlockPut
		case http.MethodDelete:
			return kindBlockDelete
		}
	case strings.HasPrefix(p, "/v1/refs/"):
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return kindRefGet
		case http.MethodPut:
			return kindRefPut
		}
	}
	return kindOther
}

// writerHeader carries a random id per PutRef call (the same on each of
// its attempts), so a retry after a lost reply is recognised.
const writerHeader = "Blockfs-Writer"

func (h *Handler) serveStats(w *respWriter) {
	out := map[string]any{}
	if h.opts.Extra != nil {
		for k, v := range h.opts.Extra() {
			out[k] = v
		}
	}
	out["kind"] = "server"
	out["pool"] = h.pool.Stats()
	out["http"] = h.Stats()
	out["uptime_ns"] = time.Since(h.started).Nanoseconds()
	out["healthy"], out["reason"] = h.Health()
	b, err := json.Marshal(out)
	if err != nil {
		h.fail(w, http.StatusInternalServerError, "stats: %v", err)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func (h *Handler) allowMethods(w *respWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	h.bad(w, http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, clip(r.URL.Path))
	return false
}

// storeError answers for an error from the pool or the store.
func (h *Handler) storeError(w *respWriter, r *http.Request, err error, format string, args ...any) {
	what := fmt.Sprintf(format, args...)
	switch {
	case r.Context().Err() != nil && errors.Is(err, r.Context().Err()):
		h.canceled(w)
	case errors.Is(err, blockstore.ErrNotFound):
		h.fail(w, http.StatusNotFound, "%s: not found", what)
	case errors.Is(err, blockstore.ErrConflict):
		h.fail(w, http.StatusPreconditionFailed, "%s: %v", what, err)
	case errors.Is(err, blockstore.ErrBusy):
		h.busy(w, "%s: %v", what, err)
	case errors.Is(err, blockstore.ErrTooLarge):
		h.bad(w, http.StatusRequestEntityTooLarge, "%s: %v", what, err)
	case errors.Is(err, blockstore.ErrMalformed):
		h.bad(w, http.StatusBadRequest, "%s: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded):
		h.storeDown.markDown(err)
		h.fail(w, http.StatusGatewayTimeout, "%s: store timed out: %v", what, err)
	default: // ErrCorrupt (the store gave wrong bytes) and plain failures
		h.storeDown.markDown(err)
		h.fail(w, http.StatusBadGateway, "%s: store failed: %v", what, err)
	}
}

func (h *Handler) busy(w *respWriter, format string, args ...any) {
	h.c.busy.Add(1)
	w.Header().Set("Retry-After", h.retryS)
	h.fail(w, http.StatusServiceUnavailable, format, args...)
}

// bad answers a client error that is the request's fault.
func (h *Handler) bad(w *respWriter, status int, format string, args ...any) {
	h.c.badRequests.Add(1)
	h.fail(w, status, format, args...)
}

// statusClientClosed answers a request whose client went away (nginx's
// 499). Nobody should read it, but writing nothing would make net/http send
// a 200.
const statusClientClosed = 499

// canceled answers a request whose client went away.
func (h *Handler) canceled(w *respWriter) {
	h.c.canceled.Add(1)
	w.aborted = true
	h.fail(w, statusClientClosed, "request canceled")
}

// fail writes a one-line plain-text error.
func (h *Handler) fail(w *respWriter, status int, format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ") + "\n"
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Length", strconv.Itoa(len(msg)))
	hd.Del("ETag")
	hd.Del("Cache-Control")
	w.WriteHeader(status)
	io.WriteString(w, msg)
}

func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// respWriter records the status and the body bytes written.
type respWriter struct {
	http.ResponseWriter
	status  int
	n       int64
	wrote   bool
	aborted bool // no answer reached the client: not counted by status
	// bodyRead: the request's body was read in full (readBody).
	bodyRead bool
}

func (w *respWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status = code
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *respWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
