// Package freshmount mounts a store as a fresh compute node would, for the
// benchmarks that time a mount's start-up (bench/metabench, snapbench).
package freshmount

import (
	"context"
	"os"
	"time"

	"blockfs/fs/mount"
	"blockfs/fs/volume"
)

// Run opens the store with opts (Lazy, as blockfs mount does, unless a
// benchmark compares the ingesting path), mounts it at mnt, lists the root,
// runs fn and unmounts. It returns the start-up time: open to the first
// listing of the root.
func Run(store, mnt string, opts volume.Options, fn func() error) (time.Duration, error) {
	start := time.Now()
	vol, err := volume.Open(context.Background(), store, opts)
	if err != nil {
		return 0, err
	}
	defer vol.Close()
	m, err := mount.Start(mnt, vol, mount.Options{Refresh: -1})
	if err != nil {
		return 0, err
	}
	defer func() {
		m.Unmount()
		m.Wait()
	}()
	if _, err := os.ReadDir(mnt); err != nil {
		return 0, err
	}
	startup := time.Since(start)
	return startup, fn()
}
