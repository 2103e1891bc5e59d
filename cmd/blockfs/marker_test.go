package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/storetest"
	"blockfs/internal/testsvc"
)

// runBin runs the built blockfs as its own process and returns its exit
// code and output.
func runBin(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(blockfsBin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatal(err)
	return 0, "", ""
}

// fakeServe is the serve protocol's handler over an in-memory store that
// answers marker (nil: none) as its store's format marker.
func fakeServe(t *testing.T, marker []byte) string {
	t.Helper()
	mem := storetest.NewMem()
	pool := blockstore.NewPool(mem, blockstore.PoolConfig{})
	t.Cleanup(pool.Close)
	opts := httpstore.ServerOptions{}
	if marker != nil {
		opts.FixedRefs = map[string][]byte{"blockfs-store": marker}
	}
	srv := httptest.NewServer(httpstore.NewHandler(mem, pool, opts))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestServeFormatMarker, with real processes: a blockfs serve passes its
// store's format marker on (to a client, and to a serve of that serve), so
// log and mount of it work; an http store string naming a serve of a store
// with no marker, a server that is not blockfs, or a store of a newer
// format fails with one line and exit 1, mount included.
func TestServeFormatMarker(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	mustRun(t, "import", "--store", store, "../../testdata/sample/README.txt")
	_, url := startServe(t, os.Environ(), "--store", store)
	_, url2 := startServe(t, os.Environ(), "--store", url) // a serve of a serve
	for _, u := range []string{url, url2, url + "," + url2} {
		if code, out, stderr := runBin(t, "log", "--store", u); code != 0 || !strings.Contains(out, "publish") {
			t.Errorf("log --store %s: exit %d, %q %q", u, code, out, stderr)
		}
	}

	notBlockfs := httptest.NewServer(http.NotFoundHandler())
	defer notBlockfs.Close()
	unmarked, newer := fakeServe(t, nil), fakeServe(t, []byte("blockfs store format 3\n"))
	for _, c := range []struct{ url, want string }{
		{unmarked, unmarked + ": no blockfs store here (no blockfs-store marker); create one with blockfs import"},
		{newer, "format 3, written by a newer blockfs (this one reads format 2)"},
		{notBlockfs.URL, "not a blockfs server"},
	} {
		for _, args := range [][]string{{"log", "--store", c.url}, {"mount", "--store", c.url, t.TempDir()}} {
			code, _, stderr := runBin(t, args...)
			if lines := strings.Split(strings.TrimSpace(stderr), "\n"); code != 1 || len(lines) != 1 || !strings.Contains(stderr, c.want) {
				t.Errorf("%q: exit %d, stderr %q; want exit 1 and one line with %q", args, code, stderr, c.want)
			}
		}
	}
}
