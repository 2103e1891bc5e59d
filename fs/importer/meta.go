package importer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"syscall"

	"blockfs/fs/tree"

	"golang.org/x/sys/unix"
)

// keptXattr says which extended attributes an import keeps: the user
// namespace (what users and tools such as rsync -X set) and file
// capabilities (binaries such as ping need them). SELinux labels, trusted.*
// and POSIX ACLs (system.posix_acl_*) are not kept: labels and ACLs belong
// to the machine that enforces them, and a FUSE mount without
// default_permissions would show ACLs it does not enforce. They are counted
// in Stats.XattrsDropped.
func keptXattr(name string) bool {
	return strings.HasPrefix(name, "user.") || name == "security.capability"
}

// linkKey identifies a source inode.
type linkKey struct{ dev, ino uint64 }

// linkGroup is a source inode with more than one path in the import.
type linkGroup struct {
	id    uint64 // LinkID: random, so that two imports never share one
	nlink uint32
}

// findLinks counts the paths of every multiply-linked regular file of the
// walk: those paths become one inode in a mount.
func findLinks(items []item) map[linkKey]*linkGroup {
	groups := map[linkKey]*linkGroup{}
	for _, it := range items {
		st, ok := it.info.Sys().(*syscall.Stat_t)
		if !ok || !it.info.Mode().IsRegular() || st.Nlink < 2 {
			continue
		}
		k := linkKey{uint64(st.Dev), st.Ino}
		g := groups[k]
		if g == nil {
			g = &linkGroup{id: rand.Uint64() | 1}
			groups[k] = g
		}
		g.nlink++
	}
	for k, g := range groups {
		if g.nlink < 2 { // its other links are outside the tree
			delete(groups, k)
		}
	}
	return groups
}

// node makes the tree node of an item, with what every kind has: mode,
// mtime, owners, link identity and extended attributes.
func (im *Importer) node(it item, kind tree.Kind) *tree.Node {
	n := &tree.Node{Kind: kind, Mode: modeBits(it.info.Mode()), MtimeNs: it.info.ModTime().UnixNano(), Owned: true, Nlink: 1}
	if st, ok := it.info.Sys().(*syscall.Stat_t); ok {
		n.UID, n.GID = st.Uid, st.Gid
		if g := im.links[linkKey{uint64(st.Dev), st.Ino}]; g != nil && kind == tree.KindFile {
			n.Nlink, n.LinkID = g.nlink, g.id
		}
	}
	n.Xattrs = im.xattrs(it.src)
	return n
}

// xattrs reads the attributes of p that an import keeps, within the
// node's bounds; what is left out is counted and, when it is one the
// import would have kept, warned about.
func (im *Importer) xattrs(p string) []tree.Xattr {
	names, err := listXattrs(p)
	if err != nil {
		if !errors.Is(err, unix.ENOTSUP) {
			im.opts.Warn(fmt.Errorf("%s: listing extended attributes: %w", p, err))
		}
		return nil
	}
	var out []tree.Xattr
	total := 0
	for _, name := range names {
		if !keptXattr(name) {
			im.xattrsDropped.Add(1)
			continue
		}
		v, err := getXattr(p, name)
		switch {
		case err != nil:
			im.xattrsDropped.Add(1)
			im.opts.Warn(fmt.Errorf("%s: reading extended attribute %s: %w", p, name, err))
			continue
		case len(name) > tree.MaxXattrName || len(v) > tree.MaxXattrValue || total+len(name)+len(v) > tree.MaxXattrTotal:
			im.xattrsDropped.Add(1)
			im.opts.Warn(fmt.Errorf("%s: extended attribute %s not kept: a file's attributes are limited to %d bytes", p, name, tree.MaxXattrTotal))
			continue
		}
		total += len(name) + len(v)
		out = append(out, tree.Xattr{Name: name, Value: v})
	}
	im.xattrsKept.Add(int64(len(out)))
	return out // in the source's order: see tree.Node.Xattrs
}

// listXattrs lists the attribute names of p itself (not a symlink's target).
func listXattrs(p string) ([]string, error) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, b := range bytes.Split(buf[:n], []byte{0}) {
			if len(b) > 0 {
				names = append(names, string(b))
			}
		}
		return names, nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) && len(buf) <= tree.MaxXattrValue {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n:n], nil
	}
}

// zeros is compared against to find all-zero blocks.
var zeros = make([]byte, 64<<10)

// allZero reports whether b holds only zero bytes: such a block is stored
// as a hole, costing no block and no fetch.
func allZero(b []byte) bool {
	for len(b) > 0 {
		k := min(len(b), len(zeros))
		if !bytes.Equal(b[:k], zeros[:k]) {
			return false
		}
		b = b[k:]
	}
	return true
}

// typeWord names a file type in words, for the warning that skips it.
func typeWord(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}
