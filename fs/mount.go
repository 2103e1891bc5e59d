package fs

import (
	"bufio"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"blockfs/blockstore"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// ErrMountpoint is wrapped by every mountpoint problem found before mounting.
var ErrMountpoint = errors.New("bad mountpoint")

// MountOptions tune a mount; the zero value is sensible.
type MountOptions struct {
	PoolSize   int64 // bytes of block buffers shared by all reads (default 256 MiB)
	Readahead  int   // blocks prefetched ahead of a sequential reader (default 4; 0 keeps default, <0 disables)
	AllowOther bool  // let other users read the mount
	Debug      bool  // log every FUSE request
	// CacheTimeout is how long the kernel may cache names and attributes.
	// The data is immutable, so it is long (default 1h).
	CacheTimeout time.Duration
	Logger       *log.Logger // errors worth an operator's eye (default: stderr)
}

// maxRead is the largest FUSE read we ask the kernel for: big reads mean
// fewer round trips through the kernel for large sequential files.
const maxRead = 1 << 20

// Mount is a running FUSE mount of a Volume.
type Mount struct {
	vol        *Volume
	pool       *blockstore.Pool
	opts       MountOptions
	server     *fuse.Server
	mountpoint string
	started    time.Time
	counters   fuseCounters

	inoMu sync.Mutex
	inos  map[string]uint64 // path -> inode number, stable for the mount's life
}

// Serve mounts vol at mountpoint and starts answering the kernel. It returns
// once the mount is ready; Wait blocks until it is unmounted.
func Serve(mountpoint string, vol *Volume, opts MountOptions) (*Mount, error) {
	abs, err := CheckMountpoint(mountpoint)
	if err != nil {
		return nil, err
	}
	if opts.PoolSize <= 0 {
		opts.PoolSize = 256 << 20
	}
	if opts.Readahead == 0 {
		opts.Readahead = 4
	}
	if opts.CacheTimeout <= 0 {
		opts.CacheTimeout = time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = log.New(os.Stderr, "blockfs: ", log.LstdFlags)
	}
	m := &Mount{
		vol: vol, opts: opts, mountpoint: abs, started: time.Now(),
		inos: map[string]uint64{"/": 1},
		pool: blockstore.NewPool(vol.Blocks, blockstore.PoolConfig{
			MaxBytes: opts.PoolSize,
			// Kernel requests must not fail because many wait: they queue.
			MaxWaiters: 1 << 20,
		}),
	}
	timeout := opts.CacheTimeout
	root := &dirNode{mount: m, path: "/"}
	server, err := gofs.Mount(abs, root, &gofs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		// A name that is not there now may appear after a refresh; keep
		// negative entries short.
		NegativeTimeout: ptr(time.Second),
		RootStableAttr:  &gofs.StableAttr{Ino: 1},
		MountOptions: fuse.MountOptions{
			FsName:      "blockfs:" + vol.Spec,
			Name:        "blockfs",
			AllowOther:  opts.AllowOther,
			Debug:       opts.Debug,
			DirectMount: true,
			// Read-only at the mount level too, so mount(8) and mountinfo say ro.
			DirectMountFlags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV,
			MaxWrite:         maxRead,
			MaxReadAhead:     maxRead,
			Options:          []string{"ro", "default_permissions"},
			DisableSplice:    true, // results are pool buffers or copies, never file descriptors
		},
	})
	if err != nil {
		m.pool.Close()
		return nil, fmt.Errorf("mounting %s at %s: %w", vol.Spec, abs, err)
	}
	m.server = server
	TuneReadahead(abs)
	return m, nil
}

func ptr[T any](v T) *T { return &v }

// Pool is the mount's shared buffer pool.
func (m *Mount) Pool() *blockstore.Pool { return m.pool }

// Mountpoint is where the mount is, as an absolute path.
func (m *Mount) Mountpoint() string { return m.mountpoint }

// Wait blocks until the file system is unmounted (by Unmount, umount or
// fusermount -u).
func (m *Mount) Wait() {
	m.server.Wait()
	m.pool.Close()
}

// Unmount detaches the mount; Wait returns afterwards.
func (m *Mount) Unmount() error {
	return m.server.Unmount()
}

// Stats snapshots the mount's counters.
func (m *Mount) Stats() Stats {
	return Stats{
		Kind: "mount", Store: m.vol.Spec, Mountpoint: m.mountpoint,
		UptimeNs: int64(time.Since(m.started)),
		Pool:     m.pool.Stats(),
		Fuse:     m.counters.snapshot(),
	}
}

// ino returns the inode number of path p, the same one every time.
func (m *Mount) ino(p string) uint64 {
	m.inoMu.Lock()
	defer m.inoMu.Unlock()
	n, ok := m.inos[p]
	if !ok {
		n = uint64(len(m.inos) + 1)
		m.inos[p] = n
	}
	return n
}

// TuneReadahead lets the kernel read ahead by maxRead on the FUSE mount at
// mountpoint rather than its default 128 KiB, so that a sequential reader
// issues 1 MiB requests. It needs root; without it a mount still works, with
// smaller requests.
func TuneReadahead(mountpoint string) {
	var st syscall.Stat_t
	if err := syscall.Stat(mountpoint, &st); err != nil {
		return
	}
	major, minor := (st.Dev>>8)&0xfff, (st.Dev&0xff)|((st.Dev>>12)&0xfff00)
	f := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor)
	_ = os.WriteFile(f, []byte(strconv.Itoa(maxRead>>10)), 0)
}

// CheckMountpoint returns the absolute path of mountpoint, or a clear error
// if it is missing, not a directory, or already a mount point.
func CheckMountpoint(mountpoint string) (string, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w: %w", mountpoint, ErrMountpoint, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w: %w", mountpoint, ErrMountpoint, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("mountpoint %s: %w: not a directory", mountpoint, ErrMountpoint)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	mounted, err := isMountpoint(abs)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", mountpoint, err)
	}
	if mounted {
		return "", fmt.Errorf("mountpoint %s: %w: something is already mounted there", mountpoint, ErrMountpoint)
	}
	return abs, nil
}

// isMountpoint reports whether dir is listed in /proc/self/mountinfo.
func isMountpoint(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == dir {
			return true, nil
		}
	}
	return false, s.Err()
}

// unescapeMountinfo undoes the kernel's octal escaping of spaces and the like.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
