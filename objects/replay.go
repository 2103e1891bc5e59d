package objects

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Replay: rebuilding the indexes from the segment files.
//
// Each segment is parsed independently (in parallel, one worker per CPU):
// frames are checked and decoded, keys are copied into per-segment arenas.
// The results are then merged in one pass. The merge does not depend on the
// order of segments or records: the highest version of a key wins, a
// tombstone kills every version up to the one it names, and equal versions
// (a record copied by the cleaner) are the same object. The ordered indexes
// are built at the very end in bulk (sort + cut into leaves) instead of one
// insert per record.
//
// ReadOnly logs use the same code for Refresh: each segment remembers how far
// it was parsed, and only the new bytes are read and applied (incrementally,
// as the ordered indexes then already exist).

// robj and rtomb are parsed records. They hold no pointers (keys are
// references into the segParse's arena), so the garbage collector never scans
// the big arrays of them that replay builds, and storing them needs no write
// barriers.
type robj struct {
	h         uint64 // hash of the key (Log.seed), computed while its bytes are in cache
	ver       uint64
	off, size uint32
	crc       uint32
	key       kref
	sk        uint32 // secondary keys: arena.skeys(sk, nsk)
	nsk       uint8
}

type rtomb struct {
	h      uint64 // hash of key
	killed uint64
	key    kref
}

type segParse struct {
	s        *segment
	objs     []robj
	tombs    []rtomb
	keys     arena // what objs and tombs refer to
	end      int64
	verRange // of object and tombstone records
	err      error

	// applyBatch's partition by shard (see segParse.partition).
	objAt           []uint32
	sorted          []sobj
	tombAt, tombIdx []uint32
	dead            []bool // objs[i] is not its key's live version
}

func (p *segParse) key(k kref) string { return p.keys.str(k) }

func (p *segParse) skeys(o *robj) []string { return p.keys.skeys(o.sk, o.nsk) }

// kref locates a key in an arena: chunk c, bytes [o, o+n).
type kref struct {
	c    uint32
	o, n uint16
}

// arena holds the keys of parsed records in large shared chunks: one
// allocation per 64 KiB of keys instead of one per key, which dominates
// replay otherwise. Records refer to keys by kref (no pointers); the index
// gets strings backed by the chunks. A chunk stays alive while any key in it
// is in the index; that wastes at most the bytes of dead keys sharing chunks
// with live ones. Secondary keys become strings at once, in chunks of
// string headers (what index entries keep).
type arena struct {
	chunks [][]byte
	strs   [][]string
}

const (
	arenaChunk = 64 << 10 // bytes; a key is at most MaxKeysLen < arenaChunk
	strsChunk  = 1 << 12  // strings; an object has at most MaxKeys-1 secondary keys
)

func (a *arena) add(b []byte) kref {
	if len(b) == 0 {
		return kref{}
	}
	n := len(a.chunks)
	if n == 0 || len(a.chunks[n-1])+len(b) > arenaChunk {
		a.chunks = append(a.chunks, make([]byte, 0, arenaChunk))
		n++
	}
	c := a.chunks[n-1]
	k := kref{c: uint32(n - 1), o: uint16(len(c)), n: uint16(len(b))}
	a.chunks[n-1] = append(c, b...)
	return k
}

func (a *arena) str(k kref) string {
	if k.n == 0 {
		return ""
	}
	return unsafe.String(&a.chunks[k.c][k.o], int(k.n))
}

// newSkeys returns room for n (<= strsChunk) strings and its index.
func (a *arena) newSkeys(n int) ([]string, uint32) {
	m := len(a.strs)
	if m == 0 || len(a.strs[m-1])+n > strsChunk {
		a.strs = append(a.strs, make([]string, 0, strsChunk))
		m++
	}
	c := a.strs[m-1]
	i := len(c)
	a.strs[m-1] = c[:i+n]
	return c[i : i+n : i+n], uint32(m-1)*strsChunk + uint32(i)
}

func (a *arena) skeys(i uint32, n uint8) []string {
	if n == 0 {
		return nil
	}
	c := a.strs[i/strsChunk]
	j := i % strsChunk
	return c[j : j+uint32(n) : j+uint32(n)]
}

