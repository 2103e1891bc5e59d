package mount

import (
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// The tree a mount serves does not change between refreshes, and a
// refresh tells the kernel what it changed (invalidate.go). So a
// directory's listing is cached by the kernel (FOPEN_CACHE_DIR: a second
// readdir, by anyone, costs no round trip) and read with READDIRPLUS, which
// hands the kernel entries' nodeids and attributes with the names: an
// `ls -l` or `du` then needs no LOOKUP per entry. A dirHandle serves those
// entries from the nodes the listing decoded, instead of reading each one
// from the tree again.
//
// An entry with attributes costs the kernel an inode and a dentry, which
// at a million files costs a cold `find` (it needs names and types only)
// about five times the whole walk of the local disk. So the kernel's adaptive
// mode is on (CAP_READDIRPLUS_AUTO): it asks READDIRPLUS for a listing's
// start, and for the rest only if the reader looked up entries it got,
// plain READDIR otherwise. The start is kept to firstPlusEntries entries,
// so that the kernel learns which reader it has after a few: ls -l
// stats them and gets the rest with attributes, find does not and gets
// names. Options.PlusAlways turns this off.

// firstPlusEntries is how many entries a listing's first READDIRPLUS
// answer holds when the kernel's adaptive mode is on.
const firstPlusEntries = 64

// readdirplusAuto is the capability that asks the kernel for its
// adaptive READDIRPLUS, unless every listing is to carry attributes.
func readdirplusAuto(always bool) uint64 {
	if always {
		return 0
	}
	return fuse.CAP_READDIRPLUS_AUTO
}

// opendir opens the directory nodeid for reading its listing, which is
// read at the first readdir.
func (fs *rawFS) opendir(nodeid uint64, out *fuse.OpenOut) syscall.Errno {
	v, p, _, ok := fs.m.nodes.resolve(fs.m, nodeid)
	if !ok {
		return syscall.ESTALE
	}
	out.Fh = fs.m.handles.add(&dirHandle{mount: v, nodeid: nodeid, path: p})
	out.OpenFlags = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	return 0
}

// dirHandle is one open directory and its listing. Offsets are positions
// in the listing (1-based: 0 is the start), so a readdir at any offset,
// a seekdir's or an interrupted one's again, starts at its entry.
type dirHandle struct {
	mount  *Mount // the tree's (main or a snapshot view's)
	nodeid uint64
	path   string

	mu      sync.Mutex
	entries []listed
	loaded  bool
}

func (h *dirHandle) load() syscall.Errno {
	if h.loaded {
		return 0
	}
	entries, errno := h.mount.list(h.path)
	if errno != 0 {
		return errno
	}
	h.entries, h.loaded = entries, true
	return 0
}

// readdir fills out with the entries from offset off on, as many as fit;
// with plus (READDIRPLUS) each with its nodeid and attributes, which the
// kernel counts as a lookup. It returns how many entries it added.
func (h *dirHandle) readdir(off uint64, out *fuse.DirEntryList, plus bool) (added int, errno syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if errno := h.load(); errno != 0 {
		return 0, errno
	}
	m := h.mount
	end := len(h.entries)
	if plus && off == 0 && !m.opts.PlusAlways {
		end = min(end, firstPlusEntries)
	}
	for i := int(min(off, uint64(end))); i < end; i++ {
		e := h.entries[i]
		id := m.childIdentity(h.path, e.name, e.node)
		de := fuse.DirEntry{Name: e.name, Mode: modeType(e.node), Ino: id.ino, Off: uint64(i + 1)}
		if !plus {
			if !out.AddDirEntry(de) {
				break
			}
			added++
			continue
		}
		eo := out.AddDirLookupEntry(de)
		if eo == nil {
			break
		}
		added++
		m.counters.plusEntries.Add(1)
		m.entry(h.nodeid, e.name, e.node, id, eo)
	}
	return added, 0
}

// listHandle lists one of the mount's own directories: a fixed list,
// not cached by the kernel (the tags change).
type listHandle struct{ entries []fuse.DirEntry }

// readdir fills out from offset off on. These entries are names only,
// even for READDIRPLUS (a zero nodeid: the kernel looks up what it uses).
func (h *listHandle) readdir(off uint64, out *fuse.DirEntryList, plus bool) {
	for i := int(min(off, uint64(len(h.entries)))); i < len(h.entries); i++ {
		de := h.entries[i]
		de.Off = uint64(i + 1)
		if !plus {
			if !out.AddDirEntry(de) {
				return
			}
		} else if out.AddDirLookupEntry(de) == nil {
			return
		}
	}
}
