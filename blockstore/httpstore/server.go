package httpstore

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	// and /v1/stats are not counted, so monitoring works under load.
	MaxClients int
	// RetryAfter is what 503 answers tell clients to wait (default 1s;
	// the header carries whole seconds, rounded up).
	RetryAfter time.Duration
	// MaxPutBytes bounds the memory held by PUT bodies being received
	// (default 256 MiB); a PUT that does not fit gets 503.
	MaxPutBytes int64
	// Extra, if set, adds members to the /v1/stats JSON (e.g. cache and
	// store stats). It cannot replace kind, pool, http or uptime_ns.
	Extra func() map[string]any
	// Refs serves /v1/refs when the block store given to NewHandler is a
	// wrapper (a disk cache, metrics) around the store that keeps them.
	Refs blockstore.RefStore
}

// Handler serves the v1 protocol over a store and a pool reading from it.
// It implements http.Handler. Bound the server's read and write timeouts
// in the http.Server: a GET holds its pool buffer while the client reads.
type Handler struct {
	store   blockstore.Store
	refs    blockstore.RefStore // nil if store keeps none
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
// from store, or from a cache in front of it).
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
	h.refs, _ = store.(blockstore.RefStore)
	if opts.Refs != nil {
		h.refs = opts.Refs
	}
	return h
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
		h.c.bytesOut.Add(rw.n)
		if !rw.aborted {
			h.c.status(rw.status)
		}
	}()
	h.route(rw, r)
}

func (h *Handler) route(w *respWriter, r *http.Request) {
	p := r.URL.Path
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

	// Everything else is counted against MaxClients.
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		h.c.kinds[h.kindOf(r)].Add(1)
		h.busy(w, "server busy: %d requests in service", h.opts.MaxClients)
		return
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

// serveBlock handles /v1/blocks/<locator> (GET, HEAD) and /v1/blocks/<hash>
// (HEAD, PUT, DELETE).
func (h *Handler) serveBlock(w *respWriter, r *http.Request, name string) {
	kind := h.kindOf(r)
	h.c.kinds[kind].Add(1)
	if strings.Contains(name, "+") {
		if !h.allowMethods(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		loc, err := blockstore.ParseLocator(name)
		if err != nil {
			h.bad(w, http.StatusBadRequest, "%v", err)
			return
		}
		if h.authRead(w, r) {
			h.getBlock(w, r, loc)
		}
		return
	}
	if r.Method == http.MethodGet {
		h.bad(w, http.StatusBadRequest, "GET needs /v1/blocks/<hash>+<size>, got %q", clip(name))
		return
	}
	if !h.allowMethods(w, r, http.MethodHead, http.MethodPut, http.MethodDelete) {
		return
	}
	hash, err := blockstore.ParseHash(name)
	if err != nil {
		h.bad(w, http.StatusBadRequest, "%v", err)
		return
	}
	switch r.Method {
	case http.MethodHead:
		if h.authRead(w, r) {
			h.hasBlock(w, r, hash)
		}
	case http.MethodPut:
		if h.authWrite(w, r) {
			h.putBlock(w, r, hash)
		}
	case http.MethodDelete:
		if h.authWrite(w, r) {
			h.deleteBlock(w, r, hash)
		}
	}
}

func (h *Handler) getBlock(w *respWriter, r *http.Request, loc blockstore.Locator) {
	buf, err := h.pool.Get(r.Context(), loc)
	if err != nil {
		h.storeError(w, r, err, "get %v", loc)
		return
	}
	defer buf.Release()
	data := buf.Bytes()
	etag := `"` + loc.Hash.String() + `"`
	hd := w.Header()
	hd.Set("ETag", etag)
	hd.Set("Cache-Control", "max-age=31536000, immutable")
	hd.Set("Accept-Ranges", "bytes")
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagListHas(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Type", "application/octet-stream")
	status := http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" {
		if ir := r.Header.Get("If-Range"); ir == "" || ir == etag {
			start, n, st := parseRange(rg, loc.Size)
			switch st {
			case http.StatusPartialContent:
				status = st
				data = data[start : start+n]
				hd.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+n-1, loc.Size))
			case http.StatusRequestedRangeNotSatisfiable:
				hd.Del("Content-Type")
				hd.Set("Content-Range", fmt.Sprintf("bytes */%d", loc.Size))
				h.fail(w, st, "range %q not satisfiable for %d bytes", clip(rg), loc.Size)
				return
			}
		}
	}
	hd.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(data) // a failed write is the client's problem: it is gone
	}
}

