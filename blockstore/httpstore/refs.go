package httpstore

import (
	"blockfs/blockstore"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

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
	fixed, isFixed := h.opts.FixedRefs[name]
	if r.Method == http.MethodPut {
		switch {
		case !h.authWrite(w, r):
		case isFixed:
			w.Header().Set("Connection", "close") // its body is not read
			h.fail(w, http.StatusPreconditionFailed, "ref %s is the server's own and exists: not written", name)
		default:
			h.putRef(w, r, name)
		}
		return
	}
	if !h.authRead(w, r) {
		return
	}
	if isFixed {
		h.c.fixedRefs.Add(1)
		h.writeRef(w, r, fixed, fixedVersion, false)
		return
	}
	if h.refs == nil {
		h.fail(w, http.StatusNotImplemented, "this store keeps no refs")
		return
	}
	data, version, err := h.refs.GetRef(r.Context(), name)
	stale, passOn := false, false
	if err != nil {
		if data, version, stale = h.staleRef(r, name, err); !stale {
			h.storeError(w, r, err, "get ref %s", name)
			return
		}
	} else {
		h.storeUp()
		// A store that is itself a tier answered, maybe with the last
		// value of a serve whose store is down: pass the flag on, so a
		// layer in front of a tier says what the layer behind it says.
		if ok, _ := blockstore.Health(h.store); !ok {
			passOn = true
		}
	}
	if !validVersion(version) {
		h.fail(w, http.StatusBadGateway, "get ref %s: store gave unusable version %q", name, clip(version))
		return
	}
	if !stale {
		h.lastRefs.put(name, data, version)
	}
	if passOn {
		h.c.staleRefs.Add(1)
	}
	h.writeRef(w, r, data, version, stale || passOn)
}

// fixedVersion is the version of every FixedRefs ref: they never change.
const fixedVersion = "fixed"

// writeRef answers a ref GET or HEAD with data at version.
func (h *Handler) writeRef(w *respWriter, r *http.Request, data []byte, version string, stale bool) {
	hd := w.Header()
	if stale {
		// RFC 5861 stale-if-error: the last value this server read,
		// flagged so a client can tell.
		hd.Set("Warning", `111 - "Revalidation Failed"`)
		hd.Set(staleHeader, "1")
	}
	hd.Set("ETag", `"`+version+`"`)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(data)
	}
}

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
	data, timedOut, err := h.readBody(w, r, nil, blockstore.MaxRefSize+1)
	switch {
	case timedOut:
		h.bad(w, http.StatusRequestTimeout, "put ref %s: body not received within %v (%d bytes)", name, h.opts.BodyTimeout, len(data))
		return
	case err != nil || r.ContentLength >= 0 && int64(len(data)) != r.ContentLength:
		h.bad(w, http.StatusBadRequest, "put ref %s: body truncated after %d bytes", name, len(data))
		return
	case len(data) > blockstore.MaxRefSize:
		w.Header().Set("Connection", "close")
		h.bad(w, http.StatusRequestEntityTooLarge, "put ref %s: above MaxRefSize %d", name, blockstore.MaxRefSize)
		return
	}
	if !h.enter(w) { // the request is complete: now it counts against MaxClients
		return
	}
	defer h.leave()
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
	h.lastRefs.put(name, data, version)
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

// staleHeader flags a ref answer served from the last value read because
// the store failed.
const staleHeader = "Blockfs-Stale"

// staleRef is stale-if-error for refs: when the store fails to answer a
// ref read (not a definite answer such as not found), the last value this
// server read or wrote for that ref is served instead, flagged, so that a
// tier that loses its store keeps mounts working on the metadata they had.
// The store is marked down in the stats until a ref read succeeds again.
func (h *Handler) staleRef(r *http.Request, name string, err error) ([]byte, string, bool) {
	if r.Context().Err() != nil || errors.Is(err, blockstore.ErrNotFound) || errors.Is(err, blockstore.ErrMalformed) ||
		errors.Is(err, blockstore.ErrTooLarge) {
		return nil, "", false
	}
	h.storeDown.markDown(err)
	data, version, ok := h.lastRefs.get(name)
	if ok {
		h.c.staleRefs.Add(1)
	}
	return data, version, ok
}

func (h *Handler) storeUp() { h.storeDown.markUp() }

// Bounds of the last ref values kept for stale-if-error: refs are small
// pointers, and few.
const (
	maxLastRefs      = 1024
	maxLastRefsBytes = 16 << 20
)

// lastRefs are the last ref values a Handler read or wrote.
type lastRefs struct {
	mu    sync.Mutex
	m     map[string]refValue
	bytes int
}

type refValue struct {
	data    []byte
	version string
}

func (l *lastRefs) put(name string, data []byte, version string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]refValue)
	}
	if old, ok := l.m[name]; ok {
		l.bytes -= len(old.data)
		delete(l.m, name)
	}
	for k, v := range l.m { // evict any until it fits (refs are few)
		if len(l.m) < maxLastRefs && l.bytes+len(data) <= maxLastRefsBytes {
			break
		}
		l.bytes -= len(v.data)
		delete(l.m, k)
	}
	l.m[name] = refValue{data: append([]byte(nil), data...), version: version}
	l.bytes += len(data)
}

func (l *lastRefs) get(name string) ([]byte, string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.m[name]
	return v.data, v.version, ok
}
