package httpstore

import (
	"context"
	"net/http/httptest"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/diskcache"
	"blockfs/blockstore/storetest"
	"blockfs/internal/metrics"
)

// TestContract runs the Store and RefStore contracts on a Client talking
// to a real server (a Handler on loopback) over a DirStore.
func TestContract(t *testing.T) {
	const token = "tok"
	newClient := func(t *testing.T) blockstore.Store {
		e := newEnv(t, ServerOptions{Token: token}, false)
		return e.client(t, ClientOptions{Token: token})
	}
	storetest.Run(t, newClient)
	storetest.RunRefs(t, newClient)
}

// TestRefsThroughWrappers: a server over the stack `blockfs serve --metrics
// --cache-dir` builds (a disk cache over a timed DirStore) serves the
// DirStore's refs, found through both wrappers' Unwrap.
func TestRefsThroughWrappers(t *testing.T) {
	dir, err := blockstore.OpenDir(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := diskcache.Open(t.TempDir(), metrics.New().WrapStore(dir), diskcache.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	pool := blockstore.NewPool(cache, blockstore.PoolConfig{})
	defer pool.Close()
	srv := httptest.NewServer(NewHandler(cache, pool, ServerOptions{Token: "tok"}))
	defer srv.Close()
	c, err := Open(context.Background(), srv.URL, ClientOptions{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	v, err := c.PutRef(ctx, "meta/head", []byte("through"), "")
	if err != nil {
		t.Fatalf("PutRef through the wrapped server: %v", err)
	}
	data, dv, err := dir.GetRef(ctx, "meta/head")
	if err != nil || string(data) != "through" || dv != v {
		t.Fatalf("the DirStore holds %q, %q, %v; want %q, %q", data, dv, err, "through", v)
	}
}
