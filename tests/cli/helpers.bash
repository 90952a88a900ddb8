# Shared helpers for the CLI tests. $CAIRN is the binary under test (set by meson test);
# each test gets a fresh store under $BATS_TEST_TMPDIR.

setup_store() {
	: "${CAIRN:=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)/build/cairn}"
	export CAIRN
	export STORE="$BATS_TEST_TMPDIR/store"
	export CAIRN_ROOT="$STORE"
}

# run_cairn RC ARGS...: run cairn with ARGS and require exit status RC.
run_cairn() {
	local want=$1
	shift
	run "$CAIRN" "$@"
	if [ "$status" -ne "$want" ]; then
		echo "cairn $*: exit $status, expected $want" >&2
		echo "output: $output" >&2
		return 1
	fi
}

# expect_output TEXT: the last run's output contains TEXT.
expect_output() {
	if [[ "$output" != *"$1"* ]]; then
		echo "output lacks '$1':" >&2
		echo "$output" >&2
		return 1
	fi
}

# expect_no_output TEXT: the last run's output does not contain TEXT.
expect_no_output() {
	if [[ "$output" == *"$1"* ]]; then
		echo "output unexpectedly has '$1':" >&2
		echo "$output" >&2
		return 1
	fi
}

# json_get EXPR: evaluate a Python expression over the last output parsed as JSON (as `j`).
json_get() {
	python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1" <<<"$output"
}

# blob_put DIR FILE: FILE into DIR/blobs/sha256; prints '"digest": ..., "size": ...'.
blob_put() {
	local d
	d=$(sha256sum "$2" | cut -d' ' -f1)
	cp "$2" "$1/blobs/sha256/$d"
	printf '"digest": "sha256:%s", "size": %s' "$d" "$(stat -c %s "$2")"
}

# make_layout DIR TAG LAYER.tar.gz...: an OCI image layout holding one image of those layers.
make_layout() {
	local dir=$1 tag=$2 layers="" diffs="" sep="" f
	shift 2
	mkdir -p "$dir/blobs/sha256"
	echo '{"imageLayoutVersion": "1.0.0"}' >"$dir/oci-layout"
	for f in "$@"; do
		layers+="$sep{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\", $(blob_put "$dir" "$f")}"
		diffs+="$sep\"sha256:$(gunzip -c "$f" | sha256sum | cut -d' ' -f1)\""
		sep=", "
	done
	printf '{"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [%s]}}' \
		"$diffs" >"$dir/config.json"
	printf '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"mediaType": "application/vnd.oci.image.config.v1+json", %s}, "layers": [%s]}' \
		"$(blob_put "$dir" "$dir/config.json")" "$layers" >"$dir/manifest.json"
	printf '{"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", %s, "annotations": {"org.opencontainers.image.ref.name": "%s"}}]}' \
		"$(blob_put "$dir" "$dir/manifest.json")" "$tag" >"$dir/index.json"
	rm "$dir/config.json" "$dir/manifest.json"
}
