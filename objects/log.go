package objects

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"sync"
	"time"

	"blockfs/internal/fileutil"
)

// SyncPolicy says when appended records are fsynced.
type SyncPolicy int

const (
	// SyncGroup (the default): Write returns once its records are fsynced;
	// concurrent writers share one fsync (group commit).
	SyncGroup SyncPolicy = iota
	// SyncNone: Write returns once its records are written to the OS (visible
	// to readers, including other processes); call Sync for durability.
	// Segments are still fsynced when sealed.
	SyncNone
)

// Options configure Open.
type Options struct {
	// ReadOnly opens without writing, truncating or locking: a torn tail is
	// treated as the end, and Refresh picks up what the writer appended since.
	// For a mount while an importer writes.
	ReadOnly bool
	// SegmentSize: appends roll to a new segment past this many bytes
	// (default 64 MiB, at most 1 GiB). One write or batch is never split, so a
	// segment can exceed it by one batch.
	SegmentSize int64
	// Sync is the durability policy of writes (default SyncGroup).
	Sync SyncPolicy
}

const (
	defaultSegmentSize = 64 << 20
	maxSegmentSize     = 1 << 30
	lockName           = "LOCK"
)

// Entry is one element of a MultiWrite.
type Entry struct {
	Keys   [][]byte
	Value  []byte
	Delete bool // tombstone for Keys[0]; other fields ignored
}

// Log is an append-only log of multikey objects with in-memory indexes.
//
// All methods are safe for concurrent use. Reads never block on disk I/O of
// writers or of the cleaner: they take a read lock only to look up a location
// and pin the segment, then pread outside any lock.
type Log struct {
	dir  string
	opts Options
	lock *os.File // flock holder (writer only)

	// mu protects the indexes and the segment table.
	mu sync.RWMutex
	// shards: the primary index and the tombstones, by key hash (index.go).
	// The slice is fixed once Open returns.
	shards []shard
	seed   maphash.Seed
	slots  []*ordered
	segs   map[uint32]*segment
	head   *segment // segment appends go to (writer)
	lastHd uint32   // ReadOnly: newest head segment id seen (may have a torn tail)
	bulk   bool     // replaying: ordered indexes are built at the end
	closed bool
	// pruneTombs (writers): drop a key's tombstone once a newer version of
	// it is live. Writers keep tombstones for Ingest: a segment from another
	// log may carry a version that some tombstone has already killed.
	pruneTombs bool

	w writer // write path (commit.go); unused when ReadOnly

	cleanMu   sync.Mutex // one Clean at a time
	refreshMu sync.Mutex // one Refresh at a time

	replayed   int64
	replayTime time.Duration
}

// Open opens (creating unless ReadOnly) the log in dir, replays its segments
// and rebuilds the indexes. A writer takes an exclusive flock on dir/LOCK: a
// second writer gets ErrLocked. ReadOnly opens take no lock and coexist with
// one writer, in this process or another.
func Open(dir string, opts Options) (*Log, error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = defaultSegmentSize
	}
	if opts.SegmentSize > maxSegmentSize {
		return nil, fmt.Errorf("%w: SegmentSize %d > %d", ErrInvalid, opts.SegmentSize, maxSegmentSize)
	}
	l := &Log{dir: dir, opts: opts, segs: map[uint32]*segment{}, seed: maphash.MakeSeed()}
	l.initShards(minShards)
	if !opts.ReadOnly {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		f, err := fileutil.LockFile(filepath.Join(dir, lockName), true)
		if errors.Is(err, fileutil.ErrLocked) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		if err != nil {
			return nil, err
		}
		l.lock = f
	}
	if err := l.replay(); err != nil {
		l.closeFiles()
		return nil, err
	}
	if !opts.ReadOnly {
		if err := l.startWriter(); err != nil {
			l.closeFiles()
			return nil, err
		}
	}
	return l, nil
}

func (l *Log) closeFiles() {
	for _, s := range l.segs {
		s.release()
	}
	l.segs = map[uint32]*segment{}
	if l.lock != nil {
		l.lock.Close() // drops the flock
		l.lock = nil
	}
}

// Close flushes pending writes, fsyncs, and closes the files. Objects
// returned earlier stay valid (they are private copies).
func (l *Log) Close() error {
	var err error
	if !l.opts.ReadOnly {
		err = l.stopWriter()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.closed = true
	l.closeFiles()
	return err
}

// lookup pins the segment holding key's live object and returns its entry.
func (l *Log) lookup(key []byte) (pentry, *segment, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return pentry{}, nil, ErrClosed
	}
	e, ok := l.getBytes(key)
	if !ok {
		return pentry{}, nil, ErrNotFound
	}
	s := l.segs[e.seg]
	if s == nil {
		return pentry{}, nil, fmt.Errorf("objects: index points to missing segment %d", e.seg)
	}
	s.acquire()
	return e, s, nil
}

