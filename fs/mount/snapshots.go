package mount

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"blockfs/fs/volume"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// A running mount also serves every tag of its store, read-only, under
// /.blockfs/snapshots/<tag>/ (CVMFS's .cvmfs/snapshots is the model): a job
// pins the version it was validated on by path, without a mount of its
// own. /.blockfs is not listed in the root (tools that walk the tree do
// not see every version of it), only looked up.
//
// Each tag is served by a view: a Mount of its own over a volume pinned
// to the tag's snapshot (opened on the first lookup and kept until
// unmount, as handles opened on it may still read), sharing the main
// mount's pool, so a block read in two versions is fetched once. A view's
// inode numbers hash a prefix naming the tag and its generation, so they
// never meet the main tree's, another tag's, or the tag's earlier target.

// HiddenDirName is the root entry, not listed, under which the mount
// serves its store's tags (HiddenDirName/snapshots/<tag>).
const HiddenDirName = ".blockfs"

// tagsTTL is how long the tags read from the store are trusted, and the
// kernel keeps the entries (and absences) of snapshots/: a tag made,
// deleted or moved shows within it.
const tagsTTL = time.Second

// Inode numbers of the hidden directories, in the reserved range (the
// stats file has ^0-1).
const (
	hiddenIno    = ^uint64(0) - 2
	snapshotsIno = ^uint64(0) - 3
)

// snapshots is the main mount's state for serving tags.
type snapshots struct {
	tagsMu sync.Mutex // apart from mu: listing tags does not wait for a view opening
	tags   map[string]volume.Tag
	read   time.Time // when tags were read

	mu     sync.Mutex
	views  map[string]*Mount // by viewKey
	closed bool
}

// viewKey names a tag's target: a moved tag is a new view.
func viewKey(t volume.Tag) string { return t.Name + "\x00" + strconv.FormatUint(t.Generation, 10) }

// currentTags returns the store's tags, read again if older than tagsTTL.
func (m *Mount) currentTags(ctx context.Context) (map[string]volume.Tag, error) {
	s := &m.snaps
	s.tagsMu.Lock()
	defer s.tagsMu.Unlock()
	if s.tags != nil && time.Since(s.read) < tagsTTL {
		return s.tags, nil
	}
	list, err := m.vol.Tags(ctx)
	if err != nil {
		return nil, err
	}
	s.tags = make(map[string]volume.Tag, len(list))
	for _, t := range list {
		s.tags[t.Name] = t
	}
	s.read = time.Now()
	return s.tags, nil
}

// view returns the view serving tag t, opening it the first time.
func (m *Mount) view(ctx context.Context, t volume.Tag) (*Mount, error) {
	s := &m.snaps
	s.mu.Lock()
	defer s.mu.Unlock()
	key := viewKey(t)
	if v := s.views[key]; v != nil {
		return v, nil
	}
	if s.closed {
		return nil, syscall.ENOTCONN
	}
	// The generation, not the tag, is what is pinned: a tag moved since it
	// was read opens what it named then, and the next lookup the rest.
	vol, err := m.vol.OpenAt(ctx, strconv.FormatUint(t.Generation, 10))
	if err != nil {
		return nil, err
	}
	if err := checkRoot(vol); err != nil {
		vol.Close()
		return nil, err
	}
	opts := m.opts
	opts.TraceTrigger = "" // the trace is the main tree's
	opts.Refresh = -1
	v := &Mount{
		vol: vol, pool: m.pool, opts: opts, mountpoint: m.mountpoint, started: time.Now(),
		nodes: m.nodes, handles: m.handles,
		stop: make(chan struct{}), badSeen: map[string]struct{}{},
		idPrefix: "\x00snapshot\x00" + key + "\x00",
	}
	if s.views == nil {
		s.views = map[string]*Mount{}
	}
	s.views[key] = v
	return v, nil
}

