#!/usr/bin/env bats
# Crash safety: every fault point of src/base/fault.h in turn. For each, a copy of a store holding
# committed state (imported blobs, extracted layers, a committed and a mutable record written
# through their mounts, tags) runs the operation that passes the point with CAIRN_FAULT set; the
# process must die there by SIGKILL. Then fsck must find the store clean, every record that was
# there before must be listed with the same tree (or, for the records the operation removes or
# consumes, be gone or intact), and the operation run again must succeed.

load helpers

# jget with the system python: a version manager's shim can take a second per start.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
jget() {
	"$PY" -c 'import json,sys; j=json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1" <<<"$output"
}

# The listed points, in list order.
listed_points() {
	sed -n 's/^[[:space:]]*X("\([a-z0-9.-]*\)",.*/\1/p' "$CAIRN_SRC/src/base/fault.h"
}

setup_file() {
	: "${CAIRN_SRC:=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}"
	export CAIRN_SRC
	[ "$(id -u)" = 0 ] || return 0
	setup_store
	export T="$BATS_FILE_TMPDIR"
	export CAIRN_ROOT="$T/template"
	local mnt="$T/mnt"
	mkdir -p "$T/l1/etc" "$T/l1/bin" "$T/l2/etc" "$T/l3/data" "$T/l4/data" "$mnt"
	# Random bytes: the blobs stay as large as the trees, so that half of a blob is read well
	# before its last file is written (extract.applying falls mid-apply).
	head -c 300000 /dev/urandom >"$T/l1/bin/tool"
	echo v1 >"$T/l1/etc/conf"
	echo gone >"$T/l1/etc/old"
	ln -s tool "$T/l1/bin/link"
	for i in 1 2 3 4 5 6; do head -c 200000 /dev/urandom >"$T/l2/etc/f$i"; done
	echo v2 >"$T/l2/etc/conf"
	: >"$T/l2/etc/.wh.old"
	for i in 1 2 3 4 5 6; do head -c 200000 /dev/urandom >"$T/l3/data/a$i"; done
	for i in 1 2 3 4 5 6; do head -c 200000 /dev/urandom >"$T/l4/data/b$i"; done
	for i in 1 2 3 4 5 6 7 8; do head -c 150000 /dev/urandom >"$T/l4/data/c$i"; done
	mkdir -p "$T/l5/opt"
	for i in 1 2 3 4 5 6; do head -c 200000 /dev/urandom >"$T/l5/opt/p$i"; done
	for l in l1 l2 l3 l4 l5; do tar -C "$T/$l" --numeric-owner -czf "$T/$l.tar.gz" .; done
	make_layout "$T/layout" v1 "$T/l1.tar.gz" "$T/l5.tar.gz"
	head -c 400000 /dev/urandom >"$T/extra.bin"

	local c="$CAIRN"
	b1=$($c content add "$T/l1.tar.gz") && b2=$($c content add "$T/l2.tar.gz") &&
		b3=$($c content add "$T/l3.tar.gz") && b4=$($c content add "$T/l4.tar.gz") || return 1
	r1=$($c import-blob "$b1") && r2=$($c import-blob --parent "$r1" "$b2") &&
		$c extract "$r2" >/dev/null && $c tag "$r2" img >/dev/null || return 1
	# r3 <- r4: lazy, nothing extracted (extract's points run on it)
	r3=$($c import-blob "$b3") && r4=$($c import-blob --parent "$r3" "$b4") || return 1
	m1=$($c new --parent img --desc built) && $c mount "$m1" "$mnt" >/dev/null || return 1
	echo built >"$mnt/etc/conf" && mkdir "$mnt/out" && head -c 100000 /dev/urandom >"$mnt/out/x"
	rm "$mnt/bin/link"
	$c umount "$mnt" >/dev/null && c1=$($c commit "$m1") && $c tag "$c1" built >/dev/null ||
		return 1
	m2=$($c new --desc work) && $c mount "$m2" "$mnt" >/dev/null || return 1
	mkdir -p "$mnt/w/deep" && echo scratch >"$mnt/w/deep/file" && ln -s deep "$mnt/w/ln"
	$c umount "$mnt" >/dev/null || return 1
	printf '%s\n' "$r1 $r2 $r3 $r4 $c1 $m2" >"$T/ids"
	printf '%s\n' "$b1 $b2 $b3 $b4" >"$T/blobs"
	# What each record holds, and what r4 holds once extracted (from a copy of the store).
	for id in $r1 $r2 $c1 $m2; do tree_sum "$id" >"$T/sum.$id" || return 1; done
	cp -a "$T/template" "$T/probe" && CAIRN_ROOT="$T/probe" $c extract "$r4" >/dev/null &&
		CAIRN_ROOT="$T/probe" tree_sum "$r4" >"$T/sum.$r4" &&
		CAIRN_ROOT="$T/probe" tree_sum "$r3" >"$T/sum.$r3" &&
		CAIRN_ROOT="$T/probe" $c import "$T/layout:v1" >/dev/null &&
		CAIRN_ROOT="$T/probe" tree_sum v1 >"$T/sum.v1" || return 1
	rm -rf "$T/probe"
}

