package mount

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"blockfs/blockstore"
	"blockfs/fs/tree"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// The mounting user, who owns what the store does not say the owner of;
// read once (each getuid is a system call, and a listing asks per entry).
var processUID, processGID = uint32(syscall.Getuid()), uint32(syscall.Getgid())

// owner is who a node is served as: the stored owner, or the mounting user
// for nodes imported before owners were kept, unless Options override it.
func (m *Mount) owner(n *tree.Node) (uid, gid uint32) {
	uid, gid = processUID, processGID
	if n.Owned {
		uid, gid = n.UID, n.GID
	}
	if m.opts.UID != nil {
		uid = *m.opts.UID
	}
	if m.opts.GID != nil {
		gid = *m.opts.GID
	}
	return uid, gid
}

// perm is the permission bits a node is served with: stored, or replaced
// by FileMode/DirMode, then masked by Umask. Symlinks are always 0777, as
// on Linux, whatever the overrides.
func (m *Mount) perm(n *tree.Node) uint32 {
	p := n.Mode
	switch n.Kind {
	case tree.KindSymlink:
		return p
	case tree.KindDir:
		if m.opts.DirMode != 0 {
			p = m.opts.DirMode
		}
	default:
		if m.opts.FileMode != 0 {
			p = m.opts.FileMode
		}
	}
	return p &^ m.opts.Umask & 0o7777
}

// storedBytes is how many bytes of a file are held as blocks (holes are
// not), for st_blocks: du of a sparse file shows what it costs.
func storedBytes(n *tree.Node) uint64 {
	var s uint64
	for i, l := range n.Blocks {
		if !tree.IsHole(l) {
			s += uint64(n.Len(i)) // a packed file's own bytes, not its pack's
		}
	}
	return s
}

// getxattr answers GETXATTR. A name outside the namespaces an import keeps
// (servedXattr) is EOPNOTSUPP, not ENODATA: blockfs does not support
// SELinux labels, ACLs or trusted.* at all, and saying so is what lets ls
// -l stop asking. It asks for security.selinux and system.posix_acl_access
// of every file it lists, unless a file of the same device answered
// "not supported", and the kernel does not cache an ENODATA: every ls -l
// would cost two round trips per file, warm or cold.
func (fs *rawFS) getxattr(nodeid uint64, attr string, dest []byte) (uint32, syscall.Errno) {
	fs.m.counters.getxattrs.Add(1)
	if !servedXattr(attr) {
		return 0, syscall.EOPNOTSUPP
	}
	if isSpecial(nodeid) {
		return 0, syscall.ENODATA
	}
	v, _, n, _, errno := fs.node("getxattr", nodeid)
	if errno != 0 {
		return 0, errno
	}
	return v.getxattr(n, attr, dest)
}

// servedXattr says whether a node may have attribute name: the user.*
// ones (introspection's included) and security.capability, the only ones
// an import keeps (docs/fidelity.md).
func servedXattr(name string) bool {
	return strings.HasPrefix(name, "user.") || name == "security.capability"
}

// getxattr answers getxattr(2) from the node's stored attributes, or one
// of the introspection attributes (magicXattr): with an empty dest the
// size, with too small a dest ERANGE, as the kernel expects. A name the
// node lacks is ENODATA, which tools handle quietly.
func (m *Mount) getxattr(n *tree.Node, attr string, dest []byte) (uint32, syscall.Errno) {
	v, ok := n.Xattr(attr)
	if !ok {
		v, ok = m.magicXattr(n, attr)
	}
	if !ok {
		return 0, syscall.ENODATA
	}
	return copyOut(v, dest)
}

// Introspection attributes, answered by name and never listed (as CVMFS
// does with its own), so that tar --xattrs and rsync -X copy only a file's
// own attributes. docs/metadata.md describes their values.
const (
	xattrBlocks   = "user.blockfs.blocks"
	xattrHash     = "user.blockfs.hash"
	xattrCached   = "user.blockfs.cached"
	xattrSnapshot = "user.blockfs.snapshot"
)

