package importer

import (
	"errors"
	"io/fs"
	"os"

	"blockfs/fs/tree"
)

// Plan is what an import would change, found without storing or
// publishing anything (import --dry-run): a mistaken DEST or --delete is
// seen before it costs anything.
type Plan struct {
	Added   []string `json:"added"`   // paths DEST does not have
	Changed []string `json:"changed"` // paths whose kind, size, mode, mtime or target differ
	Deleted []string `json:"deleted"` // with Options.Delete: paths under DEST that SRC lacks, children first
}

// Plan walks src as Import would and compares it with the tree under
// dest. Files whose metadata matches are not listed (Import rewrites their
// nodes with the same blocks, which changes nothing a reader sees).
func (im *Importer) Plan(src, dest string) (Plan, error) {
	dest = tree.CleanPath(dest)
	items, err := im.walk(src, dest)
	if err != nil {
		return Plan{}, err
	}
	p := Plan{Added: []string{}, Changed: []string{}, Deleted: []string{}}
	for _, it := range items {
		n, err := im.vol.Tree.Lookup(it.dest)
		if errors.Is(err, tree.ErrNotExist) {
			p.Added = append(p.Added, it.dest)
			continue
		}
		if err != nil {
			return p, err
		}
		if differs(it, n) {
			p.Changed = append(p.Changed, it.dest)
		}
	}
	if im.opts.Delete {
		gone, err := im.missing(dest, items)
		if err != nil {
			return p, err
		}
		for i := len(gone) - 1; i >= 0; i-- {
			p.Deleted = append(p.Deleted, gone[i])
		}
	}
	return p, nil
}

// differs reports whether importing it would give a node other than n.
func differs(it item, n *tree.Node) bool {
	m := it.info.Mode()
	switch {
	case m.IsDir():
		return n.Kind != tree.KindDir || n.Mode != modeBits(m)
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(it.src)
		return err != nil || n.Kind != tree.KindSymlink || n.Target != target
	}
	return n.Kind != tree.KindFile || n.Size != it.info.Size() || n.Mode != modeBits(m) || n.MtimeNs != it.info.ModTime().UnixNano()
}