setup() {
	setup_store
	[ "$(id -u)" = 0 ] || skip "mounting needs root"
	T="$BATS_FILE_TMPDIR"
	MNT="$BATS_TEST_TMPDIR/mnt"
	read -r R1 R2 R3 R4 C1 M2 <"$T/ids"
	read -r B1 B2 B3 B4 <"$T/blobs"
}

teardown() {
	umount -R "$BATS_TEST_TMPDIR/mnt" 2>/dev/null || true
	umount -R "$BATS_FILE_TMPDIR/mnt" 2>/dev/null || true
}

# The tree of record $1 as one checksum: its layer directories (from its read-only mount spec,
# which makes nothing) in order, each with paths, types, modes, owners, link targets and file
# contents. Cheaper than mounting, and stricter: a change in any layer shows. Fails with cairn's
# exit status (3: no such record).
tree_sum() {
	local spec dirs d i=0
	spec=$("$CAIRN" --json mounts --ro "$1") || return
	dirs=$(grep -oE '(lowerdir|upperdir)=[^"]*|"source": *"/[^"]*"' <<<"$spec" |
		sed -E 's/^(lowerdir|upperdir)=//; s/^"source": *"//; s/"$//' | tr ':' ' ')
	[ -n "$dirs" ] || { echo "no layer directories in: $spec" >&2; return 1; }
	for d in $dirs; do
		i=$((i + 1))
		(cd "$d" && find . -mindepth 1 -printf "$i %p %y %m %U %G %l\n" &&
			find . -type f -exec sha256sum {} + | sed "s/^/$i /") || return 1
	done | sort | sha256sum
	[ "${PIPESTATUS[0]}" -eq 0 ]
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

# fresh_store: a copy of the template as this test's store.
fresh_store() {
	rm -rf "$STORE"
	cp -a "$T/template" "$STORE"
}

# crash POINT CMD...: run cairn CMD with the fault at POINT; it must die there by SIGKILL.
crash() {
	local point=$1
	shift
	run env CAIRN_FAULT="$point" "$CAIRN" "$@"
	if [ "$status" -ne 137 ]; then
		echo "fault point '$point': cairn $* exited $status, not killed at the point" >&2
		echo "output: $output" >&2
		return 1
	fi
}

# fsck_clean WHEN: fsck must report nothing.
fsck_clean() {
	run "$CAIRN" fsck
	if [ "$status" -ne 0 ]; then
		echo "fsck after $1: exit $status" >&2
		echo "$output" >&2
		return 1
	fi
}

# intact ID [MAY_GO]: record ID is listed with its tree as before (MAY_GO: or it is gone).
intact() {
	local got st=0
	got=$(tree_sum "$1" 2>&1) || st=$?
	if [ "$st" -eq 3 ] && [ -n "${2:-}" ]; then
		return 0
	fi
	if [ "$st" -ne 0 ]; then
		echo "record $1 lost after the crash at '$POINT' (exit $st): $got" >&2
		return 1
	fi
	if [ "$(cat "$T/sum.$1")" != "$got" ]; then
		echo "record $1 changed after the crash at '$POINT'" >&2
		return 1
	fi
}

# check_all: every record of the template is listed, unless $MAY_GO names it (the operation may
# remove it); c1's tree (its layer directories are c1's, r2's and r1's) and m2's are as before. A
# mount spec of r3 or r4 (lazy) would extract them: the extract test checks their trees after
# its retry.
check_all() {
	local id
	run "$CAIRN" --json ls
	[ "$status" -eq 0 ] || { echo "ls after the crash at '$POINT': $output" >&2; return 1; }
	for id in $R1 $R2 $C1 $M2 $R3 $R4; do
		[[ "$output" == *"\"$id\""* ]] || [[ " $MAY_GO " == *" $id "* ]] || {
			echo "record $id lost after the crash at '$POINT'" >&2
			return 1
		}
	done
	local may=""
	[[ " $MAY_GO " == *" $M2 "* ]] && may=1
	intact "$C1" && intact "$M2" $may
}

# run_points PREFIX OP: for each listed point starting with PREFIX, a fresh store, OP crash
# POINT (a function that runs the operation with crash, then again without), and the checks.
run_points() {
	local prefix=$1 op=$2 n=0
	for POINT in $(listed_points); do
		[[ "$POINT" == "$prefix"* ]] || continue
		n=$((n + 1))
		fresh_store
		MAY_GO=""
		"$op" crash || return 1
		fsck_clean "the crash at '$POINT'" || return 1
		check_all || return 1
		"$op" retry || { echo "retry after the crash at '$POINT' failed" >&2; return 1; }
		fsck_clean "the retry after '$POINT'" || return 1
	done
	[ "$n" -gt 0 ] || { echo "no listed point starts with '$prefix'" >&2; return 1; }
}

@test "every fault_point() in the tree is listed in base/fault.h, once, and tested here" {
	local calls listed
	calls=$(grep -rhoE 'fault_point\("[^"]*"\)' "$CAIRN_SRC/src" | sed 's/fault_point("\(.*\)")/\1/' | sort -u)
	listed=$(listed_points | sort)
	[ -n "$listed" ]
	[ "$(listed_points | sort -u)" = "$listed" ] || { echo "a point is listed twice" >&2; return 1; }
	diff <(echo "$calls") <(echo "$listed") || {
		echo "fault_point() calls (<) and FAULT_POINTS (>) differ" >&2
		return 1
	}
	# Each listed point belongs to a group a test below runs.
	local p
	for p in $listed; do
		case "$p" in
		content.* | import.* | extract.* | commit.* | remove.* | prune.* | gc.* | \
			image.import.* | snapshot.prepare.* | snapshot.commit.* | snapshot.remove.*) ;;
		*)
			echo "fault point '$p' has no crash test in tests/cli/crash.bats" >&2
			return 1
			;;
		esac
	done
}

