package httpstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
)

// 64 overlapping GETs of one cold block are one store read; later GETs
// are pool hits and none.
func TestOverlappingGetsShareOneFetch(t *testing.T) {
	e := newEnv(t, ServerOptions{}, true)
	data := randBlock(1, 256<<10)
	loc := e.put(t, data)
	c := e.client(t, ClientOptions{})

	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			dst := make([]byte, loc.Size)
			got, err := c.Get(context.Background(), loc, dst)
			switch {
			case err != nil:
				errs <- err
			case got != len(data) || !bytes.Equal(dst, data):
				errs <- fmt.Errorf("wrong bytes (%d)", got)
			}
		})
	}
	<-e.gate.Entered // the one fetch has started...
	waitFor(t, "all 64 GETs to reach the pool", func() bool { return e.pool.Stats().Gets == n })
	e.gate.Open() // ...and everyone is waiting for it
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := e.count.GetsOf(loc.Hash); got != 1 {
		t.Fatalf("store reads for %d overlapping GETs = %d, want 1", n, got)
	}

	dst := make([]byte, loc.Size)
	for range 16 {
		if _, err := c.Get(context.Background(), loc, dst); err != nil || !bytes.Equal(dst, data) {
			t.Fatalf("consecutive get: %v", err)
		}
	}
	if got := e.count.Gets(); got != 1 {
		t.Fatalf("store reads after 16 consecutive GETs = %d, want still 1", got)
	}
	// A client can have the whole body before the handler has counted it.
	waitFor(t, "the server to finish accounting", func() bool { return e.h.Stats().InFlight == 0 })
	ps, hs := e.pool.Stats(), e.h.Stats()
	if ps.Shared != n-1 || ps.Hits != 16 {
		t.Errorf("pool stats shared=%d hits=%d, want %d and 16", ps.Shared, ps.Hits, n-1)
	}
	if hs.BlockGets != n+16 || hs.Status2xx != n+16+1 /* healthz */ || hs.BytesOut < (n+16)*loc.Size {
		t.Errorf("server stats %+v", hs)
	}
}

