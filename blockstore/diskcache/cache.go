// Package diskcache keeps verified blocks in a local directory in front of
// a slower blockstore.Store (S3, an HTTP server), for `blockfs mount` and
// `blockfs serve` with --cache-dir/--cache-size.
//
// A Cache is itself a blockstore.Store. Get serves a block from its cache
// file when the file is present and intact, and otherwise reads it from the
// backend. It keeps a copy only once the block has verified: the reader
// (the Pool, or blockstore.ReadVerified) checks size and SHA-256 and hands
// the bytes back with Keep (blockstore.Keeper), so a cold block is hashed
// once, not once here and once more in the Pool. Map serves a hit in place
// (blockstore.Mapper). Put, Has and List pass straight through; Delete
// drops the cached copy and then deletes from the backend. Put deliberately
// does not populate the cache: the writer is an import, a long one-pass
// stream whose blocks nobody has asked to read yet.
//
// # Files
//
//	DIR/LOCK                  flock(2)ed while a Cache owns DIR (holds the owner's pid)
//	DIR/state                 eviction-policy metadata, written by Close (a hint)
//	DIR/tmp/                  temp files; emptied by Open
//	DIR/blocks/ab/abcd…(64)   one file per block: data, then a 16-byte trailer
//	                          (fan-out directories made on first use)
//
// The trailer is the data size (uint64), the CRC-32C (Castagnoli) of the
// hash followed by the data (uint32) and the magic "bdc1", all little
// endian. A hit checks the file size and the CRC: hardware CRC-32C runs at
// memory speed, a SHA-256 per hit would not, and it still catches a
// truncated, torn, bit-flipped or misnamed file. A file that fails is
// removed, counted (CorruptDropped) and the block is fetched again, so a
// caller never sees bad bytes from the cache. (The Pool above verifies
// SHA-256 anyway; the trailer is what keeps the cache from serving it a
// damaged block over and over.)
//
// A file is written to DIR/tmp and renamed into place, not fsynced: the
// cache is not the data's home, and a file torn by a power cut fails its
// size or trailer check at its first hit, is dropped and is fetched again,
// like any damaged file. (An fsync per block cost the cold path of every
// read through the cache.) Writeback starts as each file is written.
//
// # Size bound
//
// MaxBytes bounds the sum of the cache files' sizes (trailers included),
// counting temp files being written: a miss reserves its file's size, and
// evicts to make room, before writing. Directory blocks and the LOCK and
// state files are not counted.
//
// # Eviction: S3-FIFO
//
// The workload is many jobs re-reading a working set (reference data,
// models, software) interleaved with one-pass reads of big inputs. Plain LRU
// lets one sequential read larger than the cache flush the working set.
// S3-FIFO (SOSP 2023) is scan-resistant by construction: new blocks enter a
// small FIFO (10% of the bytes) and only those read again while there are
// promoted to the main FIFO; a scan's one-hit wonders pass through the small
// queue and leave, their hashes kept in a ghost FIFO so that a block
// re-read a little later goes straight to main. Compared with a segmented
// LRU or 2Q, a hit moves nothing (it bumps a 2-bit counter), its measured
// miss ratios are as good or better, and its state (three FIFOs and the
// counters) persists cheaply in DIR/state.
//
// # Restart
//
// Open rebuilds the index from the directory (names and sizes, no reads)
// and orders it by DIR/state if present; files the state does not mention
// (cached after the last Close, e.g. before a crash) join the small queue as
// the newest. Content is checked on first read, as always.
package diskcache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"blockfs/blockstore"
	"blockfs/internal/fileutil"
)

// ErrLocked reports that another Cache (in this or another process) owns the
// directory.
var ErrLocked = errors.New("diskcache: cache directory is in use")

// Options configure a Cache.
type Options struct {
	// MaxBytes bounds the bytes of cached files (required, > 0).
	MaxBytes int64

	// Tests only: plainLRU selects a plain LRU instead of S3-FIFO (to
	// show what S3-FIFO buys).
	plainLRU bool
}

