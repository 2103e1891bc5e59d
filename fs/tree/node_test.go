package tree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"blockfs/blockstore"
)

func sampleFile() *Node {
	n := &Node{Kind: KindFile, Mode: 0o644, MtimeNs: -1_500_000_000}
	n.SetBlocks([]blockstore.Locator{
		blockstore.LocatorOf([]byte("one")),
		blockstore.LocatorOf([]byte("block two")),
		blockstore.LocatorOf([]byte("3")),
	})
	return n
}

func TestNodeRoundTrip(t *testing.T) {
	for _, n := range []*Node{
		sampleFile(),
		{Kind: KindDir, Mode: 0o1777, MtimeNs: 42},
		{Kind: KindSymlink, Mode: 0o777, Target: "../a/b", Size: 6},
		{Kind: KindFile, Mode: 0o600},
		richFile(),
		{Kind: KindDir, Mode: 0o750, UID: 1000, GID: 100, Xattrs: []Xattr{{"user.x", nil}}},
	} {
		b := n.AppendBinary(nil)
		got, err := DecodeNode(b)
		if err != nil {
			t.Fatalf("%v: %v", n.Kind, err)
		}
		if !got.Owned || got.UID != n.UID || got.GID != n.GID || got.Nlink != max(n.Nlink, 1) || got.LinkID != n.LinkID || len(got.Xattrs) != len(n.Xattrs) {
			t.Fatalf("round trip of %+v lost owners, links or xattrs: %+v", n, got)
		}
		if !bytes.Equal(got.AppendBinary(nil), b) || got.Size != n.Size || got.Target != n.Target || got.Mode != n.Mode || got.MtimeNs != n.MtimeNs {
			t.Fatalf("round trip of %+v gave %+v", n, got)
		}
	}
}

func TestNodeBlockSearch(t *testing.T) {
	n := sampleFile() // blocks of 3, 9 and 1 bytes
	for _, c := range []struct {
		off   int64
		i     int
		start int64
		ok    bool
	}{{0, 0, 0, true}, {2, 0, 0, true}, {3, 1, 3, true}, {11, 1, 3, true}, {12, 2, 12, true}, {13, 0, 0, false}, {-1, 0, 0, false}} {
		i, start, ok := n.Block(c.off)
		if i != c.i || start != c.start || ok != c.ok {
			t.Errorf("Block(%d) = %d, %d, %v; want %d, %d, %v", c.off, i, start, ok, c.i, c.start, c.ok)
		}
	}
}

func TestDecodeNodeRejects(t *testing.T) {
	good := sampleFile().AppendBinary(nil)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"format":    append([]byte{9}, good[1:]...),
		"kind":      append([]byte{1, 7}, good[2:]...),
		"truncated": good[:len(good)-5],
		"trailing":  append(append([]byte{}, good...), 0),
		"huge count": func() []byte {
			b := (&Node{Kind: KindFile}).AppendBinary(nil)
			return append(b[:len(b)-1], 0xff, 0xff, 0xff, 0xff, 0x0f)
		}(),
	} {
		if _, err := DecodeNode(b); !errors.Is(err, ErrBadNode) {
			t.Errorf("%s: got %v, want ErrBadNode", name, err)
		}
	}
}

