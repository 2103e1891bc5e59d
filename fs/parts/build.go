package parts

import (
	"context"
	"fmt"
	"path"
	"strings"

	"blockfs/blockstore"
	"blockfs/fs/tree"
)

// DefaultMaxEntries bounds the entries of a part unless one directory alone
// has more. At 100-200 encoded bytes an entry, 16384 entries are 2-3 MiB:
// one block (at most 4 MiB) and so one GET per part on a network store,
// small enough that a lookup in a cold subtree waits for little more than
// a round trip, and large enough that a tree of 10 million files is some
// 600 parts, not millions of objects.
const DefaultMaxEntries = 16384

// Lister is what a build reads: a metadata log's entries, byte for byte
// (tree.LogSource).
type Lister interface {
	ListEncoded(dir string, fn func(name string, enc []byte, version uint64) bool) error
	LookupEncoded(p string) (enc []byte, version uint64, ok bool, err error)
}

// Put stores an encoded part and returns its blocks.
type Put func(ctx context.Context, data []byte) ([]blockstore.Locator, error)

// BuildOptions tune a build.
type BuildOptions struct {
	// MaxEntries bounds a part's entries (see DefaultMaxEntries); 0 means
	// the default. Tests use tiny parts.
	MaxEntries int
	// Reuse holds the split-off parts of an earlier build of the same
	// tree, by root (BuildStats.Stored), and Dirty reports whether the
	// subtree below directory p may have changed since: a directory not
	// dirty whose part Reuse holds is not read again but points at that
	// part. Nil Reuse rebuilds everything.
	Reuse map[string]Ref
	Dirty func(p string) bool
}

// BuildStats say what a build wrote.
type BuildStats struct {
	Parts   int   // parts encoded
	Bytes   int64 // their encoded size
	Entries int64
	Reused  int            // parts of Reuse pointed at again
	Stored  map[string]Ref // every split-off part of the tree, by root: the next build's Reuse
}

// Build encodes the tree of src as parts, bottom-up, storing each through
// put, and returns the root part's ref. A directory whose subtree holds
// more entries than a part may has its biggest child subtrees split off
// into parts of their own until it fits (or only its own entries are
// left). Unchanged subtrees encode to the same bytes, so to the same
// blocks: put may skip what it stored before.
func Build(ctx context.Context, src Lister, opts BuildOptions, put Put) (Ref, BuildStats, error) {
	b := &builder{src: src, put: put, max: opts.MaxEntries, opts: opts}
	b.st.Stored = map[string]Ref{}
	if b.max <= 0 {
		b.max = DefaultMaxEntries
	}
	pd, err := b.dir(ctx, "/", 0)
	if err != nil {
		return Ref{}, b.st, err
	}
	node, version, ok, err := src.LookupEncoded("/")
	if err != nil {
		return Ref{}, b.st, fmt.Errorf("metadata of /: %w", err)
	}
	if !ok {
		node = nil // served as tree.RootNode, as the log serves a tree without one
	} else {
		node = append([]byte{}, node...) // whatever it holds, as the log serves it
	}
	ref, err := b.store(ctx, "/", pd, node, version)
	return ref, b.st, err
}

type builder struct {
	src  Lister
	put  Put
	max  int
	opts BuildOptions
	st   BuildStats
}

// pending is a subtree not stored yet: its records relative to its root.
type pending struct {
	recs   []record
	n      int // entries
	totals Totals
}

// child is one entry of a directory being built.
type child struct {
	e   raw
	sub *pending // a directory's content, until stored or merged
}

