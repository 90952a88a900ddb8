#!/usr/bin/env bash
# Snapshot benchmarks of issue 3 (figures go to bench/RESULTS.md):
#  1. overlay commit of an active snapshot holding 100k files (target: < 10 ms, flat in the count);
#  2. native prepare of a 1 GiB parent on ext4 against `cp -a` of the same tree;
#  3. the same on xfs with reflinks, in a loop image made here (target: < 1 s).
# Usage: bench/snapshot.sh [BUILD_DIR]   (as root; installs xfsprogs when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
t=$build/tests/test-snapshot
[ -x "$t" ] || { echo "build first: make" >&2; exit 1; }
export CAIRN_BENCH=1

echo "== overlay commit, ext4 ($(df -T /tmp | awk 'NR==2{print $2}') at /tmp)"
for i in 1 2 3; do "$t" bench_overlay_commit | grep '^# overlay'; done

echo "== native prepare of 1 GiB, $(df -T /tmp | awk 'NR==2{print $2}') at /tmp, against cp -a"
for i in 1 2 3; do "$t" bench_native_prepare | grep '^# native'; done

if ! command -v mkfs.xfs >/dev/null; then
	apt-get install -y -qq xfsprogs >/dev/null
fi
img=$(mktemp /var/tmp/cairn-xfs.XXXXXX)
mnt=$(mktemp -d)
cleanup() { umount "$mnt" 2>/dev/null || true; rm -rf "$img" "$mnt"; }
trap cleanup EXIT
truncate -s 4G "$img"
mkfs.xfs -q -m reflink=1 "$img"
mount -o loop "$img" "$mnt"
echo "== native prepare of 1 GiB, xfs with reflink (loop image)"
for i in 1 2 3; do CAIRN_TEST_TMPDIR=$mnt "$t" bench_native_prepare | grep '^# native'; done
