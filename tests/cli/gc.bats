#!/usr/bin/env bats
# cairn gc, fsck and lease: housekeeping of the store.

load helpers

setup() {
	setup_store
}

@test "gc --dry-run reports orphans and removes nothing; gc removes them and keeps records" {
	printf 'orphan blob' >"$BATS_TEST_TMPDIR/f"
	run_cairn 0 content add -q "$BATS_TEST_TMPDIR/f"
	digest=$output
	run_cairn 0 snapshot prepare orphan
	run_cairn 0 new -q
	mutable=$output
	run_cairn 0 gc --dry-run --json
	[ "$(json_get 'j["dry_run"]')" = True ]
	[ "$(json_get 'j["blobs"]')" = 1 ]
	[ "$(json_get 'j["snapshots"]')" = 1 ]
	[ -f "$STORE/blobs/sha256/${digest#sha256:}" ]
	run_cairn 0 snapshot ls -q
	expect_output orphan
	run_cairn 0 gc
	expect_output "removed 1 snapshots"
	expect_output "1 blobs"
	[ ! -e "$STORE/blobs/sha256/${digest#sha256:}" ]
	run_cairn 0 snapshot ls -q
	expect_no_output orphan
	run_cairn 0 info "$mutable"
	run_cairn 0 gc --json
	[ "$(json_get 'j["bytes"]')" = 0 ]
}

@test "gc on a store another process uses exits 4 at once" {
	run_cairn 0 content ls
	flock -s "$STORE/LOCK" sleep 5 &
	sleep 0.3
	run_cairn 4 gc
	expect_output "busy"
	kill %1 2>/dev/null || true
}

@test "fsck is clean (exit 0) and names a corrupt blob (exit 1)" {
	printf 'some content' >"$BATS_TEST_TMPDIR/f"
	run_cairn 0 content add -q "$BATS_TEST_TMPDIR/f"
	digest=$output
	run_cairn 0 new -q
	run_cairn 0 fsck
	expect_output "consistent"
	run_cairn 0 fsck --json
	[ "$(json_get 'j["clean"]')" = True ]
	f="$STORE/blobs/sha256/${digest#sha256:}"
	chmod u+w "$f"
	printf X | dd of="$f" bs=1 count=1 conv=notrunc 2>/dev/null
	run_cairn 1 fsck
	expect_output "$digest"
	expect_output "corrupt"
	expect_no_output "wipe"
	run_cairn 0 fsck --repair
	expect_output "repaired: "
	[ ! -e "$f" ]
	run_cairn 0 fsck
}

@test "prune --all and gc while another process imports: no import fails, nor prune or gc" {
	local t=$BATS_TEST_TMPDIR l img
	for l in 1 2 3; do
		mkdir -p "$t/l$l" && echo "layer $l" >"$t/l$l/f$l"
		tar -C "$t/l$l" --numeric-owner -czf "$t/l$l.tar.gz" .
	done
	# two images sharing their base layer
	make_layout "$t/a" a "$t/l1.tar.gz" "$t/l2.tar.gz"
	make_layout "$t/b" b "$t/l1.tar.gz" "$t/l3.tar.gz"
	local end=$((SECONDS + ${CAIRN_RACE_SECONDS:-3}))
	(
		n=0
		while [ "$SECONDS" -lt "$end" ]; do
			for img in a b; do
				"$CAIRN" import --extract "$t/$img:$img" >"$t/out" 2>&1 ||
					{ echo "import $img failed: $(cat "$t/out")"; exit 1; }
				n=$((n + 1))
			done
		done
		echo "$n" >"$t/imports"
	) >"$t/importer.log" 2>&1 &
	local pid=$! prunes=0 gcs=0
	while [ "$SECONDS" -lt "$end" ]; do
		run_cairn 0 prune --all
		prunes=$((prunes + 1))
		run "$CAIRN" gc
		# 4: busy, the importer has the store open
		[ "$status" -eq 0 ] || [ "$status" -eq 4 ] || { echo "gc: exit $status: $output" >&2; return 1; }
		[ "$status" -ne 0 ] || gcs=$((gcs + 1))
	done
	wait "$pid" || { cat "$t/importer.log" >&2; return 1; }
	echo "# $(cat "$t/imports") imports, $prunes prunes, $gcs gcs" >&3
	[ "$(cat "$t/imports")" -gt 0 ]
	run_cairn 0 fsck
}