// parseSegment decodes data (segment bytes from file offset base), hashing
// the primary keys with seed. Nothing it returns refers to data (keys are
// copied into arenas), so data may be unmapped once it returns.
func parseSegment(s *segment, data []byte, base int64, tail bool, seed maphash.Seed) segParse {
	p := segParse{s: s}
	a := &p.keys
	p.objs = make([]robj, 0, countObjects(data))
	var perr error // an undecodable object (scanFrames' own return would overwrite p.err)
	p.end, p.err = scanFrames(data, base, tail, s.path, func(off int64, f frame) {
		p.widen(f.ver, f.ver)
		switch f.typ {
		case recObject:
			o, err := ParseObject(f.payload)
			if err != nil {
				if perr == nil {
					perr = &CorruptError{Segment: s.path, Offset: off, Reason: err.Error()}
				}
				return
			}
			k0 := o.Key(0)
			r := robj{key: a.add(k0), h: maphash.Bytes(seed, k0), ver: f.ver, off: uint32(off), size: uint32(f.size), crc: f.crc}
			if n := o.NumKeys(); n > 1 {
				var sk []string
				sk, r.sk = a.newSkeys(n - 1)
				r.nsk = uint8(n - 1)
				for i := 1; i < n; i++ {
					sk[i-1] = a.str(a.add(o.Key(i)))
				}
			}
			p.objs = append(p.objs, r)
		case recTombstone:
			k := f.payload[4:]
			p.tombs = append(p.tombs, rtomb{key: a.add(k), killed: f.ver, h: maphash.Bytes(seed, k)})
		}
	})
	if p.err == nil {
		p.err = perr
	}
	return p
}

// countObjects is the number of object records data seems to hold, judging
// by the frames' unchecked type and length fields (a capacity hint). It
// counts only frames that fit in data and could hold an object, and stops at
// the first that cannot be a frame, so lying fields can make it at most
// len(data)/minObjectFrame: no more than valid records of that size would
// need.
func countObjects(data []byte) int {
	n := 0
	for pos := 0; pos+frameHeaderSize <= len(data); {
		plen := int(binary.LittleEndian.Uint32(data[pos+4:]))
		typ := data[pos+8]
		next := pos + frameHeaderSize + plen
		if plen > maxPayload || typ < recObject || typ > recBatchCommit || next > len(data) {
			break
		}
		if typ == recObject && plen >= minObject {
			n++
		}
		pos = next
	}
	return n
}

// minObject is the smallest encoded object: one key of one byte.
const minObject = 1 + 2 + 1

// listDir returns the segment ids in dir, sorted, and the names of
// leftover cleaner temporaries.
func listDir(dir string) ([]uint32, []string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var ids []uint32
	var tmps []string
	for _, e := range ents {
		if id, ok := parseSegName(e.Name()); ok {
			ids = append(ids, id)
		} else if strings.HasSuffix(e.Name(), tmpSuffix) {
			tmps = append(tmps, e.Name())
		}
	}
	slices.Sort(ids)
	return ids, tmps, nil
}

// replay is Open's full load.
func (l *Log) replay() error {
	start := time.Now()
	l.bulk = true
	n, err := l.load(true)
	if err != nil {
		return err
	}
	l.bulk = false
	if !l.opts.ReadOnly {
		// A writer's own appends always carry new versions, but Ingest may
		// bring old ones: keep the tombstones of keys that have no live
		// object (a live version is newer than any tombstone of its key).
		l.pruneTombs = true
		for i := range l.shards {
			sh := &l.shards[i]
			for k := range sh.tombs {
				if _, live := sh.find(k, l.hash(k)); live {
					delete(sh.tombs, k)
				}
			}
		}
	}
	l.replayed = n
	l.replayTime = time.Since(start)
	return nil
}

// Refresh makes a ReadOnly log pick up what the writer (another Log, usually
// in another process) appended, and segments it created or cleaned, since
// Open or the previous Refresh. On a writable log it is a no-op: its indexes
// are always current.
func (l *Log) Refresh() error {
	if !l.opts.ReadOnly {
		return nil
	}
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	_, err := l.load(false)
	return err
}

