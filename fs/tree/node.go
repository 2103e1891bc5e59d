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

// Node formats, the first byte of every encoded Node. A new layout gets a
// new number so that old logs stay readable: format 1 (no owners, links,
// xattrs or holes) is still decoded. A node is written as format 2 unless
// it uses part of a block (a packed file), which only format 3 can say:
// so a store of unpacked files stays readable by binaries that predate
// packing, and such a binary refuses a packed node by its format number
// instead of misreading it.
const (
	nodeFormat1      = 1
	nodeFormat       = 2
	nodeFormatRanged = 3
)

// Bounds on what a node keeps of a file's extended attributes, so that one
// file cannot make a metadata record (and every mount's memory) huge. The
// value limit is Linux's own (XATTR_SIZE_MAX); the importer counts what it
// could not keep.
const (
	MaxXattrName  = 255
	MaxXattrValue = 64 << 10
	MaxXattrTotal = 64 << 10 // names and values of one node together
)

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// Node is one entry of the tree as stored in the metadata log.
//
// Encoded layout of format 2 (all integers are unsigned varints unless
// noted):
//
//	format (1 byte, = 2) | kind (1 byte) | mode | mtime (signed varint, ns)
//	| size | uid | gid | nlink | link id (only if nlink > 1)
//	| xattr count, then per xattr (names unique, in the source's order):
//	    name length | name | value length | value
//	| then by kind:
//	  file:    block count, then per block: size<<1 | hole (1 bit), then,
//	           unless a hole, the 32-byte SHA-256
//	  symlink: target length | target bytes
//	  dir:     nothing
//
// Format 1 is the same without uid .. xattrs, and with every block as
// 32-byte hash | size.
//
// Format 3 is format 2 with file blocks that may be used in part (a range):
//
//	file:    block count, then per block: length<<2 | ranged<<1 | hole,
//	         unless a hole the 32-byte SHA-256, and if ranged the block's
//	         own size and the offset of the range in it; then, since at
//	         least one block is ranged, the 32-byte SHA-256 of the file's
//	         whole content (Node.Sum)
//
// where length is how many of the file's bytes the block holds. A range
// is never the whole block and never a hole, and a format-3 node has at
// least one range, so that every node has exactly one encoding. A hole is a run of zero bytes that is not stored
// as a block at all: it costs no fetch, and SEEK_HOLE finds it.
//
// Block offsets are not stored: they follow from the sizes and are
// rebuilt once at decode time for the binary search of Block.
type Node struct {
	Kind    Kind
	Mode    uint32 // permission bits (07777), no type bits
	MtimeNs int64
	Size    int64
	Target  string               // symlinks
	Blocks  []blockstore.Locator // files, in order; a zero Hash is a hole

	// Owned says the record carries owners (format 2); format-1 nodes are
	// served as owned by the mounting user, as before.
	Owned    bool
	UID, GID uint32
	// Nlink is how many paths of the import shared this file's inode, and
	// LinkID names that inode within the store (0 when Nlink is 1): a
	// mount serves all of them as one inode.
	Nlink  uint32
	LinkID uint64
	// Xattrs are kept in the order the source listed them, so that tar
	// and rsync -X of a mount write what they would of the source.
	Xattrs []Xattr

	// Ranges, when not nil, has one entry per block: the part of
	// Blocks[i] the file uses. A packed file is one range of a shared pack
	// block. Blocks keep the whole blocks' locators, so that everything
	// that marks, verifies or fetches blocks (gc, verify, the pool) sees
	// the block as stored and hashed.
	Ranges []Range
	// Sum is the SHA-256 of the file's whole content, kept when the file
	// has ranges (format 3): a later import finds the same small file by
	// its content, wherever its pack is, and reuses the range (dedup that
	// does not depend on a pack's neighbours).
	Sum blockstore.Hash

	// Version is the log's version of the object the node was read from
	// (not encoded): a changed file gets a new inode number in a mount.
	Version uint64

	// starts[i] is the file offset of Blocks[i]; built by DecodeNode and
	// SetBlocks so that reads find their blocks by binary search.
	starts []int64
}

// Range is the part of a block a file uses: Len bytes from Off.
type Range struct{ Off, Len int64 }

// IsHole reports whether a block of a file's list is a hole (zeros, not stored).
func IsHole(l blockstore.Locator) bool { return l.Hash == blockstore.Hash{} }

// Xattr returns the value of the named attribute.
func (n *Node) Xattr(name string) ([]byte, bool) {
	for _, x := range n.Xattrs {
		if x.Name == name {
			return x.Value, true
		}
	}
	return nil, false
}

