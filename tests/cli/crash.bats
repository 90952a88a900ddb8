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

# db SQL: the first column of the first row of SQL run on the store's database.
db() {
	"$PY" -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' \
		"$STORE/meta.db" "$1"
}

# SUM[ID]: the last sums_of()'s line for record ID.
declare -gA SUM

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
	local l pids=()
	for l in l1 l2 l3 l4 l5; do
		tar -C "$T/$l" --numeric-owner -czf "$T/$l.tar.gz" . &
		pids+=($!)
	done
	for l in "${pids[@]}"; do wait "$l" || return 1; done
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
	# At once, on three stores: what each record holds; what r4, r3 and the image hold once
	# extracted (from a copy of the store); and the gc points' store, the template plus garbage
	# (two blobs nothing references, two snapshots nothing holds).
	local p="$T/probe" g="$T/template-gc" k
	cp -a "$T/template" "$p" && cp -a "$T/template" "$g" || return 1
	pids=()
	save_sums $r1 $r2 $c1 $m2 >"$T/setup.0" 2>&1 &
	pids+=($!)
	(
		export CAIRN_ROOT="$p"
		$c extract "$r4" && $c import "$T/layout:v1" && save_sums $r4 $r3 v1
	) >"$T/setup.1" 2>&1 &
	pids+=($!)
	(
		export CAIRN_ROOT="$g"
		$c content add "$T/extra.bin" && $c content add "$T/l1/etc/conf" &&
			$c snapshot prepare junk1 && $c snapshot prepare junk2
	) >"$T/setup.2" 2>&1 &
	pids+=($!)
	for k in 0 1 2; do wait "${pids[$k]}" || { cat "$T/setup.$k" >&2; return 1; }; done
	rm -rf "$p"
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

# sums_of ID...: the tree of each record as one checksum into SUM[ID] (tests/cli/treesum.py: its
# layer directories from its read-only mount spec, which makes nothing, in order, each with
# paths, types, modes, owners, link targets, device numbers and file contents; cheaper than
# mounting, and stricter: a change in any layer shows), or "exit N: MESSAGE" when cairn failed
# (3: no such record). One process for all of them.
sums_of() {
	local out id rest
	out=$("$PY" "$CAIRN_SRC/tests/cli/treesum.py" "$CAIRN" "$@") || return 1
	SUM=()
	while read -r id rest; do SUM[$id]=$rest; done <<<"$out"
}

# save_sums ID...: what each record holds now, into $T/sum.ID.
save_sums() {
	local id
	sums_of "$@" || return 1
	for id; do
		[[ "${SUM[$id]}" != exit* ]] || { echo "record $id: ${SUM[$id]}" >&2; return 1; }
		echo "${SUM[$id]}" >"$T/sum.$id"
	done
}