@test "a CAIRN_FAULT naming no listed point aborts instead of passing silently" {
	fresh_store
	run env CAIRN_FAULT=no.such-point "$CAIRN" content add "$T/extra.bin"
	[ "$status" -eq 134 ]
	expect_output "no.such-point"
}

op_content() {
	if [ "$1" = crash ]; then
		crash "$POINT" content add "$T/extra.bin"
		return
	fi
	run_cairn 0 content add "$T/extra.bin"
	[ "$output" = "sha256:$(sha256sum "$T/extra.bin" | cut -d' ' -f1)" ]
	"$CAIRN" content cat "$output" | cmp - "$T/extra.bin"
}

@test "crash at each content point: the blob is all there or not at all" {
	run_points content. op_content
}

op_import() {
	if [ "$1" = crash ]; then
		crash "$POINT" import-blob --parent "$R2" "$B3"
		return
	fi
	run_cairn 0 import-blob --parent "$R2" "$B3"
	local id=$output
	run_cairn 0 --json info "$id"
	[ "$(jget 'j["retain"]')" = True ]
	run_cairn 0 extract "$id"
}

@test "crash at each import point: the record is there or not, and import again works" {
	run_points import. op_import
}

op_extract() {
	if [ "$1" = crash ]; then
		crash "$POINT" extract "$R4"
		return
	fi
	run_cairn 0 extract "$R4"
	intact "$R4" && intact "$R3"
}