// SetBlocks sets the block list of a file node (whole blocks), its size
// and its offsets.
func (n *Node) SetBlocks(blocks []blockstore.Locator) { n.SetRanges(blocks, nil) }

// SetRanges sets a block list of which the file uses ranges[i] of
// blocks[i] (ranges nil: every block whole), its size and its offsets.
// It panics if the lengths differ: that is a programming error.
func (n *Node) SetRanges(blocks []blockstore.Locator, ranges []Range) {
	if ranges != nil && len(ranges) != len(blocks) {
		panic("tree: SetRanges with a range count unlike the block count")
	}
	n.Blocks, n.Ranges = blocks, ranges
	n.starts = make([]int64, len(blocks))
	var off int64
	for i := range blocks {
		n.starts[i] = off
		off += n.Len(i)
	}
	n.Size = off
}

// Start returns the file offset at which block i starts.
func (n *Node) Start(i int) int64 { return n.starts[i] }

// Len returns how many of the file's bytes block i holds.
func (n *Node) Len(i int) int64 {
	if n.Ranges != nil {
		return n.Ranges[i].Len
	}
	return n.Blocks[i].Size
}

// Off returns where in block i the file's bytes start.
func (n *Node) Off(i int) int64 {
	if n.Ranges != nil {
		return n.Ranges[i].Off
	}
	return 0
}

// Packed reports whether the file uses part of a block (is packed with others).
func (n *Node) Packed() bool { return n.Ranges != nil }

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

// AppendBinary appends the encoded node (format 2, or 3 for a file with
// ranges) to dst. Xattr names must be unique, as the decoder insists, and
// ranges must be proper parts of their blocks (see Node.Ranges).
func (n *Node) AppendBinary(dst []byte) []byte {
	format := byte(nodeFormat)
	if n.Kind == KindFile && n.ranged() {
		format = nodeFormatRanged
	}
	dst = append(dst, format, byte(n.Kind))
	dst = binary.AppendUvarint(dst, uint64(n.Mode))
	dst = binary.AppendVarint(dst, n.MtimeNs)
	dst = binary.AppendUvarint(dst, uint64(n.Size))
	dst = binary.AppendUvarint(dst, uint64(n.UID))
	dst = binary.AppendUvarint(dst, uint64(n.GID))
	nlink := max(n.Nlink, 1)
	dst = binary.AppendUvarint(dst, uint64(nlink))
	if nlink > 1 {
		dst = binary.AppendUvarint(dst, n.LinkID)
	}
	dst = binary.AppendUvarint(dst, uint64(len(n.Xattrs)))
	for _, x := range n.Xattrs {
		dst = binary.AppendUvarint(dst, uint64(len(x.Name)))
		dst = append(dst, x.Name...)
		dst = binary.AppendUvarint(dst, uint64(len(x.Value)))
		dst = append(dst, x.Value...)
	}
	switch {
	case format == nodeFormatRanged:
		dst = n.appendRanged(dst)
	case n.Kind == KindFile:
		dst = binary.AppendUvarint(dst, uint64(len(n.Blocks)))
		for _, b := range n.Blocks {
			if IsHole(b) {
				dst = binary.AppendUvarint(dst, uint64(b.Size)<<1|1)
				continue
			}
			dst = binary.AppendUvarint(dst, uint64(b.Size)<<1)
			dst = append(dst, b.Hash[:]...)
		}
	case n.Kind == KindSymlink:
		dst = binary.AppendUvarint(dst, uint64(len(n.Target)))
		dst = append(dst, n.Target...)
	}
	return dst
}

// isRange reports whether block i is used in part.
func (n *Node) isRange(i int) bool {
	return n.Ranges != nil && (n.Ranges[i].Off != 0 || n.Ranges[i].Len != n.Blocks[i].Size)
}

// ranged reports whether any block is used in part.
func (n *Node) ranged() bool {
	for i := range n.Blocks {
		if n.isRange(i) {
			return true
		}
	}
	return false
}

