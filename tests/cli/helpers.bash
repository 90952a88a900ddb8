# Shared helpers for the CLI tests. $CAIRN is the binary under test (set by meson test);
# each test gets a fresh store under $BATS_TEST_TMPDIR.

setup_store() {
	: "${CAIRN:=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)/build/cairn}"
	export CAIRN
	export STORE="$BATS_TEST_TMPDIR/store"
	export CAIRN_ROOT="$STORE"
}

# run_cairn RC ARGS...: run cairn with ARGS and require exit status RC.
run_cairn() {
	local want=$1
	shift
	run "$CAIRN" "$@"
	if [ "$status" -ne "$want" ]; then
		echo "cairn $*: exit $status, expected $want" >&2
		echo "output: $output" >&2
		return 1
	fi
}

# expect_output TEXT: the last run's output contains TEXT.
expect_output() {
	if [[ "$output" != *"$1"* ]]; then
		echo "output lacks '$1':" >&2
		echo "$output" >&2
		return 1
	fi
}

# expect_no_output TEXT: the last run's output does not contain TEXT.
expect_no_output() {
	if [[ "$output" == *"$1"* ]]; then
		echo "output unexpectedly has '$1':" >&2
		echo "$output" >&2
		return 1
	fi
}

# json_get EXPR: evaluate a Python expression over the last output parsed as JSON (as `j`).
json_get() {
	python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1" <<<"$output"
}
