#!/usr/bin/env bash
# Cold start of a software tree over S3 with 20 ms latency (MinIO behind
# an in-process toxiproxy): a Python start-up (issue 20's import set) with
# its standard library on a fresh blockfs mount, stored without packs,
# with packs, and with packs and sibling prefetch, against the same tree on
# local disk (cold and warm); and the import of the tree with and without
# packs, with MinIO's request counts.
# Usage: bench/coldstart.sh   (root, /dev/fuse; builds MinIO if missing;
# BLOCKFS_COLDSTART_PYTHON and BLOCKFS_COLDSTART_LIB choose the interpreter
# and the tree, default /usr/bin/python3.11 and /usr/lib/python3.11)
set -euo pipefail
cd "$(dirname "$0")/.."
make -s minio
go test -run '^$' -bench 'ColdStart' -benchtime 1x -timeout 20m ./bench/
