package httpstore

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"blockfs/blockstore"
)

// TestRefNamespaceHasNoStoreFiles is issue 22 item 13 over HTTP: GET
// /v1/refs/.lock returned the directory store's lock file, and a token
// holder could PUT over it, breaking publishers' flock.
func TestRefNamespaceHasNoStoreFiles(t *testing.T) {
	const token = "tok"
	e := newEnv(t, ServerOptions{Token: token, Public: true}, false)
	c := e.client(t, ClientOptions{Token: token})
	if _, err := c.PutRef(context.Background(), "meta/head", []byte("head"), ""); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(e.dir.Root(), "refs", ".lock")
	if _, err := os.Stat(lock); err != nil {
		t.Fatalf("no lock file after PutRef: %v", err)
	}
	for _, name := range []string{".lock", "meta/.lock", ".tmp-1"} {
		for _, method := range []string{"GET", "HEAD"} {
			if resp := raw(t, addr(e), method+" /v1/refs/"+name+" HTTP/1.1\r\nHost: x\r\n\r\n", false); resp.StatusCode != 400 {
				t.Errorf("%s /v1/refs/%s: %d, want 400", method, name, resp.StatusCode)
			}
		}
		put := "PUT /v1/refs/" + name + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
			"\r\nIf-None-Match: *\r\nContent-Length: 4\r\n\r\nevil"
		if resp := raw(t, addr(e), put, false); resp.StatusCode != 400 {
			t.Errorf("PUT /v1/refs/%s: %d, want 400", name, resp.StatusCode)
		}
	}
	if b, err := os.ReadFile(lock); err != nil || len(b) != 0 {
		t.Errorf("lock file after the requests: %q, %v; want it empty and there", b, err)
	}
}

// TestServeWithoutTmpDir is issue 22 item 13: serve over a store directory
// without its tmp folder answered 502 to every PUT.
func TestServeWithoutTmpDir(t *testing.T) {
	const token = "tok"
	e := newEnv(t, ServerOptions{Token: token}, false)
	if err := os.Remove(filepath.Join(e.dir.Root(), "tmp")); err != nil {
		t.Fatal(err)
	}
	c := e.client(t, ClientOptions{Token: token, MaxAttempts: 1})
	data := randBlock(9, 3000)
	loc := blockstore.LocatorOf(data)
	if err := c.Put(context.Background(), loc.Hash, data); err != nil {
		t.Fatalf("PUT with no tmp folder: %v", err)
	}
	if ok, err := e.dir.Has(context.Background(), loc.Hash); !ok || err != nil {
		t.Fatalf("block not stored: %v, %v", ok, err)
	}
	if _, err := c.PutRef(context.Background(), "meta/head", []byte("x"), ""); err != nil {
		t.Fatalf("ref PUT with no tmp folder: %v", err)
	}
}
