package objects

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fullState renders everything a reader can observe: every live object
// (primary key, version, all keys, value) and the slot 1 and 2 indexes.
func fullState(t testing.TB, l *Log) string {
	t.Helper()
	var sb strings.Builder
	err := l.Scan(0, nil, func(o Object) bool {
		fmt.Fprintf(&sb, "%q@%d", o.Key(0), o.Version())
		for i := 1; i < o.NumKeys(); i++ {
			fmt.Fprintf(&sb, " %q", o.Key(i))
		}
		fmt.Fprintf(&sb, " = %q\n", o.Value())
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	for slot := 1; slot <= 2; slot++ {
		fmt.Fprintf(&sb, "slot %d:", slot)
		if err := l.Scan(slot, nil, func(o Object) bool {
			fmt.Fprintf(&sb, " %q<-%q", o.Key(slot), o.Key(0))
			return true
		}); err != nil {
			t.Fatalf("Scan: %v", err)
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// sealedSegments seals l and returns the bytes of its own sealed segments.
func sealedSegments(t testing.TB, l *Log) [][]byte {
	t.Helper()
	if err := l.Seal(); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	var out [][]byte
	for _, s := range l.Segments() {
		if !s.Sealed || s.Ingested {
			continue
		}
		b, err := os.ReadFile(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != s.Size {
			t.Fatalf("segment %d: file %d bytes, Size %d", s.ID, len(b), s.Size)
		}
		out = append(out, b)
	}
	return out
}

func ingestAll(t testing.TB, l *Log, segs ...[][]byte) {
	t.Helper()
	for _, ss := range segs {
		for _, b := range ss {
			info, err := l.Ingest(b)
			if err != nil {
				t.Fatalf("Ingest: %v", err)
			}
			if !info.Sealed || !info.Ingested {
				t.Fatalf("Ingest info: %+v", info)
			}
		}
	}
}

func wk(t testing.TB, l *Log, val string, keys ...string) {
	t.Helper()
	kb := make([][]byte, len(keys))
	for i, k := range keys {
		kb[i] = []byte(k)
	}
	if err := l.WriteKeys(kb, []byte(val)); err != nil {
		t.Fatalf("WriteKeys(%q): %v", keys, err)
	}
}

func version(t testing.TB, l *Log, key string) uint64 {
	t.Helper()
	o, err := l.ReadObject([]byte(key))
	if err != nil {
		t.Fatalf("ReadObject(%q): %v", key, err)
	}
	return o.Version()
}

// twoLogs builds logs A and B independently (both count versions from 1)
// with overlapping keys, and returns their sealed segments.
func twoLogs(t *testing.T) (a, b [][]byte, maxA, maxB uint64) {
	la := openT(t, t.TempDir(), Options{SegmentSize: 512})
	lb := openT(t, t.TempDir(), Options{SegmentSize: 512})
	defer la.Close()
	defer lb.Close()
	// Same version (1) for different objects in both logs: the CRC decides.
	wk(t, la, "tie from A", "/tie", "/\x00tie")
	wk(t, lb, "tie from B", "/tie", "/\x00tie")
	// B's older "/gone" is killed by A's tombstone (A deletes version 3).
	wk(t, lb, "gone from B", "/gone", "/\x00gone")
	wk(t, la, "gone A1", "/gone", "/\x00gone")
	wk(t, la, "gone A2", "/gone", "/\x00gone")
	if err := la.Delete([]byte("/gone")); err != nil {
		t.Fatal(err)
	}
	// "/shared": B's version (higher) wins, with its own secondary keys.
	wk(t, la, "shared A", "/shared", "/\x00shared", "tagA")
	for i := 0; i < 5; i++ {
		wk(t, lb, fmt.Sprintf("shared B%d", i), "/shared", "/dir\x00shared", "", fmt.Sprint("x", i))
	}
	// A batch and keys only one log has.
	if err := la.MultiWrite([]Entry{
		{Keys: [][]byte{[]byte("/dir"), []byte("/\x00dir")}, Value: []byte("dir A")},
		{Keys: [][]byte{[]byte("/dir/a"), []byte("/dir\x00a")}, Value: []byte("a A")},
	}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		wk(t, lb, fmt.Sprint("b", i), fmt.Sprintf("/dir/b%02d", i), fmt.Sprintf("/dir\x00b%02d", i))
	}
	if err := lb.Delete([]byte("/dir/b07")); err != nil {
		t.Fatal(err)
	}
	// A's later write of a key B also wrote: A's version is higher.
	for i := 0; i < 30; i++ {
		wk(t, la, "filler", fmt.Sprintf("/a/f%02d", i), fmt.Sprintf("/a\x00f%02d", i))
	}
	wk(t, la, "b03 from A", "/dir/b03", "/dir\x00b03")
	if version(t, la, "/dir/b03") <= version(t, lb, "/dir/b03") {
		t.Fatal("test setup: A's /dir/b03 should have the higher version")
	}
	a, b = sealedSegments(t, la), sealedSegments(t, lb)
	if len(a) < 2 || len(b) < 2 {
		t.Fatalf("want several segments each, got %d and %d", len(a), len(b))
	}
	return a, b, la.MaxVersion(), lb.MaxVersion()
}

func TestIngestOrderIndependent(t *testing.T) {
	a, b, maxA, maxB := twoLogs(t)
	dir1 := t.TempDir()
	c1 := openT(t, dir1, Options{})
	c2 := openT(t, t.TempDir(), Options{})
	defer c2.Close()
	ingestAll(t, c1, a, b)
	ingestAll(t, c2, b, a)
	s1, s2 := fullState(t, c1), fullState(t, c2)
	if s1 != s2 {
		t.Fatalf("ingest order matters:\nA then B:\n%s\nB then A:\n%s", s1, s2)
	}
	// Reversed segment order within each log too.
	c3 := openT(t, t.TempDir(), Options{})
	defer c3.Close()
	for i := range b {
		ingestAll(t, c3, [][]byte{b[len(b)-1-i]})
		if i < len(a) {
			ingestAll(t, c3, [][]byte{a[len(a)-1-i]})
		}
	}
	ingestAll(t, c3, a[:max(0, len(a)-len(b))])
	if s3 := fullState(t, c3); s3 != s1 {
		t.Fatalf("interleaved order:\n%s\nwant\n%s", s3, s1)
	}

	mustMissing(t, c1, "/gone") // A's tombstone kills B's older object
	mustMissing(t, c1, "/dir/b07")
	mustRead(t, c1, "/shared", "shared B4")
	mustRead(t, c1, "/dir/b03", "b03 from A")
	mustRead(t, c1, "/dir/a", "a A")
	if got := fmt.Sprint(scanKeys(t, c1, 1, "/dir\x00")); !strings.HasPrefix(got, "[/dir/a /dir/b00 /dir/b01") || strings.Contains(got, "b07") || !strings.Contains(got, "/shared") {
		t.Fatalf("scan /dir: %s", got)
	}
	if got := scanKeys(t, c1, 2, "tagA"); len(got) != 0 {
		t.Fatalf("loser's secondary key indexed: %q", got)
	}
	if v := c1.MaxVersion(); v != max(maxA, maxB) {
		t.Fatalf("MaxVersion %d, want %d", v, max(maxA, maxB))
	}

	// Segments: ingested ones sealed and marked, the head neither.
	segs := c1.Segments()
	if len(segs) != len(a)+len(b)+1 {
		t.Fatalf("Segments: %+v", segs)
	}
	for i, s := range segs {
		if i > 0 && s.ID <= segs[i-1].ID {
			t.Fatalf("Segments not in id order: %+v", segs)
		}
		head := s.ID == segs[0].ID // the empty head made by Open comes first
		if s.Sealed == head || s.Ingested == head {
			t.Fatalf("segment %+v (head %v)", s, head)
		}
		if !head && (s.MinVersion == 0 || s.MaxVersion < s.MinVersion || s.MaxVersion > max(maxA, maxB)) {
			t.Fatalf("segment versions %+v", s)
		}
	}

	// Writes after ingesting get versions above everything ingested.
	wk(t, c1, "mine", "/shared", "/\x00shared")
	wk(t, c1, "new", "/new")
	if v := version(t, c1, "/shared"); v <= max(maxA, maxB) {
		t.Fatalf("version after ingest %d <= %d", v, max(maxA, maxB))
	}
	if err := c1.Delete([]byte("/tie")); err != nil {
		t.Fatal(err)
	}
	want := fullState(t, c1)
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	ro := openT(t, dir1, Options{ReadOnly: true})
	if got := fullState(t, ro); got != want {
		t.Fatalf("ReadOnly reopen:\n%s\nwant\n%s", got, want)
	}
	if got := ro.Segments(); len(got) != len(segs)+0 || !got[1].Ingested || !got[1].Sealed {
		t.Fatalf("ReadOnly Segments: %+v", got)
	}
	ro.Close()
	c1 = openT(t, dir1, Options{})
	defer c1.Close()
	if got := fullState(t, c1); got != want {
		t.Fatalf("reopen:\n%s\nwant\n%s", got, want)
	}
	if v := version(t, c1, "/new"); c1.MaxVersion() < v {
		t.Fatalf("MaxVersion %d after reopen, below %d", c1.MaxVersion(), v)
	}
	// Ingested segments stay ingested and sealed across reopen.
	n := 0
	for _, s := range c1.Segments() {
		if s.Ingested {
			n++
			if !s.Sealed {
				t.Fatalf("ingested segment not sealed after reopen: %+v", s)
			}
		}
	}
	if n != len(a)+len(b) {
		t.Fatalf("%d ingested segments after reopen, want %d", n, len(a)+len(b))
	}
}

// frameBoundaries returns the offsets where a segment could end: after the
// header and after every record that is not inside a batch.
func frameBoundaries(t *testing.T, b []byte) map[int]bool {
	ends := map[int]bool{segHeaderSize: true}
	inBatch := false
	for pos := segHeaderSize; pos < len(b); {
		f, st, reason := decodeFrame(b[pos:])
		if st != frameOK {
			t.Fatalf("bad test segment at %d: %s", pos, reason)
		}
		pos += f.size
		switch f.typ {
		case recBatchBegin:
			inBatch = true
		case recBatchCommit:
			inBatch = false
		}
		if !inBatch {
			ends[pos] = true
		}
	}
	return ends
}

func TestIngestCorrupt(t *testing.T) {
	a, b, _, _ := twoLogs(t)
	dir := t.TempDir()
	c := openT(t, dir, Options{})
	defer c.Close()
	ingestAll(t, c, b[:1])
	state, segs, maxv := fullState(t, c), fmt.Sprint(c.Segments()), c.MaxVersion()
	files := len(segFiles(t, dir))
	unchanged := func(what string) {
		t.Helper()
		if fullState(t, c) != state || fmt.Sprint(c.Segments()) != segs || c.MaxVersion() != maxv || len(segFiles(t, dir)) != files {
			t.Fatalf("%s changed the log", what)
		}
	}
	expectCorrupt := func(what string, data []byte, off int) {
		t.Helper()
		_, err := c.Ingest(data)
		var ce *CorruptError
		if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.Segment != "ingest" {
			t.Fatalf("%s: err %v, want *CorruptError for \"ingest\"", what, err)
		}
		if off >= 0 && ce.Offset > int64(off) {
			t.Fatalf("%s: damage at %d reported at %d", what, off, ce.Offset)
		}
	}
	var seg []byte // one with a batch and overwrites in it
	for _, s := range a {
		if len(s) > len(seg) {
			seg = s
		}
	}
	ends := frameBoundaries(t, seg)
	for n := 0; n < len(seg); n++ {
		if ends[n] {
			// A cut at a record boundary is a valid, shorter segment: the
			// format cannot tell (the store's size and hash checks do).
			continue
		}
		expectCorrupt(fmt.Sprintf("truncated to %d", n), seg[:n], n)
	}
	for off := 0; off < len(seg); off++ {
		if off >= 36 && off < segHeaderSize {
			continue // header padding, not covered by its CRC
		}
		for _, bit := range []byte{0x01, 0x80} {
			bad := append([]byte(nil), seg...)
			bad[off] ^= bit
			expectCorrupt(fmt.Sprintf("bit flip at %d", off), bad, off)
		}
	}
	expectCorrupt("garbage tail", append(append([]byte(nil), seg...), 1, 2, 3), len(seg))
	expectCorrupt("empty", nil, 0)
	unchanged("rejected ingests")

	// A good one still goes in afterwards.
	ingestAll(t, c, a)
	if fullState(t, c) == state {
		t.Fatal("ingest after rejections had no effect")
	}
}

func TestIngestTwice(t *testing.T) {
	a, b, _, _ := twoLogs(t)
	dir := t.TempDir()
	c := openT(t, dir, Options{})
	ingestAll(t, c, a, b)
	want, maxv := fullState(t, c), c.MaxVersion()
	ingestAll(t, c, a, b, a)
	if got := fullState(t, c); got != want || c.MaxVersion() != maxv {
		t.Fatalf("ingesting again changed the state:\n%s\nwant\n%s", got, want)
	}
	// Deletes and overwrites made since also hold against a re-ingest.
	if err := c.Delete([]byte("/dir/a")); err != nil {
		t.Fatal(err)
	}
	wk(t, c, "local", "/shared")
	want = fullState(t, c)
	ingestAll(t, c, a, b)
	if got := fullState(t, c); got != want {
		t.Fatalf("re-ingest after local writes:\n%s\nwant\n%s", got, want)
	}
	c.Close()
	c = openT(t, dir, Options{})
	defer c.Close()
	if got := fullState(t, c); got != want {
		t.Fatalf("reopen:\n%s\nwant\n%s", got, want)
	}
	ingestAll(t, c, b, a)
	if got := fullState(t, c); got != want {
		t.Fatalf("re-ingest after reopen:\n%s\nwant\n%s", got, want)
	}
}

func TestSealSegments(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	segs := l.Segments()
	if len(segs) != 1 || segs[0].Sealed || segs[0].Ingested || segs[0].Size != segHeaderSize || segs[0].MaxVersion != 0 {
		t.Fatalf("fresh log: %+v", segs)
	}
	if err := l.Seal(); err != nil {
		t.Fatal(err)
	}
	if got := l.Segments(); fmt.Sprint(got) != fmt.Sprint(segs) {
		t.Fatalf("Seal of an empty head changed segments: %+v", got)
	}
	if l.MaxVersion() != 0 {
		t.Fatalf("MaxVersion of empty log: %d", l.MaxVersion())
	}
	l.Write([]byte("k"), []byte("v1"))
	l.Write([]byte("k"), []byte("v2"))
	if err := l.Seal(); err != nil {
		t.Fatal(err)
	}
	if err := l.Seal(); err != nil { // the new head is empty: no-op
		t.Fatal(err)
	}
	segs = l.Segments()
	if len(segs) != 2 || !segs[0].Sealed || segs[1].Sealed || segs[0].MinVersion != 1 || segs[0].MaxVersion != 2 || segs[1].Size != segHeaderSize {
		t.Fatalf("after Seal: %+v", segs)
	}
	if fi, err := os.Stat(segs[0].Path); err != nil || fi.Size() != segs[0].Size {
		t.Fatalf("sealed file: %v %v", fi, err)
	}
	if l.MaxVersion() != 2 {
		t.Fatalf("MaxVersion %d", l.MaxVersion())
	}
	// Concurrent Seals: each returns only once what was written is sealed.
	for round := 0; round < 20; round++ {
		if err := l.Write([]byte("c"), []byte(fmt.Sprint(round))); err != nil {
			t.Fatal(err)
		}
		v := l.MaxVersion()
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := l.Seal(); err != nil {
					t.Error(err)
				}
				for _, s := range l.Segments() {
					if s.MaxVersion >= v && !s.Sealed {
						t.Errorf("round %d: version %d in unsealed %+v after Seal", round, v, s)
					}
				}
			}()
		}
		wg.Wait()
	}
	l.Close()
	l = openT(t, dir, Options{})
	mustRead(t, l, "c", "19")
	l.Write([]byte("j"), []byte("x"))
	l.Close()
	l = openT(t, dir, Options{})
	mustRead(t, l, "k", "v2")
	mustRead(t, l, "j", "x")
	if got := l.Segments(); len(got) != 22 || !got[20].Sealed || got[21].Sealed || got[21].MinVersion != 23 {
		t.Fatalf("after reopen: %+v", got)
	}
	l.Close()
	ro := openT(t, dir, Options{ReadOnly: true})
	defer ro.Close()
	if err := ro.Seal(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Seal on ReadOnly: %v", err)
	}
	if _, err := ro.Ingest(nil); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Ingest on ReadOnly: %v", err)
	}
	if got := ro.Segments(); len(got) != 22 || !got[0].Sealed || got[21].Sealed {
		t.Fatalf("ReadOnly Segments: %+v", got)
	}
	if ro.MaxVersion() != 23 {
		t.Fatalf("ReadOnly MaxVersion %d", ro.MaxVersion())
	}
}

// TestSealKeepsBatches seals while MultiWrites go on: every sealed segment
// must hold whole batches (it validates as a complete segment, and every
// batch's keys are all in it or none).
func TestSealKeepsBatches(t *testing.T) {
	src := openT(t, t.TempDir(), Options{SegmentSize: 8192, Sync: SyncNone})
	defer src.Close()
	const writers, batches = 4, 60
	var wg sync.WaitGroup
	stop := make(chan struct{})
	sealErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				sealErr <- nil
				return
			default:
			}
			if err := src.Seal(); err != nil {
				sealErr <- err
				return
			}
		}
	}()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < batches; n++ {
				var es []Entry
				for _, s := range []string{"a", "b", "c"} {
					es = append(es, Entry{Keys: [][]byte{[]byte(fmt.Sprintf("w%d/%03d/%s", w, n, s))}, Value: []byte(s)})
				}
				if n%7 == 3 { // overwrite plus delete in one batch
					es = append(es, Entry{Keys: [][]byte{[]byte(fmt.Sprintf("w%d/%03d/a", w, n-1))}, Value: []byte("A")},
						Entry{Keys: [][]byte{[]byte(fmt.Sprintf("w%d/%03d/b", w, n-1))}, Delete: true})
				}
				if err := src.MultiWrite(es); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-sealErr; err != nil {
		t.Fatal(err)
	}
	segs := sealedSegments(t, src)
	if len(segs) < 3 {
		t.Fatalf("only %d sealed segments", len(segs))
	}
	dst := openT(t, t.TempDir(), Options{})
	defer dst.Close()
	for i, b := range segs {
		_, p, err := parseIngest(b)
		if err != nil {
			t.Fatalf("sealed segment %d: %v", i, err)
		}
		groups := map[string]int{}
		for _, o := range p.objs {
			if k := p.key(o.key); strings.HasSuffix(k, "/c") { // c is never overwritten or deleted
				groups[strings.TrimSuffix(k, "c")]++
			}
		}
		for _, o := range p.objs {
			k := p.key(o.key)
			if g := k[:strings.LastIndexByte(k, '/')+1]; strings.HasSuffix(k, "/b") && groups[g] == 0 {
				t.Fatalf("segment %d: %s without the rest of its batch", i, k)
			}
		}
		ingestAll(t, dst, [][]byte{b})
	}
	if got, want := fullState(t, dst), fullState(t, src); got != want {
		t.Fatalf("ingested copy differs:\n%s\nwant\n%s", got, want)
	}
}

// TestIngestTombstoneWins: a tombstone from one log kills the other log's
// object with a lower version whichever arrives first, also across reopen.
func TestIngestTombstoneWins(t *testing.T) {
	la := openT(t, t.TempDir(), Options{})
	lb := openT(t, t.TempDir(), Options{})
	for i := 0; i < 3; i++ {
		wk(t, la, fmt.Sprint("a", i), "k", "p\x00k")
	}
	la.Delete([]byte("k"))
	wk(t, lb, "b", "k", "p\x00k")
	a, b := sealedSegments(t, la), sealedSegments(t, lb)
	la.Close()
	lb.Close()
	for _, order := range [][][][]byte{{a, b}, {b, a}} {
		dir := t.TempDir()
		c := openT(t, dir, Options{})
		ingestAll(t, c, order[0])
		c.Close() // the tombstone must survive a reopen before the object arrives
		c = openT(t, dir, Options{})
		ingestAll(t, c, order[1])
		mustMissing(t, c, "k")
		if got := scanKeys(t, c, 1, "p"); len(got) != 0 {
			t.Fatalf("killed object in slot 1: %q", got)
		}
		c.Close()
	}
}

// TestIngestClean: the cleaner leaves ingested segments alone and drops no
// tombstone, so objects that lost on arrival stay dead after cleaning and
// reopening.
func TestIngestClean(t *testing.T) {
	lb := openT(t, t.TempDir(), Options{})
	wk(t, lb, "old from B", "k")
	wk(t, lb, "b2", "k2")
	b := sealedSegments(t, lb)
	lb.Close()

	dir := t.TempDir()
	c := openT(t, dir, Options{SegmentSize: 300})
	for i := 0; i < 5; i++ {
		wk(t, c, fmt.Sprint("local", i), "k") // versions above B's
	}
	ingestAll(t, c, b) // B's "k" loses on arrival: no tombstone names it
	mustRead(t, c, "k", "local4")
	if err := c.Delete([]byte("k")); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete([]byte("k2")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		wk(t, c, fmt.Sprint(i), fmt.Sprint("x", i%3))
	}
	if err := c.Seal(); err != nil {
		t.Fatal(err)
	}
	want := fullState(t, c)
	before := c.Segments()
	for pass := 0; pass < 3; pass++ {
		st, err := c.Clean(context.Background(), CleanOptions{MaxLiveFraction: 1})
		if err != nil {
			t.Fatal(err)
		}
		if st.TombstonesDropped != 0 {
			t.Fatalf("pass %d dropped %d tombstones", pass, st.TombstonesDropped)
		}
		if pass == 0 && st.SegmentsCleaned == 0 {
			t.Fatal("nothing cleaned")
		}
	}
	after := c.Segments()
	for _, s := range before {
		if s.Ingested && !strings.Contains(fmt.Sprint(after), fmt.Sprint(s)) {
			t.Fatalf("ingested segment %+v cleaned: %+v", s, after)
		}
	}
	if got := fullState(t, c); got != want {
		t.Fatalf("after clean:\n%s\nwant\n%s", got, want)
	}
	c.Close()
	c = openT(t, dir, Options{})
	defer c.Close()
	if got := fullState(t, c); got != want {
		t.Fatalf("reopen after clean:\n%s\nwant\n%s", got, want)
	}
	mustMissing(t, c, "k")
}

// TestIngestConcurrent ingests while writers and readers run.
func TestIngestConcurrent(t *testing.T) {
	a, b, _, _ := twoLogs(t)
	ref := openT(t, t.TempDir(), Options{})
	ingestAll(t, ref, a, b)

	c := openT(t, t.TempDir(), Options{Sync: SyncNone, SegmentSize: 1024})
	defer c.Close()
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if err := c.WriteKeys([][]byte{[]byte(fmt.Sprintf("/c%d/%d", w, i)), []byte("/dir\x00c")}, []byte("c")); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					c.Read([]byte("/shared"))
					c.Scan(1, []byte("/dir\x00"), func(Object) bool { return true })
				}
				if i%25 == 0 {
					if err := c.Seal(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	ingestAll(t, c, a, b)
	wg.Wait()
	for w := 0; w < 3; w++ {
		for i := 0; i < 100; i++ {
			c.Delete([]byte(fmt.Sprintf("/c%d/%d", w, i)))
		}
	}
	if got, want := fullState(t, c), fullState(t, ref); got != want {
		t.Fatalf("state with concurrent writes:\n%s\nwant\n%s", got, want)
	}
	ref.Close()
}

func TestIngestFilesInDir(t *testing.T) {
	_, b, _, _ := twoLogs(t)
	dir := t.TempDir()
	c := openT(t, dir, Options{})
	defer c.Close()
	info, err := c.Ingest(b[0])
	if err != nil {
		t.Fatal(err)
	}
	if info.Path != filepath.Join(dir, segName(info.ID)) || info.Size != int64(len(b[0])) {
		t.Fatalf("info %+v", info)
	}
	data, err := os.ReadFile(info.Path)
	if err != nil {
		t.Fatal(err)
	}
	h, reason := decodeSegHeader(data, info.ID)
	if reason != "" || h.kind != kindIngested || string(data[segHeaderSize:]) != string(b[0][segHeaderSize:]) {
		t.Fatalf("stored segment: %+v %s", h, reason)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(m) != 0 {
		t.Fatalf("leftover temporaries: %v", m)
	}
}

// FuzzIngest feeds arbitrary bytes to Ingest. The first byte chooses
// between raw bytes (header included) and records behind a valid header of
// any kind. Ingest must never panic: it either accepts the segment (then
// every indexed object reads back, later writes get higher versions, and a
// reopen gives the same state) or returns a *CorruptError and changes
// nothing.
func FuzzIngest(f *testing.F) {
	src, _ := Open(f.TempDir(), Options{SegmentSize: 400})
	src.WriteKeys([][]byte{[]byte("/a"), []byte("/\x00a"), []byte("t")}, []byte("value-a"))
	src.Write([]byte("/b"), []byte("value-b"))
	src.MultiWrite([]Entry{{Keys: [][]byte{[]byte("/a")}, Value: []byte("A2")}, {Keys: [][]byte{[]byte("/b")}, Delete: true}})
	src.WriteKeys([][]byte{[]byte("/pre"), []byte("/\x00pre")}, []byte("theirs"))
	src.Seal()
	for _, s := range src.Segments() {
		b, _ := os.ReadFile(s.Path)
		f.Add(append([]byte{0}, b...))
		f.Add(append([]byte{1}, b[segHeaderSize:]...))
	}
	src.Close()
	f.Add([]byte{1})
	for _, r := range lyingRecords() {
		f.Add(append([]byte{1}, r...))
	}
	f.Fuzz(fuzzIngest)
}

func fuzzIngest(t *testing.T, data []byte) {
	{
		if len(data) < 1 {
			return
		}
		mode, data := data[0], data[1:]
		if mode&1 == 1 {
			kind := []byte{kindHead, kindSurvivor, kindIngested}[int(mode>>1)%3]
			data = append(segHeader{kind: kind, id: uint32(mode), verBase: 1}.encode(), data...)
		}
		dir := t.TempDir()
		l, err := Open(dir, Options{Sync: SyncNone})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { l.Close() }()
		if err := l.WriteKeys([][]byte{[]byte("/pre"), []byte("/\x00pre")}, []byte("mine")); err != nil {
			t.Fatal(err)
		}
		before, segs := fullState(t, l), fmt.Sprint(l.Segments())
		info, err := l.Ingest(data)
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Segment != ingestName || ce.Offset < 0 || ce.Offset > int64(len(data)) {
				t.Fatalf("Ingest error %v, want *CorruptError", err)
			}
			if fullState(t, l) != before || fmt.Sprint(l.Segments()) != segs || len(segFiles(t, dir)) != 1 {
				t.Fatal("rejected Ingest changed the log")
			}
			return
		}
		if !info.Ingested || !info.Sealed || info.Size != int64(len(data)) || l.MaxVersion() < info.MaxVersion {
			t.Fatalf("info %+v, MaxVersion %d", info, l.MaxVersion())
		}
		fullState(t, l) // every indexed object reads back
		// Ingest bounds versions (MaxVersionGap), so a write always follows.
		if info.MaxVersion > 1+MaxVersionGap+uint64(len(data)) {
			t.Fatalf("accepted version %d past the bound", info.MaxVersion)
		}
		if err := l.Write([]byte("/post"), nil); err != nil {
			t.Fatal(err)
		}
		if v := version(t, l, "/post"); v <= info.MaxVersion {
			t.Fatalf("write after ingest got version %d <= %d", v, info.MaxVersion)
		}
		want := fullState(t, l)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if l, err = Open(dir, Options{}); err != nil {
			t.Fatalf("reopen after Ingest: %v", err)
		}
		if got := fullState(t, l); got != want {
			t.Fatalf("reopen:\n%s\nwant\n%s", got, want)
		}
	}
}

// TestSegmentKeys: every primary key an ingest may change is reported
// (written, overwritten, deleted), secondary keys are not, and a damaged
// segment reports nothing.
func TestSegmentKeys(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	defer l.Close()
	wk(t, l, "1", "/a", "/\x00a")
	wk(t, l, "2", "/b", "/\x00b")
	wk(t, l, "3", "/a", "/\x00a")
	if err := l.Delete([]byte("/b")); err != nil {
		t.Fatal(err)
	}
	segs := sealedSegments(t, l)
	if len(segs) != 1 {
		t.Fatalf("%d segments", len(segs))
	}
	var got []string
	if err := SegmentKeys(segs[0], func(k string) { got = append(got, k) }); err != nil {
		t.Fatal(err)
	}
	// Objects /a /b /a in log order, then the tombstones: the overwrite's
	// of /a and the delete's of /b.
	if want := "/a /b /a /a /b"; strings.Join(got, " ") != want {
		t.Errorf("keys %q, want %q", got, want)
	}
	bad := append([]byte(nil), segs[0]...)
	bad[len(bad)-3] ^= 1
	called := false
	if err := SegmentKeys(bad, func(string) { called = true }); !errors.Is(err, ErrCorrupt) || called {
		t.Errorf("damaged segment: err %v, fn called %v", err, called)
	}
}
