package mount

import (
	"encoding/binary"
	"math/bits"
	"syscall"

	"blockfs/fs/tree"
)

// Inode numbers are derived, not remembered: a table of every path and
// version ever looked up would grow with every lookup for the mount's life,
// however little the kernel still holds. The node table (nodetable.go)
// holds only what the kernel holds.
//
// A node's identity is a 128-bit FNV-1a hash of its path (directories) or
// of its path and version (files and symlinks, so that a file replaced by a
// newer import is a new inode with its own page cache, while handles open
// on the old one keep reading it). The top 64 bits are st_ino and the FUSE
// nodeid, the rest the FUSE generation. Two nodes that share an st_ino
// (likely once in about 10^6 mounts of 10^7 files) are still two nodes to
// the kernel (the node table gives the second a free nodeid, told apart by
// the rest of the hash) and never serve each other's bytes; only tools
// that compare st_ino (hard-link detection with nlink > 1, find's loop
// check along one path) could be misled.

// rootIno is the root directory's inode number (FUSE_ROOT_ID).
const rootIno = 1

// reservedInos are the numbers at either end of the range that the mount
// keeps for itself (0, the root, hidden files such as the stats file at
// the top); a hash that lands there is moved away.
const reservedInos = 1 << 16

// ident is a node's identity: ino is its st_ino (and, but for a
// collision, its FUSE nodeid), gen the rest of the hash, which tells it
// from another node whose ino collides.
type ident struct{ ino, gen uint64 }

// identity returns the identity of node n at path p of m's tree. A
// snapshot view (snapshots.go) hashes its prefix first, so its inodes are
// not the main tree's; the main tree's prefix is empty.
func (m *Mount) identity(p string, n *tree.Node) ident {
	return m.childIdentity(p, "", n)
}

// childIdentity is the identity of node n at path dir/name (at dir if
// name is empty), without building the path: a listing asks for one per
// entry. The hash is FNV-1a 128 (hash/fnv's, computed here over the pieces
// so that nothing is allocated).
func (m *Mount) childIdentity(dir, name string, n *tree.Node) ident {
	if dir == "/" && name == "" && m.idPrefix == "" {
		return ident{ino: rootIno}
	}
	h := newFNV128a()
	h.writeString(m.idPrefix)
	var b [9]byte
	b[0] = byte(n.Kind)
	k := 1
	switch {
	case n.LinkID != 0:
		// Hard links: every path of the one source inode is one inode
		// here, so the identity is the link, not the path. Not the
		// version either: each path's object has its own, and a re-import
		// that changes the file gives it a new link id anyway.
		b[0] = 0xff
		binary.LittleEndian.PutUint64(b[1:], n.LinkID)
		h.write(b[:])
	case n.Kind != tree.KindDir:
		binary.LittleEndian.PutUint64(b[1:], n.Version)
		k = 9
		fallthrough
	default:
		h.write(b[:k])
		h.writeString(dir)
		if name != "" {
			if dir != "/" {
				h.writeString("/")
			}
			h.writeString(name)
		}
	}
	ino := h.hi
	if ino < reservedInos || ino > ^uint64(0)-reservedInos {
		ino ^= 1 << 62
	}
	return ident{ino: ino, gen: h.lo}
}

// fnv128a is the state of an FNV-1a 128-bit hash (hi, lo: its sum's
// big-endian halves), as hash/fnv computes it.
type fnv128a struct{ hi, lo uint64 }

func newFNV128a() fnv128a { return fnv128a{hi: 0x6c62272e07bb0142, lo: 0x62b821756295c58d} }

func (h *fnv128a) add(c byte) {
	// Multiply by the FNV prime 2^88 + 0x13b, modulo 2^128.
	h.lo ^= uint64(c)
	hi, lo := bits.Mul64(0x13b, h.lo)
	h.hi = hi + h.lo<<24 + 0x13b*h.hi
	h.lo = lo
}

func (h *fnv128a) write(b []byte) {
	for _, c := range b {
		h.add(c)
	}
}

func (h *fnv128a) writeString(s string) {
	for i := 0; i < len(s); i++ {
		h.add(s[i])
	}
}

// dirIdentity is the identity of the directory at p: a directory's
// depends on its path alone, so it is known without reading the node.
func (m *Mount) dirIdentity(p string) ident {
	return m.identity(p, &tree.Node{Kind: tree.KindDir})
}

// modeType is the file type bits of a node's kind.
func modeType(n *tree.Node) uint32 {
	switch n.Kind {
	case tree.KindDir:
		return syscall.S_IFDIR
	case tree.KindSymlink:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}
