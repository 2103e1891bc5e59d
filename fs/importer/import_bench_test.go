package importer_test

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"blockfs/fs/chunker"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
)

const benchImportSize = 128 << 20

func benchSource(b *testing.B) string {
	b.Helper()
	src := filepath.Join(b.TempDir(), "data.bin")
	fstest.WriteFile(b, src, fstest.RandomBytes(11, benchImportSize), 0o644)
	return src
}

// BenchmarkSHA256 is the baseline import is measured against: one core
// hashing the same bytes.
func BenchmarkSHA256(b *testing.B) {
	data := fstest.RandomBytes(11, benchImportSize)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		sha256.Sum256(data)
	}
}

// BenchmarkImportNew imports a page-cached file into an empty store.
func BenchmarkImportNew(b *testing.B) {
	src := benchSource(b)
	b.SetBytes(benchImportSize)
	for b.Loop() {
		b.StopTimer()
		store := filepath.Join(b.TempDir(), "store")
		b.StartTimer()
		fstest.ImportInto(b, store, src, "/d", chunker.Config{})
		b.StopTimer()
		os.RemoveAll(store)
		b.StartTimer()
	}
}

// BenchmarkReimport imports a file whose blocks the store already has:
// chunking and hashing only.
func BenchmarkReimport(b *testing.B) {
	src := benchSource(b)
	store := filepath.Join(b.TempDir(), "store")
	fstest.ImportInto(b, store, src, "/d", chunker.Config{})
	b.SetBytes(benchImportSize)
	for b.Loop() {
		fstest.ImportInto(b, store, src, "/d", chunker.Config{})
	}
}

// BenchmarkReimportAfterInsertions: a 256 MiB file, 10 scattered
// insertions, re-imported. Reports the share of the file stored anew
// (content-defined chunking keeps it to the blocks around each edit).
func BenchmarkReimportAfterInsertions(b *testing.B) {
	data := fstest.RandomBytes(61, 256<<20)
	dir := b.TempDir()
	src := filepath.Join(dir, "big")
	var st importer.Stats
	for b.Loop() {
		b.StopTimer()
		store := filepath.Join(b.TempDir(), "store")
		fstest.WriteFile(b, src, data, 0o644)
		fstest.ImportInto(b, store, src, "/big", chunker.Config{})
		fstest.WriteFile(b, src, insertScattered(data, 10), 0o644)
		b.StartTimer()
		st = fstest.ImportInto(b, store, src, "/big", chunker.Config{})
	}
	b.ReportMetric(100*float64(st.NewBytes)/float64(st.Bytes), "%new-bytes")
	b.ReportMetric(float64(st.NewBlocks), "new-blocks")
	b.ReportMetric(float64(st.Blocks), "blocks")
}
