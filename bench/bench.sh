#!/usr/bin/env bash
# bench/bench.sh [CAIRN] [CORPUS]     (issue 8; `make bench` runs it)
#
# Times cairn against today's tools on the corpus of ../shared/bench/make-corpus.sh (built first
# when missing), in ONE run with the commands interleaved: for every image/tag and every run,
# each tool goes once, in an order that rotates from run to run, so that whatever else the
# machine does hits every tool alike. It does so twice: on the root filesystem (ext4 without a
# journal on this machine kind, where creating inodes soon after deleting others is slow) and
# on a journaled ext4 loop mount it makes and removes itself.
#
# Tools (each into its own output, the previous run's output deleted untimed before it runs):
#   cairn import+extract  content add + import-blob per layer (or `cairn import LAYOUT:TAG`
#                         where the binary has it), then `cairn extract` of the top record
#   cairn extract         `cairn extract` alone (the blobs were added and imported untimed)
#   tar                   `tar -xzf` / `tar --zstd -xf` per layer into one directory
#   umoci                 `umoci unpack --image LAYOUT:TAG` (gzip only: umoci 0.4 has no zstd)
#   ctr                   `ctr images import` + unpack with the overlayfs snapshotter, containerd
#                         on a private root/state/socket, stopped by PID
#   podman                `podman pull oci:LAYOUT:TAG`, overlay storage in a private root
#   export                `cairn diff` of a record holding the debian tree (+ gzip) against
#                         `tar -c | pigz -6` of the same tree; cairn's output must not vary
# After the runs every tool's tree is compared with CORPUS/.expect/NAME.tsv.gz
# (`ocitool.py compare`). Wall, CPU (user+sys of the command and its children; containerd's
# own CPU added) and peak RSS (largest process) are recorded per run.
#
# Writes: bench/results/issue8.tsv (every run), and the "Issue 8" section of bench/RESULTS.md
# between its markers (the rest of the file is left alone).
#
# Env: RUNS=3  FS="root loop"  LOOP_GIB=24  PEERS="tar umoci ctr podman"
#      CASES="debian:gzip debian:zstd smallfiles:gzip bigfile:gzip bigfile:zstd export"
#      ALL_PEERS=1 (every peer and both cairn cases on every image; default: what the targets
#      name: debian:gzip all peers, debian:zstd podman, smallfiles/bigfile `cairn extract` vs tar)
#      SCRATCH_BASE=/var/tmp  NO_RESULTS_MD=1 (only the TSV)
#      SETTLE=drop (on a filesystem without a journal, before each timed command: drop the
#      clean page cache, then read the inputs again; N: sleep N seconds instead; 0: nothing)
# Needs root. Installs missing peers with apt-get.
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
CAIRN=$(realpath "${1:-$TOP/build-bench/tools/cairn/cairn}")
CORPUS=${2:-${CORPUS:-$TOP/../corpus}}
SHARED=$(cd "$TOP/../shared/bench" && pwd)
RUNS=${RUNS:-3}
FS=${FS:-"root loop"}
LOOP_GIB=${LOOP_GIB:-24}
PEERS=${PEERS:-"tar umoci ctr podman"}
CASES=${CASES:-"debian:gzip debian:zstd smallfiles:gzip bigfile:gzip bigfile:zstd export"}
SCRATCH_BASE=${SCRATCH_BASE:-/var/tmp}
SETTLE=${SETTLE:-drop}
WARM="" # the inputs of the image being timed, read again after a drop
WARM_STORE="" # and the cairn store a `cairn extract` reads its blobs from
OUTDIR=$TOP/bench/results
TSV=$OUTDIR/issue8.tsv
T() { python3 "$SHARED/ocitool.py" "$@"; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
[ "$(id -u)" = 0 ] || { echo "bench.sh: must run as root" >&2; exit 1; }
[ -x "$CAIRN" ] || { echo "bench.sh: no cairn binary at $CAIRN (make bench builds it)" >&2; exit 1; }

need() {
	local miss=() c
	for c in "$@"; do command -v "${c%%:*}" >/dev/null || miss+=("${c##*:}"); done
	if ((${#miss[@]})); then
		log "installing ${miss[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${miss[@]}" >/dev/null ||
			{ apt-get update -q >/dev/null &&
				DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${miss[@]}" >/dev/null; }
	fi
}
need pigz:pigz zstd:zstd umoci:umoci containerd:containerd ctr:containerd podman:podman \
	runc:runc /usr/bin/time:time python3:python3 mkfs.ext4:e2fsprogs

if [ ! -s "$CORPUS/bigfile/index.json" ] || [ ! -s "$CORPUS/.expect/debian.tsv.gz" ]; then
	log "building the corpus in $CORPUS (once)"
	"$SHARED/make-corpus.sh" "$CORPUS"
fi
CORPUS=$(cd "$CORPUS" && pwd)
mkdir -p "$OUTDIR"

# ---- clean-up: everything this script mounted or started ---------------------------------
SCRATCH="" LOOP_IMG="" LOOP_MNT="" CTRD_PID="" PRUN=""
PODMAN_GLOBAL=()
for d in /var/lib/containers /run/containers; do [ -e "$d" ] || PODMAN_GLOBAL+=("$d"); done
umount_under() {
	local m
	awk -v p="$1" '{ if ($5 == p || index($5, p "/") == 1) print $5 }' /proc/self/mountinfo |
		sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
}
stop_ctrd() {
	if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
		kill "$CTRD_PID"
		wait "$CTRD_PID" 2>/dev/null || true
	fi
	CTRD_PID=""
}
fs_done() {
	set +e
	stop_ctrd
	if [ -n "$SCRATCH" ]; then umount_under "$SCRATCH"; rm -rf "$SCRATCH"; fi
	if [ -n "$PRUN" ]; then umount_under "$PRUN"; rm -rf "$PRUN"; fi
	if [ -n "$LOOP_MNT" ]; then
		umount_under "$LOOP_MNT"
		rmdir "$LOOP_MNT"
		rm -f "$LOOP_IMG"
	fi
	SCRATCH="" PRUN="" LOOP_MNT="" LOOP_IMG=""
	set -e
}
cleanup() {
	fs_done
	local d
	for d in "${PODMAN_GLOBAL[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- inputs ------------------------------------------------------------------------------
# layer list of IMAGE:TAG: "blob-path diff-id media-type" per line, bottom first
layer_list() {
	python3 - "$CORPUS/$1" "$2" <<'EOF'
import json, sys
lay, tag = sys.argv[1:]
idx = json.load(open(lay + "/index.json"))
d = [m for m in idx["manifests"]
     if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag][0]
blob = lambda dg: lay + "/blobs/" + dg.replace(":", "/")
m = json.load(open(blob(d["digest"])))
c = json.load(open(blob(m["config"]["digest"])))
for l, di in zip(m["layers"], c["rootfs"]["diff_ids"]):
    print(blob(l["digest"]), di, l["mediaType"])
EOF
}
HAVE_IMPORT=0
"$CAIRN" help import >/dev/null 2>&1 && HAVE_IMPORT=1

# ---- timing ------------------------------------------------------------------------------
# timed FS IMAGE TAG CASE RUN CMD: one timed run of CMD (bash -c) under /usr/bin/time
timed() {
	local fs=$1 img=$2 tag=$3 name=$4 run=$5 cmd=$6 tf=$SCRATCH/time.out d0=0 dcpu=0
	sync
	# ext4 without a journal skips, when it allocates an inode, every free inode whose inode
	# table block is still cached and says it was deleted less than 60 s ago (360 s while the
	# block is dirty: recently_deleted()), checking them one by one, so creating files after
	# the previous run's deletes is many times slower, by an amount that depends on the order
	# of the tools. There, every timed command starts with the clean page cache dropped (after
	# the sync above; the inode table blocks go with it) and its inputs read again, so that
	# every tool starts alike: warm inputs (the corpus blobs; for `cairn extract` also its
	# store, where the untimed import put the blobs), metadata on disk. (export deletes only
	# one file.)
	if [ "$FS_JOURNAL" = no ] && [ "$img:$tag" != debian:export ]; then
		if [ "$SETTLE" = drop ]; then
			echo 1 >/proc/sys/vm/drop_caches
			# shellcheck disable=SC2086
			[ -z "$WARM" ] || cat $WARM >/dev/null
			[ -z "$WARM_STORE" ] || find "$WARM_STORE" -type f -exec cat {} + >/dev/null
		elif ((SETTLE > 0)); then
			sleep "$SETTLE"
		fi
	fi
	if [ -n "$CTRD_PID" ]; then
		d0=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$CTRD_PID/stat")
		echo 5 >"/proc/$CTRD_PID/clear_refs"
	fi
	if ! /usr/bin/time -f '%e %U %S %M' -o "$tf" bash -c "$cmd" >"$SCRATCH/cmd.out" 2>"$SCRATCH/cmd.err"; then
		log "  $name: FAILED: $(tail -3 "$SCRATCH/cmd.err" | tr '\n' ' ')"
		printf '%s\t%s\t%s\t%s\t%s\tFAILED\t\t\t\t\t\n' "$fs" "$img" "$tag" "$name" "$run" >>"$TSV"
		return 1
	fi
	local w u s m drss=""
	read -r w u s m < <(tail -1 "$tf")
	if [ -n "$CTRD_PID" ]; then
		dcpu=$(( $(awk '{print $14 + $15 + $16 + $17}' "/proc/$CTRD_PID/stat") - d0 ))
		dcpu=$(awk -v t="$dcpu" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t / hz}')
		drss=$(awk '/VmHWM/ {print $2}' "/proc/$CTRD_PID/status")
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$fs" "$img" "$tag" "$name" "$run" \
		"$w" "$u" "$s" "$m" "$dcpu" "$drss" >>"$TSV"
	log "  $name: ${w}s wall, ${u}+${s}s cpu, $((m / 1024)) MiB"
}
# check FS IMAGE TAG CASE ROOT: compare a produced tree with the expected one
check() {
	local out res
	out=$(T compare "$CORPUS/.expect/$2.tsv.gz" "$5" 2>"$SCRATCH/compare.err" || true)
	res=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("ok" if r["ok"] else "WRONG missing=%d extra=%d differ=%d wh_left=%d" % (r["missing"], r["extra"], r["differ"], r["wh_files_left"]))' "$out" 2>/dev/null || echo "check-failed")
	printf '%s\t%s\t%s\t%s\tcheck\t%s\n' "$1" "$2" "$3" "$4" "$res" >>"$TSV"
	log "  check $4: $res"
}

# ---- per-filesystem set-up ---------------------------------------------------------------
fs_setup() {
	local base=$SCRATCH_BASE
	if [ "$1" = loop ]; then
		LOOP_IMG=$(mktemp "$SCRATCH_BASE/cairn-bench-loop.XXXXXX")
		LOOP_MNT=$LOOP_IMG.mnt
		truncate -s "${LOOP_GIB}G" "$LOOP_IMG"
		mkfs.ext4 -q -F "$LOOP_IMG"
		mkdir "$LOOP_MNT"
		mount -o loop "$LOOP_IMG" "$LOOP_MNT"
		base=$LOOP_MNT
	fi
	SCRATCH=$(mktemp -d "$base/cairn-bench.XXXXXX")
	local dev
	dev=$(df --output=source "$SCRATCH" | tail -1)
	dev=${dev##*/}
	FS_JOURNAL=$(ls -d /proc/fs/jbd2/"$dev"-* >/dev/null 2>&1 && echo yes || echo no)
	FS_DESC="$(df -T "$SCRATCH" | awk 'NR==2 {print $2}') on $dev, journal: $FS_JOURNAL"
	if [ "$FS_JOURNAL" = no ] && [ "$SETTLE" = drop ]; then
		FS_DESC+=", clean page cache dropped and inputs read again before each timed command"
	elif [ "$FS_JOURNAL" = no ] && ((SETTLE > 0)); then
		FS_DESC+=", ${SETTLE} s settle before each timed command"
	fi
	printf '%s\tfs\t%s\n' "$1" "$FS_DESC" >>"$TSV"
	log "== filesystem $1: $FS_DESC ($SCRATCH)"
	# podman's overlay driver refuses a runroot longer than 50 characters
	PRUN=$(mktemp -d /tmp/cb-pod.XXXXXX)
	POD="podman --root $SCRATCH/podman/root --runroot $PRUN --storage-driver overlay --events-backend none --cgroup-manager cgroupfs --tmpdir $SCRATCH/podman/tmp"
	mkdir -p "$SCRATCH/podman/tmp"
	if [[ " $PEERS " == *" ctr "* ]]; then ctrd_start; fi
}
ctrd_start() {
	local C=$SCRATCH/ctrd
	mkdir -p "$C/root" "$C/state"
	SOCK=$C/c.sock
	cat >"$C/config.toml" <<EOF
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$C/opt"
EOF
	containerd --config "$C/config.toml" >"$C/containerd.log" 2>&1 &
	CTRD_PID=$!
	for _ in $(seq 100); do ctr -a "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
	ctr -a "$SOCK" version >/dev/null || { tail "$C/containerd.log" >&2; exit 1; }
	CTR="ctr -a $SOCK -n bench"
	# reset: remove every image (gc drops content and snapshots), then leftover snapshots
	cat >"$C/reset" <<EOF
#!/bin/bash
for i in \$($CTR images ls -q); do $CTR images rm --sync "\$i" >/dev/null; done
for try in 1 2 3 4 5 6 7 8; do
  keys=\$($CTR snapshots --snapshotter overlayfs ls | awk 'NR>1 {print \$1}')
  [ -z "\$keys" ] && exit 0
  for k in \$keys; do $CTR snapshots --snapshotter overlayfs rm "\$k" 2>/dev/null || true; done
done
EOF
	chmod +x "$C/reset"
}

# ---- the cases of one image:tag ----------------------------------------------------------
# Each tool is a pair of functions: prep_TOOL (untimed) and cmd_TOOL (prints the timed command);
# check_TOOL compares its tree afterwards.
cairn_chain() { # cairn_chain ROOT LIST: add + import every layer, print the top record
	local root=$1 list=$2 p="" f di mt d id
	while read -r f di mt; do
		d=$("$CAIRN" --root "$root" content add "$f")
		id=$("$CAIRN" --root "$root" import-blob "$d" --diff-id "$di" --media-type "$mt" ${p:+--parent "$p"})
		p=$id
	done <"$list"
	echo "$p"
}
cairn_store_rm() { umount_under "$1"; rm -rf "$1"; }
write_helpers() {
	# the timed cairn import+extract: one script, so its processes are all measured
	cat >"$SCRATCH/cairn-import" <<EOF
#!/bin/bash
# cairn-import ROOT IMAGE TAG LIST
set -e
root=\$1
if [ $HAVE_IMPORT = 1 ]; then
  top=\$("$CAIRN" --root "\$root" -q import "$CORPUS/\$2:\$3")
else
  p=""
  while read -r f di mt; do
    d=\$("$CAIRN" --root "\$root" content add "\$f")
    p=\$("$CAIRN" --root "\$root" import-blob "\$d" --diff-id "\$di" --media-type "\$mt" \${p:+--parent "\$p"})
  done <"\$4"
  top=\$p
fi
"$CAIRN" --root "\$root" extract "\$top" >/dev/null
echo "\$top" >"\$root.top"
EOF
	chmod +x "$SCRATCH/cairn-import"
}

check_cairn() { # check_cairn FS IMG TAG CASE ROOT TOP
	local m=$SCRATCH/mnt-cairn
	mkdir -p "$m"
	if "$CAIRN" --root "$5" mount "$6" "$m" --ro >/dev/null 2>"$SCRATCH/mount.err"; then
		check "$1" "$2" "$3" "$4" "$m"
		"$CAIRN" --root "$5" umount "$m" >/dev/null 2>&1 || umount "$m"
	else
		printf '%s\t%s\t%s\t%s\tcheck\tmount-failed: %s\n' "$1" "$2" "$3" "$4" "$(tail -1 "$SCRATCH/mount.err")" >>"$TSV"
	fi
}

run_image() { # run_image FS IMAGE TAG
	local fs=$1 img=$2 tag=$3 run i tools=() t
	local list=$SCRATCH/$img-$tag.layers
	layer_list "$img" "$tag" >"$list"
	local blobs
	blobs=$(cut -d' ' -f1 "$list" | tr '\n' ' ')
	cat $blobs >/dev/null # warm page cache
	local A=$SCRATCH/$img-$tag.oci.tar
	WARM=$blobs
	# by default the tools the targets name: debian import+extract against every peer (zstd:
	# podman), the other images' extract against tar
	local all=${ALL_PEERS:-0} full=0
	[ "$img:$tag" = debian:gzip ] || [ "$all" = 1 ] && full=1
	tools=("cairn extract")
	[ "$img" = debian ] || [ "$all" = 1 ] && tools=("cairn import+extract" "cairn extract")
	[[ " $PEERS " == *" tar "* ]] && { [ "$img" != debian ] || [ $full = 1 ]; } && tools+=("tar")
	[[ " $PEERS " == *" umoci "* ]] && [ $full = 1 ] && [ "$tag" = gzip ] && tools+=("umoci")
	[[ " $PEERS " == *" ctr "* ]] && [ $full = 1 ] && { T archive "$CORPUS/$img" "$tag" "$A"; tools+=("ctr"); WARM+=" $A"; }
	[[ " $PEERS " == *" podman "* ]] && [ "$img" = debian ] && tools+=("podman")
	log "-- $fs $img:$tag: ${tools[*]}"
	local R1=$SCRATCH/store-ie R2=$SCRATCH/store-x OUT=$SCRATCH/out-tar B=$SCRATCH/bundle
	local n=${#tools[@]}
	for ((run = 1; run <= RUNS; run++)); do
		for ((i = 0; i < n; i++)); do
			t=${tools[$(((i + run - 1) % n))]}
			case $t in
			"cairn import+extract")
				cairn_store_rm "$R1"
				timed "$fs" "$img" "$tag" "$t" "$run" "$SCRATCH/cairn-import $R1 $img $tag $list" || true
				;;
			"cairn extract")
				cairn_store_rm "$R2"
				cairn_chain "$R2" "$list" >"$R2.top"
				WARM_STORE=$R2
				timed "$fs" "$img" "$tag" "$t" "$run" "$CAIRN --root $R2 extract $(cat "$R2.top")" || true
				WARM_STORE=""
				;;
			tar)
				rm -rf "$OUT"
				mkdir "$OUT"
				local x="-xzf"
				[ "$tag" = zstd ] && x="--zstd -xf"
				timed "$fs" "$img" "$tag" "$t" "$run" "for l in $blobs; do tar $x \$l -C $OUT; done" || true
				;;
			umoci)
				rm -rf "$B"
				timed "$fs" "$img" "$tag" "$t" "$run" "umoci unpack --image $CORPUS/$img:$tag $B" || true
				;;
			ctr)
				"$SCRATCH/ctrd/reset" >/dev/null 2>&1 || true
				timed "$fs" "$img" "$tag" "$t" "$run" "$CTR images import --base-name bench/$img --snapshotter overlayfs $A" || true
				;;
			podman)
				$POD rmi -a -f >/dev/null 2>&1 || true
				timed "$fs" "$img" "$tag" "$t" "$run" "$POD pull -q oci:$CORPUS/$img:$tag" || true
				;;
			esac
		done
	done
	# correctness of what each tool left
	for t in "${tools[@]}"; do
		case $t in
		"cairn import+extract") [ -s "$R1.top" ] && check_cairn "$fs" "$img" "$tag" "$t" "$R1" "$(cat "$R1.top")" ;;
		"cairn extract") [ -s "$R2.top" ] && check_cairn "$fs" "$img" "$tag" "$t" "$R2" "$(cat "$R2.top")" ;;
		tar) check "$fs" "$img" "$tag" "$t" "$OUT" ;;
		umoci) check "$fs" "$img" "$tag" "$t" "$B/rootfs" ;;
		ctr)
			mkdir -p "$SCRATCH/mnt-ctr"
			if $CTR images mount --snapshotter overlayfs "bench/$img:$tag" "$SCRATCH/mnt-ctr" >/dev/null 2>&1; then
				check "$fs" "$img" "$tag" "$t" "$SCRATCH/mnt-ctr"
				$CTR images unmount "$SCRATCH/mnt-ctr" >/dev/null 2>&1 || umount "$SCRATCH/mnt-ctr"
			fi
			"$SCRATCH/ctrd/reset" >/dev/null 2>&1 || true
			;;
		podman)
			local m
			if m=$($POD image mount "$($POD images -q | head -1)" 2>/dev/null); then
				check "$fs" "$img" "$tag" "$t" "$m"
				$POD image unmount -a >/dev/null 2>&1 || true
			fi
			$POD rmi -a -f >/dev/null 2>&1 || true
			;;
		esac
	done
	cairn_store_rm "$R1"
	cairn_store_rm "$R2"
	rm -rf "$OUT" "$B" "$A" "$R1.top" "$R2.top"
}

