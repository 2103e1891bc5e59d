package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"blockfs/blockstore"
	"blockfs/fs/tree"
)

// Packing small files. A tree of tens of thousands of small files costs
// one store request per file to import and one per file to read cold; over
// an object store's latency that is what a program's start-up waits for.
// Files below Options.PackBelow are therefore concatenated, in tree order
// (a directory's files before its subdirectories), into pack blocks of
// about Options.PackSize, each stored and verified like any block; a
// packed file's node is a range of its pack (tree.Node format 3), and a
// mount that reads one file of a pack has its neighbours in its pool.
//
// Dedup does not depend on a pack's neighbours: a packed node keeps its
// own content hash (Node.Sum), and an import first looks the content of
// each small file up among the small files the catalog already has
// (packed, or stored whole as one block, whose hash is then the content
// hash) and among those it packed itself. A known content is a range of
// the pack that holds it, whatever else that pack holds; only unknown
// contents are packed. The price is that a pack stays in the store as long
// as any of its files is referenced.

// pack is one pack block being filled, stored, or stored.
type pack struct {
	data []byte

	mu      sync.Mutex
	members []packMember
	done    bool
	failed  bool
	loc     blockstore.Locator
}

// packMember is a file waiting for its pack to be stored.
type packMember struct {
	dest string
	node *tree.Node
	r    tree.Range
}

// packRef is where a small file's content is: a range of a stored block
// (loc), or of a pack still being filled or stored (p).
type packRef struct {
	p       *pack
	loc     blockstore.Locator
	r       tree.Range
	catalog bool // from the catalog: ask Options.Reuse before relying on it
}

// packer fills packs from the walk's small files. Only the walking
// goroutine calls it; the workers that store packs touch pack.mu alone.
type packer struct {
	im    *Importer
	known map[blockstore.Hash]packRef
	cur   *pack
	// checked are the catalog's blocks a --repair import read back, and
	// whether they were intact.
	checked map[blockstore.Hash]bool
}

// newPacker indexes the small files the catalog already has by content,
// and every block the catalog references (Importer.catalogBlocks): an
// import of many files over a store with long round trips then asks the
// store only about blocks nothing in the catalog names.
func newPacker(im *Importer) (*packer, error) {
	p := &packer{im: im, known: map[blockstore.Hash]packRef{}, checked: map[blockstore.Hash]bool{}}
	im.catalogBlocks = map[blockstore.Hash]bool{}
	err := im.vol.Tree.Walk("/", func(_ string, n *tree.Node) error {
		for _, l := range n.Blocks {
			if !tree.IsHole(l) {
				im.catalogBlocks[l.Hash] = true
			}
		}
		switch {
		case n.Kind != tree.KindFile || len(n.Blocks) != 1 || tree.IsHole(n.Blocks[0]) || n.Size >= im.opts.PackBelow:
		case n.Packed():
			p.known[n.Sum] = packRef{loc: n.Blocks[0], r: n.Ranges[0], catalog: true}
		default:
			p.known[n.Blocks[0].Hash] = packRef{loc: n.Blocks[0], r: tree.Range{Len: n.Size}, catalog: true}
		}
		return nil
	})
	if errors.Is(err, tree.ErrNotExist) {
		err = nil // an empty volume
	}
	if err != nil {
		return nil, fmt.Errorf("import: indexing the catalog's small files: %w", err)
	}
	return p, nil
}

// packable reports whether a walked item is a small file to pack.
func (im *Importer) packable(it item) bool {
	return im.opts.PackBelow > 0 && it.info.Mode().IsRegular() && it.info.Size() > 0 && it.info.Size() < im.opts.PackBelow
}

// packFile packs one small file read ahead (or reuses a known copy of its
// content). Its node is committed when its pack is stored.
func (im *Importer) packFile(ctx context.Context, r *smallRead, jobs chan<- blockJob, c *committer) error {
	if r.err != nil {
		return r.err
	}
	data, n := r.data, r.node
	im.files.Add(1)
	im.bytes.Add(int64(len(data)))
	if allZero(data) {
		im.blocks.Add(1)
		im.holeBytes.Add(int64(len(data)))
		n.SetBlocks([]blockstore.Locator{{Size: int64(len(data))}})
		im.commit(c, r.it.dest, n)
		return nil
	}
	ok, err := im.packer.reuse(ctx, r.it.dest, n, c)
	if ok || err != nil {
		return err
	}
	return im.packer.add(ctx, r.it.dest, n, data, jobs)
}

// readSmall reads a small file whole; a file that changed while read is
// ErrChanged, read again by the second pass.
func readSmall(it item) ([]byte, os.FileInfo, error) {
	f, err := os.Open(it.src)
	if err != nil {
		return nil, nil, fileError{unwrapPath(err)}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fileError{unwrapPath(err)}
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%w: no longer a regular file", ErrChanged)
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("%w: shrank while read", ErrChanged)
		}
		return nil, nil, fileError{unwrapPath(err)}
	}
	if !unchanged(it.src, fi) {
		return nil, nil, ErrChanged
	}
	return data, fi, nil
}

// commit writes a finished file's node.
func (im *Importer) commit(c *committer, dest string, n *tree.Node) {
	im.committed.Add(1)
	im.committedBytes.Add(n.Size)
	c.add(tree.Entry(dest, n))
}

