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

// coldJob is one start-up the benchmark times: a tree copied under a
// local home and imported at the same path (dest) into the store, and the
// program run over either (run gets the home, or the mount's root).
type coldJob struct {
	what     string // for the printout
	src      string
	dest     string
	run      func(b *testing.B, home string) time.Duration
	variants []*coldVariant
	rounds   int
	noRuns   bool // only the imports are measured
	// mountBin, if set, mounts with this blockfs binary as a child process
	// (only the mount's TraceTrigger is passed on), as users mount.
	mountBin string
}

// mount mounts a variant's store, in process or as a child process.
func (job *coldJob) mount(b *testing.B, m *testsvc.MinIO, endpoint string, cfg *s3.Config, v *coldVariant) (string, func()) {
	b.Helper()
	if job.mountBin == "" {
		return mountBlockfs(b, v.spec, cfg, v.mount)
	}
	dir := b.TempDir()
	args := []string{"mount", "--store", v.spec}
	if v.mount.TraceTrigger != "" {
		args = append(args, "--trace", v.mount.TraceTrigger)
	}
	cmd := exec.Command(job.mountBin, append(args, dir)...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+m.AccessKey(), "AWS_SECRET_ACCESS_KEY="+m.SecretKey(),
		"AWS_ENDPOINT_URL="+endpoint, "AWS_REGION=us-east-1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { // after a failure, before the TempDir's removal
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(unix.SIGTERM)
			_ = cmd.Wait()
		}
		if b.Failed() {
			b.Logf("blockfs mount at %s:\n%s", dir, stderr.String())
		}
	})
	testsvc.WaitFor(b, "the blockfs mount at "+dir, func() bool { return isMounted(dir) })
	return dir, func() {
		_ = cmd.Process.Signal(unix.SIGTERM) // it unmounts, publishes a recorded trace and exits
		if err := cmd.Wait(); err != nil {
			b.Fatalf("blockfs mount: %v\n%s", err, stderr.String())
		}
	}
}

// isMounted reports whether dir is a mount point.
func isMounted(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
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
	dest := "/lib/" + filepath.Base(lib)
	runColdJob(b, &coldJob{
		what: "Python start-up", src: lib, dest: dest, rounds: 3,
		run: func(b *testing.B, home string) time.Duration { return runPython(b, python, home) },
		variants: []*coldVariant{
			{name: "mount cold, no packs", pack: importer.Options{PackBelow: 0}},
			{name: "mount cold, packs, no sibling prefetch", pack: importer.Options{PackBelow: 64 << 10}, mount: mount.Options{SiblingPrefetch: -1}},
			{name: "mount cold, packs + sibling prefetch", pack: importer.Options{PackBelow: 64 << 10}, usesSpecs: "mount cold, packs, no sibling prefetch"},
			{name: "mount cold, packs < 1 MiB + prefetch", pack: importer.Options{PackBelow: importer.MaxPackBelow}},
			{name: "mount cold, packs < 1 MiB + replayed trace", usesSpecs: "mount cold, packs < 1 MiB + prefetch", record: true,
				mount: mount.Options{TraceTrigger: dest + "/encodings/__pycache__/__init__.cpython-311.pyc"}},
		},
	})
}

// runColdJob imports the job's tree once per variant that has its own
// store, records the traces, then times rounds of local cold, local warm
// and, per variant, a fresh mount's cold and warm run, and prints them.
func runColdJob(b *testing.B, job *coldJob) {
	home := b.TempDir()
	local := filepath.Join(home, job.dest)
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", job.src, local).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v %s", err, out)
	}
	files, bytes := treeSize(local)
	m := testsvc.SharedMinIO(b)
	proxy := testsvc.StartProxy(b, m.Host())
	proxy.Latency(20 * time.Millisecond)
	cfg := s3Config(m, proxy.Endpoint())
	importVariants(b, m, cfg, local, job)
	if job.noRuns {
		printImports(job.what, files, bytes, job.variants)
		return
	}
	job.run(b, home) // what the job needs off the tree (an interpreter, a build cache) warm for all
	for _, v := range job.variants {
		if v.record { // Unmount publishes the recording
			dir, unmount := job.mount(b, m, proxy.Endpoint(), cfg, v)
			job.run(b, dir)
			unmount()
			fmt.Printf("recorded a trace of %d blocks for %s\n", traceLen(b, v.spec, cfg, v.mount.TraceTrigger), v.mount.TraceTrigger)
		}
	}
	var localCold, localWarm []time.Duration
	for range job.rounds {
		dropCache(b, local)
		localCold = append(localCold, job.run(b, home))
		localWarm = append(localWarm, job.run(b, home))
		for _, v := range job.variants {
			dir, unmount := job.mount(b, m, proxy.Endpoint(), cfg, v)
			gets := m.Requests(b, "getobject")
			v.cold = append(v.cold, job.run(b, dir))
			v.gets = append(v.gets, m.Requests(b, "getobject")-gets)
			v.warm = append(v.warm, job.run(b, dir))
			unmount()
		}
	}
	printColdStart(fmt.Sprintf("%s (%d-file tree, %.0f MiB)", job.what, files, float64(bytes)/(1<<20)), localCold, localWarm, job.variants)
	printImports(job.what, files, bytes, job.variants)
}