// appendRanged appends the block list of format 3.
func (n *Node) appendRanged(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(n.Blocks)))
	for i, b := range n.Blocks {
		r := n.isRange(i)
		v := uint64(n.Len(i)) << 2
		if r {
			v |= 2
		}
		if IsHole(b) {
			dst = binary.AppendUvarint(dst, v|1)
			continue
		}
		dst = binary.AppendUvarint(dst, v)
		dst = append(dst, b.Hash[:]...)
		if r {
			dst = binary.AppendUvarint(dst, uint64(b.Size))
			dst = binary.AppendUvarint(dst, uint64(n.Ranges[i].Off))
		}
	}
	return append(dst, n.Sum[:]...)
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
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != uvarintLen(v) {
		d.fail("bad " + what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *nodeDecoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || n != uvarintLen(uint64(v)<<1^uint64(v>>63)) {
		d.fail("bad " + what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed byte string of at most limit bytes.
func (d *nodeDecoder) bytes(what string, limit uint64) []byte {
	l := d.uvarint(what + " length")
	if d.err == nil && (l > limit || l > uint64(len(d.b))) {
		d.fail(fmt.Sprintf("%s of %d bytes", what, l))
	}
	if d.err != nil {
		return nil
	}
	v := d.b[:l:l]
	d.b = d.b[l:]
	return v
}

// uvarintLen is the length of the minimal uvarint encoding of v.
func uvarintLen(v uint64) int {
	return max(1, (bits.Len64(v)+6)/7)
}

// DecodeNode parses an encoded node of either format. It never panics and
// never allocates more than the record's own size justifies, whatever the
// input.
func DecodeNode(b []byte) (*Node, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadNode, len(b))
	}
	format := b[0]
	if format != nodeFormat1 && format != nodeFormat && format != nodeFormatRanged {
		return nil, fmt.Errorf("%w: unknown format %d", ErrBadNode, b[0])
	}
	n := &Node{Kind: Kind(b[1]), Nlink: 1}
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
	if format != nodeFormat1 {
		d.owners(n)
		d.xattrs(n)
		if d.err != nil {
			return nil, d.err
		}
	}
	switch n.Kind {
	case KindDir:
		if size != 0 { // directories are written with size 0
			return nil, fmt.Errorf("%w: directory with size %d", ErrBadNode, size)
		}
	case KindFile:
		decode := d.blocks
		if format == nodeFormatRanged {
			decode = d.rangedBlocks
		}
		if err := decode(n, format, size); err != nil {
			return nil, err
		}
	case KindSymlink:
		n.Target = string(d.bytes("symlink target", uint64(len(d.b))))
		if d.err != nil {
			return nil, d.err
		}
		n.Size = int64(len(n.Target))
		if size != uint64(n.Size) {
			return nil, fmt.Errorf("%w: symlink size %d, target %d bytes", ErrBadNode, size, n.Size)
		}
	default:
		return nil, fmt.Errorf("%w: unknown kind %d", ErrBadNode, b[1])
	}
	if format == nodeFormatRanged && n.Kind != KindFile {
		return nil, fmt.Errorf("%w: format %d is for files", ErrBadNode, format)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadNode, len(d.b))
	}
	return n, nil
}

// owners reads uid, gid, nlink and the link id of a format-2 node.
func (d *nodeDecoder) owners(n *Node) {
	uid, gid := d.uvarint("uid"), d.uvarint("gid")
	nlink := d.uvarint("nlink")
	if d.err == nil && (uid > 1<<32-1 || gid > 1<<32-1) {
		d.fail(fmt.Sprintf("owner %d:%d", uid, gid))
	}
	if d.err == nil && (nlink == 0 || nlink > 1<<32-1) {
		d.fail(fmt.Sprintf("nlink %d", nlink))
	}
	if nlink > 1 {
		n.LinkID = d.uvarint("link id")
		if d.err == nil && n.LinkID == 0 {
			d.fail("hard link without a link id")
		}
	}
	n.Owned, n.UID, n.GID, n.Nlink = true, uint32(uid), uint32(gid), uint32(nlink)
}

// xattrs reads the extended attributes of a format-2 node.
func (d *nodeDecoder) xattrs(n *Node) {
	count := d.uvarint("xattr count")
	// Each attribute takes at least 3 bytes; refuse counts the record cannot hold.
	if d.err == nil && count > uint64(len(d.b)/3) {
		d.fail(fmt.Sprintf("xattr count %d exceeds record", count))
	}
	total := 0
	seen := map[string]bool{}
	for i := uint64(0); i < count && d.err == nil; i++ {
		name := string(d.bytes("xattr name", MaxXattrName))
		value := d.bytes("xattr value", MaxXattrValue)
		if d.err != nil {
			return
		}
		total += len(name) + len(value)
		switch {
		case name == "":
			d.fail("empty xattr name")
		case seen[name]:
			d.fail("xattr " + name + " twice")
		case total > MaxXattrTotal:
			d.fail(fmt.Sprintf("xattrs over %d bytes", MaxXattrTotal))
		}
		seen[name] = true
		n.Xattrs = append(n.Xattrs, Xattr{Name: name, Value: value})
	}
}

// blocks reads a file's block list and checks it against the size.
func (d *nodeDecoder) blocks(n *Node, format byte, size uint64) error {
	count := d.uvarint("block count")
	// A block takes at least 33 bytes in format 1 and 1 (a hole) in 2;
	// refuse counts the record cannot hold.
	per := 1
	if format == nodeFormat1 {
		per = 33
	}
	if d.err == nil && count > uint64(len(d.b)/per) {
		d.fail(fmt.Sprintf("block count %d exceeds record", count))
	}
	blocks := make([]blockstore.Locator, 0, int(min(count, uint64(len(d.b)/per))))
	for i := uint64(0); i < count && d.err == nil; i++ {
		var l blockstore.Locator
		var s uint64
		hole := false
		if format == nodeFormat {
			s = d.uvarint("block size")
			s, hole = s>>1, s&1 == 1
		}
		if !hole {
			if len(d.b) < 32 {
				d.fail("truncated block hash")
				break
			}
			copy(l.Hash[:], d.b[:32])
			d.b = d.b[32:]
			if IsHole(l) {
				d.fail("a block with the zero hash")
			}
		}
		if format == nodeFormat1 {
			s = d.uvarint("block size")
		}
		if d.err == nil && (s == 0 || s > blockstore.MaxBlockSize) {
			d.fail(fmt.Sprintf("block size %d", s))
		}
		l.Size = int64(s)
		blocks = append(blocks, l)
	}
	if d.err != nil {
		return d.err
	}
	n.SetBlocks(blocks)
	if uint64(n.Size) != size {
		return fmt.Errorf("%w: size %d but blocks add up to %d", ErrBadNode, size, n.Size)
	}
	return nil
}

// rangedBlocks reads a format-3 block list, whose blocks may be ranges,
// and the content hash that follows it.
func (d *nodeDecoder) rangedBlocks(n *Node, _ byte, size uint64) error {
	count := d.uvarint("block count")
	if d.err == nil && count > uint64(len(d.b)) { // a block takes at least 1 byte
		d.fail(fmt.Sprintf("block count %d exceeds record", count))
	}
	c := int(min(count, uint64(len(d.b))))
	blocks, ranges := make([]blockstore.Locator, 0, c), make([]Range, 0, c)
	anyRange := false
	for i := uint64(0); i < count && d.err == nil; i++ {
		v := d.uvarint("block length")
		length, isRange, hole := v>>2, v&2 != 0, v&1 != 0
		var l blockstore.Locator
		l.Size = int64(length)
		r := Range{Len: int64(length)}
		switch {
		case d.err != nil:
		case length == 0 || length > blockstore.MaxBlockSize:
			d.fail(fmt.Sprintf("block length %d", length))
		case hole && isRange:
			d.fail("a ranged hole")
		case !hole:
			d.hash(&l)
		}
		if isRange && d.err == nil {
			bsize, off := d.uvarint("block size"), d.uvarint("range offset")
			if d.err == nil && (bsize > blockstore.MaxBlockSize || off > bsize || length > bsize-off || (off == 0 && length == bsize)) {
				d.fail(fmt.Sprintf("range %d+%d of a block of %d bytes", off, length, bsize))
			}
			l.Size, r.Off = int64(bsize), int64(off)
			anyRange = true
		}
		blocks, ranges = append(blocks, l), append(ranges, r)
	}
	if d.err == nil && !anyRange {
		d.fail("format 3 without a range") // it would have been written as format 2
	}
	if d.err == nil && len(d.b) < 32 {
		d.fail("truncated content hash")
	}
	if d.err != nil {
		return d.err
	}
	copy(n.Sum[:], d.b[:32])
	d.b = d.b[32:]
	n.SetRanges(blocks, ranges)
	if uint64(n.Size) != size {
		return fmt.Errorf("%w: size %d but blocks add up to %d", ErrBadNode, size, n.Size)
	}
	return nil
}

// hash reads a block's 32-byte hash, which must not be the zero hash (a hole).
func (d *nodeDecoder) hash(l *blockstore.Locator) {
	if len(d.b) < 32 {
		d.fail("truncated block hash")
		return
	}
	copy(l.Hash[:], d.b[:32])
	d.b = d.b[32:]
	if IsHole(*l) {
		d.fail("a block with the zero hash")
	}
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
