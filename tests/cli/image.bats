#!/usr/bin/env bats
# Image import and export (issue 6): OCI image layouts made by umoci, skopeo and by hand
# (image-fixtures.py), docker archives in both forms, bad input. Trees are compared entry by
# entry with treecmp.py: type, mode, owner, size, content hash, link target, xattrs, rdev and
# hardlink groups.

load helpers
load image-fixtures

setup_file() {
	[ "$(id -u)" = 0 ] || return 0
	command -v umoci >/dev/null || return 0
	# one umoci-made image for the whole file: tags base, t, t2 and their expected trees
	make_umoci_image "$BATS_FILE_TMPDIR/img" >/dev/null
}

setup() {
	setup_store
	[ "$(id -u)" = 0 ] || skip "owners, device nodes, trusted. xattrs and mounts need root"
	T=$BATS_TEST_TMPDIR
	MNT=$T/mnt
	IMG=$BATS_FILE_TMPDIR/img
	REFT=$BATS_FILE_TMPDIR/img.ref
}

teardown() {
	umount -R "$MNT" 2>/dev/null || true
}

need() {
	command -v "$1" >/dev/null || skip "$1 is not installed (make deps installs it)"
}

need_umoci() {
	need umoci
	[ -d "$REFT/t/rootfs" ] || { echo "the umoci fixture was not built" >&2; return 1; }
}

# import ARGS...: cairn -q import ARGS must succeed; $id is the top ref's id.
import() {
	run_cairn 0 -q import "$@"
	id=$output
	[ -n "$id" ] && [[ "$id" != *$'\n'* ]] || { echo "import printed '$output'" >&2; return 1; }
}

# cairn's layer applier drops trusted.* xattrs from tars (they include overlayfs's own
# trusted.overlay.*; containerd refuses them too), so trees that went through it are compared
# without them; umoci keeps them, and the round trip of an imported image's own blobs does too.
NO_TRUSTED=(--ignore-xattr trusted.)

# same_as_mounted REF EXPECTED: cairn mount --ro REF gives the tree EXPECTED.
same_as_mounted() {
	run_cairn 0 mount --ro "$1" "$MNT"
	run treecmp "${NO_TRUSTED[@]}" "$2" "$MNT"
	echo "$output"
	local rc=$status
	run_cairn 0 umount "$MNT"
	[ "$rc" -eq 0 ]
}

# unpacks_to LAYOUT:TAG EXPECTED [TREECMP-OPTIONS]: umoci unpack of the image gives the tree
# EXPECTED.
unpacks_to() {
	local b
	b=$(mktemp -d "$T/unpack.XXXXXX")
	rmdir "$b"
	umoci unpack --image "$1" "$b" >/dev/null
	treecmp "${@:3}" "$2" "$b/rootfs"
}

# state: what the store holds (records, blobs, snapshots, leases), one line each, sorted.
state() {
	"$CAIRN" --json ls | python3 -c 'import json,sys; [print("record", r["id"], r.get("kind")) for r in json.load(sys.stdin)]'
	"$CAIRN" --json content ls | python3 -c 'import json,sys; [print("blob", b["digest"]) for b in json.load(sys.stdin)]'
	"$CAIRN" --json snapshot ls | python3 -c 'import json,sys; [print("snapshot", s["name"]) for s in json.load(sys.stdin)]'
	"$CAIRN" --json lease ls | python3 -c 'import json,sys; [print("lease", l.get("id")) for l in json.load(sys.stdin)]'
}

