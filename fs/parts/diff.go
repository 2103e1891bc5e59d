package parts

import (
	"bytes"
	"context"

	"blockfs/fs/tree"
)

// Diff calls changed with every path whose node differs between the trees
// of old and new (added, removed, or changed, and every path below an
// added or removed directory), descending only where parts differ: a
// subtree whose part is the same block in both is skipped unread. It is
// what a mount invalidates after a refresh.
func Diff(ctx context.Context, old, new *Reader, changed func(p string)) error {
	op, err := old.c.get(ctx, old.root, "/")
	if err != nil {
		return err
	}
	np, err := new.c.get(ctx, new.root, "/")
	if err != nil {
		return err
	}
	on, ov := op.rootRaw()
	nn, nv := np.rootRaw()
	if ov != nv || !bytes.Equal(on, nn) {
		changed("/")
	}
	d := differ{old: old, new: new, changed: changed}
	if err := d.dir(ctx, loc{part: op, key: old.root.key()}, loc{part: np, key: new.root.key()}); err != nil {
		return err
	}
	return d.failed
}

type differ struct {
	old, new *Reader
	changed  func(string)
	// failed is the first part that could not be read: the directory it
	// roots is reported as changed, and the diff goes on with the rest.
	failed error
}

// fail records err for directory p.
func (d *differ) fail(p string, err error) {
	d.changed(p)
	if d.failed == nil {
		d.failed = err
	}
}

func entries(l loc) []raw {
	var out []raw
	l.part.each(l.rel, func(e raw) bool { out = append(out, e); return true })
	return out
}

// dir diffs one directory found at o in the old tree and n in the new.
func (d *differ) dir(ctx context.Context, o, n loc) error {
	if o.key == n.key && o.rel == n.rel {
		return nil // the same part, the same directory: nothing differs below
	}
	oe, ne := entries(o), entries(n)
	for i, j := 0, 0; i < len(oe) || j < len(ne); {
		switch {
		case j == len(ne) || (i < len(oe) && oe[i].name < ne[j].name):
			if err := d.all(ctx, d.old, o, &oe[i]); err != nil {
				return err
			}
			i++
		case i == len(oe) || ne[j].name < oe[i].name:
			if err := d.all(ctx, d.new, n, &ne[j]); err != nil {
				return err
			}
			j++
		default:
			if err := d.same(ctx, o, n, &oe[i], &ne[j]); err != nil {
				return err
			}
			i, j = i+1, j+1
		}
	}
	return nil
}

// same diffs entry a of o against entry b of n, of the same name.
func (d *differ) same(ctx context.Context, o, n loc, a, b *raw) error {
	p := o.path(a.name)
	if a.version != b.version || !bytes.Equal(a.node, b.node) {
		d.changed(p)
	}
	ad, bd := a.kind() == tree.KindDir, b.kind() == tree.KindDir
	switch {
	case ad && bd:
		if a.child && b.child && a.ref.key() == b.ref.key() {
			return nil
		}
		ol, err := d.old.below(ctx, o, a)
		if err != nil {
			d.fail(p, err)
			return nil
		}
		nl, err := d.new.below(ctx, n, b)
		if err != nil {
			d.fail(p, err)
			return nil
		}
		return d.dir(ctx, ol, nl)
	case ad:
		return d.below(ctx, d.old, o, a)
	case bd:
		return d.below(ctx, d.new, n, b)
	}
	return nil
}

// all reports entry e of l and, for a directory, everything below it.
func (d *differ) all(ctx context.Context, r *Reader, l loc, e *raw) error {
	d.changed(l.path(e.name))
	if e.kind() != tree.KindDir {
		return nil
	}
	return d.below(ctx, r, l, e)
}

// below reports every path below directory entry e of l.
func (d *differ) below(ctx context.Context, r *Reader, l loc, e *raw) error {
	sub, err := r.below(ctx, l, e)
	if err != nil {
		d.fail(l.path(e.name), err)
		return nil
	}
	for _, c := range entries(sub) {
		if err := d.all(ctx, r, sub, &c); err != nil {
			return err
		}
	}
	return nil
}
