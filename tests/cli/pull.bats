#!/usr/bin/env bats
# cairn pull (issue 9): images of a real registry on loopback (registry.bash, filled with skopeo
# from umoci fixtures) become lazy records; layers come when extracted, and the tree is umoci's.
# Every failure leaves the store as it was.

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
	mkdir -p "$MNT"
	IMG=$BATS_FILE_TMPDIR/img
	REFT=$BATS_FILE_TMPDIR/img.ref
	[ -d "$REFT/t/rootfs" ] || { echo "the umoci fixture was not built" >&2; return 1; }
	unset CAIRN_REGISTRY_CREDS
}

teardown() {
	umount -R "$MNT" 2>/dev/null || true
	registry_stop
}

NO_TRUSTED=(--ignore-xattr trusted.)

# put TAG REPO:RTAG [SKOPEO-ARGS]: the fixture image TAG into the registry.
put() {
	skopeo copy -q --dest-tls-verify=false "${@:3}" "oci:$IMG:$1" "docker://$REGISTRY/$2"
}

# store_state: records (id, blob, extracted, tags), blob files and snapshot directories.
store_state() {
	"$CAIRN" --json ls | python3 -c 'import json,sys
for r in json.load(sys.stdin): print(r["id"], r["blob"], r["extracted"], r["tags"])'
	find "$STORE/blobs" -type f | sort
	ls "$STORE/snapshots" 2>/dev/null | sort
}

# same_as_mounted REF EXPECTED: cairn mount --ro REF gives the tree EXPECTED.
same_as_mounted() {
	run_cairn 0 mount --ro "$1" "$MNT"
	run treecmp "${NO_TRUSTED[@]}" "$2" "$MNT"
	echo "$output"
	local rc=$status
	run_cairn 0 umount "$MNT"
	[ "$rc" -eq 0 ]
}

