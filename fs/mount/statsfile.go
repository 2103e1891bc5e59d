package mount

import (
	"encoding/json"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// The hidden stats file. Each open snapshots the counters; the file is
// direct-I/O, and its entry and attributes are not cached, so the kernel
// never serves a stale copy. It is one of the mount's own nodes, at a
// nodeid in the reserved range: not in the node table.

// statsIno is the stats file's inode number and nodeid.
const statsIno = ^uint64(0) - 1

// statsHandle is one open of the stats file: the counters when it opened.
type statsHandle struct{ data []byte }

// lookupStats answers the lookup of StatsFileName at a root.
func lookupStats(out *fuse.EntryOut) {
	out.NodeId = statsIno
	fillSpecialAttr(statsIno, &out.Attr)
	out.SetEntryTimeout(0)
	out.SetAttrTimeout(0)
}

func (m *Mount) openStats(flags uint32, out *fuse.OpenOut) syscall.Errno {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return syscall.EROFS
	}
	data, err := json.MarshalIndent(m.Stats(), "", "  ")
	if err != nil {
		return syscall.EIO
	}
	out.Fh = m.handles.add(&statsHandle{data: append(data, '\n')})
	out.OpenFlags = fuse.FOPEN_DIRECT_IO
	return 0
}

func (h *statsHandle) read(dest []byte, off int64) fuse.ReadResult {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil)
	}
	return fuse.ReadResultData(h.data[off:min(int64(len(h.data)), off+int64(len(dest)))])
}

// isSpecial says whether nodeid is one of the mount's own nodes.
func isSpecial(nodeid uint64) bool {
	return nodeid == statsIno || nodeid == hiddenIno || nodeid == snapshotsIno
}

// fillSpecialAttr fills the attributes of one of the mount's own nodes,
// and says whether nodeid is one.
func fillSpecialAttr(nodeid uint64, a *fuse.Attr) bool {
	switch nodeid {
	case statsIno:
		a.Ino = statsIno
		a.Mode = syscall.S_IFREG | 0o444
		a.Nlink = 1
	case hiddenIno, snapshotsIno:
		fillHiddenDir(nodeid, a)
	default:
		return false
	}
	return true
}
