package httpstore

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"blockfs/blockstore"
)

// FuzzParseRange: whatever the header, an accepted range lies inside the
// block and is not empty.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=-5", "bytes=3-", "bytes=5-2", "bytes=0-1,3-4", "bytes=99999999999999999999-", "items=0-1"} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, s string, size int64) {
		if size < 0 || size > blockstore.MaxBlockSize {
			return
		}
		start, n, status := parseRange(s, size)
		if status == http.StatusPartialContent && (start < 0 || n <= 0 || start+n > size) {
			t.Fatalf("parseRange(%q, %d) = %d+%d", s, size, start, n)
		}
	})
}

// FuzzHandler sends arbitrary methods, paths and headers, with and without
// the token, to a server over a real directory store holding one block. It
// must never panic or answer 500, and requests other than a well-formed,
// authorised PUT of a block matching its hash must not add blocks.
func FuzzHandler(f *testing.F) {
	f.Add("GET", "/v1/blocks/"+blockstore.LocatorOf([]byte("x")).String(), "bytes=0-0", "", false, []byte(nil))
	f.Add("PUT", "/v1/blocks/"+blockstore.Sum([]byte("y")).String(), "", "", true, []byte("y"))
	f.Add("PUT", "/v1/blocks/"+blockstore.Sum([]byte("y")).String(), "", "", true, []byte("not y"))
	f.Add("PUT", "/v1/refs/meta/head", "", "*", true, []byte("v"))
	f.Add("GET", "/v1/blocks/../../etc/passwd", "", "", false, []byte(nil))
	f.Add("DELETE", "/v1/blocks/zz", "", "", true, []byte(nil))
	f.Add("GET", "/v1/stats", "", "", false, []byte(nil))
	f.Fuzz(func(t *testing.T, method, path, rangeHdr, ifNoneMatch string, auth bool, body []byte) {
		store, err := blockstore.OpenDir(filepath.Join(t.TempDir(), "s"), true)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		seed := []byte("x")
		store.Put(ctx, blockstore.Sum(seed), seed)
		pool := blockstore.NewPool(store, blockstore.PoolConfig{MaxBytes: 1 << 20})
		defer pool.Close()
		h := NewHandler(store, pool, ServerOptions{Token: "t"})
		req, err := http.NewRequest(method, "http://blockfs"+path, bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		if rangeHdr != "" {
			req.Header.Set("Range", rangeHdr)
		}
		if ifNoneMatch != "" {
			req.Header.Set("If-None-Match", ifNoneMatch)
		}
		if auth {
			req.Header.Set("Authorization", "Bearer t")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusInternalServerError {
			t.Fatalf("%s %q: 500: %s", method, path, rec.Body.String())
		}
		n := 0
		store.List(ctx, func(l blockstore.Locator) error {
			n++
			if l.Hash != blockstore.Sum(seed) && (method != http.MethodPut || !auth || l.Hash != blockstore.Sum(body)) {
				t.Fatalf("%s %q stored block %v", method, path, l)
			}
			return nil
		})
		if n > 2 {
			t.Fatalf("%d blocks after one request", n)
		}
	})
}
