package httpstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"blockfs/blockstore"
)

// refuser answers the first n block requests with 503 and Retry-After ra,
// then hands requests to the real handler: a server under load, without
// having to build the load.
type refuser struct {
	next    http.Handler
	n       int64
	ra      string
	code    int // 0: 503
	refused atomic.Int64
}

func (f *refuser) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v1/blocks/") && f.refused.Add(1) <= f.n {
		code := f.code
		if code == 0 {
			code = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", f.ra)
		}
		http.Error(w, "busy", code)
		return
	}
	f.next.ServeHTTP(w, r)
}

func TestClientHonoursRetryAfter(t *testing.T) {
	e := newEnv(t, ServerOptions{}, false)
	data := randBlock(4, 5000)
	loc := e.put(t, data)
	ctx := context.Background()

	for _, tc := range []struct {
		name     string
		refusals int64
		ra       string
		retryMax time.Duration
		min, max time.Duration
	}{
		// Retry-After: 1 is waited for in full. The upper bounds only
		// tell a wait that was honoured or capped from one that was not
		// (an hour): they are generous, since a loaded 2-core machine
		// can stall a goroutine for a second.
		{"honoured", 1, "1", 5 * time.Second, time.Second, 15 * time.Second},
		// An hour is capped at RetryMax (twice).
		{"capped", 2, "3600", 100 * time.Millisecond, 200 * time.Millisecond, 15 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &refuser{next: e.h, n: tc.refusals, ra: tc.ra}
			srv := httptest.NewServer(f)
			defer srv.Close()
			c, err := Open(ctx, srv.URL, ClientOptions{RetryBase: time.Millisecond, RetryMax: tc.retryMax})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			dst := make([]byte, loc.Size)
			start := time.Now()
			if _, err := c.Get(ctx, loc, dst); err != nil || !bytes.Equal(dst, data) {
				t.Fatalf("Get: %v", err)
			}
			took := time.Since(start)
			if took < tc.min || took > tc.max {
				t.Errorf("Get after %d× 503 Retry-After %s took %v, want %v..%v", tc.refusals, tc.ra, took, tc.min, tc.max)
			}
			if s := c.Stats(); s.Busy != tc.refusals || s.Retries != tc.refusals || s.GetRequests != tc.refusals+1 {
				t.Errorf("client stats %+v", s)
			}
		})
	}

	// A busy server is alive: more 503s than MaxAttempts are waited out.
	// (Issue 22 item 9: a client gave up after 5 of them, turning a queue
	// into EIO long before the fetch deadline.)
	f := &refuser{next: e.h, n: 12, ra: "0"}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, err := Open(ctx, srv.URL, ClientOptions{RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dst := make([]byte, loc.Size)
	if _, err := c.Get(dctx, loc, dst); err != nil || !bytes.Equal(dst, data) {
		t.Fatalf("Get after 12× 503 with MaxAttempts %d: %v", DefaultMaxAttempts, err)
	}
	if got, s := f.refused.Load(), c.Stats(); got != 13 || s.GetRequests != 13 || s.Busy != 12 || s.Retries != 12 {
		t.Errorf("after 12× 503: server saw %d block requests, client stats %+v; want 13 requests, 12 busy, 12 retries", got, s)
	}

	// Refused every time: the call goes on until its deadline and then
	// says both that the deadline passed and that the server was busy.
	f.refused.Store(0)
	f.n = 1 << 40
	before := c.Stats().GetRequests
	dctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = c.Get(dctx, loc, make([]byte, loc.Size))
	attempts := c.Stats().GetRequests - before
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, blockstore.ErrBusy) {
		t.Errorf("always busy: %v; want it to wrap context.DeadlineExceeded and ErrBusy", err)
	}
	// The deadline can cut the last attempt off before the server has
	// counted it, so the server sees every attempt, or all but that one.
	if seen := f.refused.Load(); attempts <= DefaultMaxAttempts || seen != attempts && seen != attempts-1 ||
		err == nil || !strings.Contains(err.Error(), fmt.Sprintf("after %d attempts", attempts)) {
		t.Errorf("always busy: %d attempts (server saw %d), error %v; want more than %d, all counted in the error",
			attempts, f.refused.Load(), err, DefaultMaxAttempts)
	}

	// Other failures still end after MaxAttempts.
	f500 := &refuser{next: e.h, n: 1 << 40, code: http.StatusInternalServerError}
	srv500 := httptest.NewServer(f500)
	defer srv500.Close()
	c500, err := Open(ctx, srv500.URL, ClientOptions{MaxAttempts: 3, RetryBase: time.Millisecond, RetryMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c500.Close()
	_, err = c500.Get(ctx, loc, make([]byte, loc.Size))
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") || f500.refused.Load() != 3 {
		t.Errorf("always 500: %v after %d requests; want to give up after 3", err, f500.refused.Load())
	}
	// A context that ends stops the retries at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Get(cctx, loc, make([]byte, loc.Size)); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	quick := ClientOptions{MaxAttempts: 2, RetryBase: time.Millisecond, RetryMax: time.Millisecond, RequestTimeout: 5 * time.Second}
	oneLine := func(t *testing.T, err error) {
		t.Helper()
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
	}

	// Nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	_, err = Open(ctx, dead, quick)
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("closed port: %v", err)
	}
	oneLine(t, err)

	e := newEnv(t, ServerOptions{Token: "tok"}, false)
	tlsSrv := httptest.NewUnstartedServer(e.h)
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are the point
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	// Unknown authority.
	_, err = Open(ctx, tlsSrv.URL, quick)
	if !errors.Is(err, ErrTLS) {
		t.Errorf("unknown CA: %v", err)
	}
	oneLine(t, err)
	// http:// spoken to the https server, and https:// to the http one.
	for _, u := range []string{strings.Replace(tlsSrv.URL, "https:", "http:", 1), strings.Replace(e.srv.URL, "http:", "https:", 1)} {
		_, err = Open(ctx, u, quick)
		if !errors.Is(err, ErrTLS) {
			t.Errorf("%s: %v", u, err)
		}
		oneLine(t, err)
	}
	// With the server's CA, and the token, it works end to end over TLS.
	roots := x509.NewCertPool()
	roots.AddCert(tlsSrv.Certificate())
	opts := quick
	opts.TLS = &tls.Config{RootCAs: roots}
	opts.Token = "tok"
	c, err := Open(ctx, tlsSrv.URL, opts)
	if err != nil {
		t.Fatalf("TLS with the right CA: %v", err)
	}
	data := []byte("over tls")
	if err := c.Put(ctx, blockstore.Sum(data), data); err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, len(data))
	if _, err := c.Get(ctx, blockstore.LocatorOf(data), dst); err != nil || !bytes.Equal(dst, data) {
		t.Fatalf("TLS get: %v", err)
	}
	c.Close()
	// Wrong token.
	opts.Token = "nope"
	_, err = Open(ctx, tlsSrv.URL, opts)
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("wrong token: %v", err)
	}
	oneLine(t, err)
	// Not a blockfs server (wrong path).
	_, err = Open(ctx, e.srv.URL+"/some/prefix", ClientOptions{Token: "tok", MaxAttempts: 1})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("wrong path: %v", err)
	}
	oneLine(t, err)
	for _, bad := range []string{"ftp://x", "http://", "http://u:p@host", "http://h/?q=1"} {
		if _, err := Open(ctx, bad, quick); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
}