// parseRange interprets a Range header for a body of size bytes. It returns
// 206 with the one range to send, 416 when the range cannot be satisfied,
// or 0 when the header is to be ignored (not bytes, invalid, or several
// ranges: RFC 9110 lets a server send the whole body instead).
func parseRange(s string, size int64) (start, n int64, status int) {
	spec, ok := strings.CutPrefix(s, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, 0
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, 0
	}
	if first == "" { // suffix: the last N bytes
		suffix, ok := parseDigits(last)
		if !ok {
			return 0, 0, 0
		}
		if suffix == 0 || size == 0 {
			return 0, 0, http.StatusRequestedRangeNotSatisfiable
		}
		start = max(0, size-suffix)
		return start, size - start, http.StatusPartialContent
	}
	start, ok = parseDigits(first)
	if !ok {
		return 0, 0, 0
	}
	end := size - 1
	if last != "" {
		e, ok := parseDigits(last)
		if !ok || e < start {
			return 0, 0, 0
		}
		end = min(e, size-1)
	}
	if start >= size {
		return 0, 0, http.StatusRequestedRangeNotSatisfiable
	}
	return start, end - start + 1, http.StatusPartialContent
}

// parseDigits parses a non-empty run of decimal digits, saturating far
// above any block size instead of overflowing.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if v < 1<<50 {
			v = v*10 + int64(c-'0')
		}
	}
	return v, true
}

// etagListHas reports whether an If-None-Match list names etag (or is *).
func etagListHas(list, etag string) bool {
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if e == "*" || strings.TrimPrefix(e, "W/") == etag {
			return true
		}
	}
	return false
}

func (h *Handler) hasBlock(w *respWriter, r *http.Request, hash blockstore.Hash) {
	ok, err := h.store.Has(r.Context(), hash)
	if err != nil {
		h.storeError(w, r, err, "has %v", hash)
		return
	}
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) putBlock(w *respWriter, r *http.Request, hash blockstore.Hash) {
	n := r.ContentLength
	switch {
	case n < 0:
		h.bad(w, http.StatusLengthRequired, "put %v: Content-Length required", hash)
		return
	case n > blockstore.MaxBlockSize:
		w.Header().Set("Connection", "close") // the body stays unread
		h.bad(w, http.StatusRequestEntityTooLarge, "put %v: %d bytes, above MaxBlockSize %d", hash, n, blockstore.MaxBlockSize)
		return
	}
	if !h.reservePut(n) {
		w.Header().Set("Connection", "close")
		h.busy(w, "put %v: %d bytes of PUT bodies already being received", hash, h.putBytes.Load())
		return
	}
	defer h.putBytes.Add(-n)
	data := make([]byte, n)
	got, err := io.ReadFull(r.Body, data)
	h.c.bytesIn.Add(int64(got))
	if err != nil {
		h.bad(w, http.StatusBadRequest, "put %v: body truncated after %d of %d bytes", hash, got, n)
		return
	}
	// The server reads no further than Content-Length, so there is nothing
	// beyond it to check; a client that sends more breaks the next request
	// on the connection, not this one.
	if sum := blockstore.Sum(data); sum != hash {
		h.bad(w, http.StatusBadRequest, "put %v: body hashes to %v", hash, sum)
		return
	}
	existed, err := h.store.Has(r.Context(), hash)
	if err != nil {
		h.storeError(w, r, err, "put %v", hash)
		return
	}
	if err := h.store.Put(r.Context(), hash, data); err != nil {
		h.storeError(w, r, err, "put %v", hash)
		return
	}
	if existed {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusCreated)
	}
}

