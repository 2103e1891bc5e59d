package bench

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/s3"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/importer"
	"blockfs/fs/mount"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"

	"golang.org/x/sys/unix"
)

// The start-up the cold-start benchmark times: the import set of issue 20.
const coldStartImports = "import json, email.parser, http.client, asyncio, decimal, sqlite3, xml.etree.ElementTree, argparse, logging, unittest, urllib.request, csv, zipfile, tarfile"

// coldStartPython is the interpreter and the standard library it runs
// from (BLOCKFS_COLDSTART_PYTHON, BLOCKFS_COLDSTART_LIB override them).
func coldStartPython() (python, lib string) {
	python, lib = "/usr/bin/python3.11", "/usr/lib/python3.11"
	if v := os.Getenv("BLOCKFS_COLDSTART_PYTHON"); v != "" {
		python = v
	}
	if v := os.Getenv("BLOCKFS_COLDSTART_LIB"); v != "" {
		lib = v
	}
	return python, lib
}

// runPython times one start-up with its standard library under home.
func runPython(b *testing.B, python, home string) time.Duration {
	b.Helper()
	cmd := exec.Command(python, "-S", "-c", coldStartImports)
	cmd.Env = append(os.Environ(), "PYTHONHOME="+home, "PYTHONDONTWRITEBYTECODE=1")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("python with PYTHONHOME=%s: %v\n%s", home, err, out)
	}
	return time.Since(start)
}

// dropCache evicts a local tree's files from the page cache, so that a
// local run is cold without dropping the whole machine's cache.
func dropCache(b *testing.B, root string) {
	b.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// coldVariant is one way of storing the tree.
type coldVariant struct {
	name      string
	pack      importer.Options
	mount     mount.Options
	spec      string
	imported  time.Duration
	puts      int64
	heads     int64
	stats     importer.Stats
	cold      []time.Duration
	gets      []int64
	warm      []time.Duration
	usesSpecs string // another variant's store, by name
	record    bool   // an untimed run first records the trigger's trace
}

// BenchmarkColdStart: a Python start-up (the imports of issue 20) with its
// standard library on a blockfs mount over MinIO with 20 ms per request
// (in-process toxiproxy), cold on a fresh mount, side by side with the
// same tree on local disk (cold: evicted with fadvise) and warm. Imports
// go through the same latency, with and without packing, counted in
// MinIO's PUTs and HEADs. Run it with bench/coldstart.sh.
func BenchmarkColdStart(b *testing.B) {
	python, lib := coldStartPython()
	if _, err := os.Stat(filepath.Join(lib, "json")); err != nil {
		b.Skipf("no Python standard library at %s: %v", lib, err)
	}
	home := b.TempDir()
	local := filepath.Join(home, "lib", filepath.Base(lib))
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", lib, local).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v %s", err, out)
	}
	files := 0
	_ = filepath.WalkDir(local, func(_ string, d fs.DirEntry, _ error) error {
		if d != nil && d.Type().IsRegular() {
			files++
		}
		return nil
	})
	m := testsvc.SharedMinIO(b)
	proxy := testsvc.StartProxy(b, m.Host())
	proxy.Latency(20 * time.Millisecond)
	cfg := s3Config(m, proxy.Endpoint())
	dest := "/lib/" + filepath.Base(lib)

	variants := []*coldVariant{
		{name: "mount cold, no packs"},
		{name: "mount cold, packs, no sibling prefetch", pack: importer.Options{PackBelow: 64 << 10}, mount: mount.Options{SiblingPrefetch: -1}},
		{name: "mount cold, packs + sibling prefetch", pack: importer.Options{PackBelow: 64 << 10}, usesSpecs: "mount cold, packs, no sibling prefetch"},
		{name: "mount cold, packs < 1 MiB + prefetch", pack: importer.Options{PackBelow: importer.MaxPackBelow}},
		{name: "mount cold, packs < 1 MiB + replayed trace", usesSpecs: "mount cold, packs < 1 MiB + prefetch", record: true,
			mount: mount.Options{TraceTrigger: dest + "/encodings/__pycache__/__init__.cpython-311.pyc"}},
	}
	byName := map[string]*coldVariant{}
	for _, v := range variants {
		byName[v.name] = v
		if v.usesSpecs != "" {
			v.spec = byName[v.usesSpecs].spec
			continue
		}
		v.spec = "s3://" + m.NewBucket(b) + "/cold"
		puts, heads := m.Requests(b, "putobject"), m.Requests(b, "headobject")
		vol, err := volume.Open(context.Background(), v.spec, volume.Options{Options: storeurl.Options{Create: true, S3: cfg}})
		if err != nil {
			b.Fatal(err)
		}
		im, err := importer.New(vol, v.pack)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if v.stats, err = im.Import(context.Background(), local, dest); err != nil {
			b.Fatal(err)
		}
		v.imported = time.Since(start)
		vol.Close()
		v.puts, v.heads = m.Requests(b, "putobject")-puts, m.Requests(b, "headobject")-heads
	}

	for _, v := range variants {
		if v.record { // Unmount publishes the recording
			dir, unmount := mountBlockfs(b, v.spec, cfg, v.mount)
			runPython(b, python, dir)
			unmount()
			fmt.Printf("recorded a trace of %d blocks for %s\n", traceLen(b, v.spec, cfg, v.mount.TraceTrigger), v.mount.TraceTrigger)
		}
	}

	const rounds = 3
	var localCold, localWarm []time.Duration
	runPython(b, python, home) // the interpreter itself, off the mount, warm for all
	for range rounds {
		dropCache(b, local)
		localCold = append(localCold, runPython(b, python, home))
		localWarm = append(localWarm, runPython(b, python, home))
		for _, v := range variants {
			dir, unmount := mountBlockfs(b, v.spec, cfg, v.mount)
			gets := m.Requests(b, "getobject")
			v.cold = append(v.cold, runPython(b, python, dir))
			v.gets = append(v.gets, m.Requests(b, "getobject")-gets)
			v.warm = append(v.warm, runPython(b, python, dir))
			unmount()
		}
	}
	printColdStart(files, localCold, localWarm, variants)
}

