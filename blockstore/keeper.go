package blockstore

import (
	"context"
	"fmt"
)

// Keeper is implemented by stores that keep local copies of the blocks read
// through them (the disk cache in front of S3). A Keeper keeps only blocks
// that verified, but does not hash them itself: whoever read a block from
// it and checked the bytes against the locator hands them back with Keep.
// The Pool verifies every block anyway; a cache that hashed each block again
// before keeping it doubled the SHA-256 of every cold read. Callers find a
// Keeper with As: wrappers above a cache expose Unwrap.
type Keeper interface {
	// Keep is told that data, exactly loc.Size bytes, hashes to loc.Hash
	// (it was just verified). It may keep a copy; it must not retain data,
	// which belongs to the caller.
	Keep(loc Locator, data []byte)
}

// ReadVerified reads block loc from s into dst and checks size and hash,
// as a Pool would: for the few readers that do not go through one
// (metadata, fsck). A block that does not verify gives an error wrapping
// ErrCorrupt; one that does is handed to the Keeper As finds in s, if any.
func ReadVerified(ctx context.Context, s Store, loc Locator, dst []byte) error {
	if int64(len(dst)) < loc.Size {
		return fmt.Errorf("blockstore: read %v: buffer of %d bytes", loc, len(dst))
	}
	data := dst[:loc.Size]
	n, err := s.Get(ctx, loc, data)
	if err != nil {
		return err
	}
	if err := verify(loc, data, n, nil, nil); err != nil {
		return fmt.Errorf("blockstore: read %v: %w", loc, err)
	}
	if k, ok := As[Keeper](s); ok {
		k.Keep(loc, data)
	}
	return nil
}
