#!/bin/bash
# push.sh CAIRN [CORPUS]: issue 9's push figures on the debian image of the corpus
# (../shared/bench/make-corpus.sh): a first push to a loopback registry, a second push of the
# same image (no blob bytes may be sent), a cache export of the same chain to another tag, and
# skopeo copy oci:->docker:// of the same image as the peer. Prints a TSV on stdout.
set -euo pipefail
CAIRN=$(realpath "${1:?usage: push.sh CAIRN [CORPUS]}")
CORPUS=${2:-$(cd "$(dirname "$0")/../.." && pwd)/corpus}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
skip() { echo "push.sh: $*" >&2; exit 77; }
BATS_TEST_TMPDIR=$WORK
# shellcheck source=../tests/cli/registry.bash
source "$HERE/../tests/cli/registry.bash"
trap 'registry_stop; rm -rf "$WORK"' EXIT
registry_start
export CAIRN_ROOT=$WORK/store
"$CAIRN" -q import "$CORPUS/debian:gzip" --tag debian >/dev/null

# run_timed NAME CMD...: one TSV line: name, seconds, and the fields of cairn's --json output.
run_timed() {
	local name=$1 t0 t1 out
	shift
	t0=$(date +%s.%N)
	out=$("$@")
	t1=$(date +%s.%N)
	python3 -c 'import json,sys
j = json.loads(sys.argv[3]) if sys.argv[3].strip() else {}
print("\t".join([sys.argv[1], "%.2f" % float(sys.argv[2]), str(j.get("bytes_sent", "-")),
                 str(j.get("blobs_sent", "-")), str(j.get("blobs_present", "-"))]))' \
		"$name" "$(echo "$t1 - $t0" | bc)" "$out"
}

printf 'step\tseconds\tbytes_sent\tblobs_sent\tblobs_present\n'
up0=$(registry_upload_requests)
run_timed "cairn push (first)" "$CAIRN" --json push debian "$REGISTRY/bench/debian:1" --insecure
up1=$(registry_upload_requests)
run_timed "cairn push (second)" "$CAIRN" --json push debian "$REGISTRY/bench/debian:1" --insecure
up2=$(registry_upload_requests)
run_timed "cairn cache export (same blobs)" "$CAIRN" --json cache export debian \
	--to "$REGISTRY/bench/debian:cache" --insecure
run_timed "skopeo copy oci: -> docker:// (new repo)" skopeo copy -q --dest-tls-verify=false \
	"oci:$CORPUS/debian:gzip" "docker://$REGISTRY/bench/peer:1"
echo "# registry upload requests: first push $((up1 - up0)), second push $((up2 - up1))"
