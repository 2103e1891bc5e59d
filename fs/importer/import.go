// Package importer copies local trees into a volume: it splits files into
// content-defined blocks (package chunker), hashes and stores them in
// parallel, and commits their nodes to the volume's log in atomic batches,
// publishing now and then, so that a crash leaves every file complete or
// absent.
package importer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"blockfs/blockstore"
	"blockfs/fs/chunker"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
)

// Options tune Import; the zero value is sensible.
type Options struct {
	Chunking chunker.Config // block boundaries (default: content-defined, 256K/1M/4M)
	// Workers hash and store blocks. Hashing wants one per core, storing
	// wants several in flight to overlap fsync or network latency, so the
	// default is 4 per core.
	Workers int
	// BatchEntries bounds how many small nodes share one atomic multi-write.
	BatchEntries int // default 256
	// PublishInterval is how often a long import makes what it has
	// committed visible in the store (default 10s; negative: after every
	// batch). Everything is published when the import ends.
	PublishInterval time.Duration
	// Delete removes, after a successful import, every path under the
	// destination that the source no longer has (like rsync --delete), so
	// that re-importing a tree mirrors it. Off by default: import adds.
	Delete bool
	// Repair reads back every block the store already has and rewrites
	// it from the source when its bytes do not hash to its name (a corrupt
	// block that Has alone cannot see). It costs one read of every such
	// block; Stats.Repaired counts the rewrites.
	Repair bool
	// Warn receives non-fatal problems (skipped devices, sockets, ...).
	Warn func(error)
	// OnFailure receives each path that could not be imported, as it
	// happens (they are also in Importer.Failures).
	OnFailure func(Failure)
	// Reuse, if set, is asked before a block the store already has is
	// reused instead of uploaded (the garbage collector's lease, gc.Held.
	// Reuse): false means a sweep may have deleted it since Has, so the
	// store is asked again and the block uploaded if it is missing.
	Reuse func(ctx context.Context, h blockstore.Hash) (bool, error)
	// PackBelow, if positive, packs regular files smaller than this many
	// bytes into shared pack blocks of about PackSize bytes (default
	// 1 MiB; see pack.go). Packed nodes are node format 3, which mounts
	// older than packing refuse.
	PackBelow int64
	PackSize  int64
	// AskStore, when packing, asks the store (one HEAD) about each block
	// of a large file that the catalog does not name before uploading it,
	// whatever the store. By default only a local directory store is asked
	// (a stat); a remote one is not, and such a block is just uploaded: it
	// is named by its hash, so a second upload of one the store already
	// has rewrites the same bytes. The round trip a HEAD costs is paid by
	// every new block to save the upload of a block only an interrupted
	// import (or a file deleted and not yet swept) left in the store, so
	// asking pays only when resuming an import of large files over a slow
	// link; not asking, NewBlocks and NewBytes count such re-uploads too.
	// Without packing every block is asked about (the catalog is not
	// indexed).
	AskStore bool
}

// DefaultPackBelow is the threshold `blockfs import` packs below unless
// told otherwise: software trees are mostly files this small, and a cold
// start over a remote store pays one request per unpacked file. The
// library's zero Options still pack nothing, so that a caller chooses the
// node format its readers understand.
const DefaultPackBelow = 64 << 10

// MaxPackBelow bounds Options.PackBelow, and with it how far a pack may
// run past PackSize: a pack is cut once it reaches PackSize.
const MaxPackBelow = 1 << 20

// MaxPackSize bounds Options.PackSize, well within a block's bounds.
const MaxPackSize = 16 << 20

// Stats count what an import did. Bytes is what was read; NewBytes is
// what had to be written because the store did not hold it yet.
type Stats struct {
	Files     int64 `json:"files"` // files read (Committed: of those, committed)
	Committed int64 `json:"committed"`
	Repaired  int64 `json:"repaired"` // corrupt blocks rewritten (Options.Repair)
	// CommittedBytes is the size of the committed files.
	CommittedBytes int64 `json:"committed_bytes"`
	Dirs           int64 `json:"dirs"`
	Symlinks       int64 `json:"symlinks"`
	Skipped        int64 `json:"skipped"` // special files: devices, FIFOs, sockets
	Errors         int64 `json:"errors"`  // paths that could not be imported (Importer.Failures)
	Deleted        int64 `json:"deleted"` // paths removed by Options.Delete
	Bytes          int64 `json:"bytes"`
	Blocks         int64 `json:"blocks"`
	NewBlocks      int64 `json:"new_blocks"`
	NewBytes       int64 `json:"new_bytes"`
	TotalSize      int64 `json:"total_size"` // bytes the walk expects, for progress
	HoleBytes      int64 `json:"hole_bytes"` // bytes of all-zero blocks, stored as holes
	// XattrsKept and XattrsDropped count extended attributes kept and not
	// kept (a namespace blockfs does not keep, or over the size bound).
	XattrsKept    int64 `json:"xattrs_kept"`
	XattrsDropped int64 `json:"xattrs_dropped"`
	// Packed counts the files stored as ranges of packs (Options.PackBelow),
	// new or reused; Packs the packs this import stored.
	Packed int64 `json:"packed"`
	Packs  int64 `json:"packs"`
	// MetaBlocks counts the metadata blocks published (segments, manifest).
	MetaBlocks int64         `json:"meta_blocks"`
	Duration   time.Duration `json:"duration_ns"`
}

