package volume

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"blockfs/blockstore"
)

// Tags name snapshots. They live together in one ref, meta/tags, so that
// they are listed with one read and changed by the same compare-and-swap as
// meta/head; each tag records its snapshot's manifest blocks, so a tag
// keeps its version reachable by itself.
const tagsRef = "meta/tags"

const tagsHeader = "blockfs-tags 1"

// Tag is a named snapshot.
type Tag struct {
	Name       string               `json:"name"`
	Generation uint64               `json:"generation"`
	Manifest   []blockstore.Locator `json:"manifest"`
}

// ErrBadTagName is wrapped by the error for a tag name CheckTagName refuses.
var ErrBadTagName = errors.New("bad tag name")

// CheckTagName accepts 1 to 128 bytes of printable UTF-8 without "/",
// "..", spaces or control characters, and not all digits (a number names a
// snapshot).
func CheckTagName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrBadTagName, name, why) }
	switch {
	case name == "" || len(name) > 128:
		return bad("want 1 to 128 bytes")
	case !utf8.ValidString(name):
		return bad("not UTF-8")
	case strings.Contains(name, "/") || strings.Contains(name, ".."):
		return bad(`no "/" or ".." allowed`)
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0:
		return bad("no spaces or control characters allowed")
	case strings.Trim(name, "0123456789") == "":
		return bad("all digits (that would name a snapshot number)")
	}
	return nil
}

// loadTags reads the tags and the ref version they were read at.
func (c *catalog) loadTags(ctx context.Context) (map[string]Tag, string, error) {
	raw, version, err := c.refs.GetRef(ctx, tagsRef)
	if errors.Is(err, blockstore.ErrNotFound) {
		return map[string]Tag{}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading tags: %w", err)
	}
	tags, err := parseTags(raw)
	return tags, version, err
}

// parseTags reads the tags ref: a header line, then one tag a line: name,
// generation, manifest locators, separated by spaces.
func parseTags(raw []byte) (map[string]Tag, error) {
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if lines[0] != tagsHeader {
		return nil, fmt.Errorf("%w: tags ref does not start with %q", ErrBadManifest, tagsHeader)
	}
	tags := map[string]Tag{}
	for _, l := range lines[1:] {
		f := strings.Split(l, " ")
		if len(f) < 3 {
			return nil, fmt.Errorf("%w: tags ref: line %q", ErrBadManifest, clip(l))
		}
		if err := CheckTagName(f[0]); err != nil {
			return nil, fmt.Errorf("%w: tags ref: %w", ErrBadManifest, err)
		}
		g, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: tags ref: tag %s: generation: %w", ErrBadManifest, f[0], err)
		}
		t := Tag{Name: f[0], Generation: g}
		for _, s := range f[2:] {
			loc, err := blockstore.ParseLocator(s)
			if err != nil {
				return nil, fmt.Errorf("%w: tags ref: tag %s: %w", ErrBadManifest, f[0], err)
			}
			t.Manifest = append(t.Manifest, loc)
		}
		if err := checkBlocks(t.Manifest, -1); err != nil {
			return nil, fmt.Errorf("%w: tags ref: tag %s: %w", ErrBadManifest, f[0], err)
		}
		if _, dup := tags[t.Name]; dup {
			return nil, fmt.Errorf("%w: tags ref: tag %s twice", ErrBadManifest, t.Name)
		}
		tags[t.Name] = t
	}
	return tags, nil
}

func formatTags(tags map[string]Tag) []byte {
	names := make([]string, 0, len(tags))
	for n := range tags {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(tagsHeader + "\n")
	for _, n := range names {
		t := tags[n]
		fmt.Fprintf(&b, "%s %d", n, t.Generation)
		for _, l := range t.Manifest {
			b.WriteString(" " + l.String())
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}

// updateTags applies fn to the tags and writes them back with
// compare-and-swap, retrying while others change them meanwhile.
func (c *catalog) updateTags(ctx context.Context, fn func(map[string]Tag) error) error {
	for attempt := 1; ; attempt++ {
		tags, version, err := c.loadTags(ctx)
		if err != nil {
			return err
		}
		if err := fn(tags); err != nil {
			return err
		}
		data := formatTags(tags)
		if len(data) > blockstore.MaxRefSize {
			return fmt.Errorf("too many tags (%d bytes, at most %d): delete some", len(data), blockstore.MaxRefSize)
		}
		_, err = c.refs.PutRef(ctx, tagsRef, data, version)
		if err == nil {
			return nil
		}
		if !errors.Is(err, blockstore.ErrConflict) || attempt >= 50 {
			return fmt.Errorf("writing tags: %w", err)
		}
	}
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