const (
	trailerLen = 16
	trailerMag = "bdc1"
	lockName   = "LOCK"
	stateName  = "state"
	tmpName    = "tmp"
	blocksName = "blocks"
	tempPrefix = ".tmp-"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errDamaged marks a cache file that is not what its name promises.
var errDamaged = errors.New("damaged cache file")

// Cache is a blockstore.Store that keeps verified blocks on local disk in
// front of a backend Store. It is safe for concurrent use.
type Cache struct {
	dir     string
	blocks  string
	tmp     string
	backend blockstore.Store
	max     int64
	lock    *os.File
	noMap   atomic.Bool // mlock refused: Map says ErrUnsupported (see blockstore.MapFile)

	mu       sync.Mutex
	entries  map[blockstore.Hash]*entry // resident blocks
	pol      policy
	bytes    int64 // sum of entries' sizes
	reserved int64 // bytes of temp files being written
	closed   bool

	c counters
}

var _ blockstore.Store = (*Cache)(nil)

// Open opens (creating if needed) the cache directory dir in front of
// backend, takes its lock, removes leftover temp files and rebuilds the
// index from the files there, evicting down to MaxBytes if the directory
// holds more. If another Cache owns dir, the error wraps ErrLocked.
func Open(dir string, backend blockstore.Store, opts Options) (*Cache, error) {
	if backend == nil {
		return nil, fmt.Errorf("diskcache: open %q: nil backend", dir)
	}
	if opts.MaxBytes <= 0 {
		return nil, fmt.Errorf("diskcache: open %q: MaxBytes must be > 0, got %d", dir, opts.MaxBytes)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("diskcache: open %q: %w", dir, err)
	}
	c := &Cache{
		dir:     abs,
		blocks:  filepath.Join(abs, blocksName),
		tmp:     filepath.Join(abs, tmpName),
		backend: backend,
		max:     opts.MaxBytes,
		entries: make(map[blockstore.Hash]*entry),
	}
	if opts.plainLRU {
		c.pol = newLRU()
	} else {
		c.pol = newS3FIFO(opts.MaxBytes, &c.c)
	}
	c.c.maxBytes.Store(opts.MaxBytes)
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("diskcache: open %q: %w", dir, err)
	}
	if err := c.takeLock(); err != nil {
		return nil, err
	}
	if err := c.load(); err != nil {
		c.lock.Close()
		return nil, fmt.Errorf("diskcache: open %q: %w", dir, err)
	}
	return c, nil
}

func (c *Cache) takeLock() error {
	name := filepath.Join(c.dir, lockName)
	f, err := fileutil.LockFile(name, true)
	if errors.Is(err, fileutil.ErrLocked) {
		var holder string
		if b, rerr := os.ReadFile(name); rerr == nil && len(b) > 0 && len(b) <= 32 {
			holder = " (held by pid " + strings.TrimSpace(string(b)) + ")"
		}
		return fmt.Errorf("%w: %s%s", ErrLocked, c.dir, holder)
	}
	if err != nil {
		return fmt.Errorf("diskcache: open %q: %w", c.dir, err)
	}
	// The pid is for the error message above only; failing to write it
	// is harmless.
	if f.Truncate(0) == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	c.lock = f
	return nil
}