func medianDur(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func printColdStart(files int, localCold, localWarm []time.Duration, variants []*coldVariant) {
	lc := medianDur(localCold)
	fmt.Printf("Python start-up (%d-file standard library), MinIO + toxiproxy 20 ms per request; median of %d rounds, [each round]:\n", files, len(localCold))
	row := func(name string, d []time.Duration, extra string) {
		fmt.Printf("  %-40s %7.3f s  %5.1fx local cold  %v%s\n", name, medianDur(d).Seconds(), medianDur(d).Seconds()/lc.Seconds(), d, extra)
	}
	row("local disk, cold (fadvise)", localCold, "")
	row("local disk, warm", localWarm, "")
	for _, v := range variants {
		row(v.name, v.cold, fmt.Sprintf("  GETs %v", v.gets))
	}
	for _, v := range variants {
		row(v.name+" -> warm", v.warm, "")
	}
	fmt.Println("import of the tree to MinIO through the same 20 ms:")
	for _, v := range variants {
		if v.usesSpecs != "" {
			continue
		}
		st := v.stats
		fmt.Printf("  %-40s %6.2f s  %5.0f files/s  %6.1f MiB/s  PUTs %d  HEADs %d  (%d files, %d packed in %d packs)\n",
			fmt.Sprintf("pack below %d KiB", v.pack.PackBelow>>10), v.imported.Seconds(), float64(st.Files)/v.imported.Seconds(),
			float64(st.Bytes)/(1<<20)/v.imported.Seconds(), v.puts, v.heads, st.Files, st.Packed, st.Packs)
	}
}

// traceLen is how many blocks the published trace of trigger names.
func traceLen(b *testing.B, spec string, cfg *s3.Config, trigger string) int {
	b.Helper()
	vol, err := volume.Open(context.Background(), spec, volume.Options{Options: storeurl.Options{S3: cfg}})
	if err != nil {
		b.Fatal(err)
	}
	defer vol.Close()
	n, err := vol.Tree.Lookup(trigger)
	if err != nil {
		b.Fatal(err)
	}
	refs, _ := blockstore.As[blockstore.RefStore](vol.Blocks)
	data, _, err := refs.GetRef(context.Background(), "traces/"+strings.TrimPrefix(mount.ContentHash(n), "sha256:"))
	if err != nil {
		b.Fatal(err)
	}
	locs, err := mount.DecodeTrace(data)
	if err != nil {
		b.Fatal(err)
	}
	return len(locs)
}
