package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"path"
	"text/tabwriter"
	"time"

	"blockfs/blockstore"
	"blockfs/fs/tree"
	"blockfs/fs/volume"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// ls and du read the catalog only: the tree is decoded from the metadata
// parts (or, for a snapshot without them, the segments the volume
// ingests), and no file block is fetched, so they are cheap on
// any store and safe to run next to mounts and imports.

func init() {
	register(&command{
		name: "ls", args: "[PATH]", summary: "list a directory of the store without mounting it",
		help: `Lists PATH (default /) from the store's metadata alone (no block is
fetched). -l adds mode, size, mtime and block count; -R lists the whole
subtree with full paths; --at lists a snapshot or tag instead of the
current tree.`,
		setup: setupLs,
	})
	register(&command{
		name: "du", args: "[PATH]", summary: "sizes of a subtree of the store: files, bytes, blocks, dedup",
		help: `Adds up the files under PATH (default /) from the store's metadata alone:
apparent bytes, block references, unique blocks and their bytes, and the
dedup ratio (apparent bytes over the unique content they reference: a
packed file counts its range of the pack, the unique blocks count packs
whole).`,
		setup: setupDu,
	})
}

// inspectFlags are the flags ls and du share.
type inspectFlags struct {
	sf      *storeFlags
	metaDir *string
	at      *string
	asJSON  *bool
}

func addInspectFlags(fl *pflag.FlagSet) inspectFlags {
	return inspectFlags{sf: addStoreFlags(fl), metaDir: addMetaDirFlag(fl), at: fl.String("at", "", "read this snapshot (a number or a tag) instead of the current tree"),
		asJSON: fl.Bool("json", false, "print JSON")}
}

func (f inspectFlags) open(ctx context.Context, args []string) (*volume.Volume, string, error) {
	if len(args) > 1 {
		return nil, "", usagef("want at most one PATH, got %d arguments", len(args))
	}
	p := "/"
	if len(args) == 1 {
		p = tree.CleanPath(args[0])
	}
	spec, opts, err := f.sf.options(false)
	if err != nil {
		return nil, "", err
	}
	// Lazy: ls of one directory fetches only the metadata parts on its path.
	vol, err := volume.Open(ctx, spec, volume.Options{Options: opts, MetaDir: *f.metaDir, At: *f.at, Lazy: true})
	return vol, p, err
}

// lsEntry is one line of ls.
type lsEntry struct {
	Path    string    `json:"path"`
	Kind    string    `json:"kind"`
	Mode    string    `json:"mode"`
	Size    int64     `json:"size"`
	Mtime   time.Time `json:"mtime"`
	Blocks  int       `json:"blocks"`
	Target  string    `json:"target,omitempty"`
	display string
}

func newEntry(p, display string, n *tree.Node) lsEntry {
	mode := fs.FileMode(n.Mode & 0o777)
	switch n.Kind {
	case tree.KindDir:
		mode |= fs.ModeDir
	case tree.KindSymlink:
		mode |= fs.ModeSymlink
	}
	return lsEntry{Path: p, Kind: n.Kind.String(), Mode: mode.String(), Size: n.Size, Mtime: time.Unix(0, n.MtimeNs).UTC(),
		Blocks: len(n.Blocks), Target: n.Target, display: display}
}

func setupLs(fl *pflag.FlagSet) runFunc {
	f := addInspectFlags(fl)
	long := fl.BoolP("long", "l", false, "mode, size, mtime and block count")
	recursive := fl.BoolP("recursive", "R", false, "the whole subtree, with full paths")
	return func(ctx context.Context, e env, args []string) error {
		vol, root, err := f.open(ctx, args)
		if err != nil {
			return err
		}
		defer vol.Close()
		n, err := vol.Tree.Lookup(root)
		if err != nil {
			return err
		}
		var out []lsEntry
		switch {
		case *recursive:
			err = vol.Tree.Walk(root, func(p string, n *tree.Node) error {
				if p != root || n.Kind != tree.KindDir {
					out = append(out, newEntry(p, p, n))
				}
				return nil
			})
		case n.Kind != tree.KindDir:
			out = append(out, newEntry(root, root, n))
		default:
			err = vol.Tree.List(root, func(name string, n *tree.Node) bool {
				out = append(out, newEntry(path.Join(root, name), name, n))
				return true
			})
		}
		if err != nil {
			return err
		}
		if *f.asJSON {
			return json.NewEncoder(e.stdout).Encode(out)
		}
		printLs(e.stdout, out, *long)
		return nil
	}
}

