#!/usr/bin/env bash
# Cache benchmarks of issue 7 (figures go to bench/RESULTS.md): with 10,000 records,
#  1. opening the store and the cache (target: < 50 ms);
#  2. du over them (target: < 200 ms), the library call and `cairn du` end to end;
#  3. prune --all of them (target: < 1 s), with the longest hold of the SQLite write lock and of
#     the manager mutex while pruning (target: no lock held > 50 ms; CAIRN_LOCKSTAT counters).
# Usage: bench/cache.sh [BUILD_DIR]   (a --buildtype=debugoptimized build is the one to time)
# Knobs: RUNS (5: library runs; each has 3 opens, 3 du and one prune),
#        CAIRN_BENCH_RECORDS (10000), CAIRN_BENCH_DEPTH (5: chains of 5 records),
#        CAIRN_BENCH_EXTRACTED (0: records with snapshot directories, e.g. 1000).
# Prints every run, then the best and the median of each figure, and the load average before
# and after (the machine may be shared: compare runs taken at similar load).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
runs=${RUNS:-5}
t=$build/tests/test-cache
[ -x "$t" ] || { echo "build first: ninja -C $build tests/test-cache" >&2; exit 1; }
export CAIRN_BENCH=1

echo "== library: open, du, prune --all ($(nproc) CPUs, $runs runs, loadavg before: $(cut -d' ' -f1-3 /proc/loadavg))"
out=$(mktemp)
for ((i = 0; i < runs; i++)); do "$t" bench_cache | grep '^# bench' | tee -a "$out"; done
echo "== summary: best / median of $runs runs (loadavg after: $(cut -d' ' -f1-3 /proc/loadavg))"
# Each figure's values, one per line, sorted: the best is the first, the median the middle one.
stat() {
	sort -n | awk -v what="$1" -v unit="$2" -v target="$3" \
		'{ v[NR] = $1 } END { if (NR) printf "%-48s best %8.1f %s  median %8.1f %s  (target %s, %d values)\n", what, v[1], unit, v[int((NR + 1) / 2)], unit, target, NR }'
}
sed -n 's/.*open store + cache: \([0-9.]*\) ms.*/\1/p' "$out" | stat "open store + cache" ms "< 50 ms"
sed -n 's/.*open store + cache: .*(store \([0-9.]*\) ms).*/\1/p' "$out" | stat "  of which the store" ms "-"
sed -n 's/.*du of [0-9]* records: \([0-9.]*\) ms.*/\1/p' "$out" | stat "du (library call)" ms "< 200 ms"
sed -n 's/.*prune --all of [0-9]* records: \([0-9.]*\) ms.*/\1/p' "$out" | stat "prune --all" ms "< 1000 ms"
sed -n 's/.*db-write \([0-9.]*\) ms.*/\1/p' "$out" | stat "longest SQLite write transaction while pruning" ms "< 50 ms"
sed -n 's/.*manager \([0-9.]*\) ms.*/\1/p' "$out" | stat "longest manager mutex hold while pruning" ms "< 50 ms"
sed -n 's/.*checkpoints (no write lock) \([0-9.]*\) ms.*/\1/p' "$out" | stat "longest WAL checkpoint (no write lock)" ms "-"
rm -f "$out"

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
