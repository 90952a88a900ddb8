#!/usr/bin/env bats
# cairn snapshot ... and cairn umount, on both snapshotters.

load helpers

setup() {
	setup_store
	[ "$(id -u)" = 0 ] || skip "mounting needs root"
	MNT="$BATS_TEST_TMPDIR/mnt"
}

teardown() {
	umount -R "$MNT" 2>/dev/null || true
}

# each_driver FN: run FN once per snapshotter, each in its own store.
each_driver() {
	for drv in overlay native; do
		export CAIRN_ROOT="$BATS_TEST_TMPDIR/store-$drv"
		"$1" "$drv"
	done
}

lifecycle() {
	local s="--snapshotter $1"
	run_cairn 0 $s snapshot prepare base
	[ "$output" = base ]
	run_cairn 0 $s snapshot mount base "$MNT"
	echo one >"$MNT/file"
	mkdir "$MNT/dir"
	run_cairn 0 umount "$MNT"
	run_cairn 0 $s snapshot commit base-1 base
	run_cairn 0 $s snapshot prepare top base-1
	run_cairn 0 $s snapshot mount top "$MNT"
	[ "$(cat "$MNT/file")" = one ]
	echo two >"$MNT/file"
	rm -r "$MNT/dir"
	run_cairn 0 umount "$MNT"
	run_cairn 0 $s snapshot commit top-1 top
	run_cairn 0 $s snapshot view v top-1
	run_cairn 0 $s snapshot mount v "$MNT"
	[ "$(cat "$MNT/file")" = two ]
	[ ! -e "$MNT/dir" ]
	run touch "$MNT/new"
	[ "$status" -ne 0 ]
	run_cairn 0 umount "$MNT"
	# The lower layer is untouched by the upper's changes.
	run_cairn 0 $s snapshot view v0 base-1
	run_cairn 0 $s snapshot mount v0 "$MNT"
	[ "$(cat "$MNT/file")" = one ] && [ -d "$MNT/dir" ]
	run_cairn 0 umount "$MNT"
	run_cairn 0 $s snapshot ls --json
	[ "$(json_get 'sorted((s["name"], s["kind"], s["parent"]) for s in j)')" = \
		"[('base-1', 'committed', ''), ('top-1', 'committed', 'base-1'), ('v', 'view', 'top-1'), ('v0', 'view', 'base-1')]" ]
	run_cairn 0 $s snapshot rm v v0 top-1 base-1
	run_cairn 0 $s snapshot ls -q
	[ -z "$output" ]
}

@test "prepare, mount, write, commit, layer, view: the whole cycle on both drivers" {
	each_driver lifecycle
}

mounts_spec() {
	local s="--snapshotter $1"
	run_cairn 0 $s snapshot prepare a
	run_cairn 0 $s snapshot mounts a
	[ "$(json_get 'j[0]["type"]')" = bind ]
	[ "$(json_get '"rw" in j[0]["options"]')" = True ]
	run_cairn 0 $s snapshot commit a1 a
	run_cairn 0 $s snapshot view v a1
	run_cairn 0 $s snapshot mounts v
	[ "$(json_get '"ro" in j[0]["options"]')" = True ]
	run_cairn 1 $s snapshot mounts a1
	expect_output "a1"
}

@test "snapshot mounts prints the JSON spec: rw bind for a base, ro for a view" {
	each_driver mounts_spec
}

@test "overlay: a two-layer active snapshot is an overlay with lowerdir nearest parent first" {
	run_cairn 0 snapshot prepare a
	run_cairn 0 snapshot commit a1 a
	run_cairn 0 snapshot prepare b a1
	run_cairn 0 snapshot commit b1 b
	run_cairn 0 snapshot prepare c b1
	run_cairn 0 snapshot mounts c
	[ "$(json_get 'j[0]["type"]')" = overlay ]
	run json_get '[o for o in j[0]["options"] if o.startswith("lowerdir=")][0]'
	[[ "$output" == lowerdir=*/snapshots/2/fs:*/snapshots/1/fs ]]
}

bad_input() {
	local s="--snapshotter $1"
	run_cairn 3 $s snapshot rm nosuch
	expect_output "'nosuch'"
	run_cairn 3 $s snapshot prepare x nosuchparent
	expect_output "nosuchparent"
	run_cairn 0 $s snapshot prepare p
	run_cairn 1 $s snapshot prepare q p
	expect_output "'p'"
	run_cairn 0 $s snapshot commit p1 p
	run_cairn 0 $s snapshot prepare child p1
	run_cairn 1 $s snapshot rm p1
	expect_output "remove"
	expect_output "p1"
	run_cairn 3 $s snapshot commit p2 p
	run_cairn 1 $s snapshot commit child p1
	run_cairn 1 $s snapshot prepare child
	expect_output "child"
	for k in a/b .. ../x ""; do
		run_cairn 1 $s snapshot prepare "$k"
		expect_output "invalid key"
	done
	run_cairn 0 $s snapshot ls -q
	[ "$output" = "$(printf 'child\np1')" ]
}

@test "bad input: unknown key (3), removing a parent, committing twice, bad keys, non-committed parent" {
	each_driver bad_input
}

@test "usage of a committed snapshot counts its own layer only" {
	run_cairn 0 snapshot prepare a
	run_cairn 0 snapshot mount a "$MNT"
	head -c 1048576 /dev/urandom >"$MNT/big"
	run_cairn 0 umount "$MNT"
	run_cairn 0 snapshot commit a1 a
	run_cairn 0 snapshot prepare b a1
	run_cairn 0 snapshot usage --json b
	[ "$(json_get 'j["size"] < 65536')" = True ]
	run_cairn 0 snapshot usage --json a1
	[ "$(json_get 'j["size"] >= 1048576')" = True ]
}

@test "umount of something not mounted fails naming it" {
	mkdir -p "$MNT"
	run_cairn 1 umount "$MNT"
	expect_output "$MNT"
}
