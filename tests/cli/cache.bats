#!/usr/bin/env bats
# The cache commands: new, commit, mount, umount, mounts, ls, info, rm, tag, untag, du, prune.

load helpers

setup() {
	setup_store
	[ "$(id -u)" = 0 ] || skip "mounting needs root"
	MNT="$BATS_TEST_TMPDIR/mnt"
}

teardown() {
	umount -R "$MNT" 2>/dev/null || true
}

# build_base DRIVER: a committed record holding /file, tagged "base"; sets $BASE.
build_base() {
	run_cairn 0 --snapshotter "$1" new --desc base
	local m=$output
	run_cairn 0 --snapshotter "$1" mount "$m" "$MNT"
	echo one >"$MNT/file"
	run_cairn 0 --snapshotter "$1" umount "$MNT"
	run_cairn 0 --snapshotter "$1" commit "$m"
	BASE=$output
	[ "$BASE" != "$m" ]
	run_cairn 0 --snapshotter "$1" tag "$BASE" base
}

cycle() {
	local s="--snapshotter $1"
	build_base "$1"
	run_cairn 0 $s new --parent base --desc top
	local top=$output
	run_cairn 0 $s mount "$top" "$MNT"
	[ "$(cat "$MNT/file")" = one ]
	echo two >"$MNT/file"
	run_cairn 0 $s umount "$MNT"
	run_cairn 0 $s commit "$top"
	local topc=$output
	run_cairn 0 $s mount "$topc" "$MNT"
	[ "$(cat "$MNT/file")" = two ]
	run touch "$MNT/x"
	[ "$status" -ne 0 ]
	run_cairn 0 $s umount "$MNT"
	run_cairn 0 $s mount base "$MNT"
	[ "$(cat "$MNT/file")" = one ]
	run_cairn 0 $s umount "$MNT"
	run_cairn 0 $s ls --json
	[ "$(json_get 'len(j)')" = 2 ]
	[ "$(json_get 'sorted(r["kind"] for r in j)')" = "['immutable', 'immutable']" ]
	[ "$(json_get '[r["parent"] for r in j if r["id"] == "'"$topc"'"][0]')" = "$BASE" ]
	[ "$(json_get '[r["tags"] for r in j if r["id"] == "'"$BASE"'"][0]')" = "['base']" ]
}

@test "new, mount, write, commit, layer on top, mount read-only: both drivers" {
	for d in overlay native; do
		export CAIRN_ROOT="$BATS_TEST_TMPDIR/store-$d"
		cycle $d
	done
}

@test "ls --json and info --json carry every field of the contract" {
	build_base overlay
	run_cairn 0 info --json base
	for k in id parent kind in_use size created_at last_used usage_count description blob \
		diff_id chain_id blob_chain_id media_type extracted tags; do
		[ "$(json_get "'$k' in j")" = True ]
	done
	[ "$(json_get 'j["description"]')" = base ]
	run_cairn 0 info "${BASE:0:8}"
	expect_output "$BASE"
}

@test "a mount holds its record: in use, not removable, not pruned, until umount" {
	build_base overlay
	run_cairn 0 untag base
	run_cairn 0 mount "$BASE" "$MNT"
	run_cairn 0 info --json "$BASE"
	[ "$(json_get 'j["in_use"]')" = True ]
	run_cairn 1 rm "$BASE"
	expect_output "in use"
	expect_output "$MNT"
	run_cairn 0 prune --all
	run_cairn 0 ls -q
	[ "$output" = "$BASE" ]
	run_cairn 0 umount "$MNT"
	run_cairn 0 prune
	run_cairn 0 ls -q
	[ -z "$output" ]
}

@test "mounts prints a JSON spec; --ro the read-only conversion" {
	run_cairn 0 new
	local m=$output
	run_cairn 0 mounts "$m"
	[ "$(json_get 'j[0]["type"]')" = bind ]
	run_cairn 0 mounts --ro "$m"
	[ "$(json_get '"ro" in j[0]["options"] and "rw" not in j[0]["options"]')" = True ]
}

@test "tags resolve like ids; a unique prefix works, an ambiguous or missing one does not" {
	build_base overlay
	run_cairn 0 info -q base
	run_cairn 3 info nosuchtag
	expect_output "'nosuchtag'"
	run_cairn 3 untag nosuchtag
	run_cairn 0 untag base
	run_cairn 3 info base
	run_cairn 1 tag "$BASE" .bad
	expect_output ".bad"
}

@test "plain prune keeps tagged records and their parents; --all takes them" {
	build_base overlay
	run_cairn 0 new --parent base --desc scratch
	run_cairn 0 prune --json
	[ "$(json_get 'len(j["removed"])')" = 1 ]
	[ "$(json_get 'j["removed"][0]["description"]')" = scratch ]
	run_cairn 0 prune
	expect_output "pruned 0 records"
	run_cairn 0 prune --all
	run_cairn 0 ls -q
	[ -z "$output" ]
}

@test "du reports per-record sizes and totals" {
	build_base overlay
	run_cairn 0 new --desc big
	local m=$output
	run_cairn 0 mount "$m" "$MNT"
	head -c 2097152 /dev/urandom >"$MNT/big"
	run_cairn 0 umount "$MNT"
	run_cairn 0 du --json
	[ "$(json_get 'len(j["records"])')" = 2 ]
	[ "$(json_get 'j["total"] >= 2097152')" = True ]
	[ "$(json_get 'j["reclaimable"] >= 2097152')" = True ]
	[ "$(json_get 'all(k in j["records"][0] for k in ("id","size","in_use","shared","reclaimable","kind","parent","description","last_used","usage_count"))')" = True ]
	run_cairn 0 du --filter description=big --json
	[ "$(json_get 'len(j["records"])')" = 1 ]
	run_cairn 0 du -v
	expect_output "reclaimable"
}