// DedupRatio is bytes imported per byte newly stored; ok is false when
// nothing new was stored (the ratio is then undefined, not large).
func (s Stats) DedupRatio() (ratio float64, ok bool) {
	if s.NewBytes == 0 {
		return 0, false
	}
	return float64(s.Bytes) / float64(s.NewBytes), true
}

// Importer copies local trees into a Volume. Progress may be called from
// another goroutine while Import runs.
type Importer struct {
	vol  *volume.Volume
	opts Options

	files, dirs, symlinks, skipped, deleted atomic.Int64
	bytes, blocks                           atomic.Int64
	newBlocks, newBytes, totalSize          atomic.Int64
	holeBytes, xattrsKept, xattrsDropped    atomic.Int64
	committed, committedBytes, repaired     atomic.Int64
	packedFiles, packs                      atomic.Int64

	packer *packer // small files being packed, when Options.PackBelow is set
	// catalogBlocks are the blocks the catalog's nodes referenced when a
	// packing import began (read-only during the import).
	catalogBlocks map[blockstore.Hash]bool

	links map[linkKey]*linkGroup // source inodes with several paths
	seen  *sync.Map              // hashes stored (or being stored) by the running import

	errors   atomic.Int64
	failMu   sync.Mutex
	failures []Failure
}

// Failure is a path an import could not import, and why.
type Failure struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// maxFailures bounds the failures kept for Failures (all are counted).
const maxFailures = 10000

// fail records a path that could not be imported.
func (im *Importer) fail(p string, err error) {
	im.errors.Add(1)
	f := Failure{Path: p, Error: err.Error()}
	im.failMu.Lock()
	if len(im.failures) < maxFailures {
		im.failures = append(im.failures, f)
	}
	im.failMu.Unlock()
	im.opts.OnFailure(f)
}

// Failures returns the paths that could not be imported (at most the
// first 10000; Stats.Errors counts them all).
func (im *Importer) Failures() []Failure {
	im.failMu.Lock()
	defer im.failMu.Unlock()
	return append([]Failure(nil), im.failures...)
}