// load opens segments not yet known, notices vanished ones, parses every
// segment's bytes past its known end and applies them. It returns the number
// of records applied. Its steps, in order: openNew, register,
// dropTornHeaders, parseAll, applyParsed, and for a writer's Open,
// initVersions and repairTornTail.
func (l *Log) load(initial bool) (int64, error) {
	l.refreshMu.Lock()
	defer l.refreshMu.Unlock()
	fresh, ids, err := l.openNew(initial && !l.opts.ReadOnly)
	if err != nil {
		return 0, err
	}
	all, lastHead := l.register(fresh, ids)
	good, maxBase, err := l.dropTornHeaders(all, lastHead)
	if err != nil {
		return 0, err
	}
	results := l.parseAll(good, lastHead)
	count, maxVer, err := l.applyParsed(results, lastHead, initial)
	if err != nil || !initial || l.opts.ReadOnly {
		return count, err
	}
	l.initVersions(maxBase, maxVer, good, ids)
	return count, l.repairTornTail()
}

// openNew lists the directory and opens the segment files not yet known
// (removing a dead cleaner's temporaries if removeTmps). A file that
// vanishes between listing and opening was cleaned: its survivors were
// renamed into place before it was deleted, so listing again finds them.
// It returns the new segments and every id listed.
func (l *Log) openNew(removeTmps bool) ([]*segment, []uint32, error) {
	var fresh []*segment
	fail := func(err error) ([]*segment, []uint32, error) {
		for _, s := range fresh {
			s.release()
		}
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		ids, tmps, err := listDir(l.dir)
		if err != nil {
			return fail(err)
		}
		if removeTmps {
			for _, t := range tmps { // a cleaner died before renaming
				if err := os.Remove(filepath.Join(l.dir, t)); err != nil {
					return fail(err)
				}
			}
		}
		vanished := false
		for _, id := range ids {
			l.mu.RLock()
			_, known := l.segs[id]
			l.mu.RUnlock()
			if known || slices.ContainsFunc(fresh, func(s *segment) bool { return s.id == id }) {
				continue
			}
			s, err := l.openSegment(id)
			if errors.Is(err, fs.ErrNotExist) {
				vanished = true
				continue
			}
			if err != nil {
				return fail(err)
			}
			fresh = append(fresh, s)
		}
		if !vanished || attempt > 100 {
			return fresh, ids, nil
		}
	}
}

// register adds fresh to the segment table and marks the segments whose
// files are no longer listed in ids as removed (dropping those that hold
// nothing live). It returns the segments in id order and the newest head
// (the only one whose tail may be torn).
func (l *Log) register(fresh []*segment, ids []uint32) ([]*segment, uint32) {
	present := map[uint32]bool{}
	for _, id := range ids {
		present[id] = true
	}
	l.mu.Lock()
	for _, s := range fresh {
		l.segs[s.id] = s
	}
	var all []*segment
	var lastHead uint32
	for id, s := range l.segs {
		if !present[id] && !s.removed {
			s.removed = true
			if s.live <= 0 {
				delete(l.segs, id)
				s.release()
				continue
			}
		}
		all = append(all, s)
		if s.hdr.kind == kindHead {
			lastHead = max(lastHead, id)
		}
	}
	l.mu.Unlock()
	slices.SortFunc(all, func(a, b *segment) int { return int(a.id) - int(b.id) })
	return all, lastHead
}

// dropTornHeaders returns the segments of all whose header checks out, and
// the highest version base among them. A header that does not check out is
// a head segment whose creation was cut short (headers are written and
// fsynced alone, before any record, so a torn creation leaves at most a
// header's worth of bytes), which is fine only if it is newer than every
// other head: such a file is dropped (and a writer removes it); any other
// bad header is a *CorruptError.
func (l *Log) dropTornHeaders(all []*segment, lastHead uint32) ([]*segment, uint64, error) {
	var maxBase uint64
	var good []*segment
	for _, s := range all {
		if s.hdr.kind != 0 {
			maxBase = max(maxBase, s.hdr.verBase)
			good = append(good, s)
			continue
		}
		fi, err := s.f.Stat()
		if err != nil {
			return nil, 0, err
		}
		if s.id < lastHead || fi.Size() > segHeaderSize {
			_, reason := decodeSegHeader(make([]byte, 0), s.id)
			var hb [segHeaderSize]byte
			if n, _ := s.f.ReadAt(hb[:], 0); n == segHeaderSize {
				_, reason = decodeSegHeader(hb[:], s.id)
			}
			return nil, 0, &CorruptError{Segment: s.path, Offset: 0, Reason: reason}
		}
		l.mu.Lock()
		delete(l.segs, s.id)
		l.mu.Unlock()
		s.release()
		if !l.opts.ReadOnly {
			if err := os.Remove(s.path); err != nil {
				return nil, 0, err
			}
		}
		l.w.nextSeg = max(l.w.nextSeg, s.id+1)
	}
	return good, maxBase, nil
}

