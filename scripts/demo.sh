#!/usr/bin/env bash
# make demo: the main job end to end on data made here, showing each step and its output.
# Leaves the store for the user to explore and prints where it is.
set -euo pipefail
cairn=${1:-build/cairn}
cairn=$(readlink -f "$cairn")
root=${DEMO_ROOT:-$PWD/demo-store}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

rm -rf "$root"
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

cat <<EOT

The store is at $root. Try:
  $cairn --root $root content ls
  $cairn --root $root content cat $digest | tar -tv
  $cairn --help
EOT