// New returns an Importer writing into vol, which must be writable.
func New(vol *volume.Volume, opts Options) (*Importer, error) {
	if opts.Chunking == (chunker.Config{}) {
		opts.Chunking = chunker.DefaultConfig()
	}
	if err := opts.Chunking.Validate(); err != nil {
		return nil, err
	}
	if opts.Workers <= 0 {
		opts.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	if opts.BatchEntries <= 0 {
		opts.BatchEntries = 256
	}
	if opts.PublishInterval == 0 {
		opts.PublishInterval = 10 * time.Second
	}
	if opts.PackSize <= 0 {
		opts.PackSize = 1 << 20
	}
	if opts.PackBelow > MaxPackBelow || opts.PackSize > MaxPackSize {
		return nil, fmt.Errorf("import: packing files below %d bytes into packs of %d: at most %d and %d", opts.PackBelow, opts.PackSize, MaxPackBelow, MaxPackSize)
	}
	if opts.Warn == nil {
		opts.Warn = func(error) {}
	}
	if opts.OnFailure == nil {
		opts.OnFailure = func(Failure) {}
	}
	return &Importer{vol: vol, opts: opts}, nil
}

// Progress returns the counters so far.
func (im *Importer) Progress() Stats {
	return Stats{
		Files: im.files.Load(), Dirs: im.dirs.Load(), Symlinks: im.symlinks.Load(),
		Skipped: im.skipped.Load(), Errors: im.errors.Load(), Deleted: im.deleted.Load(), Bytes: im.bytes.Load(), Blocks: im.blocks.Load(),
		NewBlocks: im.newBlocks.Load(), NewBytes: im.newBytes.Load(), TotalSize: im.totalSize.Load(),
		Committed: im.committed.Load(), Repaired: im.repaired.Load(), CommittedBytes: im.committedBytes.Load(),
		HoleBytes: im.holeBytes.Load(), XattrsKept: im.xattrsKept.Load(), XattrsDropped: im.xattrsDropped.Load(),
		Packed: im.packedFiles.Load(), Packs: im.packs.Load(),
	}
}

// item is one thing found by the walk.
type item struct {
	src  string // local path
	dest string // tree path
	info fs.FileInfo
}

// ErrIncomplete is wrapped by the error of an import that committed
// everything it could but could not import some paths (Importer.Failures
// lists them): the model is rsync's exit status 23.
var ErrIncomplete = errors.New("some paths could not be imported")

// Import copies the file or tree at src into the store under dest.
//
// Each file's node is committed only after all its blocks are stored, and
// nodes go to the log in atomic multi-writes, so a crash at any point leaves
// every file either complete or absent. Blocks the store already has are not
// written again. A path that cannot be read (or changed while it was read,
// twice) is a Failure: the import goes on, commits everything else and
// returns an error wrapping ErrIncomplete. A store error ends the import;
// what was whole by then is committed.
func (im *Importer) Import(ctx context.Context, src, dest string) (Stats, error) {
	start := time.Now()
	dest = tree.CleanPath(dest)
	items, err := im.walk(src, dest)
	if err != nil {
		return im.Progress(), err
	}
	im.links = findLinks(items)
	im.seen = &sync.Map{}
	if im.opts.PackBelow > 0 {
		packOrder(items, dest)
		if im.packer, err = newPacker(im); err != nil {
			return im.Progress(), err
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c := newCommitter(ctx, im.vol, im.opts.BatchEntries, im.opts.PublishInterval)
	if err := im.parents(dest, c); err != nil {
		cancel(err)
	}
	// A file that changed while it was read is read once more; if it
	// changes again it is a failure, never a torn file in the store.
	if changed := im.pass(ctx, cancel, items, c); len(changed) > 0 && ctx.Err() == nil {
		for _, it := range im.pass(ctx, cancel, im.restat(changed), c) {
			im.fail(it.src, fmt.Errorf("%w, twice: not stored", ErrChanged))
		}
	}
	if im.opts.Delete && context.Cause(ctx) == nil {
		if im.errors.Load() > 0 {
			// As rsync: what could not be read must not be deleted from DEST.
			im.opts.Warn(fmt.Errorf("not deleting anything under %s: some of %s could not be read", dest, src))
		} else if err := im.deleteMissing(dest, items, c); err != nil {
			cancel(err)
		}
	}
	err = c.close(context.Cause(ctx))
	st := im.Progress()
	st.Duration = time.Since(start)
	st.MetaBlocks = im.vol.MetaStats().PublishedBlocks
	if err == nil && st.Errors > 0 {
		err = fmt.Errorf("%w: %d of them (the rest is committed)", ErrIncomplete, st.Errors)
	}
	return st, err
}

// pass imports items with a pool of block workers and returns the files
// that changed while they were read (not committed).
func (im *Importer) pass(ctx context.Context, cancel context.CancelCauseFunc, items []item, c *committer) []item {
	var changed changedList
	jobs := make(chan blockJob, 2*im.opts.Workers)
	var workers sync.WaitGroup
	for range im.opts.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range jobs {
				var loc blockstore.Locator
				var err error
				if err = ctx.Err(); err == nil {
					loc, err = im.storeBlock(ctx, im.seen, j)
				}
				if err != nil && !errors.Is(err, ErrChanged) {
					cancel(err)
				}
				if j.pack != nil {
					j.pack.finish(im, loc, err, c)
					continue
				}
				j.file.finish(j.idx, loc, err, c, &changed)
			}
		}()
	}
	var ra *readAhead
	if im.packer != nil {
		ra = im.readAhead(ctx, items, readersFor(im.opts.Workers))
	}
	for i, it := range items {
		if ctx.Err() != nil {
			break
		}
		var r *smallRead
		if ra != nil {
			var ok bool
			if r, ok = ra.take(ctx, i); !ok {
				break
			}
		}
		if err := im.one(ctx, it, r, jobs, c, &changed); err != nil {
			cancel(err)
		}
	}
	if ra != nil {
		ra.close()
	}
	if im.packer != nil && ctx.Err() == nil {
		if err := im.packer.flush(ctx, jobs); err != nil {
			cancel(err)
		}
	}
	close(jobs)
	workers.Wait()
	return changed.items
}

// one imports one item; r is its read ahead, if it is a small file to
// pack. Problems of the item itself are failures (counted, and the import
// goes on); only what ends the import is returned.
func (im *Importer) one(ctx context.Context, it item, r *smallRead, jobs chan<- blockJob, c *committer, changed *changedList) error {
	switch {
	case it.info.IsDir():
		im.dirs.Add(1)
		c.add(tree.Entry(it.dest, im.node(it, tree.KindDir)))
	case it.info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(it.src)
		if err != nil {
			im.fail(it.src, err)
			return nil
		}
		im.symlinks.Add(1)
		n := im.node(it, tree.KindSymlink)
		n.Target, n.Size = target, int64(len(target))
		c.add(tree.Entry(it.dest, n))
	default:
		var err error
		if r != nil {
			err = im.packFile(ctx, r, jobs, c)
		} else {
			err = im.chunkFile(ctx, it, jobs, c, changed)
		}
		var fe fileError
		switch {
		case errors.Is(err, ErrChanged):
			changed.add(it)
		case errors.As(err, &fe):
			im.fail(it.src, fe.err)
		case err != nil:
			return err
		}
	}
	return nil
}

// restat looks again at files that changed, for their second reading.
func (im *Importer) restat(items []item) []item {
	var out []item
	for _, it := range items {
		info, err := os.Lstat(it.src)
		if err != nil {
			im.fail(it.src, err)
			continue
		}
		if !info.Mode().IsRegular() {
			im.fail(it.src, fmt.Errorf("%w: no longer a regular file", ErrChanged))
			continue
		}
		it.info = info
		out = append(out, it)
	}
	return out
}

// walk lists what src holds, parents before children, and counts the bytes.
func (im *Importer) walk(src, dest string) ([]item, error) {
	info, err := os.Lstat(src)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var items []item
	add := func(p, d string, info fs.FileInfo) {
		m := info.Mode()
		if !m.IsRegular() && !m.IsDir() && m&fs.ModeSymlink == 0 {
			im.skipped.Add(1)
			im.opts.Warn(fmt.Errorf("skipping %s: a %s (only regular files, directories and symlinks are imported)", p, typeWord(m)))
			return
		}
		if m.IsRegular() {
			im.totalSize.Add(info.Size())
		}
		items = append(items, item{src: p, dest: d, info: info})
	}
	if !info.IsDir() {
		add(src, dest, info)
		return items, nil
	}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == src {
				return fmt.Errorf("import: %w", err)
			}
			im.fail(p, unwrapPath(err)) // an unreadable directory: its entries are not imported
			return nil
		}
		info, err := d.Info()
		if err != nil {
			im.fail(p, unwrapPath(err))
			if d.IsDir() {
				return filepath.SkipDir // not imported: do not report its entries too
			}
			return nil
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		add(p, path.Join(dest, filepath.ToSlash(rel)), info)
		return nil
	})
	return items, err
}

