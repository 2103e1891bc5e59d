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
	// Warn receives non-fatal problems (skipped devices, sockets, ...).
	Warn func(error)
}

// Stats count what an import did. Bytes is what was read; NewBytes is
// what had to be written because the store did not hold it yet.
type Stats struct {
	Files     int64 `json:"files"`
	Dirs      int64 `json:"dirs"`
	Symlinks  int64 `json:"symlinks"`
	Skipped   int64 `json:"skipped"`
	Deleted   int64 `json:"deleted"` // paths removed by Options.Delete
	Bytes     int64 `json:"bytes"`
	Blocks    int64 `json:"blocks"`
	NewBlocks int64 `json:"new_blocks"`
	NewBytes  int64 `json:"new_bytes"`
	TotalSize int64 `json:"total_size"` // bytes the walk expects, for progress
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
	if opts.Warn == nil {
		opts.Warn = func(error) {}
	}
	return &Importer{vol: vol, opts: opts}, nil
}

// Progress returns the counters so far.
func (im *Importer) Progress() Stats {
	return Stats{
		Files: im.files.Load(), Dirs: im.dirs.Load(), Symlinks: im.symlinks.Load(),
		Skipped: im.skipped.Load(), Deleted: im.deleted.Load(), Bytes: im.bytes.Load(), Blocks: im.blocks.Load(),
		NewBlocks: im.newBlocks.Load(), NewBytes: im.newBytes.Load(), TotalSize: im.totalSize.Load(),
	}
}

// item is one thing found by the walk.
type item struct {
	src  string // local path
	dest string // tree path
	info fs.FileInfo
}

// Import copies the file or tree at src into the store under dest.
//
// Each file's node is committed only after all its blocks are stored, and
// nodes go to the log in atomic multi-writes, so a crash at any point leaves
// every file either complete or absent. Blocks the store already has are not
// written again.
func (im *Importer) Import(ctx context.Context, src, dest string) (Stats, error) {
	start := time.Now()
	dest = tree.CleanPath(dest)
	items, err := im.walk(src, dest)
	if err != nil {
		return im.Progress(), err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c := newCommitter(ctx, im.vol, im.opts.BatchEntries, im.opts.PublishInterval)
	if err := im.parents(dest, c); err != nil {
		cancel(err)
	}

	jobs := make(chan blockJob, 2*im.opts.Workers)
	var workers sync.WaitGroup
	seen := &sync.Map{} // hashes stored (or being stored) by this import
	for range im.opts.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range jobs {
				var loc blockstore.Locator
				var err error
				if err = ctx.Err(); err == nil {
					loc, err = im.storeBlock(ctx, seen, j)
				}
				if err != nil {
					cancel(err)
				}
				j.file.finish(j.idx, loc, err == nil, c)
			}
		}()
	}

	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		switch {
		case it.info.IsDir():
			im.dirs.Add(1)
			c.add(tree.Entry(it.dest, &tree.Node{Kind: tree.KindDir, Mode: modeBits(it.info.Mode()), MtimeNs: it.info.ModTime().UnixNano()}))
		case it.info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(it.src)
			if err != nil {
				cancel(fmt.Errorf("importing %s: %w", it.src, err))
				break
			}
			im.symlinks.Add(1)
			c.add(tree.Entry(it.dest, &tree.Node{Kind: tree.KindSymlink, Mode: modeBits(it.info.Mode()), MtimeNs: it.info.ModTime().UnixNano(), Target: target, Size: int64(len(target))}))
		default:
			if err := im.chunkFile(ctx, it, jobs, c); err != nil {
				cancel(err)
			}
		}
	}
	close(jobs)
	workers.Wait()
	if im.opts.Delete && context.Cause(ctx) == nil {
		if err := im.deleteMissing(dest, items, c); err != nil {
			cancel(err)
		}
	}
	err = c.close(context.Cause(ctx))
	st := im.Progress()
	st.Duration = time.Since(start)
	st.MetaBlocks = im.vol.MetaStats().PublishedBlocks
	return st, err
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
			im.opts.Warn(fmt.Errorf("skipping %s: %s is not a regular file, directory or symlink", p, m.Type()))
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
			return fmt.Errorf("import: %w", err)
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("import: %w", err)
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
		c.add(tree.Entry(missing[i], &tree.Node{Kind: tree.KindDir, Mode: 0o755, MtimeNs: now}))
	}
	return nil
}

// storeBlock hashes one block and writes it unless the store (or this
// import) already has it.
func (im *Importer) storeBlock(ctx context.Context, seen *sync.Map, j blockJob) (loc blockstore.Locator, err error) {
	defer guardFault(j.file.item.src, &err)()
	data := j.data
	loc = blockstore.Locator{Hash: blockstore.Sum(data), Size: int64(len(data))}
	im.blocks.Add(1)
	if _, dup := seen.LoadOrStore(loc.Hash, true); dup {
		return loc, nil
	}
	has, err := im.vol.Blocks.Has(ctx, loc.Hash)
	if err != nil {
		return loc, fmt.Errorf("import: %w", err)
	}
	if !has {
		// The hash was computed from these bytes just above, and Has said
		// the store lacks the block: no second hash, no second existence check.
		if err := blockstore.PutHashed(ctx, im.vol.Blocks, loc.Hash, data); err != nil {
			return loc, fmt.Errorf("import: storing a block of %s: %w", j.file.item.src, err)
		}
		im.newBlocks.Add(1)
		im.newBytes.Add(loc.Size)
	}
	return loc, nil
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
