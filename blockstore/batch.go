package blockstore

import "context"

// BatchDeleter is implemented by stores that delete many blocks in one
// request (S3 DeleteObjects): a collector freeing a million blocks then
// makes a thousand requests, not a million. Blocks already missing are not
// an error (a collector rerun after a crash deletes some twice).
type BatchDeleter interface {
	DeleteBatch(ctx context.Context, hs []Hash) error
}