// unwrapPath drops the path from a *fs.PathError: a Failure names it already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// deleteMissing queues a tombstone for every path under dest that the
// walk did not find: children before their directories, so that no
// listing ever shows a child of a deleted directory.
func (im *Importer) deleteMissing(dest string, items []item, c *committer) error {
	gone, err := im.missing(dest, items)
	if err != nil {
		return err
	}
	for i := len(gone) - 1; i >= 0; i-- { // Walk lists parents first
		im.deleted.Add(1)
		c.add(tree.DeleteEntry(gone[i]))
	}
	return nil
}

// missing lists the paths under dest that items lacks, parents first.
func (im *Importer) missing(dest string, items []item) ([]string, error) {
	keep := make(map[string]bool, len(items))
	for _, it := range items {
		keep[it.dest] = true
	}
	var gone []string
	err := im.vol.Tree.Walk(dest, func(p string, n *tree.Node) error {
		if !keep[p] {
			gone = append(gone, p)
		}
		return nil
	})
	if errors.Is(err, tree.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("import --delete: %w", err)
	}
	return gone, nil
}

// parents makes sure every ancestor of dest exists as a directory.
func (im *Importer) parents(dest string, c *committer) error {
	var missing []string
	for p := path.Dir(dest); p != "/"; p = path.Dir(p) {
		n, err := im.vol.Tree.Lookup(p)
		if errors.Is(err, tree.ErrNotExist) {
			missing = append(missing, p)
			continue
		}
		if err != nil {
			return err
		}
		if n.Kind != tree.KindDir {
			return fmt.Errorf("import into %s: %s is a %s, not a directory", dest, p, n.Kind)
		}
		break
	}
	now := time.Now().UnixNano()
	for i := len(missing) - 1; i >= 0; i-- {
		im.dirs.Add(1)
		c.add(tree.Entry(missing[i], &tree.Node{Kind: tree.KindDir, Mode: 0o755, MtimeNs: now, Owned: true, UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}))
	}
	return nil
}