# chain ID: the ids from ID down to its base, one a line.
chain() {
	local r=$1
	while [ -n "$r" ] && [ "$r" != None ]; do
		echo "$r"
		r=$("$CAIRN" --json info "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["parent"])')
	done
}

# field ID EXPR: a field of `cairn --json info ID` (j is the document).
field() {
	"$CAIRN" --json info "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}

# ---------------------------------------------------------------------------------------------
# the comparison tool itself

@test "treecmp: equal trees pass; a changed mode, content, xattr or hardlink grouping fails" {
	local a=$T/a b=$T/b
	mkdir -p "$a/d"
	echo one >"$a/f"
	echo two >"$a/d/g"
	ln "$a/f" "$a/d/h"
	ln -s /etc/passwd "$a/out" # never followed out of the tree
	setfattr -n user.x -v 1 "$a/f"
	setfattr -n trusted.y -v 2 "$a/d"
	chmod 4755 "$a/d/g"
	cp -a "$a" "$b"
	run treecmp "$a" "$b"
	[ "$status" -eq 0 ]
	expect_output "6 entries equal"

	chmod 2755 "$b/d/g"
	run treecmp "$a" "$b"
	[ "$status" -eq 1 ]
	expect_output "d/g: mode: 4755 != 2755"
	chmod 4755 "$b/d/g"

	echo ONE >"$b/f" # same size, other bytes
	run treecmp "$a" "$b"
	[ "$status" -eq 1 ]
	expect_output "f: sha256:"
	expect_no_output "f: size:"
	echo one >"$b/f"

	setfattr -n trusted.y -v 3 "$b/d"
	run treecmp "$a" "$b"
	[ "$status" -eq 1 ]
	expect_output "d: xattr trusted.y: '2' != '3'"
	setfattr -n trusted.y -v 2 "$b/d"

	rm "$b/d/h" # same content, but no longer the same inode as f
	cp -a "$b/f" "$b/d/h"
	run treecmp "$a" "$b"
	[ "$status" -eq 1 ]
	expect_output "d/h: hardlinks: {d/h, f} != {d/h}"

	run treecmp "$a" "$T/missing"
	[ "$status" -eq 2 ]
}

# ---------------------------------------------------------------------------------------------
# OCI layouts made by umoci

@test "import of a umoci image: the mounted tree equals umoci unpack, tag by tag" {
	need_umoci
	local tag
	for tag in base t t2; do
		import "$IMG:$tag"
		same_as_mounted "$id" "$REFT/$tag/rootfs"
	done
	# what same_as_mounted leaves out: the trusted.* xattr is dropped, and only that one
	import "$IMG:base"
	run_cairn 0 mount --ro "$id" "$MNT"
	[ "$(getfattr --absolute-names --only-values -n trusted.cairn "$REFT/base/rootfs/dir" | od -An -tx1 | tr -d ' \n')" = 00ff01 ]
	run getfattr --absolute-names -n trusted.cairn "$MNT/dir"
	[ "$status" -ne 0 ]
	[ -n "$(getfattr --absolute-names --only-values -n security.capability "$MNT/dir/sub/f")" ]
	run_cairn 0 umount "$MNT"
}

@test "round trip: umoci image, cairn import, cairn export, umoci unpack gives the same tree" {
	need_umoci
	import "$IMG:t" --tag fixture
	run_cairn 0 export fixture -o "$T/out" --tag exported
	fix verify "$T/out"
	unpacks_to "$T/out:exported" "$REFT/t/rootfs"
	# the export is a valid layout with three layers, its config with three diff_ids
	[ "$(fix layers "$T/out" exported | wc -l)" -eq 3 ]
	# export into the same layout under a second tag keeps the first
	import "$IMG:base"
	run_cairn 0 export "$id" -o "$T/out" --tag base
	unpacks_to "$T/out:base" "$REFT/base/rootfs"
	unpacks_to "$T/out:exported" "$REFT/t/rootfs"
}

# local_record TREE: a record made here (new, mount, cp -a TREE, umount, commit), no blob yet;
# $id is it.
local_record() {
	run_cairn 0 new --desc "copy of $1"
	local m=$output
	run_cairn 0 mount "$m" "$MNT"
	cp -a "$1/." "$MNT/"
	run_cairn 0 umount "$MNT"
	run_cairn 0 commit "$m"
	id=$output
}

# layer_media LAYOUT TAG: the set of the manifest's layer media types.
layer_media() {
	python3 -c 'import json,sys
L, tag = sys.argv[1:]
i = json.load(open(L + "/index.json"))
d = [m for m in i["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag][0]
m = json.load(open(L + "/blobs/sha256/" + d["digest"][7:]))
print(" ".join(sorted(set(l["mediaType"] for l in m["layers"]))))' "$1" "$2"
}

@test "export --compression gzip, gzip:6, zstd and none of a record without a blob" {
	need_umoci
	need skopeo
	local_record "$REFT/base/rootfs"
	# copying through the mount kept everything treecmp sees
	same_as_mounted "$id" "$REFT/base/rootfs"
	local c d magic blob
	for c in gzip gzip:6 zstd none; do
		# a fresh store each time: the first export gives the record its blob, kept after
		rm -rf "$STORE"
		local_record "$REFT/base/rootfs"
		d=${c/:/-}
		run_cairn 0 export "$id" -o "$T/$d" --tag t --compression "$c"
		fix verify "$T/$d"
		[ "$(fix layers "$T/$d" t | wc -l)" -eq 1 ]
		blob=$T/$d/blobs/sha256/$(fix layers "$T/$d" t | cut -d: -f2)
		magic=$(head -c 4 "$blob" | od -An -tx1 | tr -d ' \n')
		case $c in
		gzip:6)
			# one gzip member per 512 KiB of tar: more than one here
			[ "$(gzip -dc "$blob" | wc -c)" -gt 524288 ]
			[ "$(python3 -c 'import sys; print(open(sys.argv[1], "rb").read().count(bytes([0x1f, 0x8b, 8, 0, 0, 0, 0, 0])))' "$blob")" -ge 2 ]
			[ "$(layer_media "$T/$d" t)" = application/vnd.oci.image.layer.v1.tar+gzip ]
			;;
		gzip)
			[[ "$magic" == 1f8b* ]]
			[ "$(layer_media "$T/$c" t)" = application/vnd.oci.image.layer.v1.tar+gzip ]
			;;
		zstd)
			[ "$magic" = 28b52ffd ]
			[ "$(layer_media "$T/$c" t)" = application/vnd.oci.image.layer.v1.tar+zstd ]
			;;
		none)
			[ "$(head -c 262 "$blob" | tail -c 5)" = ustar ]
			[ "$(layer_media "$T/$c" t)" = application/vnd.oci.image.layer.v1.tar ]
			;;
		esac
	done
	unpacks_to "$T/gzip:t" "$REFT/base/rootfs" "${NO_TRUSTED[@]}"
	unpacks_to "$T/gzip-6:t" "$REFT/base/rootfs" "${NO_TRUSTED[@]}"
	unpacks_to "$T/none:t" "$REFT/base/rootfs" "${NO_TRUSTED[@]}"
	# umoci 0.4 cannot read zstd layers: skopeo recompresses them to gzip first
	skopeo copy -q --dest-compress-format gzip "oci:$T/zstd:t" "oci:$T/zstd-gz:t"
	unpacks_to "$T/zstd-gz:t" "$REFT/base/rootfs" "${NO_TRUSTED[@]}"
	# bad option values are usage errors, and nothing is written
	run_cairn 2 export "$id" -o "$T/bad" --compression lz4
	run_cairn 2 export "$id" -o "$T/bad" --format zip
	run_cairn 2 export "$id" -o "$T/bad" --source-date-epoch yesterday
	[ ! -e "$T/bad" ]
}

