package objects

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// The write path: group commit.
//
// Writers encode their records straight into the pending batch's buffer
// under w.mu (the value is copied exactly once, from the caller's slice to
// the buffer that is pwritten to the segment), then wait. A single committer
// goroutine repeatedly takes the whole pending batch, pwrites it, fsyncs once,
// applies the index updates, and wakes every writer in the batch. While it
// is busy with one batch, the next one accumulates: under load, many writes
// share each fsync without any timer.
//
// Index updates are applied only after the data is written (and, with
// SyncGroup, durable), so readers never see a record that is not in the file.
// A writer needs the location of the version it overwrites (to write its
// tombstone) before that version may be in the index, so writes queued but
// not yet applied are tracked in w.pending.

// writer is the write side of a Log: the batch being accumulated, the
// counters that hand out versions and segment ids, and the committer's
// channels. Everything but rolled is protected by mu; writers hold mu only
// while they encode, never during I/O, which the committer does alone.
type writer struct {
	mu      sync.Mutex
	q       *batch             // accumulating batch, nil if none
	pending map[string]pending // keys written in queued batches
	nextVer uint64             // version the next object gets (see versionsLeft)
	nextSeg uint32             // id the next segment gets (head, survivor or ingested)
	headID  uint32             // segment the accumulating batch appends to
	tailOff int64              // end of the head segment including queued bytes
	gen     uint64             // of the latest batch started (batch.gen)
	err     error              // sticky: a failed write or fsync poisons the log
	closing bool
	free    [][]byte   // recycled chunk buffers
	rolled  []*segment // old heads rolled by the batch being committed (committer only)
	// rollDone: done channel of the latest batch that rolls the head. The
	// old head is sealed once it is closed.
	rollDone chan struct{}

	kick    chan struct{}
	stopped chan struct{}
}

// pending is a write queued in a batch that the committer has not applied
// yet. A later write of the same key must name this version in its
// tombstone although the index does not show it yet (see currentLocked),
// so the queue is consulted before the index.
type pending struct {
	ver  uint64 // the queued object's version, or the version a delete kills
	seg  uint32 // where the queued object goes
	del  bool
	gen  uint64 // batch that queued it: its commit drops the entry unless a later batch took it over
	size uint32
}

// chunk is the bytes a batch appends to one segment, at off. A batch has
// more than one chunk when it rolls the head: the committer writes them in
// order, creating the new head first where create is set.
type chunk struct {
	seg      uint32
	create   bool // the committer must create this segment first
	off      int64
	data     []byte
	verRange // of the records in data
}

// update is an index change a batch makes once its bytes are durable: an
// object to index at (seg, off), or, with del, a delete of key up to ver.
// Kept apart from the encoded bytes so that the committer applies the index
// changes without decoding what it just wrote.
type update struct {
	key   string
	skeys []string
	ver   uint64 // object version, or the killed version for a delete
	seg   uint32
	off   uint32
	size  uint32
	crc   uint32
	del   bool
}

// batch is one group commit: the records of every write queued while the
// committer was busy, written with one pwrite per chunk and made durable by
// one fsync. Writers wait on done, then read err.
type batch struct {
	gen    uint64
	chunks []chunk
	ups    []update
	sync   bool          // fsync even under SyncNone (Sync)
	done   chan struct{} // closed once the batch is applied, or failed
	err    error         // set before done is closed
}

func (l *Log) startWriter() error {
	w := &l.w
	w.pending = map[string]pending{}
	w.kick = make(chan struct{}, 1)
	w.stopped = make(chan struct{})
	go l.committer()
	if l.head == nil {
		// Empty log (or only survivors): the first batch creates a head.
		w.headID = w.nextSeg
		w.nextSeg++
		w.tailOff = segHeaderSize
		if err := l.rollHead(w.headID, w.nextVer); err != nil {
			l.stopWriter()
			return err
		}
	}
	w.headID = l.head.id
	w.tailOff = l.head.end
	return nil
}

func (l *Log) stopWriter() error {
	w := &l.w
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closing = true
	w.mu.Unlock()
	close(w.kick)
	<-w.stopped
	var err error
	l.mu.RLock()
	if l.head != nil {
		err = l.head.f.Sync()
	}
	l.mu.RUnlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	return err
}

func (l *Log) committer() {
	w := &l.w
	defer close(w.stopped)
	for range w.kick {
		for {
			w.mu.Lock()
			b := w.q
			w.q = nil
			w.mu.Unlock()
			if b == nil {
				break
			}
			l.commit(b)
		}
	}
}

