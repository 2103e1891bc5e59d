package blockstore

import (
	"context"
	"fmt"
)

// Store is the one small interface every backend implements (a directory
// now; HTTP and S3 later). It is deliberately dumb: no caching, no sharing,
// no verification on read. Those live once, in Pool, instead of once per
// backend. Implementations must be safe for concurrent use.
type Store interface {
	// Get reads block loc into dst (len(dst) >= loc.Size) and returns the
	// number of bytes read. It need not verify the hash (the Pool does). A
	// missing block yields an error wrapping ErrNotFound.
	Get(ctx context.Context, loc Locator, dst []byte) (int, error)

	// Put stores data under h. It must verify Sum(data) == h and return an
	// error wrapping ErrCorrupt otherwise: writes are where corruption
	// would become permanent. Writing a block that exists is a no-op.
	Put(ctx context.Context, h Hash, data []byte) error

	// Has reports whether the block is stored.
	Has(ctx context.Context, h Hash) (bool, error)

	// List calls fn for every block, in no particular order. A non-nil
	// error from fn stops the listing and is returned.
	List(ctx context.Context, fn func(Locator) error) error

	// Delete removes the block. A missing block yields an error wrapping
	// ErrNotFound.
	Delete(ctx context.Context, h Hash) error
}

// HashedPutter is implemented by stores whose Put verifies the hash by
// hashing the data again and first asks whether the block exists. PutHashed
// is Put without either, for a caller that has itself just computed h from
// these very bytes and found the block missing with Has (the importer):
// hashing every new block twice cost a third of an import's speed, and the
// second existence check is another round trip per block on S3. Writing a
// block that appeared meanwhile is harmless (same bytes). Every other
// caller uses Put. A wrapper that observes Put implements PutHashed too;
// others expose Unwrap (see As).
type HashedPutter interface {
	PutHashed(ctx context.Context, h Hash, data []byte) error
}

// PutHashed stores data under h, which the caller computed from data
// itself after Has said the block is missing: through the PutHashed that
// As finds in s if there is one, else through Put.
func PutHashed(ctx context.Context, s Store, h Hash, data []byte) error {
	if hp, ok := As[HashedPutter](s); ok {
		return hp.PutHashed(ctx, h, data)
	}
	return s.Put(ctx, h, data)
}

// CheckPut is what every Store.Put checks before writing anything: the
// block fits in MaxBlockSize and data hashes to h. Writes are where
// corruption would become permanent.
func CheckPut(h Hash, data []byte) error {
	if len(data) > MaxBlockSize {
		return fmt.Errorf("%w: put %v: %d bytes", ErrTooLarge, h, len(data))
	}
	if got := Sum(data); got != h {
		return fmt.Errorf("%w: put %v: data hashes to %v", ErrCorrupt, h, got)
	}
	return nil
}
