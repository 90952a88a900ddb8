#!/usr/bin/env bash
# make demo: the main job end to end on data made here, showing each step and its output.
# Leaves the store for the user to explore and prints where it is.
set -euo pipefail
cairn=${1:-build/cairn}
cairn="$(cd "$(dirname "$cairn")" && pwd)/$(basename "$cairn")"
root=${DEMO_ROOT:-$PWD/demo-store}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

rm -rf "$root" "$root-second"
echo "cairn demo: a store at $root"

printf 'a small layer blob made by the demo\n' >"$work/hello.txt"
tar -C "$work" -cf "$work/layer.tar" hello.txt
step "$cairn" --root "$root" content add "$work/layer.tar"
digest=$("$cairn" --root "$root" -q content add "$work/layer.tar")
step "$cairn" --root "$root" content add "$work/hello.txt"
step "$cairn" --root "$root" content ls
step "$cairn" --root "$root" content info "$digest"
step "$cairn" --root "$root" --json content info "$digest"
printf '\n$ %s content cat %s | tar -t\n' "$cairn" "$digest"
"$cairn" --root "$root" content cat "$digest" | tar -t

mnt=$work/mnt
echo
echo "== the cache: a writable record, written through its mount, committed, layered on"
base_m=$("$cairn" --root "$root" new --desc "demo base")
printf '\n\033[1m$ %s new --desc "demo base"\033[0m\n%s\n' "$cairn" "$base_m"
step "$cairn" --root "$root" mount "$base_m" "$mnt"
printf '$ echo hello > %s/greeting; tar -xf layer.tar -C %s\n' "$mnt" "$mnt"
echo hello >"$mnt/greeting"
tar -xf "$work/layer.tar" -C "$mnt"
step "$cairn" --root "$root" umount "$mnt"
base=$("$cairn" --root "$root" commit "$base_m")
printf '\n\033[1m$ %s commit %s\033[0m\n%s\n' "$cairn" "$base_m" "$base"
step "$cairn" --root "$root" tag "$base" demo-base
top=$("$cairn" --root "$root" new --parent demo-base --desc "demo top")
printf '\n\033[1m$ %s new --parent demo-base --desc "demo top"\033[0m\n%s\n' "$cairn" "$top"
step "$cairn" --root "$root" mount "$top" "$mnt"
printf '$ ls %s; cat %s/greeting\n' "$mnt" "$mnt"
ls "$mnt"
cat "$mnt/greeting"
step "$cairn" --root "$root" umount "$mnt"
step "$cairn" --root "$root" mounts --ro "$top"
step "$cairn" --root "$root" ls
step "$cairn" --root "$root" du -v

echo
echo "== layers: the base record as a deterministic gzip layer, imported back lazily, extracted"
step "$cairn" --root "$root" diff demo-base -o "$work/base.tar.gz" --source-date-epoch 0
printf '$ tar -tzvf %s\n' "$work/base.tar.gz"
tar -tzvf "$work/base.tar.gz"
layer=$("$cairn" --root "$root" content add "$work/base.tar.gz")
other=$root-second
rm -rf "$other"
step "$cairn" --root "$other" content add "$work/base.tar.gz"
lazy=$("$cairn" --root "$other" import-blob "$layer")
printf '\n\033[1m$ %s --root %s import-blob %s\033[0m\n%s\n' "$cairn" "$other" "$layer" "$lazy"
step "$cairn" --root "$other" ls
step "$cairn" --root "$other" extract "$lazy"
step "$cairn" --root "$other" mount "$lazy" "$mnt"
printf '$ cat %s/greeting\n' "$mnt"
cat "$mnt/greeting"
step "$cairn" --root "$other" umount "$mnt"
step "$cairn" --root "$root" fsck
step "$cairn" --root "$root" gc --dry-run

cat <<EOT

The store is at $root. Try:
  $cairn --root $root ls
  $cairn --root $root info demo-base
  $cairn --root $root mount demo-base /mnt   (and: $cairn --root $root umount /mnt)
  $cairn --root $root content cat $digest | tar -tv
  $cairn --root $root prune --all
  $cairn --help
EOT
