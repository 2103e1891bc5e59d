#!/usr/bin/env bash
# Cold start of software trees over S3 with 20 ms latency (MinIO behind
# an in-process toxiproxy), each on a fresh blockfs mount, stored without
# packs and with packs (and sibling prefetch, and a replayed start-up
# trace), against the same tree on local disk (cold and warm), with the
# import of each tree with and without packs and MinIO's request counts:
#   - a Python start-up (issue 20's import set) with its standard library;
#   - `go build` of a hello world importing net/http with this machine's
#     GOROOT on the mount (the build cache primed once, shared).
# Usage: bench/coldstart.sh          (root, /dev/fuse; builds MinIO if missing)
#        bench/coldstart.sh --big [DIR]
#   --big assembles a larger Python tree in DIR (default
#   $HOME/.cache/blockfs/coldstart-big) from Debian packages (apt-get
#   download + dpkg -x: the python3.11 test suite, scipy, numpy, pandas,
#   django, sympy, botocore, mypy, ... plus this machine's
#   /usr/lib/python3.11), then measures its import with and without packs
#   and the Python start-up over it; slow (the import without packs takes
#   a minute or two; BLOCKFS_COLDSTART_BIG_WORKERS=N leaves it out and
#   adds an import with packs and N upload workers).
# BLOCKFS_COLDSTART_PYTHON and BLOCKFS_COLDSTART_LIB choose the interpreter
# and the tree, default /usr/bin/python3.11 and /usr/lib/python3.11;
# BLOCKFS_COLDSTART_GOROOT the GOROOT (default `go env GOROOT`);
# BLOCKFS_COLDSTART_GO_FRESHCACHE=1 gives every go build a new cache (the
# compiler's CPU then dominates; one round).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s minio
if [ "${1:-}" = "--big" ]; then
	dir=${2:-$HOME/.cache/blockfs/coldstart-big}
	if [ ! -d "$dir/tree/usr/lib/python3.11/test" ]; then
		mkdir -p "$dir/debs" "$dir/tree"
		(cd "$dir/debs" && apt-get download libpython3.11-testsuite python3-scipy python3-numpy \
			python3-sympy python3-matplotlib python3-pandas python3-pandas-lib python3-django \
			python3-botocore python3-babel python3-mypy python3-jedi python3-twisted python3-astropy \
			python3-sklearn python3-networkx python3-pygments python3-typeshed)
		for d in "$dir"/debs/*.deb; do dpkg -x "$d" "$dir/tree"; done
		cp -a /usr/lib/python3.11/. "$dir/tree/usr/lib/python3.11/"
	fi
	BLOCKFS_COLDSTART_BIG="$dir/tree/usr" go test -run '^$' -bench 'ColdStartBig' -benchtime 1x -timeout 30m ./bench/
	exit
fi
go test -run '^$' -bench 'ColdStart$|ColdStartGo$' -benchtime 1x -timeout 30m ./bench/
