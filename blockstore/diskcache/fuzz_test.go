package diskcache

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"blockfs/blockstore"
)

// FuzzCacheFiles damages a cached block's file and the policy state file
// with arbitrary bytes while the cache is closed. Reopening must work and a
// Get must return the block's true bytes: from an intact file, or from the
// backend after dropping a damaged one. Never the garbage.
func FuzzCacheFiles(f *testing.F) {
	f.Add([]byte("garbage"), []byte("state?"))
	f.Add([]byte{}, []byte{})
	f.Add(bytes.Repeat([]byte{0}, 4096+trailerLen), []byte(nil))
	f.Fuzz(func(t *testing.T, file, state []byte) {
		ctx := context.Background()
		dir := t.TempDir()
		backend, err := blockstore.OpenDir(filepath.Join(dir, "backend"), true)
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("block!"), 700)
		loc := blockstore.LocatorOf(data)
		if err := backend.Put(ctx, loc.Hash, data); err != nil {
			t.Fatal(err)
		}
		cdir := filepath.Join(dir, "cache")
		c, err := Open(cdir, backend, Options{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, loc.Size)
		if err := blockstore.ReadVerified(ctx, c, loc, buf); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if err := os.WriteFile(c.path(loc.Hash), file, 0o644); err != nil {
			t.Fatal(err)
		}
		if state != nil {
			os.WriteFile(filepath.Join(cdir, stateName), state, 0o644)
		}
		c, err = Open(cdir, backend, Options{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatalf("reopen after damage: %v", err)
		}
		defer c.Close()
		clear(buf)
		n, err := c.Get(ctx, loc, buf)
		if err != nil || int64(n) != loc.Size || !bytes.Equal(buf, data) {
			t.Fatalf("Get after damage: %d bytes, %v, correct=%v", n, err, bytes.Equal(buf, data))
		}
	})
}