func TestKeys(t *testing.T) {
	if got := string(dirKey("/a/b")); got != "/a\x00b" {
		t.Errorf("dirKey(/a/b) = %q", got)
	}
	if got := string(dirKey("/x")); got != "/\x00x" {
		t.Errorf("dirKey(/x) = %q", got)
	}
	if dirKey("/") != nil {
		t.Error("root has a parent key")
	}
	for in, want := range map[string]string{"": "/", "a/../../b": "/b", "/a/./b/": "/a/b", "../..": "/"} {
		if got := CleanPath(in); got != want {
			t.Errorf("CleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDecodeNode: whatever the bytes, DecodeNode does not panic, and what it
// accepts re-encodes to the same bytes with consistent offsets.
func FuzzDecodeNode(f *testing.F) {
	f.Add(sampleFile().AppendBinary(nil))
	f.Add((&Node{Kind: KindDir, Mode: 0o755}).AppendBinary(nil))
	f.Add((&Node{Kind: KindSymlink, Target: "x", Size: 1}).AppendBinary(nil))
	f.Add(richFile().AppendBinary(nil))
	f.Add(appendFormat1(sampleFile()))
	f.Add(packedFile().AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := DecodeNode(b)
		if err != nil {
			if !errors.Is(err, ErrBadNode) {
				t.Fatalf("error not ErrBadNode: %v", err)
			}
			return
		}
		again := n.AppendBinary(nil)
		if b[0] != nodeFormat1 && !bytes.Equal(again, b) {
			t.Fatalf("accepted bytes do not re-encode identically")
		}
		if b[0] == nodeFormat1 && !bytes.Equal(appendFormat1(n), b) {
			t.Fatalf("accepted format-1 bytes do not re-encode identically")
		}
		if m, err := DecodeNode(again); err != nil || !bytes.Equal(m.AppendBinary(nil), again) {
			t.Fatalf("re-encoded node does not decode: %v", err)
		}
		var sum int64
		for i, l := range n.Blocks {
			if j, start, ok := n.Block(sum); !ok || j != i || start != sum {
				t.Fatalf("Block(%d) = %d, %d, %v", sum, j, start, ok)
			}
			if n.Off(i)+n.Len(i) > l.Size {
				t.Fatalf("block %d: range %d+%d of %d bytes", i, n.Off(i), n.Len(i), l.Size)
			}
			sum += n.Len(i)
		}
		if n.Kind == KindFile && sum != n.Size {
			t.Fatalf("size %d, blocks %d", n.Size, sum)
		}
	})
}

func TestDecodeNodeRejectsOverlongVarints(t *testing.T) {
	for _, b := range [][]byte{
		{1, 2, 0x80, 0x00, 0, 0, 0},       // mode 0 in two bytes
		{1, 1, 0xed, 0x03, 0x80, 0x00, 0}, // mtime 0 in two bytes
	} {
		if _, err := DecodeNode(b); !errors.Is(err, ErrBadNode) {
			t.Errorf("DecodeNode(%x) = %v, want ErrBadNode", b, err)
		}
	}
	for _, v := range []int64{0, 1, -1, 63, -64, 64, 1 << 40, -(1 << 62)} {
		n := &Node{Kind: KindDir, MtimeNs: v, Mode: 0o755}
		if _, err := DecodeNode(n.AppendBinary(nil)); err != nil {
			t.Errorf("mtime %d: %v", v, err)
		}
	}
}

// richFile has everything format 2 adds: owners, a hard link, xattrs, a hole.
func richFile() *Node {
	n := &Node{Kind: KindFile, Mode: 0o4750, MtimeNs: 7, UID: 65534, GID: 4242, Nlink: 3, LinkID: 0xdeadbeef,
		Xattrs: []Xattr{{"user.mime", []byte("text/plain")}, {"security.capability", []byte{1, 0, 0, 2}}, {"user.empty", nil}}}
	n.SetBlocks([]blockstore.Locator{
		blockstore.LocatorOf([]byte("head")),
		{Size: 1 << 20}, // a hole
		blockstore.LocatorOf([]byte("tail")),
	})
	return n
}

// appendFormat1 encodes n as blockfs wrote nodes before format 2, so that
// the tests hold the decoder to reading old stores.
func appendFormat1(n *Node) []byte {
	dst := []byte{nodeFormat1, byte(n.Kind)}
	dst = binary.AppendUvarint(dst, uint64(n.Mode))
	dst = binary.AppendVarint(dst, n.MtimeNs)
	dst = binary.AppendUvarint(dst, uint64(n.Size))
	switch n.Kind {
	case KindFile:
		dst = binary.AppendUvarint(dst, uint64(len(n.Blocks)))
		for _, b := range n.Blocks {
			dst = append(dst, b.Hash[:]...)
			dst = binary.AppendUvarint(dst, uint64(b.Size))
		}
	case KindSymlink:
		dst = binary.AppendUvarint(dst, uint64(len(n.Target)))
		dst = append(dst, n.Target...)
	}
	return dst
}

// TestDecodeFormat1: records written before owners, links and xattrs
// existed still decode, as unowned single-link nodes; the seed file
// testdata/fuzz/FuzzDecodeNode/file-one-block is such a record.
func TestDecodeFormat1(t *testing.T) {
	for _, old := range []*Node{sampleFile(), {Kind: KindDir, Mode: 0o755, MtimeNs: 9}, {Kind: KindSymlink, Target: "../t", Size: 4}} {
		n, err := DecodeNode(appendFormat1(old))
		if err != nil {
			t.Fatalf("%v: %v", old.Kind, err)
		}
		if n.Owned || n.Nlink != 1 || n.LinkID != 0 || n.Xattrs != nil || n.Size != old.Size || n.Mode != old.Mode || n.Target != old.Target || len(n.Blocks) != len(old.Blocks) {
			t.Errorf("format-1 %v decoded as %+v", old.Kind, n)
		}
	}
	seed, err := os.ReadFile("testdata/fuzz/FuzzDecodeNode/file-one-block")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(seed, []byte(`[]byte("\x01\x02`)) {
		t.Fatalf("the seed is no longer a format-1 file record: %s", seed)
	}
}

func TestXattrLookup(t *testing.T) {
	n := richFile()
	if v, ok := n.Xattr("user.mime"); !ok || string(v) != "text/plain" {
		t.Errorf("user.mime = %q, %v", v, ok)
	}
	if v, ok := n.Xattr("security.capability"); !ok || len(v) != 4 {
		t.Errorf("security.capability = %x, %v", v, ok)
	}
	if _, ok := n.Xattr("user.nope"); ok {
		t.Error("found an attribute the node lacks")
	}
}

func TestDecodeNodeRejectsFormat2(t *testing.T) {
	enc := func(n *Node) []byte { return n.AppendBinary(nil) }
	for name, b := range map[string][]byte{
		"duplicate xattrs": enc(&Node{Kind: KindDir, Xattrs: []Xattr{{"user.a", nil}, {"user.a", nil}}}),
		"empty xattr name": enc(&Node{Kind: KindDir, Xattrs: []Xattr{{"", []byte("v")}}}),
		"long xattr name":  enc(&Node{Kind: KindDir, Xattrs: []Xattr{{string(bytes.Repeat([]byte("n"), MaxXattrName+1)), nil}}}),
		"xattrs too big": enc(&Node{Kind: KindDir, Xattrs: []Xattr{
			{"user.a", make([]byte, MaxXattrValue)}, {"user.b", []byte("x")}}}),
		"link without id": {nodeFormat, byte(KindDir), 0, 0, 0, 0, 0, 2, 0, 0},
		"zero nlink":      {nodeFormat, byte(KindDir), 0, 0, 0, 0, 0, 0, 0},
		"zero hole":       {nodeFormat, byte(KindFile), 0, 0, 0, 0, 0, 1, 0, 1, 1},
		"zero-hash block": append([]byte{nodeFormat, byte(KindFile), 0, 0, 2, 0, 0, 1, 0, 1, 4}, make([]byte, 32)...),
		"huge hole":       binary.AppendUvarint([]byte{nodeFormat, byte(KindFile), 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 1, 0, 1}, (blockstore.MaxBlockSize+1)<<1|1),
	} {
		if _, err := DecodeNode(b); !errors.Is(err, ErrBadNode) {
			t.Errorf("%s: got %v, want ErrBadNode", name, err)
		}
	}
}

// packedFile is a small file stored as a range of a shared pack block,
// after a hole and before a whole block: everything format 3 can say.
func packedFile() *Node {
	n := &Node{Kind: KindFile, Mode: 0o644, MtimeNs: 11, UID: 1, GID: 2}
	pack := blockstore.LocatorOf([]byte("a pack of several small files"))
	whole := blockstore.LocatorOf([]byte("whole"))
	n.SetRanges([]blockstore.Locator{{Size: 4}, pack, whole}, []Range{{0, 4}, {7, 9}, {0, whole.Size}})
	n.Sum = blockstore.Sum([]byte("any content hash"))
	return n
}

// TestPackedNodeRoundTrip: a node with ranges is written as format 3 and
// decodes to the same ranges, offsets and content hash; a node without is
// still written as format 2, so that older binaries read it.
func TestPackedNodeRoundTrip(t *testing.T) {
	n := packedFile()
	b := n.AppendBinary(nil)
	if b[0] != nodeFormatRanged {
		t.Fatalf("packed node written as format %d", b[0])
	}
	got, err := DecodeNode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Packed() || got.Size != 4+9+5 || got.Sum != n.Sum || len(got.Blocks) != 3 || got.Blocks[1] != n.Blocks[1] {
		t.Fatalf("decoded %+v", got)
	}
	for i, want := range []Range{{0, 4}, {7, 9}, {0, 5}} {
		if got.Off(i) != want.Off || got.Len(i) != want.Len {
			t.Errorf("block %d: range %d+%d, want %+v", i, got.Off(i), got.Len(i), want)
		}
	}
	if i, start, _ := got.Block(4 + 8); i != 1 || start != 4 {
		t.Errorf("Block(12) = %d, %d", i, start)
	}
	if !bytes.Equal(got.AppendBinary(nil), b) {
		t.Error("packed node does not re-encode identically")
	}
	whole := sampleFile()
	whole.SetRanges(whole.Blocks, []Range{{0, 3}, {0, 9}, {0, 1}})
	if b := whole.AppendBinary(nil); b[0] != nodeFormat || !bytes.Equal(b, sampleFile().AppendBinary(nil)) {
		t.Errorf("whole-block ranges written as format %d", b[0])
	}
}

func TestDecodeNodeRejectsFormat3(t *testing.T) {
	good := packedFile().AppendBinary(nil)
	ranged := func(length, bsize, off uint64) []byte {
		b := []byte{nodeFormatRanged, byte(KindFile), 0, 0}
		b = binary.AppendUvarint(b, length)
		b = append(b, 0, 0, 1, 0, 1) // uid gid nlink xattrs blocks
		b = binary.AppendUvarint(b, length<<2|2)
		b = append(b, bytes.Repeat([]byte{7}, 32)...)
		b = binary.AppendUvarint(b, bsize)
		b = binary.AppendUvarint(b, off)
		return append(b, make([]byte, 32)...)
	}
	if _, err := DecodeNode(ranged(3, 10, 7)); err != nil {
		t.Fatalf("the well-formed base case fails: %v", err)
	}
	for name, b := range map[string][]byte{
		"truncated sum":     good[:len(good)-1],
		"range past end":    ranged(4, 10, 7),
		"offset past end":   ranged(1, 10, 11),
		"whole block range": ranged(10, 10, 0),
		"huge block":        ranged(3, blockstore.MaxBlockSize+1, 7),
		"no range": (func() []byte {
			b := sampleFile().AppendBinary(nil)
			b[0] = nodeFormatRanged
			return b
		})(),
		"directory": append([]byte{nodeFormatRanged, byte(KindDir)}, good[2:12]...),
	} {
		if _, err := DecodeNode(b); !errors.Is(err, ErrBadNode) {
			t.Errorf("%s: got %v, want ErrBadNode", name, err)
		}
	}
}
