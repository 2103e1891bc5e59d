package blockstore

import "errors"

// Sentinel errors. Functions in this package wrap them with context (the
// hash, the path, the cause), so test for them with errors.Is, never ==.
var (
	// ErrMalformed reports a hash or locator string that does not parse, or
	// a Locator whose fields are out of range.
	ErrMalformed = errors.New("blockstore: malformed")

	// ErrNotFound reports a block the store does not have.
	ErrNotFound = errors.New("blockstore: block not found")

	// ErrCorrupt reports bytes that do not hash to the name they were
	// stored or requested under, or whose size does not match the locator.
	ErrCorrupt = errors.New("blockstore: block corrupt")

	// ErrBusy is returned by Pool.Get when every buffer is in use and the
	// queue of callers waiting for one is full. It is meant to become an
	// HTTP 503 (or EAGAIN): the caller should back off, not queue forever.
	ErrBusy = errors.New("blockstore: pool busy")

	// ErrWouldWait is returned by Pool.TryGet when the block could only be
	// had by waiting for a buffer to be released.
	ErrWouldWait = errors.New("blockstore: no buffer free without waiting")

	// ErrTooLarge reports a block bigger than MaxBlockSize or than a Pool's
	// whole memory budget, which could therefore never be held.
	ErrTooLarge = errors.New("blockstore: block too large")
)