// reservePut takes n bytes of the PUT memory budget, without waiting.
func (h *Handler) reservePut(n int64) bool {
	for {
		cur := h.putBytes.Load()
		if cur > 0 && cur+n > h.opts.MaxPutBytes {
			return false // (one PUT alone always fits: n <= MaxBlockSize)
		}
		if h.putBytes.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func (h *Handler) deleteBlock(w *respWriter, r *http.Request, hash blockstore.Hash) {
	if err := h.store.Delete(r.Context(), hash); err != nil {
		h.storeError(w, r, err, "delete %v", hash)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// serveList streams the store's listing, one locator a line. A store error
// before the first line is a 502; after it, the connection is aborted so
// the client cannot mistake a partial listing for a whole one.
func (h *Handler) serveList(w *respWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	bw := bufio.NewWriterSize(w, 32<<10)
	lines := 0
	var line [64 + 1 + 20 + 1]byte
	err := h.store.List(r.Context(), func(loc blockstore.Locator) error {
		b, _ := loc.MarshalText()
		b = append(append(line[:0], b...), '\n')
		lines++
		_, err := bw.Write(b)
		return err
	})
	if err == nil {
		err = bw.Flush()
	}
	switch {
	case err == nil:
		return
	case lines == 0 && !w.wrote:
		h.storeError(w, r, err, "list")
		return
	}
	w.aborted = true
	panic(http.ErrAbortHandler)
}

// serveRef handles /v1/refs/<name>.
func (h *Handler) serveRef(w *respWriter, r *http.Request, name string) {
	h.c.kinds[h.kindOf(r)].Add(1)
	if !h.allowMethods(w, r, http.MethodGet, http.MethodHead, http.MethodPut) {
		return
	}
	if err := blockstore.CheckRefName(name); err != nil {
		h.bad(w, http.StatusBadRequest, "%v", err)
		return
	}
	if r.Method == http.MethodPut {
		if h.authWrite(w, r) {
			h.putRef(w, r, name)
		}
		return
	}
	if !h.authRead(w, r) {
		return
	}
	if h.refs == nil {
		h.fail(w, http.StatusNotImplemented, "this store keeps no refs")
		return
	}
	data, version, err := h.refs.GetRef(r.Context(), name)
	if err != nil {
		h.storeError(w, r, err, "get ref %s", name)
		return
	}
	if !validVersion(version) {
		h.fail(w, http.StatusBadGateway, "get ref %s: store gave unusable version %q", name, clip(version))
		return
	}
	hd := w.Header()
	hd.Set("ETag", `"`+version+`"`)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(data)
	}
}

// writerHeader carries a random id per PutRef call (the same on each of
// its attempts), so a retry after a lost reply is recognised.
const writerHeader = "Blockfs-Writer"

func (h *Handler) putRef(w *respWriter, r *http.Request, name string) {
	if h.refs == nil {
		h.fail(w, http.StatusNotImplemented, "this store keeps no refs")
		return
	}
	inm, im := r.Header.Get("If-None-Match"), r.Header.Get("If-Match")
	var ifVersion string
	switch {
	case inm != "" && im != "":
		h.bad(w, http.StatusBadRequest, "put ref %s: both If-Match and If-None-Match", name)
		return
	case inm == "*":
	case inm != "":
		h.bad(w, http.StatusBadRequest, "put ref %s: If-None-Match must be *", name)
		return
	case im != "":
		v, ok := unquoteETag(im)
		if !ok {
			h.bad(w, http.StatusBadRequest, "put ref %s: If-Match must be one strong ETag \"<version>\"", name)
			return
		}
		ifVersion = v
	default:
		h.bad(w, http.StatusPreconditionRequired, "put ref %s: If-None-Match: * or If-Match: \"<version>\" required", name)
		return
	}
	if r.ContentLength > blockstore.MaxRefSize {
		w.Header().Set("Connection", "close")
		h.bad(w, http.StatusRequestEntityTooLarge, "put ref %s: %d bytes, above MaxRefSize %d", name, r.ContentLength, blockstore.MaxRefSize)
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, blockstore.MaxRefSize+1))
	h.c.bytesIn.Add(int64(len(data)))
	switch {
	case err != nil || r.ContentLength >= 0 && int64(len(data)) != r.ContentLength:
		h.bad(w, http.StatusBadRequest, "put ref %s: body truncated after %d bytes", name, len(data))
		return
	case len(data) > blockstore.MaxRefSize:
		w.Header().Set("Connection", "close")
		h.bad(w, http.StatusRequestEntityTooLarge, "put ref %s: above MaxRefSize %d", name, blockstore.MaxRefSize)
		return
	}
	writer := r.Header.Get(writerHeader)
	if len(writer) > 64 {
		writer = ""
	}
	version, err := h.refs.PutRef(r.Context(), name, data, ifVersion)
	if errors.Is(err, blockstore.ErrConflict) && writer != "" {
		if prev, ok := h.rememberedWrite(writer); ok && prev.name == name {
			version, err = prev.version, nil // our own earlier attempt won
		}
	}
	if err != nil {
		h.storeError(w, r, err, "put ref %s", name)
		return
	}
	if !validVersion(version) {
		h.fail(w, http.StatusBadGateway, "put ref %s: store gave unusable version %q", name, clip(version))
		return
	}
	if writer != "" {
		h.rememberWrite(writer, refWrite{name: name, version: version})
	}
	w.Header().Set("ETag", `"`+version+`"`)
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) rememberWrite(writer string, rw refWrite) {
	h.writersMu.Lock()
	defer h.writersMu.Unlock()
	if _, ok := h.writers[writer]; !ok {
		h.writerQ = append(h.writerQ, writer)
		if len(h.writerQ) > maxRememberedWriters {
			delete(h.writers, h.writerQ[0])
			h.writerQ = h.writerQ[1:]
		}
	}
	h.writers[writer] = rw
}

func (h *Handler) rememberedWrite(writer string) (refWrite, bool) {
	h.writersMu.Lock()
	defer h.writersMu.Unlock()
	rw, ok := h.writers[writer]
	return rw, ok
}

// validVersion reports whether v can travel as a strong ETag: non-empty
// ETag characters (visible ASCII but '"').
func validVersion(v string) bool {
	if v == "" || len(v) > 256 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f || c == '"' {
			return false
		}
	}
	return true
}

// unquoteETag returns the version inside one strong ETag "<version>".
func unquoteETag(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	v := s[1 : len(s)-1]
	return v, validVersion(v)
}

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

// authRead lets a read through if the server is public or has no token,
// and otherwise wants the token. A presented wrong token is always refused.
func (h *Handler) authRead(w *respWriter, r *http.Request) bool {
	tok, present := bearer(r)
	switch {
	case present && h.opts.Token != "" && !h.tokenOK(tok):
		h.unauthorized(w, "wrong token")
		return false
	case present && h.opts.Token == "" && tok != "":
		return true // nothing to check against; reads are open
	case h.opts.Token == "" || h.opts.Public:
		return true
	case !present:
		h.unauthorized(w, "token required")
		return false
	}
	return true // present and right
}

// authWrite wants the token; with none configured, writes are refused.
func (h *Handler) authWrite(w *respWriter, r *http.Request) bool {
	tok, present := bearer(r)
	switch {
	case h.opts.Token == "":
		h.c.unauthorized.Add(1)
		h.fail(w, http.StatusForbidden, "writes disabled: the server has no token configured")
		return false
	case !present:
		h.unauthorized(w, "token required")
		return false
	case !h.tokenOK(tok):
		h.unauthorized(w, "wrong token")
		return false
	}
	return true
}

func (h *Handler) tokenOK(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], h.token[:]) == 1
}

// bearer returns the token of an "Authorization: Bearer" header and
// whether there was an Authorization header at all.
func bearer(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	if a == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(a, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true // present, but no bearer token: never right
	}
	return strings.TrimSpace(tok), true
}

func (h *Handler) unauthorized(w *respWriter, msg string) {
	h.c.unauthorized.Add(1)
	w.Header().Set("WWW-Authenticate", `Bearer realm="blockfs"`)
	h.fail(w, http.StatusUnauthorized, "%s", msg)
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
		h.fail(w, http.StatusGatewayTimeout, "%s: store timed out: %v", what, err)
	default: // ErrCorrupt (the store gave wrong bytes) and plain failures
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
