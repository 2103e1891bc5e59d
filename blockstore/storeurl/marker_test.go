package storeurl

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/storetest"
)

// serveMem is a blockfs serve (the real handler) over an in-memory store,
// answering marker as its store's marker when it is not nil.
func serveMem(t *testing.T, mem *storetest.Mem, marker []byte, token string, tls bool) *httptest.Server {
	t.Helper()
	pool := blockstore.NewPool(mem, blockstore.PoolConfig{})
	t.Cleanup(pool.Close)
	opts := httpstore.ServerOptions{Token: token}
	if marker != nil {
		opts.FixedRefs = map[string][]byte{markerName: marker}
	}
	h := httpstore.NewHandler(mem, pool, opts)
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv
}

// TestHTTPStoreMarker: a serve answers its store's format marker, so that a
// client opening http:// (or a tier of serves) checks what it opens like an
// s3:// store: a serve of a marked store opens (over TLS with a token
// too); a serve of a store with no marker, something that is not a blockfs
// serve, and a store of a newer format are refused with one line; an
// import (Create) through a serve of an unmarked store writes the marker
// there, after which it opens.
func TestHTTPStoreMarker(t *testing.T) {
	ctx := context.Background()
	dirStore, err := Open(ctx, filepath.Join(t.TempDir(), "store"), Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dirStore.Close()
	name, value, ok := dirStore.MarkerRef()
	if !ok || name != markerName || string(value) != markerContent {
		t.Fatalf("a directory store's MarkerRef = %q %q %v", name, value, ok)
	}
	marked := serveMem(t, storetest.NewMem(), value, "", false)
	st, err := Open(ctx, marked.URL, Options{})
	if err != nil {
		t.Fatalf("a serve of a marked store: %v", err)
	}
	if _, _, ok := st.MarkerRef(); !ok {
		t.Error("a marked serve's stack does not pass the marker on")
	}
	st.Close()

	unmarked := storetest.NewMem()
	bare := serveMem(t, unmarked, nil, "tok", false)
	_, err = Open(ctx, bare.URL, Options{Token: "tok"})
	if want := bare.URL + ": no blockfs store here (no blockfs-store marker); create one with blockfs import"; err == nil || err.Error() != want || !errors.Is(err, ErrNoStore) {
		t.Errorf("a serve of an unmarked store: %v, want %q", err, want)
	}

	newer := serveMem(t, storetest.NewMem(), []byte("blockfs store format 3\n"), "", false)
	_, err = Open(ctx, newer.URL, Options{})
	if err == nil || !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), "format 3, written by a newer blockfs") {
		t.Errorf("a serve of a newer store: %v", err)
	}

	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	if _, err := Open(ctx, notFound.URL, Options{}); err == nil || !strings.Contains(err.Error(), "not a blockfs server") || strings.Contains(err.Error(), "\n") {
		t.Errorf("a server that is not blockfs: %v", err)
	}
	okEverywhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("ETag", `"x"`)
		w.Write([]byte("ok"))
	}))
	defer okEverywhere.Close()
	if _, err := Open(ctx, okEverywhere.URL, Options{}); err == nil || !errors.Is(err, ErrNoStore) || strings.Contains(err.Error(), "\n") {
		t.Errorf("a server answering ok to everything: %v", err)
	}

	// A tier: checked through a healthy member.
	if _, err := Open(ctx, bare.URL+","+serveMem(t, unmarked, nil, "tok", false).URL, Options{Token: "tok"}); !errors.Is(err, ErrNoStore) {
		t.Errorf("a tier of serves of an unmarked store: %v", err)
	}
	st, err = Open(ctx, marked.URL+","+serveMem(t, storetest.NewMem(), value, "", false).URL, Options{})
	if err != nil {
		t.Errorf("a tier of marked serves: %v", err)
	} else {
		st.Close()
	}

	// An import through the serve creates the marker in its store.
	st, err = Open(ctx, bare.URL, Options{Token: "tok", Create: true})
	if err != nil {
		t.Fatalf("import through a serve of an unmarked store: %v", err)
	}
	st.Close()
	if b, _, err := unmarked.GetRef(ctx, markerName); err != nil || string(b) != markerContent {
		t.Fatalf("after the import, the store's marker ref: %q %v", b, err)
	}
	if st, err = Open(ctx, bare.URL, Options{Token: "tok"}); err != nil {
		t.Fatalf("after the import: %v", err)
	}
	st.Close()
	// ... and an import through a marked serve leaves the fixed marker be.
	if st, err = Open(ctx, marked.URL, Options{Create: true}); err != nil {
		t.Errorf("import through a marked serve: %v", err)
	} else {
		st.Close()
	}

	// TLS and a token: the marker check goes over the same client.
	tlsSrv := serveMem(t, storetest.NewMem(), value, "tok", true)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err = Open(ctx, tlsSrv.URL, Options{Token: "tok", CAFile: ca}); err != nil {
		t.Errorf("https with a token: %v", err)
	} else {
		st.Close()
	}
}
