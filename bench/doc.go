// Package bench holds blockfs's end-to-end benchmarks: each runs blockfs
// and its baselines in one invocation on one machine, so that the ratios
// mean something on a noisy shared host. They need root, /dev/fuse and the
// pinned MinIO (`make minio`); run them through the scripts beside this
// file (s3.sh, cluster.sh, meta.sh, snapshots.sh: a big tree in one
// import, start-up before and after compaction, blockfs ls -R against find),
// not as part of `make test`.
package bench
