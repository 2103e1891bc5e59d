package mount_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/chunker"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
)

// TestLatencyThroughToxiproxy: over S3 behind a Toxiproxy adding 20 ms to
// every response, each first read of a one-block file waits for one fetch,
// so both the store fetches and the FUSE reads have a p50 of 20 to 40 ms.
func TestLatencyThroughToxiproxy(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/latency"
	src := t.TempDir()
	const files = 20
	for i := range files {
		fstest.WriteFile(t, filepath.Join(src, fmt.Sprintf("f%02d", i)), fstest.RandomBytes(uint64(700+i), 4096), 0o644)
	}
	fstest.ImportWith(t, spec, fstest.S3Options(m, m.Endpoint()), src, "/l", importer.Options{Chunking: chunker.Config{Avg: 256 << 10}})
	proxy := testsvc.StartProxy(t, m.Host())
	tm := fstest.MountWith(t, spec, fstest.S3Options(m, proxy.Endpoint()), mount.Options{Readahead: -1, Refresh: -1})
	proxy.Latency(20 * time.Millisecond)
	before := tm.Stats()
	for i := range files {
		if _, err := os.ReadFile(tm.Path(fmt.Sprintf("l/f%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	after := tm.Stats()
	fetch := after.Pool.FetchLatency.Sub(before.Pool.FetchLatency)
	reads := after.Fuse.ReadLatency.Sub(before.Fuse.ReadLatency)
	if fetch.Count != files {
		t.Fatalf("%d fetches timed, want %d", fetch.Count, files)
	}
	if reads.Count < files {
		t.Fatalf("%d FUSE reads timed, want at least %d", reads.Count, files)
	}
	for name, p50 := range map[string]float64{"fetch": fetch.P50Seconds, "FUSE read": reads.P50Seconds} {
		if p50 < 0.020 || p50 > 0.040 {
			t.Errorf("%s p50 %.1f ms, want 20..40", name, p50*1e3)
		}
	}
	t.Logf("fetch p50 %.1f ms p99 %.1f ms; FUSE read p50 %.1f ms p99 %.1f ms (%d reads)",
		fetch.P50Seconds*1e3, fetch.P99Seconds*1e3, reads.P50Seconds*1e3, reads.P99Seconds*1e3, reads.Count)
}

// TestVanishedStoreUnhealthy: a mount whose store loses its manifest keeps
// its generation, and its stats (the file `blockfs stats` reads) say it is
// not healthy and why.
func TestVanishedStoreUnhealthy(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := fstest.StoreWithFile(t, "/d", fstest.RandomBytes(5, 10000), chunker.Config{})
	failed := make(chan error, 100)
	opts := mount.Options{Refresh: 20 * time.Millisecond, Logger: fstest.DiscardLogger()}
	mount.SetAfterRefresh(&opts, func(_ bool, err error) {
		if err != nil {
			failed <- err
		}
	})
	tm := fstest.MountStore(t, store, opts)
	st := tm.StatsViaFile(t)
	if !st.Healthy || st.Reason != "" || st.Meta.Generation == 0 {
		t.Fatalf("fresh mount: healthy %v %q, generation %d", st.Healthy, st.Reason, st.Meta.Generation)
	}
	gen := st.Meta.Generation
	refs := filepath.Join(store, "blocks", "refs")
	if err := os.Rename(refs, refs+".gone"); err != nil {
		t.Fatal(err)
	}
	<-failed
	st = tm.StatsViaFile(t)
	if st.Healthy || !strings.Contains(st.Reason, "no longer holds the manifest") || st.Meta.Generation != gen || st.Meta.RefreshErrors == 0 {
		t.Fatalf("store without its manifest: healthy %v %q, generation %d (was %d), refresh errors %d",
			st.Healthy, st.Reason, st.Meta.Generation, gen, st.Meta.RefreshErrors)
	}
	if st.Process.RSSBytes == 0 || st.Process.CPUSeconds == 0 {
		t.Errorf("process usage missing: %+v", st.Process)
	}
}

// downReporter is a backend that answers every call but reports, as a
// read tier does while its store is down, that its answers are stale.
type downReporter struct {
	blockstore.Store
	down atomic.Bool
}

func (d *downReporter) Unwrap() blockstore.Store { return d.Store }

func (d *downReporter) Health() (bool, string) {
	if d.down.Load() {
		return false, blockstore.ReasonStoreDown
	}
	return true, ""
}

// TestBackendDownUnhealthy: metadata refreshes that succeed do not make a
// mount healthy while its backend says the store behind it is down; the
// stats say so with the backend's reason, and healthy again once it is up.
func TestBackendDownUnhealthy(t *testing.T) {
	store := fstest.StoreWithFile(t, "/d", fstest.RandomBytes(6, 10000), chunker.Config{})
	fake := &downReporter{}
	oo := volume.Options{Options: storeurl.Options{WrapBackend: func(s blockstore.Store) blockstore.Store {
		fake.Store = s
		return fake
	}}}
	tm := fstest.MountWith(t, store, oo, mount.Options{Logger: fstest.DiscardLogger()})
	if st := tm.StatsViaFile(t); !st.Healthy || st.Reason != "" {
		t.Fatalf("backend up: healthy %v %q", st.Healthy, st.Reason)
	}
	fake.down.Store(true)
	if _, err := mount.RefreshNow(tm.Mount); err != nil {
		t.Fatalf("refresh against a stale but answering backend: %v", err)
	}
	if st := tm.StatsViaFile(t); st.Healthy || st.Reason != blockstore.ReasonStoreDown || st.Meta.LastError != "" {
		t.Errorf("backend down: healthy %v %q (meta error %q); want unhealthy, %q",
			st.Healthy, st.Reason, st.Meta.LastError, blockstore.ReasonStoreDown)
	}
	fake.down.Store(false)
	if st := tm.StatsViaFile(t); !st.Healthy || st.Reason != "" {
		t.Errorf("backend up again: healthy %v %q", st.Healthy, st.Reason)
	}
}
