package objects

import (
	"context"
	"fmt"
	"testing"
)

// TestExportKeepsState: the exported segments, ingested into a fresh log,
// give exactly the state of the log (keys, versions, values, secondary
// indexes), cut into segments of at most the size asked for.
func TestExportKeepsState(t *testing.T) {
	src := openIngestLog(t)
	for i := range 300 {
		k := fmt.Sprintf("/d/f%03d", i)
		if err := src.WriteKeys([][]byte{[]byte(k), []byte("/d\x00" + k[3:]), []byte("x")}, []byte(fmt.Sprint("v1-", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 300; i += 3 {
		k := fmt.Sprintf("/d/f%03d", i)
		if err := src.WriteKeys([][]byte{[]byte(k), []byte("/d\x00" + k[3:])}, []byte(fmt.Sprint("v2-", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < 300; i += 7 {
		if err := src.Delete([]byte(fmt.Sprintf("/d/f%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var segs [][]byte
	st, err := src.Export(context.Background(), 4096, func(b []byte) error {
		if len(b) > 4096 {
			t.Errorf("segment of %d bytes, asked for at most 4096", len(b))
		}
		segs = append(segs, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Segments != len(segs) || st.Segments < 2 || st.Objects != 300-43 || st.Tombstones != 43 {
		t.Errorf("stats %+v over %d segments, want 257 objects and 43 tombstones in several", st, len(segs))
	}
	dst := openIngestLog(t)
	ingestAll(t, dst, segs)
	if got, want := fullState(t, dst), fullState(t, src); got != want {
		t.Errorf("ingested export differs:\n%s\nwant\n%s", got, want)
	}
	if dst.MaxVersion() < src.MaxVersion()-1 {
		t.Errorf("versions not kept: %d vs %d", dst.MaxVersion(), src.MaxVersion())
	}
}

// TestExportTombstonesStillKill: a write another log made concurrently
// with a delete (same version range, not having seen it) is killed by the
// exported state exactly as by the original segments, and a newer write
// still beats the exported objects.
func TestExportTombstonesStillKill(t *testing.T) {
	a := openIngestLog(t)
	b := openIngestLog(t)
	if err := a.Write([]byte("k"), []byte("a1")); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete([]byte("k")); err != nil {
		t.Fatal(err)
	}
	// b writes k without having seen a's segments: its version is not
	// above the one a's tombstone kills.
	if err := b.Write([]byte("k"), []byte("b-concurrent")); err != nil {
		t.Fatal(err)
	}
	racing := sealedSegments(t, b)
	if err := a.Write([]byte("n"), []byte("a2")); err != nil {
		t.Fatal(err)
	}
	var exported [][]byte
	st, err := a.Export(context.Background(), 1<<20, func(d []byte) error { exported = append(exported, d); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if st.Tombstones != 1 || st.Objects != 1 {
		t.Errorf("stats %+v, want the object n and the tombstone of k", st)
	}
	viaOriginal := openIngestLog(t)
	ingestAll(t, viaOriginal, sealedSegments(t, a), racing)
	viaExport := openIngestLog(t)
	ingestAll(t, viaExport, exported, racing)
	if got, want := fullState(t, viaExport), fullState(t, viaOriginal); got != want {
		t.Errorf("export + racing segment:\n%s\nwant (original segments + racing):\n%s", got, want)
	}
	if _, err := viaExport.Read([]byte("k")); err == nil {
		t.Error("the concurrent older write of k survived the exported tombstone")
	}
	// A write made after seeing the export beats it.
	c := openIngestLog(t)
	ingestAll(t, c, exported)
	if err := c.Write([]byte("n"), []byte("c-newer")); err != nil {
		t.Fatal(err)
	}
	ingestAll(t, viaExport, sealedSegments(t, c))
	if v, err := viaExport.Read([]byte("n")); err != nil || string(v) != "c-newer" {
		t.Errorf("n = %q, %v; want the newer write", v, err)
	}
}

func openIngestLog(t testing.TB) *Log { return openT(t, t.TempDir(), Options{}) }
