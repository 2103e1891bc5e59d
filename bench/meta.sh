#!/usr/bin/env bash
# Metadata through a blockfs mount against the same tree on local disk, in
# one run: find, ls -lR (on its own and after a find), stat of every file,
# cold and warm; mount start-up
# and RSS per file. Usage: bench/meta.sh [--files N] [--per-dir N] [--ingest]
# [--mount-only] (default 20000 files; needs root and /dev/fuse; cold runs drop the
# kernel's caches).
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./bench/metabench "$@"
