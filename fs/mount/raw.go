package mount

import (
	"syscall"

	"blockfs/fs/tree"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// rawFS answers the kernel's FUSE requests for a mount and its snapshot
// views. It speaks go-fuse's raw protocol API rather than its node tree
// (go-fuse's fs package), which keeps an Inode object, a children map and
// more per name the kernel holds: after a walk of millions of files that
// is most of a mount's memory. Here a held name costs one node table
// record (nodetable.go). Each request is routed by its nodeid to the
// file of the role that answers it: dir.go, dirhandle.go, file.go,
// symlink.go, statsfile.go, snapshots.go. Everything it does not
// implement (writes, locks) the kernel gets ENOSYS for, on a read-only
// mount it refuses first anyway.
type rawFS struct {
	fuse.RawFileSystem
	m *Mount // the main mount
}

func newRawFS(m *Mount) *rawFS {
	return &rawFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), m: m}
}

func (fs *rawFS) String() string { return "blockfs" }

func status(errno syscall.Errno) fuse.Status { return fuse.Status(errno) }

// node reads the tree node nodeid names, as it is now. A nodeid whose path
// now holds another node (a file replaced by a refresh, looked up before
// it) is ESTALE: the kernel then looks the path up again and gets the new
// one's nodeid, as it does for a name gone from under it.
func (fs *rawFS) node(op string, nodeid uint64) (*Mount, string, *tree.Node, ident, syscall.Errno) {
	v, p, gen, ok := fs.m.nodes.resolve(fs.m, nodeid)
	if !ok {
		return nil, "", nil, ident{}, syscall.ESTALE
	}
	n, err := v.vol.Tree.Lookup(p)
	if err != nil {
		if errno := v.errno(op, p, err); errno != syscall.ENOENT {
			return nil, "", nil, ident{}, errno
		}
		return nil, "", nil, ident{}, syscall.ESTALE
	}
	id := v.identity(p, n)
	if uint32(id.gen) != gen || id.ino != nodeid && !fs.m.nodes.holds(nodeid, id) {
		return nil, "", nil, ident{}, syscall.ESTALE
	}
	return v, p, n, id, 0
}

func (fs *rawFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	ctx := &fuse.Context{Caller: h.Caller, Cancel: cancel}
	switch h.NodeId {
	case hiddenIno:
		return status(fs.m.lookupInHidden(name, out))
	case snapshotsIno:
		return status(fs.m.lookupSnapshot(ctx, name, out))
	}
	return status(fs.lookup(h.NodeId, name, out))
}

func (fs *rawFS) Forget(nodeid, nlookup uint64) { fs.m.nodes.forget(nodeid, nlookup) }

func (fs *rawFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if fillSpecialAttr(in.NodeId, &out.Attr) {
		if h, ok := fs.m.handles.get(in.Fh()).(*statsHandle); ok && in.NodeId == statsIno {
			out.Size = uint64(len(h.data))
		}
		out.SetTimeout(specialTimeout(fs.m, in.NodeId))
		return fuse.OK
	}
	if in.Flags()&fuse.FUSE_GETATTR_FH != 0 {
		if fh, ok := fs.m.handles.get(in.Fh()).(*fileHandle); ok {
			// The open file's own version, whatever its path holds now.
			fh.mount.fillAttr(fh.node, fh.ino, &out.Attr)
			out.SetTimeout(fs.m.opts.CacheTimeout)
			return fuse.OK
		}
	}
	return status(fs.getattr(in.NodeId, out))
}

func (fs *rawFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if in.NodeId == statsIno {
		return status(fs.m.openStats(in.Flags, out))
	}
	return status(fs.open(in.NodeId, in.Flags, out))
}

func (fs *rawFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	ctx := &fuse.Context{Caller: in.Caller, Cancel: cancel}
	switch h := fs.m.handles.get(in.Fh).(type) {
	case *fileHandle:
		res, errno := h.Read(ctx, buf, int64(in.Offset))
		return res, status(errno)
	case *statsHandle:
		return h.read(buf, int64(in.Offset)), fuse.OK
	}
	return nil, fuse.EBADF
}

func (fs *rawFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	h, ok := fs.m.handles.get(in.Fh).(*fileHandle)
	if !ok {
		return fuse.EBADF
	}
	off, errno := h.Lseek(in.Offset, in.Whence)
	out.Offset = off
	return status(errno)
}

func (fs *rawFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	if h, ok := fs.m.handles.take(in.Fh).(*fileHandle); ok {
		h.Release()
	}
}

func (fs *rawFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	ctx := &fuse.Context{Caller: in.Caller, Cancel: cancel}
	switch in.NodeId {
	case hiddenIno:
		out.Fh = fs.m.handles.add(&listHandle{entries: hiddenEntries})
		return fuse.OK
	case snapshotsIno:
		return status(fs.m.openSnapshots(ctx, out))
	}
	return status(fs.opendir(in.NodeId, out))
}

func (fs *rawFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return fs.readdir(in, out, false)
}

func (fs *rawFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return fs.readdir(in, out, true)
}

func (fs *rawFS) readdir(in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	switch h := fs.m.handles.get(in.Fh).(type) {
	case *dirHandle:
		added, errno := h.readdir(in.Offset, out, plus)
		if !plus && added > 0 {
			fs.m.namesOnly.listed(in.NodeId)
		}
		return status(errno)
	case *listHandle:
		h.readdir(in.Offset, out, plus)
		return fuse.OK
	}
	return fuse.EBADF
}

func (fs *rawFS) ReleaseDir(in *fuse.ReleaseIn) { fs.m.handles.take(in.Fh) }

func (fs *rawFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	target, errno := fs.readlink(h.NodeId)
	return target, status(errno)
}

func (fs *rawFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	sz, errno := fs.getxattr(h.NodeId, attr, dest)
	return sz, status(errno)
}

func (fs *rawFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	if isSpecial(h.NodeId) {
		return 0, fuse.OK
	}
	_, _, n, _, errno := fs.node("listxattr", h.NodeId)
	if errno != 0 {
		return 0, status(errno)
	}
	sz, errno := listxattr(n, dest)
	return sz, status(errno)
}

func (fs *rawFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	v := fs.m
	if !isSpecial(h.NodeId) {
		if w, _, _, ok := fs.m.nodes.resolve(fs.m, h.NodeId); ok {
			v = w
		}
	}
	v.statfs(out)
	return fuse.OK
}
