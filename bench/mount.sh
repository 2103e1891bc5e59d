#!/usr/bin/env bash
# Sequential read through a blockfs mount against its baselines (local file,
# go-fuse in-memory ceiling) and import against SHA-256, in one run.
# Usage: bench/mount.sh [--size MiB] [--runs N]   (needs root and /dev/fuse)
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./bench/mountbench "$@"