// A GET of a 1 MiB block that is a pool hit, over loopback HTTP, next to
// reading the same block from a DirStore.
func BenchmarkGet1MiB(b *testing.B) {
	e := newEnv(b, ServerOptions{}, false)
	data := randBlock(5, 1<<20)
	loc := e.put(b, data)
	ctx := context.Background()
	dst := make([]byte, loc.Size)

	b.Run("http-pool-hit", func(b *testing.B) {
		c := e.client(b, ClientOptions{})
		if _, err := c.Get(ctx, loc, dst); err != nil { // warm the pool
			b.Fatal(err)
		}
		b.SetBytes(loc.Size)
		b.ResetTimer()
		for b.Loop() {
			if _, err := c.Get(ctx, loc, dst); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if e.count.Gets() != 1 {
			b.Fatalf("store reads %d, want 1", e.count.Gets())
		}
	})
	b.Run("http-pool-hit-parallel", func(b *testing.B) {
		c := e.client(b, ClientOptions{})
		b.SetBytes(loc.Size)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			dst := make([]byte, loc.Size)
			for pb.Next() {
				if _, err := c.Get(ctx, loc, dst); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("dirstore", func(b *testing.B) {
		b.SetBytes(loc.Size)
		for b.Loop() {
			if _, err := e.dir.Get(ctx, loc, dst); err != nil {
				b.Fatal(err)
			}
		}
	})
}
