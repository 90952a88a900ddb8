#!/usr/bin/env bats
# cairn content: the blob store's plumbing, and the CLI's general contract.

load helpers

setup() {
	setup_store
}

@test "version prints the version, and --json a document" {
	run_cairn 0 version
	expect_output "cairn 0."
	run_cairn 0 version --json
	[ "$(json_get 'j["version"]')" != "" ]
}

@test "no command, unknown command and unknown option are usage errors (exit 2)" {
	run_cairn 2
	expect_output "missing command"
	run_cairn 2 frobnicate
	expect_output "unknown command 'frobnicate'"
	run_cairn 2 content ls --bogus
	expect_output "unknown option '--bogus'"
	run_cairn 2 content add
	expect_output "missing argument"
	run_cairn 2 --snapshotter zfs version
	expect_output "unknown snapshotter 'zfs'"
}

@test "--help works at every level" {
	run_cairn 0 --help
	expect_output "content"
	run_cairn 0 content --help
	expect_output "Commands:"
	expect_output "add"
	run_cairn 0 content add --help
	expect_output "Usage: cairn content add FILE"
	run_cairn 0 help content cat
	expect_output "Usage: cairn content cat DIGEST"
}

@test "content add prints the sha256 of the file and content cat returns it" {
	printf 'hello cairn\n' >"$BATS_TEST_TMPDIR/f"
	want="sha256:$(sha256sum "$BATS_TEST_TMPDIR/f" | cut -d' ' -f1)"
	run_cairn 0 content add "$BATS_TEST_TMPDIR/f"
	[ "$output" = "$want" ]
	[ -f "$STORE/blobs/sha256/${want#sha256:}" ]
	run_cairn 0 content cat "$want"
	[ "$output" = "hello cairn" ]
}

@test "the store is created with mode 0700 and the layout of the design" {
	run_cairn 0 content ls
	[ "$(stat -c %a "$STORE")" = 700 ]
	for d in blobs/sha256 ingest snapshots tmp; do [ -d "$STORE/$d" ]; done
	[ -f "$STORE/meta.db" ] && [ -f "$STORE/LOCK" ]
}

@test "options are accepted before or after positional arguments" {
	printf 'x' >"$BATS_TEST_TMPDIR/x"
	run_cairn 0 content add "$BATS_TEST_TMPDIR/x" --json --root "$BATS_TEST_TMPDIR/s2"
	[ "$(json_get 'j["size"]')" = 1 ]
	run_cairn 0 --root "$BATS_TEST_TMPDIR/s2" --json content ls
	[ "$(json_get 'len(j)')" = 1 ]
}

@test "adding the same content twice stores one blob" {
	printf 'same' >"$BATS_TEST_TMPDIR/a"
	printf 'same' >"$BATS_TEST_TMPDIR/b"
	run_cairn 0 content add --json "$BATS_TEST_TMPDIR/a"
	[ "$(json_get 'j["new"]')" = True ]
	run_cairn 0 content add --json "$BATS_TEST_TMPDIR/b"
	[ "$(json_get 'j["new"]')" = False ]
	run_cairn 0 content ls -q
	[ "$(echo "$output" | wc -l)" = 1 ]
}

@test "content ls, info and rm" {
	printf 'one' >"$BATS_TEST_TMPDIR/1"
	printf 'two!' >"$BATS_TEST_TMPDIR/2"
	run_cairn 0 content add "$BATS_TEST_TMPDIR/1"
	d1=$output
	run_cairn 0 content add - <"$BATS_TEST_TMPDIR/2"
	d2=$output
	run_cairn 0 content ls
	expect_output "DIGEST"
	expect_output "$d1"
	expect_output "$d2"
	run_cairn 0 content info --json "$d2"
	[ "$(json_get 'j["size"]')" = 4 ]
	run_cairn 0 content rm "$d1"
	run_cairn 0 content ls -q
	[ "$output" = "$d2" ]
	run_cairn 3 content info "$d1"
	expect_output "not found"
	expect_output "$d1"
}

