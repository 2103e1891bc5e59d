package volume

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"blockfs/blockstore"
	"blockfs/fs/tree"
)

// VerifyReport is what Verify found. Problems list each bad block once
// with the files that use it, so an operator knows what to re-import.
type VerifyReport struct {
	Files    int64     `json:"files"`
	Blocks   int64     `json:"blocks"` // unique blocks referenced
	Bytes    int64     `json:"bytes"`  // of those unique blocks
	Checked  int64     `json:"checked"`
	Missing  []Problem `json:"missing"`
	Corrupt  []Problem `json:"corrupt"`
	Deep     bool      `json:"deep"`
	Failures int64     `json:"failures"` // blocks that could not be checked (store errors)
}

// Problem is one bad block and the paths of the files that use it.
type Problem struct {
	Block blockstore.Locator `json:"block"`
	Paths []string           `json:"paths"`
	Error string             `json:"error"`
}

// OK reports whether every referenced block is present (and, deep, intact).
func (r *VerifyReport) OK() bool {
	return len(r.Missing) == 0 && len(r.Corrupt) == 0 && r.Failures == 0
}

// VerifyProgress is called from Verify's goroutines as blocks are checked.
type VerifyProgress func(checked, total int64)

// Verify checks every block referenced by the files under root: that the
// store has it, or with deep that its bytes hash to its name (reading
// everything once). It reads only; workers bounds the blocks in flight.
func (v *Volume) Verify(ctx context.Context, root string, deep bool, workers int, progress VerifyProgress) (*VerifyReport, error) {
	if !v.HasMetadata() {
		return nil, fmt.Errorf("verify %s: %w", v.Spec, ErrNoMetadata)
	}
	if err := v.checkRoot(); err != nil {
		return nil, fmt.Errorf("verify %s: %w", v.Spec, err)
	}
	rep := &VerifyReport{Deep: deep, Missing: []Problem{}, Corrupt: []Problem{}}
	users := map[blockstore.Locator][]string{}
	err := v.Tree.Walk(root, func(p string, n *tree.Node) error {
		if n.Kind != tree.KindFile {
			return nil
		}
		rep.Files++
		for _, l := range n.Blocks {
			if tree.IsHole(l) {
				continue // zeros, not stored
			}
			if _, seen := users[l]; !seen {
				rep.Blocks++
				rep.Bytes += l.Size
			}
			users[l] = append(users[l], p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", root, err)
	}
	if tree.CleanPath(root) == "/" {
		v.verifyParts(ctx, rep, users)
	}
	work := make(chan blockstore.Locator)
	var mu sync.Mutex
	var checked atomic.Int64
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for l := range work {
				err := v.checkBlock(ctx, l, deep, &buf)
				mu.Lock()
				switch {
				case err == nil:
				case errors.Is(err, blockstore.ErrNotFound):
					rep.Missing = append(rep.Missing, Problem{Block: l, Paths: users[l], Error: err.Error()})
				case errors.Is(err, blockstore.ErrCorrupt):
					rep.Corrupt = append(rep.Corrupt, Problem{Block: l, Paths: users[l], Error: err.Error()})
				default:
					rep.Failures++
				}
				mu.Unlock()
				n := checked.Add(1)
				if progress != nil {
					progress(n, rep.Blocks)
				}
			}
		}()
	}
	for l := range users {
		select {
		case work <- l:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	rep.Checked = checked.Load()
	for _, ps := range [][]Problem{rep.Missing, rep.Corrupt} {
		sort.Slice(ps, func(i, j int) bool { return ps[i].Paths[0] < ps[j].Paths[0] })
	}
	return rep, ctx.Err()
}

// checkBlock checks one block: present, or with deep present and intact.
func (v *Volume) checkBlock(ctx context.Context, l blockstore.Locator, deep bool, buf *[]byte) error {
	if !deep {
		ok, err := v.Blocks.Has(ctx, l.Hash)
		if err == nil && !ok {
			err = fmt.Errorf("%w: %s", blockstore.ErrNotFound, l)
		}
		return err
	}
	if int64(cap(*buf)) < l.Size {
		*buf = make([]byte, l.Size)
	}
	return blockstore.ReadVerified(ctx, v.Blocks, l, (*buf)[:l.Size])
}

// ErrBadRoot is wrapped by the error for a tree whose root is not a
// directory: the metadata is damaged or crafted, and a walk from it would
// check one file or none and call the store healthy.
var ErrBadRoot = errors.New("the root of the tree is not a directory")

func (v *Volume) checkRoot() error {
	n, err := v.Tree.Lookup("/")
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	if n.Kind != tree.KindDir {
		return fmt.Errorf("%w: it is a %s node (see docs/operations.md)", ErrBadRoot, n.Kind)
	}
	return nil
}

// verifyParts adds the blocks of the current snapshot's metadata parts to
// those Verify checks (reading each part, which verifies it), and a part
// that cannot be read as a problem.
func (v *Volume) verifyParts(ctx context.Context, rep *VerifyReport, users map[blockstore.Locator][]string) {
	v.mu.Lock()
	m := v.cur
	v.mu.Unlock()
	p, err := v.cat.checkParts(ctx, m, func(root string, l blockstore.Locator) {
		if _, seen := users[l]; !seen {
			rep.Blocks++
			rep.Bytes += l.Size
		}
		users[l] = append(users[l], "metadata part of "+root)
	})
	if err == nil {
		return
	}
	switch {
	case errors.Is(err, blockstore.ErrNotFound):
		rep.Missing = append(rep.Missing, p)
	case errors.Is(err, blockstore.ErrCorrupt):
		rep.Corrupt = append(rep.Corrupt, p)
	default:
		rep.Failures++
	}
}
