package mount

import (
	"context"
	"path"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The tree a mount serves does not change between refreshes, and a
// refresh tells the kernel what it changed (invalidate.go). So a
// directory's listing is cached by the kernel (FOPEN_CACHE_DIR: a second
// readdir, by anyone, costs no round trip) and read with READDIRPLUS, which
// hands the kernel every entry's inode and attributes with the names: a
// first `find` or `ls -l` then needs no LOOKUP per entry. dirHandle serves
// those entries from the nodes the listing decoded, instead of reading each
// one from the log again.

// OpendirHandle opens the directory for reading its listing.
func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{dir: d}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirHandle is one open directory: its listing, read at the first readdir,
// and where the reader is in it. go-fuse calls it under its own lock; mu
// guards against a Releasedir racing a late request.
type dirHandle struct {
	dir     *dirNode
	mu      sync.Mutex
	entries []listed
	loaded  bool
	gen     uint64 // the generation read before the listing (see fileNode.gen)
	next    int    // index of the entry the next Readdirent returns
}

var (
	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
	_ gofs.FileLookuper     = (*dirHandle)(nil)
	_ gofs.FileReleasedirer = (*dirHandle)(nil)
)

func (h *dirHandle) load() syscall.Errno {
	if h.loaded {
		return 0
	}
	gen := h.dir.mount.generation()
	entries, errno := h.dir.list()
	if errno != 0 {
		return errno
	}
	h.entries, h.loaded, h.gen = entries, true, gen
	return 0
}

// Readdirent returns the next entry. Offsets are positions in the listing
// (1-based: 0 is the start), so that a Seekdir can return to any of them.
func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if errno := h.load(); errno != 0 {
		return nil, errno
	}
	if h.next >= len(h.entries) {
		return nil, 0
	}
	e := h.entries[h.next]
	h.next++
	p := path.Join(h.dir.path, e.name)
	return &fuse.DirEntry{Name: e.name, Mode: modeType(e.node), Ino: h.dir.mount.ino(p, e.node), Off: uint64(h.next)}, 0
}

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if errno := h.load(); errno != 0 {
		return errno
	}
	h.next = int(min(off, uint64(len(h.entries))))
	return 0
}

// Lookup answers READDIRPLUS for the entry Readdirent returned last, from
// the node the listing decoded.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	h.mu.Lock()
	var e listed
	if h.next > 0 && h.next <= len(h.entries) {
		e = h.entries[h.next-1]
	}
	gen := h.gen
	h.mu.Unlock()
	if e.node == nil || e.name != name {
		// Not the entry just listed: a plain lookup.
		return h.dir.Lookup(ctx, name, out)
	}
	h.dir.mount.counters.plusEntries.Add(1)
	return h.dir.mount.child(ctx, &h.dir.Inode, path.Join(h.dir.path, name), e.node, gen, out), 0
}

func (h *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	h.mu.Lock()
	h.entries = nil
	h.mu.Unlock()
}
