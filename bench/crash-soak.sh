#!/usr/bin/env bash
# Crash soak (issue 7): SIGKILL cairn at random moments while it imports and extracts the images
# of the benchmark corpus, N times; after every kill the store must fsck clean and every image
# completed before must still be listed, extracted, and (checked one per kill, round-robin, and
# all at the end) have the extracted tree its .expect manifest describes.
#
# One job is "image NAME:TAG into the store": every layer blob added to the content store, a
# record per layer (import-blob with --parent and --diff-id), the top extracted, then tagged
# NAME-TAG. `cairn import` is used instead when the binary has it (MODE=import; MODE=blobs forces
# the per-layer path). A killed job is simply run again by a later pick of the same image, which
# must pick up where the store is (content dedup, record dedup, resumed extraction). When an
# image completes its tree is compared with .expect at once; when more than KEEP images are
# complete the oldest is untagged, pruned and gc'd, so later picks import it from scratch.
#
# Kill delays: drawn uniformly from the work an image still has: a clean run's duration for an
# image imported from scratch, less the time its killed jobs already ran (at least 1/8 of the
# clean run: a resumed job redoes the layer it was in). So the kills spread over the whole
# import and extraction, and few jobs finish before their kill. A resumed extraction of a big
# layer starts that layer over, so after 3 kills in a row an image's next job gets a delay drawn
# from twice a clean run: most such jobs finish (and their trees are compared), some are still
# killed late. Each job writes the step it is in (import or extract) to a file, and every kill
# is reported with that step.
#
# Env: N (kills, default 200), CORPUS (/work/corpus), CAIRN (build-crash-rel/tools/cairn/cairn),
# WORK (/var/tmp/cairn-soak: the store and logs; emptied first), SEED (random), IMAGES
# ("debian smallfiles bigfile"), TAGS ("gzip zstd"), KEEP (2), MODE (auto|import|blobs),
# OCITOOL (/work/shared/bench/ocitool.py, for the tree comparison), DURATIONS ("KEY=MS ..." to
# skip measuring the clean run of a job).
# Output: one line per kill; a summary; exit 0 only when every fsck was clean and no tree or
# record went missing.
set -uo pipefail
cd "$(dirname "$0")/.."

N=${N:-200}
CORPUS=${CORPUS:-/work/corpus}
CAIRN=${CAIRN:-build-crash-rel/tools/cairn/cairn}
WORK=${WORK:-/var/tmp/cairn-soak}
SEED=${SEED:-$RANDOM$RANDOM}
IMAGES=${IMAGES:-debian smallfiles bigfile}
TAGS=${TAGS:-gzip zstd}
KEEP=${KEEP:-2}
MODE=${MODE:-auto}
OCITOOL=${OCITOOL:-/work/shared/bench/ocitool.py}
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3 # a version manager's shim costs a second a start

CAIRN=$(realpath "$CAIRN")
[ -x "$CAIRN" ] || { echo "crash-soak: no cairn binary at '$CAIRN'" >&2; exit 2; }
[ -f "$OCITOOL" ] || { echo "crash-soak: no ocitool at '$OCITOOL'" >&2; exit 2; }
if [ "$MODE" = auto ]; then
	if "$CAIRN" import --help >/dev/null 2>&1; then MODE=import; else MODE=blobs; fi
fi
RANDOM=$SEED
export CAIRN_ROOT=$WORK/store
rm -rf "$WORK"
mkdir -p "$WORK/mnt" "$WORK/fail"
LOG=$WORK/soak.log
: >"$LOG"
say() { echo "$*" | tee -a "$LOG"; }

