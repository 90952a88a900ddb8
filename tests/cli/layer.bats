#!/usr/bin/env bats
# The layer commands: import-blob, extract, diff.

load helpers

setup() {
	setup_store
	[ "$(id -u)" = 0 ] || skip "mounting needs root"
	MNT="$BATS_TEST_TMPDIR/mnt"
	SRC="$BATS_TEST_TMPDIR/src"
	mkdir -p "$SRC/dir"
	echo hello >"$SRC/file"
	echo nested >"$SRC/dir/inner"
	ln -s file "$SRC/link"
	chmod 0750 "$SRC/dir"
}

teardown() {
	umount -R "$MNT" 2>/dev/null || true
}

# The tree at $1 as a sorted listing of paths, types, modes and file hashes.
listing() {
	(cd "$1" && { find . -mindepth 1 -printf '%p %y %m %l\n'; find . -type f -exec sha256sum {} +; } | sort)
}

# import_extract DRIVER: tar and gzip $SRC, add it, import it, extract, mount and compare.
import_extract() {
	local s="--snapshotter $1"
	tar -C "$SRC" -czf "$BATS_TEST_TMPDIR/layer.tar.gz" --numeric-owner .
	run_cairn 0 $s content add "$BATS_TEST_TMPDIR/layer.tar.gz"
	local blob=$output
	run_cairn 0 $s import-blob "$blob"
	local id=$output
	run_cairn 0 $s --json info "$id"
	[ "$(json_get 'j["extracted"]')" = False ]
	[ "$(json_get 'j["blob"]')" = "$blob" ]
	[ "$(json_get 'j["diff_id"]')" = "sha256:$(gunzip -c "$BATS_TEST_TMPDIR/layer.tar.gz" | sha256sum | cut -d' ' -f1)" ]
	run_cairn 0 $s --json extract "$id"
	[ "$(json_get 'j["extracted"]')" = True ]
	run_cairn 0 $s extract "$id"
	[ -z "$output" ]
	run_cairn 0 $s mount --ro "$id" "$MNT"
	diff <(listing "$SRC") <(listing "$MNT")
	run_cairn 0 $s umount "$MNT"
}

@test "content add, import-blob, extract, mount --ro gives the tar's files: overlay" {
	import_extract overlay
}

@test "content add, import-blob, extract, mount --ro gives the tar's files: native" {
	import_extract native
}

@test "mount extracts a record that is only a blob" {
	tar -C "$SRC" -czf "$BATS_TEST_TMPDIR/layer.tar.gz" .
	run_cairn 0 content add "$BATS_TEST_TMPDIR/layer.tar.gz"
	run_cairn 0 import-blob "$output"
	local id=$output
	run_cairn 0 mount "$id" "$MNT"
	[ "$(cat "$MNT/dir/inner")" = nested ]
	run_cairn 0 umount "$MNT"
	run_cairn 0 --json info "$id"
	[ "$(json_get 'j["extracted"]')" = True ]
}

# diff_round_trip DRIVER: build a record, diff -o, import in another store, compare.
diff_round_trip() {
	local s="--snapshotter $1"
	run_cairn 0 $s new
	local m=$output
	run_cairn 0 $s mount "$m" "$MNT"
	cp -a "$SRC/." "$MNT/"
	run_cairn 0 $s umount "$MNT"
	run_cairn 0 $s commit "$m"
	local base=$output
	run_cairn 0 $s diff "$base" -o "$BATS_TEST_TMPDIR/base.tgz" --source-date-epoch 0
	local blob=$output
	[ "$blob" = "sha256:$(sha256sum "$BATS_TEST_TMPDIR/base.tgz" | cut -d' ' -f1)" ]
	# The record has its blob now, and diff without options gives the same bytes.
	run_cairn 0 $s --json info "$base"
	[ "$(json_get 'j["blob"]')" = "$blob" ]
	"$CAIRN" $s diff "$base" >"$BATS_TEST_TMPDIR/again.tgz"
	cmp "$BATS_TEST_TMPDIR/base.tgz" "$BATS_TEST_TMPDIR/again.tgz"
	# Another compression is a fresh diff with the same diff id.
	run_cairn 0 $s diff "$base" --compression zstd --source-date-epoch 0 -o "$BATS_TEST_TMPDIR/base.zst"
	[ "$(zstd -dc "$BATS_TEST_TMPDIR/base.zst" | sha256sum)" = "$(gunzip -c "$BATS_TEST_TMPDIR/base.tgz" | sha256sum)" ]
	# A level is a fresh diff too: the same tar, other bytes per level, the same bytes per run.
	local lv
	for lv in 1 9 9; do
		run_cairn 0 $s diff "$base" --compression "gzip:$lv" --source-date-epoch 0 -o "$BATS_TEST_TMPDIR/l$lv.tgz"
		[ "$(gunzip -c "$BATS_TEST_TMPDIR/l$lv.tgz" | sha256sum)" = "$(gunzip -c "$BATS_TEST_TMPDIR/base.tgz" | sha256sum)" ]
	done
	! cmp -s "$BATS_TEST_TMPDIR/l1.tgz" "$BATS_TEST_TMPDIR/l9.tgz"
	run_cairn 0 $s diff "$base" --compression gzip:9 --source-date-epoch 0 -o "$BATS_TEST_TMPDIR/l9b.tgz"
	cmp "$BATS_TEST_TMPDIR/l9.tgz" "$BATS_TEST_TMPDIR/l9b.tgz"
	run_cairn 0 $s diff "$base" --compression zstd:19 --source-date-epoch 0 -o "$BATS_TEST_TMPDIR/z19.zst"
	[ "$(zstd -dc "$BATS_TEST_TMPDIR/z19.zst" | sha256sum)" = "$(gunzip -c "$BATS_TEST_TMPDIR/base.tgz" | sha256sum)" ]

	local other="$BATS_TEST_TMPDIR/other"
	run_cairn 0 $s --root "$other" content add "$BATS_TEST_TMPDIR/base.tgz"
	[ "$output" = "$blob" ]
	run_cairn 0 $s --root "$other" import-blob "$blob"
	local id=$output
	run_cairn 0 $s --root "$other" extract "$id"
	run_cairn 0 $s --root "$other" mount --ro "$id" "$MNT"
	diff <(listing "$SRC") <(listing "$MNT")
	run_cairn 0 $s --root "$other" umount "$MNT"
}

