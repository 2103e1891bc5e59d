package blockstore

import (
	"context"
	"errors"
)

// Mapper is implemented by stores that keep blocks in local files and can
// hand one out in place instead of copying it into a buffer.
//
// Why: for a local store, a cold pool fill used to cost as much as the
// SHA-256 that verifies it. Reading a block meant fresh anonymous memory
// (a page fault and a zeroed page per 4 KiB) plus a copy of bytes the
// kernel already holds in its page cache. A mapping shares those page-cache
// pages: no fault storm, no zeroing, no copy, and no second copy of the
// block in RAM.
//
// The mapping is locked in memory (mlock), so what the Pool verified is
// what it serves: a locked page cannot be evicted and read back from a disk
// that has meanwhile rotted. Blocks are never rewritten in place (writes go
// to a temp file and are renamed), so the bytes under a mapping only change
// if someone with write access to the store modifies a block file in
// place. Such a writer could equally publish new metadata: the store's
// writers are trusted, and verification guards against media, network and
// bugs.
type Mapper interface {
	// Map returns block loc's bytes, mapped read-only and locked in memory,
	// and a function that unmaps them, safe to call more than once; the
	// bytes must not be touched after the first call. An error wrapping errors.ErrUnsupported means this
	// store cannot map (for now): the caller reads with Get instead. A
	// missing block wraps ErrNotFound and a wrong-sized one ErrCorrupt, as
	// with Get. Map need not verify the hash (the Pool does).
	Map(ctx context.Context, loc Locator) (data []byte, unmap func() error, err error)
}

// errNoMap is what a store returns from Map when it cannot map.
var errNoMap = errors.ErrUnsupported
