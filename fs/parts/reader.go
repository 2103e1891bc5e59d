package parts

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"blockfs/blockstore"
	"blockfs/fs/tree"
)

// DefaultCacheBytes bounds the parts a Cache keeps decoded: about a
// million resident entries at typical sizes. A part is refetched (from the
// store stack, so usually from its disk cache) after it is evicted.
const DefaultCacheBytes = 256 << 20

// prefetchWorkers bounds the child parts fetched ahead at once, and
// prefetchQueue the ones waiting (more are dropped: they are fetched when
// a path needs them).
const (
	prefetchWorkers = 8
	prefetchQueue   = 4096
)

// CacheOptions configure a Cache.
type CacheOptions struct {
	Bytes  int64       // bound on resident parts; 0 means DefaultCacheBytes
	Logger *log.Logger // gets one line per part that cannot be used
	Store  string      // the store's name, for those lines
}

// Cache holds decoded parts, fetched through a block store on demand and
// verified, least recently used first out past a bound in bytes. One fetch
// per part runs at a time (the others wait for it). It is shared by the
// Readers of successive snapshots, which share most of their parts.
type Cache struct {
	blocks blockstore.Store
	opts   CacheOptions

	mu     sync.Mutex
	lru    *list.List // of *cached, most recent first
	byKey  map[string]*list.Element
	flight map[string]*call
	used   int64
	logged map[string]bool

	queue     chan job
	startOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup

	fetches atomic.Int64
}

type cached struct {
	key  string
	part *Part
}

type call struct {
	done chan struct{}
	part *Part
	err  error
}

type job struct {
	ref  Ref
	root string
}

// NewCache makes a cache reading parts from blocks.
func NewCache(blocks blockstore.Store, opts CacheOptions) *Cache {
	if opts.Bytes <= 0 {
		opts.Bytes = DefaultCacheBytes
	}
	if opts.Logger == nil {
		opts.Logger = log.Default()
	}
	return &Cache{blocks: blocks, opts: opts, lru: list.New(), byKey: map[string]*list.Element{},
		flight: map[string]*call{}, logged: map[string]bool{}, queue: make(chan job, prefetchQueue), done: make(chan struct{})}
}

// Close stops the prefetching workers.
func (c *Cache) Close() {
	c.startOnce.Do(func() {}) // no workers start after Close
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	c.wg.Wait()
}

// Fetches counts the parts fetched from the store (not from the cache).
func (c *Cache) Fetches() int64 { return c.fetches.Load() }

// Resident is the bytes the cache holds.
func (c *Cache) Resident() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// get returns the decoded part ref names, whose root must be root.
func (c *Cache) get(ctx context.Context, ref Ref, root string) (*Part, error) {
	key := ref.key()
	c.mu.Lock()
	if el, ok := c.byKey[key]; ok {
		c.lru.MoveToFront(el)
		c.mu.Unlock()
		return el.Value.(*cached).part, nil
	}
	if cl, ok := c.flight[key]; ok {
		c.mu.Unlock()
		<-cl.done
		return cl.part, cl.err
	}
	cl := &call{done: make(chan struct{})}
	c.flight[key] = cl
	c.mu.Unlock()

	cl.part, cl.err = c.fetch(ctx, ref, root)
	c.mu.Lock()
	delete(c.flight, key)
	if cl.err == nil {
		c.insert(key, cl.part)
	} else if !c.logged[key] {
		c.logged[key] = true
		c.opts.Logger.Printf("blockfs: metadata part %s (subtree %s) of store %s: %v: the paths under %s fail with EIO", ref.Blocks[0], root, c.opts.Store, cl.err, root)
	}
	c.mu.Unlock()
	close(cl.done)
	return cl.part, cl.err
}

// insert adds p under key and evicts past the bound (never p itself).
func (c *Cache) insert(key string, p *Part) {
	c.byKey[key] = c.lru.PushFront(&cached{key: key, part: p})
	c.used += p.Size()
	for c.used > c.opts.Bytes && c.lru.Len() > 1 {
		el := c.lru.Back()
		old := el.Value.(*cached)
		c.lru.Remove(el)
		delete(c.byKey, old.key)
		c.used -= old.part.Size()
	}
}

// fetch reads, verifies and decodes a part: a block whose hash does not
// verify is never used.
func (c *Cache) fetch(ctx context.Context, ref Ref, root string) (*Part, error) {
	if err := ref.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", blockstore.ErrCorrupt, err)
	}
	c.fetches.Add(1)
	data := make([]byte, ref.Size)
	off := int64(0)
	for _, l := range ref.Blocks {
		if err := blockstore.ReadVerified(ctx, c.blocks, l, data[off:off+l.Size]); err != nil {
			return nil, fmt.Errorf("metadata part block %s: %w", l, err)
		}
		off += l.Size
	}
	p, err := Decode(data, root)
	if err != nil {
		return nil, err
	}
	if p.Totals != ref.Totals {
		return nil, fmt.Errorf("%w: %w: totals %+v, its parent says %+v", blockstore.ErrCorrupt, ErrBadPart, p.Totals, ref.Totals)
	}
	return p, nil
}

// prefetch queues the part ref names for fetching in the background.
func (c *Cache) prefetch(ref Ref, root string) {
	c.mu.Lock()
	_, have := c.byKey[ref.key()]
	c.mu.Unlock()
	if have {
		return
	}
	c.startOnce.Do(c.start)
	select {
	case <-c.done:
	case c.queue <- job{ref, root}:
	default: // queue full: fetched when needed
	}
}