// load empties tmp/, scans blocks/ and rebuilds the policy state.
func (c *Cache) load() error {
	if err := os.RemoveAll(c.tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(c.tmp, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(c.blocks, 0o755); err != nil {
		return err
	}
	subs, err := os.ReadDir(c.blocks)
	if err != nil {
		return err
	}
	found := make(map[blockstore.Hash]int64)
	for _, sd := range subs {
		sub := sd.Name()
		if !sd.IsDir() || len(sub) != 2 {
			continue
		}
		d := filepath.Join(c.blocks, sub)
		ents, err := os.ReadDir(d)
		if err != nil {
			return err
		}
		for _, de := range ents {
			if !de.Type().IsRegular() || !strings.HasPrefix(de.Name(), sub) {
				continue
			}
			h, err := blockstore.ParseHash(de.Name())
			if err != nil {
				continue // not ours; not counted
			}
			fi, err := de.Info()
			if err != nil {
				return err
			}
			if fi.Size() < trailerLen || fi.Size()-trailerLen > blockstore.MaxBlockSize {
				os.Remove(filepath.Join(d, de.Name()))
				c.c.corruptDropped.Add(1)
				continue
			}
			found[h] = fi.Size()
		}
	}
	for _, r := range readState(filepath.Join(c.dir, stateName)) {
		if r.q == qGhost {
			c.pol.restore(&entry{hash: r.hash, size: r.size, q: qGhost})
			continue
		}
		size, ok := found[r.hash]
		if !ok || c.entries[r.hash] != nil {
			continue
		}
		c.restoreEntry(&entry{hash: r.hash, size: size, q: r.q, freq: r.freq})
	}
	for h, size := range found {
		if c.entries[h] == nil {
			c.restoreEntry(&entry{hash: h, size: size, q: qSmall})
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.bytes > c.max {
		v := c.pol.evict()
		if v == nil {
			break
		}
		c.removeLocked(v)
		c.c.evictions.Add(1)
	}
	c.publishLocked()
	return nil
}

func (c *Cache) restoreEntry(e *entry) {
	c.entries[e.hash] = e
	c.bytes += e.size
	c.pol.restore(e)
}

// Close saves the policy state and releases the directory. Gets after Close
// go straight to the backend. Close is idempotent.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	err := c.saveStateLocked()
	c.mu.Unlock()
	if cerr := c.lock.Close(); err == nil && cerr != nil { // closing drops the flock
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("diskcache: close %q: %w", c.dir, err)
	}
	return nil
}

// Dir returns the absolute cache directory.
func (c *Cache) Dir() string { return c.dir }

func (c *Cache) path(h blockstore.Hash) string {
	s := h.String()
	return filepath.Join(c.blocks, s[:2], s)
}

// Get implements blockstore.Store: from the cache file if present and
// intact, else from the backend, whose bytes and error are returned exactly
// as it gave them. Backend bytes are cached only if they are the block loc
// names (size and SHA-256); failing to cache is counted, never returned.
// A locator the cache could not hold (bad size, short dst) goes straight to
// the backend.
func (c *Cache) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	if loc.Size < 0 || loc.Size > blockstore.MaxBlockSize || int64(len(dst)) < loc.Size {
		return c.backend.Get(ctx, loc, dst)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if e := c.lookup(loc); e != nil {
		err := c.readFile(loc, dst)
		if err == nil {
			c.c.hits.Add(1)
			c.c.hitBytes.Add(loc.Size)
			return int(loc.Size), nil
		}
		c.failed(e, err)
	}
	c.c.misses.Add(1)
	n, err := c.backend.Get(ctx, loc, dst)
	if err != nil {
		c.c.backendErrors.Add(1)
	}
	return n, err
}

// Keep implements blockstore.Keeper: data has verified as loc, so the
// cache may keep a copy (if it has no copy yet and can make room).
func (c *Cache) Keep(loc blockstore.Locator, data []byte) {
	if loc.Size < 0 || loc.Size > blockstore.MaxBlockSize || int64(len(data)) != loc.Size {
		return
	}
	c.insert(loc, data)
}

var (
	_ blockstore.Keeper    = (*Cache)(nil)
	_ blockstore.Mapper    = (*Cache)(nil)
	_ blockstore.Unwrapper = (*Cache)(nil)
)

// Unwrap implements blockstore.Unwrapper. The cache is a Mapper and a
// Keeper by itself (of its own files); every other capability, refs and
// Flush and PutHashed, is the backend's, found through here by
// blockstore.As (Put, too, goes straight to the backend).
func (c *Cache) Unwrap() blockstore.Store { return c.backend }

// Map implements blockstore.Mapper for a hit: the cache file is mapped and
// locked in memory, its trailer checked, and the block's bytes served in
// place. A miss, or a file that fails its check (dropped, as in Get), says
// ErrUnsupported, and the reader falls back to Get, which goes to the
// backend.
func (c *Cache) Map(ctx context.Context, loc blockstore.Locator) (*blockstore.Mapping, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.noMap.Load() || loc.Size <= 0 || loc.Size > blockstore.MaxBlockSize {
		return nil, fmt.Errorf("diskcache: map %v: %w", loc, errors.ErrUnsupported)
	}
	e := c.lookup(loc)
	if e == nil {
		return nil, fmt.Errorf("diskcache: map %v: not cached: %w", loc, errors.ErrUnsupported)
	}
	m, err := c.mapFile(loc)
	if err != nil {
		if !errors.Is(err, errors.ErrUnsupported) { // not just "cannot map": Get would fail too
			c.failed(e, err)
		}
		return nil, fmt.Errorf("diskcache: map %v: %w: %w", loc, errors.ErrUnsupported, err)
	}
	c.c.hits.Add(1)
	c.c.hitBytes.Add(loc.Size)
	return m, nil
}

// mapFile maps loc's cache file and checks it like readFile does.
func (c *Cache) mapFile(loc blockstore.Locator) (*blockstore.Mapping, error) {
	f, err := c.openFile(loc)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := blockstore.MapFile(f, loc.Size+trailerLen, &c.noMap)
	if err != nil {
		return nil, err
	}
	if b := m.Bytes(); [trailerLen]byte(b[loc.Size:]) != makeTrailer(loc.Hash, b[:loc.Size]) {
		m.Unmap()
		return nil, fmt.Errorf("%w: trailer mismatch", errDamaged)
	}
	m.Shorten(loc.Size)
	return m, nil
}

// lookup returns the resident entry for loc, recording the hit, or nil.
func (c *Cache) lookup(loc blockstore.Locator) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	e := c.entries[loc.Hash]
	if e == nil || e.size != loc.Size+trailerLen {
		// A size mismatch means the locator or the file is wrong; the
		// backend decides, and a verified refetch replaces the file.
		return nil
	}
	c.pol.touch(e)
	return e
}

// readFile reads the cache file of loc into dst and checks it. It runs
// without the mutex: eviction may unlink the file meanwhile, which either
// leaves the open file readable or makes Open fail with ErrNotExist.
func (c *Cache) readFile(loc blockstore.Locator, dst []byte) error {
	f, err := c.openFile(loc)
	if err != nil {
		return err
	}
	defer f.Close()
	data := dst[:loc.Size]
	var tr [trailerLen]byte
	if _, err := io.ReadFull(f, data); err != nil {
		return readErr(err)
	}
	if _, err := io.ReadFull(f, tr[:]); err != nil {
		return readErr(err)
	}
	if tr != makeTrailer(loc.Hash, data) {
		return fmt.Errorf("%w: trailer mismatch", errDamaged)
	}
	return nil
}

// openFile opens loc's cache file and checks its size.
func (c *Cache) openFile(loc blockstore.Locator) (*os.File, error) {
	f, err := os.Open(c.path(loc.Hash))
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.Size() != loc.Size+trailerLen {
		f.Close()
		return nil, fmt.Errorf("%w: %d bytes, want %d", errDamaged, fi.Size(), loc.Size+trailerLen)
	}
	return f, nil
}

// readErr classifies a read error: a short file or an I/O error is damage.
func readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EIO) {
		return fmt.Errorf("%w: %w", errDamaged, err)
	}
	return err
}

