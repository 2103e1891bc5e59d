package s3_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/s3"
	"blockfs/internal/testsvc"
)

// Fault settings: small, so that a failing call's documented bound,
// MaxAttempts × RequestTimeout + (MaxAttempts−1) × RetryMax, is short.
const (
	faultAttempts = 3
	faultTimeout  = 400 * time.Millisecond
	faultRetryMax = 50 * time.Millisecond
	faultBound    = faultAttempts*faultTimeout + (faultAttempts-1)*faultRetryMax // 1.3 s
	slack         = 500 * time.Millisecond                                       // scheduling under -race on 2 cores
)

// faultStore returns a store reached through a fresh proxy, holding one
// block of 256 KiB, and the block.
func faultStore(t *testing.T) (*s3.Store, *testsvc.Proxy, blockstore.Locator, []byte) {
	t.Helper()
	m := testsvc.SharedMinIO(t)
	bucket := m.NewBucket(t)
	data := block(77, 256<<10)
	loc := put(t, open(t, bucket, "", config(m)), data)

	p := testsvc.StartProxy(t, m.Endpoint())
	cfg := config(m)
	cfg.Endpoint = p.Endpoint()
	cfg.MaxAttempts = faultAttempts
	cfg.RequestTimeout = faultTimeout
	cfg.RetryBase = 10 * time.Millisecond
	cfg.RetryMax = faultRetryMax
	return open(t, bucket, "", cfg), p, loc, data
}

// get reads loc and checks that whatever comes back is never wrong bytes.
func get(t *testing.T, s *s3.Store, loc blockstore.Locator) (time.Duration, error) {
	t.Helper()
	dst := make([]byte, loc.Size)
	start := time.Now()
	n, err := s.Get(context.Background(), loc, dst)
	elapsed := time.Since(start)
	if err == nil && (int64(n) != loc.Size || blockstore.Sum(dst) != loc.Hash) {
		t.Fatalf("Get returned %d wrong bytes without an error", n)
	}
	if err != nil && errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("network fault reported as corruption: %v", err)
	}
	return elapsed, err
}

func TestFaultLatency(t *testing.T) {
	s, p, loc, _ := faultStore(t)
	p.Latency(20 * time.Millisecond)
	d, err := get(t, s, loc)
	if err != nil {
		t.Fatal(err)
	}
	if d < 20*time.Millisecond {
		t.Fatalf("Get took %v through a 20ms latency toxic", d)
	}
	if st := s.Stats(); st.Retries != 0 {
		t.Fatalf("retries under 20ms latency: %+v", st)
	}
	t.Logf("Get through 20ms latency: %v", d)
}

func TestFaultResetPeer(t *testing.T) {
	s, p, loc, _ := faultStore(t)

	// Every connection reset: every attempt fails, and the call gives up
	// within the bound with a clear error.
	p.ResetPeer()
	d, err := get(t, s, loc)
	if err == nil {
		t.Fatal("Get succeeded with every connection reset")
	}
	t.Logf("all reset: %v after %v", err, d)
	if !strings.Contains(err.Error(), "gave up after 3 attempts") || d > faultBound+slack {
		t.Fatalf("error %q after %v; want gave up after 3 attempts within %v", err, d, faultBound)
	}
	if st := s.Stats(); st.Retries != faultAttempts-1 || st.Errors != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Half the connections reset: 20 concurrent Gets (so 20-odd fresh
	// connections, each reset with probability 1/2, and each retry on a
	// fresh one too). Each Get either succeeds with the right bytes, after
	// retries, or fails clearly; never wrong bytes.
	p.Clear()
	p.Down() // drop the kept-alive connections: only new ones roll the dice
	p.Up()
	p.ResetPeerSome(0.5)
	before := s.Stats().Retries
	type result struct {
		n   int
		dst []byte
		err error
	}
	results := make(chan result)
	for range 20 {
		go func() {
			dst := make([]byte, loc.Size)
			n, err := s.Get(context.Background(), loc, dst)
			results <- result{n, dst, err}
		}()
	}
	ok, failed := 0, 0
	for range 20 {
		r := <-results
		switch {
		case r.err == nil && (int64(r.n) != loc.Size || blockstore.Sum(r.dst) != loc.Hash):
			t.Fatalf("Get returned %d wrong bytes without an error", r.n)
		case r.err == nil:
			ok++
		case errors.Is(r.err, blockstore.ErrCorrupt) || !strings.Contains(r.err.Error(), "gave up after"):
			t.Fatalf("unclear error: %v", r.err)
		default:
			failed++
		}
	}
	retries := s.Stats().Retries - before
	t.Logf("50%% of connections reset, 20 concurrent Gets: %d ok, %d failed after 3 attempts, %d retries", ok, failed, retries)
	if ok == 0 || retries == 0 {
		t.Fatal("want some Gets to succeed and some retries")
	}

	p.Clear()
	if _, err := get(t, s, loc); err != nil {
		t.Fatalf("after Clear: %v", err)
	}
}

func TestFaultTimeout(t *testing.T) {
	s, p, loc, _ := faultStore(t)
	p.Timeout()
	d, err := get(t, s, loc)
	if err == nil {
		t.Fatal("Get succeeded through a black hole")
	}
	t.Logf("black hole: %v after %v (bound %v)", err, d, faultBound)
	if d > faultBound+slack || d < faultAttempts*faultTimeout {
		t.Fatalf("Get failed after %v; want between %v and %v", d, faultAttempts*faultTimeout, faultBound)
	}
	if !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("error does not say it timed out: %v", err)
	}
	p.Clear()
	if _, err := get(t, s, loc); err != nil {
		t.Fatalf("after Clear: %v", err)
	}
}

