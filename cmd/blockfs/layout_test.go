package main

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// listedPackage is what `go list -json` says of one package.
type listedPackage struct {
	ImportPath string
	Imports    []string // direct, non-test
	Deps       []string // transitive, non-test
}

// listPackages lists every package of the module with the go command on
// PATH (golang.org/x/tools is not a dependency).
func listPackages(t *testing.T) map[string]listedPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Deps", "blockfs/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]listedPackage{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = p
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	return pkgs
}

const goFuse = "github.com/hanwen/go-fuse/v2"

// TestNoFUSEBelowMount: only the FUSE mount (and the CLI that links it)
// may link go-fuse; in particular nothing that parses store strings or
// serves HTTP does, so that serve and stats could be built without it.
func TestNoFUSEBelowMount(t *testing.T) {
	pkgs := listPackages(t)
	for _, must := range []string{"blockfs/blockstore/storeurl", "blockfs/blockstore/httpstore", "blockfs/fs/volume", "blockfs/internal/metrics"} {
		if _, ok := pkgs[must]; !ok {
			t.Errorf("go list does not show %s", must)
		}
	}
	for path, p := range pkgs {
		if strings.HasPrefix(path, "blockfs/fs/mount") || strings.HasPrefix(path, "blockfs/cmd/") ||
			strings.HasPrefix(path, "blockfs/bench") || path == "blockfs/fs/internal/fstest" {
			continue
		}
		for _, d := range p.Deps {
			if strings.HasPrefix(d, goFuse) {
				t.Errorf("%s links %s", path, d)
				break
			}
		}
	}
}

// TestImportsOneWay: cmd -> the filesystem packages -> blockstore,
// objects. The store and log packages import nothing else of ours but
// internal/ helpers, and the filesystem packages import each other only
// downwards: mount, importer -> volume -> parts -> tree.
func TestImportsOneWay(t *testing.T) {
	pkgs := listPackages(t)
	// forbidden[prefix] lists what packages under prefix must not import.
	forbidden := map[string][]string{
		"blockfs/blockstore":  {"blockfs/fs/", "blockfs/cmd/", "blockfs/bench"},
		"blockfs/objects":     {"blockfs/fs/", "blockfs/blockstore", "blockfs/cmd/", "blockfs/bench"},
		"blockfs/fs/tree":     {"blockfs/fs/volume", "blockfs/fs/importer", "blockfs/fs/mount", "blockfs/blockstore/storeurl", "blockfs/fs/parts"},
		"blockfs/fs/parts":    {"blockfs/fs/volume", "blockfs/fs/importer", "blockfs/fs/mount", "blockfs/blockstore/storeurl", "blockfs/objects"},
		"blockfs/fs/volume":   {"blockfs/fs/importer", "blockfs/fs/mount"},
		"blockfs/fs/importer": {"blockfs/fs/mount"},
		"blockfs/fs/mount":    {"blockfs/fs/importer"},
		"blockfs/fs/chunker":  {"blockfs/fs/"},
	}
	for path, p := range pkgs {
		for prefix, bad := range forbidden {
			if path != prefix && !strings.HasPrefix(path, prefix+"/") {
				continue
			}
			for _, imp := range p.Imports {
				for _, b := range bad {
					if strings.HasPrefix(imp, b) && imp != path {
						t.Errorf("%s imports %s", path, imp)
					}
				}
			}
		}
	}
}