@test "export --source-date-epoch: the same tree in two stores exports to the same bytes" {
	need_umoci
	local s
	for s in one two; do
		export CAIRN_ROOT=$T/store-$s
		local_record "$REFT/base/rootfs"
		run_cairn 0 export "$id" -o "$T/$s" --tag t --source-date-epoch 0
		run_cairn 0 export "$id" -o "$T/$s.tar" --tag fixture:t --format docker-archive \
			--source-date-epoch 0
	done
	diff -r "$T/one" "$T/two"
	cmp "$T/one.tar" "$T/two.tar"
	unpacks_to "$T/one:t" "$REFT/base/rootfs" "${NO_TRUSTED[@]}"
	# every entry of the new layer has its mtime clamped to the epoch
	python3 -c 'import sys, tarfile
t = tarfile.open(sys.argv[1])
late = [m.name for m in t if m.mtime > 0]
assert not late, late' "$T/one/blobs/sha256/$(fix layers "$T/one" t | cut -d: -f2)"
}

@test "skopeo inspect accepts cairn's export and lists its layers" {
	need_umoci
	need skopeo
	import "$IMG:t"
	run_cairn 0 export "$id" -o "$T/out" --tag v1
	run skopeo inspect "oci:$T/out:v1"
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$(json_get '"\n".join(j["Layers"])')" = "$(fix layers "$T/out" v1)" ]
	[ "$(json_get 'j["Os"] + "/" + j["Architecture"]')" = linux/amd64 ]
	run skopeo inspect --config "oci:$T/out:v1"
	[ "$status" -eq 0 ]
	[ "$(json_get 'len(j["rootfs"]["diff_ids"])')" -eq 3 ]
}

