// Package parts is the published metadata of a snapshot split into parts:
// immutable, content-addressed encodings of subtrees, after CVMFS's nested
// catalogs. A mount fetches the root part when it starts and every other
// part when a path first needs it, instead of ingesting every metadata
// segment of the store before serving (see docs/metadata.md, "Parts").
//
// A part holds the entries of its subtree, grouped by directory; a
// directory whose subtree was split off holds, instead of its descendants,
// the locators and totals of its own part, so the parts form a Merkle tree
// whose root the manifest names. This package encodes and decodes parts
// (format.go), builds them from a metadata log (build.go), serves a tree
// from them through a bounded cache (reader.go) and diffs two part trees
// (diff.go). It knows nothing of catalogs or FUSE.
package parts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"blockfs/blockstore"
	"blockfs/fs/tree"
)

// Format is the part format this package writes and reads. A change that
// a reader of this format would misread gets a new number; a reader that
// meets a manifest whose parts are of another format ignores them and
// ingests the segments (which every manifest still lists).
const Format = 1

// magic starts every encoded part.
const magic = "BFSPART\x00"

// MaxPartSize bounds an encoded part: a directory too big to fit (several
// million entries in one directory) leaves the snapshot without parts, so
// its mounts ingest segments as before.
const MaxPartSize = 256 << 20

// maxPath bounds a path in a part (PATH_MAX), maxName a name (NAME_MAX).
const (
	maxPath = 4096
	maxName = 255
)

// ErrBadPart is wrapped (with blockstore.ErrCorrupt) by every error for a
// part that does not decode: its blocks verified, so the part is what a
// writer stored, but it is damaged or crafted and is never used.
var ErrBadPart = errors.New("malformed metadata part")

// Totals count a subtree, below its root: what statfs and du need without
// reading it.
type Totals struct {
	Files    int64 `json:"files"`
	Dirs     int64 `json:"dirs"`
	Symlinks int64 `json:"symlinks"`
	Bytes    int64 `json:"bytes"` // of the files
}

func (t *Totals) add(o Totals) {
	t.Files += o.Files
	t.Dirs += o.Dirs
	t.Symlinks += o.Symlinks
	t.Bytes += o.Bytes
}

// count adds one node of kind k and size size.
func (t *Totals) count(k tree.Kind, size int64) {
	switch k {
	case tree.KindDir:
		t.Dirs++
	case tree.KindFile:
		t.Files++
		t.Bytes += size
	case tree.KindSymlink:
		t.Symlinks++
	}
}

// Ref names a stored part: its blocks (each at most 4 MiB, verified when
// read), their total size, and the totals of its subtree.
type Ref struct {
	Size   int64                `json:"size"`
	Blocks []blockstore.Locator `json:"blocks"`
	Totals Totals               `json:"totals"`
}

// key is the cache key of a part: its content address.
func (r Ref) key() string {
	var b strings.Builder
	for _, l := range r.Blocks {
		b.WriteString(l.String())
		b.WriteByte(';')
	}
	return b.String()
}

// Check bounds a ref read from the store before anything is fetched.
func (r Ref) Check() error {
	if r.Size <= 0 || r.Size > MaxPartSize || len(r.Blocks) == 0 {
		return fmt.Errorf("%w: part of %d bytes in %d blocks", ErrBadPart, r.Size, len(r.Blocks))
	}
	var total int64
	for _, l := range r.Blocks {
		if l.Size <= 0 || l.Size > blockstore.MaxBlockSize {
			return fmt.Errorf("%w: part block %s: bad size", ErrBadPart, l)
		}
		if total += l.Size; total > r.Size {
			break
		}
	}
	if total != r.Size {
		return fmt.Errorf("%w: part blocks add up to %d bytes, not %d", ErrBadPart, total, r.Size)
	}
	if r.Totals.Files < 0 || r.Totals.Dirs < 0 || r.Totals.Symlinks < 0 || r.Totals.Bytes < 0 {
		return fmt.Errorf("%w: negative totals", ErrBadPart)
	}
	return nil
}

