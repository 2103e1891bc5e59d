package httpstore

import (
	"blockfs/blockstore"
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

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
	data, timedOut, err := h.readBody(w, r, make([]byte, n), 0)
	switch {
	case timedOut:
		h.bad(w, http.StatusRequestTimeout, "put %v: body not received within %v (%d of %d bytes)", hash, h.opts.BodyTimeout, len(data), n)
		return
	case err != nil:
		h.bad(w, http.StatusBadRequest, "put %v: body truncated after %d of %d bytes", hash, len(data), n)
		return
	}
	if !h.enter(w) { // the request is complete: now it counts against MaxClients
		return
	}
	defer h.leave()
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
