package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"blockfs/blockstore"
	"blockfs/blockstore/s3"
	"blockfs/blockstore/storetest"
	"blockfs/internal/testsvc"
)

// The package's tests share one MinIO server and run one at a time (no
// t.Parallel), so server-side request counts are exact.
func TestMain(m *testing.M) { os.Exit(testsvc.RunShared(m)) }

func config(m *testsvc.MinIO) s3.Config {
	return s3.Config{
		Endpoint:       m.Endpoint(),
		AccessKey:      m.AccessKey(),
		SecretKey:      m.SecretKey(),
		PathStyle:      true,
		RequestTimeout: 5 * time.Second,
		RetryBase:      10 * time.Millisecond,
		RetryMax:       100 * time.Millisecond,
	}
}

func open(t *testing.T, bucket, prefix string, cfg s3.Config) *s3.Store {
	t.Helper()
	s, err := s3.Open(context.Background(), bucket, prefix, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// block returns distinct deterministic bytes of the given size.
func block(seed, size int) []byte { return storetest.Block(uint64(seed), size) }

func put(t *testing.T, s blockstore.Store, data []byte) blockstore.Locator {
	t.Helper()
	loc := blockstore.LocatorOf(data)
	if err := s.Put(context.Background(), loc.Hash, data); err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestContract runs the Store and RefStore contracts on the real MinIO,
// each subtest in a bucket of its own.
func TestContract(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	newStore := func(t *testing.T) blockstore.Store { return open(t, m.NewBucket(t), "p", config(m)) }
	storetest.Run(t, newStore)
	storetest.RunRefs(t, newStore)
}

// TestLayout covers what is particular to S3 (the contract is in
// TestContract): where blocks go, prefixes as separate stores, what a
// re-put costs.
func TestLayout(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	ctx := context.Background()
	bucket := m.NewBucket(t)
	s := open(t, bucket, "/team/data/", config(m))
	other := open(t, bucket, "other", config(m))

	blocks := [][]byte{block(1, 0), block(2, 1), block(3, 100_000), block(4, 1<<20+3)}
	for _, b := range blocks {
		put(t, s, b)
	}
	// The layout is <prefix>/blocks/<2 hex>/<64 hex>.
	loc := blockstore.LocatorOf(blocks[2])
	key := "team/data/blocks/" + loc.Hash.String()[:2] + "/" + loc.Hash.String()
	if _, err := m.Client().StatObject(ctx, bucket, key, minio.StatObjectOptions{}); err != nil {
		t.Fatalf("block not at %s: %v", key, err)
	}
	// Another prefix in the same bucket is another store.
	if err := other.List(ctx, func(l blockstore.Locator) error { return fmt.Errorf("unexpected %v", l) }); err != nil {
		t.Fatal(err)
	}
	if ok, err := other.Has(ctx, loc.Hash); ok || err != nil {
		t.Fatalf("other prefix Has = %v, %v", ok, err)
	}
	// Putting an existing block costs a HEAD, no PUT.
	before := s.Stats()
	put(t, s, blocks[3])
	if after := s.Stats(); after.PutRequests != before.PutRequests || after.HeadRequests != before.HeadRequests+1 {
		t.Fatalf("re-put: stats %+v -> %+v", before, after)
	}
	st := s.Stats()
	if st.Errors != 0 || st.Retries != 0 || st.BytesOut == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// One Pool fetch is one S3 GET, however many callers want the block; a
// corrupt object fails verification, is counted and not cached, and the
// other blocks are unaffected.
func TestPoolOneGetAndCorruption(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	ctx := context.Background()
	bucket := m.NewBucket(t)
	s := open(t, bucket, "p", config(m))
	good := put(t, s, block(10, 300_000))
	flipped := put(t, s, block(11, 200_000))
	resized := put(t, s, block(12, 200_000))
	pool := blockstore.NewPool(s, blockstore.PoolConfig{MaxBytes: 8 << 20})

	gets := m.Requests(t, "getobject")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := pool.Get(ctx, good)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(b.Bytes(), block(10, 300_000)) {
				errs <- errors.New("wrong bytes")
			}
			b.Release()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if d := m.WaitRequests(t, "getobject", gets+1) - gets; d != 1 {
		t.Fatalf("16 concurrent Pool.Gets of one block: %d S3 GETs, want 1", d)
	}
	if n := s.Stats().GetRequests; n != 1 {
		t.Fatalf("store counted %d GETs, want 1", n)
	}

	// Tamper behind the store's back: same size other bytes, and a size
	// that no longer matches the locator.
	key := func(h blockstore.Hash) string { return "p/blocks/" + h.String()[:2] + "/" + h.String() }
	bad := block(99, 200_000)
	if _, err := m.Client().PutObject(ctx, bucket, key(flipped.Hash), bytes.NewReader(bad), int64(len(bad)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Client().PutObject(ctx, bucket, key(resized.Hash), bytes.NewReader(bad[:1000]), 1000, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		for _, loc := range []blockstore.Locator{flipped, resized} {
			if b, err := pool.Get(ctx, loc); !errors.Is(err, blockstore.ErrCorrupt) {
				if b != nil {
					b.Release()
				}
				t.Fatalf("round %d: Pool.Get of corrupt %v = %v, want ErrCorrupt", i, loc, err)
			}
		}
	}
	ps := pool.Stats()
	if ps.VerifyFailures != 4 || ps.Errors != 4 {
		t.Fatalf("pool stats after 4 corrupt gets: %+v", ps)
	}
	// Not cached: each corrupt Get went to the store again.
	if ps.Fetches != 5 {
		t.Fatalf("pool fetches = %d, want 5 (1 good + 4 corrupt, none cached)", ps.Fetches)
	}
	// Good block: a hit, no S3 request. In all: 1 + 4 GETs.
	b, err := pool.Get(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	b.Release()
	if d := m.WaitRequests(t, "getobject", gets+5) - gets; d != 5 {
		t.Fatalf("S3 GETs = %d, want 5 (1 good, 4 corrupt, 0 for the cached block)", d)
	}
}

func TestOpenErrors(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	bucket := m.NewBucket(t)
	ctx := context.Background()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()

	cases := []struct {
		name   string
		bucket string
		mod    func(*s3.Config)
		want   error
		words  string
	}{
		{"missing bucket", "no-such-bucket-here", nil, s3.ErrNoBucket, "NoSuchBucket"},
		{"bad access key", bucket, func(c *s3.Config) { c.AccessKey = "nobody" }, s3.ErrCredentials, "InvalidAccessKeyId"},
		{"bad secret", bucket, func(c *s3.Config) { c.SecretKey = "wrong-secret" }, s3.ErrCredentials, "SignatureDoesNotMatch"},
		{"unreachable", bucket, func(c *s3.Config) { c.Endpoint = closed; c.MaxAttempts = 2 }, s3.ErrUnreachable, "connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(m)
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			s, err := s3.Open(ctx, tc.bucket, "", cfg)
			if s != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, %v; want %v", s, err, tc.want)
			}
			msg := err.Error()
			t.Log(msg)
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tc.words) || !strings.Contains(msg, tc.want.Error()) {
				t.Fatalf("message %q: want one line naming %q and %q", msg, tc.want, tc.words)
			}
			for _, other := range []error{s3.ErrNoBucket, s3.ErrCredentials, s3.ErrUnreachable} {
				if other != tc.want && errors.Is(err, other) {
					t.Fatalf("error also matches %v", other)
				}
			}
		})
	}
}

// TestRefConflictsAreNotErrors: misses and lost races are answers, not
// failures of the store (the contract itself is in TestContract).
func TestRefConflictsAreNotErrors(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	ctx := context.Background()
	s := open(t, m.NewBucket(t), "r", config(m))

	if _, _, err := s.GetRef(ctx, "head"); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("GetRef missing = %v", err)
	}
	if _, err := s.PutRef(ctx, "head", []byte("v1"), "some-etag"); !errors.Is(err, blockstore.ErrConflict) {
		t.Fatalf("update of missing ref = %v, want ErrConflict", err)
	}
	v1, err := s.PutRef(ctx, "head", []byte("v1"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutRef(ctx, "head", []byte("again"), ""); !errors.Is(err, blockstore.ErrConflict) {
		t.Fatalf("second create = %v, want ErrConflict (does the server honour If-None-Match?)", err)
	}
	if _, err := s.PutRef(ctx, "head", []byte("v2"), v1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutRef(ctx, "head", []byte("stale"), v1); !errors.Is(err, blockstore.ErrConflict) {
		t.Fatalf("stale update = %v, want ErrConflict (does the server honour If-Match?)", err)
	}
	if s.Stats().Errors != 0 {
		t.Fatalf("conflicts and misses counted as errors: %+v", s.Stats())
	}
}

// Read-modify-write increments from 8 writers (each with its own Store, as
// if on different machines) lose no update.
func TestRefConcurrentIncrements(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	ctx := context.Background()
	bucket := m.NewBucket(t)
	const writers, increments = 8, 20
	if _, err := open(t, bucket, "", config(m)).PutRef(ctx, "counter", []byte("0"), ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	errs := make(chan error, writers)
	for range writers {
		s := open(t, bucket, "", config(m))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range increments {
				for {
					data, v, err := s.GetRef(ctx, "counter")
					if err != nil {
						errs <- err
						return
					}
					var n int
					fmt.Sscan(string(data), &n)
					_, err = s.PutRef(ctx, "counter", []byte(fmt.Sprint(n+1)), v)
					if err == nil {
						break
					}
					if !errors.Is(err, blockstore.ErrConflict) {
						errs <- err
						return
					}
					mu.Lock()
					conflicts++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	data, _, err := open(t, bucket, "", config(m)).GetRef(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != fmt.Sprint(writers*increments) {
		t.Fatalf("counter = %s, want %d (lost updates)", data, writers*increments)
	}
	t.Logf("%d increments, %d conflicts retried", writers*increments, conflicts)
}

func TestConfigFromEnv(t *testing.T) {
	for _, k := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} {
		t.Setenv(k, "")
	}
	if c := s3.ConfigFromEnv(); c.PathStyle || c.Endpoint != "" {
		t.Fatalf("no env: %+v (want AWS, virtual-host)", c)
	}
	t.Setenv("AWS_ENDPOINT_URL", "http://generic:1")
	t.Setenv("AWS_ENDPOINT_URL_S3", "http://ceph.local:7480")
	t.Setenv("AWS_DEFAULT_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AK")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SK")
	t.Setenv("AWS_SESSION_TOKEN", "TOK")
	t.Setenv("AWS_PROFILE", "prof")
	want := s3.Config{Endpoint: "http://ceph.local:7480", Region: "eu-west-1", AccessKey: "AK", SecretKey: "SK",
		SessionToken: "TOK", Profile: "prof", PathStyle: true}
	if c := s3.ConfigFromEnv(); c != want {
		t.Fatalf("ConfigFromEnv = %+v, want %+v", c, want)
	}
	t.Setenv("AWS_ENDPOINT_URL_S3", "https://s3.eu-west-1.amazonaws.com")
	if c := s3.ConfigFromEnv(); c.PathStyle {
		t.Fatal("AWS endpoint: PathStyle should default to false")
	}
}

// TestIsAWS pins the one test of "is this Amazon S3?" that both
// ConfigFromEnv and the command line use: a host merely containing
// amazonaws.com is not AWS.
func TestIsAWS(t *testing.T) {
	for ep, want := range map[string]bool{
		"":                                       true,
		"https://s3.amazonaws.com":               true,
		"s3.eu-west-1.amazonaws.com":             true,
		"https://s3.cn-north-1.amazonaws.com.cn": true,
		"http://amazonaws.com:80":                true,
		"https://amazonaws.com.evil.example":     false,
		"https://notamazonaws.com":               false,
		"http://minio.local:9000/amazonaws.com":  false,
		"http://127.0.0.1:9000":                  false,
	} {
		if got := s3.IsAWS(ep); got != want {
			t.Errorf("IsAWS(%q) = %v, want %v", ep, got, want)
		}
	}
}
