package objects

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The cleaner reclaims space held by dead records (overwritten or deleted
// objects, and tombstones that no longer protect anything), as in LFS and
// RAMCloud:
//
//  1. Choose sealed segments by cost-benefit: benefit/cost = (1-u)*age/(1+u),
//     u = live fraction. Cleaning a segment costs reading it (1) and writing
//     its live part (u) and frees 1-u; old data is likely to stay put, so old
//     segments are worth cleaning at a higher u than fresh ones.
//  2. Copy every live record verbatim (same bytes, same version, same CRC)
//     into new survivor segments, written as NNNNNN.seg.tmp, fsynced, renamed
//     and the directory fsynced. Live means: an object the primary index
//     points at, or a tombstone whose killed object's segment still exists.
//  3. Under the locks, point the index at the survivors. An object that died
//     while being copied (overwritten or deleted concurrently) gets a new
//     tombstone naming the survivor, so its stale copy can never resurrect.
//  4. Only then delete the old files and fsync the directory.
//
// Ingested segments (Log.Ingest) are never cleaned, and while a log holds
// any, no tombstone is dropped: ingested tombstones name segments of other
// logs, and an ingested object may be dead only because a newer version
// beat it, with no tombstone naming its segment. Keeping every tombstone
// (tombstones kill every version up to theirs) keeps such objects dead
// across reopens whatever the cleaner removes. Local segments are still
// cleaned: dead local objects are dropped, live ones relocated.
//
// Crash safety at every point: before the rename nothing changed (a stray
// .tmp is deleted on open); after it, records exist twice with equal
// versions, and replay treats the higher segment id as the same object.
// Readers keep working throughout: they pin segments with a reference count,
// and the file descriptor of a cleaned segment is closed when the last read
// using it finishes.

// CleanOptions tune one Clean call.
type CleanOptions struct {
	// MaxLiveFraction: only segments whose live fraction is below it are
	// cleaned (default 0.9).
	MaxLiveFraction float64
	// MaxSegments bounds how many segments one call cleans (default 0: no bound).
	MaxSegments int
}

// CleanStats reports what a Clean call did.
type CleanStats struct {
	SegmentsCleaned     int
	SegmentsWritten     int
	BytesRead           int64
	BytesWritten        int64
	ObjectsRelocated    int
	TombstonesRelocated int
	TombstonesDropped   int
	DiedDuringClean     int // objects overwritten/deleted while being copied
	Duration            time.Duration
}

// cleanHook lets tests stop the world at each crash-relevant step.
var cleanHook = func(stage string) {}

type reloc struct {
	key            string
	ver            uint64
	oldSeg, newSeg uint32
	oldOff, newOff uint32
	size           uint32
}

// Clean compacts segments with a low live fraction. It is safe to call while
// reads and writes go on; one Clean runs at a time. ctx is checked between
// segments.
func (l *Log) Clean(ctx context.Context, opts CleanOptions) (CleanStats, error) {
	var st CleanStats
	if l.opts.ReadOnly {
		return st, ErrReadOnly
	}
	if opts.MaxLiveFraction <= 0 {
		opts.MaxLiveFraction = 0.9
	}
	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()
	start := time.Now()

	// 1. Candidates.
	type cand struct {
		s     *segment
		score float64
	}
	var cands []cand
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return st, ErrClosed
	}
	now := time.Now()
	keepTombs := false
	for _, s := range l.segs {
		if s.hdr.kind == kindIngested && !s.removed {
			keepTombs = true
		}
		if !s.sealed || s == l.head || s.removed || s.hdr.kind == kindIngested {
			continue
		}
		u := float64(s.live) / float64(max(1, s.end-segHeaderSize))
		if u >= opts.MaxLiveFraction {
			continue
		}
		age := max(1, s.age(now).Seconds())
		cands = append(cands, cand{s, (1 - u) * age / (1 + u)})
	}
	l.mu.RUnlock()
	slices.SortFunc(cands, func(a, b cand) int {
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		return int(a.s.id) - int(b.s.id)
	})
	if opts.MaxSegments > 0 && len(cands) > opts.MaxSegments {
		cands = cands[:opts.MaxSegments]
	}
	if len(cands) == 0 {
		return st, nil
	}
	victims := map[uint32]bool{}
	var oldest int64 = now.UnixNano()
	for _, c := range cands {
		victims[c.s.id] = true
		oldest = min(oldest, c.s.hdr.dataTime)
	}

	// 2. Copy live records into survivor segments.
	var (
		relocs   []reloc
		outs     []*segment
		cur      *segment
		buf      []byte
		curOff   int64
		tmpNames []string
	)
	fail := func(err error) (CleanStats, error) {
		for i, s := range outs {
			s.release()
			os.Remove(filepath.Join(l.dir, tmpNames[i]))
		}
		return st, err
	}
	flush := func() error {
		if cur == nil || len(buf) == 0 {
			return nil
		}
		_, err := cur.f.WriteAt(buf, curOff)
		curOff += int64(len(buf))
		cur.end = curOff
		st.BytesWritten += int64(len(buf))
		buf = buf[:0]
		return err
	}
	newOut := func() error {
		if err := flush(); err != nil {
			return err
		}
		l.w.mu.Lock()
		id := l.w.nextSeg
		l.w.nextSeg++
		verBase := l.w.nextVer
		l.w.mu.Unlock()
		tmp := segName(id) + ".tmp"
		s, err := createSegment(l.dir, id, segHeader{kind: kindSurvivor, id: id, verBase: verBase, dataTime: oldest}, tmp)
		if err != nil {
			return err
		}
		outs, tmpNames, cur, curOff = append(outs, s), append(tmpNames, tmp), s, segHeaderSize
		st.SegmentsWritten++
		return nil
	}
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		s := c.s
		data := make([]byte, s.end-segHeaderSize)
		if _, err := s.f.ReadAt(data, segHeaderSize); err != nil {
			return fail(err)
		}
		st.BytesRead += int64(len(data))
		var perr error
		_, err := scanFrames(data, segHeaderSize, false, s.path, func(off int64, f frame) {
			if perr != nil {
				return
			}
			rec := data[off-segHeaderSize : off-segHeaderSize+int64(f.size)]
			switch f.typ {
			case recObject:
				o, err := ParseObject(f.payload)
				if err != nil {
					perr = &CorruptError{Segment: s.path, Offset: off, Reason: err.Error()}
					return
				}
				l.mu.RLock()
				e, ok := l.getBytes(o.Key(0))
				l.mu.RUnlock()
				if !ok || e.seg != s.id || int64(e.off) != off {
					return // dead
				}
				if cur == nil || curOff+int64(len(buf)+len(rec)) > l.opts.SegmentSize && curOff+int64(len(buf)) > segHeaderSize {
					if perr = newOut(); perr != nil {
						return
					}
				}
				relocs = append(relocs, reloc{key: string(o.Key(0)), ver: f.ver, oldSeg: s.id, oldOff: uint32(off),
					newSeg: cur.id, newOff: uint32(curOff + int64(len(buf))), size: uint32(f.size)})
				buf = append(buf, rec...)
				cur.widen(f.ver, f.ver)
				st.ObjectsRelocated++
			case recTombstone:
				dead := uint32(f.payload[0]) | uint32(f.payload[1])<<8 | uint32(f.payload[2])<<16 | uint32(f.payload[3])<<24
				l.mu.RLock()
				_, exists := l.segs[dead]
				l.mu.RUnlock()
				// Tombstones killing objects in a segment cleaned in this
				// very pass are kept too: the old files are deleted one by
				// one, and a crash in between must not resurrect anything.
				// The next pass drops them.
				if !exists && !keepTombs {
					st.TombstonesDropped++
					return
				}
				if cur == nil {
					if perr = newOut(); perr != nil {
						return
					}
				}
				buf = append(buf, rec...)
				cur.widen(f.ver, f.ver)
				st.TombstonesRelocated++
			}
		})
		if err == nil {
			err = perr
		}
		if err != nil {
			return fail(err)
		}
		if len(buf) > 4<<20 {
			if err := flush(); err != nil {
				return fail(err)
			}
		}
	}
	if err := flush(); err != nil {
		return fail(err)
	}
	for i, s := range outs {
		if err := s.f.Sync(); err != nil {
			return fail(err)
		}
		if err := os.Rename(filepath.Join(l.dir, tmpNames[i]), s.path); err != nil {
			return fail(err)
		}
	}
	if err := syncDir(l.dir); err != nil {
		return fail(err) // renamed files stay: harmless duplicates
	}
	cleanHook("renamed")

	// 3. Switch the index over; compensate for objects that died meanwhile.
	l.w.mu.Lock()
	l.mu.Lock()
	for _, s := range outs {
		s.sealed = true
		l.segs[s.id] = s
	}
	var died []reloc
	for _, r := range relocs {
		sh, h := l.shardOf(r.key)
		e, ok := sh.find(r.key, h)
		_, inflight := l.w.pending[r.key]
		if ok && e.seg == r.oldSeg && e.off == r.oldOff && !inflight {
			e.seg, e.off = r.newSeg, r.newOff
			sh.set(h, e)
			l.account(r.oldSeg, -int64(r.size))
			l.account(r.newSeg, int64(r.size))
			continue
		}
		died = append(died, r)
		st.DiedDuringClean++
	}
	var gone []*segment
	for id := range victims {
		s := l.segs[id]
		s.removed = true
		delete(l.segs, id)
		gone = append(gone, s)
	}
	l.mu.Unlock()
	var b *batch
	var err error
	if len(died) > 0 {
		b, err = l.enqueueTombstonesLocked(died)
	}
	l.w.mu.Unlock()
	if b != nil {
		<-b.done
		err = b.err
		if err == nil {
			err = l.Sync()
		}
	}
	if err != nil {
		// Without the compensating tombstones the old files must stay: on
		// the next open they are replayed (as duplicates) and keep the
		// original tombstones alive.
		for _, s := range gone {
			s.release()
		}
		return st, err
	}

	// 4. Delete the old segments.
	cleanHook("switched")
	for _, s := range gone {
		if err := os.Remove(s.path); err != nil {
			return st, err
		}
		cleanHook("removed")
		s.release()
		st.SegmentsCleaned++
	}
	if err := syncDir(l.dir); err != nil {
		return st, err
	}
	st.Duration = time.Since(start)
	return st, nil
}