func TestGetHeadersAndRanges(t *testing.T) {
	e := newEnv(t, ServerOptions{}, false)
	data := randBlock(2, 1000)
	loc := e.put(t, data)
	url := e.srv.URL + "/v1/blocks/" + loc.String()
	etag := `"` + loc.Hash.String() + `"`

	resp, body := do(t, "GET", url, nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(body))
	}
	for k, want := range map[string]string{
		"ETag": etag, "Content-Length": "1000", "Accept-Ranges": "bytes",
		"Content-Type": "application/octet-stream",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("GET %s = %q, want %q", k, got, want)
		}
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
		t.Errorf("Cache-Control %q", cc)
	}
	hresp, hbody := do(t, "HEAD", url, nil)
	if hresp.StatusCode != 200 || len(hbody) != 0 || hresp.Header.Get("ETag") != etag || hresp.ContentLength != 1000 {
		t.Errorf("HEAD: %d, len %d, etag %q, body %d", hresp.StatusCode, hresp.ContentLength, hresp.Header.Get("ETag"), len(hbody))
	}

	for _, tc := range []struct {
		rng, ifRange string
		status       int
		start, end   int // inclusive, for 206
	}{
		{rng: "bytes=0-0", status: 206, start: 0, end: 0},
		{rng: "bytes=0-99", status: 206, start: 0, end: 99},
		{rng: "bytes=500-599", status: 206, start: 500, end: 599},
		{rng: "bytes=900-", status: 206, start: 900, end: 999},
		{rng: "bytes=990-5000", status: 206, start: 990, end: 999},
		{rng: "bytes=999-999", status: 206, start: 999, end: 999},
		{rng: "bytes=-10", status: 206, start: 990, end: 999},
		{rng: "bytes=-5000", status: 206, start: 0, end: 999},
		{rng: "bytes=0-99", ifRange: etag, status: 206, start: 0, end: 99},
		{rng: "bytes=1000-", status: 416},
		{rng: "bytes=123456789012345678901234567890-", status: 416},
		{rng: "bytes=-0", status: 416},
		{rng: "bytes=5-1", status: 200},                      // invalid: ignored
		{rng: "bytes=0-1,5-6", status: 200},                  // several: whole body
		{rng: "items=0-1", status: 200},                      // not bytes
		{rng: "bytes=x-", status: 200},                       // junk
		{rng: "bytes=0-99", ifRange: `"other"`, status: 200}, // stale validator
	} {
		hdr := []string{"Range", tc.rng}
		if tc.ifRange != "" {
			hdr = append(hdr, "If-Range", tc.ifRange)
		}
		resp, body := do(t, "GET", url, nil, hdr...)
		if resp.StatusCode != tc.status {
			t.Errorf("Range %q: status %d, want %d (%s)", tc.rng, resp.StatusCode, tc.status, body)
			continue
		}
		switch tc.status {
		case 206:
			want := fmt.Sprintf("bytes %d-%d/1000", tc.start, tc.end)
			if cr := resp.Header.Get("Content-Range"); cr != want || !bytes.Equal(body, data[tc.start:tc.end+1]) ||
				resp.ContentLength != int64(tc.end-tc.start+1) {
				t.Errorf("Range %q: Content-Range %q (want %q), %d bytes, right bytes %v", tc.rng, cr, want, len(body), bytes.Equal(body, data[tc.start:tc.end+1]))
			}
		case 416:
			if cr := resp.Header.Get("Content-Range"); cr != "bytes */1000" {
				t.Errorf("Range %q: Content-Range %q", tc.rng, cr)
			}
		case 200:
			if !bytes.Equal(body, data) {
				t.Errorf("Range %q: 200 without the whole block", tc.rng)
			}
		}
	}

	if resp, _ := do(t, "GET", url, nil, "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", resp.StatusCode)
	}
	if got := e.count.Gets(); got != 1 {
		t.Errorf("store reads = %d, want 1 (the rest are pool hits)", got)
	}

	missing := blockstore.LocatorOf([]byte("not stored"))
	if resp, _ := do(t, "GET", e.srv.URL+"/v1/blocks/"+missing.String(), nil); resp.StatusCode != 404 {
		t.Errorf("missing block: %d, want 404", resp.StatusCode)
	}
	// A locator whose size is wrong: the pool's verification fails: 502.
	wrong := blockstore.Locator{Hash: loc.Hash, Size: 999}
	if resp, _ := do(t, "GET", e.srv.URL+"/v1/blocks/"+wrong.String(), nil); resp.StatusCode != 502 {
		t.Errorf("wrong-size locator: %d, want 502", resp.StatusCode)
	}
	// Existence by hash.
	if resp, _ := do(t, "HEAD", e.srv.URL+"/v1/blocks/"+loc.Hash.String(), nil); resp.StatusCode != 200 {
		t.Errorf("HEAD hash: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "HEAD", e.srv.URL+"/v1/blocks/"+missing.Hash.String(), nil); resp.StatusCode != 404 {
		t.Errorf("HEAD missing hash: %d", resp.StatusCode)
	}
}

