package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"blockfs/fs/volume"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// The snapshot commands work on the catalog alone (volume.OpenCatalog):
// they never ingest the metadata, so they work on stores whose metadata is
// too damaged to mount, which is when rollback and repair are needed.

func init() {
	register(&command{
		name: "log", args: "", summary: "list the store's snapshots, newest first, with their tags",
		help: `Every publish (an import, a rollback, a repair) is a numbered snapshot of the
whole tree. Each line: snapshot number, when, by which host, what made it,
what it changed in the tree (files, with their bytes, directories and
symlinks added +, removed - or changed ~; "-" when an older blockfs wrote
it), the metadata segments it holds (and how many it added or removed),
tags.
Read-only.`,
		setup: setupLog,
	})
	register(&command{
		name: "tag", args: "NAME [SNAPSHOT] | --delete NAME", summary: "name a snapshot (default: the current one), or delete a tag",
		help: `A tag pins a snapshot so that it can be rolled back to (or mounted) by name.
Names: up to 128 bytes, no "/", "..", spaces or control characters, not all
digits. An existing tag is not moved: delete it first. Deleting a tag keeps
its snapshot in the log.`,
		setup: setupTag,
	})
	register(&command{
		name: "rollback", args: "TAG|SNAPSHOT", summary: "publish a new snapshot equal to an older one",
		help: `The store's tree becomes that of the given snapshot, as a new snapshot: the
history is never rewritten, so a rollback can itself be undone by rolling
back to the snapshot before it. New mounts serve it at once; running mounts
switch to it at their next refresh (files already open keep reading the
version they opened). Checks first that every metadata block of the target
is present.`,
		setup: func(fl *pflag.FlagSet) runFunc { return setupRestore(fl, false) },
	})
	register(&command{
		name: "repair", args: "", summary: "roll back to the newest snapshot whose metadata is whole, or rebuild damaged metadata parts",
		help: `When a metadata block is lost or damaged, every new mount, import and verify
of the store fails. repair reads and hash-checks the metadata of each
snapshot, newest first, and rolls back to the first one that is whole,
printing what was damaged and which snapshots' changes are lost (their
files can be imported again). When the current snapshot's segments are
whole but one of its metadata parts (the index mounts fetch on demand) is
missing or corrupt, repair rebuilds the parts from the segments instead,
losing nothing. See docs/operations.md.`,
		setup: func(fl *pflag.FlagSet) runFunc { return setupRestore(fl, true) },
	})
}

// openCatalog opens the catalog of the store the flags name.
func openCatalog(ctx context.Context, sf *storeFlags) (*volume.Catalog, error) {
	spec, opts, err := sf.options(false)
	if err != nil {
		return nil, err
	}
	return volume.OpenCatalog(ctx, spec, opts)
}

func setupLog(fl *pflag.FlagSet) runFunc {
	sf := addStoreFlags(fl)
	asJSON := fl.Bool("json", false, "print snapshots and tags as JSON")
	return func(ctx context.Context, e env, args []string) error {
		if len(args) != 0 {
			return usagef("want no arguments, got %d", len(args))
		}
		cat, err := openCatalog(ctx, sf)
		if err != nil {
			return err
		}
		defer cat.Close()
		snaps, err := cat.Snapshots(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			tags, err := cat.Tags(ctx)
			if err != nil {
				return err
			}
			return json.NewEncoder(e.stdout).Encode(map[string]any{"snapshots": snaps, "tags": tags})
		}
		if len(snaps) == 0 {
			fmt.Fprintf(e.stdout, "%s: no snapshots (nothing published yet)\n", cat.Spec)
			return nil
		}
		printLog(e.stdout, snaps)
		return nil
	}
}