func printLs(w io.Writer, out []lsEntry, long bool) {
	if !long {
		for _, en := range out {
			fmt.Fprintln(w, en.display)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', tabwriter.AlignRight)
	for _, en := range out {
		name := en.display
		if en.Target != "" {
			name += " -> " + en.Target
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d blocks\t %s\n", en.Mode, humanize.IBytes(uint64(en.Size)), en.Mtime.Format("2006-01-02 15:04"), en.Blocks, name)
	}
	tw.Flush()
}

// duReport is what du adds up.
type duReport struct {
	Path         string `json:"path"`
	Files        int64  `json:"files"`
	Dirs         int64  `json:"dirs"`
	Symlinks     int64  `json:"symlinks"`
	Bytes        int64  `json:"bytes"`
	BlockRefs    int64  `json:"block_refs"`
	UniqueBlocks int64  `json:"unique_blocks"`
	UniqueBytes  int64  `json:"unique_bytes"` // of the unique blocks, whole (a pack's every byte)
	// ContentBytes is the unique content the files reference: a packed
	// file counts its range of the pack, not the pack, so that a subtree
	// using part of a pack does not show a dedup below one.
	ContentBytes int64   `json:"content_bytes"`
	Dedup        float64 `json:"dedup"` // Bytes / ContentBytes
}

// rangeKey names the bytes of a block a file uses: a range of a pack, or
// the whole block (off 0, its size).
type rangeKey struct {
	hash     blockstore.Hash
	off, len int64
}

func setupDu(fl *pflag.FlagSet) runFunc {
	f := addInspectFlags(fl)
	return func(ctx context.Context, e env, args []string) error {
		vol, root, err := f.open(ctx, args)
		if err != nil {
			return err
		}
		defer vol.Close()
		r := duReport{Path: root}
		seen := map[blockstore.Hash]bool{}
		used := map[rangeKey]bool{}
		err = vol.Tree.Walk(root, func(p string, n *tree.Node) error {
			switch n.Kind {
			case tree.KindDir:
				r.Dirs++
			case tree.KindSymlink:
				r.Symlinks++
			case tree.KindFile:
				r.Files++
				r.Bytes += n.Size
				for i, l := range n.Blocks {
					r.BlockRefs++
					if !seen[l.Hash] {
						seen[l.Hash] = true
						r.UniqueBlocks++
						r.UniqueBytes += l.Size
					}
					if k := (rangeKey{l.Hash, n.Off(i), n.Len(i)}); !used[k] {
						used[k] = true
						r.ContentBytes += k.len
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if r.ContentBytes > 0 {
			r.Dedup = float64(r.Bytes) / float64(r.ContentBytes)
		}
		if *f.asJSON {
			return json.NewEncoder(e.stdout).Encode(r)
		}
		fmt.Fprintf(e.stdout, "%s: %d files, %d directories, %d symlinks; %s in %d block references, %d unique blocks (%s), unique content %s, dedup %.2fx\n",
			r.Path, r.Files, r.Dirs, r.Symlinks, humanize.IBytes(uint64(r.Bytes)), r.BlockRefs, r.UniqueBlocks, humanize.IBytes(uint64(r.UniqueBytes)), humanize.IBytes(uint64(r.ContentBytes)), r.Dedup)
		return nil
	}
}
