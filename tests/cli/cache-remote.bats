#!/usr/bin/env bats
# cairn cache export / import (issue 9): two stores (two machines) sharing record chains through
# a real registry on loopback (registry.bash). The second store gets the same chain ids, tags
# and descriptions without downloading or extracting anything; a missing or invalid cache is a
# miss (exit 0, a warning), never a failure; only an unreachable or refusing registry is exit 1.

load helpers
load image-fixtures
load registry

setup_file() {
	[ "$(id -u)" = 0 ] || return 0
	command -v umoci >/dev/null || return 0
	make_umoci_image "$BATS_FILE_TMPDIR/img" >/dev/null
}

setup() {
	setup_store
	[ "$(id -u)" = 0 ] || skip "owners, device nodes and mounts need root"
	command -v umoci >/dev/null || skip "umoci is not installed (make deps installs it)"
	T=$BATS_TEST_TMPDIR
	MNT=$T/mnt
	IMG=$BATS_FILE_TMPDIR/img
	A=$STORE
	B=$T/store-b
	[ -d "$IMG" ] || { echo "the umoci fixture was not built" >&2; return 1; }
}

teardown() {
	umount -R "$MNT" 2>/dev/null || true
	umount -R "$T/mnt-b" 2>/dev/null || true
	registry_stop
}

# in_b ARGS...: run_cairn against store B.
in_b() {
	local rc=$1
	shift
	CAIRN_ROOT=$B run_cairn "$rc" "$@"
}

# records [STORE]: chain id, blob chain id, description and tags of every record, sorted.
records() {
	CAIRN_ROOT=${1:-$A} "$CAIRN" --json ls | python3 -c 'import json,sys
for r in sorted(json.load(sys.stdin), key=lambda r: r["chain_id"] or ""):
    if r["chain_id"]: print(r["chain_id"], r["blob_chain_id"], repr(r["description"]), r["tags"])'
}

# store_state STORE: what a failed or missed import must not change.
store_state() {
	CAIRN_ROOT=$1 "$CAIRN" --json ls | python3 -c 'import json,sys
for r in json.load(sys.stdin): print(r["id"], r["blob"], r["extracted"], r["tags"])'
	find "$1/blobs" "$1/snapshots" -mindepth 1 2>/dev/null | sort
}

# commit_on PARENT DESC FILE: a record on PARENT (tag or id) with FILE added; prints its id.
commit_on() {
	local m
	m=$("$CAIRN" new --parent "$1" --desc "$2")
	mkdir -p "$MNT"
	"$CAIRN" mount "$m" "$MNT" >/dev/null
	echo "$3" >"$MNT/$3"
	"$CAIRN" umount "$MNT" >/dev/null
	"$CAIRN" commit "$m"
}

# build_a: in store A, the image "t" imported (3 layers) and a record "top" built on it.
build_a() {
	run_cairn 0 -q import "$IMG:t" --tag t
	TOP=$(commit_on t "built on t" top-file)
	run_cairn 0 tag "$TOP" top
}

@test "two stores share a cache: same chain ids, tags, descriptions; nothing downloaded" {
	registry_start
	build_a
	run_cairn 0 --json cache export top --to "$REGISTRY/cairn/cache:main" --insecure
	[ "$(json_get 'j["records"]')" = 4 ]
	[ "$(json_get 'j["blobs"]')" = 4 ]
	[ "$(json_get 'j["blobs_sent"]')" = 5 ]
	in_b 0 --json cache import --from "$REGISTRY/cairn/cache:main" --insecure
	[ "$(json_get 'j["miss"]')" = False ]
	[ "$(json_get 'j["imported"]')" = 4 ]
	[ "$(json_get 'j["new"]')" = 4 ]
	[ "$(json_get 'j["missed"]')" = 0 ]
	[ "$(json_get 'j["fetched"]')" = 0 ]
	[ "$(records "$B")" = "$(records "$A")" ]
	# lazy: no blob downloaded, no snapshot made
	[ -z "$(find "$B/blobs" -type f)" ]
	[ -z "$(ls "$B/snapshots")" ]
	CAIRN_ROOT=$B run_cairn 0 --json ls
	[ "$(json_get 'sum(r["extracted"] for r in j)')" = 0 ]
	# importing again makes nothing new
	in_b 0 --json cache import --from "$REGISTRY/cairn/cache:main" --insecure
	[ "$(json_get 'j["new"]')" = 0 ]
	[ "$(json_get 'j["imported"]')" = 4 ]
	CAIRN_ROOT=$B run_cairn 0 --json ls
	[ "$(json_get 'len(j)')" = 4 ]
}

