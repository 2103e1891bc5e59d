package blockstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
)

// This file is an external test package: blockstore's own tests cannot
// import storetest, which imports blockstore.

func openDir(t *testing.T) *blockstore.DirStore {
	t.Helper()
	d, err := blockstore.OpenDir(filepath.Join(t.TempDir(), "store"), true)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDirContract(t *testing.T) {
	newStore := func(t *testing.T) blockstore.Store { return openDir(t) }
	storetest.Run(t, newStore)
	storetest.RunRefs(t, newStore)
}

// TestDirDeferredContract: in deferred mode (imports) the store keeps the
// contract for its own users, except that List sees blocks once flushed;
// the suite's store flushes before each List by running behind flushList.
func TestDirDeferredContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) blockstore.Store {
		d := openDir(t)
		d.DeferSync()
		return flushList{d}
	})
}

// flushList flushes a deferred DirStore before listing it.
type flushList struct{ *blockstore.DirStore }

func (f flushList) List(ctx context.Context, fn func(blockstore.Locator) error) error {
	if err := f.Flush(ctx); err != nil {
		return err
	}
	return f.DirStore.List(ctx, fn)
}

// named wraps a Store with Unwrap and nothing else.
type named struct{ blockstore.Store }

func (n named) Unwrap() blockstore.Store { return n.Store }

// opaque wraps a Store without Unwrap.
type opaque struct{ blockstore.Store }

func TestAs(t *testing.T) {
	d := openDir(t)
	if m, ok := blockstore.As[blockstore.Mapper](named{named{d}}); !ok || m != blockstore.Mapper(d) {
		t.Fatalf("As[Mapper] through two wrappers = %v, %v; want the DirStore", m, ok)
	}
	if got, ok := blockstore.As[*blockstore.DirStore](named{d}); !ok || got != d {
		t.Fatalf("As[*DirStore] = %v, %v", got, ok)
	}
	if _, ok := blockstore.As[blockstore.RefStore](opaque{d}); ok {
		t.Fatal("As went through a wrapper without Unwrap")
	}
	if _, ok := blockstore.As[blockstore.Keeper](named{d}); ok {
		t.Fatal("As found a Keeper in a chain that has none")
	}
	if _, ok := blockstore.As[blockstore.Mapper](nil); ok {
		t.Fatal("As found a Mapper in nil")
	}
	if _, ok := blockstore.As[blockstore.Mapper](named{nil}); ok {
		t.Fatal("As found a Mapper under a wrapper of nil")
	}
	storetest.Capabilities(t, named{d}, d)
}

// TestCapabilityHelpersUseAs: PutHashed and ReadVerified find the
// HashedPutter and Keeper below a wrapper.
func TestCapabilityHelpersUseAs(t *testing.T) {
	ctx := context.Background()
	k := &keeper{Store: storetest.NewMem()}
	data := []byte("kept")
	loc := blockstore.LocatorOf(data)
	if err := blockstore.PutHashed(ctx, named{k}, loc.Hash, data); err != nil {
		t.Fatal(err)
	}
	if k.putHashed != 1 {
		t.Fatalf("PutHashed through a wrapper reached the HashedPutter %d times, want 1", k.putHashed)
	}
	if err := blockstore.ReadVerified(ctx, named{k}, loc, make([]byte, loc.Size)); err != nil {
		t.Fatal(err)
	}
	if k.kept != 1 {
		t.Fatalf("ReadVerified through a wrapper kept %d blocks, want 1", k.kept)
	}
	bad := leaky{storetest.Corrupt{Store: k}} // the Keeper is reachable below the damage
	if err := blockstore.ReadVerified(ctx, named{bad}, loc, make([]byte, loc.Size)); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("ReadVerified of damaged bytes: %v, want ErrCorrupt", err)
	}
	if k.kept != 1 {
		t.Fatal("damaged bytes were kept")
	}
}

// leaky damages reads but unwraps to the store below.
type leaky struct{ storetest.Corrupt }

func (l leaky) Unwrap() blockstore.Store { return l.Corrupt.Store }

// keeper is a Mem that is a Keeper and a HashedPutter, counting calls.
type keeper struct {
	blockstore.Store
	kept, putHashed int
}

func (k *keeper) Keep(blockstore.Locator, []byte) { k.kept++ }

func (k *keeper) PutHashed(ctx context.Context, h blockstore.Hash, data []byte) error {
	k.putHashed++
	return k.Put(ctx, h, data)
}