@test "malformed digests are refused with exit 1 and nothing touched" {
	run_cairn 0 content ls
	before=$(find "$STORE" -newer "$STORE/meta.db" | sort)
	for bad in 'sha256:../x' 'sha256:abc' \
		'sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855' \
		'sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e' \
		'md5:d41d8cd98f00b204e9800998ecf8427e' ''; do
		run_cairn 1 content cat "$bad"
		expect_output "invalid digest"
		run_cairn 1 content rm "$bad"
		run_cairn 1 content info "$bad"
	done
	[ ! -e "$STORE/x" ] && [ ! -e "$STORE/blobs/x" ]
}

@test "a missing blob is 'not found' (exit 3) naming the digest" {
	d=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
	run_cairn 3 content cat "$d"
	expect_output "$d"
	expect_output "not found"
}

@test "a store on a read-only filesystem fails naming the path" {
	[ "$(id -u)" = 0 ] || skip "needs root to mount a read-only tmpfs"
	mkdir "$BATS_TEST_TMPDIR/ro"
	mount -t tmpfs -o ro tmpfs "$BATS_TEST_TMPDIR/ro"
	run "$CAIRN" --root "$BATS_TEST_TMPDIR/ro/store" content ls
	umount "$BATS_TEST_TMPDIR/ro"
	[ "$status" -eq 1 ]
	expect_output "$BATS_TEST_TMPDIR/ro/store"
	expect_output "Read-only file system"
}

@test "a corrupt meta.db is reported by name and never recreated" {
	run_cairn 0 content ls
	rm -f "$STORE"/meta.db-wal "$STORE"/meta.db-shm
	head -c 8192 /dev/urandom >"$STORE/meta.db"
	sum=$(sha256sum "$STORE/meta.db")
	run_cairn 1 content ls
	expect_output "$STORE/meta.db"
	[ "$(sha256sum "$STORE/meta.db")" = "$sum" ]
}

@test "a blob whose name is not a digest is removed when the store opens; tmp/ is emptied" {
	run_cairn 0 content ls
	echo junk >"$STORE/blobs/sha256/not-a-digest"
	mkdir -p "$STORE/tmp/leftover" && echo x >"$STORE/tmp/leftover/f"
	run_cairn 0 content ls
	[ ! -e "$STORE/blobs/sha256/not-a-digest" ]
	[ -z "$(ls -A "$STORE/tmp")" ]
}

@test "a store held exclusively elsewhere is busy" {
	run_cairn 0 content ls
	# Another process holding LOCK exclusively (as gc will) makes a shared open wait; with
	# CAIRN_NOWAIT the command fails at once with exit 4.
	flock -x "$STORE/LOCK" sleep 3 &
	sleep 0.3
	CAIRN_NOWAIT=1 run "$CAIRN" content ls
	wait
	[ "$status" -eq 4 ]
	expect_output "busy"
}

@test "content labels: set, show, delete with an empty value; gone with the blob" {
	printf 'l' >"$BATS_TEST_TMPDIR/l"
	run_cairn 0 content add "$BATS_TEST_TMPDIR/l"
	d=$output
	run_cairn 0 content label "$d" team=build note=x
	run_cairn 0 content info --json "$d"
	[ "$(json_get 'j["labels"]')" = "{'note': 'x', 'team': 'build'}" ]
	run_cairn 0 content label "$d" note=
	run_cairn 0 content info "$d"
	expect_output "label:   team=build"
	expect_no_output "note"
	run_cairn 2 content label "$d" novalue
	run_cairn 1 content label "$d" "k=$(head -c 5000 /dev/zero | tr '\0' x)"
	expect_output "4096"
	run_cairn 0 content rm "$d"
	run_cairn 0 content add "$BATS_TEST_TMPDIR/l"
	run_cairn 0 content info --json "$d"
	[ "$(json_get 'j["labels"]')" = "{}" ]
	run_cairn 3 content label sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 a=b
}