// Encoded layout of format 1 (integers are unsigned varints):
//
//	magic (8 bytes) | format | root path length | root path (absolute, clean)
//	| totals: files | dirs | symlinks | bytes       (of the subtree, child parts included)
//	| root node flag (1 byte): 1 if the root's own node follows (only the
//	  part of "/": every other root's node is its entry in the parent part)
//	    version | node length | node
//	| directory count, then per directory, in depth-first name order:
//	    path length | path relative to the root ("" for the root itself)
//	    | entry count (at least 1), then per entry, in name order:
//	        name length | name | flags (1 byte: 1 = child part) | version
//	        | node length | node (tree.Node encoding, any node format)
//	        | if child part: totals (4) | size | block count | per block:
//	          32-byte SHA-256 | size
//
// A directory with no entries has no record. Depth-first name order
// compares paths component by component (pathLess), so a directory's
// record comes right before its subdirectories'; every record but the
// root's belongs to a directory entry of the part that is not split off.
// Nodes are not decoded: a node that does not decode (a newer format, a
// crafted record) fails the listing or lookup that decodes it, exactly as
// it does when read from the log, not the part, so one entry cannot hide a
// subtree.

// entryChild flags an entry whose directory is split off into a part.
const entryChild = 1

// Part is one decoded part: its bytes, kept encoded, and the offsets of its
// directories and entries, so that a resident entry costs its encoded size
// and four bytes; nodes are decoded per call.
type Part struct {
	data    []byte
	Root    string
	Totals  Totals
	rootOff int32 // offset of the root node's version, or -1
	dirs    []dirIndex
	ents    []uint32 // offset of each entry, directory by directory
}

type dirIndex struct {
	relOff, relLen uint32
	first, count   uint32 // into ents
}

// Size is what the part costs resident.
func (p *Part) Size() int64 {
	return int64(len(p.data)) + 4*int64(len(p.ents)) + 16*int64(len(p.dirs)) + 128
}

// pathLess orders paths depth-first by name: component by component, so
// "a" < "a/b" < "a-b" ('/' sorts below every byte of a name).
func pathLess(a, b string) bool { return pathCmp(a, b) < 0 }

func pathCmp(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return -1
		}
		if cb == '/' {
			return 1
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	return len(a) - len(b)
}

// raw is one entry as encoded.
type raw struct {
	name    string
	child   bool
	version uint64
	node    []byte
	ref     Ref // if child
}

// kind is the entry's node kind (0 for a node too short to have one).
func (r *raw) kind() tree.Kind {
	if len(r.node) < 2 {
		return 0
	}
	return tree.Kind(r.node[1])
}

// decode is the entry's node, its version set.
func (r *raw) decode() (*tree.Node, error) {
	n, err := tree.DecodeNode(r.node)
	if err != nil {
		return nil, err
	}
	n.Version = r.version
	return n, nil
}

// appendEntry encodes e.
func appendEntry(dst []byte, e *raw) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(e.name)))
	dst = append(dst, e.name...)
	flags := byte(0)
	if e.child {
		flags = entryChild
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, e.version)
	dst = binary.AppendUvarint(dst, uint64(len(e.node)))
	dst = append(dst, e.node...)
	if e.child {
		dst = appendTotals(dst, e.ref.Totals)
		dst = binary.AppendUvarint(dst, uint64(e.ref.Size))
		dst = binary.AppendUvarint(dst, uint64(len(e.ref.Blocks)))
		for _, l := range e.ref.Blocks {
			dst = append(dst, l.Hash[:]...)
			dst = binary.AppendUvarint(dst, uint64(l.Size))
		}
	}
	return dst
}

func appendTotals(dst []byte, t Totals) []byte {
	for _, v := range []int64{t.Files, t.Dirs, t.Symlinks, t.Bytes} {
		dst = binary.AppendUvarint(dst, uint64(v))
	}
	return dst
}

// record is one directory's entries, encoded, during a build.
type record struct {
	rel  string
	ents []byte
	n    int
}

// encode is the part of root with the records recs (in pathLess order).
func encode(root string, totals Totals, rootNode []byte, rootVersion uint64, recs []record) []byte {
	var b []byte
	b = append(b, magic...)
	b = binary.AppendUvarint(b, Format)
	b = binary.AppendUvarint(b, uint64(len(root)))
	b = append(b, root...)
	b = appendTotals(b, totals)
	if rootNode != nil {
		b = append(b, 1)
		b = binary.AppendUvarint(b, rootVersion)
		b = binary.AppendUvarint(b, uint64(len(rootNode)))
		b = append(b, rootNode...)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for _, r := range recs {
		b = binary.AppendUvarint(b, uint64(len(r.rel)))
		b = append(b, r.rel...)
		b = binary.AppendUvarint(b, uint64(r.n))
		b = append(b, r.ents...)
	}
	return b
}

// reader reads varints and byte strings off a part, remembering the first
// error; every length is checked against what is left.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %w: at byte %d: %s", blockstore.ErrCorrupt, ErrBadPart, r.off, fmt.Sprintf(format, a...))
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail("bad %s", what)
		return 0
	}
	r.off += n
	return v
}

