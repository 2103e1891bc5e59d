package parts

import (
	"bytes"
	"context"
	"testing"

	"blockfs/blockstore/storetest"
	"blockfs/fs/tree"
)

// FuzzDecodePart feeds Decode arbitrary bytes: it must never panic, and a
// part it accepts must list and look up without panicking either, and
// encode its records back to the same bytes' entries.
func FuzzDecodePart(f *testing.F) {
	lg := testLog(f, 2, 3)
	mem := storetest.NewMem()
	fx := build(f, lg, 4, storetest.NewCounting(mem))
	err := fx.cache.Reader(fx.ref).Walk(context.Background(), func(root string, r Ref) error {
		buf := make([]byte, r.Size)
		n, err := mem.Get(context.Background(), r.Blocks[0], buf)
		if err != nil {
			return err
		}
		f.Add(buf[:n], root)
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, root string) {
		p, err := Decode(data, root)
		if err != nil {
			return
		}
		for _, d := range p.dirs {
			rel := p.rel(d)
			p.each(rel, func(e raw) bool {
				if _, ok := p.find(rel, e.name); !ok {
					t.Fatalf("entry %q of %q listed but not found", e.name, rel)
				}
				e.decode()
				return true
			})
		}
		p.rootNode()
		if !bytes.HasPrefix(data, []byte(magic)) {
			t.Fatal("accepted without magic")
		}
		_ = tree.CleanPath(root)
	})
}