// dir builds directory p: its own entries and, inline or split off, its
// subdirectories'.
func (b *builder) dir(ctx context.Context, p string, depth int) (*pending, error) {
	if depth > maxPath/2 {
		return nil, fmt.Errorf("%s: tree deeper than %d", p, maxPath/2)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var kids []child
	err := b.src.ListEncoded(p, func(name string, enc []byte, version uint64) bool {
		// Kept whatever it holds: a node that does not decode fails its
		// listing and lookup as it does read from the log.
		kids = append(kids, child{e: raw{name: name, version: version, node: append([]byte(nil), enc...)}})
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", p, err)
	}
	pd := &pending{n: len(kids)}
	for i := range kids {
		k := &kids[i]
		size := int64(0)
		if n, err := tree.DecodeNode(k.e.node); err == nil {
			size = n.Size
		}
		pd.totals.count(k.e.kind(), size)
		if k.e.kind() != tree.KindDir {
			continue
		}
		cp := path.Join(p, k.e.name)
		if ref, ok := b.opts.Reuse[cp]; ok && !b.opts.Dirty(cp) {
			k.e.child, k.e.ref = true, ref
			pd.totals.add(ref.Totals)
			b.st.Stored[cp] = ref
			b.st.Reused++
			for r, ref := range b.opts.Reuse { // the parts inside it stay valid too
				if strings.HasPrefix(r, cp+"/") {
					b.st.Stored[r] = ref
				}
			}
			continue
		}
		if k.sub, err = b.dir(ctx, cp, depth+1); err != nil {
			return nil, err
		}
		pd.n += k.sub.n
		pd.totals.add(k.sub.totals)
	}
	if err := b.split(ctx, p, kids, pd); err != nil {
		return nil, err
	}
	b.merge(kids, pd)
	return pd, nil
}

// split stores the biggest inline subdirectories of p as parts until p's
// subtree fits in one.
func (b *builder) split(ctx context.Context, p string, kids []child, pd *pending) error {
	for pd.n > b.max {
		big := -1
		for i := range kids {
			if kids[i].sub != nil && kids[i].sub.n > 0 && (big < 0 || kids[i].sub.n > kids[big].sub.n) {
				big = i
			}
		}
		if big < 0 {
			return nil // only p's own entries left: a part cannot be smaller
		}
		k := &kids[big]
		ref, err := b.store(ctx, path.Join(p, k.e.name), k.sub, nil, 0)
		if err != nil {
			return err
		}
		pd.n -= k.sub.n
		k.e.child, k.e.ref, k.sub = true, ref, nil
		b.st.Stored[path.Join(p, k.e.name)] = ref
	}
	return nil
}

// merge makes pd's records: p's own, then each inline subdirectory's
// under its name (depth-first name order, as the entries are sorted).
func (b *builder) merge(kids []child, pd *pending) {
	if len(kids) > 0 {
		var ents []byte
		for i := range kids {
			ents = appendEntry(ents, &kids[i].e)
		}
		pd.recs = append(pd.recs, record{rel: "", ents: ents, n: len(kids)})
	}
	for i := range kids {
		if kids[i].sub == nil {
			continue
		}
		for _, r := range kids[i].sub.recs {
			rel := kids[i].e.name
			if r.rel != "" {
				rel += "/" + r.rel
			}
			pd.recs = append(pd.recs, record{rel: rel, ents: r.ents, n: r.n})
		}
		kids[i].sub = nil // merged: its bytes now belong to pd
	}
}

// store encodes pd as the part of root and puts it.
func (b *builder) store(ctx context.Context, root string, pd *pending, node []byte, version uint64) (Ref, error) {
	data := encode(root, pd.totals, node, version, pd.recs)
	if len(data) > MaxPartSize {
		return Ref{}, fmt.Errorf("metadata part of %s: %d bytes (at most %d): a directory too big for parts", root, len(data), MaxPartSize)
	}
	locs, err := b.put(ctx, data)
	if err != nil {
		return Ref{}, fmt.Errorf("storing the metadata part of %s: %w", root, err)
	}
	b.st.Parts++
	b.st.Bytes += int64(len(data))
	b.st.Entries += int64(pd.n)
	return Ref{Size: int64(len(data)), Blocks: locs, Totals: pd.totals}, nil
}