// commit writes one batch, makes it durable, and publishes it.
func (l *Log) commit(b *batch) {
	w := &l.w
	w.mu.Lock()
	err := w.err
	verBase := w.nextVer
	w.mu.Unlock()
	if err == nil {
		err = l.writeChunks(b, verBase)
	}
	if err == nil && (l.opts.Sync == SyncGroup || b.sync) {
		l.mu.RLock()
		h := l.head
		l.mu.RUnlock()
		err = h.f.Sync()
	}
	if err == nil {
		l.mu.Lock()
		for _, c := range b.chunks {
			if s := l.segs[c.seg]; s != nil {
				s.end = max(s.end, c.off+int64(len(c.data)))
				s.widen(c.minVer, c.maxVer)
			}
		}
		for _, u := range b.ups {
			if u.del {
				l.applyTombstone(u.key, u.ver)
			} else {
				l.applyObject(u.key, u.skeys, u.ver, u.crc, u.seg, u.off, u.size)
			}
		}
		for _, s := range l.w.rolled {
			s.sealed = true
		}
		l.mu.Unlock()
		l.w.rolled = l.w.rolled[:0]
	}
	w.mu.Lock()
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("objects: log write failed, log is read-only until reopened: %w", err)
	}
	for _, u := range b.ups {
		if p, ok := w.pending[u.key]; ok && p.gen == b.gen {
			delete(w.pending, u.key)
		}
	}
	for _, c := range b.chunks {
		if cap(c.data) <= 32<<20 && len(w.free) < 2 {
			w.free = append(w.free, c.data[:0])
		}
	}
	w.mu.Unlock()
	b.err = err
	close(b.done)
}

func (l *Log) writeChunks(b *batch, verBase uint64) error {
	for _, c := range b.chunks {
		if c.create {
			if err := l.rollHead(c.seg, verBase); err != nil {
				return err
			}
		}
		l.mu.RLock()
		h := l.head
		l.mu.RUnlock()
		if _, err := h.f.WriteAt(c.data, c.off); err != nil {
			return err
		}
	}
	return nil
}

// rollHead seals the current head (fsync: only the newest head segment may
// ever have a torn tail) and creates segment id as the new head.
func (l *Log) rollHead(id uint32, verBase uint64) error {
	l.mu.RLock()
	old := l.head
	l.mu.RUnlock()
	if old != nil {
		if err := old.f.Sync(); err != nil {
			return err
		}
	}
	s, err := createSegment(l.dir, id, segHeader{kind: kindHead, id: id, verBase: verBase, dataTime: time.Now().UnixNano()}, "")
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.segs[id] = s
	l.head = s
	l.mu.Unlock()
	if old != nil {
		l.w.rolled = append(l.w.rolled, old) // sealed once this batch is applied
	}
	return nil
}

