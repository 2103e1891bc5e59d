#!/usr/bin/env bash
# Cold sequential read over S3 with 20 ms latency (MinIO behind a
# toxiproxy-server process): blockfs mount vs parallel plain GETs (16, 32,
# 64; the fastest is the practical limit) vs rclone mount --vfs-cache-mode
# full, in one run: (A) all sharing the machine's cores, (B) MinIO and
# toxiproxy pinned to half the cores and the reader to the other half,
# (C) store-bound, each connection limited to 8 MB/s.
# Usage: bench/s3.sh [MiB]   (root, /dev/fuse; installs rclone, builds MinIO
# and toxiproxy-server if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v rclone >/dev/null || ! command -v fusermount3 >/dev/null; then
	apt-get update -qq && apt-get install -y -qq rclone=1.60.1+dfsg-2+b5 fuse3 >/dev/null
fi
make -s minio
export BLOCKFS_BENCH_MIB=${1:-256}
go test -run '^$' -bench 'S3ColdRead' -benchtime 1x -timeout 30m ./bench/
