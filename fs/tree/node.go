// Package tree is the file tree of a blockfs volume as kept in its metadata
// log: the Node record (one file, directory or symlink) and its encoding,
// and reading nodes by path and listing directories through the log's
// secondary index. It knows nothing of stores, import or FUSE.
package tree

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"path"
	"sort"
	"strings"

	"blockfs/blockstore"
	"blockfs/objects"
)

// Kind is the type of a Node.
type Kind uint8

// The kinds of node blockfs stores; anything else is skipped at import.
const (
	KindDir     Kind = 1
	KindFile    Kind = 2
	KindSymlink Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindDir:
		return "directory"
	case KindFile:
		return "file"
	case KindSymlink:
		return "symlink"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ErrBadNode is wrapped by every error DecodeNode returns, so a damaged
// metadata record is recognisable with errors.Is.
var ErrBadNode = errors.New("malformed node record")

// nodeFormat is the first byte of every encoded Node; a new layout gets a new
// number so that old logs stay readable.
const nodeFormat = 1

// Node is one entry of the tree as stored in the metadata log.
//
// Encoded layout (all integers are unsigned varints unless noted):
//
//	format (1 byte, = 1) | kind (1 byte) | mode | mtime (signed varint, ns)
//	| size | then by kind:
//	  file:    block count, then per block: 32-byte SHA-256 | block size
//	  symlink: target length | target bytes
//	  dir:     nothing
//
// Block offsets are not stored: they follow from the sizes and are
// rebuilt once at decode time for the binary search of Block.
type Node struct {
	Kind    Kind
	Mode    uint32 // permission bits (07777), no type bits
	MtimeNs int64
	Size    int64
	Target  string               // symlinks
	Blocks  []blockstore.Locator // files, in order

	// Version is the log's version of the object the node was read from
	// (not encoded): a changed file gets a new inode number in a mount.
	Version uint64

	// starts[i] is the file offset of Blocks[i]; built by DecodeNode and
	// SetBlocks so that reads find their blocks by binary search.
	starts []int64
}

// SetBlocks sets the block list of a file node, its size and its offsets.
func (n *Node) SetBlocks(blocks []blockstore.Locator) {
	n.Blocks = blocks
	n.starts = make([]int64, len(blocks))
	var off int64
	for i, b := range blocks {
		n.starts[i] = off
		off += b.Size
	}
	n.Size = off
}

// Start returns the file offset at which block i starts.
func (n *Node) Start(i int) int64 { return n.starts[i] }

// Block returns the index of the block holding byte off and the offset at
// which that block starts; ok is false past the end of the file.
func (n *Node) Block(off int64) (i int, start int64, ok bool) {
	if off < 0 || off >= n.Size || len(n.Blocks) == 0 {
		return 0, 0, false
	}
	// The last block whose start is <= off.
	i = sort.Search(len(n.starts), func(j int) bool { return n.starts[j] > off }) - 1
	return i, n.starts[i], true
}

// AppendBinary appends the encoded node to dst.
func (n *Node) AppendBinary(dst []byte) []byte {
	dst = append(dst, nodeFormat, byte(n.Kind))
	dst = binary.AppendUvarint(dst, uint64(n.Mode))
	dst = binary.AppendVarint(dst, n.MtimeNs)
	dst = binary.AppendUvarint(dst, uint64(n.Size))
	switch n.Kind {
	case KindFile:
		dst = binary.AppendUvarint(dst, uint64(len(n.Blocks)))
		for _, b := range n.Blocks {
			dst = append(dst, b.Hash[:]...)
			dst = binary.AppendUvarint(dst, uint64(b.Size))
		}
	case KindSymlink:
		dst = binary.AppendUvarint(dst, uint64(len(n.Target)))
		dst = append(dst, n.Target...)
	}
	return dst
}

// nodeDecoder reads varints off a record, remembering the first error.
type nodeDecoder struct {
	b   []byte
	err error
}

func (d *nodeDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadNode, what)
	}
}

