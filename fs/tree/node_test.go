package tree

import (
	"bytes"
	"errors"
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
	} {
		b := n.AppendBinary(nil)
		got, err := DecodeNode(b)
		if err != nil {
			t.Fatalf("%v: %v", n.Kind, err)
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
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := DecodeNode(b)
		if err != nil {
			if !errors.Is(err, ErrBadNode) {
				t.Fatalf("error not ErrBadNode: %v", err)
			}
			return
		}
		if !bytes.Equal(n.AppendBinary(nil), b) {
			t.Fatalf("accepted bytes do not re-encode identically")
		}
		var sum int64
		for i, l := range n.Blocks {
			if j, start, ok := n.Block(sum); !ok || j != i || start != sum {
				t.Fatalf("Block(%d) = %d, %d, %v", sum, j, start, ok)
			}
			sum += l.Size
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
