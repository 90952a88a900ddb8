#!/bin/bash
# pull.sh CAIRN [CORPUS]: issue 9's pull figure on the debian image of the corpus
# (../shared/bench/make-corpus.sh), put into a loopback registry with skopeo: `cairn pull` +
# `cairn extract` into a fresh store against `skopeo copy docker:// oci:DIR` + `umoci unpack`
# into fresh directories, RUNS times each (default 3), interleaved; prints a TSV on stdout
# (every run, then the best of each) and the load average before and after.
set -euo pipefail
CAIRN=$(realpath "${1:?usage: pull.sh CAIRN [CORPUS]}")
CORPUS=${2:-$(cd "$(dirname "$0")/../.." && pwd)/corpus}
RUNS=${RUNS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${SCRATCH_BASE:-/var/tmp}/cairn-pull.XXXXXX")
skip() { echo "pull.sh: $*" >&2; exit 77; }
BATS_TEST_TMPDIR=$WORK
# shellcheck source=../tests/cli/registry.bash
source "$HERE/../tests/cli/registry.bash"
trap 'registry_stop; rm -rf "$WORK"' EXIT
registry_start
skopeo copy -q --dest-tls-verify=false "oci:$CORPUS/debian:gzip" "docker://$REGISTRY/bench/debian:1"
SRC=$REGISTRY/bench/debian:1

secs() { echo "$2 - $1" | bc; }

cairn_once() {
	rm -rf "$WORK/store"
	sync
	local t0 t1
	t0=$(date +%s.%N)
	CAIRN_ROOT=$WORK/store "$CAIRN" -q pull --insecure "$SRC" >"$WORK/id"
	CAIRN_ROOT=$WORK/store "$CAIRN" -q extract "$(cat "$WORK/id")" >/dev/null
	t1=$(date +%s.%N)
	printf 'cairn pull + extract\t%s\n' "$(secs "$t0" "$t1")"
}

peer_once() {
	rm -rf "$WORK/oci" "$WORK/bundle"
	sync
	local t0 t1
	t0=$(date +%s.%N)
	skopeo copy -q --src-tls-verify=false "docker://$SRC" "oci:$WORK/oci:x"
	umoci unpack --image "$WORK/oci:x" "$WORK/bundle" >/dev/null
	t1=$(date +%s.%N)
	printf 'skopeo copy + umoci unpack\t%s\n' "$(secs "$t0" "$t1")"
}

echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'tool\tseconds\n'
for ((i = 0; i < RUNS; i++)); do
	if ((i % 2)); then peer_once; cairn_once; else cairn_once; peer_once; fi
done | tee "$WORK/runs.tsv"
echo "# best of $RUNS:"
sort -t$'\t' -k1,1 -k2,2n "$WORK/runs.tsv" | awk -F'\t' '!seen[$1]++ { printf "# %s\t%.2f\n", $1, $2 }'
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