# fresh_store: a copy of the template ($TEMPLATE: another one) as this test's store.
fresh_store() {
	rm -rf "$STORE"
	cp -a "$T/${TEMPLATE:-template}" "$STORE"
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

# intact ID...: each record ID has its tree as before (one that $MAY_GO names: or it is gone).
intact() {
	local id got
	sums_of "$@" || return 1
	for id; do
		got=${SUM[$id]}
		if [[ "$got" == "exit 3:"* ]] && [[ " $MAY_GO " == *" $id "* ]]; then
			continue
		fi
		if [[ "$got" == exit* ]]; then
			echo "record $id lost after the crash at '$POINT' ($got)" >&2
			return 1
		fi
		if [ "$(<"$T/sum.$id")" != "$got" ]; then
			echo "record $id changed after the crash at '$POINT'" >&2
			return 1
		fi
	done
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
	intact "$C1" "$M2"
}

# one_point OP: on a fresh store ($STORE), OP crash (a function that runs the operation with
# crash at $POINT), the checks, OP retry (the operation again, and its result checked), fsck.
# Every step and every check in an OP is chained: a failure anywhere fails the point.
one_point() {
	local op=$1
	fresh_store || return 1
	MAY_GO=""
	"$op" crash || return 1
	fsck_clean "the crash at '$POINT'" || return 1
	check_all || return 1
	"$op" retry || { echo "retry after the crash at '$POINT' failed" >&2; return 1; }
	fsck_clean "the retry after '$POINT'" || return 1
}

# run_points PREFIX OP: one_point OP for each listed point starting with PREFIX, each on a store
# of its own, $CAIRN_CRASH_JOBS (default 2) at a time: most of the time goes to starting
# processes (a sanitized cairn takes a quarter of a second to start), which overlaps well.
# Fails with the output of every point that failed.
run_points() {
	local prefix=$1 op=$2 n=0 k failed=0 d="$BATS_TEST_TMPDIR/points"
	local jobs=${CAIRN_CRASH_JOBS:-2}
	mkdir -p "$d"
	for POINT in $(listed_points); do
		[[ "$POINT" == "$prefix"* ]] || continue
		n=$((n + 1))
		while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
		(
			export STORE="$d/store.$n" CAIRN_ROOT="$d/store.$n"
			echo "$POINT" >"$d/point.$n"
			if one_point "$op" >"$d/log.$n" 2>&1; then echo 0; else echo 1; fi >"$d/rc.$n"
			rm -rf "$STORE"
		) &
	done
	wait
	[ "$n" -gt 0 ] || { echo "no listed point starts with '$prefix'" >&2; return 1; }
	for ((k = 1; k <= n; k++)); do
		[ "$(cat "$d/rc.$k" 2>/dev/null)" = 0 ] && continue
		failed=1
		echo "--- fault point '$(cat "$d/point.$k")':" >&2
		cat "$d/log.$k" >&2
	done
	return "$failed"
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
		content.* | import.* | extract.* | recover.* | commit.* | remove.* | prune.* | gc.* | \
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
	run_cairn 0 content add "$T/extra.bin" &&
		[ "$output" = "sha256:$(sha256sum "$T/extra.bin" | cut -d' ' -f1)" ] &&
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
	run_cairn 0 import-blob --parent "$R2" "$B3" || return 1
	local id=$output
	run_cairn 0 --json info "$id" && expect_output '"retain": true,' &&
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
	run_cairn 0 extract "$R4" && intact "$R4" "$R3"
}

@test "crash at each extract point: layers are extracted whole or not, and extract again works" {
	run_points extract. op_extract
}

# Layers extracted in boot X (their files possibly still in the page cache only), then the first
# process of boot Y extracts them again from their blobs: killed after the first one.
op_recover() {
	if [ "$1" = crash ]; then
		CAIRN_BOOT_ID=aaaaaaaa-0000-4000-8000-00000000000a run_cairn 0 extract "$R4" || return 1
		export CAIRN_BOOT_ID=bbbbbbbb-0000-4000-8000-00000000000b
		crash "$POINT" ls
		return
	fi
	run_cairn 0 ls && intact "$R4" "$R3"
}

@test "crash at each recovery point: a layer extracted before a reboot is extracted again" {
	run_points recover. op_recover
}

@test "after a reboot the first open extracts again the layers it may have torn" {
	fresh_store
	CAIRN_BOOT_ID=aaaaaaaa-0000-4000-8000-00000000000a run_cairn 0 extract "$R4"
	# Power lost before writeback: the layer's files are torn.
	local dir
	dir=$(db "SELECT s.id FROM records r JOIN snapshots s ON s.name = r.snapshot AND
		s.snapshotter = r.snapshotter WHERE r.id = '$R3'")
	[ -n "$dir" ] && [ "$(db "SELECT count(*) FROM unsynced")" = 2 ]
	: >"$STORE/snapshots/$dir/fs/data/a1"
	echo stray >"$STORE/snapshots/$dir/fs/stray"
	# The same boot trusts its page cache (nothing redone, the damage done here shows) ...
	CAIRN_BOOT_ID=aaaaaaaa-0000-4000-8000-00000000000a run_cairn 0 ls
	[ ! -s "$STORE/snapshots/$dir/fs/data/a1" ]
	# ... the next boot does not: both layers are extracted again, once.
	CAIRN_BOOT_ID=bbbbbbbb-0000-4000-8000-00000000000b run_cairn 0 ls
	[ -s "$STORE/snapshots/$dir/fs/data/a1" ] && [ ! -e "$STORE/snapshots/$dir/fs/stray" ]
	[ "$(db "SELECT count(*) FROM unsynced")" = 0 ]
	intact "$R4" "$R3" "$R2" "$R1"
	fsck_clean "the recovery"
}

op_commit() {
	if [ "$1" = crash ]; then
		crash "$POINT" commit "$M2" || return 1
		MAY_GO=$M2
		return
	fi
	# The mutable is still there (retry the commit), or it was consumed: then its data lives
	# on in exactly one immutable record with its description, retained.
	local id
	run "$CAIRN" commit "$M2"
	if [ "$status" -eq 0 ]; then
		id=$output
	elif [ "$status" -eq 3 ]; then
		run_cairn 0 --json ls || return 1
		id=$(jget '" ".join(r["id"] for r in j if r["description"] == "work")') || return 1
	else
		echo "cairn commit $M2: exit $status: $output" >&2
		return 1
	fi
	[ -n "$id" ] && [[ "$id" != *" "* ]] || { echo "records with the data of $M2: '$id'" >&2; return 1; }
	run_cairn 0 --json info "$id" && expect_output '"kind": "immutable",' &&
		expect_output '"retain": true,' && sums_of "$id" &&
		[ "${SUM[$id]}" = "$(<"$T/sum.$M2")" ]
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
	run_cairn 0 new --parent built --desc child && run_cairn 0 --json info "$output" &&
		expect_output "\"parent\": \"$C1\","
}

@test "crash at each snapshot prepare point (during cairn new)" {
	run_points snapshot.prepare. op_new
}

op_rm() {
	if [ "$1" = crash ]; then
		crash "$POINT" rm "$M2" || return 1
		MAY_GO=$M2
		return
	fi
	run "$CAIRN" rm "$M2"
	{ [ "$status" -eq 0 ] || [ "$status" -eq 3 ]; } && run_cairn 3 info "$M2"
}

@test "crash at each removal point (during cairn rm)" {
	run_points remove. op_rm
	run_points snapshot.remove. op_rm
}

op_prune() {
	if [ "$1" = crash ]; then
		# untagged, unused: m2, r4, then r3 (r1, r2 and c1 are tagged or hold a tag)
		crash "$POINT" prune || return 1
		MAY_GO="$M2 $R3 $R4"
		return
	fi
	run_cairn 0 prune && run_cairn 0 --json ls && expect_no_output "\"$M2\"" &&
		expect_no_output "\"$R4\"" && expect_no_output "\"$R3\"" &&
		expect_output "\"$C1\""
}

@test "crash at each prune point: tagged records stay intact, prune again finishes" {
	run_points prune. op_prune
}

op_gc() {
	if [ "$1" = crash ]; then
		# on template-gc: two blobs nothing references, two snapshots nothing holds
		crash "$POINT" gc
		return
	fi
	run_cairn 0 gc && run_cairn 0 snapshot ls && expect_no_output junk &&
		run_cairn 0 content ls || return 1
	expect_no_output "sha256:$(sha256sum "$T/extra.bin" | cut -d' ' -f1)" &&
		expect_no_output "sha256:$(sha256sum "$T/l1/etc/conf" | cut -d' ' -f1)" || return 1
	local b
	for b in $B1 $B2 $B3 $B4; do expect_output "$b " || return 1; done
}

@test "crash at each gc point: nothing reachable goes, gc again finishes" {
	TEMPLATE=template-gc run_points gc. op_gc
}

op_image() {
	if [ "$1" = crash ]; then
		crash "$POINT" import "$T/layout:v1"
		return
	fi
	run_cairn 0 import "$T/layout:v1" && intact v1
}

@test "crash at each image import point: import again gives the image" {
	run_points image.import. op_image
}
