package objects

import (
	"encoding/binary"
	"fmt"
	"io"
)

// ObjectReader reads an encoded object that is NOT in contiguous memory: it
// lies in a file (read through an io.ReaderAt, e.g. a segment) or is split
// across two []byte pieces (e.g. a record spanning two buffers).
//
// Why it exists: an object can be large, so copying all of it into contiguous
// memory just to look at one key would be wasteful. Instead, the first call
// that needs the key directory copies the key count and the cumulative key
// lengths (1+2n bytes, at most 511) into a small cache inside the reader;
// every later key access is then two loads from the cache plus the key bytes
// themselves. This mirrors RAMCloud's ObjectBuffer, and is the reason the
// format stores cumulative rather than individual key lengths.
//
// An ObjectReader is not safe for concurrent use. Its zero value is unusable;
// use NewObjectReader, NewObjectReaderPieces, or one of the Reset methods
// (which let a caller reuse one reader without allocating).
type ObjectReader struct {
	ra     io.ReaderAt
	base   int64 // offset of the object in ra
	p0, p1 []byte
	size   int64

	cached bool
	n      int
	klen   int    // cum[n-1]: total key bytes
	kend   int    // 1+2n+cum[n-1]: where the value starts
	dir    []byte // key count + cumulative lengths: a view of p0, or dirBuf
	dirBuf [1 + 2*MaxKeys]byte
}

// NewObjectReader reads the object stored in r at [off, off+size).
func NewObjectReader(r io.ReaderAt, off, size int64) *ObjectReader {
	o := new(ObjectReader)
	o.Reset(r, off, size)
	return o
}

// NewObjectReaderPieces reads the object whose bytes are a followed by b.
func NewObjectReaderPieces(a, b []byte) *ObjectReader {
	o := new(ObjectReader)
	o.ResetPieces(a, b)
	return o
}

// Reset points the reader at a new object in r and drops the key cache.
func (o *ObjectReader) Reset(r io.ReaderAt, off, size int64) {
	o.ra, o.base, o.size, o.p0, o.p1, o.cached = r, off, size, nil, nil, false
}

// ResetPieces points the reader at a new object made of a then b and drops
// the key cache.
func (o *ObjectReader) ResetPieces(a, b []byte) {
	o.ra, o.base, o.p0, o.p1, o.cached = nil, 0, a, b, false
	o.size = int64(len(a) + len(b))
}

// Size is the encoded object length.
func (o *ObjectReader) Size() int64 { return o.size }

