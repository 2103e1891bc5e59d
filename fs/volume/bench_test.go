package volume_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"blockfs/fs/tree"
	"blockfs/fs/volume"
)

// Start-up after many imports: 1000 imports of 10 small files each into
// one directory store, against one import of the same 10000 files, and the
// many-import store again after compaction. What is timed is what a mount
// does before it can answer: volume.Open, then the first listing.
//
//	go test -run '^$' -bench Startup -benchtime 10x ./fs/volume/
const (
	benchImports = 1000
	benchFiles   = 10
)

var benchStores struct {
	once                 sync.Once
	many, one, compacted string
	err                  error
}

func benchSetup(b *testing.B) (many, one, compacted string) {
	s := &benchStores
	s.once.Do(func() {
		dir := b.TempDir()
		s.many, s.one, s.compacted = filepath.Join(dir, "many"), filepath.Join(dir, "one"), filepath.Join(dir, "compacted")
		s.err = benchImportMany(s.many, s.compacted)
		if s.err == nil {
			s.err = benchImportOne(s.one)
		}
	})
	if s.err != nil {
		b.Fatal(s.err)
	}
	return s.many, s.one, s.compacted
}

func benchOpen(spec string, compactAbove int) (*volume.Volume, error) {
	oo := volume.Options{CompactAbove: compactAbove}
	oo.Create = true
	return volume.Open(context.Background(), spec, oo)
}

// benchImportMany makes two identical stores of benchImports imports and
// compacts the second. One volume publishes each import's files as its own
// segment (what an import publishes), so that setting up does not pay for
// a thousand Opens.
func benchImportMany(many, compacted string) error {
	for _, spec := range []string{many, compacted} {
		vol, err := benchOpen(spec, -1)
		if err != nil {
			return err
		}
		for i := range benchImports {
			if err = publishLinks(vol, fmt.Sprintf("/d/i%04d", i), "f", benchFiles); err != nil {
				break
			}
		}
		vol.Close()
		if err != nil {
			return err
		}
	}
	vol, err := benchOpen(compacted, -1)
	if err != nil {
		return err
	}
	defer vol.Close()
	_, err = vol.Compact(context.Background())
	return err
}

// benchImportOne makes a store of the same files in one import.
func benchImportOne(spec string) error {
	vol, err := benchOpen(spec, -1)
	if err != nil {
		return err
	}
	defer vol.Close()
	for i := range benchImports {
		if err := writeLinksNoPublish(vol, fmt.Sprintf("/d/i%04d", i), "f", benchFiles); err != nil {
			return err
		}
	}
	return vol.Publish(context.Background())
}

func BenchmarkStartup(b *testing.B) {
	many, one, compacted := benchSetup(b)
	for _, c := range []struct{ name, spec string }{{"imports1000", many}, {"compacted", compacted}, {"oneimport", one}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				vol, err := benchOpen(c.spec, -1)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				if err := vol.Tree.List("/d", func(string, *tree.Node) bool { n++; return true }); err != nil || n != benchImports {
					b.Fatalf("listed %d, %v", n, err)
				}
				b.ReportMetric(float64(vol.MetaStats().Segments), "segments")
				vol.Close()
			}
		})
	}
}
