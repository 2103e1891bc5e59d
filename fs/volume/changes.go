package volume

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log"
	"os"
	"strings"

	"blockfs/fs/tree"
	"blockfs/objects"
)

// Every snapshot records what it changed in the tree, in files and bytes,
// for the operator reading blockfs log. A publish knows it without reading
// any tree: Write notes, before each write or tombstone, what the path held
// (its first write since the last publish: the state the catalog had), and
// Publish compares that with what the path holds now. A rollback or repair
// diffs the two trees (restoreChanges); a compaction changes nothing.

// Changes counts what a snapshot changed, against the one before it.
// A changed file (same path, another size, content, mode, owner, time or
// xattrs) counts its old size as removed bytes and its new size as added
// ones. Directories are counted when they appear or go, not when only
// their attributes change. Bytes are logical file sizes, not stored blocks
// (dedup and packing make those differ).
type Changes struct {
	FilesAdded   int64 `json:"files_added"`
	FilesRemoved int64 `json:"files_removed"`
	FilesChanged int64 `json:"files_changed"`
	DirsAdded    int64 `json:"dirs_added"`
	DirsRemoved  int64 `json:"dirs_removed"`
	LinksAdded   int64 `json:"symlinks_added"`
	LinksRemoved int64 `json:"symlinks_removed"`
	LinksChanged int64 `json:"symlinks_changed"`
	BytesAdded   int64 `json:"bytes_added"`
	BytesRemoved int64 `json:"bytes_removed"`
}

// nodeSum is what Write keeps of a path's state before this publish: enough
// to count the change, without holding the node (an import of a million
// files between two publishes keeps a million of these).
type nodeSum struct {
	present bool
	kind    tree.Kind
	size    int64
	sum     uint64 // maphash of the node's encoding
}

// pendingChanges is what Write noted since the last publish.
type pendingChanges struct {
	seed   maphash.Seed
	before map[string]nodeSum
}

func (v *Volume) summarize(n *tree.Node) nodeSum {
	if n == nil {
		return nodeSum{}
	}
	return nodeSum{present: true, kind: n.Kind, size: n.Size, sum: maphash.Bytes(v.pend.seed, n.AppendBinary(nil))}
}

// Write writes entries (tree.Entry and tree.DeleteEntry records) to the
// volume's log in one atomic batch, noting what each path held before so
// that the next Publish records what it changed. Writes made to Meta
// directly are published too, but their snapshot's counts are unknown.
func (v *Volume) Write(entries []objects.Entry) error {
	v.wmu.Lock()
	defer v.wmu.Unlock()
	if v.pend.before == nil {
		v.pend.before = map[string]nodeSum{}
	}
	for _, e := range entries {
		p := string(e.Keys[0])
		if _, ok := v.pend.before[p]; ok {
			continue // the state before this publish was noted already
		}
		n, err := lookupOrNil(v.Tree, p)
		if err != nil {
			return err
		}
		v.pend.before[p] = v.summarize(n)
	}
	return v.Meta.MultiWrite(entries)
}

func lookupOrNil(t *tree.Tree, p string) (*tree.Node, error) {
	n, err := t.Lookup(p)
	if errors.Is(err, tree.ErrNotExist) {
		return nil, nil
	}
	return n, err
}

// count adds the change of one path from before to now.
func (c *Changes) count(before, now nodeSum) {
	if before.present && now.present && before.kind == now.kind {
		if before.sum == now.sum {
			return
		}
		switch now.kind {
		case tree.KindFile:
			c.FilesChanged++
			c.BytesRemoved += before.size
			c.BytesAdded += now.size
		case tree.KindSymlink:
			c.LinksChanged++
		}
		return
	}
	if before.present {
		c.add(before, -1)
	}
	if now.present {
		c.add(now, 1)
	}
}