// closeViews closes the views' volumes, once the kernel is done with
// the mount.
func (m *Mount) closeViews() {
	s := &m.snaps
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, v := range s.views {
		if err := v.vol.Close(); err != nil {
			m.opts.Logger.Warn("closing snapshot view", "store", v.vol.Spec, "err", err)
		}
	}
	s.views = nil
}

// lookupHidden answers the root's lookup of HiddenDirName.
func (m *Mount) lookupHidden(out *fuse.EntryOut) {
	out.NodeId = hiddenIno
	fillHiddenDir(hiddenIno, &out.Attr)
	out.SetEntryTimeout(m.opts.CacheTimeout)
	out.SetAttrTimeout(m.opts.CacheTimeout)
}

func fillHiddenDir(ino uint64, a *fuse.Attr) {
	a.Ino = ino
	a.Mode = syscall.S_IFDIR | 0o555
	a.Nlink = 2
}

// specialTimeout is how long the kernel may keep the attributes of one of
// the mount's own nodes.
func specialTimeout(m *Mount, nodeid uint64) time.Duration {
	switch nodeid {
	case statsIno:
		return 0
	case snapshotsIno:
		return tagsTTL
	}
	return m.opts.CacheTimeout
}

// hiddenEntries is the listing of /.blockfs.
var hiddenEntries = []fuse.DirEntry{{Name: "snapshots", Mode: syscall.S_IFDIR, Ino: snapshotsIno}}

// lookupInHidden answers lookups in /.blockfs, which holds snapshots/.
func (m *Mount) lookupInHidden(name string, out *fuse.EntryOut) syscall.Errno {
	if name != "snapshots" {
		out.SetEntryTimeout(m.opts.CacheTimeout)
		return 0 // a negative entry
	}
	out.NodeId = snapshotsIno
	fillHiddenDir(snapshotsIno, &out.Attr)
	out.SetEntryTimeout(m.opts.CacheTimeout)
	out.SetAttrTimeout(tagsTTL)
	return 0
}

// lookupSnapshot answers the lookup of a tag in /.blockfs/snapshots: the
// root of its view. The entry (and an absence) is kept for tagsTTL only:
// the kernel asks again soon, and sees a tag made, deleted or moved since.
func (m *Mount) lookupSnapshot(ctx context.Context, name string, out *fuse.EntryOut) syscall.Errno {
	tags, err := m.currentTags(ctx)
	if err != nil {
		return m.errno("lookup", "/"+HiddenDirName+"/snapshots", err)
	}
	out.SetEntryTimeout(tagsTTL)
	t, ok := tags[name]
	if !ok {
		return 0 // a negative entry
	}
	v, err := m.view(ctx, t)
	if err != nil {
		return m.errno("lookup", "/"+HiddenDirName+"/snapshots/"+name, err)
	}
	root, err := v.vol.Tree.Lookup("/")
	if err != nil {
		return v.errno("lookup", "/", err)
	}
	id := v.identity("/", root)
	out.NodeId = m.nodes.addView(snapshotsIno, name, id, v)
	out.Generation = id.gen
	v.fillAttr(root, id.ino, &out.Attr)
	out.SetAttrTimeout(m.opts.CacheTimeout)
	return 0
}

// openSnapshots lists /.blockfs/snapshots: one directory per tag.
func (m *Mount) openSnapshots(ctx context.Context, out *fuse.OpenOut) syscall.Errno {
	tags, err := m.currentTags(ctx)
	if err != nil {
		return m.errno("readdir", "/"+HiddenDirName+"/snapshots", err)
	}
	entries := make([]fuse.DirEntry, 0, len(tags))
	for name := range tags {
		entries = append(entries, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR})
	}
	sortEntries(entries)
	out.Fh = m.handles.add(&listHandle{entries: entries})
	return 0
}

func sortEntries(e []fuse.DirEntry) {
	slices.SortFunc(e, func(a, b fuse.DirEntry) int { return strings.Compare(a.Name, b.Name) })
}