# layers LAYOUT TAG: "BLOB_PATH DIGEST DIFF_ID MEDIA_TYPE" per layer, bottom first.
layers() {
	"$PY" - "$1" "$2" <<'EOF'
import json, os, sys
layout, tag = sys.argv[1], sys.argv[2]
def blob(d):
    return os.path.join(layout, "blobs", *d.split(":"))
idx = json.load(open(os.path.join(layout, "index.json")))
m = next(d for d in idx["manifests"]
         if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
man = json.load(open(blob(m["digest"])))
cfg = json.load(open(blob(man["config"]["digest"])))
for l, diff in zip(man["layers"], cfg["rootfs"]["diff_ids"]):
    print(blob(l["digest"]), l["digest"], diff, l["mediaType"])
EOF
}

# The job script for NAME TAG (runs in its own process group; killed at random).
job_script() {
	local name=$1 tag=$2 key=$1-$2 step="$WORK/step"
	echo "set -e"
	if [ "$MODE" = import ]; then
		echo "echo import >'$step'"
		echo "'$CAIRN' import --tag $key '$CORPUS/$name:$tag' >/dev/null"
		echo "echo extract >'$step'"
		echo "'$CAIRN' extract $key"
		return
	fi
	echo "echo import >'$step'"
	if true; then
		echo "parent="
		layers "$CORPUS/$name" "$tag" | while read -r path digest diff media; do
			echo "'$CAIRN' content add '$path' >/dev/null"
			echo "id=\$('$CAIRN' import-blob \${parent:+--parent \$parent} --diff-id $diff --media-type $media $digest)"
			echo "parent=\$id"
		done
	fi
	echo "echo extract >'$step'"
	echo "'$CAIRN' extract \$id"
	echo "echo tag >'$step'"
	echo "'$CAIRN' tag \$id $key >/dev/null"
}

declare -A DUR DONE REM STEPS STREAK
COMPLETE=()         # keys complete, oldest first
kills=0 finished=0 fsck_bad=0 missing=0 mismatches=0 compares=0 removed=0 jobs=0
start=$(date +%s)

# compare KEY: its extracted tree against the corpus's expected tree.
compare() {
	local key=$1 name=${1%-*} out
	compares=$((compares + 1))
	if ! "$CAIRN" mount --ro "$key" "$WORK/mnt" >/dev/null 2>"$WORK/fail/mount.err"; then
		say "MISMATCH $key: cannot mount: $(cat "$WORK/fail/mount.err")"
		mismatches=$((mismatches + 1))
		return
	fi
	if ! out=$("$PY" "$OCITOOL" compare "$CORPUS/.expect/$name.tsv.gz" "$WORK/mnt" 2>&1); then
		say "MISMATCH $key: $out"
		mismatches=$((mismatches + 1))
	fi
	"$CAIRN" umount "$WORK/mnt" >/dev/null
}

# check_complete: every complete image is listed and extracted.
check_complete() {
	local json key
	json=$("$CAIRN" --json ls) || { say "ls failed"; missing=$((missing + 1)); return; }
	for key in "${COMPLETE[@]}"; do
		if ! "$PY" -c '
import json, sys
rs = [r for r in json.loads(sys.argv[1]) if sys.argv[2] in r["tags"]]
sys.exit(0 if len(rs) == 1 and rs[0]["extracted"] else 1)' "$json" "$key"; then
			say "MISSING $key: no longer listed, or not extracted"
			missing=$((missing + 1))
		fi
	done
}

fsck_check() {
	local out
	if ! out=$("$CAIRN" fsck 2>&1); then
		fsck_bad=$((fsck_bad + 1))
		say "FSCK after kill $kills: $out"
		cp -a "$CAIRN_ROOT/meta.db" "$WORK/fail/meta.db.$kills" 2>/dev/null
	fi
}

# forget KEY: untag it, prune what nobody holds now, gc the blobs.
forget() {
	"$CAIRN" untag "$1" >/dev/null && "$CAIRN" prune >/dev/null && "$CAIRN" gc >/dev/null ||
		say "forget $1 failed"
	unset "DONE[$1]"
	REM[$1]=${DUR[$1]}
	removed=$((removed + 1))
}

run_job() { # KEY: runs the job in its own process group; its pid in JOBPID
	setsid bash "$WORK/job.$1.sh" >>"$WORK/job.log" 2>&1 &
	JOBPID=$!
}

say "crash soak: N=$N MODE=$MODE SEED=$SEED CAIRN=$CAIRN CORPUS=$CORPUS IMAGES='$IMAGES' TAGS='$TAGS' KEEP=$KEEP"
keys=()
for name in $IMAGES; do
	for tag in $TAGS; do
		keys+=("$name-$tag")
		job_script "$name" "$tag" >"$WORK/job.$name-$tag.sh"
	done
done

# How long a whole job takes, in a store of its own: the range the kill delays are drawn from.
for key in "${keys[@]}"; do
	# DURATIONS="KEY=MS ...": durations known from an earlier run, instead of measuring
	for kv in ${DURATIONS:-}; do [ "${kv%%=*}" = "$key" ] && DUR[$key]=${kv#*=}; done
	if [ -n "${DUR[$key]:-}" ]; then
		say "given duration of $key: ${DUR[$key]} ms"
		continue
	fi
	t0=$(date +%s%N)
	CAIRN_ROOT=$WORK/timing bash "$WORK/job.$key.sh" >>"$WORK/job.log" 2>&1 ||
		{ say "clean run of $key failed (see $WORK/job.log)"; exit 1; }
	DUR[$key]=$((($(date +%s%N) - t0) / 1000000))
	rm -rf "$WORK/timing"
	say "clean run of $key: ${DUR[$key]} ms"
done
for key in "${keys[@]}"; do REM[$key]=${DUR[$key]}; done

# At the end (or when stopped with SIGTERM): every complete image again, a last fsck, the result.
finish() {
	trap - TERM INT
	[ -n "${JOBPID:-}" ] && kill -KILL -- "-$JOBPID" 2>/dev/null && wait "$JOBPID" 2>/dev/null
	for key in "${COMPLETE[@]}"; do compare "$key"; done
	fsck_check
	wall=$(($(date +%s) - start))
	local steps="" st
	for st in "${!STEPS[@]}"; do steps+=" $st=${STEPS[$st]}"; done
	say "result: kills=$kills (of N=$N; by step:$steps) jobs=$jobs finished=$finished fsck_failures=$fsck_bad missing=$missing tree_compares=$compares mismatches=$mismatches images_removed=$removed wall=${wall}s"
	[ "$fsck_bad" -eq 0 ] && [ "$missing" -eq 0 ] && [ "$mismatches" -eq 0 ]
	exit
}
trap finish TERM INT

next=0
while [ "$kills" -lt "$N" ]; do
	key=${keys[$((RANDOM % ${#keys[@]}))]}
	if [ -n "${DONE[$key]:-}" ]; then
		# every image complete: this one goes, and is imported again from scratch
		[ "${#COMPLETE[@]}" -lt "${#keys[@]}" ] && continue
		forget "$key"
		left=()
		for k in "${COMPLETE[@]}"; do [ "$k" = "$key" ] || left+=("$k"); done
		COMPLETE=("${left[@]}")
	fi
	jobs=$((jobs + 1))
	rem=${REM[$key]} # (not inside $((...)): there a key like debian-gzip reads as arithmetic)
	streak=${STREAK[$key]:-0}
	[ "$streak" -ge 3 ] && rem=$((2 * ${DUR[$key]}))
	delay=$(((RANDOM * 32768 + RANDOM) % (rem + 1)))
	: >"$WORK/step"
	run_job "$key"
	# sleep in small steps: stop early when the job ends by itself
	t_end=$(($(date +%s%N) / 1000000 + delay))
	while kill -0 "$JOBPID" 2>/dev/null && [ "$(($(date +%s%N) / 1000000))" -lt "$t_end" ]; do
		sleep 0.01
	done
	if kill -KILL -- "-$JOBPID" 2>/dev/null; then
		wait "$JOBPID" 2>/dev/null
		kills=$((kills + 1))
		step=$(cat "$WORK/step")
		step=${step:-start}
		STEPS[$step]=$((${STEPS[$step]:-0} + 1))
		dur=${DUR[$key]}
		REM[$key]=$((rem - delay > dur / 8 ? rem - delay : dur / 8))
		[ "$rem" -le "$dur" ] || REM[$key]=$dur
		STREAK[$key]=$((streak + 1))
		fsck_check
		check_complete
		# one complete image's tree per kill, round-robin
		if [ "${#COMPLETE[@]}" -gt 0 ]; then
			compare "${COMPLETE[$((next % ${#COMPLETE[@]}))]}"
			next=$((next + 1))
		fi
		echo "kill $kills: $key after ${delay} ms (in $step); fsck bad $fsck_bad, missing $missing, mismatches $mismatches" | tee -a "$LOG"
		continue
	fi
	if ! wait "$JOBPID"; then
		say "job $key failed on its own (see $WORK/job.log)"
		missing=$((missing + 1))
		continue
	fi
	finished=$((finished + 1))
	STREAK[$key]=0
	DONE[$key]=1
	COMPLETE+=("$key")
	compare "$key"
	if [ "${#COMPLETE[@]}" -gt "$KEEP" ]; then
		forget "${COMPLETE[0]}"
		COMPLETE=("${COMPLETE[@]:1}")
	fi
done

finish
