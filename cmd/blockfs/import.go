package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"blockfs/fs/chunker"
	"blockfs/fs/importer"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/procs"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name:    "import",
		args:    "SRC [DEST]",
		summary: "copy a file or directory tree into a store",
		help: `Files are split into content-defined blocks (FastCDC), so that re-importing
an edited file stores only the blocks around the edits; blocks the store
already holds are not written again. DEST is the path inside the store
(default: / + the base name of SRC). Regular files, directories and symlinks
are imported with their modes and mtimes; anything else is skipped with a
warning. Each file appears in the store whole or not at all.`,
		setup: setupImport,
	})
}

func setupImport(fl *pflag.FlagSet) runFunc {
	sf := addStoreFlags(fl)
	metaDir := addMetaDirFlag(fl)
	def := chunker.DefaultConfig()
	minSize := sizeFlag(fl, "chunk-min", int64(def.Min), "smallest block")
	avgSize := sizeFlag(fl, "chunk-avg", int64(def.Avg), "average block (the block size with --fixed)")
	maxSize := sizeFlag(fl, "chunk-max", int64(def.Max), "largest block")
	fixed := fl.Bool("fixed", false, "fixed-size blocks of --chunk-avg instead of content-defined ones")
	workers := fl.Int("workers", 0, "goroutines hashing and storing blocks (default: four per core, so stores overlap their latency)")
	asJSON := fl.Bool("json", false, "print the summary as JSON")
	quiet := fl.BoolP("quiet", "q", false, "no progress bar and no summary (errors and warnings only)")
	del := fl.Bool("delete", false, "remove paths under DEST that SRC no longer has (mirror SRC)")
	dry := fl.Bool("dry-run", false, "list what the import would add, change and (with --delete) delete, and change nothing")
	return func(ctx context.Context, e env, args []string) error {
		if len(args) < 1 || len(args) > 2 {
			return usagef("want SRC [DEST], got %d arguments", len(args))
		}
		spec, openOpts, err := sf.options(true)
		if err != nil {
			return err
		}
		src := args[0]
		dest := "/" + filepath.Base(filepath.Clean(src))
		if len(args) == 2 {
			dest = args[1]
		}
		cfg := chunker.Config{Min: int(*minSize), Avg: int(*avgSize), Max: int(*maxSize), Fixed: *fixed}
		if err := cfg.Validate(); err != nil {
			return usagef("%v", err)
		}
		procs.More()
		vol, err := volume.Open(ctx, spec, volume.Options{Options: openOpts, MetaDir: *metaDir})
		if err != nil {
			return err
		}
		defer vol.Close()
		im, err := importer.New(vol, importer.Options{
			Chunking: cfg,
			Workers:  *workers,
			Delete:   *del,
			Warn:     func(err error) { fmt.Fprintf(e.stderr, "blockfs import: warning: %v\n", err) },
		})
		if err != nil {
			return usagef("%v", err)
		}
		if *dry {
			plan, err := im.Plan(src, dest)
			if err != nil {
				return err
			}
			return printPlan(e.stdout, plan, *asJSON)
		}
		var bar *progressBar
		if !*quiet && !*asJSON && isTerminal(e.stdout) {
			bar = startProgress(e.stdout, func() (int64, int64) {
				p := im.Progress()
				return p.Bytes, p.TotalSize
			})
		}
		st, err := im.Import(ctx, src, dest)
		bar.stop()
		if err != nil {
			return err
		}
		if *asJSON {
			var ratio *float64 // null when nothing new was stored
			if r, ok := st.DedupRatio(); ok {
				ratio = &r
			}
			return json.NewEncoder(e.stdout).Encode(struct {
				importer.Stats
				Dest       string   `json:"dest"`
				DedupRatio *float64 `json:"dedup_ratio"`
			}{st, tree.CleanPath(dest), ratio})
		}
		if !*quiet {
			fmt.Fprintln(e.stdout, importSummary(tree.CleanPath(dest), st))
		}
		return nil
	}
}

func importSummary(dest string, st importer.Stats) string {
	rate := float64(st.Bytes) / max(st.Duration.Seconds(), 1e-9)
	deleted := ""
	if st.Deleted > 0 {
		deleted = fmt.Sprintf(", %d deleted", st.Deleted)
	}
	dedup := "nothing new to store"
	if r, ok := st.DedupRatio(); ok {
		dedup = fmt.Sprintf("dedup %.2fx", r)
	}
	return fmt.Sprintf("imported %s: %d files, %d dirs, %d symlinks%s, %s in %d blocks; new: %d blocks, %s; %s; %s (%s/s)",
		dest, st.Files, st.Dirs, st.Symlinks, deleted, humanize.IBytes(uint64(st.Bytes)), st.Blocks,
		st.NewBlocks, humanize.IBytes(uint64(st.NewBytes)), dedup,
		st.Duration.Round(time.Millisecond), humanize.IBytes(uint64(rate)))
}

// printPlan prints what an import would do (import --dry-run): every path,
// then the counts.
func printPlan(w io.Writer, p importer.Plan, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(p)
	}
	for _, l := range []struct {
		verb  string
		paths []string
	}{{"would add", p.Added}, {"would change", p.Changed}, {"would delete", p.Deleted}} {
		for _, q := range l.paths {
			fmt.Fprintf(w, "%s %s\n", l.verb, q)
		}
	}
	fmt.Fprintf(w, "dry run: would add %d, change %d, delete %d paths; nothing changed\n", len(p.Added), len(p.Changed), len(p.Deleted))
	return nil
}