// MaxClients 4 with four fetches held in the store: more requests get 503
// with Retry-After at once; a retrying client gets its data once the store
// lets go.
func TestOverloadSheds(t *testing.T) {
	e := newEnv(t, ServerOptions{MaxClients: 4}, true)
	var locs []blockstore.Locator
	var blocks [][]byte
	for i := range 4 {
		b := randBlock(uint64(10+i), 4096)
		blocks = append(blocks, b)
		locs = append(locs, e.put(t, b))
	}
	type res struct {
		status int
		body   []byte
	}
	held := make(chan res, 4)
	for _, loc := range locs {
		go func() {
			resp, err := http.Get(e.srv.URL + "/v1/blocks/" + loc.String())
			if err != nil {
				held <- res{status: -1}
				return
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			buf.ReadFrom(resp.Body)
			held <- res{resp.StatusCode, buf.Bytes()}
		}()
	}
	for range 4 {
		<-e.gate.Entered
	}
	// All four slots are taken: refused at once, whatever the request.
	for _, path := range []string{"/v1/blocks/" + locs[0].String(), "/v1/blocks/" + locs[1].Hash.String(), "/v1/refs/x"} {
		resp := raw(t, addr(e), "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n", false)
		if path == "/v1/blocks/"+locs[1].Hash.String() {
			resp = raw(t, addr(e), "HEAD "+path+" HTTP/1.1\r\nHost: x\r\n\r\n", false)
		}
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
			t.Errorf("%s under load: %d, Retry-After %q; want 503, 1", path, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	// Monitoring still answers.
	if resp, _ := do(t, "GET", e.srv.URL+"/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("healthz under load: %d", resp.StatusCode)
	}
	busyBefore := e.h.Stats().Busy503

	c := e.client(t, ClientOptions{MaxAttempts: 10000, RetryBase: 1e6, RetryMax: 5e6}) // 1ms, 5ms
	got := make(chan error, 1)
	go func() {
		dst := make([]byte, locs[0].Size)
		_, err := c.Get(context.Background(), locs[0], dst)
		if err == nil && !bytes.Equal(dst, blocks[0]) {
			err = errors.New("wrong bytes")
		}
		got <- err
	}()
	waitFor(t, "the client to be refused twice", func() bool { return e.h.Stats().Busy503 >= busyBefore+2 })
	e.gate.Open()
	if err := <-got; err != nil {
		t.Fatalf("retrying client: %v", err)
	}
	for range 4 {
		if r := <-held; r.status != 200 {
			t.Errorf("held request: %d", r.status)
		}
	}
	if cs := c.Stats(); cs.Busy < 1 || cs.Retries < 1 || cs.Errors != 0 {
		t.Errorf("client stats %+v", cs)
	}
}

func TestAuth(t *testing.T) {
	const token = "s3cret"
	data := []byte("some block")
	loc := blockstore.LocatorOf(data)
	type req struct {
		name, method, path string
		body               []byte
		hdr                []string
	}
	reqs := []req{
		{"get", "GET", "/v1/blocks/" + loc.String(), nil, nil},
		{"has", "HEAD", "/v1/blocks/" + loc.Hash.String(), nil, nil},
		{"ref-get", "GET", "/v1/refs/head", nil, nil},
		{"stats", "GET", "/v1/stats", nil, nil},
		{"healthz", "GET", "/healthz", nil, nil},
		{"put", "PUT", "/v1/blocks/" + loc.Hash.String(), data, nil},
		{"ref-put", "PUT", "/v1/refs/other", []byte("v"), []string{"If-None-Match", "*"}},
		{"list", "GET", "/v1/blocks", nil, nil},
		{"delete", "DELETE", "/v1/blocks/" + blockstore.Sum([]byte("x")).String(), nil, nil},
	}
	isWrite := func(name string) bool {
		return name == "put" || name == "ref-put" || name == "list" || name == "delete"
	}
	okStatus := map[string]int{"get": 200, "has": 200, "ref-get": 200, "stats": 200, "healthz": 200,
		"put": 200, "ref-put": 200, "list": 200, "delete": 404}

	for _, mode := range []struct {
		name   string
		opts   ServerOptions
		expect func(r req, tok string) int
	}{
		{"private", ServerOptions{Token: token}, func(r req, tok string) int {
			if tok != token {
				return 401
			}
			return okStatus[r.name]
		}},
		{"public", ServerOptions{Token: token, Public: true}, func(r req, tok string) int {
			if tok == token || tok == "" && !isWrite(r.name) {
				return okStatus[r.name]
			}
			return 401
		}},
		{"no-token", ServerOptions{}, func(r req, tok string) int {
			if isWrite(r.name) {
				return 403
			}
			return okStatus[r.name]
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t, mode.opts, false)
			e.put(t, data)
			if _, err := e.dir.PutRef(context.Background(), "head", []byte("v"), ""); err != nil {
				t.Fatal(err)
			}
			for _, tok := range []string{"", "wrong", token} {
				for _, r := range reqs {
					hdr := r.hdr
					if tok != "" {
						hdr = append(append([]string(nil), hdr...), "Authorization", "Bearer "+tok)
					}
					resp, body := do(t, r.method, e.srv.URL+r.path, r.body, hdr...)
					want := mode.expect(r, tok)
					// (ref-put creates "other" once; a second allowed try conflicts.)
					if resp.StatusCode != want && !(r.name == "ref-put" && want == 200 && resp.StatusCode == 412) {
						t.Errorf("token %q: %s %s: %d, want %d (%s)", tok, r.method, r.path, resp.StatusCode, want, bytes.TrimSpace(body))
					}
					if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
						t.Errorf("token %q: %s: 401 without WWW-Authenticate", tok, r.name)
					}
				}
			}
		})
	}

	// The client sees the same through its errors.
	e := newEnv(t, ServerOptions{Token: token, Public: true}, false)
	if _, err := Open(context.Background(), e.srv.URL, ClientOptions{Token: "wrong", MaxAttempts: 1}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Open with wrong token: %v", err)
	}
	anon := e.client(t, ClientOptions{})
	if err := anon.Put(context.Background(), loc.Hash, data); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("anonymous Put on a public server: %v", err)
	}
	if _, err := anon.Get(context.Background(), loc, make([]byte, loc.Size)); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("anonymous Get of a missing block on a public server: %v", err)
	}
	priv := newEnv(t, ServerOptions{Token: token}, false)
	if _, err := Open(context.Background(), priv.srv.URL, ClientOptions{MaxAttempts: 1}); !errors.Is(err, ErrUnauthorized) || strings.Contains(err.Error(), "\n") {
		t.Errorf("Open without token on a private server: %v", err)
	}
	good := priv.client(t, ClientOptions{Token: token})
	if err := good.Put(context.Background(), loc.Hash, data); err != nil {
		t.Errorf("Put with the token: %v", err)
	}
}

