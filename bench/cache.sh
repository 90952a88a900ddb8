#!/usr/bin/env bash
# Cache benchmarks of issue 7 (figures go to bench/RESULTS.md): with 10,000 records,
#  1. opening the store and the cache (target: < 50 ms);
#  2. du over them (target: < 200 ms), the library call and `cairn du` end to end;
#  3. prune --all of them (target: < 1 s), with the longest hold of the SQLite write lock and of
#     the manager mutex while pruning (target: no lock held > 50 ms; CAIRN_LOCKSTAT counters).
# Usage: bench/cache.sh [BUILD_DIR]   (a --buildtype=debugoptimized build is the one to time)
# Knobs: CAIRN_BENCH_RECORDS (10000), CAIRN_BENCH_DEPTH (5: chains of 5 records),
#        CAIRN_BENCH_EXTRACTED (0: records with snapshot directories, e.g. 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
t=$build/tests/test-cache
[ -x "$t" ] || { echo "build first: ninja -C $build tests/test-cache" >&2; exit 1; }
export CAIRN_BENCH=1

echo "== library: open, du, prune --all ($(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg))"
for i in 1 2 3; do "$t" bench_cache | grep '^# bench'; done

if [ -x "$build/tools/cairn/cairn" ]; then
	echo "== cairn du end to end (the store left by one more library run)"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	CAIRN_BENCH_PRUNE=0 CAIRN_TEST_TMPDIR=$tmp CAIRN_TEST_KEEP=1 "$t" bench_cache >/dev/null
	root=$(echo "$tmp"/*/root)
	for i in 1 2 3; do
		/usr/bin/time -f "cairn du: %e s" "$build/tools/cairn/cairn" --root "$root" du >/dev/null
	done
fi
