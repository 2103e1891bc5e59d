package objects

import (
	"fmt"
	"hash/maphash"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
)

// Sharing segments between logs.
//
// Metadata lives in the block store: every process keeps a private writer
// Log, publishes the segments it sealed (Seal, Segments, then the bytes of
// each sealed file), and ingests the segments other logs published
// (Ingest). A segment's bytes are self-describing: header, then records
// with their versions and CRCs.
//
// Versions across logs. Each log issues versions from its own counter, and
// Ingest raises that counter above every version it ingests (a Lamport
// clock), so a write made after seeing a segment beats everything in it.
// Two logs that have not seen each other's writes may issue the same
// version to different objects; then the frame CRC decides (pentry.losesTo),
// so every log ends up with the same winner whatever the order in which it
// ingests the segments. A tombstone kills every version up to its own,
// wherever the object came from.
//
// Ingested segments get a fresh local id and kind ingested in a rewritten
// header; their records are stored byte for byte (record CRCs unchanged).
// Tombstones in them name segments of the log that wrote them: those ids
// mean nothing here, which is why the cleaner leaves ingested segments alone
// and keeps every tombstone once the log holds any (see cleaner.go).

// ingestName is CorruptError.Segment for damage found by Ingest.
const ingestName = "ingest"

// SegmentInfo describes one segment file of a log.
type SegmentInfo struct {
	ID   uint32
	Path string // the segment file
	Size int64  // bytes of complete records, header included (the file size once sealed)
	// Sealed: complete and immutable (not the current head). Only sealed
	// segments may be published.
	Sealed bool
	// Ingested: came in through Ingest.
	Ingested bool
	// MinVersion, MaxVersion of the object and tombstone records in it (0, 0
	// if none).
	MinVersion, MaxVersion uint64
}

// Segments lists the log's segment files in id order.
func (l *Log) Segments() []SegmentInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]SegmentInfo, 0, len(l.segs))
	for _, s := range l.segs {
		if !s.removed {
			out = append(out, l.infoLocked(s))
		}
	}
	slices.SortFunc(out, func(a, b SegmentInfo) int { return int(a.ID) - int(b.ID) })
	return out
}

func (l *Log) infoLocked(s *segment) SegmentInfo {
	sealed := s.sealed && s != l.head
	if l.opts.ReadOnly {
		// The writer may still be appending to the newest head.
		sealed = s.hdr.kind != kindHead || s.id != l.lastHd
	}
	return SegmentInfo{
		ID: s.id, Path: s.path, Size: s.end, Sealed: sealed, Ingested: s.hdr.kind == kindIngested,
		MinVersion: s.minVer, MaxVersion: s.maxVer,
	}
}

// MaxVersion is the highest version the log has issued or ingested (0 for
// an empty log). A ReadOnly log reports the highest version it has read.
func (l *Log) MaxVersion() uint64 {
	if !l.opts.ReadOnly {
		l.w.mu.Lock()
		defer l.w.mu.Unlock()
		return max(l.w.nextVer, 1) - 1
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	var v uint64
	for _, s := range l.segs {
		v = max(v, s.maxVer)
	}
	return v
}

// parseIngest checks a whole segment from another log. Nothing may be
// missing: unlike a local head, a torn tail is damage here.
func parseIngest(data []byte) (segHeader, segParse, error) {
	hdr, ps, err := parseIngestSeed(data, maphash.MakeSeed(), 1)
	if len(ps) == 0 {
		return hdr, segParse{}, err
	}
	return hdr, ps[0], err
}

// parseIngestSeed is parseIngest hashing keys with seed (the log's), in up
// to chunks pieces parsed in parallel (see parseChunks). The pieces are in
// log order; the first carries the segment's version range.
func parseIngestSeed(data []byte, seed maphash.Seed, chunks int) (segHeader, []segParse, error) {
	corrupt := func(off int64, reason string) error {
		return &CorruptError{Segment: ingestName, Offset: off, Reason: reason}
	}
	hdr, reason := decodeSegHeaderAnyID(data)
	if reason != "" {
		return hdr, nil, corrupt(0, reason)
	}
	if len(data) > MaxSegmentSize {
		return hdr, nil, corrupt(0, fmt.Sprintf("segment of %d bytes larger than MaxSegmentSize (%d)", len(data), MaxSegmentSize))
	}
	ps := parseChunks(&segment{path: ingestName}, data[segHeaderSize:], segHeaderSize, false, seed, chunks)
	last := &ps[len(ps)-1]
	if last.err != nil {
		return hdr, ps, last.err
	}
	for i := range ps[1:] {
		ps[0].widen(ps[i+1].minVer, ps[i+1].maxVer)
	}
	if last.end != int64(len(data)) {
		return hdr, ps, corrupt(last.end, "bytes after the last record")
	}
	if ps[0].maxVer == math.MaxUint64 {
		return hdr, ps, corrupt(segHeaderSize, "version out of range")
	}
	return hdr, ps, nil
}

// Ingest adds a complete segment produced by another Log: data is the whole
// content of a sealed segment file (SegmentInfo.Sealed).
//
// It first validates everything (header, every record's framing and CRC,
// every object's encoding, every batch complete, no torn tail) and rejects
// a damaged segment whole, with a *CorruptError (Segment "ingest", Offset
// of the damage in data), without changing anything. It then stores the
// bytes as a new local segment (fresh id, kind ingested, header rewritten;
// written to a temporary name, fsynced, renamed, directory fsynced, so a
// crash leaves all of it or none), applies its records to the indexes
// (versions decide, not arrival order; tombstones apply to objects of any
// origin) and raises the log's next version above every version in it.
//
// Ingesting the same bytes twice is harmless: the records carry the same
// versions and CRCs, so the second copy is the same objects (the index moves
// to the newer copy, as for a cleaner copy) and tombstones the log has
// applied since still kill them. It costs a duplicate segment file; callers
// that can tell (by a published segment's name) should skip it.
//
// Writer logs only (ErrReadOnly otherwise). Safe concurrently with reads,
// writes and Clean (it waits for a running Clean).
func (l *Log) Ingest(data []byte) (SegmentInfo, error) {
	if l.opts.ReadOnly {
		return SegmentInfo{}, ErrReadOnly
	}
	fhdr, ps, err := parseIngestSeed(data, l.seed, runtime.GOMAXPROCS(0))
	if err != nil {
		return SegmentInfo{}, err
	}
	// One at a time with Clean: its choice of keeping tombstones depends on
	// whether ingested segments exist.
	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()

	w := &l.w
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return SegmentInfo{}, ErrClosed
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return SegmentInfo{}, err
	}
	if err := w.plausibleLocked(ps); err != nil {
		w.mu.Unlock()
		return SegmentInfo{}, err
	}
	id := w.nextSeg
	w.nextSeg++
	// Raised before the records are visible: a write that can observe them
	// gets a higher version.
	w.nextVer = max(w.nextVer, ps[0].maxVer+1)
	hdr := segHeader{kind: kindIngested, id: id, verBase: w.nextVer, dataTime: fhdr.dataTime}
	w.mu.Unlock()

	s, err := l.writeIngested(hdr, data)
	if err != nil {
		return SegmentInfo{}, err
	}
	s.end = int64(len(data))
	s.sealed = true
	s.widen(ps[0].minVer, ps[0].maxVer)

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		os.Remove(s.path)
		s.release()
		return SegmentInfo{}, ErrClosed
	}
	l.segs[id] = s
	for i := range ps {
		ps[i].s = s
	}
	l.applyBatch(ps, false)
	info := l.infoLocked(s)
	l.mu.Unlock()
	return info, nil
}

