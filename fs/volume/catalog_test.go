package volume

import (
	"context"
	"errors"
	"strings"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
	"blockfs/objects"
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

// FuzzManifest: a manifest read from a store (its JSON, with sizes and
// locators that may lie) never panics the reader; what it accepts has every
// segment within objects.MaxSegmentSize and its blocks adding up to the
// segment's size, and reading a segment whose blocks the store lacks is an
// error, with nothing allocated for blocks that never arrived.
func FuzzManifest(f *testing.F) {
	a := blockstore.LocatorOf([]byte("a"))
	f.Add([]byte(`{"format":1,"generation":1,"segments":[{"id":"s","size":1,"blocks":["` + a.String() + `"]}]}`))
	f.Add([]byte(`{"format":1,"generation":1,"segments":[{"id":"s","size":1342177280000,"blocks":["` +
		blockstore.Locator{Hash: a.Hash, Size: blockstore.MaxBlockSize}.String() + `"]}]}`))
	f.Add([]byte(`{"format":1,"generation":2,"history":[{"generation":1,"op":"publish","manifest":["` + a.String() + `"]}],"snapshot":{"generation":2,"op":"rollback","target":1}}`))
	f.Add([]byte(`{"format":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		mem := storetest.NewMem(data, []byte("a"))
		c := &catalog{blocks: mem}
		m, err := c.readManifest(context.Background(), []blockstore.Locator{blockstore.LocatorOf(data)})
		if err != nil {
			if !errors.Is(err, ErrBadManifest) {
				t.Fatalf("error not ErrBadManifest: %v", err)
			}
			return
		}
		for _, s := range m.Segments {
			var total int64
			for _, l := range s.Blocks {
				total += l.Size
			}
			if s.Size <= 0 || s.Size > objects.MaxSegmentSize || total != s.Size {
				t.Fatalf("accepted segment %s of %d bytes, blocks %d", s.ID, s.Size, total)
			}
			b, err := c.getBlob(context.Background(), s.Blocks, s.Size)
			if err == nil && int64(len(b)) != s.Size {
				t.Fatalf("segment %s read as %d bytes", s.ID, len(b))
			}
		}
		for _, s := range m.History {
			if s.Generation >= m.Generation || len(s.Manifest) == 0 {
				t.Fatalf("accepted history entry %+v in generation %d", s, m.Generation)
			}
		}
	})
}

// FuzzParseTags: the tags ref never panics the parser; accepted tags have
// valid names and bounded manifests, and format back to what parses the same.
func FuzzParseTags(f *testing.F) {
	f.Add([]byte(tagsHeader + "\nv1 3 " + blockstore.LocatorOf([]byte("a")).String() + "\n"))
	f.Add([]byte(tagsHeader))
	f.Fuzz(func(t *testing.T, raw []byte) {
		tags, err := parseTags(raw)
		if err != nil {
			if !errors.Is(err, ErrBadManifest) {
				t.Fatalf("error not ErrBadManifest: %v", err)
			}
			return
		}
		for n, tg := range tags {
			if CheckTagName(n) != nil || checkBlocks(tg.Manifest, -1) != nil {
				t.Fatalf("accepted tag %+v", tg)
			}
		}
		back, err := parseTags(formatTags(tags))
		if err != nil || len(back) != len(tags) {
			t.Fatalf("tags do not round-trip: %v", err)
		}
	})
}

func TestCheckTagName(t *testing.T) {
	for _, ok := range []string{"v1", "release-2024.06", "validated_by_job"} {
		if err := CheckTagName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "..", "x..y", "a b", "tab\t", "nul\x00", "12", strings.Repeat("x", 129), "\xff"} {
		if err := CheckTagName(bad); !errors.Is(err, ErrBadTagName) {
			t.Errorf("%q: %v, want ErrBadTagName", bad, err)
		}
	}
}

// TestRestoredSegments: a restore keeps the target's segments and adds
// those a publish landed after the restore was decided, never the ones it
// undoes.
func TestRestoredSegments(t *testing.T) {
	seg := func(ids ...string) []SegmentRef {
		var out []SegmentRef
		for _, id := range ids {
			out = append(out, SegmentRef{ID: id})
		}
		return out
	}
	got := restoredSegments(seg("a", "b", "c"), seg("a"), seg("a", "b", "c", "raced"))
	if len(got) != 2 || got[0].ID != "a" || got[1].ID != "raced" {
		t.Errorf("restoredSegments = %v, want a and raced", got)
	}
}