@test "the second store extracts from the registry and gets the first store's tree" {
	registry_start
	build_a
	run_cairn 0 -q cache export top --to "$REGISTRY/cairn/cache:main" --insecure
	in_b 0 -q cache import --from "$REGISTRY/cairn/cache:main" --insecure
	in_b 0 extract top
	[ -n "$(find "$B/blobs" -type f)" ]
	mkdir -p "$MNT" "$T/mnt-b"
	run_cairn 0 mount top "$MNT"
	in_b 0 mount top "$T/mnt-b"
	treecmp "$MNT" "$T/mnt-b"
}

# pulled_tree REMOTE DIR: skopeo copy REMOTE to an OCI layout and umoci unpack it at DIR.
pulled_tree() {
	command -v skopeo >/dev/null || skip "skopeo is not installed (make deps installs it)"
	rm -rf "$T/pulled" "$2"
	skopeo copy -q --src-tls-verify=false "docker://$1" "oci:$T/pulled:x"
	umoci unpack --image "$T/pulled:x" "$2" >/dev/null
}

@test "lazy records push and export without a download: mounted within a registry, fetched across" {
	registry_start
	run_cairn 0 -q import "$IMG:t" --tag t
	run_cairn 0 -q cache export t --to "$REGISTRY/cairn/cache:main" --insecure
	in_b 0 -q cache import --from "$REGISTRY/cairn/cache:main" --insecure
	# same registry, other repositories: every layer mounted, only the config sent
	in_b 0 --json push t "$REGISTRY/cairn/other:1" --insecure
	[ "$(json_get 'j["blobs_mounted"]')" = 3 ]
	[ "$(json_get 'j["blobs_sent"]')" = 1 ]
	in_b 0 --json cache export t --to "$REGISTRY/cairn/third:1" --insecure
	[ "$(json_get 'j["blobs_mounted"]')" = 3 ]
	[ -z "$(find "$B/blobs" -type f)" ]
	pulled_tree "$REGISTRY/cairn/other:1" "$T/b"
	treecmp "$IMG.ref/t/rootfs" "$T/b/rootfs"
	# another registry: the blobs are fetched from the first, then sent
	local first_dir=$REGISTRY_DIR
	BATS_TEST_TMPDIR=$T/second registry_start
	in_b 0 --json push t "$REGISTRY/cairn/other:1" --insecure
	[ "$(json_get 'j["blobs_sent"]')" = 4 ]
	[ "$(json_get 'j["blobs_mounted"]')" = 0 ]
	[ "$(find "$B/blobs" -type f | wc -l)" = 3 ]
	pulled_tree "$REGISTRY/cairn/other:1" "$T/c"
	treecmp "$IMG.ref/t/rootfs" "$T/c/rootfs"
	registry_stop
	REGISTRY_DIR=$first_dir
}

@test "an incremental export sends only the new blob" {
	registry_start
	build_a
	run_cairn 0 --json cache export top --to "$REGISTRY/cairn/cache:main" --insecure
	local uploads
	uploads=$(registry_upload_requests)
	local top2
	top2=$(commit_on top "second" second-file)
	run_cairn 0 tag "$top2" top2
	run_cairn 0 --json cache export top2 --to "$REGISTRY/cairn/cache:main" --insecure
	[ "$(json_get 'j["records"]')" = 5 ]
	[ "$(json_get 'j["blobs_sent"]')" = 2 ] # the new layer and the new config
	[ "$(json_get 'j["blobs_present"]')" = 4 ]
	# the same export again: nothing at all
	run_cairn 0 --json cache export top2 --to "$REGISTRY/cairn/cache:main" --insecure
	[ "$(json_get 'j["blobs_sent"]')" = 0 ]
	[ "$(json_get 'j["bytes_sent"]')" = 0 ]
	in_b 0 --json cache import --from "$REGISTRY/cairn/cache:main" --insecure
	[ "$(json_get 'j["imported"]')" = 5 ]
	[ "$(records "$B")" = "$(records "$A")" ]
}