@test "fsck reports an abandoned ingest and a snapshot off its parent's chain; --repair fixes both" {
	local t=$BATS_TEST_TMPDIR l
	for l in 1 2; do
		mkdir -p "$t/l$l" && echo "layer $l" >"$t/l$l/f$l"
		tar -C "$t/l$l" --numeric-owner -czf "$t/l$l.tar.gz" .
	done
	run_cairn 0 content add -q "$t/l1.tar.gz"
	run_cairn 0 import-blob "$output"
	local r1=$output
	run_cairn 0 content add -q "$t/l2.tar.gz"
	run_cairn 0 import-blob --parent "$r1" "$output"
	local r2=$output
	run_cairn 0 extract "$r2"
	run_cairn 0 fsck
	# An ingest nobody has written for two days, and r2's snapshot cut from r1's.
	local ref=left-behind key
	key=$(printf %s "$ref" | sha256sum | cut -d' ' -f1)
	mkdir -p "$STORE/ingest/$key"
	printf %s "$ref" >"$STORE/ingest/$key/ref"
	printf partial >"$STORE/ingest/$key/data"
	echo 1000 >"$STORE/ingest/$key/updatedat"
	touch -d '2 days ago' "$STORE/ingest/$key/data"
	python3 - "$STORE/meta.db" "$r2" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE snapshots SET parent = NULL WHERE name = "
           "(SELECT snapshot FROM records WHERE id = ?)", (sys.argv[2],))
db.commit()
PY
	run_cairn 1 fsck
	expect_output "ingest '$ref' ('ingest/$key', 7 bytes) has no writer and was last written"
	expect_output "record '$r2': its snapshot 'sha256:"
	expect_output "sits on nothing, but its parent record '$r1' has snapshot 'sha256:"
	expect_no_output "wipe"
	run_cairn 0 fsck --repair
	expect_output "(removed)"
	expect_output "(snapshot removed)"
	expect_output "(marked not extracted"
	[ ! -e "$STORE/ingest/$key" ]
	run_cairn 0 fsck
	# r2 comes back from its blob, on r1's snapshot
	run_cairn 0 extract "$r2"
	run_cairn 0 fsck
	expect_output "consistent"
}

@test "lease ls --json lists leases; lease rm of a missing lease exits 3" {
	run_cairn 0 lease ls --json
	[ "$(json_get 'len(j)')" = 0 ]
	run_cairn 0 lease ls
	expect_output "EXPIRES"
	run_cairn 3 lease rm nope
	expect_output "lease 'nope' not found"
	run_cairn 2 lease rm
}

@test "gc keeps a record's blob and snapshot, and collects them once the record is removed" {
	mkdir -p "$BATS_TEST_TMPDIR/l" && echo a >"$BATS_TEST_TMPDIR/l/a"
	tar -C "$BATS_TEST_TMPDIR/l" -cf "$BATS_TEST_TMPDIR/l.tar" .
	run_cairn 0 content add -q "$BATS_TEST_TMPDIR/l.tar"
	digest=$output
	run_cairn 0 import-blob -q "$digest"
	id=$output
	run_cairn 0 extract "$id"
	run_cairn 0 gc --json
	[ "$(json_get 'j["blobs"] + j["snapshots"]')" = 0 ]
	[ -f "$STORE/blobs/sha256/${digest#sha256:}" ]
	run_cairn 0 fsck
	run_cairn 0 rm "$id"
	run_cairn 0 gc --json
	[ "$(json_get 'j["blobs"]')" = 1 ]
	[ ! -e "$STORE/blobs/sha256/${digest#sha256:}" ]
	run_cairn 0 fsck
}

@test "lease ls shows a lease with its resources; lease rm deletes it" {
	command -v sqlite3 >/dev/null || skip "needs sqlite3"
	run_cairn 0 lease ls
	sqlite3 "$STORE/meta.db" "INSERT INTO leases(id, created_at) VALUES ('l1', 1);
		INSERT INTO lease_resources(lease, type, id) VALUES ('l1', 'record', 'r1');"
	run_cairn 0 lease ls --json
	[ "$(json_get 'j[0]["id"]')" = l1 ]
	[ "$(json_get 'j[0]["resources"][0]["type"]')" = record ]
	[ "$(json_get 'j[0]["live"]')" = True ]
	run_cairn 0 lease rm l1
	expect_output "removed l1"
	run_cairn 0 lease ls -q
	[ -z "$output" ]
}
