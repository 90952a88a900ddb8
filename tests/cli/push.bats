#!/usr/bin/env bats
# cairn push (issue 9): records as OCI images in a real registry on loopback (registry.bash),
# checked with skopeo and umoci: skopeo inspect accepts the manifest, skopeo copy to an OCI
# layout + umoci unpack gives the record's tree (treecmp.py). A second push sends no blob bytes.

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
	command -v skopeo >/dev/null || skip "skopeo is not installed (make deps installs it)"
	T=$BATS_TEST_TMPDIR
	MNT=$T/mnt
	IMG=$BATS_FILE_TMPDIR/img
	REFT=$BATS_FILE_TMPDIR/img.ref
	[ -d "$REFT/t/rootfs" ] || { echo "the umoci fixture was not built" >&2; return 1; }
}

teardown() {
	umount -R "$MNT" 2>/dev/null || true
	registry_stop
}

# store_state: what a failed push must not change: records (id, blob, tags) and blob files.
store_state() {
	"$CAIRN" --json ls | python3 -c 'import json,sys
for r in json.load(sys.stdin): print(r["id"], r["blob"], r["extracted"], r["tags"])'
	find "$STORE/blobs" -type f | sort
}

# pulled_tree REMOTE DIR [SKOPEO-ARGS]: skopeo copy REMOTE to an OCI layout and umoci unpack it
# at DIR.
pulled_tree() {
	rm -rf "$T/pulled" "$2"
	skopeo copy -q --src-tls-verify=false ${CREDS:+--src-creds "$CREDS"} "${@:3}" \
		"docker://$1" "oci:$T/pulled:x"
	umoci unpack --image "$T/pulled:x" "$2" >/dev/null
}

# build_top: a record committed on top of the imported image "t" (a file added, one changed),
# tagged "top"; its expected tree in $T/top-tree. Sets $TOP.
build_top() {
	run_cairn 0 -q import "$IMG:t" --tag t
	run_cairn 0 new --parent t --desc top
	local m=$output
	mkdir -p "$MNT"
	run_cairn 0 mount "$m" "$MNT"
	echo pushed >"$MNT/pushed"
	echo again >>"$MNT/pushed-too"
	rm -rf "$MNT/abs" "$MNT/deep"
	mkdir -p "$MNT/newdir/sub"
	ln -s ../pushed "$MNT/newdir/link"
	cp -a "$MNT/." "$T/top-tree"
	run_cairn 0 umount "$MNT"
	run_cairn 0 commit "$m"
	TOP=$output
	run_cairn 0 tag "$TOP" top
}

@test "push an imported image: its manifest unchanged, skopeo inspects it, the tree round-trips" {
	registry_start
	run_cairn 0 -q import "$IMG:t" --tag t
	run_cairn 0 --json push t "$REGISTRY/cairn/app:v1" --insecure
	local manifest
	manifest=$(json_get 'j["manifest"]')
	[ "$(json_get 'j["remote"]')" = "$REGISTRY/cairn/app:v1" ]
	[ "$(json_get 'j["records"]')" = 3 ]
	[ "$(json_get 'j["blobs_sent"]')" = 4 ] # 3 layers + the config
	# the manifest is the imported one, byte for byte
	[ -f "$IMG/blobs/sha256/${manifest#sha256:}" ]
	run skopeo inspect --tls-verify=false "docker://$REGISTRY/cairn/app:v1"
	[ "$status" -eq 0 ]
	[ "$(json_get 'j["Digest"]')" = "$manifest" ]
	[ "$(json_get 'len(j["Layers"])')" = 3 ]
	pulled_tree "$REGISTRY/cairn/app:v1" "$T/b"
	treecmp "$REFT/t/rootfs" "$T/b/rootfs"
}

