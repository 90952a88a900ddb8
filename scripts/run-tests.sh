#!/usr/bin/env bash
# Runs the whole suite in each build dir given (meson test: unit tests, fuzz corpora, bats), then
# make format-check, and prints one closing line `N passed, N failed, N skipped` over all of it.
# TAP subtests are counted one by one from meson's test log.
set -u
cd "$(dirname "$0")/.."
passed=0 failed=0 skipped=0 rc=0
# Undefined behaviour fails the test that hits it instead of scrolling past in its output.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

count_log() { # $1: meson testlog.json
	python3 - "$1" <<'PY'
import json, re, sys
p = f = s = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    out = t.get("stdout") or ""
    subs = [l for l in out.splitlines() if re.match(r"^(not ok|ok)\b", l)]
    if not subs:  # a test that printed no TAP counts by its result
        r = t.get("result")
        if r == "OK": p += 1
        elif r == "SKIP": s += 1
        else: f += 1
        continue
    for l in subs:
        if l.startswith("not ok"): f += 1
        elif re.search(r"#\s*SKIP", l, re.I): s += 1
        else: p += 1
    if t.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL") and not any(l.startswith("not ok") for l in subs):
        f += 1  # crashed or timed out after its last TAP line
print(p, f, s)
PY
}

for b in "$@"; do
	echo "=== suite in $b"
	meson test -C "$b" --print-errorlogs --no-rebuild --num-processes 1 || rc=1
	read -r p f s < <(count_log "$b/meson-logs/testlog.json")
	echo "=== $b: $p passed, $f failed, $s skipped"
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done

if make -s format-check; then passed=$((passed + 1)); else failed=$((failed + 1)); rc=1; fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$rc" -eq 0 ]
