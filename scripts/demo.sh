#!/usr/bin/env bash
# The main job on the embedded default: import testdata/sample into a local
# directory store, mount it, read it back with ordinary tools, show the
# shared pool's stats. On a terminal it stays mounted until Ctrl-C; otherwise
# it unmounts and exits when the tour is done.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin/blockfs
work=$(mktemp -d "${TMPDIR:-/tmp}/blockfs-demo.XXXXXX")
store=$work/store
mnt=$work/mnt
mkdir -p "$mnt"
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -INT "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step blockfs import --store "$store" testdata/sample /sample
"$bin" import --store "$store" "$root/testdata/sample" /sample
step blockfs import --store "$store" testdata/sample /sample "  # again: nothing new to store"
"$bin" import --store "$store" "$root/testdata/sample" /sample

step blockfs mount --store "$store" "$mnt" "&"
"$bin" mount --store "$store" "$mnt" &
pid=$!
for _ in $(seq 100); do
	[ -e "$mnt/.blockfs-stats" ] && break
	kill -0 "$pid" 2>/dev/null || { echo "mount failed" >&2; exit 1; }
	sleep 0.1
done

step ls -lR "$mnt"
ls -lR "$mnt"
step head -3 "$mnt/sample/reference/genome.fa"
head -3 "$mnt/sample/reference/genome.fa"
step "$mnt/sample/software/align $mnt/sample/reference/genome.fa"
"$mnt/sample/software/align" "$mnt/sample/reference/genome.fa"
step "8 readers of the same files at once, then cmp against the source"
for _ in $(seq 8); do cat "$mnt"/sample/models/weights.bin "$mnt"/sample/reference/genome.fa >/dev/null & done
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
cmp "$mnt/sample/reference/genome.fa" "$root/testdata/sample/reference/genome.fa" && echo "genome.fa: identical"
cmp "$mnt/sample/models/weights.bin" "$root/testdata/sample/models/weights.bin" && echo "weights.bin: identical"
step blockfs stats "$mnt"
"$bin" stats "$mnt"

if [ -t 0 ]; then
	printf '\nMounted at %s. Try: blockfs stats --watch 1s %s\nPress Ctrl-C to unmount.\n' "$mnt" "$mnt"
	wait "$pid" || true
else
	step "unmount (SIGINT)"
	kill -INT "$pid"
	wait "$pid"
	pid=
	echo "unmounted cleanly"
fi