// importVariants imports the tree into a fresh bucket for each variant
// that has its own store, through the proxy's latency.
func importVariants(b *testing.B, m *testsvc.MinIO, cfg *s3.Config, local string, job *coldJob) {
	byName := map[string]*coldVariant{}
	for _, v := range job.variants {
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
		if v.stats, err = im.Import(context.Background(), local, job.dest); err != nil {
			b.Fatal(err)
		}
		v.imported = time.Since(start)
		vol.Close()
		v.puts, v.heads = m.Requests(b, "putobject")-puts, m.Requests(b, "headobject")-heads
	}
}

// treeSize counts a tree's regular files and their bytes.
func treeSize(root string) (files int, bytes int64) {
	_ = filepath.WalkDir(root, func(_ string, d fs.DirEntry, _ error) error {
		if d != nil && d.Type().IsRegular() {
			files++
			if fi, err := d.Info(); err == nil {
				bytes += fi.Size()
			}
		}
		return nil
	})
	return files, bytes
}

func medianDur(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func printColdStart(title string, localCold, localWarm []time.Duration, variants []*coldVariant) {
	lc := medianDur(localCold)
	fmt.Printf("%s, MinIO + toxiproxy 20 ms per request; median of %d rounds, [each round]:\n", title, len(localCold))
	row := func(name string, d []time.Duration, extra string) {
		fmt.Printf("  %-44s %7.3f s  %5.1fx local cold  %v%s\n", name, medianDur(d).Seconds(), medianDur(d).Seconds()/lc.Seconds(), d, extra)
	}
	row("local disk, cold (fadvise)", localCold, "")
	row("local disk, warm", localWarm, "")
	for _, v := range variants {
		row(v.name, v.cold, fmt.Sprintf("  GETs %v", v.gets))
	}
	for _, v := range variants {
		row(v.name+" -> warm", v.warm, "")
	}
}

// printImports prints each import's time, rates and MinIO's requests.
func printImports(what string, files int, bytes int64, variants []*coldVariant) {
	fmt.Printf("import of the %s tree (%d files, %.1f MiB) to MinIO through the same 20 ms:\n", what, files, float64(bytes)/(1<<20))
	for _, v := range variants {
		if v.usesSpecs != "" {
			continue
		}
		st := v.stats
		fmt.Printf("  %-40s %6.2f s  %5.0f files/s  %6.1f MiB/s  PUTs %d  HEADs %d  (%d files, %d packed in %d packs)\n",
			fmt.Sprintf("pack below %d KiB, workers %d", v.pack.PackBelow>>10, v.pack.Workers), v.imported.Seconds(), float64(st.Files)/v.imported.Seconds(),
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

// BenchmarkColdStartBig: a larger Python tree (BLOCKFS_COLDSTART_BIG, a
// /usr with lib/python3.11 and more, which bench/coldstart.sh --big
// assembles from Debian packages): its import to MinIO + 20 ms with and
// without packs, and the Python start-up of BenchmarkColdStart with the
// whole tree as PYTHONHOME.
func BenchmarkColdStartBig(b *testing.B) {
	src := os.Getenv("BLOCKFS_COLDSTART_BIG")
	if src == "" {
		b.Skip("BLOCKFS_COLDSTART_BIG names no tree (bench/coldstart.sh --big)")
	}
	python, _ := coldStartPython()
	variants := []*coldVariant{
		{name: "mount cold, no packs", pack: importer.Options{PackBelow: 0}},
		{name: "mount cold, packs < 64 KiB (default)", pack: importer.Options{PackBelow: importer.DefaultPackBelow}},
		{name: "mount cold, packs < 64 KiB + replayed trace", usesSpecs: "mount cold, packs < 64 KiB (default)", record: true,
			mount: mount.Options{TraceTrigger: "/usr/lib/python3.11/encodings/__pycache__/__init__.cpython-311.pyc"}},
	}
	// BLOCKFS_COLDSTART_BIG_WORKERS=N: the import without packs (minutes)
	// is left out and one with packs and N upload workers is added.
	if n := envInt("BLOCKFS_COLDSTART_BIG_WORKERS", 0); n > 0 {
		variants = append(variants[1:], &coldVariant{name: fmt.Sprintf("mount cold, packs < 64 KiB, %d workers", n),
			pack: importer.Options{PackBelow: importer.DefaultPackBelow, Workers: n}})
	}
	runColdJob(b, &coldJob{
		what: "Python start-up, big tree", src: src, dest: "/usr", rounds: 1,
		run:      func(b *testing.B, home string) time.Duration { return runPython(b, python, filepath.Join(home, "usr")) },
		variants: variants,
	})
}
