package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"

	"blockfs/blockstore"
	"blockfs/fs/tree"
	"blockfs/objects"
)

// What the garbage collector (fs/gc) needs from the catalog: the blocks a
// snapshot reaches, read from metadata alone (no data block is fetched).

// Blocks is the store the catalog reads and writes blocks through.
func (c *Catalog) Blocks() blockstore.Store { return c.cat.blocks }

// Backend is the store behind any cache (what a collector deletes from).
func (c *Catalog) Backend() blockstore.Store { return c.store.Backend }

// Refs is the store's ref space.
func (c *Catalog) Refs() blockstore.RefStore { return c.cat.refs }

// Reach calls fn for every block snapshot manifest reaches: the manifest's
// own blocks, its segments' blocks, its metadata parts' blocks, and the blocks of every file in the
// tree it describes (winning versions only: a file removed or overwritten
// in this snapshot does not keep its old blocks alive). Older snapshots'
// manifests, which its history names, are not followed: whether they stay
// is the collector's retention decision. metaDir is where the temporary
// private log is made ("" is os.TempDir()).
func (c *Catalog) Reach(ctx context.Context, manifest []blockstore.Locator, metaDir string, fn func(blockstore.Locator)) error {
	m, err := c.cat.readManifest(ctx, manifest)
	if err != nil {
		return err
	}
	for _, l := range manifest {
		fn(l)
	}
	for _, s := range m.Segments {
		for _, l := range s.Blocks {
			fn(l)
		}
	}
	// Its parts: every one is read (a part names its children), and one
	// that cannot be read fails the mark, since the parts below it could
	// not be told from garbage.
	if err := c.cat.walkParts(ctx, m, func(_ string, l blockstore.Locator) { fn(l) }); err != nil {
		return fmt.Errorf("metadata parts: %w", err)
	}
	dir, err := os.MkdirTemp(metaDir, metaDirPrefix)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lg, err := objects.Open(dir, objects.Options{Sync: objects.SyncNone})
	if err != nil {
		return fmt.Errorf("metadata log: %w", err)
	}
	defer lg.Close()
	v := &Volume{Spec: "gc", Meta: lg, cat: c.cat, ingested: map[string]bool{}, local: map[string]string{}, skipped: map[string]bool{},
		published: map[uint32]bool{}, logger: log.New(io.Discard, "", 0)}
	if _, err := v.ingestLocked(ctx, m); err != nil {
		return err
	}
	if len(v.skipped) > 0 {
		// A poisoned segment's files cannot be enumerated, so their blocks
		// cannot be told from garbage: refuse rather than delete them.
		return fmt.Errorf("%w: %d metadata segments do not decode; not collecting (see blockfs repair)", ErrBadManifest, len(v.skipped))
	}
	err = tree.NewTree(lg).Walk("/", func(p string, n *tree.Node) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, l := range n.Blocks {
			fn(l)
		}
		return nil
	})
	if errors.Is(err, tree.ErrNotExist) {
		return nil
	}
	return err
}