// parseAll parses the new bytes of every segment of good, in parallel; a
// log of few segments (often one big one) also splits each segment. The
// results are in log order.
func (l *Log) parseAll(good []*segment, lastHead uint32) []segParse {
	parts := make([][]segParse, len(good))
	chunks := max(1, runtime.GOMAXPROCS(0)/max(1, len(good)))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), max(1, len(good))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				parts[i] = l.parseNew(good[i], good[i].id == lastHead, chunks)
			}
		}()
	}
	for i := range good {
		next <- i
	}
	close(next)
	wg.Wait()
	var results []segParse
	for _, ps := range parts {
		results = append(results, ps...)
	}
	return results
}

// applyParsed applies results to the indexes (in bulk on Open, record by
// record on Refresh) and records how far each segment was parsed. It
// returns the number of records applied and the highest version seen; the
// first parse error, before anything is applied.
func (l *Log) applyParsed(results []segParse, lastHead uint32, initial bool) (int64, uint64, error) {
	ro := l.opts.ReadOnly
	var count int64
	var maxVer uint64
	objs := 0
	for _, r := range results {
		if r.err != nil {
			return 0, 0, r.err
		}
		count += int64(len(r.objs) + len(r.tombs))
		objs += len(r.objs)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bulk {
		l.initShards(shardsFor(objs))
		l.applyBatch(results, true)
	} else {
		for _, r := range results {
			for i := range r.objs {
				o := &r.objs[i]
				l.applyObject(r.key(o.key), r.skeys(o), o.ver, o.crc, r.s.id, o.off, o.size)
			}
			for _, t := range r.tombs {
				l.applyTombstone(r.key(t.key), t.killed)
			}
		}
	}
	for _, r := range results {
		maxVer = max(maxVer, r.maxVer)
		r.s.end = r.end
		r.s.widen(r.minVer, r.maxVer)
		r.s.sealed = r.s.id != lastHead || ro
	}
	if ro {
		l.lastHd = lastHead
	} else if initial && lastHead != 0 {
		l.head = l.segs[lastHead]
	}
	return count, maxVer, nil
}

// initVersions sets a writer's counters after Open's replay: the next
// version above every version and version base found, the next segment id
// above every file.
func (l *Log) initVersions(maxBase, maxVer uint64, good []*segment, ids []uint32) {
	w := &l.w
	w.nextVer = max(1, maxBase, satAdd(maxVer, 1)) // a local top version: no more writes (enqueue)
	w.nextSeg = max(w.nextSeg, 1)
	for _, s := range good {
		w.nextSeg = max(w.nextSeg, s.id+1)
	}
	if len(ids) > 0 {
		w.nextSeg = max(w.nextSeg, ids[len(ids)-1]+1)
	}
}

// repairTornTail cuts the torn tail of the head segment, if any (bytes past the
// last committed record that replay found, see scanFrames), and fsyncs it,
// so appends continue right after the last committed record. Writer Open
// only: a ReadOnly log never changes files, it just stops at the tear.
func (l *Log) repairTornTail() error {
	h := l.head
	if h == nil {
		return nil
	}
	fi, err := h.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() <= h.end {
		return nil
	}
	if err := h.f.Truncate(h.end); err != nil {
		return err
	}
	return h.f.Sync()
}

// openSegment opens segment id and reads its header. A bad header leaves
// hdr.kind zero (judged by the caller).
func (l *Log) openSegment(id uint32) (*segment, error) {
	path := filepath.Join(l.dir, segName(id))
	flag := os.O_RDONLY
	if !l.opts.ReadOnly {
		flag = os.O_RDWR // the newest head is appended to; harmless for others
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	var hb [segHeaderSize]byte
	n, _ := f.ReadAt(hb[:], 0)
	hdr, _ := decodeSegHeader(hb[:n], id)
	return newSegment(l.dir, id, f, hdr), nil
}

// parseNew reads and parses s from its known end to the current file size,
// in up to chunks pieces parsed in parallel (see parseChunks).
//
// A sealed segment (tail false: complete and immutable, never truncated or
// appended to) is mmapped read-only rather than read into the heap: a large
// replay would otherwise allocate the whole log's bytes, and the garbage
// collector runs (making every pointer write of the index build pay a write
// barrier) in proportion to allocation. parseSegment copies what it keeps
// (keys go to arenas), so no slice into the mapping outlives parseNew,
// whatever happens to the file later (cleaned, unlinked). The newest head
// is read with pread: a writer's Open may truncate its torn tail (a
// ReadOnly log shares it with a writer), and touching a mapped page past a
// shrunk end of file would fault, whereas a read is a private snapshot.
func (l *Log) parseNew(s *segment, tail bool, chunks int) []segParse {
	fi, err := s.f.Stat()
	if err != nil {
		return []segParse{{s: s, err: err}}
	}
	from := s.end
	size := fi.Size()
	if size > MaxSegmentSize {
		// Not a file this package wrote; refused before reading any of it.
		return []segParse{{s: s, err: &CorruptError{Segment: s.path, Offset: 0,
			Reason: fmt.Sprintf("segment of %d bytes larger than MaxSegmentSize (%d)", size, MaxSegmentSize)}}}
	}
	if size <= from {
		return []segParse{{s: s, end: from}}
	}
	if !tail && size-from >= mmapMin {
		m, err := syscall.Mmap(int(s.f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
		if err == nil {
			ps := parseChunks(s, m[from:], from, false, l.seed, chunks)
			syscall.Munmap(m)
			return ps
		}
		// Fall back to reading (a filesystem without mmap).
	}
	data := make([]byte, size-from)
	n, err := s.f.ReadAt(data, from)
	if n < len(data) && !tail {
		return []segParse{{s: s, err: fmt.Errorf("objects: read %s: %w", s.path, err)}}
	}
	return parseChunks(s, data[:n], from, tail, l.seed, chunks)
}

// mmapMin: below this many new bytes, parseNew reads (a mapping costs
// system calls that a small read does not).
const mmapMin = 256 << 10

// chunkMin is the least number of bytes worth a parse goroutine (a
// variable for tests).
var chunkMin = 4 << 20

// parseChunks parses data (segment bytes from file offset base) as
// parseSegment does, but split into up to n pieces parsed in parallel: a
// log that is one big segment would otherwise be parsed by one core. The
// cut points are found by walking the frames' length fields, outside
// batches (by the type bytes); that walk trusts unchecked bytes, so the
// pieces are only a guess: every piece but the last must parse cleanly and
// end exactly at the next cut, and the last one must parse without error.
// Then the pieces are exactly what one parse of the whole would have
// emitted, in order (a valid frame's length leads to the next frame, so
// one parse walks the same frames). If any piece fails, data is parsed
// again in one piece, so damage is reported (or a torn tail cut) exactly
// as before. The pieces are separate segParse values of the same segment,
// in log order.
func parseChunks(s *segment, data []byte, base int64, tail bool, seed maphash.Seed, n int) []segParse {
	n = min(n, len(data)/chunkMin)
	if n <= 1 {
		return []segParse{parseSegment(s, data, base, tail, seed)}
	}
	cuts := []int{0}
	inBatch := false
	for pos := 0; pos+frameHeaderSize <= len(data) && len(cuts) < n; {
		plen := binary.LittleEndian.Uint32(data[pos+4:])
		if plen > maxPayload {
			break
		}
		switch data[pos+8] {
		case recBatchBegin:
			inBatch = true
		case recBatchCommit:
			inBatch = false
		}
		pos += frameHeaderSize + int(plen)
		if !inBatch && pos < len(data) && pos >= len(data)*len(cuts)/n {
			cuts = append(cuts, pos)
		}
	}
	if len(cuts) == 1 {
		return []segParse{parseSegment(s, data, base, tail, seed)}
	}
	cuts = append(cuts, len(data))
	ps := make([]segParse, len(cuts)-1)
	parallel(len(ps), len(ps), func(_, i int) {
		last := i == len(ps)-1
		ps[i] = parseSegment(s, data[cuts[i]:cuts[i+1]], base+int64(cuts[i]), tail && last, seed)
	})
	for i := range ps {
		if ps[i].err != nil || i < len(ps)-1 && ps[i].end != base+int64(cuts[i+1]) {
			return []segParse{parseSegment(s, data, base, tail, seed)}
		}
	}
	return ps
}