# export: the debian tree as one record, diffed and gzipped (level 6) by cairn; tar -c | pigz -6
# of the same tree. cairn's output must be the same bytes every run; both outputs' sizes are kept.
run_export() { # run_export FS
	local fs=$1 R=$SCRATCH/store-export TREE=$SCRATCH/debian-tree run i t
	local list=$SCRATCH/debian-gzip.layers
	layer_list debian gzip >"$list"
	cairn_store_rm "$R"
	local top id m=$SCRATCH/mnt-export rec
	top=$(cairn_chain "$R" "$list")
	"$CAIRN" --root "$R" extract "$top" >/dev/null
	mkdir -p "$m" "$TREE"
	"$CAIRN" --root "$R" mount "$top" "$m" --ro >/dev/null
	cp -a "$m/." "$TREE/"
	"$CAIRN" --root "$R" umount "$m" >/dev/null
	id=$("$CAIRN" --root "$R" new --desc debian-tree)
	"$CAIRN" --root "$R" mount "$id" "$m" >/dev/null
	cp -a "$TREE/." "$m/"
	"$CAIRN" --root "$R" umount "$m" >/dev/null
	rec=$("$CAIRN" --root "$R" commit "$id")
	# give the record a blob (untimed), so that every timed diff below is a fresh one
	"$CAIRN" --root "$R" diff "$rec" --compression zstd -o /dev/null >/dev/null
	log "-- $fs export of the debian tree (record $rec)"
	local tools=("cairn diff gzip:6" "tar -c | pigz -6")
	for ((run = 1; run <= RUNS; run++)); do
		for ((i = 0; i < 2; i++)); do
			t=${tools[$(((i + run - 1) % 2))]}
			rm -f "$SCRATCH/export.tar.gz"
			if [ "$t" = "cairn diff gzip:6" ]; then
				timed "$fs" debian export "$t" "$run" \
					"$CAIRN --root $R diff $rec --compression gzip:6 --source-date-epoch 1704067200 -o $SCRATCH/export.tar.gz" || true
				printf '%s\tdebian\texport\t%s\tdigest\t%s\n' "$fs" "$t" \
					"$(sha256sum "$SCRATCH/export.tar.gz" | cut -c1-64)" >>"$TSV"
			else
				timed "$fs" debian export "$t" "$run" \
					"tar -C $TREE --numeric-owner -cf - . | pigz -6 >$SCRATCH/export.tar.gz" || true
			fi
			printf '%s\tdebian\texport\t%s\tsize\t%s\n' "$fs" "$t" \
				"$(stat -c %s "$SCRATCH/export.tar.gz" 2>/dev/null || echo 0)" >>"$TSV"
		done
	done
	rm -f "$SCRATCH/export.tar.gz"
	cairn_store_rm "$R"
	rm -rf "$TREE"
}

