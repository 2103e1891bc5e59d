package volume

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"blockfs/blockstore"
)

// Every publish makes a snapshot: a numbered (Generation), immutable
// manifest. Manifests are content-addressed blocks that are never
// overwritten, so recording each one's blocks in its successor's History is
// enough to keep every earlier version of the tree reachable: rollback and
// repair publish a new snapshot whose segments are an old one's, and history
// is never rewritten. See docs/metadata.md and docs/operations.md.

// Snapshot describes one publish.
type Snapshot struct {
	Generation uint64    `json:"generation"`
	Time       time.Time `json:"time,omitzero"`
	Host       string    `json:"host,omitempty"`
	// Op is what made it: "publish" (an import), "rollback", "repair", or
	// "legacy" for a manifest written before snapshots were recorded.
	Op     string `json:"op"`
	Target uint64 `json:"target,omitempty"` // rollback and repair: the snapshot restored
	// What changed, counted in metadata segments (and their bytes) because
	// that is what a publish knows without reading the trees.
	Segments        int   `json:"segments"`
	SegmentsAdded   int   `json:"segments_added"`
	SegmentsRemoved int   `json:"segments_removed"`
	MetaBytesAdded  int64 `json:"meta_bytes_added"`
	// Changes is what it changed in the tree, in files and bytes (nil in
	// snapshots written before they were counted, or whose writes went to
	// the log directly: not known).
	Changes *Changes `json:"changes,omitempty"`
	// Manifest is the blocks of this snapshot's manifest (the parent's, in
	// the History of its successor).
	Manifest []blockstore.Locator `json:"manifest,omitempty"`
	Tags     []string             `json:"tags,omitempty"` // filled in by Snapshots
}

// Snapshot ops.
const (
	OpPublish  = "publish"
	OpRollback = "rollback"
	OpRepair   = "repair"
	OpLegacy   = "legacy"
)

var hostname = func() string { h, _ := os.Hostname(); return h }()

// current is the snapshot a head stands for, with its manifest's blocks: a
// manifest without a Snapshot (written before snapshots) is a legacy one.
func (h head) current() Snapshot {
	s := Snapshot{Generation: h.m.Generation, Op: OpLegacy, Segments: len(h.m.Segments)}
	if h.m.Snapshot != nil {
		s = *h.m.Snapshot
	}
	s.Manifest = h.locs
	return s
}

// successor is m (h's manifest after a change) as the next snapshot: the
// generation bumped, op described, and h's snapshot appended to History.
func successor(h head, m Manifest, op Snapshot) Manifest {
	if h.version != "" {
		m.History = append(slices.Clip(h.m.History), h.current())
	}
	m.Generation = h.m.Generation + 1
	old := make(map[string]bool, len(h.m.Segments))
	for _, s := range h.m.Segments {
		old[s.ID] = true
	}
	op.Generation, op.Time, op.Host, op.Segments = m.Generation, time.Now().UTC().Truncate(time.Second), hostname, len(m.Segments)
	op.SegmentsAdded, op.SegmentsRemoved, op.MetaBytesAdded = 0, len(h.m.Segments), 0
	for _, s := range m.Segments {
		if old[s.ID] {
			op.SegmentsRemoved--
		} else {
			op.SegmentsAdded++
			op.MetaBytesAdded += s.Size
		}
	}
	op.Manifest, op.Tags = nil, nil
	m.Snapshot = &op
	return m
}

// snapshots lists h's snapshots, newest first.
func (h head) snapshots() []Snapshot {
	if h.version == "" {
		return nil
	}
	out := []Snapshot{h.current()}
	for i := len(h.m.History) - 1; i >= 0; i-- {
		out = append(out, h.m.History[i])
	}
	return out
}

// ErrNoSnapshot is wrapped by errors for a snapshot or tag that does not exist.
var ErrNoSnapshot = fmt.Errorf("no such snapshot")

// resolve finds the snapshot named by spec: a generation number or a tag.
func (c *catalog) resolve(ctx context.Context, h head, spec string) (Snapshot, error) {
	if g, err := strconv.ParseUint(spec, 10, 64); err == nil {
		for _, s := range h.snapshots() {
			if s.Generation == g {
				return s, nil
			}
		}
		return Snapshot{}, fmt.Errorf("snapshot %d: %w (see blockfs log)", g, ErrNoSnapshot)
	}
	tags, _, err := c.loadTags(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	t, ok := tags[spec]
	if !ok {
		return Snapshot{}, fmt.Errorf("tag %q: %w (see blockfs log)", spec, ErrNoSnapshot)
	}
	for _, s := range h.snapshots() {
		if s.Generation == t.Generation {
			return s, nil
		}
	}
	// The tag's own record is enough to reach its manifest.
	return Snapshot{Generation: t.Generation, Op: "tagged", Manifest: t.Manifest}, nil
}
