package httpstore

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
	"blockfs/internal/testsvc"
)

// waitFor waits until cond holds (see testsvc.WaitFor).
var waitFor = testsvc.WaitFor

// randBlock returns n deterministic pseudo-random bytes.
var randBlock = storetest.Block

// env is a real server: a DirStore, a storetest.Counting (optionally over
// a storetest.Gate) feeding the Pool, the Handler, and an httptest server on loopback.
type env struct {
	dir   *blockstore.DirStore
	count *storetest.Counting
	gate  *storetest.Gate // nil unless asked for
	pool  *blockstore.Pool
	h     *Handler
	srv   *httptest.Server
}

func newEnv(t testing.TB, opts ServerOptions, gated bool) *env {
	t.Helper()
	dir, err := blockstore.OpenDir(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: dir}
	var src blockstore.Store = dir
	if gated {
		e.gate = storetest.NewGate(dir)
		src = e.gate
	}
	e.count = storetest.NewCounting(src)
	e.pool = blockstore.NewPool(e.count, blockstore.PoolConfig{MaxBytes: 64 << 20})
	e.h = NewHandler(dir, e.pool, opts)
	e.srv = httptest.NewUnstartedServer(e.h)
	e.srv.Config = NewServer(e.h) // the timeouts blockfs serve runs with
	e.srv.Start()
	t.Cleanup(func() {
		if e.gate != nil {
			e.gate.Open()
		}
		e.srv.Close()
		e.pool.Close()
	})
	return e
}

// put stores data directly in the DirStore and returns its locator.
func (e *env) put(t testing.TB, data []byte) blockstore.Locator {
	t.Helper()
	loc := blockstore.LocatorOf(data)
	if err := e.dir.Put(context.Background(), loc.Hash, data); err != nil {
		t.Fatal(err)
	}
	return loc
}

func (e *env) client(t testing.TB, opts ClientOptions) *Client {
	t.Helper()
	c, err := Open(context.Background(), e.srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// blocksInStore counts the DirStore's blocks.
func (e *env) blocksInStore(t testing.TB) int {
	t.Helper()
	n := 0
	if err := e.dir.List(context.Background(), func(blockstore.Locator) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// do sends one request with the plain net/http client.
func do(t testing.TB, method, url string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

// raw writes req verbatim on a new connection (half-closing it after, if
// closeWrite) and reads one response: for requests net/http will not send.
func raw(t testing.TB, addr, req string, closeWrite bool) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		conn.(*net.TCPConn).CloseWrite()
	}
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response to %q: %v", clip(req), err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp
}

func addr(e *env) string { return e.srv.Listener.Addr().String() }