// Junk in paths, locators, names and bodies is a 4xx and never reaches the
// store: nothing is read, nothing written.
func TestBadInputTouchesNothing(t *testing.T) {
	const token = "tok"
	e := newEnv(t, ServerOptions{Token: token}, false)
	auth := "Authorization: Bearer " + token + "\r\n"
	data := randBlock(3, 1000)
	h := blockstore.Sum(data).String()

	for _, tc := range []struct {
		req    string
		status int
	}{
		{"GET /v1/blocks/zzzz+5 HTTP/1.1\r\n", 400},
		{"GET /v1/blocks/" + strings.ToUpper(h) + "+1000 HTTP/1.1\r\n", 400},
		{"GET /v1/blocks/" + h + "+-1 HTTP/1.1\r\n", 400},
		{"GET /v1/blocks/" + h + "+01000 HTTP/1.1\r\n", 400},
		{"GET /v1/blocks/" + h + "+99999999999 HTTP/1.1\r\n", 400},
		{"GET /v1/blocks/" + h + "+67108865 HTTP/1.1\r\n", 400},
		{"GET /v1/blocks/" + h + "+ HTTP/1.1\r\n", 400},
		{"GET /v1/blocks/" + h + "+1000+1 HTTP/1.1\r\n", 400},
		{"GET /v1/blocks/" + h + " HTTP/1.1\r\n", 400},
		{"GET /v1/blocks/" + h + "+1000/x HTTP/1.1\r\n", 400},
		{"GET /v1/blocks/../../etc/passwd HTTP/1.1\r\n", 400},
		{"GET /v1/blocks/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n", 400},
		{"GET /v1/blocks/" + h + "%2B1000 HTTP/1.1\r\n", 400},
		{"GET /v1//blocks/" + h + "+1000 HTTP/1.1\r\n", 400},
		{"GET /v1/refs/../../etc/passwd HTTP/1.1\r\n", 400},
		{"GET /v1/refs/Head HTTP/1.1\r\n", 400},
		{"GET /v1/refs/a/b/c HTTP/1.1\r\n", 400},
		{"GET /v1/refs/ HTTP/1.1\r\n", 400},
		{"GET /v1/refs/a%2Fb HTTP/1.1\r\n", 400},
		{"HEAD /v1/blocks/" + h[:63] + " HTTP/1.1\r\n", 400},
		{"DELETE /v1/blocks/" + h + "+1000 HTTP/1.1\r\n" + auth, 405},
		{"POST /v1/blocks/" + h + " HTTP/1.1\r\n" + auth, 405},
		{"GET /v2/blocks HTTP/1.1\r\n", 404},
		{"PUT /v1/blocks/" + h + "/../x HTTP/1.1\r\n" + auth + "Content-Length: 1000\r\n", 400},
		// Bodies.
		{"PUT /v1/blocks/" + h + " HTTP/1.1\r\n" + auth + "Content-Length: 67108865\r\n", 413},
		{"PUT /v1/blocks/" + h + " HTTP/1.1\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n", 411},
		{"PUT /v1/refs/r HTTP/1.1\r\n" + auth + "If-None-Match: *\r\nContent-Length: 1048577\r\n", 413},
		{"PUT /v1/refs/r HTTP/1.1\r\n" + auth + "Content-Length: 1\r\n\r\nx", 428},
		{"PUT /v1/refs/r HTTP/1.1\r\n" + auth + "If-Match: W/\"abc\"\r\nContent-Length: 1\r\n\r\nx", 400},
		{"PUT /v1/refs/r HTTP/1.1\r\n" + auth + "If-Match: abc\r\nContent-Length: 1\r\n\r\nx", 400},
		{"PUT /v1/refs/r HTTP/1.1\r\n" + auth + "If-None-Match: \"abc\"\r\nContent-Length: 1\r\n\r\nx", 400},
		{"PUT /v1/refs/r/../s HTTP/1.1\r\n" + auth + "If-None-Match: *\r\nContent-Length: 1\r\n\r\nx", 400},
	} {
		req := tc.req
		if !strings.Contains(req, "\r\n\r\n") {
			req += "\r\n"
		}
		req = strings.Replace(req, "\r\n", "\r\nHost: x\r\n", 1)
		// Half-closed after the request: where a body is announced and not
		// sent, the server's discard of it ends at EOF.
		resp := raw(t, addr(e), req, true)
		if resp.StatusCode != tc.status {
			t.Errorf("%q: %d, want %d", clip(strings.SplitN(tc.req, "\r\n", 2)[0]), resp.StatusCode, tc.status)
		}
	}

	// Content-Length larger than the body that arrives.
	resp := raw(t, addr(e), "PUT /v1/blocks/"+h+" HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Length: 1000\r\n\r\n"+string(data[:600]), true)
	if resp.StatusCode != 400 {
		t.Errorf("truncated PUT: %d, want 400", resp.StatusCode)
	}
	// A body that does not hash to its name.
	other := append([]byte(nil), data...)
	other[500] ^= 1
	r, body := do(t, "PUT", e.srv.URL+"/v1/blocks/"+h, other, "Authorization", "Bearer "+token)
	if r.StatusCode != 400 || !strings.Contains(string(body), "hashes to") {
		t.Errorf("mismatched PUT: %d %s", r.StatusCode, body)
	}
	// Same through the client's own check.
	c := e.client(t, ClientOptions{Token: token})
	if err := c.Put(context.Background(), blockstore.Sum(data), other); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Errorf("client Put of mismatched data: %v", err)
	}

	if n := e.blocksInStore(t); n != 0 {
		t.Errorf("store holds %d blocks after bad requests, want 0", n)
	}
	if n := e.count.Gets(); n != 0 {
		t.Errorf("store reads after bad requests = %d, want 0", n)
	}
	if _, _, err := e.dir.GetRef(context.Background(), "r"); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("ref r after bad PUTs: %v", err)
	}
	if s := e.h.Stats(); s.Status5xx != 0 || s.BadRequests == 0 {
		t.Errorf("server stats after bad input: %+v", s)
	}
	// And the good request still works.
	if err := c.Put(context.Background(), blockstore.Sum(data), data); err != nil {
		t.Fatal(err)
	}
}

