// Command metabench measures metadata operations through a blockfs mount
// side by side with the same tree on the local disk, in one run: `find`,
// `ls -lR` (on its own, and after a `find` that left the listings cached
// as names) and a stat of every file, cold and warm, plus the mount's
// start-up time and resident memory after a full walk.
//
// The tree is N empty files in directories of -per-dir files. Its
// metadata is written to a directory store directly (as an import would
// write it, without reading any file), so that a big tree is quick to set
// up; no file data is read by the measurements. Cold means a fresh mount
// (nothing in the kernel's caches for it) and, for the local disk, after
// dropping the kernel's caches (echo 3 > /proc/sys/vm/drop_caches). The
// mount is served by this process, so its RSS is the mount's. Needs root
// and /dev/fuse; absolute numbers on a shared machine are noisy.
package main

import (
	"blockfs/bench/internal/freshmount"
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"blockfs/blockstore/storeurl"
	"blockfs/fs/mount"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/procs"
	"blockfs/objects"
)

func main() {
	files := flag.Int("files", 20000, "number of files in the tree")
	perDir := flag.Int("per-dir", 1000, "files per directory")
	keep := flag.String("work", "", "work directory to use and keep (default: a temporary one, removed)")
	memChild := flag.String("memory-of", "", "(internal) mount this store at -work/mnt, walk it and print memory figures")
	flag.BoolVar(&mountOnly, "mount-only", false, "write the store only (no local tree) and time the mount's start-up and a find through it, cold and warm: for trees too big to also write to the local disk (10M files)")
	flag.BoolVar(&ingest, "ingest", false, "mount by ingesting every metadata segment (as before metadata parts) instead of from the parts, as blockfs mount does")
	flag.Parse()
	procs.More()
	if *memChild != "" {
		if err := memoryChild(*memChild, filepath.Join(*keep, "mnt"), *files); err != nil {
			fmt.Fprintln(os.Stderr, "metabench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*files, *perDir, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "metabench:", err)
		os.Exit(1)
	}
}

// ingest: mount as releases before metadata parts did (-ingest).
var ingest bool

// mountOnly: no local tree, only the mount's start-up and find (-mount-only).
var mountOnly bool

// openVolume opens the store as blockfs mount does (lazily, from its
// metadata parts), or with -ingest by ingesting every segment.
func openVolume(store string) (*volume.Volume, error) {
	return volume.Open(context.Background(), store, volume.Options{Lazy: !ingest})
}

func run(files, perDir int, work string) error {
	if work == "" {
		dir, err := os.MkdirTemp("", "metabench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		work = dir
	}
	local, store, mnt := filepath.Join(work, "local"), filepath.Join(work, "store"), filepath.Join(work, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	start := time.Now()
	if mountOnly {
		local = ""
	}
	paths, err := makeTree(local, store, files, perDir)
	if err != nil {
		return err
	}
	if mountOnly {
		fmt.Printf("tree: %d files in %d directories, store written in %.1fs\n", files, (files+perDir-1)/perDir, time.Since(start).Seconds())
		return startupAndFind(store, mnt, files, perDir)
	}
	fmt.Printf("tree: %d files in %d directories, local tree and store written in %.1fs\n",
		files, (files+perDir-1)/perDir, time.Since(start).Seconds())
	list := filepath.Join(work, "paths")
	if err := os.WriteFile(list, []byte(strings.Join(paths, "\x00")), 0o644); err != nil {
		return err
	}
	find := []string{"find", ".", "-type", "f"}
	ops := []struct {
		name   string
		before []string // run untimed first, on the cold tree (a walk of names that leaves the listings cached)
		cmd    []string
	}{
		{"find -type f", nil, find},
		{"ls -lR", nil, []string{"ls", "-lR", "."}},
		{"ls -lR after find", find, []string{"ls", "-lR", "."}},
		{"stat every file", nil, []string{"sh", "-c", "xargs -0 stat -c %i < " + list}},
	}
	fmt.Printf("\n%-18s %10s %10s %10s %10s %8s %8s\n", "", "local cold", "local warm", "mount cold", "mount warm", "cold x", "warm x")
	var startup time.Duration
	for _, op := range ops {
		cold := true
		if op.before != nil {
			if _, err := timed(local, op.before, true); err != nil {
				return err
			}
			cold = false // what the walk before left cached stays
		}
		lc, err := timed(local, op.cmd, cold)
		if err != nil {
			return err
		}
		lw, err := timed(local, op.cmd, false)
		if err != nil {
			return err
		}
		var mc, mw time.Duration
		startup, err = freshmount.Run(store, mnt, volume.Options{Lazy: !ingest}, func() error {
			if op.before != nil {
				if _, err := timed(mnt, op.before, false); err != nil {
					return err
				}
			}
			if mc, err = timed(mnt, op.cmd, false); err != nil {
				return err
			}
			mw, err = timed(mnt, op.cmd, false)
			return err
		})
		if err != nil {
			return err
		}
		fmt.Printf("%-18s %9.2fs %9.2fs %9.2fs %9.2fs %7.1fx %7.1fx\n", op.name, lc.Seconds(), lw.Seconds(),
			mc.Seconds(), mw.Seconds(), mc.Seconds()/lc.Seconds(), mw.Seconds()/lw.Seconds())
	}
	how := "fetch the root metadata part"
	if ingest {
		how = "ingest every metadata segment"
	}
	fmt.Printf("\nmount start-up (open the store, %s, mount, first ls): %.2fs\n", how, startup.Seconds())
	// Memory is measured in a fresh process of its own, which does
	// nothing but mount and walk.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	c := exec.Command(self, "-memory-of", store, "-work", work, "-files", strconv.Itoa(files), "-ingest="+strconv.FormatBool(ingest))
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	return c.Run()
}

// memoryChild mounts store at mnt, runs ls -lR through it and prints the
// process's memory before and after.
func memoryChild(store, mnt string, files int) error {
	rssBase, heapBase := memory()
	vol, err := openVolume(store)
	if err != nil {
		return err
	}
	defer vol.Close()
	rssOpen, heapOpen := memory()
	m, err := mount.Start(mnt, vol, mount.Options{Refresh: -1})
	if err != nil {
		return err
	}
	defer func() {
		m.Unmount()
		m.Wait()
	}()
	if _, err := timed(mnt, []string{"ls", "-lR", "."}, false); err != nil {
		return err
	}
	rssAfter, heapAfter := memory()
	per := func(a, b uint64) string {
		return fmt.Sprintf("%.1f MiB (%.0f bytes/file)", mib(a-b), float64(int64(a-b))/float64(files))
	}
	fmt.Printf("memory of a fresh mount process, after ls -lR of all %d files through it:\n", files)
	fmt.Printf("  RSS %.1f MiB: %s for the volume opened, %s more for the walk\n", mib(rssAfter), per(rssOpen, rssBase), per(rssAfter, rssOpen))
	fmt.Printf("  Go heap in use: %s for the volume opened (the metadata log and its index, or the root part), %s more for the walk (parts fetched, the mount's node table, garbage not yet collected)\n",
		per(heapOpen, heapBase), per(heapAfter, heapOpen))
	return nil
}

// makeTree writes the local tree and the same tree's metadata to a new
// directory store, and returns the files' paths relative to the root.
func makeTree(local, store string, files, perDir int) ([]string, error) {
	ctx := context.Background()
	vol, err := volume.Open(ctx, store, volume.Options{Options: storeurl.Options{Create: true}})
	if err != nil {
		return nil, err
	}
	defer vol.Close()
	mtime := time.Now().UnixNano()
	dirNode := &tree.Node{Kind: tree.KindDir, Mode: 0o755, MtimeNs: mtime}
	fileNode := &tree.Node{Kind: tree.KindFile, Mode: 0o644, MtimeNs: mtime}
	var batch []objects.Entry
	flush := func() error {
		err := vol.Meta.MultiWrite(batch)
		batch = batch[:0]
		return err
	}
	paths := make([]string, 0, files)
	for i := range files {
		dir := fmt.Sprintf("d%05d", i/perDir)
		if i%perDir == 0 {
			if local != "" {
				if err := os.MkdirAll(filepath.Join(local, dir), 0o755); err != nil {
					return nil, err
				}
			}
			batch = append(batch, tree.Entry("/"+dir, dirNode))
		}
		p := fmt.Sprintf("%s/f%07d", dir, i)
		batch = append(batch, tree.Entry("/"+p, fileNode))
		if local != "" {
			f, err := os.Create(filepath.Join(local, p))
			if err != nil {
				return nil, err
			}
			f.Close()
			paths = append(paths, p)
		}
		if len(batch) >= 10000 {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return paths, vol.Publish(ctx)
}

// startupAndFind times a fresh mount's start-up (open, root part, mount,
// first ls), the first stat of a file deep in the tree and a find of every
// file, cold (the fresh mount) and warm.
func startupAndFind(store, mnt string, files, perDir int) error {
	var deep, cold, warm time.Duration
	startup, err := freshmount.Run(store, mnt, volume.Options{Lazy: !ingest}, func() error {
		start := time.Now()
		if _, err := os.Stat(filepath.Join(mnt, fmt.Sprintf("d%05d/f%07d", (files-1)/perDir, files-1))); err != nil {
			return err
		}
		deep = time.Since(start)
		var err error
		if cold, err = timed(mnt, []string{"find", ".", "-type", "f"}, false); err != nil {
			return err
		}
		warm, err = timed(mnt, []string{"find", ".", "-type", "f"}, false)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("mount start-up (open the store, fetch the root metadata part, mount, first ls): %.3fs\n", startup.Seconds())
	fmt.Printf("first stat of a file in the last directory: %.3fs\n", deep.Seconds())
	fmt.Printf("find -type f of all %d files: cold %.2fs, warm %.2fs\n", files, cold.Seconds(), warm.Seconds())
	return nil
}

// timed runs cmd in dir with its output discarded; cold drops the
// kernel's caches first.
func timed(dir string, cmd []string, cold bool) (time.Duration, error) {
	if cold {
		exec.Command("sync").Run()
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
			return 0, fmt.Errorf("dropping caches: %w", err)
		}
	}
	c := exec.Command(cmd[0], cmd[1:]...)
	c.Dir = dir
	c.Stderr = os.Stderr
	start := time.Now()
	if err := c.Run(); err != nil {
		return 0, fmt.Errorf("%s in %s: %w", strings.Join(cmd, " "), dir, err)
	}
	return time.Since(start), nil
}

// memory returns this process's resident set and Go heap in use, after a
// collection that returns the freed memory to the OS (else garbage of
// the metadata's ingest, reused by the walk, hides what the walk holds).
func memory() (rss, heap uint64) {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, ms.HeapInuse
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb << 10
		}
	}
	return rss, ms.HeapInuse
}

func mib(b uint64) float64 { return float64(int64(b)) / (1 << 20) }
