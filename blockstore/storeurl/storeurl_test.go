package storeurl

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"net/http/httptest"

	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/storetest"
	"blockfs/blockstore/tier"
)

// TestOpenDir: a directory store is created with its marker by an
// import, opened by path or file:// afterwards, and a directory without
// the marker (a typo) is refused.
func TestOpenDir(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := Open(ctx, dir, Options{}); !errors.Is(err, ErrNoStore) {
		t.Fatalf("opening a missing store: %v, want ErrNoStore", err)
	}
	st, err := Open(ctx, dir, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, markerName)); err != nil || string(b) != markerContent {
		t.Fatalf("marker %q, %v", b, err)
	}
	if _, ok := st.Backend.(*blockstore.DirStore); !ok || st.Blocks != st.Backend || st.Cache != nil {
		t.Errorf("stack %+v: want a bare DirStore", st)
	}
	st.Close()
	for _, spec := range []string{dir, "file://" + dir, dir + "/"} {
		st, err := Open(ctx, spec, Options{})
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		st.Close()
	}
	if _, err := Open(ctx, t.TempDir(), Options{}); !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), "not a blockfs store") {
		t.Errorf("a plain directory: %v", err)
	}
}

// TestOpenRejects: store strings that name nothing usable fail with
// ErrNoStore before any network access.
func TestOpenRejects(t *testing.T) {
	for _, spec := range []string{"", "s3://", "s3:///prefix", "ftp://host/x"} {
		if _, err := Open(context.Background(), spec, Options{}); !errors.Is(err, ErrNoStore) {
			t.Errorf("%q: %v, want ErrNoStore", spec, err)
		}
	}
}

// TestOpenCache: with a cache directory the stack reads through the disk
// cache, which needs a size.
func TestOpenCache(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := Open(ctx, dir, Options{Create: true, CacheDir: t.TempDir()}); err == nil {
		t.Error("a cache without a size opened")
	}
	st, err := Open(ctx, dir, Options{CacheDir: t.TempDir(), CacheSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Cache == nil || st.Blocks != blockstore.Store(st.Cache) {
		t.Errorf("stack %+v: want reads through the cache", st)
	}
}

func TestCheckTellsTyposFromUnreachableStores(t *testing.T) {
	for _, bad := range []string{"", "s3://", "s3:///prefix", "ftp://host/x", "http://", "file://"} {
		if err := Check(bad); !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrNoStore) {
			t.Errorf("Check(%q) = %v, want ErrMalformed", bad, err)
		}
	}
	for _, good := range []string{"/no/such/dir", "rel/dir", "s3://bucket", "s3://bucket/p/q", "http://host:1", "https://h/x", "file:///x"} {
		if err := Check(good); err != nil {
			t.Errorf("Check(%q) = %v", good, err)
		}
	}
}

// TestMarkerFormat: a marker of a newer format is refused with a line
// saying so, a garbled one as unknown; the current one is accepted.
func TestMarkerFormat(t *testing.T) {
	if err := checkMarker("s", []byte(markerContent)); err != nil {
		t.Fatal(err)
	}
	if err := checkMarker("s", []byte("blockfs store format 9\n")); !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), "newer blockfs") {
		t.Errorf("newer format: %v", err)
	}
	if err := checkMarker("s", []byte("hello")); !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), "unknown format") {
		t.Errorf("garbled marker: %v", err)
	}
}

// TestOpenTier: a comma-separated list of serves opens as one tier, the
// token going to every member, and its stats are the tier's.
func TestOpenTier(t *testing.T) {
	var urls []string
	for range 2 {
		pool := blockstore.NewPool(storetest.NewMem(), blockstore.PoolConfig{})
		defer pool.Close()
		srv := httptest.NewServer(httpstore.NewHandler(storetest.NewMem(), pool, httpstore.ServerOptions{Token: "tok",
			FixedRefs: map[string][]byte{markerName: []byte(markerContent)}}))
		defer srv.Close()
		urls = append(urls, srv.URL)
	}
	spec := strings.Join(urls, ",")
	if _, err := Open(context.Background(), spec, Options{Token: "wrong"}); !errors.Is(err, httpstore.ErrUnauthorized) {
		t.Fatalf("wrong token: %v", err)
	}
	st, err := Open(context.Background(), spec, Options{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.Backend.(*tier.Store); !ok {
		t.Fatalf("backend %T, want a tier", st.Backend)
	}
	if ts, ok := st.BackendStats().(tier.Stats); !ok || ts.Up != 2 {
		t.Fatalf("backend stats %#v", st.BackendStats())
	}
}