@test "export of a record made with new, mount and commit" {
	need_umoci
	import "$IMG:base"
	local base=$id
	run_cairn 0 new --parent "$base"
	local m=$output
	run_cairn 0 mount "$m" "$MNT"
	echo made-here >"$MNT/hello"
	rm "$MNT/etc/hello"
	run_cairn 0 umount "$MNT"
	run_cairn 0 commit "$m"
	local top=$output
	run_cairn 0 export "$top" -o "$T/out" --tag t
	fix verify "$T/out"
	[ "$(fix layers "$T/out" t | wc -l)" -eq 2 ]
	cp -a "$REFT/base/rootfs" "$T/expect"
	echo made-here >"$T/expect/hello"
	rm "$T/expect/etc/hello"
	unpacks_to "$T/out:t" "$T/expect" "${NO_TRUSTED[@]}"
	same_as_mounted "$top" "$T/expect"
}

# ---------------------------------------------------------------------------------------------
# selecting the manifest

@test "a multi-platform index: linux/amd64 by default, --platform picks another, a missing one fails" {
	fix multiplatform "$T/mp"
	import "$T/mp"
	run_cairn 0 mount --ro "$id" "$MNT"
	[ "$(cat "$MNT/arch")" = amd64 ]
	[ -f "$MNT/etc/amd64" ]
	[ "$(readlink "$MNT/bin/sh")" = busybox ]
	run_cairn 0 umount "$MNT"
	local amd=$id
	import "$T/mp" --platform linux/arm64
	[ "$id" != "$amd" ]
	run_cairn 0 mount --ro "$id" "$MNT"
	[ "$(cat "$MNT/arch")" = arm64 ]
	[ ! -e "$MNT/etc/amd64" ]
	run_cairn 0 umount "$MNT"
	# both share the base layer's record
	[ "$(chain "$amd" | tail -1)" = "$(chain "$id" | tail -1)" ]
	run "$CAIRN" import "$T/mp" --platform linux/s390x
	[ "$status" -eq 1 ] || [ "$status" -eq 3 ]
	expect_output "linux/s390x"
	expect_output "linux/amd64"
	expect_output "linux/arm64"
}

@test "nested indexes: index.json, an index blob, another index blob, then the manifest" {
	fix nested "$T/n"
	import "$T/n:t"
	run_cairn 0 mount --ro "$id" "$MNT"
	[ "$(cat "$MNT/arch")" = amd64 ]
	run_cairn 0 umount "$MNT"
	import "$T/n:multi" --platform linux/arm64
	run_cairn 0 mount --ro "$id" "$MNT"
	[ "$(cat "$MNT/arch")" = arm64 ]
	run_cairn 0 umount "$MNT"
	import "$T/n:multi"
	run_cairn 0 mount --ro "$id" "$MNT"
	[ "$(cat "$MNT/arch")" = amd64 ]
	run_cairn 0 umount "$MNT"
	import "$T/n:other"
	run_cairn 0 mount --ro "$id" "$MNT"
	[ "$(cat "$MNT/other")" = other ]
	[ ! -e "$MNT/arch" ]
	run_cairn 0 umount "$MNT"
}

@test "the manifest is picked by org.opencontainers.image.ref.name; an unknown tag fails naming it" {
	need_umoci
	import "$IMG:base"
	[ "$(chain "$id" | wc -l)" -eq 1 ]
	import "$IMG:t"
	[ "$(chain "$id" | wc -l)" -eq 3 ]
	run "$CAIRN" import "$IMG:no-such-tag"
	[ "$status" -eq 1 ] || [ "$status" -eq 3 ]
	expect_output "no-such-tag"
}

# ---------------------------------------------------------------------------------------------
# sharing

