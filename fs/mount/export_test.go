package mount

import (
	"context"
	"syscall"

	"blockfs/fs/tree"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// MaxRead is the largest read the mount asks the kernel for.
const MaxRead = maxRead

// FirstPlusEntries is how many entries a listing's first READDIRPLUS
// answer holds in the kernel's adaptive mode.
const FirstPlusEntries = firstPlusEntries

// NewFileHandle opens the file n at p as a kernel open would, so that a
// test can drive its reads directly.
func NewFileHandle(m *Mount, p string, n *tree.Node) FileReader {
	return newFileHandle(m, p, n)
}

// FileReader is what a test drives of a file handle.
type FileReader interface {
	Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno)
}

// SetAfterRefresh makes the mount call fn after every background refresh.
func SetAfterRefresh(o *Options, fn func(changed bool, err error)) { o.afterRefresh = fn }

// CopyMapped is copyMapped, for a test with a real mapping.
var CopyMapped = copyMapped

// RefreshNow does what one tick of the refresh loop does, so that a test
// decides when the mount refreshes.
func RefreshNow(m *Mount) (bool, error) { return m.vol.Refresh(context.Background()) }

// FatalPending is fatalPending, for its table test.
var FatalPending = fatalPending