// add counts s appearing (sign 1) or going (-1).
func (c *Changes) add(s nodeSum, sign int) {
	files, dirs, links, bytes := &c.FilesAdded, &c.DirsAdded, &c.LinksAdded, &c.BytesAdded
	if sign < 0 {
		files, dirs, links, bytes = &c.FilesRemoved, &c.DirsRemoved, &c.LinksRemoved, &c.BytesRemoved
	}
	switch s.kind {
	case tree.KindFile:
		*files++
		*bytes += s.size
	case tree.KindDir:
		*dirs++
	case tree.KindSymlink:
		*links++
	}
}

// takePending counts the changes Write noted, against what the tree holds
// now, and starts a new set; restorePending puts them back when the publish
// fails. Called with wmu held.
func (v *Volume) takePending() (map[string]nodeSum, *Changes, error) {
	before := v.pend.before
	v.pend.before = nil
	c := &Changes{}
	for p, b := range before {
		if p == "/" {
			continue // the root always exists
		}
		n, err := lookupOrNil(v.Tree, p)
		if err != nil {
			v.pend.before = before
			return nil, nil, err
		}
		c.count(b, v.summarize(n))
	}
	return before, c, nil
}

func (v *Volume) restorePending(before map[string]nodeSum) {
	v.wmu.Lock()
	defer v.wmu.Unlock()
	// What was noted first is the older state: it wins.
	for p, s := range v.pend.before {
		if _, ok := before[p]; !ok {
			before[p] = s
		}
	}
	v.pend.before = before
}

// covered reports whether every path segment data writes or deletes was
// noted by Write (so that the counts are whole).
func covered(data []byte, before map[string]nodeSum) (bool, error) {
	ok := true
	err := objects.SegmentKeys(data, func(k string) {
		if !strings.ContainsRune(k, 0) { // a directory-listing key: its path key is there too
			if _, noted := before[k]; !noted {
				ok = false
			}
		}
	})
	return ok, err
}

// restoreChanges counts what restoring the tree of manifest to changes in
// that of from: both are ingested into temporary logs, and only the paths
// in segments that one has and the other lacks can differ (a path written
// only in segments both share has the same winning record in both).
func (c *catalog) restoreChanges(ctx context.Context, from, to Manifest) (*Changes, error) {
	a, err := c.tempTree(ctx, from)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	b, err := c.tempTree(ctx, to)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	paths := map[string]bool{}
	for _, side := range []*Volume{a, b} {
		other := a
		if side == a {
			other = b
		}
		for id, copyPath := range side.local {
			if other.ingested[id] {
				continue // in both trees
			}
			data, err := os.ReadFile(copyPath)
			if err != nil {
				return nil, fmt.Errorf("reading metadata segment copy: %w", err)
			}
			if err := objects.SegmentKeys(data, func(k string) {
				if !strings.ContainsRune(k, 0) && k != "/" {
					paths[k] = true
				}
			}); err != nil {
				return nil, fmt.Errorf("metadata segment %s: %w", id, err)
			}
		}
	}
	ch := &Changes{}
	for p := range paths {
		na, err := lookupOrNil(a.Tree, p)
		if err != nil {
			return nil, err
		}
		nb, err := lookupOrNil(b.Tree, p)
		if err != nil {
			return nil, err
		}
		ch.count(a.summarize(na), a.summarize(nb)) // one seed for both sides
	}
	return ch, nil
}

// tempTree ingests the segments of m into a fresh private log.
func (c *catalog) tempTree(ctx context.Context, m Manifest) (*Volume, error) {
	dir, err := makeMetaDir("", log.Default())
	if err != nil {
		return nil, err
	}
	lg, err := objects.Open(dir, objects.Options{Sync: objects.SyncNone})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("metadata log: %w", err)
	}
	v := &Volume{cat: *c, Meta: lg, Tree: tree.NewTree(lg), metaDir: dir, ownsDir: true, borrowed: true,
		ingested: map[string]bool{}, local: map[string]string{}, skipped: map[string]bool{}, published: map[uint32]bool{}}
	v.pend.seed = maphash.MakeSeed()
	if _, err := v.ingestLocked(ctx, m); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}
