// Package objects stores multikey objects in an append-only, crash-safe log
// of segment files and keeps in-memory indexes over their keys.
//
// The object format follows RAMCloud's multikey objects: one encoded object
// carries every key (key 0 is the primary key, the others are secondary keys)
// and the value, so a single log record is all that must be written or read.
// See docs/objects.md for the on-disk layout and the design rationale.
package objects

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package that belongs to one of
// these classes satisfies errors.Is with the sentinel, so callers never have to
// match strings.
var (
	ErrNotFound = errors.New("objects: not found")
	ErrCorrupt  = errors.New("objects: corrupt data")
	ErrClosed   = errors.New("objects: log closed")
	ErrLocked   = errors.New("objects: log locked by another writer")
	ErrReadOnly = errors.New("objects: log opened read-only")
	// ErrInvalid reports an argument the format cannot represent (no keys, an
	// empty primary key, too many keys, keys too long, a record too large).
	ErrInvalid = errors.New("objects: invalid argument")
)

// CorruptError reports damaged log data at a precise place, so an operator can
// inspect (or cut) the file by hand. It matches ErrCorrupt with errors.Is.
type CorruptError struct {
	Segment string // segment file path
	Offset  int64  // byte offset of the damaged record (or header) in Segment
	Reason  string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("objects: corrupt segment %s at offset %d: %s", e.Segment, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true for a *CorruptError.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }
