package volume

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"blockfs/blockstore"
	"blockfs/fs/parts"
	"blockfs/fs/tree"
)

// PartsRepair is what RepairParts found and did.
type PartsRepair struct {
	// Damaged is the bad part found: a walk cannot see below a part it
	// cannot read, so the first one (a rebuild rewrites all that are bad).
	Damaged []Problem `json:"damaged"`
	// Rewritten counts the part blocks written again because the store's
	// copy was missing or did not verify.
	Rewritten int `json:"rewritten"`
	// Published is the snapshot published with the rebuilt parts, when
	// they differ from the damaged ones' (nil: same parts, repaired in
	// place).
	Published *Snapshot `json:"published,omitempty"`
}

// errPartsRepairLazy: RepairParts needs the whole tree in the private log.
var errPartsRepairLazy = errors.New("repairing metadata parts needs a volume opened without Lazy")

// RepairParts checks the current snapshot's metadata parts, reading and
// hash-checking each, and unless dry rebuilds them from the tree the
// segments hold (which the volume ingested), writing again every part
// block whose copy in the store is missing or corrupt. The segments are
// the truth; parts are an index of them that mounts fetch on demand, so a
// bad part is rebuilt, not rolled back to an older snapshot. Parts encode
// deterministically: a tree equal to the published one gives the same
// blocks, which repairs them in place; if the rebuild differs (other part
// sizes, or parts that held writes one publish early), a snapshot with
// the same segments and the new parts is published.
func (v *Volume) RepairParts(ctx context.Context, dryRun bool) (*PartsRepair, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.lazy || v.at != nil {
		return nil, errPartsRepairLazy
	}
	m := v.cur
	rep := &PartsRepair{Damaged: []Problem{}}
	p, err := v.cat.checkParts(ctx, m, nil)
	switch {
	case err == nil:
		return rep, nil
	case !parts.IsPartError(err):
		return nil, fmt.Errorf("checking metadata parts: %w", err)
	}
	rep.Damaged = append(rep.Damaged, p)
	if dryRun {
		return rep, nil
	}
	put := func(ctx context.Context, data []byte) ([]blockstore.Locator, error) {
		n, locs, err := v.cat.rewriteBlob(ctx, data)
		rep.Rewritten += n
		return locs, err
	}
	ref, _, err := parts.Build(ctx, tree.LogSource{Log: v.Meta}, parts.BuildOptions{MaxEntries: v.partsMax}, put)
	if err != nil {
		return rep, fmt.Errorf("rebuilding metadata parts: %w", err)
	}
	if err := v.cat.flush(ctx); err != nil {
		return rep, err
	}
	if m.Parts != nil && sameRef(m.Parts.Ref, ref) {
		return rep, nil
	}
	op := Snapshot{Op: OpRepair, Changes: &Changes{}}
	if m.Snapshot != nil {
		op.Target = m.Snapshot.Generation
	}
	nm, _, err := v.cat.update(ctx, op, func(cur *Manifest) error {
		if !sameSegments(cur.Segments, m.Segments) {
			return fmt.Errorf("store %s: published to during the repair of its metadata parts; run blockfs repair again", v.Spec)
		}
		cur.Parts = &PartsRef{Format: parts.Format, Ref: ref}
		return nil
	})
	if err != nil {
		return rep, err
	}
	rep.Published = nm.Snapshot
	return rep, nil
}

// checkParts reads every part of m's (each read verifies), calling fn, if
// set, with each part's blocks. A part that cannot be read stops the walk
// (its children are named inside it): its problem and the error.
func (c *catalog) checkParts(ctx context.Context, m Manifest, fn func(root string, l blockstore.Locator)) (Problem, error) {
	var last blockstore.Locator // the walk reads a part right after naming its blocks
	lastRoot := "/"
	err := c.walkParts(ctx, m, func(root string, l blockstore.Locator) {
		if root != lastRoot || last == (blockstore.Locator{}) {
			last, lastRoot = l, root
		}
		if fn != nil {
			fn(root, l)
		}
	})
	if err != nil {
		return Problem{Block: last, Paths: []string{"metadata part of " + lastRoot}, Error: err.Error()}, err
	}
	return Problem{}, nil
}

// rewriteBlob stores data as blocks like putBlob, but writes each block
// again unless the store's copy reads back whole: a content-addressed put
// of a block the store has (with the right size) leaves a corrupt copy be.
// It returns how many blocks it wrote.
func (c *catalog) rewriteBlob(ctx context.Context, data []byte) (int, []blockstore.Locator, error) {
	var locs []blockstore.Locator
	written := 0
	buf := make([]byte, metaChunk)
	for len(data) > 0 {
		n := min(len(data), metaChunk)
		loc := blockstore.LocatorOf(data[:n])
		err := blockstore.ReadVerified(ctx, c.blocks, loc, buf[:n])
		switch {
		case errors.Is(err, blockstore.ErrNotFound), errors.Is(err, blockstore.ErrCorrupt):
			if err := blockstore.PutHashed(ctx, c.blocks, loc.Hash, data[:n]); err != nil {
				return written, nil, fmt.Errorf("rewriting metadata part block %s: %w", loc, err)
			}
			written++
		case err != nil:
			return written, nil, fmt.Errorf("reading metadata part block %s: %w", loc, err)
		}
		locs = append(locs, loc)
		data = data[n:]
	}
	return written, locs, nil
}

// sameRef reports whether a and b name the same part.
func sameRef(a, b parts.Ref) bool {
	return a.Size == b.Size && slices.Equal(a.Blocks, b.Blocks)
}