func (c *Cache) start() {
	for range prefetchWorkers {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for {
				select {
				case <-c.done:
					return
				case j := <-c.queue:
					c.get(context.Background(), j.ref, j.root) // errors are logged by get, and returned again when needed
				}
			}
		}()
	}
}

// Reader serves the tree of one snapshot from its parts: a tree.Source.
type Reader struct {
	c    *Cache
	root Ref
}

// Reader is the tree whose root part is root.
func (c *Cache) Reader(root Ref) *Reader { return &Reader{c: c, root: root} }

// Root is the root part's ref.
func (r *Reader) Root() Ref { return r.root }

// Load fetches the root part (so that a volume can tell at open whether
// the parts serve at all).
func (r *Reader) Load(ctx context.Context) error {
	_, err := r.c.get(ctx, r.root, "/")
	return err
}

// loc is a directory as found in a part: its path relative to the part's
// root.
type loc struct {
	part *Part
	key  string
	rel  string
}

func (l loc) path(name string) string { return path.Join(l.part.Root, l.rel, name) }

// below is the location of directory entry e of l.
func (r *Reader) below(ctx context.Context, l loc, e *raw) (loc, error) {
	p := l.path(e.name)
	if !e.child {
		return loc{part: l.part, key: l.key, rel: path.Join(l.rel, e.name)}, nil
	}
	part, err := r.c.get(ctx, e.ref, p)
	if err != nil {
		return loc{}, fmt.Errorf("metadata of %s: %w", p, err)
	}
	return loc{part: part, key: e.ref.key()}, nil
}

// resolve finds entry p ("" entry for "/") and the location of its parent.
func (r *Reader) resolve(ctx context.Context, p string) (loc, raw, bool, error) {
	part, err := r.c.get(ctx, r.root, "/")
	if err != nil {
		return loc{}, raw{}, false, fmt.Errorf("metadata of /: %w", err)
	}
	l := loc{part: part, key: r.root.key()}
	if p == "/" {
		return l, raw{}, true, nil
	}
	comps := strings.Split(p[1:], "/")
	for i, name := range comps {
		e, ok := l.part.find(l.rel, name)
		if !ok {
			return l, raw{}, false, nil
		}
		if i == len(comps)-1 {
			return l, e, true, nil
		}
		if e.kind() != tree.KindDir {
			return l, raw{}, false, nil
		}
		if l, err = r.below(ctx, l, &e); err != nil {
			return l, raw{}, false, err
		}
	}
	panic("unreachable")
}

// Lookup implements tree.Source.
func (r *Reader) Lookup(p string) (*tree.Node, error) {
	l, e, ok, err := r.resolve(context.Background(), p)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s: %w", p, tree.ErrNotExist)
	}
	if p == "/" {
		return l.part.rootNode()
	}
	n, err := e.decode()
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", p, err)
	}
	return n, nil
}

// dirLoc is the location of directory p's own entries (ok false if p is
// not a directory of the tree).
func (r *Reader) dirLoc(ctx context.Context, p string) (loc, bool, error) {
	l, e, ok, err := r.resolve(ctx, p)
	if err != nil || !ok {
		return loc{}, false, err
	}
	if p == "/" {
		return l, true, nil
	}
	if e.kind() != tree.KindDir {
		return loc{}, false, nil
	}
	l, err = r.below(ctx, l, &e)
	return l, err == nil, err
}

// ListEach implements tree.Source. Listing a directory queues its split
// off subdirectories' parts for prefetching: a walk (find, ls -R) lists
// every directory it enters, and would otherwise wait for each part in
// turn.
func (r *Reader) ListEach(dir string, fn func(name string, n *tree.Node, err error) bool) error {
	l, ok, err := r.dirLoc(context.Background(), dir)
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	if !ok {
		return nil // as the log lists a path that is no directory: nothing
	}
	l.part.each(l.rel, func(e raw) bool {
		if e.child {
			r.c.prefetch(e.ref, l.path(e.name))
		}
		return true
	})
	l.part.each(l.rel, func(e raw) bool {
		n, err := e.decode()
		if err != nil {
			return fn(e.name, nil, fmt.Errorf("metadata of %s: %w", l.path(e.name), err))
		}
		return fn(e.name, n, nil)
	})
	return nil
}

// IsPartError reports whether err says a part could not be used (missing
// or corrupt), as opposed to a path that does not exist.
func IsPartError(err error) bool {
	return errors.Is(err, blockstore.ErrCorrupt) || errors.Is(err, blockstore.ErrNotFound)
}

// Walk calls fn with the ref and root of every part of the tree, the root
// part first, fetching each (gc marks them live, verify checks them).
func (r *Reader) Walk(ctx context.Context, fn func(root string, ref Ref) error) error {
	return r.walk(ctx, r.root, "/", fn)
}

func (r *Reader) walk(ctx context.Context, ref Ref, root string, fn func(string, Ref) error) error {
	if err := fn(root, ref); err != nil {
		return err
	}
	p, err := r.c.get(ctx, ref, root)
	if err != nil {
		return fmt.Errorf("metadata part of %s: %w", root, err)
	}
	var kids []job
	for _, d := range p.dirs {
		rel := p.rel(d)
		for _, off := range p.ents[d.first : d.first+d.count] {
			if e := p.entryAt(off); e.child {
				kids = append(kids, job{e.ref, path.Join(p.Root, rel, e.name)})
			}
		}
	}
	for _, k := range kids {
		if err := r.walk(ctx, k.ref, k.root, fn); err != nil {
			return err
		}
	}
	return nil
}
