package main

import (
	"context"
	"encoding/json"
	"fmt"

	"blockfs/fs/volume"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name: "compact", args: "", summary: "merge the store's metadata segments into a fresh few (a new snapshot)",
		help: `Every import adds metadata segments, and a new mount fetches and ingests all
of them, so start-up slows down as imports accumulate. compact writes the
live metadata (versions kept) as a few new segments and publishes them in
place of the old ones, by the same compare-and-swap as an import: imports
running meanwhile are not lost. Imports also compact on their own once a
store has more than 64 segments. The old segments stay in the store for the
snapshots that name them (rollback and mount --at still work); running
mounts switch to the compacted segments at their next refresh.`,
		setup: setupCompact,
	})
}

func setupCompact(fl *pflag.FlagSet) runFunc {
	sf := addStoreFlags(fl)
	metaDir := addMetaDirFlag(fl)
	asJSON := fl.Bool("json", false, "print what was done as JSON")
	return func(ctx context.Context, e env, args []string) error {
		if len(args) != 0 {
			return usagef("want no arguments, got %d", len(args))
		}
		spec, opts, err := sf.options(false)
		if err != nil {
			return err
		}
		vol, err := volume.Open(ctx, spec, volume.Options{Options: opts, MetaDir: *metaDir, CompactAbove: -1})
		if err != nil {
			return err
		}
		defer vol.Close()
		if !vol.HasMetadata() {
			return fmt.Errorf("store %s: %w", spec, volume.ErrNoMetadata)
		}
		c, err := vol.Compact(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(e.stdout).Encode(c)
		}
		if c.Published == nil {
			fmt.Fprintf(e.stdout, "nothing to compact: %d metadata segment\n", c.SegmentsBefore)
			return nil
		}
		fmt.Fprintf(e.stdout, "compacted %d metadata segments into %d (%d objects, %d tombstones, %s), published as snapshot %d; %d segments now\n",
			c.SegmentsBefore, c.Written.Segments, c.Written.Objects, c.Written.Tombstones, humanize.IBytes(uint64(c.Written.Bytes)),
			c.Published.Generation, c.SegmentsAfter)
		return nil
	}
}