// readEntry preads the frame e points at into a fresh buffer and checks it.
//
// Why a copy rather than a view of an mmapped segment: the cleaner deletes
// segments while the filesystem holds on to objects, and metadata objects
// are small; one pread into a private buffer is cheaper and simpler than
// pinning mappings until every returned view is dropped. The returned Object
// is immutable and stays valid forever.
func readEntry(s *segment, e pentry, key []byte) (Object, error) {
	defer s.release()
	buf := make([]byte, e.size)
	if _, err := s.f.ReadAt(buf, int64(e.off)); err != nil {
		return Object{}, fmt.Errorf("objects: read %s at %d: %w", s.path, e.off, err)
	}
	f, st, reason := decodeFrame(buf)
	if st != frameOK || f.typ != recObject || f.ver != e.ver {
		if reason == "" {
			reason = "record is not the indexed object"
		}
		return Object{}, &CorruptError{Segment: s.path, Offset: int64(e.off), Reason: reason}
	}
	o, err := ParseObject(f.payload)
	if err != nil {
		return Object{}, &CorruptError{Segment: s.path, Offset: int64(e.off), Reason: err.Error()}
	}
	if key != nil && !bytes.Equal(o.Key(0), key) {
		return Object{}, &CorruptError{Segment: s.path, Offset: int64(e.off), Reason: "record key is not the indexed key"}
	}
	o.ver = f.ver
	return o, nil
}

// ReadObject returns the live object whose primary key is key (ErrNotFound if
// none). The Object is a private immutable copy (see readEntry).
func (l *Log) ReadObject(key []byte) (Object, error) {
	e, s, err := l.lookup(key)
	if err != nil {
		return Object{}, err
	}
	return readEntry(s, e, key)
}

// Read returns the value of the object whose primary key is key.
func (l *Log) Read(key []byte) ([]byte, error) {
	o, err := l.ReadObject(key)
	if err != nil {
		return nil, err
	}
	return o.Value(), nil
}

// MultiRead reads several objects; result i is for keys[i]. A missing key
// gives the zero Object (NumKeys() == 0), not an error.
func (l *Log) MultiRead(keys [][]byte) ([]Object, error) {
	out := make([]Object, len(keys))
	for i, k := range keys {
		o, err := l.ReadObject(k)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[i] = o
	}
	return out, nil
}

const scanChunk = 128

// Scan calls fn, in ascending order of key slot, for every live object whose
// key in that slot starts with prefix (slot 0: primary keys; slot i: the i-th
// key, where several objects may share a key; they then come in primary key
// order). fn returning false stops the scan.
//
// Scan is not a snapshot: it collects up to 128 matches under the read lock,
// releases it, reads and delivers them, and resumes after the last key, so
// writes made during a long scan may or may not be seen. fn may call other
// Log methods.
func (l *Log) Scan(slot int, prefix []byte, fn func(Object) bool) error {
	if slot < 0 || slot >= MaxKeys {
		return fmt.Errorf("%w: slot %d", ErrInvalid, slot)
	}
	type hit struct {
		pk string
		e  pentry
		s  *segment
	}
	p := string(prefix)
	from := item{key: p}
	resuming := false
	hits := make([]hit, 0, scanChunk)
	for {
		hits = hits[:0]
		more := false
		l.mu.RLock()
		if l.closed {
			l.mu.RUnlock()
			return ErrClosed
		}
		if slot < len(l.slots) {
			l.slots[slot].ascend(from, func(it item) bool {
				if len(it.key) < len(p) || it.key[:len(p)] != p {
					return false
				}
				if resuming && it == from {
					return true // already delivered
				}
				if len(hits) == scanChunk {
					more = true
					return false
				}
				pk := it.primary()
				e, ok := l.get(pk)
				if s := l.segs[e.seg]; ok && s != nil {
					s.acquire()
					hits = append(hits, hit{pk, e, s})
				}
				from = it
				return true
			})
		}
		l.mu.RUnlock()
		resuming = true
		for i, h := range hits {
			o, err := readEntry(h.s, h.e, []byte(h.pk))
			if err == nil && !fn(o) {
				err = errStop
			}
			if err != nil {
				for _, r := range hits[i+1:] {
					r.s.release()
				}
				if err == errStop {
					return nil
				}
				return err
			}
		}
		if !more {
			return nil
		}
	}
}

var errStop = errors.New("stop")

// LogStats describes a log.
type LogStats struct {
	Segments      int
	Objects       int   // live objects
	LiveBytes     int64 // bytes of live object records
	TotalBytes    int64 // bytes of all segments
	NextVersion   uint64
	Slots         int           // ordered indexes (1 + highest secondary slot seen)
	Replayed      int64         // records replayed by Open
	ReplayTime    time.Duration // time Open spent replaying and indexing
	PendingWrites int           // writes queued, not yet committed
}

// Stats returns a snapshot of counters.
func (l *Log) Stats() LogStats {
	l.w.mu.Lock()
	st := LogStats{NextVersion: l.w.nextVer, PendingWrites: len(l.w.pending)}
	l.w.mu.Unlock()
	l.mu.RLock()
	defer l.mu.RUnlock()
	st.Objects = l.objects()
	st.Slots = len(l.slots)
	st.Replayed, st.ReplayTime = l.replayed, l.replayTime
	for _, s := range l.segs {
		if s.removed {
			continue
		}
		st.Segments++
		st.LiveBytes += s.live
		st.TotalBytes += s.end
	}
	return st
}