@test "importing the same image twice creates nothing new" {
	need_umoci
	import "$IMG:t"
	local first=$id before
	before=$(state)
	import "$IMG:t"
	[ "$id" = "$first" ]
	[ "$(state)" = "$before" ]
	run_cairn 0 --json import "$IMG:t"
	[ "$(json_get 'j["id"]')" = "$first" ]
	[ "$(json_get 'j["new_records"]')" -eq 0 ]
	[ "$(json_get 'j["new_blobs"]')" -eq 0 ]
	[ "$(state)" = "$before" ]
}

@test "two images that share base layers share records and blobs" {
	need_umoci
	import "$IMG:t"
	local t=$id
	run "$CAIRN" --json ls
	local n_records
	n_records=$(json_get 'len(j)')
	import "$IMG:t2"
	# t2 is t plus one layer: its parent is t's top record, and one record is new
	[ "$(chain "$id" | sed -n 2p)" = "$t" ]
	run "$CAIRN" --json ls
	[ "$(json_get 'len(j)')" -eq $((n_records + 1)) ]
	# base is t's bottom layer: nothing new at all
	import "$IMG:base"
	[ "$id" = "$(chain "$t" | tail -1)" ]
	run "$CAIRN" --json ls
	[ "$(json_get 'len(j)')" -eq $((n_records + 1)) ]
	# every layer blob of t is stored once
	for l in $(fix layers "$IMG" t2); do
		"$CAIRN" content info "$l" >/dev/null
	done
}

@test "import is lazy; --extract extracts every layer at once" {
	need_umoci
	import "$IMG:t"
	local r
	for r in $(chain "$id"); do
		[ "$(field "$r" 'j["extracted"]')" = False ]
	done
	rm -rf "$STORE"
	import "$IMG:t" --extract
	[ "$(chain "$id" | wc -l)" -eq 3 ]
	for r in $(chain "$id"); do
		[ "$(field "$r" 'j["extracted"]')" = True ]
	done
	same_as_mounted "$id" "$REFT/t/rootfs"
}

@test "import --json prints one document: the id, the layers' records, blobs and diff ids" {
	need_umoci
	run_cairn 0 --json import "$IMG:t"
	local id
	id=$(json_get 'j["id"]')
	[ "$(json_get 'j["layers"][-1]')" = "$id" ]
	[ "$(json_get 'j["new_records"]')" -eq 3 ]
	[ "$(json_get '"\n".join(j["blobs"])')" = "$(fix layers "$IMG" t)" ]
	local diff_ids
	diff_ids=$(json_get '"\n".join(j["diff_ids"])')
	run_cairn 0 --json info "$id"
	[ "$(json_get 'j["diff_id"]')" = "$(tail -1 <<<"$diff_ids")" ]
	[ "$(json_get 'j["blob"]')" = "$(fix layers "$IMG" t | tail -1)" ]
}

# ---------------------------------------------------------------------------------------------
# docker archives

@test "docker archive (skopeo's docker-archive): import gives umoci's tree" {
	need_umoci
	need skopeo
	skopeo copy -q "oci:$IMG:t" "docker-archive:$T/img.tar:fixture:t"
	import "$T/img.tar"
	same_as_mounted "$id" "$REFT/t/rootfs"
}

@test "docker archive, legacy docker save form (<id>/layer.tar): import gives umoci's tree" {
	need_umoci
	fix docker-legacy "$IMG" t fixture "$T/legacy.tar"
	tar -tf "$T/legacy.tar" | grep -q '/layer.tar$'
	import "$T/legacy.tar" --tag legacy
	same_as_mounted legacy "$REFT/t/rootfs"
}

@test "docker archive, docker 25 form (an OCI layout inside the tar): import gives umoci's tree" {
	need_umoci
	fix docker-oci "$IMG" t fixture "$T/new.tar"
	tar -tf "$T/new.tar" | grep -qx oci-layout
	import "$T/new.tar"
	same_as_mounted "$id" "$REFT/t/rootfs"
	# the three archive forms and the layout hold the same layers: the same tree whichever came first
	fix docker-legacy "$IMG" t fixture "$T/legacy.tar"
	import "$T/legacy.tar"
	same_as_mounted "$id" "$REFT/t/rootfs"
}