@test "a layer blob the registry lost cuts its chain there: a miss, exit 0" {
	registry_start
	build_a
	run_cairn 0 -q cache export top --to "$REGISTRY/cairn/cache:main" --insecure
	local blob
	blob=$("$CAIRN" --json info top | python3 -c 'import json,sys; print(json.load(sys.stdin)["blob"])')
	registry_delete_blob cairn/cache "$blob"
	in_b 0 --json cache import --from "$REGISTRY/cairn/cache:main" --insecure
	[ "$(json_get 'j["miss"]')" = False ]
	[ "$(json_get 'j["imported"]')" = 3 ]
	[ "$(json_get 'j["missed"]')" = 1 ]
	[[ "$(json_get 'j["warnings"][0]')" == *"$REGISTRY"*"$blob"* ]]
	CAIRN_ROOT=$B run_cairn 0 --json ls
	[ "$(json_get 'len(j)')" = 3 ]
	[ "$(json_get 'sorted(t for r in j for t in r["tags"])')" = "['t']" ]
	# without --json: the warning on stderr
	in_b 0 cache import --from "$REGISTRY/cairn/cache:main" --insecure
	expect_output "warning: registry '$REGISTRY'"
	expect_output "3 records imported (0 new), 1 missed"
}

# put_cache CONFIG-FILE [SIZE]: a cache manifest naming CONFIG-FILE (with SIZE, default its
# size) as its config, under cairn/cache:bad.
put_cache() {
	local dg size
	dg=$(registry_put_blob "$1" cairn/cache)
	size=${2:-$(stat -c %s "$1")}
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.cairn.cache.config.v1+jsonl","digest":"%s","size":%s},"layers":[]}' \
		"$dg" "$size" >"$T/manifest.json"
	registry_put_manifest "$T/manifest.json" cairn/cache bad
}

# expect_miss WHAT: importing cairn/cache:bad into B is a miss naming WHAT; B is unchanged.
expect_miss() {
	local before
	before=$(store_state "$B")
	in_b 0 --json cache import --from "$REGISTRY/cairn/cache:bad" --insecure
	[ "$(json_get 'j["miss"]')" = True ]
	[ "$(json_get 'j["imported"]')" = 0 ]
	[[ "$(json_get 'j["warnings"][0]')" == *"$1"* ]]
	[ "$(store_state "$B")" = "$before" ]
}

@test "an invalid or missing cache is a miss: exit 0, a warning, the store unchanged" {
	registry_start
	# B has a record of its own, which must stay as it is
	CAIRN_ROOT=$B run_cairn 0 -q import "$IMG:base" --tag mine
	# no manifest under the tag
	in_b 0 --json cache import --from "$REGISTRY/cairn/cache:nothing" --insecure
	[ "$(json_get 'j["miss"]')" = True ]
	[[ "$(json_get 'j["warnings"][0]')" == *"$REGISTRY"*"nothing"* ]]
	# not JSON
	echo 'not json' >"$T/cfg"
	put_cache "$T/cfg"
	expect_miss "line 1"
	# a header that lies about the count
	printf '{"cairn":"cache","records":2,"version":1}\n' >"$T/cfg"
	put_cache "$T/cfg"
	expect_miss "header says 2"
	# a size that is not the blob's
	put_cache "$T/cfg" 7
	expect_miss "cache config"
	# over the 1 GiB limit: refused before reading
	put_cache "$T/cfg" 2000000000
	expect_miss "over the limit"
	# a record whose blob the manifest does not list (chain ids right, parent fine)
	python3 - "$T/cfg" <<-'EOF'
		import hashlib, json, sys
		h = lambda s: "sha256:" + hashlib.sha256(s.encode()).hexdigest()
		blob, diff = h("b"), h("d")
		rec = {"blob": blob, "blob_chain_id": h(blob + " " + diff), "chain_id": diff,
		       "created": 1, "description": "", "diff_id": diff,
		       "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "parent": -1,
		       "size": 10, "tags": ["x"]}
		with open(sys.argv[1], "w") as f:
		    f.write(json.dumps({"cairn": "cache", "records": 1, "version": 1}) + "\n")
		    f.write(json.dumps(rec, sort_keys=True) + "\n")
	EOF
	put_cache "$T/cfg"
	expect_miss "not among the manifest's layers"
	# an image that is not a cache
	run_cairn 0 -q import "$IMG:base" --tag base
	run_cairn 0 -q push base "$REGISTRY/cairn/cache:bad" --insecure
	expect_miss "not a cairn cache manifest"
}