func TestStoreRoundTrip(t *testing.T) {
	const token = "tok"
	e := newEnv(t, ServerOptions{Token: token, Extra: func() map[string]any {
		return map[string]any{"cache": map[string]int{"hits": 7}, "kind": "overridden?"}
	}}, false)
	c := e.client(t, ClientOptions{Token: token})
	ctx := context.Background()

	want := map[blockstore.Locator][]byte{}
	for i := range 3 {
		b := randBlock(uint64(20+i), 1000*(i+1))
		want[blockstore.LocatorOf(b)] = b
		if err := c.Put(ctx, blockstore.Sum(b), b); err != nil {
			t.Fatal(err)
		}
	}
	empty := blockstore.LocatorOf(nil)
	want[empty] = []byte{}
	if err := c.Put(ctx, empty.Hash, nil); err != nil {
		t.Fatalf("put empty block: %v", err)
	}
	// 201 for a new block, 200 for one that exists.
	b := randBlock(30, 10)
	for _, st := range []int{201, 200} {
		r, _ := do(t, "PUT", e.srv.URL+"/v1/blocks/"+blockstore.Sum(b).String(), b, "Authorization", "Bearer "+token)
		if r.StatusCode != st {
			t.Errorf("PUT: %d, want %d", r.StatusCode, st)
		}
	}
	if err := c.Delete(ctx, blockstore.Sum(b)); err != nil {
		t.Fatal(err)
	}

	listed := map[blockstore.Locator]bool{}
	if err := c.List(ctx, func(l blockstore.Locator) error { listed[l] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != len(want) {
		t.Fatalf("listed %d blocks, want %d", len(listed), len(want))
	}
	stop := errors.New("stop")
	if err := c.List(ctx, func(blockstore.Locator) error { return stop }); err != stop {
		t.Errorf("List returns fn's error: %v", err)
	}
	// Reading through a client-side Pool (which verifies) over the client.
	pool := blockstore.NewPool(c, blockstore.PoolConfig{})
	defer pool.Close()
	for loc, data := range want {
		if ok, err := c.Has(ctx, loc.Hash); !ok || err != nil {
			t.Errorf("Has %v: %v %v", loc, ok, err)
		}
		buf, err := pool.Get(ctx, loc)
		if err != nil {
			t.Fatalf("pool get %v: %v", loc, err)
		}
		if !bytes.Equal(buf.Bytes(), data) {
			t.Errorf("pool get %v: wrong bytes", loc)
		}
		buf.Release()
	}
	gone := blockstore.LocatorOf([]byte("gone"))
	if ok, err := c.Has(ctx, gone.Hash); ok || err != nil {
		t.Errorf("Has missing: %v %v", ok, err)
	}
	if _, err := c.Get(ctx, gone, make([]byte, gone.Size)); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("Get missing: %v", err)
	}
	if err := c.Delete(ctx, gone.Hash); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("Delete missing: %v", err)
	}
	if cs := c.Stats(); cs.Retries != 0 || cs.Errors != 0 || cs.BytesOut != 6000 {
		t.Errorf("client stats %+v", cs)
	}

	raw, err := c.ServerStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Kind     string               `json:"kind"`
		Pool     blockstore.PoolStats `json:"pool"`
		HTTP     ServerStats          `json:"http"`
		UptimeNS int64                `json:"uptime_ns"`
		Cache    map[string]int       `json:"cache"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if st.Kind != "server" || st.Pool.Fetches != 5 || st.HTTP.BlockPuts != 6 || st.UptimeNS <= 0 || st.Cache["hits"] != 7 {
		t.Errorf("stats: %s", raw)
	}
}

// TestRefs covers what is particular to refs over HTTP (the contract is
// storetest's, in contract_test.go): versions the server never made, and
// a retried create recognised by its writer id.
func TestRefs(t *testing.T) {
	const token = "tok"
	e := newEnv(t, ServerOptions{Token: token}, false)
	c := e.client(t, ClientOptions{Token: token})
	ctx := context.Background()

	if _, err := c.PutRef(ctx, "head", []byte("one"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutRef(ctx, "head", []byte("junk"), "no \"such\" version"); !errors.Is(err, blockstore.ErrConflict) {
		t.Fatalf("junk version: %v", err)
	}
	if data, _, _ := c.GetRef(ctx, "head"); string(data) != "one" {
		t.Fatalf("after a junk-version update: %q", data)
	}

	// A retried PUT whose first reply was lost is recognised by its writer
	// id: success with the version it made, not a conflict with itself.
	hdr := []string{"Authorization", "Bearer " + token, "If-None-Match", "*", writerHeader, "w1"}
	r1, _ := do(t, "PUT", e.srv.URL+"/v1/refs/dir/once", []byte("x"), hdr...)
	r2, _ := do(t, "PUT", e.srv.URL+"/v1/refs/dir/once", []byte("x"), hdr...)
	hdr[5] = "w2"
	r3, _ := do(t, "PUT", e.srv.URL+"/v1/refs/dir/once", []byte("x"), hdr...)
	if r1.StatusCode != 200 || r2.StatusCode != 200 || r2.Header.Get("ETag") != r1.Header.Get("ETag") || r3.StatusCode != 412 {
		t.Errorf("replayed PUT: %d %d (etags %q %q), other writer %d", r1.StatusCode, r2.StatusCode,
			r1.Header.Get("ETag"), r2.Header.Get("ETag"), r3.StatusCode)
	}
}

// When every pool buffer is in use a GET waits for one, and gives up as
// soon as its client does.
func TestGetWaitsForMemoryUntilClientGivesUp(t *testing.T) {
	dir, err := blockstore.OpenDir(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	gate := storetest.NewGate(dir)
	pool := blockstore.NewPool(gate, blockstore.PoolConfig{MaxBytes: 8192})
	defer pool.Close()
	srv := httptest.NewServer(NewHandler(dir, pool, ServerOptions{}))
	defer srv.Close()
	defer gate.Open()
	a, b := randBlock(40, 8192), randBlock(41, 8192)
	for _, d := range [][]byte{a, b} {
		if err := dir.Put(context.Background(), blockstore.Sum(d), d); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Open(context.Background(), srv.URL, ClientOptions{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go c.Get(context.Background(), blockstore.LocatorOf(a), make([]byte, 8192)) // holds all the memory
	<-gate.Entered
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, blockstore.LocatorOf(b), make([]byte, 8192))
		done <- err
	}()
	waitFor(t, "the second GET to wait for memory", func() bool { return pool.Stats().Waiters == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled GET: %v", err)
	}
	waitFor(t, "the server to stop waiting", func() bool { return pool.Stats().Waiters == 0 })
}
