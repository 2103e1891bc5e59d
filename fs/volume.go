package fs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"blockfs/blockstore"
	"blockfs/objects"
)

// ErrNoStore is wrapped by errors for store strings that name nothing usable.
var ErrNoStore = errors.New("no blockfs store")

// A local store directory holds a marker file, the blocks and the log:
//
//	STORE/blockfs-store   format marker, so a typo cannot mount /etc
//	STORE/blocks/         blockstore.DirStore
//	STORE/meta/           objects.Log segments
const (
	markerName    = "blockfs-store"
	markerContent = "blockfs store format 1\n"
)

// Volume is an opened store: its blocks and its metadata.
type Volume struct {
	Spec   string // the store string it was opened from
	Blocks blockstore.Store
	Meta   *objects.Log
	Tree   *Tree
}

// OpenOptions say how a Volume is opened.
type OpenOptions struct {
	Create   bool // create the store if it does not exist (import)
	ReadOnly bool // open the metadata read-only (mount), alongside a writer
}

// Open opens the store named by spec. It is the single place where store
// strings are parsed: a local directory path (or file:// URL) today.
func Open(ctx context.Context, spec string, opts OpenOptions) (*Volume, error) {
	if spec == "" {
		return nil, fmt.Errorf("%w: no store given (use --store or BLOCKFS_STORE)", ErrNoStore)
	}
	scheme, rest, hasScheme := strings.Cut(spec, "://")
	if !hasScheme {
		return openDir(spec, spec, opts)
	}
	switch scheme {
	case "file":
		return openDir(spec, rest, opts)
	default:
		return nil, fmt.Errorf("store %s: %w: unsupported scheme %q (want a directory path)", spec, ErrNoStore, scheme)
	}
}

func openDir(spec, dir string, opts OpenOptions) (*Volume, error) {
	dir = filepath.Clean(dir)
	marker := filepath.Join(dir, markerName)
	b, err := os.ReadFile(marker)
	switch {
	case err == nil:
		if string(b) != markerContent {
			return nil, fmt.Errorf("store %s: %w: unknown format in %s", spec, ErrNoStore, marker)
		}
	case errors.Is(err, fs.ErrNotExist) && opts.Create:
		if err := createDir(dir, marker); err != nil {
			return nil, fmt.Errorf("store %s: %w", spec, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		if _, serr := os.Stat(dir); serr != nil {
			return nil, fmt.Errorf("store %s: %w: %w", spec, ErrNoStore, serr)
		}
		return nil, fmt.Errorf("store %s: %w: %s is not a blockfs store (no %s)", spec, ErrNoStore, dir, markerName)
	default:
		return nil, fmt.Errorf("store %s: %w", spec, err)
	}
	blocks, err := blockstore.OpenDir(filepath.Join(dir, "blocks"), opts.Create)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", spec, err)
	}
	meta, err := objects.Open(filepath.Join(dir, "meta"), objects.Options{ReadOnly: opts.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("store %s: metadata: %w", spec, err)
	}
	return &Volume{Spec: spec, Blocks: blocks, Meta: meta, Tree: NewTree(meta)}, nil
}

// createDir lays out a new store; the marker is written last so that a
// half-created store is not taken for a store.
func createDir(dir, marker string) error {
	for _, sub := range []string{"blocks", "meta"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	tmp := marker + ".tmp"
	if err := os.WriteFile(tmp, []byte(markerContent), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, marker)
}

// Close releases the metadata log.
func (v *Volume) Close() error {
	return v.Meta.Close()
}
