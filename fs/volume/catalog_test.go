package volume

import (
	"errors"
	"strings"
	"testing"

	"blockfs/blockstore"
)

func TestParseRef(t *testing.T) {
	a, b := blockstore.LocatorOf([]byte("a")), blockstore.LocatorOf([]byte("bb"))
	locs, err := parseRef([]byte(refHeader + "\n" + a.String() + "\n" + b.String() + "\n"))
	if err != nil || len(locs) != 2 || locs[0] != a || locs[1] != b {
		t.Fatalf("parseRef = %v, %v", locs, err)
	}
	for name, raw := range map[string]string{
		"empty":      "",
		"header":     "blockfs-manifest 9\n" + a.String(),
		"no blocks":  refHeader + "\n",
		"bad line":   refHeader + "\n" + a.String() + "\nnot a locator",
		"too large":  refHeader + "\n" + strings.Repeat(blockstore.Locator{Hash: a.Hash, Size: blockstore.MaxBlockSize}.String()+"\n", 17),
		"windows le": refHeader + "\r\n" + a.String(),
	} {
		if _, err := parseRef([]byte(raw)); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: %v, want ErrBadManifest", name, err)
		}
	}
}

// FuzzParseRef: a ref read from a store never panics the parser, and what
// it accepts re-encodes to locators that parse back the same.
func FuzzParseRef(f *testing.F) {
	a := blockstore.LocatorOf([]byte("a"))
	f.Add([]byte(refHeader + "\n" + a.String() + "\n"))
	f.Add([]byte(refHeader))
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		locs, err := parseRef(raw)
		if err != nil {
			if !errors.Is(err, ErrBadManifest) {
				t.Fatalf("error not ErrBadManifest: %v", err)
			}
			return
		}
		var total int64
		for _, l := range locs {
			back, err := blockstore.ParseLocator(l.String())
			if err != nil || back != l {
				t.Fatalf("accepted locator %v does not round-trip", l)
			}
			total += l.Size
		}
		if len(locs) == 0 || total > maxManifest {
			t.Fatalf("accepted %d locators of %d bytes", len(locs), total)
		}
	})
}
