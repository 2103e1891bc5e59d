#!/usr/bin/env bash
# gc on a directory store of about 100k blocks, half unreachable (10
# imports of 10 MiB in 1 KiB blocks, every other one removed): blocks and
# bytes before and after, the condemn and sweep runs' wall times. With
# "process" as third argument, gc runs as the built binary in a child
# process and each run's peak RSS (rusage maxrss) is logged too; with
# "s3", the same on the real MinIO ($BLOCKFS_MINIO_BIN).
# Usage: bench/gc.sh [imports] [MiB each] [process|s3]
set -euo pipefail
cd "$(dirname "$0")/.."
export BLOCKFS_BENCH_GC_IMPORTS=${1:-10} BLOCKFS_BENCH_GC_MIB=${2:-10}
bench='^BenchmarkGCDir$'
case "${3:-}" in process) bench='^BenchmarkGCDirProcess$' ;; s3) bench='^BenchmarkGCS3Process$' ;; esac
go test -run '^$' -bench "$bench" -benchtime 1x -timeout 60m -v ./bench/ | grep -E 'gc_test|Benchmark|ok'
