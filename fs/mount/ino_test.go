package mount

import (
	"encoding/binary"
	"hash/fnv"
	"testing"

	"blockfs/fs/tree"
)

// TestIdentityIsFNV128a: the allocation-free hash is hash/fnv's FNV-1a 128
// over the prefix, the kind (and version or link) and the path, so inode
// numbers are those earlier releases served; a child's identity is its
// path's.
func TestIdentityIsFNV128a(t *testing.T) {
	nodes := []*tree.Node{
		{Kind: tree.KindDir},
		{Kind: tree.KindFile, Version: 0x0102030405060708},
		{Kind: tree.KindSymlink, Version: 7},
		{Kind: tree.KindFile, Version: 9, LinkID: 42},
	}
	for _, prefix := range []string{"", "snap/3"} {
		m := &Mount{idPrefix: prefix}
		for _, p := range []string{"/a", "/a/b/c", "/d\xffé", "/" + string(make([]byte, 300))} {
			for _, n := range nodes {
				h := fnv.New128a()
				h.Write([]byte(prefix))
				var b [9]byte
				switch {
				case n.LinkID != 0:
					b[0] = 0xff
					binary.LittleEndian.PutUint64(b[1:], n.LinkID)
					h.Write(b[:])
				case n.Kind == tree.KindDir:
					b[0] = byte(n.Kind)
					h.Write(b[:1])
					h.Write([]byte(p))
				default:
					b[0] = byte(n.Kind)
					binary.LittleEndian.PutUint64(b[1:], n.Version)
					h.Write(b[:])
					h.Write([]byte(p))
				}
				sum := h.Sum(nil)
				want := ident{ino: binary.BigEndian.Uint64(sum[:8]), gen: binary.BigEndian.Uint64(sum[8:])}
				if want.ino < reservedInos || want.ino > ^uint64(0)-reservedInos {
					want.ino ^= 1 << 62
				}
				if got := m.identity(p, n); got != want {
					t.Errorf("identity(%q, %+v) with prefix %q = %x, want %x", p, n, prefix, got, want)
				}
				dir, name := p[:max(1, len(p)-len(lastName(p))-1)], lastName(p)
				if got := m.childIdentity(dir, name, n); got != want {
					t.Errorf("childIdentity(%q, %q) = %x, want %x", dir, name, got, want)
				}
			}
		}
	}
	if got := (&Mount{}).identity("/", &tree.Node{Kind: tree.KindDir}); got.ino != rootIno {
		t.Errorf("root ino %d, want %d", got.ino, rootIno)
	}
}

func lastName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}