// int64v is a uvarint that must fit an int64.
func (r *reader) int64v(what string) int64 {
	v := r.uvarint(what)
	if v > 1<<62 {
		r.fail("%s %d out of range", what, v)
		return 0
	}
	return int64(v)
}

func (r *reader) bytes(what string, limit uint64) []byte {
	n := r.uvarint(what + " length")
	if r.err != nil {
		return nil
	}
	if n > limit || n > uint64(len(r.b)-r.off) {
		r.fail("%s of %d bytes", what, n)
		return nil
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

func (r *reader) byte1(what string) byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail("no %s", what)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) totals() Totals {
	return Totals{Files: r.int64v("files"), Dirs: r.int64v("dirs"), Symlinks: r.int64v("symlinks"), Bytes: r.int64v("bytes")}
}

// entry reads one entry at the reader's offset.
func (r *reader) entry() raw {
	var e raw
	e.name = string(r.bytes("name", maxName))
	flags := r.byte1("flags")
	e.version = r.uvarint("version")
	e.node = r.bytes("node", uint64(len(r.b)))
	if r.err != nil {
		return e
	}
	if flags&^entryChild != 0 {
		r.fail("entry %q: unknown flags %#x", e.name, flags)
	}
	if flags&entryChild != 0 {
		e.child = true
		e.ref.Totals = r.totals()
		e.ref.Size = r.int64v("part size")
		nb := r.uvarint("block count")
		if r.err == nil && nb > uint64(len(r.b)-r.off)/33 {
			r.fail("entry %q: %d blocks", e.name, nb)
		}
		if r.err != nil {
			return e
		}
		e.ref.Blocks = make([]blockstore.Locator, nb)
		for i := range e.ref.Blocks {
			if r.off+32 > len(r.b) {
				r.fail("short block hash")
				return e
			}
			copy(e.ref.Blocks[i].Hash[:], r.b[r.off:r.off+32])
			r.off += 32
			e.ref.Blocks[i].Size = r.int64v("block size")
		}
	}
	return e
}

// Decode checks and indexes an encoded part whose root must be root. It
// never panics and allocates at most in proportion to the input, whatever
// it is: parts come from the store.
func Decode(data []byte, root string) (*Part, error) {
	if len(data) > MaxPartSize {
		return nil, fmt.Errorf("%w: %w: %d bytes", blockstore.ErrCorrupt, ErrBadPart, len(data))
	}
	if !bytes.HasPrefix(data, []byte(magic)) {
		return nil, fmt.Errorf("%w: %w: no part magic", blockstore.ErrCorrupt, ErrBadPart)
	}
	r := &reader{b: data, off: len(magic)}
	if f := r.uvarint("format"); r.err == nil && f != Format {
		r.fail("format %d (this blockfs reads format %d)", f, Format)
	}
	p := &Part{data: data, rootOff: -1}
	p.Root = string(r.bytes("root", maxPath))
	p.Totals = r.totals()
	if r.err == nil && (p.Root != root || tree.CleanPath(p.Root) != p.Root) {
		r.fail("root %q where %q was expected", p.Root, root)
	}
	if r.byte1("root flag") == 1 {
		p.rootOff = int32(r.off)
		r.uvarint("root version")
		r.bytes("root node", uint64(len(data)))
		if r.err == nil && root != "/" {
			r.fail("root node in a part of %s", root)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if err := p.index(r); err != nil {
		return nil, err
	}
	return p, nil
}

// index reads the directory records, checking their order, names, kinds,
// structure and the totals.
func (p *Part) index(r *reader) error {
	nd := r.uvarint("directory count")
	if r.err == nil && nd > uint64(len(r.b)-r.off)/2 {
		r.fail("%d directories", nd)
	}
	var sum Totals
	inline := map[string]bool{"": true} // directories of this part a record may belong to
	prev := ""
	for i := uint64(0); i < nd && r.err == nil; i++ {
		relOff := r.off
		rel := string(r.bytes("directory path", maxPath))
		ne := r.uvarint("entry count")
		if r.err != nil {
			break
		}
		switch {
		case !inline[rel]:
			r.fail("directory %q is not an unsplit directory of the part", rel)
		case i > 0 && !pathLess(prev, rel):
			r.fail("directory %q after %q", rel, prev)
		case ne == 0 || ne > uint64(len(r.b)-r.off)/4:
			r.fail("directory %q with %d entries", rel, ne)
		case len(p.Root)+1+len(rel) > maxPath:
			r.fail("directory %q too deep", rel)
		}
		if r.err != nil {
			break
		}
		delete(inline, rel)
		prev = rel
		d := dirIndex{relOff: uint32(relOff), relLen: uint32(len(rel)), first: uint32(len(p.ents)), count: uint32(ne)}
		pname := ""
		for j := uint64(0); j < ne && r.err == nil; j++ {
			off := r.off
			e := r.entry()
			if r.err != nil {
				break
			}
			if err := checkEntry(&e, j > 0, pname); err != "" {
				r.fail("directory %q: %s", rel, err)
				break
			}
			pname = e.name
			sum.count(e.kind(), 0)
			if e.child {
				if err := e.ref.Check(); err != nil {
					r.fail("entry %q: %v", e.name, err)
					break
				}
				sum.add(e.ref.Totals)
			} else if e.kind() == tree.KindDir {
				inline[path.Join(rel, e.name)] = true
			}
			p.ents = append(p.ents, uint32(off))
		}
		p.dirs = append(p.dirs, d)
	}
	if r.err == nil && r.off != len(r.b) {
		r.fail("%d trailing bytes", len(r.b)-r.off)
	}
	if r.err == nil && (sum.Files != p.Totals.Files || sum.Dirs != p.Totals.Dirs || sum.Symlinks != p.Totals.Symlinks || sum.Bytes > p.Totals.Bytes) {
		r.fail("totals %+v, entries count %+v", p.Totals, sum)
	}
	return r.err
}

// checkEntry checks one entry's name (after prev, if after) and kind; ""
// if it is fine.
func checkEntry(e *raw, after bool, prev string) string {
	switch {
	case e.name == "" || e.name == "." || e.name == ".." || strings.IndexByte(e.name, '/') >= 0 || strings.IndexByte(e.name, 0) >= 0:
		return fmt.Sprintf("bad name %q", e.name)
	case after && e.name <= prev:
		return fmt.Sprintf("%q after %q", e.name, prev)
	case e.child && e.kind() != tree.KindDir:
		return fmt.Sprintf("entry %q: a child part for a %s", e.name, e.kind())
	}
	return ""
}

// entryAt reads the entry at offset off (of a decoded part: it parses).
func (p *Part) entryAt(off uint32) raw {
	r := &reader{b: p.data, off: int(off)}
	return r.entry()
}

func (p *Part) rel(d dirIndex) string {
	r := &reader{b: p.data, off: int(d.relOff)}
	return string(r.bytes("", maxPath))
}

// dir finds the record of directory rel (relative to the root).
func (p *Part) dir(rel string) (dirIndex, bool) {
	i := sort.Search(len(p.dirs), func(i int) bool { return pathCmp(p.rel(p.dirs[i]), rel) >= 0 })
	if i < len(p.dirs) && p.rel(p.dirs[i]) == rel {
		return p.dirs[i], true
	}
	return dirIndex{}, false
}

// find is entry name of directory rel.
func (p *Part) find(rel, name string) (raw, bool) {
	d, ok := p.dir(rel)
	if !ok {
		return raw{}, false
	}
	ents := p.ents[d.first : d.first+d.count]
	i := sort.Search(len(ents), func(i int) bool { return p.entryName(ents[i]) >= name })
	if i < len(ents) && p.entryName(ents[i]) == name {
		return p.entryAt(ents[i]), true
	}
	return raw{}, false
}

// entryName reads only the name of the entry at off.
func (p *Part) entryName(off uint32) string {
	r := &reader{b: p.data, off: int(off)}
	return string(r.bytes("", maxName))
}

// each calls fn with every entry of directory rel, in name order.
func (p *Part) each(rel string, fn func(e raw) bool) {
	d, ok := p.dir(rel)
	if !ok {
		return
	}
	for _, off := range p.ents[d.first : d.first+d.count] {
		if !fn(p.entryAt(off)) {
			return
		}
	}
}

// rootNode is the root's own node, if the part holds it.
func (p *Part) rootNode() (*tree.Node, error) {
	if p.rootOff < 0 {
		return tree.RootNode(), nil
	}
	r := &reader{b: p.data, off: int(p.rootOff)}
	v := r.uvarint("")
	n, err := tree.DecodeNode(r.bytes("", uint64(len(p.data))))
	if err != nil {
		return nil, fmt.Errorf("metadata of /: %w", err)
	}
	n.Version = v
	return n, nil
}

// rootRaw is the root's node bytes and version (nil if none).
func (p *Part) rootRaw() ([]byte, uint64) {
	if p.rootOff < 0 {
		return nil, 0
	}
	r := &reader{b: p.data, off: int(p.rootOff)}
	v := r.uvarint("")
	return r.bytes("", uint64(len(p.data))), v
}
