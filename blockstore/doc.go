// Package blockstore stores and serves immutable, content-addressed blocks.
//
// A block is named by the SHA-256 of its bytes (Hash) and is addressed by a
// Locator, which also carries the block's size so that a reader can size its
// buffer before the first byte arrives.
//
// Backends implement the small Store interface (DirStore keeps blocks as
// files; s3 and httpstore are network backends). Readers do not call a Store
// directly: they go through a Pool, which bounds the memory spent on block
// buffers, verifies every byte it hands out, lets overlapping reads of one
// block share a single fetch, and keeps recently released blocks around so
// that the many readers that tend to want the same block at the same moment
// (a fleet of jobs starting together) cost one backend read instead of
// hundreds.
//
// Two optional interfaces let a store do better than copy into a buffer: a
// Mapper (DirStore, the disk cache) hands out a block's file mapped and
// locked in memory, and a Keeper (the disk cache) is given the bytes the
// Pool has verified, so that it need not hash them again. These and the
// other optional capabilities (HashedPutter, Flusher, RefStore) are found
// with As, which looks through wrappers (the disk cache, metrics) by their
// Unwrap; the rule for wrappers is on Unwrapper's file, unwrap.go. The
// contract every Store keeps is a test suite, blockstore/storetest.
//
// Verification is most of what a cold read costs, so Sum pairs blocks: with
// the SHA extensions, one core hashes two blocks in about the time of one
// (a generated two-lane SHA-NI block function, internal/sumgen), and
// concurrent Sums are matched up in flight (sum.go). A prefetched block, whose
// bytes nobody waits for yet, waits briefly for a partner.
//
// Everything here is safe for concurrent use.
package blockstore