n_records() { "$CAIRN" --json ls | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
n_extracted() {
	"$CAIRN" --json ls | python3 -c 'import json,sys; print(sum(r["extracted"] for r in json.load(sys.stdin)))'
}
n_blobs() { find "$STORE/blobs" -type f | wc -l; }
n_snapshots() { find "$STORE/snapshots" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# registry_blob DIGEST: the file the registry keeps blob DIGEST in.
registry_blob() {
	local h=${1#sha256:}
	echo "$REGISTRY_DIR/storage/docker/registry/v2/blobs/sha256/${h:0:2}/$h/data"
}

@test "pull: lazy records, no layer downloaded; extract gives umoci's tree; export gives back the manifest" {
	registry_start
	put t lib/app:v1
	run_cairn 0 -q pull --insecure "$REGISTRY/lib/app:v1"
	id=$output
	[ "$(n_records)" = 3 ]
	[ "$(n_extracted)" = 0 ]
	[ "$(n_snapshots)" = 0 ]
	# only the manifest and the config are here
	[ "$(n_blobs)" = 2 ]
	run_cairn 0 --json info "$id"
	[ "$(json_get 'j["extracted"]')" = False ]
	[ "$(json_get 'j["tags"]')" = "['$REGISTRY/lib/app:v1']" ]
	run_cairn 0 fsck
	# du: lazy records hold no local bytes
	run_cairn 0 --json du
	[ "$(json_get 'j["records_total"]')" = 0 ]
	# the layers come now, verified, and the tree is umoci's
	run_cairn 0 extract "$id"
	[ "$(n_extracted)" = 3 ]
	[ "$(n_blobs)" = 5 ]
	same_as_mounted "$id" "$REFT/t/rootfs"
	run_cairn 0 fsck
	# export of the pulled image gives back the registry's own manifest
	run_cairn 0 export "$REGISTRY/lib/app:v1" -o "$T/out" --tag x
	want=$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/lib/app:v1" | sha256sum | cut -d' ' -f1)
	grep -q "sha256:$want" "$T/out/index.json"
	# gc keeps the fetched blobs of the live records
	run_cairn 0 gc
	[ "$(n_blobs)" = 5 ]
}

@test "pull --json, --tag, --extract; a pull by digest" {
	registry_start
	put t lib/app:v1
	run_cairn 0 --json pull --insecure --tag mine --extract "$REGISTRY/lib/app:v1"
	id=$(json_get 'j["id"]')
	[ "$(json_get 'j["tags"]')" = "['mine']" ]
	manifest=$(json_get 'j["manifest"]')
	[ "$(n_extracted)" = 3 ]
	same_as_mounted mine "$REFT/t/rootfs"
	run_cairn 0 -q pull --insecure "$REGISTRY/lib/app@$manifest"
	[ "$output" = "$id" ]
	run_cairn 0 --json info "$id"
	[[ "$(json_get 'j["tags"]')" == *"$REGISTRY/lib/app@$manifest"* ]]
}

@test "pull twice creates nothing; a layer here already is never downloaded" {
	registry_start
	put t lib/app:v1
	put base lib/base:1
	run_cairn 0 -q pull --insecure "$REGISTRY/lib/app:v1"
	id=$output
	run_cairn 0 extract "$id"
	before=$(store_state)
	run_cairn 0 -q pull --insecure "$REGISTRY/lib/app:v1"
	[ "$output" = "$id" ]
	[ "$(store_state)" = "$before" ]
	# base is layer 1 of t: the same record (blob chain id), already extracted
	run_cairn 0 -q pull --insecure --tag b "$REGISTRY/lib/base:1"
	base=$output
	[ "$(n_records)" = 3 ]
	run_cairn 0 --json info "$base"
	[ "$(json_get 'j["extracted"]')" = True ]
	# nothing needs the registry any longer
	registry_stop
	same_as_mounted "$base" "$REFT/base/rootfs"
}

@test "pull: a second store (another machine) pulls the same image and extracts it" {
	registry_start
	put t2 lib/app:v2
	run_cairn 0 -q pull --insecure "$REGISTRY/lib/app:v2"
	run_cairn 0 extract "$output"
	export CAIRN_ROOT=$T/store2 STORE=$T/store2
	run_cairn 0 -q pull --insecure "$REGISTRY/lib/app:v2"
	id=$output
	[ "$(n_records)" = 4 ]
	[ "$(n_extracted)" = 0 ]
	# mount extracts (and fetches) first
	same_as_mounted "$id" "$REFT/t2/rootfs"
}

@test "pull: an index picks the platform (--platform), 3 when it has none" {
	registry_start
	put t multi:amd
	put base multi:arm
	local sa sb na nb
	skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/multi:amd" >"$T/ma"
	skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/multi:arm" >"$T/mb"
	sa=$(sha256sum <"$T/ma" | cut -d' ' -f1)
	sb=$(sha256sum <"$T/mb" | cut -d' ' -f1)
	na=$(stat -c %s "$T/ma")
	nb=$(stat -c %s "$T/mb")
	cat >"$T/index.json" <<-EOF
		{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		 "manifests": [
		  {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:$sb",
		   "size": $nb, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
		  {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:$sa",
		   "size": $na, "platform": {"os": "linux", "architecture": "amd64"}}]}
	EOF
	curl -sS --fail-with-body -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
		--data-binary @"$T/index.json" "http://$REGISTRY/v2/multi/manifests/all" >/dev/null
	run_cairn 0 -q pull --insecure "$REGISTRY/multi:all"
	[ "$(n_records)" = 3 ]
	run_cairn 0 -q pull --insecure --tag arm --platform linux/arm64/v8 "$REGISTRY/multi:all"
	run_cairn 0 extract arm
	same_as_mounted arm "$REFT/base/rootfs"
	before=$(store_state)
	run_cairn 3 pull --insecure --platform linux/s390x "$REGISTRY/multi:all"
	expect_output "no image for platform linux/s390x"
	expect_output "linux/arm64/v8, linux/amd64"
	run_cairn 2 pull --insecure --platform linux "$REGISTRY/multi:all"
	[ "$(store_state)" = "$before" ]
}

@test "pull: bad input fails naming the registry and the object; the store is unchanged" {
	registry_start
	put t lib/app:v1
	put base lib/base:1
	run_cairn 0 -q pull --insecure "$REGISTRY/lib/base:1"
	before=$(store_state)
	# unreachable: a closed port
	port=$(registry_free_port)
	run_cairn 1 pull --insecure "127.0.0.1:$port/lib/app:v1"
	expect_output "127.0.0.1:$port"
	# no such tag, no such repository: 3
	run_cairn 3 pull --insecure "$REGISTRY/lib/app:nope"
	expect_output "nope"
	expect_output "$REGISTRY"
	run_cairn 3 pull --insecure "$REGISTRY/lib/nothing:v1"
	# usage
	run_cairn 2 pull
	run_cairn 1 pull --insecure --tag .bad "$REGISTRY/lib/app:v1"
	expect_output "bad tag name"
	run_cairn 1 pull --insecure "$REGISTRY/Bad/Name:v1"
	[ "$(store_state)" = "$before" ]
	# a config whose bytes do not hash to its digest
	cfg=$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/lib/app:v1" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])')
	f=$(registry_blob "$cfg")
	cp "$f" "$T/cfg.good"
	sed -i 's/"architecture"/"architecturE"/' "$f"
	run_cairn 1 pull --insecure "$REGISTRY/lib/app:v1"
	expect_output "$cfg"
	expect_output "$REGISTRY"
	[ "$(store_state)" = "$before" ]
	cp "$T/cfg.good" "$f"
	# https against a plain-http registry
	run_cairn 1 pull "$REGISTRY/lib/app:v1"
	expect_output "$REGISTRY"
	[ "$(store_state)" = "$before" ]
}

@test "pull: a layer whose digest does not match fails at extract, nothing extracted" {
	registry_start
	put t lib/app:v1
	layer=$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/lib/app:v1" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][2]["digest"])')
	f=$(registry_blob "$layer")
	# same size, other bytes
	printf 'X' | dd of="$f" bs=1 seek=100 conv=notrunc 2>/dev/null
	run_cairn 0 -q pull --insecure "$REGISTRY/lib/app:v1"
	id=$output
	run_cairn 1 extract "$id"
	expect_output "$layer"
	expect_output "$REGISTRY"
	[ "$(n_extracted)" = 0 ]
	[ "$(n_snapshots)" = 0 ]
	[ ! -e "$STORE/blobs/sha256/${layer#sha256:}" ]
	run_cairn 0 fsck
}

@test "pull: a manifest over 4 MiB is refused, nothing created" {
	registry_start
	put base lib/base:1
	m=$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/lib/base:1")
	# the same manifest with a 5 MiB annotation, put straight into the registry's storage
	printf %s "$m" | python3 -c 'import json,sys
m = json.load(sys.stdin)
m["annotations"] = {"pad": "x" * (5 << 20)}
sys.stdout.write(json.dumps(m))' >"$T/big.json"
	h=$(sha256sum "$T/big.json" | cut -d' ' -f1)
	s=$REGISTRY_DIR/storage/docker/registry/v2
	mkdir -p "$s/blobs/sha256/${h:0:2}/$h" "$s/repositories/lib/base/_manifests/revisions/sha256/$h" \
		"$s/repositories/lib/base/_manifests/tags/big/current"
	cp "$T/big.json" "$s/blobs/sha256/${h:0:2}/$h/data"
	printf 'sha256:%s' "$h" >"$s/repositories/lib/base/_manifests/revisions/sha256/$h/link"
	printf 'sha256:%s' "$h" >"$s/repositories/lib/base/_manifests/tags/big/current/link"
	before=$(store_state)
	run_cairn 1 pull --insecure "$REGISTRY/lib/base:big"
	expect_output "$REGISTRY"
	expect_output "big"
	[ "$(store_state)" = "$before" ]
}

@test "pull: basic auth with --creds, \$CAIRN_REGISTRY_CREDS for the later extract" {
	registry_start --htpasswd
	put t lib/app:v1 --dest-creds "$REGISTRY_CREDS"
	before=$(store_state)
	run_cairn 1 pull --insecure --creds alice:wrong "$REGISTRY/lib/app:v1"
	expect_output "$REGISTRY"
	run_cairn 1 pull --insecure "$REGISTRY/lib/app:v1"
	[ "$(store_state)" = "$before" ]
	run_cairn 0 -q pull --insecure --creds "$REGISTRY_CREDS" "$REGISTRY/lib/app:v1"
	id=$output
	# the layers need the credentials too
	run_cairn 1 extract "$id"
	expect_output "$REGISTRY"
	[ "$(n_extracted)" = 0 ]
	CAIRN_REGISTRY_CREDS=$REGISTRY_CREDS run_cairn 0 extract "$id"
	same_as_mounted "$id" "$REFT/t/rootfs"
}

@test "pull: export of a pulled image never extracted fetches its layers, extracts nothing" {
	registry_start
	put t lib/app:v1
	run_cairn 0 -q pull --insecure --tag app "$REGISTRY/lib/app:v1"
	run_cairn 0 export app -o "$T/out" --tag x
	[ "$(n_extracted)" = 0 ]
	[ "$(n_blobs)" = 5 ]
	umoci unpack --image "$T/out:x" "$T/b" >/dev/null
	treecmp "$REFT/t/rootfs" "$T/b/rootfs"
}

@test "pull: HTML where JSON was expected exits 1 naming the server and the manifest" {
	port=$(/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	/usr/bin/python3 -c 'import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = b"<html><body>Welcome to our portal</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    do_HEAD = do_GET
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$port" 3>&- &
	pid=$!
	for ((i = 0; i < 100; i++)); do
		curl -s -o /dev/null "http://127.0.0.1:$port/" && break
		sleep 0.05
	done
	before=$(store_state)
	run_cairn 1 pull --insecure "127.0.0.1:$port/lib/app:v1"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	expect_output "127.0.0.1:$port"
	expect_output "manifest"
	[ "$(store_state)" = "$before" ]
}
