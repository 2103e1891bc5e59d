package objects

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"blockfs/internal/fileutil"
)

// Segment files are named NNNNNN.seg (decimal id, ids never reused). Each
// starts with a fixed header:
//
//	offset size field
//	0      8    magic "BFSOBJL1"
//	8      1    kind: 1 = head (written by appends), 2 = survivor (written by the cleaner),
//	            3 = ingested (another log's sealed segment, added by Ingest)
//	9      3    zero
//	12     4    segment id (must match the file name)
//	16     8    version base: no version below it will ever be issued again
//	24     8    data time (unix ns): age of the data, for the cleaner's cost-benefit choice
//	32     4    CRC-32C of bytes [0,32)
//	36     4    zero
//
// then records (record.go) up to the end of the file.
//
// Why a kind: a crash can tear only the tail of the newest head segment (the
// cleaner writes survivors to NNNNNN.seg.tmp and renames them only after an
// fsync). Survivor ids may be higher than the head's, so "the last file" is
// not the one that may be torn; the header says which one is.
//
// Ingested segments, like survivors, are written to a .tmp name and renamed
// once complete and fsynced, so they are never torn either.
//
// Why a version base: the cleaner may delete every record that carried the
// highest versions; the base in the (never-cleaned) newest head segment keeps
// versions from going backwards after a restart.
const (
	segHeaderSize = 40
	kindHead      = 1
	kindSurvivor  = 2
	kindIngested  = 3
	segSuffix     = ".seg"
	tmpSuffix     = ".seg.tmp"
)

var segMagic = [8]byte{'B', 'F', 'S', 'O', 'B', 'J', 'L', '1'}

type segHeader struct {
	kind     byte
	id       uint32
	verBase  uint64
	dataTime int64
}

func (h segHeader) encode() []byte {
	b := make([]byte, segHeaderSize)
	copy(b, segMagic[:])
	b[8] = h.kind
	binary.LittleEndian.PutUint32(b[12:], h.id)
	binary.LittleEndian.PutUint64(b[16:], h.verBase)
	binary.LittleEndian.PutUint64(b[24:], uint64(h.dataTime))
	binary.LittleEndian.PutUint32(b[32:], crc32.Checksum(b[:32], castagnoli))
	return b
}

func decodeSegHeader(b []byte, id uint32) (segHeader, string) {
	h, reason := decodeSegHeaderAnyID(b)
	if reason == "" && h.id != id {
		return segHeader{}, fmt.Sprintf("header id %d does not match file name", h.id)
	}
	return h, reason
}

// decodeSegHeaderAnyID checks a header without knowing the file's id (a
// segment from another log, see Ingest).
func decodeSegHeaderAnyID(b []byte) (segHeader, string) {
	if len(b) < segHeaderSize {
		return segHeader{}, "truncated segment header"
	}
	if [8]byte(b[:8]) != segMagic {
		return segHeader{}, "bad segment magic"
	}
	if crc32.Checksum(b[:32], castagnoli) != binary.LittleEndian.Uint32(b[32:]) {
		return segHeader{}, "segment header checksum mismatch"
	}
	h := segHeader{
		kind:     b[8],
		id:       binary.LittleEndian.Uint32(b[12:]),
		verBase:  binary.LittleEndian.Uint64(b[16:]),
		dataTime: int64(binary.LittleEndian.Uint64(b[24:])),
	}
	if h.kind != kindHead && h.kind != kindSurvivor && h.kind != kindIngested {
		return segHeader{}, fmt.Sprintf("unknown segment kind %d", h.kind)
	}
	return h, ""
}

func segName(id uint32) string { return fmt.Sprintf("%06d%s", id, segSuffix) }

func parseSegName(name string) (uint32, bool) {
	s, ok := strings.CutSuffix(name, segSuffix)
	if !ok || s == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil && n > 0
}

// segment is an open segment file. The file descriptor is shared by readers
// (pread) and, for the head, the committer (pwrite). It is reference counted
// so that the cleaner can drop a segment while reads are in flight: the table
// holds one reference, every read holds one while it preads, and the last
// release closes the file. (On Linux an unlinked file stays readable through
// an open descriptor, which is what lets reads, and ReadOnly logs in other
// processes, carry on across a clean.)
type segment struct {
	id   uint32
	path string
	f    *os.File
	hdr  segHeader
	refs atomic.Int32

	// Protected by Log.mu.
	end     int64 // file offset just past the last committed record known
	live    int64 // bytes of records the primary index points at
	removed bool  // deleted by the cleaner (ReadOnly: vanished from the directory)
	// sealed: complete and fully applied to the index, so the cleaner may
	// take it. A head stops being the head when the committer rolls, but its
	// last records are applied only when that whole batch is; until then it
	// is not sealed.
	sealed bool
	// Versions of the object and tombstone records known.
	verRange
}

// verRange is the range of record versions in a segment or part of one
// (0, 0: no records).
type verRange struct{ minVer, maxVer uint64 }

// widen widens r by [lo, hi] (0, 0: nothing).
func (r *verRange) widen(lo, hi uint64) {
	if hi == 0 {
		return
	}
	if r.minVer == 0 || lo < r.minVer {
		r.minVer = lo
	}
	r.maxVer = max(r.maxVer, hi)
}

func newSegment(dir string, id uint32, f *os.File, hdr segHeader) *segment {
	s := &segment{id: id, path: filepath.Join(dir, segName(id)), f: f, hdr: hdr, end: segHeaderSize}
	s.refs.Store(1)
	return s
}

func (s *segment) acquire() { s.refs.Add(1) }

func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.f.Close()
	}
}

func (s *segment) age(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, s.hdr.dataTime))
}

// syncDir makes creations, renames and removals in dir durable.
func syncDir(dir string) error { return fileutil.SyncDir(dir) }
