package objects

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Export: the live state of a log as fresh segments.
//
// A store's catalog grows by segments, one set per publish; compaction
// replaces many of them by a few that hold the same state. The state must
// come out with its versions and CRCs, not as new writes: a compaction
// races imports that publish meanwhile, and those imports' writes must keep
// beating (or losing to) exactly what they would have beaten before.
// Records are therefore copied byte for byte, as the cleaner copies them,
// into segments Ingest takes like any other log's.

// ExportStats counts what Export wrote.
type ExportStats struct {
	Segments   int
	Objects    int
	Tombstones int
	Bytes      int64
}

// Export writes the log's live state — every live object, and every
// tombstone the log keeps (a tombstone of a key with no live object still
// kills an older concurrent write that another log has not published yet)
// — as new segments of at most segSize bytes (a record larger than that
// gets a segment of its own), in primary key order, and calls emit with
// each one's complete bytes: a sealed segment in the format Ingest takes,
// with every record byte for byte as the log holds it. emit may keep the
// slice.
//
// The state is the one of the moment Export starts (taken under the read
// lock; writes made meanwhile are not in it). Segments it reads stay
// readable through their pins even if the cleaner removes them.
func (l *Log) Export(ctx context.Context, segSize int64, emit func(data []byte) error) (ExportStats, error) {
	ents, tombs, segs, err := l.liveState()
	if err != nil {
		return ExportStats{}, err
	}
	defer func() {
		for _, s := range segs {
			s.release()
		}
	}()
	x := exporter{segSize: max(segSize, segHeaderSize+frameHeaderSize), emit: emit, verBase: l.MaxVersion() + 1}
	for i, e := range ents {
		if i%4096 == 0 && ctx.Err() != nil {
			return x.st, ctx.Err()
		}
		rec, err := readFrame(segs[e.seg], e)
		if err != nil {
			return x.st, err
		}
		if err := x.add(rec); err != nil {
			return x.st, err
		}
		x.st.Objects++
	}
	for _, t := range tombs {
		if err := x.add(appendTombstone(nil, t.key, t.ver, 0)); err != nil {
			return x.st, err
		}
		x.st.Tombstones++
	}
	return x.st, x.finish()
}

type exportTomb struct {
	key string
	ver uint64
}

// liveState copies the primary index and the tombstones under the read
// lock, sorted by key, and pins every segment the entries point into.
func (l *Log) liveState() ([]pentry, []exportTomb, map[uint32]*segment, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, nil, nil, ErrClosed
	}
	ents := make([]pentry, 0, l.objects())
	var tombs []exportTomb
	for i := range l.shards {
		sh := &l.shards[i]
		for _, e := range sh.prim {
			ents = append(ents, e)
		}
		for _, e := range sh.over {
			ents = append(ents, e)
		}
		for k, v := range sh.tombs {
			tombs = append(tombs, exportTomb{k, v})
		}
	}
	segs := map[uint32]*segment{}
	for _, e := range ents {
		if _, ok := segs[e.seg]; ok {
			continue
		}
		s := l.segs[e.seg]
		if s == nil {
			for _, p := range segs {
				p.release()
			}
			return nil, nil, nil, fmt.Errorf("objects: index points to missing segment %d", e.seg)
		}
		s.acquire()
		segs[e.seg] = s
	}
	slices.SortFunc(ents, func(a, b pentry) int { return strings.Compare(a.key, b.key) })
	slices.SortFunc(tombs, func(a, b exportTomb) int { return strings.Compare(a.key, b.key) })
	return ents, tombs, segs, nil
}

// readFrame reads the whole record e points at and checks that it is the
// indexed object.
func readFrame(s *segment, e pentry) ([]byte, error) {
	buf := make([]byte, e.size)
	if _, err := s.f.ReadAt(buf, int64(e.off)); err != nil {
		return nil, fmt.Errorf("objects: read %s at %d: %w", s.path, e.off, err)
	}
	f, st, reason := decodeFrame(buf)
	if st != frameOK || f.typ != recObject || f.ver != e.ver || f.crc != e.crc {
		if reason == "" {
			reason = "record is not the indexed object"
		}
		return nil, &CorruptError{Segment: s.path, Offset: int64(e.off), Reason: reason}
	}
	return buf, nil
}

// exporter cuts records into segments.
type exporter struct {
	segSize int64
	emit    func([]byte) error
	verBase uint64
	buf     []byte
	n       int // records in buf
	st      ExportStats
}

func (x *exporter) add(rec []byte) error {
	if x.n > 0 && int64(len(x.buf)+len(rec)) > x.segSize {
		if err := x.finish(); err != nil {
			return err
		}
	}
	if x.buf == nil {
		x.st.Segments++
		hdr := segHeader{kind: kindSurvivor, id: uint32(x.st.Segments), verBase: x.verBase, dataTime: time.Now().UnixNano()}
		x.buf = append(make([]byte, 0, min(x.segSize, 4<<20)), hdr.encode()...)
	}
	x.buf = append(x.buf, rec...)
	x.n++
	return nil
}

// finish emits the segment being built, if any.
func (x *exporter) finish() error {
	if x.n == 0 {
		return nil
	}
	data := x.buf
	x.buf, x.n = nil, 0
	x.st.Bytes += int64(len(data))
	return x.emit(data)
}
