// Package fs is the filesystem of blockfs: it turns a block store
// (package blockstore) and a metadata log (package objects) into a tree of
// files that can be imported into and mounted read-only with FUSE.
//
// The pieces, in the order data flows:
//
//   - OpenStore (store.go) is the one place that parses store strings
//     (a directory, s3://BUCKET/PREFIX, http(s)://HOST:PORT) into a block
//     store, behind an optional disk cache.
//   - Volume (volume.go) is an opened store with its metadata: a private
//     objects.Log kept in step with the store's catalog (catalog.go), by
//     Refresh (ingest what others published) and Publish (an import's).
//   - Node (node.go) is one file, directory or symlink as stored in the log:
//     mode, size, mtime and, for files, the list of block locators.
//   - Tree (tree.go) reads Nodes by path and lists directories with a prefix
//     scan of the log's secondary index.
//   - Import (import.go) splits files into content-defined blocks, hashes and
//     stores them in parallel and commits their Nodes atomically.
//   - Mount (mount.go, dir.go, file.go) serves the Tree through go-fuse; every
//     read goes through the shared blockstore.Pool.
//   - Stats (stats.go) are what `blockfs stats` shows, read from a hidden file
//     at the root of the mount so that no privileges are needed.
package fs