// readAt copies len(dst) bytes from object offset off.
func (o *ObjectReader) readAt(dst []byte, off int64) error {
	if off < 0 || off+int64(len(dst)) > o.size {
		return fmt.Errorf("%w: object read [%d,+%d) past size %d", ErrCorrupt, off, len(dst), o.size)
	}
	if o.ra != nil {
		n, err := o.ra.ReadAt(dst, o.base+off)
		if n == len(dst) {
			return nil
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	l0 := int64(len(o.p0))
	if off < l0 {
		c := copy(dst, o.p0[off:])
		copy(dst[c:], o.p1)
		return nil
	}
	copy(dst, o.p1[off-l0:])
	return nil
}

// view returns the bytes [off, off+n) without copying when they lie inside
// one piece.
func (o *ObjectReader) view(off int64, n int) ([]byte, bool) {
	if o.ra != nil {
		return nil, false
	}
	l0 := int64(len(o.p0))
	end := off + int64(n)
	if end <= l0 {
		return o.p0[off:end:end], true
	}
	if off >= l0 {
		return o.p1[off-l0 : end-l0 : end-l0], true
	}
	return nil, false
}

// checkSize rejects a size no record can have, before anything is
// allocated for it (sizes come from the caller, who may have them from
// untrusted bytes).
func (o *ObjectReader) checkSize() error {
	if o.size < 3 || o.size > maxPayload {
		return fmt.Errorf("%w: object of %d bytes (want 3..%d)", ErrCorrupt, o.size, maxPayload)
	}
	return nil
}

// fill loads the key directory into the cache (first key access only).
func (o *ObjectReader) fill() error {
	if err := o.checkSize(); err != nil {
		return err
	}
	// Fast path: the directory lies entirely in the first piece, which is
	// immutable while the reader uses it: the cache is then a view of it.
	if o.ra == nil && len(o.p0) > 0 {
		n := int(o.p0[0])
		if h := 1 + 2*n; h <= len(o.p0) {
			o.dir = o.p0[:h:h]
			return o.check(n)
		}
	}
	if err := o.readAt(o.dirBuf[:1], 0); err != nil {
		return err
	}
	n := int(o.dirBuf[0])
	h := 1 + 2*n
	if int64(h) > o.size {
		return fmt.Errorf("%w: object key directory truncated", ErrCorrupt)
	}
	if err := o.readAt(o.dirBuf[1:h], 1); err != nil {
		return err
	}
	o.dir = o.dirBuf[:h]
	return o.check(n)
}

// check validates what every access relies on: a key count, and a key area
// that fits in the object. Whether the lengths are really cumulative is
// checked per access (keyRange), so that the first access does not pay for a
// pass over all n lengths.
func (o *ObjectReader) check(n int) error {
	if n == 0 {
		return fmt.Errorf("%w: object with no keys", ErrCorrupt)
	}
	klen := int(binary.LittleEndian.Uint16(o.dir[2*n-1:]))
	kend := 1 + 2*n + klen
	if int64(kend) > o.size {
		return fmt.Errorf("%w: keys run past end of object", ErrCorrupt)
	}
	o.n, o.klen, o.kend, o.cached = n, klen, kend, true
	return nil
}

// NumKeys returns the key count.
func (o *ObjectReader) NumKeys() (int, error) {
	if !o.cached {
		if err := o.fill(); err != nil {
			return 0, err
		}
	}
	return o.n, nil
}

// keyRange returns the object offset and length of key i.
func (o *ObjectReader) keyRange(i int) (int64, int, error) {
	if !o.cached {
		if err := o.fill(); err != nil {
			return 0, 0, err
		}
	}
	if uint(i) >= uint(o.n) {
		return 0, 0, fmt.Errorf("%w: key %d of %d", ErrNotFound, i, o.n)
	}
	d := o.dir
	end := int(d[1+2*i]) | int(d[2+2*i])<<8
	start := 0
	if i > 0 {
		start = int(d[2*i-1]) | int(d[2*i])<<8
	}
	if start > end || end > o.klen {
		return 0, 0, fmt.Errorf("%w: key lengths not cumulative", ErrCorrupt)
	}
	return int64(1 + 2*o.n + start), end - start, nil
}

// KeyLen returns the length of key i.
func (o *ObjectReader) KeyLen(i int) (int, error) {
	_, n, err := o.keyRange(i)
	return n, err
}

// Key returns key i. When the key lies inside one piece it is returned as a
// view without copying; otherwise it is copied into buf (reused if it has the
// capacity). A key index out of range gives an error matching ErrNotFound.
func (o *ObjectReader) Key(i int, buf []byte) ([]byte, error) {
	off, n, err := o.keyRange(i)
	if err != nil {
		return nil, err
	}
	if v, ok := o.view(off, n); ok {
		return v, nil
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if err := o.readAt(buf, off); err != nil {
		return nil, err
	}
	return buf, nil
}

// ValueLen returns the length of the value.
func (o *ObjectReader) ValueLen() (int64, error) {
	if !o.cached {
		if err := o.fill(); err != nil {
			return 0, err
		}
	}
	return o.size - int64(o.kend), nil
}

// AppendValue appends the value to dst.
func (o *ObjectReader) AppendValue(dst []byte) ([]byte, error) {
	vl, err := o.ValueLen()
	if err != nil {
		return dst, err
	}
	n := len(dst)
	dst = append(dst, make([]byte, vl)...)
	return dst, o.readAt(dst[n:], int64(o.kend))
}

// Object copies the whole object into contiguous memory and parses it.
func (o *ObjectReader) Object() (Object, error) {
	if err := o.checkSize(); err != nil {
		return Object{}, err
	}
	b := make([]byte, o.size)
	if err := o.readAt(b, 0); err != nil {
		return Object{}, err
	}
	return ParseObject(b)
}