@test "push a record built here: a manifest like cairn export's, the tree round-trips" {
	registry_start
	build_top
	run_cairn 0 -q export top -o "$T/layout" --tag x
	local exported
	exported=$(python3 -c 'import json,sys
print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$T/layout/index.json")
	run_cairn 0 --json push top "$REGISTRY/cairn/top" --insecure --jobs 2
	# the same builder as export: the same manifest
	[ "$(json_get 'j["manifest"]')" = "$exported" ]
	[ "$(json_get 'j["records"]')" = 4 ]
	run skopeo inspect --tls-verify=false "docker://$REGISTRY/cairn/top:latest"
	[ "$status" -eq 0 ]
	pulled_tree "$REGISTRY/cairn/top:latest" "$T/b"
	treecmp "$T/top-tree" "$T/b/rootfs"
}

@test "podman pulls what cairn pushed and gets the record's tree" {
	command -v podman >/dev/null || skip "podman is not installed (make deps installs it)"
	registry_start
	build_top
	run_cairn 0 -q push top "$REGISTRY/cairn/top:v1" --insecure
	local pm=(podman --root "$T/podman" --runroot "$T/podman-run" --storage-driver vfs)
	run "${pm[@]}" pull -q --tls-verify=false "$REGISTRY/cairn/top:v1"
	[ "$status" -eq 0 ] || { echo "$output"; false; }
	local mp
	mp=$("${pm[@]}" image mount "$REGISTRY/cairn/top:v1")
	treecmp "$T/top-tree" "$mp"
	"${pm[@]}" image unmount "$REGISTRY/cairn/top:v1" >/dev/null
	"${pm[@]}" rmi -a -f >/dev/null 2>&1 || true
}

@test "a second push of the same image sends no blob bytes" {
	registry_start
	build_top
	run_cairn 0 --json push top "$REGISTRY/cairn/app:v1" --insecure
	local first
	first=$(json_get 'j["bytes_sent"]')
	[ "$first" -gt 0 ]
	local uploads
	uploads=$(registry_upload_requests)
	[ "$uploads" -gt 0 ]
	run_cairn 0 --json push top "$REGISTRY/cairn/app:v1" --insecure
	[ "$(json_get 'j["bytes_sent"]')" = 0 ]
	[ "$(json_get 'j["blobs_sent"]')" = 0 ]
	[ "$(json_get 'j["blobs_present"]')" = 5 ]
	# the registry saw no upload request at all: HEADs only, then the manifest
	[ "$(registry_upload_requests)" = "$uploads" ]
	echo "# first push: $first blob bytes; second push: 0" >&3
}

@test "push --compression zstd: zstd layers that skopeo and umoci read" {
	registry_start
	build_top
	run_cairn 0 --json push top "$REGISTRY/cairn/z:1" --insecure --compression zstd
	run skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/cairn/z:1"
	[ "$status" -eq 0 ]
	# the imported layers keep their gzip blobs; the new one is zstd
	[ "$(json_get 'j["layers"][-1]["mediaType"]')" = "application/vnd.oci.image.layer.v1.tar+zstd" ]
	[ "$(json_get 'j["layers"][0]["mediaType"]')" = "application/vnd.oci.image.layer.v1.tar+gzip" ]
	# umoci reads no zstd: skopeo (which reads it, checking digests) recompresses with gzip
	pulled_tree "$REGISTRY/cairn/z:1" "$T/b" --dest-compress --dest-compress-format gzip
	treecmp "$T/top-tree" "$T/b/rootfs"
}

@test "push with basic auth: right credentials work, wrong or none exit 1 naming the registry" {
	registry_start --htpasswd
	run_cairn 0 -q import "$IMG:base" --tag base
	local before
	before=$(store_state)
	export DOCKER_CONFIG=$T/no-docker-config
	run_cairn 1 push base "$REGISTRY/cairn/auth:1" --insecure
	expect_output "$REGISTRY"
	run_cairn 1 push base "$REGISTRY/cairn/auth:1" --insecure --creds alice:wrong
	expect_output "$REGISTRY"
	[ "$(store_state)" = "$before" ]
	run_cairn 0 push base "$REGISTRY/cairn/auth:1" --insecure --creds "$REGISTRY_CREDS"
	CREDS=$REGISTRY_CREDS pulled_tree "$REGISTRY/cairn/auth:1" "$T/b"
	treecmp "$REFT/base/rootfs" "$T/b/rootfs"
}

@test "push to an unreachable registry exits 1 naming it; the store is unchanged" {
	build_top
	local port before
	port=$(registry_free_port)
	before=$(store_state)
	run_cairn 1 push top "127.0.0.1:$port/cairn/app:1" --insecure
	expect_output "127.0.0.1:$port"
	[ "$(store_state)" = "$before" ]
}

@test "push: usage errors exit 2, an unknown record 3" {
	run_cairn 2 push
	run_cairn 2 push onlyone
	run_cairn 2 push a 127.0.0.1:1/x --compression lzma
	run_cairn 2 push a 127.0.0.1:1/x --creds nocolon
	run_cairn 0 push --help
	expect_output "REGISTRY/REPO"
	registry_start
	run_cairn 3 push nosuchrecord "$REGISTRY/cairn/x:1" --insecure
	expect_output "nosuchrecord"
	run_cairn 1 push nosuchrecord "$REGISTRY/cairn/x@sha256:0000000000000000000000000000000000000000000000000000000000000000" --insecure
}
