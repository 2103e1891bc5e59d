package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"blockfs/fs/tree"
	"blockfs/fs/volume"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name:    "verify",
		args:    "[PATH]",
		summary: "check that every block the files under PATH need is in the store",
		help: `Walks the tree under PATH (default /) and checks each block its files
reference once: that the store has it, or with --deep that its bytes hash
to its name (reading everything). Bad blocks are listed with the files that
use them. Exit status 1 if any block is missing or corrupt. Read-only.`,
		setup: setupVerify,
	})
}

func setupVerify(fl *pflag.FlagSet) runFunc {
	sf := addStoreFlags(fl)
	metaDir := addMetaDirFlag(fl)
	deep := fl.Bool("deep", false, "read every block and check its hash, not only that it exists")
	workers := fl.Int("workers", 8, "blocks checked at once")
	asJSON := fl.Bool("json", false, "print the report as JSON")
	return func(ctx context.Context, e env, args []string) error {
		if len(args) > 1 {
			return usagef("want at most one PATH, got %d arguments", len(args))
		}
		if *workers < 1 {
			return usagef("--workers must be at least 1")
		}
		root := "/"
		if len(args) == 1 {
			root = args[0]
		}
		spec, openOpts, err := sf.options(false)
		if err != nil {
			return err
		}
		vol, err := volume.Open(ctx, spec, volume.Options{Options: openOpts, MetaDir: *metaDir})
		if err != nil {
			return err
		}
		defer vol.Close()
		var bar *progressBar
		var done, total atomic.Int64 // written by Verify's workers, read by the bar
		if !*asJSON && isTerminal(e.stdout) {
			bar = startCountProgress(e.stdout, "blocks", func() (int64, int64) { return done.Load(), total.Load() })
		}
		rep, err := vol.Verify(ctx, root, *deep, *workers, func(c, t int64) { done.Store(c); total.Store(t) })
		bar.stop()
		if err != nil {
			return err
		}
		if *asJSON {
			if err := json.NewEncoder(e.stdout).Encode(rep); err != nil {
				return err
			}
		} else {
			printVerify(e.stdout, root, rep)
		}
		if !rep.OK() {
			return fmt.Errorf("%s: %d missing, %d corrupt blocks, %d not checked (store errors)",
				root, len(rep.Missing), len(rep.Corrupt), rep.Failures)
		}
		return nil
	}
}

func printVerify(w io.Writer, root string, rep *volume.VerifyReport) {
	how := "present"
	if rep.Deep {
		how = "present and intact"
	}
	fmt.Fprintf(w, "verified %s: %d files, %d blocks (%s) checked %s\n",
		tree.CleanPath(root), rep.Files, rep.Checked, humanize.IBytes(uint64(rep.Bytes)), how)
	for _, set := range []struct {
		what string
		ps   []volume.Problem
	}{{"missing", rep.Missing}, {"corrupt", rep.Corrupt}} {
		for _, p := range set.ps {
			paths := p.Paths
			more := ""
			if len(paths) > 3 {
				paths, more = paths[:3], fmt.Sprintf(" and %d more", len(p.Paths)-3)
			}
			fmt.Fprintf(w, "  %s block %s, used by %s%s\n", set.what, p.Block, strings.Join(paths, ", "), more)
		}
	}
}