// MaxVersionGap bounds how far above a log's highest version (MaxVersion)
// the versions of a segment given to Ingest may reach, beyond one version per
// object in the segment. A segment past it is implausible and rejected.
//
// Why: Ingest raises the log's next version above everything it ingests, so
// one segment carrying a version near 2^64 (crafted, or damaged before its
// CRC was computed) would leave no versions to issue: the next write would
// carry the top version, which Ingest must reject (it would wedge every
// other log), and from then on every log that reads the store is stuck. An
// honest segment reaches above what the ingesting log has seen only by its
// own objects and by versions its writer issued without this log seeing
// them (segments this log has not ingested yet, writes its writer lost in a
// crash); for those, 2^32 versions is far more than enough. And since each
// accepted segment can raise the clock by at most this gap plus its object
// count, exhausting the 2^64 space would take some 2^31 accepted segments.
//
// Logs that have seen different segments may judge a segment near the bound
// differently; only segments more than 2^32 versions ahead of everything
// else are affected.
const MaxVersionGap = 1 << 32

// plausibleLocked rejects, as a *CorruptError, a parsed segment whose
// versions lie more than MaxVersionGap above the log's highest version plus
// the segment's object count. Callers hold w.mu.
func (w *writer) plausibleLocked(ps []segParse) error {
	objs := uint64(0)
	for i := range ps {
		objs += uint64(len(ps[i].objs))
	}
	seen := max(w.nextVer, 1) - 1
	limit := satAdd(satAdd(seen, objs), MaxVersionGap)
	if v := ps[0].maxVer; v > limit {
		return &CorruptError{Segment: ingestName, Offset: segHeaderSize, Reason: fmt.Sprintf(
			"implausible version %d: more than %d above the log's highest version %d plus the segment's %d objects",
			v, uint64(MaxVersionGap), seen, objs)}
	}
	return nil
}

// satAdd is a+b, or MaxUint64 if that overflows.
func satAdd(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxUint64
}

// writeIngested writes a new segment file: hdr, then data's records.
func (l *Log) writeIngested(hdr segHeader, data []byte) (*segment, error) {
	final := filepath.Join(l.dir, segName(hdr.id))
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	renamed := false
	if _, err = f.WriteAt(hdr.encode(), 0); err == nil {
		_, err = f.WriteAt(data[segHeaderSize:], segHeaderSize)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, final)
		renamed = err == nil
	}
	if err == nil {
		err = syncDir(l.dir)
	}
	if err != nil {
		f.Close()
		if renamed {
			os.Remove(final)
		} else {
			os.Remove(tmp)
		}
		return nil, err
	}
	return newSegment(l.dir, hdr.id, f, hdr), nil
}

// SegmentKeys calls fn with the primary key of every object and tombstone
// record in data, a whole segment as Ingest takes it (objects first, then
// tombstones, each in log order; a key may come more than once). It checks
// the segment as Ingest does and calls fn only if it is whole. A reader that
// caches what it served (a FUSE mount, whose kernel keeps names and
// listings) learns from it exactly which keys an ingested segment may have
// changed. key is valid only during the call.
func SegmentKeys(data []byte, fn func(key string)) error {
	_, p, err := parseIngest(data)
	if err != nil {
		return err
	}
	for i := range p.objs {
		fn(p.key(p.objs[i].key))
	}
	for i := range p.tombs {
		fn(p.key(p.tombs[i].key))
	}
	return nil
}