// storeBlock hashes one block and writes it unless the store (or this
// import) already has it.
func (im *Importer) storeBlock(ctx context.Context, seen *sync.Map, j blockJob) (loc blockstore.Locator, err error) {
	src := "a pack"
	if j.file != nil {
		src = j.file.item.src
	}
	data := j.data
	im.blocks.Add(1)
	if allZero(data) {
		im.holeBytes.Add(int64(len(data)))
		return blockstore.Locator{Size: int64(len(data))}, nil // a hole: tree.IsHole
	}
	loc = blockstore.Locator{Hash: blockstore.Sum(data), Size: int64(len(data))}
	if _, dup := seen.LoadOrStore(loc.Hash, true); dup {
		return loc, nil
	}
	has, err := im.has(ctx, j, loc.Hash)
	if err == nil && has && im.opts.Reuse != nil {
		var ok bool
		if ok, err = im.opts.Reuse(ctx, loc.Hash); err == nil && !ok {
			has, err = im.vol.Blocks.Has(ctx, loc.Hash)
		}
	}
	if err != nil {
		return loc, fmt.Errorf("import: %w", err)
	}
	if has && im.opts.Repair {
		intact, err := im.intact(ctx, loc)
		if err != nil {
			return loc, err
		}
		if !intact {
			if err := blockstore.PutHashed(ctx, im.vol.Blocks, loc.Hash, data); err != nil {
				return loc, fmt.Errorf("import: repairing block %s of %s: %w", loc, src, err)
			}
			im.repaired.Add(1)
			im.opts.Warn(fmt.Errorf("block %s of %s was corrupt in the store: rewritten", loc, src))
		}
		return loc, nil
	}
	if !has {
		// The hash was computed from these bytes just above, and Has said
		// the store lacks the block: no second hash, no second existence check.
		if err := blockstore.PutHashed(ctx, im.vol.Blocks, loc.Hash, data); err != nil {
			return loc, fmt.Errorf("import: storing a block of %s: %w", src, err)
		}
		im.newBlocks.Add(1)
		im.newBytes.Add(loc.Size)
	}
	return loc, nil
}

// has asks the store whether it holds h, unless the answer is known
// without a round trip:
//   - a block some node of the catalog references is there (Reuse, below,
//     still guards against a sweep; --repair asks and reads regardless);
//   - a new pack is not: its bytes are small files that no known content
//     matched, in this import's order, so only a repeat of an interrupted
//     import could have stored it, and then the PUT rewrites the same bytes;
//   - when packing into a remote store, any other block the catalog does
//     not name is taken as missing too, for the same reason, unless
//     Options.AskStore.
func (im *Importer) has(ctx context.Context, j blockJob, h blockstore.Hash) (bool, error) {
	switch {
	case im.opts.Repair:
	case im.catalogBlocks[h]:
		return true, nil
	case j.pack != nil:
		return false, nil
	case im.packer != nil && !im.opts.AskStore && !localStore(im.vol.Blocks):
		return false, nil
	}
	return im.vol.Blocks.Has(ctx, h)
}

// localStore reports whether s is a directory on this machine, where an
// existence check is a stat rather than a round trip.
func localStore(s blockstore.Store) bool {
	_, ok := blockstore.As[*blockstore.DirStore](s)
	return ok
}

// intact reads a block the store has and reports whether its bytes hash
// to its name; a block the store cannot serve as itself is not intact.
func (im *Importer) intact(ctx context.Context, loc blockstore.Locator) (bool, error) {
	buf := make([]byte, loc.Size)
	n, err := im.vol.Blocks.Get(ctx, loc, buf)
	switch {
	case errors.Is(err, blockstore.ErrCorrupt), errors.Is(err, blockstore.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("import --repair: reading block %s: %w", loc, err)
	}
	return int64(n) == loc.Size && blockstore.Sum(buf[:n]) == loc.Hash, nil
}

// modeBits converts Go's file mode to the unix permission bits we store.
func modeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}