# ---- main --------------------------------------------------------------------------------
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf 'fs\timage\ttag\tcase\trun\twall_s\tuser_s\tsys_s\tmax_rss_kib\tdaemon_cpu_s\tdaemon_rss_kib\n' >"$TSV"
{
	echo "start: $START"
	echo "machine: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "cairn: $CAIRN ($(python3 -c 'import json,sys; print([o["value"] for o in json.load(open(sys.argv[1])) if o["name"]=="buildtype"][0])' "$(dirname "$CAIRN")/../../meson-info/intro-buildoptions.json" 2>/dev/null || echo '?') build), import via $([ $HAVE_IMPORT = 1 ] && echo 'cairn import' || echo 'content add + import-blob')"
	echo "peers: $(tar --version | head -1); pigz $(pigz --version 2>&1 | cut -d' ' -f2); umoci $(umoci --version | awk '{print $3}'); $(containerd --version | awk '{print $1, $3}'); podman $(podman --version | awk '{print $3}')"
} >"$OUTDIR/issue8-env.txt"
for fs in $FS; do
	fs_setup "$fs"
	write_helpers
	for c in $CASES; do
		if [ "$c" = export ]; then
			run_export "$fs"
		else
			run_image "$fs" "${c%%:*}" "${c##*:}"
		fi
	done
	fs_done
done
echo "end: $(date -u +%Y-%m-%dT%H:%M:%SZ), load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUTDIR/issue8-env.txt"
python3 "$HERE/bench-report.py" "$TSV" "$OUTDIR/issue8-env.txt" ${NO_RESULTS_MD:+--no-md} "$TOP/bench/RESULTS.md"
