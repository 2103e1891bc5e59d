#!/usr/bin/env bash
# gc on a directory store of about 100k blocks, half unreachable (10
# imports of 10 MiB in 1 KiB blocks, every other one removed): blocks and
# bytes before and after, the condemn and sweep runs' wall times.
# Usage: bench/gc.sh [imports] [MiB each]
set -euo pipefail
cd "$(dirname "$0")/.."
export BLOCKFS_BENCH_GC_IMPORTS=${1:-10} BLOCKFS_BENCH_GC_MIB=${2:-10}
go test -run '^$' -bench 'GCDir' -benchtime 1x -timeout 10m -v ./bench/ | grep -E 'gc_test|Benchmark|ok'
