// Command snapbench measures a store holding one big tree imported in one
// import, in one run: the import itself (a real `blockfs import` of a
// generated tree of empty files), mount start-up (open the store, ingest
// its metadata, mount, first listing of the root) before and after
// `blockfs compact`, and listing every file without a mount (`blockfs ls
// -R`, the catalog only) against `find` on the mounted tree, cold (a fresh
// mount) and warm. Start-up after a thousand small imports is
// BenchmarkStartup in fs/volume. Needs root and /dev/fuse; absolute
// numbers on a shared machine are noisy.
package main

import (
	"blockfs/bench/internal/freshmount"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"blockfs/fs/volume"
	"blockfs/internal/procs"
)

func main() {
	files := flag.Int("files", 200000, "number of files in the tree")
	perDir := flag.Int("per-dir", 1000, "files per directory")
	work := flag.String("work", "", "work directory to use and keep (default: a temporary one, removed)")
	flag.Parse()
	procs.More()
	if err := run(*files, *perDir, *work); err != nil {
		fmt.Fprintln(os.Stderr, "snapbench:", err)
		os.Exit(1)
	}
}

func run(files, perDir int, work string) error {
	if work == "" {
		dir, err := os.MkdirTemp("", "snapbench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		work = dir
	}
	bin, local, store, mnt := filepath.Join(work, "blockfs"), filepath.Join(work, "local"), filepath.Join(work, "store"), filepath.Join(work, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/blockfs").CombinedOutput(); err != nil {
		return fmt.Errorf("building blockfs: %v\n%s", err, out)
	}
	start := time.Now()
	if err := makeTree(local, files, perDir); err != nil {
		return err
	}
	fmt.Printf("tree: %d empty files in %d directories, written in %.1fs\n", files, (files+perDir-1)/perDir, time.Since(start).Seconds())
	d, err := timed(io.Discard, bin, "import", "--store", store, local, "/t")
	if err != nil {
		return err
	}
	snaps, err := snapshots(bin, store)
	if err != nil {
		return err
	}
	var added int64
	for _, s := range snaps {
		if s.Changes != nil {
			added += s.Changes.FilesAdded
		}
	}
	fmt.Printf("blockfs import (one import): %.1fs, %d snapshots, %d segments, %d files counted added\n",
		d.Seconds(), len(snaps), snaps[0].Segments, added)

	var findCold, findWarm time.Duration
	before, err := freshmount.Run(store, mnt, volume.Options{Lazy: true}, func() error {
		if findCold, err = timed(io.Discard, "find", filepath.Join(mnt, "t")); err != nil {
			return err
		}
		findWarm, err = timed(io.Discard, "find", filepath.Join(mnt, "t"))
		return err
	})
	if err != nil {
		return err
	}
	var lines lineCounter
	lsR, err := timed(&lines, bin, "ls", "-R", "--store", store, "/t")
	if err != nil {
		return err
	}
	if before, err = startup(store, mnt, before); err != nil {
		return err
	}
	if _, err := timed(io.Discard, bin, "compact", "--store", store); err != nil {
		return err
	}
	after, err := startup(store, mnt, 0)
	if err != nil {
		return err
	}
	if snaps, err = snapshots(bin, store); err != nil {
		return err
	}
	fmt.Printf("\nmount start-up (open lazily, mount, first ls; median of 3): %.2fs; after blockfs compact (%d segments): %.2fs\n",
		before.Seconds(), snaps[0].Segments, after.Seconds())
	fmt.Printf("\nlisting all %d files:\n", files)
	fmt.Printf("  %-44s %7.2fs (%d lines; no mount, the catalog only)\n", "blockfs ls -R (process: open lazily, list)", lsR.Seconds(), lines)
	fmt.Printf("  %-44s %7.2fs\n", "find on the mounted tree, cold (fresh mount)", findCold.Seconds())
	fmt.Printf("  %-44s %7.2fs\n", "find on the mounted tree, warm", findWarm.Seconds())
	fmt.Printf("  %-44s %7.2fs\n", "mount start-up + find cold", (before + findCold).Seconds())
	return nil
}

// makeTree writes files empty files in directories of perDir.
func makeTree(local string, files, perDir int) error {
	for i := range files {
		dir := filepath.Join(local, fmt.Sprintf("d%05d", i/perDir))
		if i%perDir == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%07d", i)))
		if err != nil {
			return err
		}
		f.Close()
	}
	return nil
}

func snapshots(bin, store string) ([]volume.Snapshot, error) {
	out, err := exec.Command(bin, "log", "--json", "--store", store).Output()
	if err != nil {
		return nil, fmt.Errorf("blockfs log: %w", err)
	}
	var js struct {
		Snapshots []volume.Snapshot `json:"snapshots"`
	}
	if err := json.Unmarshal(out, &js); err != nil || len(js.Snapshots) == 0 {
		return nil, fmt.Errorf("blockfs log: %d snapshots, %v", len(js.Snapshots), err)
	}
	return js.Snapshots, nil
}

// timed runs a command with its output to out and returns how long it took.
func timed(out io.Writer, name string, args ...string) (time.Duration, error) {
	c := exec.Command(name, args...)
	c.Stdout, c.Stderr = out, os.Stderr
	start := time.Now()
	if err := c.Run(); err != nil {
		return 0, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return time.Since(start), nil
}

type lineCounter int

func (l *lineCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			*l++
		}
	}
	return len(p), nil
}

// startup is the median start-up of 3 mounts of store (first, if not 0,
// is one measured already).
func startup(store, mnt string, first time.Duration) (time.Duration, error) {
	var ds []time.Duration
	if first != 0 {
		ds = append(ds, first)
	}
	for len(ds) < 3 {
		d, err := freshmount.Run(store, mnt, volume.Options{Lazy: true}, func() error { return nil })
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds[1], nil
}