// magicXattr computes an introspection attribute of n.
func (m *Mount) magicXattr(n *tree.Node, attr string) ([]byte, bool) {
	switch {
	case attr == xattrSnapshot:
		return []byte(strconv.FormatUint(m.vol.MetaStats().Generation, 10)), true
	case n.Kind != tree.KindFile:
		return nil, false
	case attr == xattrBlocks:
		var b []byte
		for i, l := range n.Blocks {
			name := "hole"
			if !tree.IsHole(l) {
				name = l.Hash.String()
			}
			b = fmt.Appendf(b, "%s %d %d", name, n.Start(i), n.Len(i))
			if n.Packed() { // where in the (pack) block the file's bytes are
				b = fmt.Appendf(b, " %d", n.Off(i))
			}
			b = append(b, '\n')
		}
		return b, true
	case attr == xattrHash:
		return []byte(ContentHash(n)), true
	case attr == xattrCached:
		var held int64
		for i, l := range n.Blocks {
			if !tree.IsHole(l) && m.pool.Holds(l) {
				held += n.Len(i)
			}
		}
		return []byte(strconv.FormatInt(held, 10)), true
	}
	return nil, false
}

// ContentHash is a file's content identity as user.blockfs.hash gives it:
// "sha256:" and the hex SHA-256 over, for each block in order, its 32-byte
// hash (all zero for a hole) and its size as 8 bytes big-endian. Equal
// values mean equal bytes; files with equal bytes imported with the same
// chunking have equal values. A packed file counts as one block of its
// content (Node.Sum, its size), which is what a small file stored whole
// as one block gives: packing does not change the value.
func ContentHash(n *tree.Node) string {
	h := sha256.New()
	var size [8]byte
	blocks := n.Blocks
	if n.Packed() {
		blocks = []blockstore.Locator{{Hash: n.Sum, Size: n.Size}}
	}
	for _, l := range blocks {
		h.Write(l.Hash[:])
		binary.BigEndian.PutUint64(size[:], uint64(l.Size))
		h.Write(size[:])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// listxattr answers listxattr(2): the stored names, each NUL-terminated.
func listxattr(n *tree.Node, dest []byte) (uint32, syscall.Errno) {
	var names []byte
	for _, x := range n.Xattrs {
		if servedXattr(x.Name) { // as getxattr answers them
			names = append(append(names, x.Name...), 0)
		}
	}
	return copyOut(names, dest)
}

func copyOut(v, dest []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// lseek answers SEEK_DATA and SEEK_HOLE from the block list: holes are the
// all-zero blocks the import did not store, and the end of the file.
func lseek(n *tree.Node, off uint64, whence uint32) (uint64, syscall.Errno) {
	if off >= uint64(n.Size) {
		return 0, syscall.ENXIO
	}
	i, _, _ := n.Block(int64(off))
	for ; i < len(n.Blocks); i++ {
		hole := tree.IsHole(n.Blocks[i])
		if (whence == seekData && !hole) || (whence == seekHole && hole) {
			return max(off, uint64(n.Start(i))), 0
		}
	}
	if whence == seekHole {
		return uint64(n.Size), 0
	}
	return 0, syscall.ENXIO
}

const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

// Lseek answers lseek(2)'s SEEK_DATA and SEEK_HOLE on an open file (the
// kernel handles the other whences itself).
func (h *fileHandle) Lseek(off uint64, whence uint32) (uint64, syscall.Errno) {
	if whence != seekData && whence != seekHole {
		return 0, syscall.EINVAL
	}
	return lseek(h.node, off, whence)
}

// fillOwnerAttr sets what fillAttr takes from owners, links and holes.
func (m *Mount) fillOwnerAttr(n *tree.Node, a *fuse.Attr) {
	a.Uid, a.Gid = m.owner(n)
	a.Mode = a.Mode&syscall.S_IFMT | m.perm(n)
	if n.Kind == tree.KindFile {
		a.Nlink = max(n.Nlink, 1)
		a.Blocks = (storedBytes(n) + 511) / 512
	}
}

// zeroBuf backs the bytes of holes handed to the kernel; a read is never
// longer than maxRead.
var zeroBuf = make([]byte, maxRead)