func printLog(w io.Writer, snaps []volume.Snapshot) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SNAPSHOT\tWHEN\tHOST\tOP\tCHANGES\tSEGMENTS\tTAGS")
	for _, s := range snaps {
		when, op := "-", s.Op
		if !s.Time.IsZero() {
			when = humanize.Time(s.Time) + " (" + s.Time.Format("2006-01-02 15:04:05Z") + ")"
		}
		if s.Op == volume.OpRollback || s.Op == volume.OpRepair {
			op += " to " + strconv.FormatUint(s.Target, 10)
		}
		segs := strconv.Itoa(s.Segments)
		if s.Op != volume.OpLegacy {
			segs += fmt.Sprintf(" (+%d -%d, %s)", s.SegmentsAdded, s.SegmentsRemoved, humanize.IBytes(uint64(s.MetaBytesAdded)))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Generation, when, orDash(s.Host), op, formatChanges(s.Changes), segs, orDash(strings.Join(s.Tags, ",")))
	}
	tw.Flush()
}

// formatChanges is a snapshot's counts for a human: "+120 files (+3.4 MiB)
// -2 files (-10 KiB) ~1 file", the kinds that did not change left out;
// "none" for a snapshot that changed nothing (a compaction), "-" for one
// whose counts are not known (written by an older blockfs).
func formatChanges(c *volume.Changes) string {
	if c == nil {
		return "-"
	}
	var parts []string
	n := func(sign string, v int64, one, many string) string {
		if v == 1 {
			return sign + "1 " + one
		}
		return sign + strconv.FormatInt(v, 10) + " " + many
	}
	add := func(sign string, v int64, one, many string, bytes int64) {
		if v == 0 {
			return
		}
		p := n(sign, v, one, many)
		if bytes != 0 {
			p += " (" + sign + humanize.IBytes(uint64(bytes)) + ")"
		}
		parts = append(parts, p)
	}
	added, removed := c.BytesAdded, c.BytesRemoved
	if c.FilesChanged > 0 { // changed files' bytes go with the change
		added, removed = 0, 0
	}
	add("+", c.FilesAdded, "file", "files", added)
	add("-", c.FilesRemoved, "file", "files", removed)
	if c.FilesChanged > 0 {
		p := n("~", c.FilesChanged, "file", "files")
		p += fmt.Sprintf(" (+%s -%s in all)", humanize.IBytes(uint64(c.BytesAdded)), humanize.IBytes(uint64(c.BytesRemoved)))
		parts = append(parts, p)
	}
	add("+", c.DirsAdded, "dir", "dirs", 0)
	add("-", c.DirsRemoved, "dir", "dirs", 0)
	add("+", c.LinksAdded, "symlink", "symlinks", 0)
	add("-", c.LinksRemoved, "symlink", "symlinks", 0)
	add("~", c.LinksChanged, "symlink", "symlinks", 0)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func setupTag(fl *pflag.FlagSet) runFunc {
	sf := addStoreFlags(fl)
	del := fl.Bool("delete", false, "delete tag NAME")
	return func(ctx context.Context, e env, args []string) error {
		if len(args) < 1 || len(args) > 2 || (*del && len(args) != 1) {
			return usagef("want NAME [SNAPSHOT] or --delete NAME")
		}
		if err := volume.CheckTagName(args[0]); err != nil {
			return usagef("%v", err)
		}
		cat, err := openCatalog(ctx, sf)
		if err != nil {
			return err
		}
		defer cat.Close()
		if *del {
			if err := cat.DeleteTag(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted tag %s\n", args[0])
			return nil
		}
		spec := ""
		if len(args) == 2 {
			spec = args[1]
		}
		release, err := catalogLease(ctx, cat) // the tag may name history gc condemned
		if err != nil {
			return err
		}
		defer release()
		t, err := cat.Tag(ctx, args[0], spec)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "tagged snapshot %d as %s\n", t.Generation, t.Name)
		return nil
	}
}

// setupRestore is rollback (TAG|SNAPSHOT) or, with repair, repair.
func setupRestore(fl *pflag.FlagSet, repair bool) runFunc {
	sf := addStoreFlags(fl)
	dry := fl.Bool("dry-run", false, "print what would change and change nothing")
	asJSON := fl.Bool("json", false, "print the change as JSON")
	return func(ctx context.Context, e env, args []string) error {
		if repair && len(args) != 0 {
			return usagef("want no arguments, got %d", len(args))
		}
		if !repair && len(args) != 1 {
			return usagef("want TAG|SNAPSHOT, got %d arguments", len(args))
		}
		cat, err := openCatalog(ctx, sf)
		if err != nil {
			return err
		}
		defer cat.Close()
		if !*dry {
			release, err := catalogLease(ctx, cat) // restores reference old metadata
			if err != nil {
				return err
			}
			defer release()
		}
		var ch *volume.Change
		if repair {
			ch, err = cat.Repair(ctx, *dry)
			if err == nil && ch.From.Generation == ch.To.Generation {
				ch.Parts, err = repairParts(ctx, sf, *dry)
			}
		} else {
			ch, err = cat.Rollback(ctx, args[0], *dry)
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(e.stdout).Encode(ch)
		}
		printChange(e.stdout, ch, repair)
		return nil
	}
}

// repairParts checks, and unless dry rebuilds, the metadata parts of the
// current snapshot, whose segments are whole: from a volume that ingests
// them all (a part is an index of the segments, so it is rebuilt from them,
// not rolled back).
func repairParts(ctx context.Context, sf *storeFlags, dry bool) (*volume.PartsRepair, error) {
	spec, opts, err := sf.options(false)
	if err != nil {
		return nil, err
	}
	vol, err := volume.Open(ctx, spec, volume.Options{Options: opts})
	if err != nil {
		return nil, err
	}
	defer vol.Close()
	return vol.RepairParts(ctx, dry)
}

func printChange(w io.Writer, ch *volume.Change, repair bool) {
	for _, p := range ch.Damaged {
		fmt.Fprintf(w, "damaged: %s: %s\n", p.Paths[0], p.Error)
	}
	if ch.From.Generation == ch.To.Generation {
		printPartsRepair(w, ch.Parts, ch.To.Generation, ch.DryRun)
		return
	}
	verb := "rolled back"
	if repair {
		verb = "repaired: rolled back"
	}
	if ch.DryRun {
		verb = "would roll back"
	}
	fmt.Fprintf(w, "%s from snapshot %d to snapshot %d", verb, ch.From.Generation, ch.To.Generation)
	if ch.Published != nil {
		fmt.Fprintf(w, ", published as snapshot %d", ch.Published.Generation)
	}
	fmt.Fprintf(w, ": %d metadata segments dropped, %d restored; changes: %s\n", len(ch.Dropped), len(ch.Restored), formatChanges(ch.Changes))
	if len(ch.Undone) > 0 {
		undone := make([]string, len(ch.Undone))
		for i, g := range ch.Undone {
			undone[i] = strconv.FormatUint(g, 10)
		}
		fmt.Fprintf(w, "changes of snapshots %s are no longer in the tree (still in the log)\n", strings.Join(undone, ", "))
	}
	if ch.Published != nil {
		fmt.Fprintln(w, "running mounts switch to this snapshot at their next refresh")
	}
}

// printPartsRepair says what a repair found of the parts of snapshot gen,
// whose segments are whole, and did.
func printPartsRepair(w io.Writer, pr *volume.PartsRepair, gen uint64, dry bool) {
	if pr == nil || len(pr.Damaged) == 0 {
		fmt.Fprintf(w, "nothing to repair: the metadata of snapshot %d is whole\n", gen)
		return
	}
	for _, p := range pr.Damaged {
		fmt.Fprintf(w, "damaged: %s: %s\n", p.Paths[0], p.Error)
	}
	if dry {
		fmt.Fprintf(w, "would rebuild the metadata parts of snapshot %d from its segments (they are whole)\n", gen)
		return
	}
	fmt.Fprintf(w, "repaired: rebuilt the metadata parts of snapshot %d from its segments, %d blocks written again", gen, pr.Rewritten)
	if pr.Published != nil {
		fmt.Fprintf(w, ", published as snapshot %d", pr.Published.Generation)
	}
	fmt.Fprintln(w)
}
