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

// Source is where a Tree reads its nodes from: a metadata log holding
// every object (LogSource), or published parts fetched on demand
// (fs/parts). Paths are clean (CleanPath). Lookup of a missing path
// returns an error wrapping ErrNotExist; the root always exists.
type Source interface {
	Lookup(p string) (*Node, error)
	ListEach(dir string, fn func(name string, n *Node, err error) bool) error
}

// Tree is the read side of the metadata: nodes by path and directory
// listings, read from a Source.
//
// The source can be replaced (SetLog, SetSource) while readers run: a
// volume whose store was rolled back rebuilds its metadata in a fresh log,
// since a log cannot forget objects, and a lazy volume moves to the parts
// of a new snapshot. Each call reads one source; nodes already returned
// stay valid (they hold their block lists).
type Tree struct {
	src atomic.Pointer[sourceBox]
}

// sourceBox holds a Source for the atomic pointer (an interface value
// cannot be stored in one directly).
type sourceBox struct{ s Source }

// NewTree reads the tree held in log.
func NewTree(log *objects.Log) *Tree {
	return NewTreeFrom(LogSource{Log: log})
}

// NewTreeFrom reads the tree from src.
func NewTreeFrom(src Source) *Tree {
	t := &Tree{}
	t.SetSource(src)
	return t
}

// SetLog makes the tree read log from now on.
func (t *Tree) SetLog(log *objects.Log) { t.SetSource(LogSource{Log: log}) }

// SetSource makes the tree read src from now on.
func (t *Tree) SetSource(src Source) { t.src.Store(&sourceBox{src}) }

// Source is what the tree reads now.
func (t *Tree) Source() Source { return t.src.Load().s }

// Lookup returns the node at path p. The root always exists, even in an
// empty store, so that a fresh store mounts as an empty directory.
func (t *Tree) Lookup(p string) (*Node, error) {
	return t.Source().Lookup(CleanPath(p))
}

// List calls fn with the name and node of every entry of directory dir, in
// name order, until fn returns false.
func (t *Tree) List(dir string, fn func(name string, n *Node) bool) error {
	var derr error
	err := t.ListEach(dir, func(name string, n *Node, err error) bool {
		if err != nil {
			derr = err
			return false
		}
		return fn(name, n)
	})
	if err != nil {
		return err
	}
	return derr
}

// ListEach is List for a reader that must get past bad entries: it calls fn
// with each entry's name and node, or with the error decoding it, until fn
// returns false. The error returned is the listing's own.
func (t *Tree) ListEach(dir string, fn func(name string, n *Node, err error) bool) error {
	return t.Source().ListEach(CleanPath(dir), fn)
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

// LogSource reads the tree from a metadata log holding every object: a
// node is the object under its path (key 0), a listing a prefix scan of
// key 1 ("<dir>\x00<name>").
type LogSource struct{ Log *objects.Log }

// Lookup implements Source.
func (s LogSource) Lookup(p string) (*Node, error) {
	obj, err := s.Log.ReadObject(pathKey(p))
	if errors.Is(err, objects.ErrNotFound) {
		if p == "/" {
			return RootNode(), nil
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

// RootNode is the root of a tree that holds no node for "/".
func RootNode() *Node { return &Node{Kind: KindDir, Mode: 0o755} }

// ListEach implements Source.
func (s LogSource) ListEach(dir string, fn func(name string, n *Node, err error) bool) error {
	err := s.ListEncoded(dir, func(name string, enc []byte, version uint64) bool {
		n, err := DecodeNode(enc)
		if err != nil {
			return fn(name, nil, fmt.Errorf("metadata of %s: %w", path.Join(dir, name), err))
		}
		n.Version = version
		return fn(name, n, nil)
	})
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	return nil
}

// ListEncoded calls fn with the name, encoded node and object version of
// every entry of dir, in name order, until fn returns false: what a part
// builder copies byte for byte (re-encoding would turn a format-1 node
// into format 2 and change what it means).
func (s LogSource) ListEncoded(dir string, fn func(name string, enc []byte, version uint64) bool) error {
	return s.Log.Scan(1, dirPrefix(dir), func(o objects.Object) bool {
		return fn(childName(o.Key(1)), o.Value(), o.Version())
	})
}

// LookupEncoded returns the encoded node at p and its version, or ok false
// if the log holds none.
func (s LogSource) LookupEncoded(p string) (enc []byte, version uint64, ok bool, err error) {
	obj, err := s.Log.ReadObject(pathKey(p))
	if errors.Is(err, objects.ErrNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	return obj.Value(), obj.Version(), true, nil
}