# du_matches: `cairn --json du` total is within 2% of `du -sxB1 $STORE`, and its parts add up.
du_matches() {
	sync
	run_cairn 0 --json du
	local ours=$(json_get 'j["total"]')
	[ "$(json_get 'sum(j["store"].values()) == j["total"]')" = True ]
	local theirs=$(du -sxB1 "$STORE" | cut -f1)
	echo "cairn du: $ours, du -sx: $theirs" >&2
	python3 -c 'import sys; a, b = int(sys.argv[1]), int(sys.argv[2]); sys.exit(abs(a - b) > 0.02 * b)' "$ours" "$theirs"
}

@test "du: the total counts everything under the root, within 2% of du -sx" {
	# content, an extracted layer, a committed record, a mutable with data, a mounted mutable
	local src="$BATS_TEST_TMPDIR/src"
	mkdir -p "$src/d"
	head -c 3000000 /dev/urandom >"$src/d/big"
	echo small >"$src/small"
	ln "$src/d/big" "$src/hard"
	tar -C "$src" -czf "$BATS_TEST_TMPDIR/l.tar.gz" .
	run_cairn 0 content add "$BATS_TEST_TMPDIR/l.tar.gz"
	run_cairn 0 import-blob "$output"
	local lay=$output
	run_cairn 0 extract "$lay"
	build_base overlay
	filled data 2000000
	run_cairn 0 new --parent "$lay" --desc work
	local w=$output
	run_cairn 0 mount "$w" "$MNT"
	head -c 1000000 /dev/urandom >"$MNT/more"
	du_matches
	run_cairn 0 --json du
	[ "$(json_get 'j["store"]["blobs"] >= 3000000')" = True ]
	[ "$(json_get 'j["store"]["snapshots"] >= 6000000')" = True ]
	[ "$(json_get 'j["store"]["metadata"] > 0')" = True ]
	[ "$(json_get 'j["records_total"] > 0')" = True ]
	run_cairn 0 umount "$MNT"
	du_matches
	run_cairn 0 du -v
	expect_output "snapshots"
	expect_output "metadata"
	expect_output "everything under the root"
}

@test "bad input: unknown ref (3), committing twice or an immutable, removing a parent" {
	run_cairn 3 commit nosuch
	expect_output "'nosuch'"
	run_cairn 3 mount nosuch "$MNT"
	run_cairn 3 rm nosuch
	build_base overlay
	run_cairn 1 commit "$BASE"
	run_cairn 0 new --parent base
	run_cairn 1 rm base
	expect_output "children"
	run_cairn 2 new --bogus
	run_cairn 2 commit
}

@test "a mounted writable record is locked (exit 4, naming the mount) until unmounted" {
	run_cairn 0 new
	local m=$output
	run_cairn 0 mount "$m" "$MNT"
	run_cairn 4 commit "$m"
	expect_output "$MNT"
	run_cairn 0 umount "$MNT"
	run_cairn 0 commit "$m"
}

# filled DESC BYTES: an unused record holding BYTES bytes; sets $REC.
filled() {
	run_cairn 0 new --desc "$1"
	REC=$output
	run_cairn 0 mount "$REC" "$MNT"
	head -c "$2" /dev/urandom >"$MNT/data"
	run_cairn 0 umount "$MNT"
}

@test "prune --dry-run lists what would go, with sizes, and removes nothing" {
	filled one 1048576
	filled two 1048576
	run_cairn 0 prune --dry-run
	expect_output "would remove"
	expect_output "would prune 2 records"
	run_cairn 0 prune --dry-run --json
	[ "$(json_get 'j["dry_run"]')" = True ]
	[ "$(json_get 'len(j["removed"])')" = 2 ]
	[ "$(json_get 'all(r["size"] >= 1048576 for r in j["removed"])')" = True ]
	run_cairn 0 ls -q
	[ "$(echo "$output" | wc -l)" = 2 ]
	run_cairn 0 prune --json
	[ "$(json_get 'j["dry_run"]')" = False ]
	[ "$(json_get 'len(j["removed"])')" = 2 ]
}

@test "prune --keep-storage leaves the store under the cap, oldest use first" {
	filled old 1048576
	local old=$REC
	filled mid 1048576
	filled new 1048576
	local new=$REC
	sleep 0.01
	run_cairn 0 info "$new"
	run_cairn 0 prune --keep-storage 2.5MiB --json
	[ "$(json_get 'len(j["removed"])')" = 1 ]
	[ "$(json_get 'j["removed"][0]["id"]')" = "$old" ]
	run_cairn 0 du --json
	[ "$(json_get 'j["records_total"] <= 2.5 * 1048576')" = True ]
	run_cairn 0 prune --keep-storage 1100KB
	expect_output "pruned 1 record,"
	run_cairn 0 ls -q
	[ "$output" = "$new" ]
	run_cairn 0 prune --keep-duration 1h
	expect_output "pruned 0 records"
	run_cairn 0 prune --keep-duration 1h30m --keep-storage 0 --dry-run
	expect_output "would prune 0 records"
}

@test "prune: a bad duration, size or filter key is a usage error (2)" {
	run_cairn 2 prune --keep-duration 10x
	expect_output "'10x'"
	run_cairn 2 prune --keep-duration h
	expect_output "'h'"
	run_cairn 2 prune --keep-storage 10QB
	expect_output "'10QB'"
	run_cairn 2 prune --keep-storage -5
	expect_output "'-5'"
	run_cairn 2 prune --filter color=red
	expect_output "'color'"
	run_cairn 2 du --filter nosuch=1
	expect_output "'nosuch'"
	run_cairn 0 prune --keep-duration 7d --keep-storage 10GB --dry-run
}