@test "a cache config of 16 MiB and more: exported and imported, descriptions kept" {
	registry_start
	local desc prev m i
	desc=$(head -c 90000 /dev/zero | tr '\0' 'd')
	prev=$("$CAIRN" commit "$("$CAIRN" new --desc "base $desc")")
	for ((i = 1; i < 190; i++)); do
		m=$("$CAIRN" new --parent "$prev" --desc "$i $desc")
		prev=$("$CAIRN" commit "$m")
	done
	run_cairn 0 tag "$prev" deep
	run_cairn 0 --json cache export deep --to "$REGISTRY/cairn/cache:deep" --insecure
	[ "$(json_get 'j["records"]')" = 190 ]
	[ "$(json_get 'j["config_size"] >= 16 << 20')" = True ]
	echo "# config: $(json_get 'j["config_size"]') bytes" >&3
	in_b 0 --json cache import --from "$REGISTRY/cairn/cache:deep" --insecure
	[ "$(json_get 'j["imported"]')" = 190 ]
	[ "$(records "$B")" = "$(records "$A")" ]
	CAIRN_ROOT=$B run_cairn 0 --json info deep
	[ "$(json_get 'j["description"] == "189 " + "d" * 90000')" = True ]
}

@test "cache import from an unreachable or refusing registry exits 1; the store is unchanged" {
	CAIRN_ROOT=$B run_cairn 0 -q import "$IMG:base" --tag mine
	local before port
	before=$(store_state "$B")
	port=$(registry_free_port)
	in_b 1 cache import --from "127.0.0.1:$port/cairn/cache:main" --insecure
	expect_output "127.0.0.1:$port"
	[ "$(store_state "$B")" = "$before" ]
	registry_start --htpasswd
	export DOCKER_CONFIG=$T/no-docker-config
	build_a
	run_cairn 1 cache export top --to "$REGISTRY/cairn/cache:main" --insecure --creds alice:nope
	expect_output "$REGISTRY"
	run_cairn 0 -q cache export top --to "$REGISTRY/cairn/cache:main" --insecure \
		--creds "$REGISTRY_CREDS"
	in_b 1 cache import --from "$REGISTRY/cairn/cache:main" --insecure --creds alice:nope
	expect_output "$REGISTRY"
	in_b 1 cache import --from "$REGISTRY/cairn/cache:main" --insecure
	[ "$(store_state "$B")" = "$before" ]
	in_b 0 --json cache import --from "$REGISTRY/cairn/cache:main" --insecure \
		--creds "$REGISTRY_CREDS"
	[ "$(json_get 'j["imported"]')" = 4 ]
}

@test "cache export/import: usage errors exit 2" {
	run_cairn 2 cache
	run_cairn 2 cache export top
	run_cairn 2 cache export --to 127.0.0.1:1/x
	run_cairn 2 cache import
	run_cairn 2 cache import --from 127.0.0.1:1/x extra
	run_cairn 2 cache export top --to 127.0.0.1:1/x --compression lzma
	run_cairn 0 cache --help
	expect_output "export"
	run_cairn 0 cache import --help
	expect_output "--from"
}
