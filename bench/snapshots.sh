#!/usr/bin/env bash
# One big tree in one import: import time, mount start-up before and after
# blockfs compact, and blockfs ls -R (no mount) against find on the mounted
# tree, in one run. Usage: bench/snapshots.sh [--files N] [--per-dir N]
# (default 200000 files; --files 1000000 for the issue's 1M; needs root and
# /dev/fuse). Start-up after 1000 small imports, before and after
# compaction: go test -run '^$' -bench Startup -benchtime 10x ./fs/volume/
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./bench/snapbench "$@"
