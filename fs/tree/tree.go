package tree

import (
	"errors"
	"fmt"
	"path"
	"sync/atomic"

	"blockfs/objects"
)

// ErrNotExist is returned for paths the tree does not hold.
var ErrNotExist = errors.New("no such file or directory")

// Tree is the read side of the metadata: nodes by path and directory
// listings, decoded from the objects in the log.
//
// The log can be replaced (SetLog) while readers run: a volume whose store
// was rolled back rebuilds its metadata in a fresh log, since a log cannot
// forget objects, and swaps it in. Each call reads one log; nodes already
// returned stay valid (they hold their block lists).
type Tree struct {
	log atomic.Pointer[objects.Log]
}

// NewTree reads the tree held in log.
func NewTree(log *objects.Log) *Tree {
	t := &Tree{}
	t.log.Store(log)
	return t
}

// SetLog makes the tree read log from now on.
func (t *Tree) SetLog(log *objects.Log) { t.log.Store(log) }

// Lookup returns the node at path p. The root always exists, even in an
// empty store, so that a fresh store mounts as an empty directory.
func (t *Tree) Lookup(p string) (*Node, error) {
	p = CleanPath(p)
	obj, err := t.log.Load().ReadObject(pathKey(p))
	if errors.Is(err, objects.ErrNotFound) {
		if p == "/" {
			return &Node{Kind: KindDir, Mode: 0o755}, nil
		}
		return nil, fmt.Errorf("%s: %w", p, ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("reading metadata of %s: %w", p, err)
	}
	n, err := DecodeNode(obj.Value())
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", p, err)
	}
	n.Version = obj.Version()
	return n, nil
}

// List calls fn with the name and node of every entry of directory dir, in
// name order, until fn returns false.
func (t *Tree) List(dir string, fn func(name string, n *Node) bool) error {
	dir = CleanPath(dir)
	var derr error
	err := t.log.Load().Scan(1, dirPrefix(dir), func(o objects.Object) bool {
		n, err := DecodeNode(o.Value())
		if err != nil {
			derr = fmt.Errorf("metadata of %s: %w", path.Join(dir, childName(o.Key(1))), err)
			return false
		}
		n.Version = o.Version()
		return fn(childName(o.Key(1)), n)
	})
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	return derr
}

// ListEach is List for a reader that must get past bad entries: it calls fn
// with each entry's name and node, or with the error decoding it, until fn
// returns false. The error returned is the listing's own.
func (t *Tree) ListEach(dir string, fn func(name string, n *Node, err error) bool) error {
	dir = CleanPath(dir)
	err := t.log.Load().Scan(1, dirPrefix(dir), func(o objects.Object) bool {
		name := childName(o.Key(1))
		n, err := DecodeNode(o.Value())
		if err != nil {
			return fn(name, nil, fmt.Errorf("metadata of %s: %w", path.Join(dir, name), err))
		}
		n.Version = o.Version()
		return fn(name, n, nil)
	})
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	return nil
}

// Walk visits every node below dir (dir included) depth-first in name order.
func (t *Tree) Walk(dir string, fn func(p string, n *Node) error) error {
	dir = CleanPath(dir)
	n, err := t.Lookup(dir)
	if err != nil {
		return err
	}
	if err := fn(dir, n); err != nil {
		return err
	}
	if n.Kind != KindDir {
		return nil
	}
	type child struct {
		name string
		node *Node
	}
	var children []child
	if err := t.List(dir, func(name string, n *Node) bool {
		children = append(children, child{name, n})
		return true
	}); err != nil {
		return err
	}
	for _, c := range children {
		p := path.Join(dir, c.name)
		if c.node.Kind == KindDir {
			if err := t.Walk(p, fn); err != nil {
				return err
			}
		} else if err := fn(p, c.node); err != nil {
			return err
		}
	}
	return nil
}
