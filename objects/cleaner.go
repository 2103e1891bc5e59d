package objects

import (
	"context"
	"encoding/binary"
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
// segments. The four steps are those numbered at the top of this file.
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

	victims, keepTombs, err := l.cleanCandidates(opts, start) // 1.
	if err != nil || len(victims) == 0 {
		return st, err
	}
	p := &cleanPass{l: l, st: &st, keepTombs: keepTombs, dataTime: start.UnixNano()}
	for _, s := range victims {
		p.dataTime = min(p.dataTime, s.hdr.dataTime)
	}
	if err := p.copyLive(ctx, victims); err != nil { // 2.
		p.discard()
		return st, err
	}
	cleanHook("renamed")
	gone, err := l.switchToSurvivors(p, victims) // 3.
	if err != nil {
		return st, err
	}
	cleanHook("switched")
	if err := l.removeCleaned(gone, &st); err != nil { // 4.
		return st, err
	}
	st.Duration = time.Since(start)
	return st, nil
}

// cleanCandidates is step 1: the sealed local segments whose live fraction
// is below opts.MaxLiveFraction, best cost-benefit first, at most
// opts.MaxSegments of them. keepTombs reports whether the log holds
// ingested segments (then no tombstone may be dropped).
func (l *Log) cleanCandidates(opts CleanOptions, now time.Time) (victims []*segment, keepTombs bool, err error) {
	type cand struct {
		s     *segment
		score float64
	}
	var cands []cand
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return nil, false, ErrClosed
	}
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
	for _, c := range cands {
		victims = append(victims, c.s)
	}
	return victims, keepTombs, nil
}

// cleanPass is the state of step 2: the survivor segments being written and
// the objects relocated into them.
type cleanPass struct {
	l         *Log
	st        *CleanStats
	keepTombs bool
	dataTime  int64 // of the survivors: that of the oldest victim

	relocs   []reloc
	outs     []*segment // survivors, written under tmpNames
	tmpNames []string
	cur      *segment // the survivor being filled
	buf      []byte   // bytes for cur not yet written, from curOff
	curOff   int64
}

// copyLive is step 2: copy the live records of victims into survivor
// segments, fsync them and rename them into place.
func (p *cleanPass) copyLive(ctx context.Context, victims []*segment) error {
	for _, s := range victims {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := p.copySegment(s); err != nil {
			return err
		}
		if len(p.buf) > 4<<20 {
			if err := p.flush(); err != nil {
				return err
			}
		}
	}
	if err := p.flush(); err != nil {
		return err
	}
	l := p.l
	for i, s := range p.outs {
		if err := s.f.Sync(); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(l.dir, p.tmpNames[i]), s.path); err != nil {
			return err
		}
	}
	return syncDir(l.dir) // on failure, renamed files stay: harmless duplicates
}

// discard drops the survivors of a failed pass.
func (p *cleanPass) discard() {
	for i, s := range p.outs {
		s.release()
		os.Remove(filepath.Join(p.l.dir, p.tmpNames[i]))
	}
}

// copySegment appends the live records of s to the survivors.
func (p *cleanPass) copySegment(s *segment) error {
	data := make([]byte, s.end-segHeaderSize)
	if _, err := s.f.ReadAt(data, segHeaderSize); err != nil {
		return err
	}
	p.st.BytesRead += int64(len(data))
	var perr error
	_, err := scanFrames(data, segHeaderSize, false, s.path, func(off int64, f frame) {
		if perr != nil {
			return
		}
		rec := data[off-segHeaderSize : off-segHeaderSize+int64(f.size)]
		switch f.typ {
		case recObject:
			perr = p.copyObject(s, off, f, rec)
		case recTombstone:
			perr = p.copyTombstone(f, rec)
		}
	})
	if err == nil {
		err = perr
	}
	return err
}