@test "crash at each extract point: layers are extracted whole or not, and extract again works" {
	run_points extract. op_extract
}

op_commit() {
	if [ "$1" = crash ]; then
		crash "$POINT" commit "$M2"
		MAY_GO=$M2
		return
	fi
	# The mutable is still there (retry the commit), or it was consumed: then its data lives
	# on in exactly one immutable record with its description, retained.
	local id
	if "$CAIRN" info "$M2" >/dev/null 2>&1; then
		run_cairn 0 commit "$M2"
		id=$output
	else
		run_cairn 0 --json ls
		id=$(jget '" ".join(r["id"] for r in j if r["description"] == "work")')
	fi
	[ -n "$id" ] && [[ "$id" != *" "* ]] || { echo "records with the data of $M2: '$id'" >&2; return 1; }
	run_cairn 0 --json info "$id"
	[ "$(jget 'j["kind"]')" = immutable ] && [ "$(jget 'j["retain"]')" = True ]
	[ "$(tree_sum "$id")" = "$(cat "$T/sum.$M2")" ]
}

@test "crash at each commit point: the mutable or its committed record holds the data" {
	run_points commit. op_commit
}

@test "crash at each snapshot commit point (during cairn commit)" {
	run_points snapshot.commit. op_commit
}

op_new() {
	if [ "$1" = crash ]; then
		crash "$POINT" new --parent built --desc child
		return
	fi
	run_cairn 0 new --parent built --desc child
	run_cairn 0 --json info "$output"
	[ "$(jget 'j["parent"]')" = "$C1" ]
}

@test "crash at each snapshot prepare point (during cairn new)" {
	run_points snapshot.prepare. op_new
}

op_rm() {
	if [ "$1" = crash ]; then
		crash "$POINT" rm "$M2"
		MAY_GO=$M2
		return
	fi
	run "$CAIRN" rm "$M2"
	[ "$status" -eq 0 ] || [ "$status" -eq 3 ]
	run_cairn 3 info "$M2"
}

@test "crash at each removal point (during cairn rm)" {
	run_points remove. op_rm
	run_points snapshot.remove. op_rm
}

op_prune() {
	if [ "$1" = crash ]; then
		# untagged, unused: m2, r4, then r3 (r1, r2 and c1 are tagged or hold a tag)
		crash "$POINT" prune
		MAY_GO="$M2 $R3 $R4"
		return
	fi
	run_cairn 0 prune
	run_cairn 3 info "$M2"
	run_cairn 3 info "$R4"
	run_cairn 3 info "$R3"
}

@test "crash at each prune point: tagged records stay intact, prune again finishes" {
	run_points prune. op_prune
}

op_gc() {
	if [ "$1" = crash ]; then
		# garbage: two blobs nothing references, two snapshots nothing holds
		run_cairn 0 content add "$T/extra.bin"
		run_cairn 0 content add "$T/l1/etc/conf"
		run_cairn 0 snapshot prepare junk1
		run_cairn 0 snapshot prepare junk2
		crash "$POINT" gc
		return
	fi
	run_cairn 0 gc
	run_cairn 3 content info "sha256:$(sha256sum "$T/extra.bin" | cut -d' ' -f1)"
	run_cairn 0 snapshot ls
	expect_no_output junk
	local b
	for b in $B1 $B2 $B3 $B4; do run_cairn 0 content info "$b"; done
}

@test "crash at each gc point: nothing reachable goes, gc again finishes" {
	run_points gc. op_gc
}

op_image() {
	if [ "$1" = crash ]; then
		crash "$POINT" import "$T/layout:v1"
		return
	fi
	run_cairn 0 import "$T/layout:v1"
	[ "$(tree_sum v1)" = "$(cat "$T/sum.v1")" ]
}

@test "crash at each image import point: import again gives the image" {
	run_points image.import. op_image
}
