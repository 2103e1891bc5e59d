package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"time"
	"unicode/utf8"

	"blockfs/blockstore"
	"blockfs/fs/chunker"
	"blockfs/fs/gc"
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
are imported with their modes, owners, mtimes, hard links, holes and
extended attributes (user.* and security.capability); devices, FIFOs and
sockets are skipped with a warning and counted. Each file appears in the
store whole or not at all.

A path that cannot be read (permissions, a name over PATH_MAX, a file that
changed while it was read, twice) is reported on stderr with its reason,
and the import goes on; --json lists them under "failures".

SIGINT or SIGTERM stop the import cleanly: every file whose blocks are all
stored is committed (so a rerun need not read it again), the temp files
of unfinished blocks are removed, a line says what was kept, and the exit
status is 130 (SIGINT) or 143 (SIGTERM). A second signal kills at once;
even then nothing is half-visible. A rerun after an interrupt, a crash or a
full disk stores only the blocks the store still lacks.

Exit status: 0 all imported; 23 some paths could not be imported and
everything else is committed; 1 a fatal error (the store failed), with what
was whole by then committed; 2 a usage error. A long import
publishes what it has finished every --publish-interval, so a crash loses
at most that much of the work.`,
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
	repair := fl.Bool("repair", false, "read back every block the store already has and rewrite the corrupt ones from SRC (see docs/operations.md)")
	askStore := fl.Bool("ask-store", false, "when packing into a remote store, ask it (one request) about each block the catalog does not name before uploading it (a local store is always asked): saves re-uploading what an interrupted import of large files left, costs a round trip per new block")
	packBelow := sizeFlag(fl, "pack-below", importer.DefaultPackBelow, "pack files smaller than this into shared blocks (0: off, every file its own blocks, readable by older mounts). Packed files need mounts of this version or later (docs/metadata.md)")
	packSize := sizeFlag(fl, "pack-size", 1<<20, "size at which a pack of small files is cut")
	publish := fl.Duration("publish-interval", 10*time.Second, "how often a long import makes the files it has finished visible in the store")
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
			return interruptedEarly(ctx, err)
		}
		defer vol.Close()
		lease, err := acquireLease(ctx, vol.Blocks, gc.LeaseOptions{Kind: gc.KindImport})
		if err != nil {
			return interruptedEarly(ctx, err)
		}
		var reuse func(context.Context, blockstore.Hash) (bool, error)
		if lease != nil {
			defer lease.Release(context.WithoutCancel(ctx))
			var stop context.CancelFunc
			ctx, stop = lease.Bind(ctx) // no publish once the lease is lost
			defer stop()
			reuse = lease.Reuse
		}
		im, err := importer.New(vol, importer.Options{
			Reuse:           reuse,
			Chunking:        cfg,
			Workers:         *workers,
			Delete:          *del,
			PublishInterval: *publish,
			Repair:          *repair,
			PackBelow:       *packBelow,
			PackSize:        *packSize,
			AskStore:        *askStore,
			Warn:            func(err error) { fmt.Fprintf(e.stderr, "blockfs import: warning: %v\n", err) },
			OnFailure: func(f importer.Failure) {
				fmt.Fprintf(e.stderr, "blockfs import: error: %s: %s\n", quotePath(f.Path), f.Error)
			},
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
		return reportImport(ctx, e, im, st, err, tree.CleanPath(dest), *asJSON, *quiet)
	}
}

// interruptedEarly is err, unless a signal ended ctx before the import
// began: then the exit status says so (130/143) and that nothing was
// stored yet, as an interrupt later in the import does.
func interruptedEarly(ctx context.Context, err error) error {
	var intr interrupted
	if errors.As(context.Cause(ctx), &intr) {
		return exitError{code: 128 + int(intr.sig), err: fmt.Errorf("%v before importing anything: kept 0 whole files; rerun the same import", intr)}
	}
	return err
}

// reportImport prints an import's summary (or JSON report; nothing with
// quiet) and turns its
// outcome into the exit status the help promises.
func reportImport(ctx context.Context, e env, im *importer.Importer, st importer.Stats, err error, dest string, asJSON, quiet bool) error {
	var intr interrupted
	if errors.As(context.Cause(ctx), &intr) {
		// vol.Close, deferred, removes the temp files of blocks not finished.
		return exitError{code: 128 + int(intr.sig), err: fmt.Errorf("%v: kept %d whole files (%s), committed; rerun the same import to store the rest, blocks already stored are not written again",
			intr, st.Committed, humanize.IBytes(uint64(st.CommittedBytes)))}
	}
	partial := errors.Is(err, importer.ErrIncomplete)
	if err != nil && !partial {
		return err
	}
	if asJSON {
		var ratio *float64 // null when nothing new was stored
		if r, ok := st.DedupRatio(); ok {
			ratio = &r
		}
		failures := im.Failures()
		if failures == nil {
			failures = []importer.Failure{}
		}
		if err := json.NewEncoder(e.stdout).Encode(struct {
			importer.Stats
			Dest       string             `json:"dest"`
			DedupRatio *float64           `json:"dedup_ratio"`
			Failures   []importer.Failure `json:"failures"`
		}{st, dest, ratio, failures}); err != nil {
			return err
		}
	} else if !quiet {
		fmt.Fprintln(e.stdout, importSummary(dest, st))
	}
	if partial {
		return exitError{code: exitPartial, err: fmt.Errorf("%d paths could not be imported (listed above); everything else is committed", st.Errors)}
	}
	return nil
}

// exitPartial is import's status when some paths could not be imported
// and everything else was committed: rsync's 23, which scripts know.
const exitPartial = 23

// quotePath shows a path on one line whatever bytes it holds.
func quotePath(p string) string {
	if strconv.CanBackquote(p) && utf8.ValidString(p) {
		return p
	}
	return strconv.Quote(p)
}

func importSummary(dest string, st importer.Stats) string {
	rate := float64(st.Bytes) / max(st.Duration.Seconds(), 1e-9)
	extra := ""
	if st.Deleted > 0 {
		extra = fmt.Sprintf(", %d deleted", st.Deleted)
	}
	if st.Skipped > 0 {
		extra += fmt.Sprintf(", %d special files skipped", st.Skipped)
	}
	if st.Errors > 0 {
		extra += fmt.Sprintf(", %d errors", st.Errors)
	}
	if st.Repaired > 0 {
		extra += fmt.Sprintf(", %d corrupt blocks repaired", st.Repaired)
	}
	if st.XattrsDropped > 0 {
		extra += fmt.Sprintf(", %d xattrs not kept", st.XattrsDropped)
	}
	if st.Packed > 0 {
		extra += fmt.Sprintf(", %d files packed (%d new packs)", st.Packed, st.Packs)
	}
	dedup := "nothing new to store"
	if r, ok := st.DedupRatio(); ok {
		dedup = fmt.Sprintf("dedup %.2fx", r)
	}
	return fmt.Sprintf("imported %s: %d files, %d dirs, %d symlinks%s, %s in %d blocks; new: %d blocks, %s; %s; %s (%s/s)",
		dest, st.Files, st.Dirs, st.Symlinks, extra, humanize.IBytes(uint64(st.Bytes)), st.Blocks,
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