// createSegment creates a segment file (at tmpName if given) with its header,
// fsyncs it and its directory.
func createSegment(dir string, id uint32, hdr segHeader, tmpName string) (*segment, error) {
	name := segName(id)
	if tmpName != "" {
		name = tmpName
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	// One err throughout: a failed header write or fsync must not be lost
	// (staticcheck found an inner err shadowing this one).
	if _, err = f.WriteAt(hdr.encode(), 0); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return newSegment(dir, id, f, hdr), nil
}

// enqueue encodes entries into the accumulating batch and returns it; the
// caller waits on batch.done. With atomic set (MultiWrite), the records are
// framed by batch begin/commit records, so replay applies all or none.
func (l *Log) enqueue(entries []Entry, atomic bool) (*batch, error) {
	if l.opts.ReadOnly {
		return nil, ErrReadOnly
	}
	est, nvers, err := estimate(entries)
	if err != nil {
		return nil, err
	}
	w := &l.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing {
		return nil, ErrClosed
	}
	if w.err != nil {
		return nil, w.err
	}
	if nvers > math.MaxUint64-w.nextVer {
		// Issuing the top version would make this log's segments
		// unacceptable to every other log (Ingest rejects it), and one more
		// would wrap to 0 and lose to everything.
		return nil, fmt.Errorf("objects: version space exhausted (next version %d)", w.nextVer)
	}
	b, c := l.chunkLocked(est)
	if len(entries) == 1 && !entries[0].Delete {
		// An overwrite is a tombstone plus the new object: frame them as a
		// batch so a torn write cannot leave the tombstone alone.
		if _, exists := l.currentLocked(string(entries[0].Keys[0])); exists {
			atomic = true
		}
	}
	buf := c.data
	start := len(buf)
	if atomic {
		buf = appendU32Frame(buf, recBatchBegin, 0) // count patched below
	}
	count := uint32(0)
	for i := range entries {
		var n uint32
		buf, n = l.appendEntryLocked(b, c, buf, &entries[i])
		count += n
	}
	if atomic {
		if count == 0 {
			buf = buf[:start]
		} else {
			// Patch the begin count and its CRC, then close the batch.
			binary.LittleEndian.PutUint32(buf[start+frameHeaderSize:], count)
			finishFrame(buf[:start+frameHeaderSize+4], start, recBatchBegin, 0)
			buf = appendU32Frame(buf, recBatchCommit, count)
		}
	}
	w.tailOff += int64(len(buf) - len(c.data))
	c.data = buf
	w.kickLocked()
	return b, nil
}

// estimate validates entries and returns an upper bound of the bytes their
// records take (batch markers included) and how many versions they use.
func estimate(entries []Entry) (est int, nvers uint64, err error) {
	est = 2 * frameHeaderSize * 2
	for i := range entries {
		e := &entries[i]
		if len(e.Keys) == 0 || len(e.Keys[0]) == 0 {
			return 0, 0, fmt.Errorf("%w: entry %d has no primary key", ErrInvalid, i)
		}
		if !e.Delete {
			if err := validateKeys(e.Keys); err != nil {
				return 0, 0, err
			}
			est += frameHeaderSize + EncodedLen(e.Keys, e.Value)
			nvers++
		}
		est += tombstoneSize(string(e.Keys[0]))
	}
	if est > maxPayload {
		return 0, 0, fmt.Errorf("%w: batch of %d bytes too large", ErrInvalid, est)
	}
	return est, nvers, nil
}

// appendEntryLocked appends the records of one entry to buf (chunk c of
// batch b): a tombstone for the version it replaces or deletes, if any, and
// the new object unless it is a delete. It returns buf and the number of
// records appended. Callers hold w.mu.
func (l *Log) appendEntryLocked(b *batch, c *chunk, buf []byte, e *Entry) ([]byte, uint32) {
	w := &l.w
	key := string(e.Keys[0])
	count := uint32(0)
	old, exists := l.currentLocked(key)
	if exists {
		// Every dead object gets a tombstone naming its segment, kept
		// until that segment is cleaned: otherwise cleaning the newer
		// version or the delete could resurrect this one on replay.
		buf = appendTombstone(buf, key, old.ver, old.seg)
		c.widen(old.ver, old.ver)
		count++
	}
	if e.Delete {
		if exists {
			b.ups = append(b.ups, update{key: key, ver: old.ver, del: true})
			w.pending[key] = pending{ver: old.ver, del: true, gen: b.gen}
		}
		return buf, count
	}
	ver := w.nextVer
	w.nextVer++
	buf, fs := beginFrame(buf)
	buf = AppendObject(buf, e.Keys, e.Value)
	finishFrame(buf, fs, recObject, ver)
	c.widen(ver, ver)
	count++
	var skeys []string
	if len(e.Keys) > 1 {
		skeys = make([]string, len(e.Keys)-1)
		for j, k := range e.Keys[1:] {
			skeys[j] = string(k)
		}
	}
	off := c.off + int64(fs)
	size := uint32(len(buf) - fs)
	crc := binary.LittleEndian.Uint32(buf[fs:])
	b.ups = append(b.ups, update{key: key, skeys: skeys, ver: ver, seg: w.headID, off: uint32(off), size: size, crc: crc})
	w.pending[key] = pending{ver: ver, seg: w.headID, gen: b.gen, size: size}
	return buf, count
}

// queueLocked returns the batch that the next commit will write, starting
// one if none is queued.
func (w *writer) queueLocked() *batch {
	if w.q == nil {
		w.gen++
		w.q = &batch{gen: w.gen, done: make(chan struct{})}
	}
	return w.q
}

func (w *writer) kickLocked() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// chunkLocked returns the accumulating batch and its chunk for the head
// segment, rolling to a new head first if est more bytes would overflow it.
// Callers hold w.mu.
func (l *Log) chunkLocked(est int) (*batch, *chunk) {
	w := &l.w
	b := w.queueLocked()
	if w.tailOff+int64(est) > l.opts.SegmentSize && w.tailOff > segHeaderSize {
		w.headID = w.nextSeg
		w.nextSeg++
		w.tailOff = segHeaderSize
		b.chunks = append(b.chunks, chunk{seg: w.headID, create: true, off: segHeaderSize})
		w.rollDone = b.done
	}
	if len(b.chunks) == 0 || b.chunks[len(b.chunks)-1].seg != w.headID {
		b.chunks = append(b.chunks, chunk{seg: w.headID, off: w.tailOff})
	}
	c := &b.chunks[len(b.chunks)-1]
	if c.data == nil && len(w.free) > 0 {
		c.data = w.free[len(w.free)-1]
		w.free = w.free[:len(w.free)-1]
	}
	return b, c
}

// enqueueTombstonesLocked appends tombstones for objects the cleaner copied
// but that died meanwhile (see cleaner.go). Callers hold w.mu.
func (l *Log) enqueueTombstonesLocked(died []reloc) (*batch, error) {
	w := &l.w
	if w.closing {
		return nil, ErrClosed
	}
	if w.err != nil {
		return nil, w.err
	}
	est := 0
	for _, r := range died {
		est += tombstoneSize(r.key)
	}
	b, c := l.chunkLocked(est)
	n := len(c.data)
	for _, r := range died {
		c.data = appendTombstone(c.data, r.key, r.ver, r.newSeg)
		c.widen(r.ver, r.ver)
	}
	w.tailOff += int64(len(c.data) - n)
	w.kickLocked()
	return b, nil
}

// currentLocked returns the newest version of key, queued or indexed.
// Callers hold w.mu.
//
// A queued write normally shadows the index, but Ingest may have indexed a
// newer version meanwhile (its versions can exceed those of writes queued
// before it): then that one is current, and is what a tombstone must name.
func (l *Log) currentLocked(key string) (pending, bool) {
	p, queued := l.w.pending[key]
	l.mu.RLock()
	e, ok := l.get(key)
	l.mu.RUnlock()
	if queued && !(ok && e.ver > p.ver) {
		return p, !p.del
	}
	return pending{ver: e.ver, seg: e.seg}, ok
}

func (l *Log) submit(entries []Entry, atomic bool) error {
	b, err := l.enqueue(entries, atomic)
	if err != nil {
		return err
	}
	<-b.done
	return b.err
}

// Write stores value under a single (primary) key, replacing any previous
// object with that key.
func (l *Log) Write(key, value []byte) error {
	return l.submit([]Entry{{Keys: [][]byte{key}, Value: value}}, false)
}

// WriteKeys stores a multikey object: keys[0] is the primary key, keys[1:]
// secondary keys (empty ones are not indexed).
func (l *Log) WriteKeys(keys [][]byte, value []byte) error {
	return l.submit([]Entry{{Keys: keys, Value: value}}, false)
}

// MultiWrite applies a batch atomically: after a crash either all of it is
// visible or none. Later entries for the same key win over earlier ones.
func (l *Log) MultiWrite(batch []Entry) error {
	if len(batch) == 0 {
		return nil
	}
	return l.submit(batch, len(batch) > 1)
}

// Delete removes the object with primary key key. Deleting a missing key is
// a no-op (nil).
func (l *Log) Delete(key []byte) error {
	return l.submit([]Entry{{Keys: [][]byte{key}, Delete: true}}, false)
}

// Seal fsyncs and closes the current head segment, so that everything
// appended so far is in sealed (complete, immutable) segment files; the next
// append starts a new head segment. It is a no-op (nil) when the head holds
// no records. Writes queued before Seal land in the sealed segment, later
// ones in the new head; a write or MultiWrite is never split. Writer logs
// only (ErrReadOnly otherwise).
//
// The new head is created at once (empty), so Segments reports the old one
// Sealed as soon as Seal returns, and reopening treats it as complete.
func (l *Log) Seal() error {
	if l.opts.ReadOnly {
		return ErrReadOnly
	}
	w := &l.w
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return ErrClosed
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	if w.tailOff <= segHeaderSize {
		// Nothing appended or queued since the head was created; the roll
		// that created it may still be in flight (a concurrent Seal, or a
		// full segment): wait for it, so the old head is sealed.
		done := w.rollDone
		w.mu.Unlock()
		if done == nil {
			return nil
		}
		<-done
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.err
	}
	b := w.queueLocked()
	// The committer writes chunks in order: everything queued so far goes
	// to the old head, then rollHead fsyncs it and creates the new one.
	w.headID = w.nextSeg
	w.nextSeg++
	w.tailOff = segHeaderSize
	b.chunks = append(b.chunks, chunk{seg: w.headID, create: true, off: segHeaderSize})
	w.rollDone = b.done
	w.kickLocked()
	w.mu.Unlock()
	<-b.done
	return b.err
}

// Sync returns once everything appended so far is durable (fsynced),
// whatever the SyncPolicy.
func (l *Log) Sync() error {
	if l.opts.ReadOnly {
		return nil
	}
	w := &l.w
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return ErrClosed
	}
	b := w.queueLocked()
	b.sync = true
	w.kickLocked()
	w.mu.Unlock()
	<-b.done
	return b.err
}