// failed handles a hit whose file could not be served. Damaged or vanished
// files are dropped (if e is still the entry: a concurrent refetch may have
// replaced it already); other errors (EMFILE, ...) leave the entry alone.
func (c *Cache) failed(e *entry, err error) {
	if !errors.Is(err, errDamaged) && !errors.Is(err, fs.ErrNotExist) {
		c.c.readErrors.Add(1)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.entries[e.hash] != e {
		return // evicted or replaced meanwhile: an ordinary miss
	}
	c.pol.remove(e)
	c.removeLocked(e)
	c.c.corruptDropped.Add(1)
	c.publishLocked()
}

func makeTrailer(h blockstore.Hash, data []byte) [trailerLen]byte {
	var tr [trailerLen]byte
	binary.LittleEndian.PutUint64(tr[0:8], uint64(len(data)))
	crc := crc32.Update(crc32.Checksum(h[:], castagnoli), castagnoli, data)
	binary.LittleEndian.PutUint32(tr[8:12], crc)
	copy(tr[12:], trailerMag)
	return tr
}

// insert caches verified data for loc: reserve room (evicting), write a
// temp file, then rename it into place and index it.
func (c *Cache) insert(loc blockstore.Locator, data []byte) {
	size := loc.Size + trailerLen
	if size > c.max {
		c.c.skipped.Add(1) // never evict everything for a block that cannot fit
		return
	}
	if !c.reserve(loc.Hash, size) {
		return
	}
	final := c.path(loc.Hash)
	// Fan-out directories are made on demand and never removed.
	err := os.MkdirAll(filepath.Dir(final), 0o755)
	var tmp string
	if err == nil {
		tr := makeTrailer(loc.Hash, data)
		tmp, err = fileutil.WriteTemp(c.tmp, tempPrefix, 0o444, false, data, tr[:])
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reserved -= size
	defer c.publishLocked()
	if err != nil {
		c.c.writeErrors.Add(1)
		return
	}
	if c.closed {
		os.Remove(tmp)
		return
	}
	if old := c.entries[loc.Hash]; old != nil {
		if old.size == size {
			os.Remove(tmp) // a concurrent miss got there first
			return
		}
		// Only one size can verify for a hash: the old file was wrong
		// (damaged while the cache was closed; Open reads no contents).
		c.pol.remove(old)
		c.removeLocked(old)
		c.c.corruptDropped.Add(1)
	}
	// Our reservation guaranteed room, but a concurrent replacement may
	// have landed since; evict again if so.
	if !c.makeRoomLocked(size) {
		os.Remove(tmp)
		c.c.skipped.Add(1)
		return
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		c.c.writeErrors.Add(1)
		return
	}
	e := &entry{hash: loc.Hash, size: size}
	c.entries[e.hash] = e
	c.bytes += size
	c.pol.admit(e)
	c.c.inserts.Add(1)
}

// reserve makes room for, and reserves, a new file of size bytes for h. It
// returns false if h is already cached or the room cannot be had.
func (c *Cache) reserve(h blockstore.Hash, size int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if e := c.entries[h]; e != nil && e.size == size {
		return false
	}
	if !c.makeRoomLocked(size) {
		c.c.skipped.Add(1)
		c.publishLocked()
		return false
	}
	c.reserved += size
	c.publishLocked()
	return true
}

// makeRoomLocked evicts until size more bytes fit under MaxBytes.
func (c *Cache) makeRoomLocked(size int64) bool {
	for c.bytes+c.reserved+size > c.max {
		v := c.pol.evict()
		if v == nil {
			return false
		}
		c.removeLocked(v)
		c.c.evictions.Add(1)
	}
	return true
}

// removeLocked forgets resident entry e (already unlinked from the policy)
// and removes its file. Files are only created (renamed in) and removed
// under the mutex, so the file is e's.
func (c *Cache) removeLocked(e *entry) {
	delete(c.entries, e.hash)
	c.bytes -= e.size
	if err := os.Remove(c.path(e.hash)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.c.removeErrors.Add(1)
	}
}

// Put implements blockstore.Store by writing to the backend only.
func (c *Cache) Put(ctx context.Context, h blockstore.Hash, data []byte) error {
	return c.backend.Put(ctx, h, data)
}

// Has implements blockstore.Store by asking the backend (the authority on
// what is stored; a cached copy may outlive a deletion elsewhere).
func (c *Cache) Has(ctx context.Context, h blockstore.Hash) (bool, error) {
	return c.backend.Has(ctx, h)
}

// List implements blockstore.Store by listing the backend.
func (c *Cache) List(ctx context.Context, fn func(blockstore.Locator) error) error {
	return c.backend.List(ctx, fn)
}

// Delete drops the cached copy of h, then deletes h from the backend and
// returns its result. (A Get already past its backend read may still cache
// the block again.)
func (c *Cache) Delete(ctx context.Context, h blockstore.Hash) error {
	c.mu.Lock()
	if e := c.entries[h]; e != nil && !c.closed {
		c.pol.remove(e)
		c.removeLocked(e)
		c.publishLocked()
	}
	c.mu.Unlock()
	return c.backend.Delete(ctx, h)
}
