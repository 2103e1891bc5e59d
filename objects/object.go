package objects

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Encoded object layout (all integers little-endian):
//
//	offset      size   field
//	0           1      n = key count (1..255); key 0 is the primary key
//	1           2*n    cumulative key lengths: cum[i] = len(key0)+...+len(key i)
//	1+2n        cum[n-1]  the keys, concatenated
//	1+2n+cum[n-1]  rest   the value; its length is what remains of the record
//
// Why cumulative lengths (as in RAMCloud) rather than per-key lengths: key i
// is found with two loads, cum[i-1] and cum[i], instead of a sum over the
// preceding keys; and the whole key directory is 1+2n bytes, small enough to
// cache in one piece when the object is not in contiguous memory (see
// ObjectReader). The value length is not stored because the record framing
// already knows the record length; keeping the value last lets the write path
// append the caller's value bytes with one copy.
const (
	// MaxKeys is the largest number of keys one object may carry.
	MaxKeys = 255
	// MaxKeysLen is the largest total length of all keys of one object.
	MaxKeysLen = 65535
)

// Object is a zero-copy view of an encoded object. It is a small value type;
// copying it does not copy the bytes. The bytes it views are never modified by
// this package: objects returned by a Log are private, immutable copies read
// from the segment files (see Log.ReadObject).
type Object struct {
	b      []byte // the whole encoded object
	vstart uint32 // offset of the value in b
	ver    uint64
}

// validateKeys checks that keys can be encoded (used by the Log before
// encoding, so AppendObject can stay branch-light).
func validateKeys(keys [][]byte) error {
	if len(keys) == 0 || len(keys) > MaxKeys {
		return fmt.Errorf("%w: %d keys (want 1..%d)", ErrInvalid, len(keys), MaxKeys)
	}
	if len(keys[0]) == 0 {
		return fmt.Errorf("%w: empty primary key", ErrInvalid)
	}
	total := 0
	for _, k := range keys {
		total += len(k)
	}
	if total > MaxKeysLen {
		return fmt.Errorf("%w: keys total %d bytes (max %d)", ErrInvalid, total, MaxKeysLen)
	}
	return nil
}

// EncodedLen is the length AppendObject adds for keys and value.
func EncodedLen(keys [][]byte, value []byte) int {
	n := 1 + 2*len(keys) + len(value)
	for _, k := range keys {
		n += len(k)
	}
	return n
}

// AppendObject appends the encoding of keys and value to dst and returns the
// extended slice. dst is grown at most once, and the value is copied exactly
// once, straight into its final place. It panics if keys cannot be encoded
// (no keys, more than MaxKeys, or more than MaxKeysLen bytes of keys); the Log
// validates its arguments and returns ErrInvalid instead.
func AppendObject(dst []byte, keys [][]byte, value []byte) []byte {
	if len(keys) == 0 || len(keys) > MaxKeys {
		panic("objects: AppendObject: bad key count")
	}
	dst = slices.Grow(dst, EncodedLen(keys, value))
	dst = append(dst, byte(len(keys)))
	cum := 0
	for _, k := range keys {
		cum += len(k)
		if cum > MaxKeysLen {
			panic("objects: AppendObject: keys too long")
		}
		dst = binary.LittleEndian.AppendUint16(dst, uint16(cum))
	}
	for _, k := range keys {
		dst = append(dst, k...)
	}
	return append(dst, value...)
}

// ParseObject returns a view of the encoded object b without copying. It
// validates the key directory once so that later accessors cannot go out of
// bounds; on garbage it returns an error wrapping ErrCorrupt, never panics.
func ParseObject(b []byte) (Object, error) {
	if len(b) < 3 {
		return Object{}, fmt.Errorf("%w: object of %d bytes too short", ErrCorrupt, len(b))
	}
	n := int(b[0])
	if n == 0 {
		return Object{}, fmt.Errorf("%w: object with no keys", ErrCorrupt)
	}
	h := 1 + 2*n
	if len(b) < h {
		return Object{}, fmt.Errorf("%w: object key directory truncated", ErrCorrupt)
	}
	prev := 0
	for i := 0; i < n; i++ {
		c := int(binary.LittleEndian.Uint16(b[1+2*i:]))
		if c < prev {
			return Object{}, fmt.Errorf("%w: key lengths not cumulative", ErrCorrupt)
		}
		prev = c
	}
	if h+prev > len(b) {
		return Object{}, fmt.Errorf("%w: keys run past end of object", ErrCorrupt)
	}
	return Object{b: b, vstart: uint32(h + prev)}, nil
}

// NumKeys returns the number of keys; 0 for the zero Object (which MultiRead
// uses for a missing key).
func (o Object) NumKeys() int {
	if len(o.b) == 0 {
		return 0
	}
	return int(o.b[0])
}

// Key returns key i as a view (capacity-limited, so appending to it cannot
// clobber the object), or nil if i >= NumKeys(). Secondary keys may be empty.
func (o Object) Key(i int) []byte {
	b := o.b
	if len(b) == 0 || uint(i) >= uint(b[0]) {
		return nil
	}
	h := 1 + 2*int(b[0])
	end := int(b[1+2*i]) | int(b[2+2*i])<<8
	start := 0
	if i > 0 {
		start = int(b[2*i-1]) | int(b[2*i])<<8
	}
	return b[h+start : h+end : h+end]
}

// Value returns the value as a view (capacity-limited).
func (o Object) Value() []byte {
	if len(o.b) == 0 {
		return nil
	}
	return o.b[o.vstart:len(o.b):len(o.b)]
}

// Version returns the version the log assigned when the object was written
// (0 for an object parsed standalone). Versions increase monotonically per
// log, so the newest write of a key is the one with the highest version, no
// matter in which order records are found on disk.
func (o Object) Version() uint64 { return o.ver }

// Bytes returns the whole encoded object (a view).
func (o Object) Bytes() []byte { return o.b[:len(o.b):len(o.b)] }
