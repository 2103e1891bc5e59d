package mount_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"blockfs/fs/chunker"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/internal/testsvc"

	"github.com/minio/minio-go/v7"
)

// TestS3FreshNodeMount: data imported to S3 by one "machine" is listed and
// read by a mount on another that has nothing but the store string.
func TestS3FreshNodeMount(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/cluster/data"
	oo := fstest.S3Options(m, m.Endpoint())
	src := fstest.SampleTree(t)
	fstest.ImportWith(t, spec, oo, src, "/data", importer.Options{})
	tm := fstest.MountWith(t, spec, oo, mount.Options{})
	fstest.CmpTrees(t, src, tm.Path("data"))
	if st := tm.Stats(); !st.Meta.PartsServed || st.Meta.PartsFetched == 0 || st.Meta.Segments != 0 || st.Meta.Generation == 0 {
		t.Errorf("meta stats: %+v, want the tree served from parts fetched from S3, no segment ingested", st.Meta)
	}
}

// TestRefreshShowsNewImport: an import that lands while a mount runs shows
// up within the refresh interval, and a file open before a newer import
// replaced it keeps reading the version it opened.
func TestRefreshShowsNewImport(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/live"
	oo := fstest.S3Options(m, m.Endpoint())
	src := t.TempDir()
	v1 := fstest.RandomBytes(31, 3<<20)
	fstest.WriteFile(t, filepath.Join(src, "model.bin"), v1, 0o644)
	fstest.ImportWith(t, spec, oo, src, "/models", importer.Options{})

	refreshed := make(chan bool, 100)
	opts := mount.Options{
		Refresh: 50 * time.Millisecond, CacheTimeout: time.Millisecond,
	}
	mount.SetAfterRefresh(&opts, func(changed bool, err error) {
		if err == nil {
			refreshed <- changed
		}
	})
	tm := fstest.MountWith(t, spec, oo, opts)
	old, err := os.Open(tm.Path("models/model.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	// A second machine imports a new tree and a new version of the model.
	later := t.TempDir()
	fstest.WriteFile(t, filepath.Join(later, "new.txt"), []byte("fresh\n"), 0o644)
	fstest.ImportWith(t, spec, oo, later, "/later", importer.Options{})
	v2 := fstest.RandomBytes(32, 2<<20)
	fstest.WriteFile(t, filepath.Join(src, "model.bin"), v2, 0o644)
	fstest.ImportWith(t, spec, oo, src, "/models", importer.Options{})

	// Wait for the refresh that brings both imports (one refresh may land
	// between them).
	deadline := time.After(30 * time.Second)
	for {
		n, err := tm.Vol.Tree.Lookup("/models/model.bin")
		if err == nil && n.Size == int64(len(v2)) {
			break
		}
		select {
		case <-refreshed:
		case <-deadline:
			t.Fatal("no refresh picked up the new imports")
		}
	}
	if got := fstest.Sh(t, "cat", tm.Path("later/new.txt")); got != "fresh\n" {
		t.Errorf("new file reads %q", got)
	}
	if got := fstest.Sh(t, "cat", tm.Path("models/model.bin")); got != string(v2) {
		t.Error("a fresh open does not see the new version")
	}
	got := make([]byte, len(v1))
	if _, err := old.ReadAt(got, 0); err != nil || !bytes.Equal(got, v1) {
		t.Errorf("the handle opened before the update does not read its version: %v", err)
	}
}

// TestS3CorruptObjectEIO: an object altered in the bucket fails the reads
// that need it with EIO, is counted, and nothing else breaks.
func TestS3CorruptObjectEIO(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	bucket := m.NewBucket(t)
	spec := "s3://" + bucket + "/c"
	oo := fstest.S3Options(m, m.Endpoint())
	src := t.TempDir()
	fstest.WriteFile(t, filepath.Join(src, "bad"), fstest.RandomBytes(41, 2<<20), 0o644)
	good := fstest.RandomBytes(42, 2<<20)
	fstest.WriteFile(t, filepath.Join(src, "good"), good, 0o644)
	fstest.ImportWith(t, spec, oo, src, "/c", importer.Options{})
	tm := fstest.MountWith(t, spec, oo, mount.Options{Logger: fstest.DiscardLogger()})

	victim := tm.BlocksOf(t, "/c/bad")[0]
	key := "c/blocks/" + victim.Hash.String()[:2] + "/" + victim.Hash.String()
	junk := fstest.RandomBytes(43, int(victim.Size))
	if _, err := m.Client().PutObject(context.Background(), bucket, key, bytes.NewReader(junk), int64(len(junk)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("cat", tm.Path("c/bad")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Input/output error") {
		t.Fatalf("cat of a corrupted object: %v", err)
	}
	if got := fstest.Sh(t, "cat", tm.Path("c/good")); got != string(good) {
		t.Error("good file broken by a corrupt neighbour")
	}
	if st := tm.StatsViaFile(t); st.Pool.VerifyFailures == 0 || st.Fuse.Errors == 0 {
		t.Errorf("corruption not counted: %+v %+v", st.Pool, st.Fuse)
	}
}

// TestS3Faults puts toxiproxy between a mount and MinIO: latency, resets,
// a dead link and its return. Reads succeed after retries or fail with EIO
// within the fetch timeout; they never return wrong bytes or hang the
// mount, and once the link is back the same reads succeed.
func TestS3Faults(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/faults"
	src := t.TempDir()
	files := map[string][]byte{}
	for i := range 6 {
		name := fmt.Sprintf("f%d", i)
		files[name] = fstest.RandomBytes(uint64(50+i), 1<<20+i)
		fstest.WriteFile(t, filepath.Join(src, name), files[name], 0o644)
	}
	fstest.ImportWith(t, spec, fstest.S3Options(m, m.Endpoint()), src, "/f", importer.Options{Chunking: chunker.Config{Avg: 256 << 10}})
	proxy := testsvc.StartProxy(t, m.Host())
	const fetchTimeout = 4 * time.Second
	tm := fstest.MountWith(t, spec, fstest.S3Options(m, proxy.Endpoint()), mount.Options{FetchTimeout: fetchTimeout, Refresh: -1, Logger: fstest.DiscardLogger()})

	read := func(name string) (time.Duration, error) {
		start := time.Now()
		out, err := exec.Command("cat", tm.Path("f/"+name)).Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		if err == nil && !bytes.Equal(out, files[name]) {
			t.Fatalf("%s: wrong bytes", name)
		}
		return time.Since(start), err
	}

	proxy.Latency(20 * time.Millisecond)
	if _, err := read("f0"); err != nil {
		t.Errorf("with 20ms latency: %v", err)
	}
	proxy.Clear()

	proxy.ResetPeerSome(0.3)
	if took, err := read("f1"); err != nil && took > fetchTimeout+5*time.Second {
		t.Errorf("with resets, a read failed only after %v", took)
	}
	proxy.Clear()

	proxy.Down()
	took, err := read("f2")
	if err == nil {
		t.Error("read succeeded with the link down")
	}
	if took > fetchTimeout+5*time.Second {
		t.Errorf("read with the link down took %v, bound %v", took, fetchTimeout)
	}
	fstest.Sh(t, "ls", "-l", tm.Path("f")) // metadata is local: listing still works
	proxy.Up()
	if _, err := read("f2"); err != nil {
		t.Errorf("after the link returned: %v", err)
	}

	proxy.Timeout()
	took, err = read("f3")
	if err == nil {
		t.Error("read succeeded through a black hole")
	}
	if took > fetchTimeout+5*time.Second {
		t.Errorf("read through a black hole took %v", took)
	}
	proxy.Clear()
	for name := range files {
		if _, err := read(name); err != nil {
			t.Errorf("%s after the faults: %v", name, err)
		}
	}
}