func TestFaultLinkDown(t *testing.T) {
	s, p, loc, _ := faultStore(t)
	if _, err := get(t, s, loc); err != nil { // a kept-alive connection exists
		t.Fatal(err)
	}
	p.Down()
	d, err := get(t, s, loc)
	if err == nil {
		t.Fatal("Get succeeded with the link down")
	}
	t.Logf("link down: %v after %v (bound %v)", err, d, faultBound)
	if d > faultBound+slack {
		t.Fatalf("Get failed after %v; bound %v", d, faultBound)
	}
	p.Up()
	if _, err := get(t, s, loc); err != nil {
		t.Fatalf("after Up: %v", err)
	}
}

// A caller's context bounds a call whatever the retry settings.
func TestFaultContext(t *testing.T) {
	s, p, loc, _ := faultStore(t)
	p.Timeout()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Get(ctx, loc, make([]byte, loc.Size))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 150*time.Millisecond+slack {
		t.Fatalf("Get = %v after %v; want DeadlineExceeded after ~150ms", err, time.Since(start))
	}
}

// A ref write whose reply is lost (the connection reset after the server
// took the PUT) is retried; the retry's 412 is our own write, which PutRef
// recognises by its writer id instead of reporting a false conflict.
func TestFaultPutRefAmbiguous(t *testing.T) {
	s, p, _, _ := faultStore(t)
	p.Down() // only new connections from here on
	p.Up()
	p.ResetPeerSome(0.5)
	const n = 20
	type result struct {
		version string
		err     error
	}
	results := make([]result, n)
	done := make(chan int)
	for i := range n {
		go func() {
			v, err := s.PutRef(context.Background(), "ref"+string(rune('a'+i)), []byte{byte(i)}, "")
			results[i] = result{v, err}
			done <- i
		}()
	}
	for range n {
		<-done
	}
	p.Clear()
	ok := 0
	for i, r := range results {
		name := "ref" + string(rune('a'+i))
		if errors.Is(r.err, blockstore.ErrConflict) {
			t.Fatalf("%s: false conflict on a fresh ref: %v", name, r.err)
		}
		data, v, err := s.GetRef(context.Background(), name)
		switch {
		case r.err == nil && (err != nil || v != r.version || len(data) != 1 || data[0] != byte(i)):
			t.Fatalf("%s: PutRef said %q, GetRef = %v %q %v", name, r.version, data, v, err)
		case r.err == nil:
			ok++
		case !strings.Contains(r.err.Error(), "gave up after"):
			t.Fatalf("%s: unclear error %v", name, r.err)
		}
	}
	st := s.Stats()
	t.Logf("20 ref creates through 50%% resets: %d ok, %d retries, %d HEADs to resolve ambiguity", ok, st.Retries, st.HeadRequests)
	if ok == 0 {
		t.Fatal("no PutRef succeeded")
	}
}