@test "diff -o of a committed record, import-blob and extract elsewhere: overlay" {
	diff_round_trip overlay
}

@test "diff -o of a committed record, import-blob and extract elsewhere: native" {
	diff_round_trip native
}

@test "a corrupt gzip blob: exit 1 naming the digest, nothing extracted" {
	tar -C "$SRC" -czf "$BATS_TEST_TMPDIR/layer.tar.gz" .
	local diffid
	diffid="sha256:$(gunzip -c "$BATS_TEST_TMPDIR/layer.tar.gz" | sha256sum | cut -d' ' -f1)"
	# Flip bytes in the middle of the deflate stream.
	python3 -c 'import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
for i in range(20, min(len(b) - 8, 60)): b[i] ^= 0x5a
open(p, "wb").write(b)' "$BATS_TEST_TMPDIR/layer.tar.gz"
	run_cairn 0 content add "$BATS_TEST_TMPDIR/layer.tar.gz"
	local blob=$output
	# Without a diff id, import reads the blob and refuses it.
	run_cairn 1 import-blob "$blob"
	expect_output "$blob"
	# With one, import is lazy and extract refuses it.
	run_cairn 0 import-blob "$blob" --diff-id "$diffid"
	local id=$output
	run_cairn 1 extract "$id"
	expect_output "$blob"
	run_cairn 0 --json info "$id"
	[ "$(json_get 'j["extracted"]')" = False ]
	run_cairn 0 --json snapshot ls
	[ "$(json_get 'len(j)')" = 0 ]
	# The store stays consistent: no half-extracted directory, fsck clean.
	[ -z "$(ls -A "$CAIRN_ROOT/snapshots")" ]
	run_cairn 0 fsck
}

@test "a blob whose content is not its diff id is refused, naming both" {
	tar -C "$SRC" -czf "$BATS_TEST_TMPDIR/layer.tar.gz" .
	run_cairn 0 content add "$BATS_TEST_TMPDIR/layer.tar.gz"
	local blob=$output
	local lie=sha256:0000000000000000000000000000000000000000000000000000000000000000
	run_cairn 0 import-blob "$blob" --diff-id "$lie"
	run_cairn 1 extract "$output"
	expect_output "$lie"
	expect_output "$blob"
}

@test "import-blob of a missing blob: not found, naming it" {
	local d=sha256:1111111111111111111111111111111111111111111111111111111111111111
	run_cairn 3 import-blob "$d"
	expect_output "$d"
}

@test "diff: a bad compression, level or --source-date-epoch is a usage error and writes nothing" {
	run_cairn 0 new
	local m=$output
	run_cairn 0 commit "$m"
	local id=$output
	local bad
	for bad in "--compression gzip:10" "--compression none:3" "--compression bzip2" \
		"--compression zstd:0" "--compression gzip:" "--source-date-epoch abc"; do
		run_cairn 2 diff "$id" $bad -o "$BATS_TEST_TMPDIR/out"
		[[ "$output" == *"${bad#* }"* ]]
		[ ! -e "$BATS_TEST_TMPDIR/out" ]
	done
	run_cairn 0 --json info "$id"
	[ "$(json_get 'j.get("blob")')" = None ]
}
