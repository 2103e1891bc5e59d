#!/usr/bin/env bash
# Mount processes (default 16), one reader each of the same cold file
# (default 64 MiB, fixed 512 KiB blocks), through tiers of 1, 2 and 4
# blockfs serve processes over MinIO on loopback. Every serve has a 50 MB/s
# uplink and every mount a 50 MB/s downlink, each shared by all its
# connections (toxiproxy in process, testsvc.Link). Prints the makespan
# (last reader done) next to the ideal, max(bytes x mounts / (serves x
# uplink), bytes / downlink), and MinIO GETs next to the unique blocks.
# Usage: bench/tier.sh [MiB] [mounts]   (root, /dev/fuse; builds MinIO if missing;
# BLOCKFS_BENCH_SERVES=4 runs only the 4-serve tier, BLOCKFS_BENCH_POOL=SIZE|default
# sets the mounts' pool (64MiB by default, see tierPool), BLOCKFS_BENCH_PROFILE=DIR
# writes a CPU profile of every serve and mount there)
set -euo pipefail
cd "$(dirname "$0")/.."
make -s minio
export BLOCKFS_BENCH_MIB=${1:-64} BLOCKFS_BENCH_MOUNTS=${2:-16}
go test -run '^$' -bench 'Tier' -benchtime 1x -timeout 30m ./bench/ 2>&1 | grep -v ' level=INFO '
