package main

import (
	"context"
	"fmt"
	"io"

	"blockfs/fs/gc"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/objects"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name: "rm", args: "PATH...", summary: "remove paths from the store (a new snapshot; undo with rollback)",
		help: `Publishes tombstones for each PATH (and with -r everything under a
directory) as one new snapshot: mounts drop the paths at their next refresh,
handles already open keep reading, and 'blockfs rollback' brings them back.
A directory needs -r; / cannot be removed. --dry-run lists exactly what
would be removed and changes nothing. Blocks are not deleted.`,
		setup: setupRm,
	})
}

// rmListMax is how many removed paths rm lists before it only sums up.
const rmListMax = 10

func setupRm(fl *pflag.FlagSet) runFunc {
	sf := addStoreFlags(fl)
	metaDir := addMetaDirFlag(fl)
	recursive := fl.BoolP("recursive", "r", false, "remove directories and everything under them")
	dry := fl.Bool("dry-run", false, "list what would be removed and change nothing")
	return func(ctx context.Context, e env, args []string) error {
		if len(args) == 0 {
			return usagef("want at least one PATH")
		}
		spec, opts, err := sf.options(false)
		if err != nil {
			return err
		}
		vol, err := volume.Open(ctx, spec, volume.Options{Options: opts, MetaDir: *metaDir})
		if err != nil {
			return err
		}
		defer vol.Close()
		gone, sum, err := collectRemovals(vol.Tree, args, *recursive)
		if err != nil {
			return err
		}
		if *dry || len(gone) <= rmListMax {
			verb := "removed"
			if *dry {
				verb = "would remove"
			}
			for _, p := range gone {
				fmt.Fprintf(e.stdout, "%s %s\n", verb, p)
			}
		}
		if *dry {
			printRmSummary(e.stdout, "would remove", sum)
			return nil
		}
		// rm writes a segment of tombstones before it publishes it: like
		// an import it holds a lease from before the write, or a sweep
		// could delete the unpublished segment (docs/gc.md, case 1).
		lease, err := acquireLease(ctx, vol.Blocks, gc.LeaseOptions{Kind: gc.KindImport})
		if err != nil {
			return err
		}
		if lease != nil {
			defer lease.Release(context.WithoutCancel(ctx))
			var stop context.CancelFunc
			ctx, stop = lease.Bind(ctx) // no publish once the lease is lost
			defer stop()
		}
		if err := removePaths(ctx, vol, gone); err != nil {
			return err
		}
		printRmSummary(e.stdout, "removed", sum)
		return nil
	}
}

// rmSummary counts what rm removes.
type rmSummary struct{ files, dirs, symlinks, bytes int64 }

func printRmSummary(w io.Writer, verb string, s rmSummary) {
	fmt.Fprintf(w, "%s %d entries: %d files (%s), %d directories, %d symlinks\n",
		verb, s.files+s.dirs+s.symlinks, s.files, humanize.IBytes(uint64(s.bytes)), s.dirs, s.symlinks)
}

// collectRemovals lists every path to remove, children before their
// directories (the order tombstones must be applied in), checking first
// that each argument exists and may be removed, so that a mistake changes
// nothing.
func collectRemovals(t *tree.Tree, args []string, recursive bool) ([]string, rmSummary, error) {
	var out []string
	var sum rmSummary
	seen := map[string]bool{}
	for _, a := range args {
		p := tree.CleanPath(a)
		if p == "/" {
			return nil, sum, usagef("refusing to remove /")
		}
		n, err := t.Lookup(p)
		if err != nil {
			return nil, sum, err
		}
		if n.Kind == tree.KindDir && !recursive {
			return nil, sum, fmt.Errorf("%s is a directory (use -r to remove it and everything under it)", p)
		}
		var sub []string
		err = t.Walk(p, func(q string, n *tree.Node) error {
			if seen[q] {
				return nil
			}
			seen[q] = true
			sub = append(sub, q)
			switch n.Kind {
			case tree.KindFile:
				sum.files++
				sum.bytes += n.Size
			case tree.KindDir:
				sum.dirs++
			default:
				sum.symlinks++
			}
			return nil
		})
		if err != nil {
			return nil, sum, err
		}
		for i := len(sub) - 1; i >= 0; i-- { // Walk lists parents first
			out = append(out, sub[i])
		}
	}
	return out, sum, nil
}

// removePaths writes the tombstones and publishes them as one snapshot:
// nothing is published before the last one is written, so a crash
// removes all of them or none.
func removePaths(ctx context.Context, vol *volume.Volume, gone []string) error {
	const batch = 256
	for len(gone) > 0 {
		n := min(len(gone), batch)
		entries := make([]objects.Entry, n)
		for i, p := range gone[:n] {
			entries[i] = tree.DeleteEntry(p)
		}
		if err := vol.Write(entries); err != nil {
			return fmt.Errorf("writing tombstones: %w", err)
		}
		gone = gone[n:]
	}
	return vol.Publish(ctx)
}
