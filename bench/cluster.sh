#!/usr/bin/env bash
# 8 nodes reading one cold file over MinIO with 20 ms latency: every node
# straight on MinIO vs all nodes through one blockfs serve; MinIO GETs and
# wall time side by side. Usage: bench/cluster.sh [MiB, at most 64]
set -euo pipefail
cd "$(dirname "$0")/.."
make -s minio
export BLOCKFS_BENCH_MIB=${1:-64}
go test -run '^$' -bench 'Cluster' -benchtime 1x -timeout 30m ./bench/