// copyObject copies the object record rec (at off in s) if the index
// points at it.
func (p *cleanPass) copyObject(s *segment, off int64, f frame, rec []byte) error {
	l := p.l
	o, err := ParseObject(f.payload)
	if err != nil {
		return &CorruptError{Segment: s.path, Offset: off, Reason: err.Error()}
	}
	l.mu.RLock()
	e, ok := l.getBytes(o.Key(0))
	l.mu.RUnlock()
	if !ok || e.seg != s.id || int64(e.off) != off {
		return nil // dead
	}
	if p.cur == nil || p.curOff+int64(len(p.buf)+len(rec)) > l.opts.SegmentSize && p.curOff+int64(len(p.buf)) > segHeaderSize {
		if err := p.newOut(); err != nil {
			return err
		}
	}
	p.relocs = append(p.relocs, reloc{key: string(o.Key(0)), ver: f.ver, oldSeg: s.id, oldOff: uint32(off),
		newSeg: p.cur.id, newOff: uint32(p.curOff + int64(len(p.buf))), size: uint32(f.size)})
	p.buf = append(p.buf, rec...)
	p.cur.widen(f.ver, f.ver)
	p.st.ObjectsRelocated++
	return nil
}

// copyTombstone copies the tombstone record rec unless the segment it names
// is gone (and no ingested segment makes every tombstone worth keeping).
func (p *cleanPass) copyTombstone(f frame, rec []byte) error {
	l := p.l
	dead := binary.LittleEndian.Uint32(f.payload)
	l.mu.RLock()
	_, exists := l.segs[dead]
	l.mu.RUnlock()
	// Tombstones killing objects in a segment cleaned in this very pass are
	// kept too: the old files are deleted one by one, and a crash in
	// between must not resurrect anything. The next pass drops them.
	if !exists && !p.keepTombs {
		p.st.TombstonesDropped++
		return nil
	}
	if p.cur == nil {
		if err := p.newOut(); err != nil {
			return err
		}
	}
	p.buf = append(p.buf, rec...)
	p.cur.widen(f.ver, f.ver)
	p.st.TombstonesRelocated++
	return nil
}

// flush writes the buffered bytes to the current survivor.
func (p *cleanPass) flush() error {
	if p.cur == nil || len(p.buf) == 0 {
		return nil
	}
	_, err := p.cur.f.WriteAt(p.buf, p.curOff)
	p.curOff += int64(len(p.buf))
	p.cur.end = p.curOff
	p.st.BytesWritten += int64(len(p.buf))
	p.buf = p.buf[:0]
	return err
}

// newOut starts a new survivor segment (a fresh id, under a .tmp name).
func (p *cleanPass) newOut() error {
	if err := p.flush(); err != nil {
		return err
	}
	l := p.l
	l.w.mu.Lock()
	id := l.w.nextSeg
	l.w.nextSeg++
	verBase := l.w.nextVer
	l.w.mu.Unlock()
	tmp := segName(id) + ".tmp"
	s, err := createSegment(l.dir, id, segHeader{kind: kindSurvivor, id: id, verBase: verBase, dataTime: p.dataTime}, tmp)
	if err != nil {
		return err
	}
	p.outs, p.tmpNames, p.cur, p.curOff = append(p.outs, s), append(p.tmpNames, tmp), s, segHeaderSize
	p.st.SegmentsWritten++
	return nil
}

// switchToSurvivors is step 3: under the locks, add the survivors, point the
// index at the copies of objects still live, drop the victims from the
// table, and write (and sync) compensating tombstones for the objects that
// died while being copied. It returns the victims, whose files step 4
// deletes.
func (l *Log) switchToSurvivors(p *cleanPass, victims []*segment) ([]*segment, error) {
	l.w.mu.Lock()
	l.mu.Lock()
	for _, s := range p.outs {
		s.sealed = true
		l.segs[s.id] = s
	}
	var died []reloc
	for _, r := range p.relocs {
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
		p.st.DiedDuringClean++
	}
	for _, s := range victims {
		s.removed = true
		delete(l.segs, s.id)
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
		for _, s := range victims {
			s.release()
		}
		return nil, err
	}
	return victims, nil
}

// removeCleaned is step 4: delete the cleaned segments' files.
func (l *Log) removeCleaned(gone []*segment, st *CleanStats) error {
	for _, s := range gone {
		if err := os.Remove(s.path); err != nil {
			return err
		}
		cleanHook("removed")
		s.release()
		st.SegmentsCleaned++
	}
	return syncDir(l.dir)
}
