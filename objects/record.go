package objects

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Record framing. Every record in a segment is
//
//	offset size  field
//	0      4     crc: CRC-32C (Castagnoli) of bytes [4, 17+len)
//	4      4     len: payload length
//	8      1     type (recObject, recTombstone, recBatchBegin, recBatchCommit)
//	9      8     version: object version; for a tombstone the version it kills
//	17     len   payload
//
// The CRC covers the length, type and version as well as the payload, so a
// damaged header is caught like damaged data. There is no padding: segments
// are never preallocated, so the end of valid data is the first frame that
// does not check out (see scanFrames for how a torn tail is told apart from
// damage in the middle).
const (
	recObject      byte = 1 // payload: encoded object (object.go)
	recTombstone   byte = 2 // payload: u32 segment id of the killed object, then its primary key
	recBatchBegin  byte = 3 // payload: u32 number of records in the batch
	recBatchCommit byte = 4 // payload: u32 number of records in the batch

	frameHeaderSize = 17
	// maxPayload bounds a record so that a damaged length field cannot make
	// replay allocate or skip absurd amounts.
	maxPayload = 1 << 30
)

// MaxSegmentSize is the largest segment file a Log writes, and so the
// largest that Open, Refresh and Ingest accept: a segment holds at most
// Options.SegmentSize (at most 1 GiB) bytes of records, or one batch (at
// most maxPayload bytes) in a segment of its own, after its header. A
// reader of published segments (the catalog) should refuse a segment
// announced larger than this before fetching or allocating anything.
const MaxSegmentSize = segHeaderSize + maxPayload

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var zeroFrameHeader [frameHeaderSize]byte

// beginFrame reserves a frame header at the end of dst; the caller appends
// the payload and then calls finishFrame with the returned start.
func beginFrame(dst []byte) ([]byte, int) {
	return append(dst, zeroFrameHeader[:]...), len(dst)
}

// finishFrame fills in the header of the frame starting at start, whose
// payload is everything after the header.
func finishFrame(b []byte, start int, typ byte, ver uint64) {
	h := b[start:]
	binary.LittleEndian.PutUint32(h[4:], uint32(len(b)-start-frameHeaderSize))
	h[8] = typ
	binary.LittleEndian.PutUint64(h[9:], ver)
	binary.LittleEndian.PutUint32(h[0:], crc32.Checksum(h[4:], castagnoli))
}

func appendU32Frame(dst []byte, typ byte, n uint32) []byte {
	dst, s := beginFrame(dst)
	dst = binary.LittleEndian.AppendUint32(dst, n)
	finishFrame(dst, s, typ, 0)
	return dst
}

func appendTombstone(dst []byte, key string, killedVer uint64, deadSeg uint32) []byte {
	dst, s := beginFrame(dst)
	dst = binary.LittleEndian.AppendUint32(dst, deadSeg)
	dst = append(dst, key...)
	finishFrame(dst, s, recTombstone, killedVer)
	return dst
}

func tombstoneSize(key string) int { return frameHeaderSize + 4 + len(key) }

// frame is a decoded record; payload is a view.
type frame struct {
	typ     byte
	ver     uint64
	crc     uint32 // the frame's CRC: tie-break between equal versions (index.go)
	size    int    // whole frame
	payload []byte
}

type frameStatus int

const (
	frameOK    frameStatus = iota
	frameShort             // b ends inside the frame
	frameBad               // checksum, length or type wrong
)

// decodeFrame decodes the frame at the start of b.
func decodeFrame(b []byte) (frame, frameStatus, string) {
	if len(b) < frameHeaderSize {
		return frame{}, frameShort, "truncated record header"
	}
	n := binary.LittleEndian.Uint32(b[4:])
	if n > maxPayload {
		return frame{}, frameBad, fmt.Sprintf("record length %d too large", n)
	}
	typ := b[8]
	if typ < recObject || typ > recBatchCommit {
		return frame{}, frameBad, fmt.Sprintf("unknown record type %d", typ)
	}
	end := frameHeaderSize + int(n)
	if end > len(b) {
		return frame{}, frameShort, fmt.Sprintf("record of %d bytes truncated at %d", end, len(b))
	}
	if crc32.Checksum(b[4:end], castagnoli) != binary.LittleEndian.Uint32(b) {
		return frame{}, frameBad, "checksum mismatch"
	}
	if (typ == recBatchBegin || typ == recBatchCommit) && n != 4 || typ == recTombstone && (n < 5 || n > 4+MaxKeysLen) {
		// A tombstone's key is a primary key: at most MaxKeysLen bytes.
		return frame{}, frameBad, fmt.Sprintf("record type %d with %d-byte payload", typ, n)
	}
	return frame{typ: typ, ver: binary.LittleEndian.Uint64(b[9:]), crc: binary.LittleEndian.Uint32(b), size: end, payload: b[frameHeaderSize:end]}, frameOK, ""
}

// validFrameAfter reports whether any well-formed frame starts anywhere in
// b after position pos. It is the evidence that separates a torn tail (crash
// in mid-write: nothing valid follows the damage) from damage in the middle
// of data that was once complete (valid records follow).
func validFrameAfter(b []byte, pos int) bool {
	for p := pos + 1; p+frameHeaderSize <= len(b); p++ {
		if _, st, _ := decodeFrame(b[p:]); st == frameOK {
			return true
		}
	}
	return false
}

// scanFrames walks the frames of b, which holds segment bytes starting at
// file offset base. emit is called for every record that is committed: plain
// records at once, records of a batch only once its commit record has been
// seen (so an interrupted batch is never visible). Batch markers are not
// emitted.
//
// It returns the file offset just past the last committed record. If tail is
// true (the segment may still be, or may have been when the process died,
// being appended to), damage or truncation after which no valid frame follows
// ends the scan silently: that is a torn write. Anything else wrong is a
// *CorruptError naming the file and offset.
func scanFrames(b []byte, base int64, tail bool, path string, emit func(off int64, f frame)) (int64, error) {
	type member struct {
		off int64
		f   frame
	}
	var (
		pos        int
		committed  int // end of last committed unit, relative to b
		inBatch    bool
		batchStart int
		want       uint32
		members    []member
	)
	corrupt := func(at int, reason string) (int64, error) {
		return 0, &CorruptError{Segment: path, Offset: base + int64(at), Reason: reason}
	}
	for pos < len(b) {
		f, st, reason := decodeFrame(b[pos:])
		if st != frameOK {
			if tail && (st == frameShort || !validFrameAfter(b, pos)) {
				return base + int64(committed), nil
			}
			return corrupt(pos, reason)
		}
		switch f.typ {
		case recBatchBegin:
			if inBatch {
				return corrupt(pos, "batch begin inside a batch")
			}
			inBatch, batchStart, want = true, pos, binary.LittleEndian.Uint32(f.payload)
			members = members[:0]
		case recBatchCommit:
			if !inBatch {
				return corrupt(pos, "batch commit without begin")
			}
			if n := binary.LittleEndian.Uint32(f.payload); n != want || int(n) != len(members) {
				return corrupt(pos, fmt.Sprintf("batch commit for %d records after %d (begin said %d)", n, len(members), want))
			}
			for _, m := range members {
				emit(m.off, m.f)
			}
			inBatch = false
			committed = pos + f.size
		default:
			if inBatch {
				members = append(members, member{base + int64(pos), f})
			} else {
				emit(base+int64(pos), f)
				committed = pos + f.size
			}
		}
		pos += f.size
	}
	if inBatch && !tail {
		return corrupt(batchStart, "batch without commit at end of sealed segment")
	}
	return base + int64(committed), nil
}