// uvarint and varint accept only minimal encodings, so that a node has
// exactly one spelling (found by FuzzDecodeNode: "\x80\x00" is also 0).
func (d *nodeDecoder) uvarint(what string) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != uvarintLen(v) {
		d.fail("bad " + what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *nodeDecoder) varint(what string) int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 || n != uvarintLen(uint64(v)<<1^uint64(v>>63)) {
		d.fail("bad " + what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// uvarintLen is the length of the minimal uvarint encoding of v.
func uvarintLen(v uint64) int {
	return max(1, (bits.Len64(v)+6)/7)
}

// DecodeNode parses an encoded node. It never panics and never allocates more
// than the record's own size justifies, whatever the input.
func DecodeNode(b []byte) (*Node, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadNode, len(b))
	}
	if b[0] != nodeFormat {
		return nil, fmt.Errorf("%w: unknown format %d", ErrBadNode, b[0])
	}
	n := &Node{Kind: Kind(b[1])}
	d := nodeDecoder{b: b[2:]}
	mode := d.uvarint("mode")
	n.MtimeNs = d.varint("mtime")
	size := d.uvarint("size")
	if d.err != nil {
		return nil, d.err
	}
	if mode > 07777 {
		return nil, fmt.Errorf("%w: mode %o", ErrBadNode, mode)
	}
	n.Mode = uint32(mode)
	switch n.Kind {
	case KindDir:
		if size != 0 { // directories are written with size 0
			return nil, fmt.Errorf("%w: directory with size %d", ErrBadNode, size)
		}
	case KindFile:
		count := d.uvarint("block count")
		// Each block takes at least 33 bytes; refuse counts the record cannot hold.
		if d.err == nil && count > uint64(len(d.b)/33) {
			d.fail(fmt.Sprintf("block count %d exceeds record", count))
		}
		blocks := make([]blockstore.Locator, 0, int(min(count, uint64(len(d.b)/33))))
		for i := uint64(0); i < count && d.err == nil; i++ {
			var l blockstore.Locator
			if len(d.b) < 32 {
				d.fail("truncated block hash")
				break
			}
			copy(l.Hash[:], d.b[:32])
			d.b = d.b[32:]
			s := d.uvarint("block size")
			if d.err == nil && (s == 0 || s > blockstore.MaxBlockSize) {
				d.fail(fmt.Sprintf("block size %d", s))
			}
			l.Size = int64(s)
			blocks = append(blocks, l)
		}
		if d.err != nil {
			return nil, d.err
		}
		n.SetBlocks(blocks)
		if uint64(n.Size) != size {
			return nil, fmt.Errorf("%w: size %d but blocks add up to %d", ErrBadNode, size, n.Size)
		}
	case KindSymlink:
		l := d.uvarint("target length")
		if d.err == nil && l > uint64(len(d.b)) {
			d.fail("truncated symlink target")
		}
		if d.err != nil {
			return nil, d.err
		}
		n.Target = string(d.b[:l])
		d.b = d.b[l:]
		n.Size = int64(len(n.Target))
		if size != uint64(n.Size) {
			return nil, fmt.Errorf("%w: symlink size %d, target %d bytes", ErrBadNode, size, n.Size)
		}
	default:
		return nil, fmt.Errorf("%w: unknown kind %d", ErrBadNode, b[1])
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadNode, len(d.b))
	}
	return n, nil
}

// CleanPath turns a user-supplied tree path into the canonical form used as a
// key: absolute, no "." or ".." elements, no trailing slash ("/" for the root).
// ".." cannot climb above the root.
func CleanPath(p string) string {
	return path.Clean("/" + p)
}

// pathKey and dirKey are the two keys of every node's object in the log:
// key 0 is the path itself, key 1 is "<parent>\x00<name>" so that a prefix
// scan of "<dir>\x00" lists exactly one directory's children in name order.
func pathKey(p string) []byte { return []byte(p) }

func dirKey(p string) []byte {
	if p == "/" {
		return nil // the root has no parent
	}
	dir, name := path.Split(p)
	return []byte(CleanPath(dir) + "\x00" + name)
}

// Entry is the log entry that stores node n at path p under both keys.
func Entry(p string, n *Node) objects.Entry {
	keys := [][]byte{pathKey(p)}
	if k := dirKey(p); k != nil {
		keys = append(keys, k)
	}
	return objects.Entry{Keys: keys, Value: n.AppendBinary(nil)}
}

// DeleteEntry is the log entry that removes the node at path p: a
// tombstone for its primary key, which removes the object with both keys.
func DeleteEntry(p string) objects.Entry {
	return objects.Entry{Keys: [][]byte{pathKey(p)}, Delete: true}
}

func dirPrefix(dir string) []byte { return []byte(dir + "\x00") }

// childName extracts the name from a key-1 value listed under dirPrefix.
func childName(key []byte) string {
	s := string(key)
	return s[strings.IndexByte(s, 0)+1:]
}