// reuse commits n as a range of a known copy of its content, if there is
// one that may be relied on.
func (p *packer) reuse(ctx context.Context, dest string, n *tree.Node, c *committer) (bool, error) {
	ref, ok := p.known[n.Sum]
	if !ok {
		return false, nil
	}
	if ref.catalog {
		fine, err := p.reliable(ctx, dest, ref.loc)
		if err != nil {
			return false, err
		}
		if !fine { // pack the content afresh
			delete(p.known, n.Sum)
			return false, nil
		}
		ref.catalog = false
		p.known[n.Sum] = ref
	}
	if ref.p != nil {
		queued, loc, failed := ref.p.wait(packMember{dest, n, ref.r})
		if failed {
			return false, errors.New("import: a pack failed to store") // the import is ending with its error
		}
		p.im.packedFiles.Add(1)
		if queued {
			return true, nil
		}
		ref.loc = loc
	} else {
		p.im.packedFiles.Add(1)
	}
	n.SetRanges([]blockstore.Locator{ref.loc}, []tree.Range{ref.r})
	p.im.commit(c, dest, n)
	return true, nil
}

// reliable reports whether a block the catalog names may hold a small
// file's content: not if a sweep may have taken it (Options.Reuse), nor,
// under --repair, if it is missing or corrupt in the store. A pack cannot
// be rewritten from one of its files, so under --repair the files of a bad
// pack are packed afresh: the same files in the same order make the same
// pack, which then overwrites the bad one; otherwise their nodes point at
// a new pack, and files of other trees in the bad pack stay unreadable
// until they are imported too.
func (p *packer) reliable(ctx context.Context, dest string, loc blockstore.Locator) (bool, error) {
	if p.im.opts.Reuse != nil {
		fine, err := p.im.opts.Reuse(ctx, loc.Hash)
		if err != nil || !fine {
			return false, wrapErr(err)
		}
	}
	if !p.im.opts.Repair {
		return true, nil
	}
	intact, seen := p.checked[loc.Hash]
	if !seen {
		var err error
		if intact, err = p.im.intact(ctx, loc); err != nil {
			return false, err
		}
		p.checked[loc.Hash] = intact
		if !intact { // counted as repaired if the new pack has its name
			p.im.opts.Warn(fmt.Errorf("block %s holding %s was missing or corrupt in the store: its files in this import are packed afresh", loc, dest))
		}
	}
	return intact, nil
}

// wrapErr wraps a Reuse error as the import's.
func wrapErr(err error) error {
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	return nil
}

// wait adds m to the files committed when the pack is stored (queued),
// unless it is stored already (then loc is where) or failed to store.
func (pk *pack) wait(m packMember) (queued bool, loc blockstore.Locator, failed bool) {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	switch {
	case pk.failed:
		return false, loc, true
	case pk.done:
		return false, pk.loc, false
	}
	pk.members = append(pk.members, m)
	return true, loc, false
}

// add appends a new content to the pack being filled, and hands the pack
// to the workers once it is full.
func (p *packer) add(ctx context.Context, dest string, n *tree.Node, data []byte, jobs chan<- blockJob) error {
	if p.cur == nil {
		p.cur = &pack{data: make([]byte, 0, p.im.opts.PackSize+p.im.opts.PackBelow)}
	}
	r := tree.Range{Off: int64(len(p.cur.data)), Len: int64(len(data))}
	p.cur.data = append(p.cur.data, data...)
	p.cur.members = append(p.cur.members, packMember{dest, n, r})
	p.known[n.Sum] = packRef{p: p.cur, r: r}
	p.im.packedFiles.Add(1)
	if int64(len(p.cur.data)) >= p.im.opts.PackSize {
		return p.flush(ctx, jobs)
	}
	return nil
}

// flush hands the pack being filled, if any, to the workers.
func (p *packer) flush(ctx context.Context, jobs chan<- blockJob) error {
	if p.cur == nil {
		return nil
	}
	pk := p.cur
	p.cur = nil
	select {
	case jobs <- blockJob{pack: pk, data: pk.data}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// finish records the stored pack and commits its files; after a failure
// (which ends the import) they are not committed.
func (pk *pack) finish(im *Importer, loc blockstore.Locator, err error, c *committer) {
	pk.mu.Lock()
	pk.done, pk.failed, pk.loc = true, err != nil, loc
	members := pk.members
	pk.members, pk.data = nil, nil
	pk.mu.Unlock()
	if err != nil {
		return
	}
	im.packs.Add(1)
	for _, m := range members {
		m.node.SetRanges([]blockstore.Locator{loc}, []tree.Range{m.r})
		im.commit(c, m.dest, m.node)
	}
}

// packOrder sorts the walk so that each directory's files come before its
// subdirectories (parents still before children): the files a program
// opens from one directory then share packs, instead of being split by
// everything under a subdirectory that sorts between them.
func packOrder(items []item, root string) {
	key := func(it item) []string {
		rel := strings.TrimPrefix(it.dest, root)
		parts := strings.Split(strings.Trim(rel, "/"), "/")
		if rel == "" || rel == "/" {
			return nil
		}
		for i := range parts {
			// "0" sorts a directory's own files before "1", anything deeper.
			if i == len(parts)-1 && !it.info.IsDir() {
				parts[i] = "0" + parts[i]
			} else {
				parts[i] = "1" + parts[i]
			}
		}
		return parts
	}
	keys := make(map[string][]string, len(items))
	for _, it := range items {
		keys[it.dest] = key(it)
	}
	sort.SliceStable(items, func(a, b int) bool {
		ka, kb := keys[items[a].dest], keys[items[b].dest]
		for i := 0; i < len(ka) && i < len(kb); i++ {
			if ka[i] != kb[i] {
				return ka[i] < kb[i]
			}
		}
		return len(ka) < len(kb)
	})
}
