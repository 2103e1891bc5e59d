package storetest

import (
	"testing"

	"blockfs/blockstore"
)

// Capabilities checks that each optional capability blockstore.As finds
// in inner, it also finds in wrapped, a wrapper (directly or not) around
// inner: wrappers must not lose capabilities. It returns the names of the
// capabilities inner has, so that a test can also check it was given the
// store it meant.
func Capabilities(t *testing.T, wrapped, inner blockstore.Store) []string {
	t.Helper()
	var have []string
	check := func(name string, inInner, inWrapped bool) {
		t.Helper()
		if !inInner {
			return
		}
		have = append(have, name)
		if !inWrapped {
			t.Errorf("%T lost the %s of the %T it wraps", wrapped, name, inner)
		}
	}
	check("Mapper", found[blockstore.Mapper](inner), found[blockstore.Mapper](wrapped))
	check("Keeper", found[blockstore.Keeper](inner), found[blockstore.Keeper](wrapped))
	check("RefStore", found[blockstore.RefStore](inner), found[blockstore.RefStore](wrapped))
	check("Flusher", found[blockstore.Flusher](inner), found[blockstore.Flusher](wrapped))
	check("HashedPutter", found[blockstore.HashedPutter](inner), found[blockstore.HashedPutter](wrapped))
	check("BatchDeleter", found[blockstore.BatchDeleter](inner), found[blockstore.BatchDeleter](wrapped))
	return have
}

func found[T any](s blockstore.Store) bool {
	_, ok := blockstore.As[T](s)
	return ok
}