@test "export --format docker-archive: skopeo reads it, and umoci unpacks skopeo's copy of it" {
	need_umoci
	need skopeo
	import "$IMG:t"
	run_cairn 0 export "$id" --format docker-archive -o "$T/out.tar" --tag fixture:t
	run skopeo inspect "docker-archive:$T/out.tar"
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$(json_get 'len(j["Layers"])')" -eq 3 ]
	skopeo copy -q "docker-archive:$T/out.tar" "oci:$T/back:t"
	unpacks_to "$T/back:t" "$REFT/t/rootfs"
	# and cairn reads its own archive back
	rm -rf "$STORE"
	import "$T/out.tar"
	same_as_mounted "$id" "$REFT/t/rootfs"
}

# ---------------------------------------------------------------------------------------------
# bad input: exit 1, the file and the problem named, nothing half-imported left behind

# bad_layout KIND PROBLEM-REGEX [TEXT]: corrupt a copy of the umoci layout (tag t) with KIND,
# import it into a store that already holds another image, and check the failure (exit 1, the
# file, the problem and TEXT named) and that the store holds what it held before.
bad_layout() {
	local kind=$1 problem=$2 text=${3:-} name before
	fix multiplatform "$T/other"
	import "$T/other"
	before=$(state)
	cp -a "$IMG" "$T/bad"
	name=$(fix corrupt "$kind" "$T/bad" t)
	run timeout 120 "$CAIRN" import "$T/bad:t"
	echo "$output"
	[ "$status" -eq 1 ]
	expect_output "${name##*/}"
	grep -qiE "$problem" <<<"$output" || { echo "no '$problem' in the message" >&2; return 1; }
	[ -z "$text" ] || expect_output "$text"
	[ "$(state)" = "$before" ]
	run_cairn 0 fsck
	[ -z "$(ls -A "$STORE/tmp" 2>/dev/null)" ]
	[ -z "$(ls -A "$STORE/ingest" 2>/dev/null)" ]
}

@test "bad input: no oci-layout file" {
	need_umoci
	bad_layout no-oci-layout "no such file|missing|not found|not an oci"
}

@test "bad input: a wrong imageLayoutVersion" {
	need_umoci
	bad_layout layout-version "version|2\.0\.0"
}

@test "bad input: a missing manifest" {
	need_umoci
	bad_layout missing-manifest "no such file|missing|not found"
}

@test "bad input: a missing layer blob" {
	need_umoci
	bad_layout missing-blob "no such file|missing|not found"
}

@test "bad input: a layer blob whose digest does not match (same size, valid gzip)" {
	need_umoci
	bad_layout digest-mismatch "digest"
}

@test "bad input: a config whose digest does not match (same size, valid JSON)" {
	need_umoci
	bad_layout config-digest-mismatch "digest"
}

@test "bad input: a blob whose size does not match its descriptor" {
	need_umoci
	bad_layout size-mismatch "size"
}

@test "bad input: sha256:../../x as a manifest digest in index.json" {
	need_umoci
	bad_layout bad-digest-index "invalid|digest" index.json
}

@test "bad input: a path as a layer digest in a manifest" {
	need_umoci
	bad_layout bad-digest-layer "invalid|digest"
}

@test "bad input: index.json that is not JSON" {
	need_umoci
	bad_layout index-not-json "json|parse|syntax|invalid"
}

@test "bad input: a manifest that is not JSON" {
	need_umoci
	bad_layout manifest-not-json "json|parse|syntax|invalid|manifest"
}

@test "bad input: a config whose diff_ids count differs from the layer count" {
	need_umoci
	bad_layout diff-ids "diff_id"
}

@test "bad input: a 1 GB manifest is refused without reading it" {
	need_umoci
	bad_layout huge-manifest "too large|too big|size|limit|exceed"
}

@test "bad input: a docker archive naming a layer it does not hold; a file that is no image" {
	need_umoci
	fix docker-legacy "$IMG" t fixture "$T/legacy.tar"
	local before victim
	before=$(state)
	victim=$(tar -tf "$T/legacy.tar" | grep '/layer.tar$' | tail -1)
	tar --delete -f "$T/legacy.tar" "$victim"
	run_cairn 1 import "$T/legacy.tar"
	expect_output "$victim"
	[ "$(state)" = "$before" ]
	head -c 10000 /dev/urandom >"$T/noise.tar"
	run_cairn 1 import "$T/noise.tar"
	expect_output "noise.tar"
	[ "$(state)" = "$before" ]
}
