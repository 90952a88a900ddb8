#!/usr/bin/env bash
# make demo: the main job end to end on an image made here, showing each step and its output.
#
# It builds a three-layer OCI image with umoci (busybox-static from Debian; some files; some
# deletions), then: cairn import, ls, extract (a progress bar on a terminal), a writable record
# on top mounted and written through with chroot, umount, commit, export to an OCI layout that
# skopeo inspects, du. It unmounts what it mounted (also when a step fails), and leaves the store
# (demo-store/) and the exported image (demo-image/) for the user to explore.
#
# usage: scripts/demo.sh [CAIRN-BINARY]      (as root; `make demo` installs what it needs)
# env:   DEMO_ROOT (default ./demo-store), DEMO_IMAGE (default ./demo-image)
set -euo pipefail

cairn=${1:-build/cairn}
cairn="$(cd "$(dirname "$cairn")" && pwd)/$(basename "$cairn")"
root=${DEMO_ROOT:-$PWD/demo-store}
out=${DEMO_IMAGE:-$PWD/demo-image}
export CAIRN_ROOT=$root

bold=$'\033[1m' dim=$'\033[2m' off=$'\033[0m'
[ -t 1 ] || bold='' dim='' off=''

die() {
	echo "demo: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "run as root: the demo mounts overlayfs and writes owners as root"
[ -x "$cairn" ] || die "no cairn binary at '$cairn' (run: make build)"
for tool in umoci skopeo busybox chroot python3; do
	command -v "$tool" >/dev/null || die "'$tool' is missing (run: make deps)"
done
busybox_bin=$(command -v busybox)
# the image has no libc: only a static busybox runs in it (Debian's busybox-static)
if ldd "$busybox_bin" >/dev/null 2>&1; then
	die "'$busybox_bin' is dynamically linked (run: apt-get install busybox-static)"
fi

work=$(mktemp -d /tmp/cairn-demo.XXXXXX)
mounted=()
cleanup() {
	local rc=$? m
	for m in "${mounted[@]}"; do
		if mountpoint -q "$m"; then
			"$cairn" umount "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m"
		fi
	done
	rm -rf "$work"
	if [ "$rc" -ne 0 ]; then
		echo >&2
		echo "demo: failed (exit $rc); what it mounted is unmounted; the store is at $root" >&2
	fi
}
trap cleanup EXIT

# quote ARGS: the words as one shell line, quoted where needed; the binary shows as `cairn`.
quote() {
	local a line=''
	for a in "$@"; do
		[ "$a" = "$cairn" ] && a=cairn
		if [[ "$a" =~ ^[][A-Za-z0-9_./:=@%+,-]+$ ]]; then
			line+="$a "
		else
			line+="'${a//\'/\'\\\'\'}' "
		fi
	done
	printf '%s' "${line% }"
}

# show ARGS: print the command, then run it.
show() {
	printf '\n%s$ %s%s\n' "$bold" "$(quote "$@")" "$off"
	"$@"
}

# keep VAR ARGS: like show, and keep the output's last line in VAR.
keep() {
	local var=$1 output
	shift
	printf '\n%s$ %s%s\n' "$bold" "$(quote "$@")" "$off"
	output=$("$@")
	printf '%s\n' "$output"
	printf -v "$var" '%s' "${output##*$'\n'}"
}

section() {
	printf '\n%s== %s%s\n' "$bold" "$*" "$off"
}

note() {
	printf '%s# %s%s\n' "$dim" "$*" "$off"
}

# --- 1. an image made here --------------------------------------------------------------------

img=$work/image
bundle=$work/bundle
rootfs=$bundle/rootfs

make_image() {
	umoci init --layout "$img"
	umoci new --image "$img:demo"
	umoci config --image "$img:demo" --author "cairn demo" --config.cmd /bin/sh \
		--config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin --config.workingdir /
	umoci unpack --image "$img:demo" "$bundle" >/dev/null

	# layer 1: busybox-static from Debian and its applets as symlinks (what `busybox --install
	# -s` would make inside the image)
	mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp}
	chmod 1777 "$rootfs/tmp"
	chmod 0700 "$rootfs/root"
	install -m 0755 "$busybox_bin" "$rootfs/bin/busybox"
	local applet
	while read -r applet; do
		[ -e "$rootfs/$applet" ] || [ -L "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
	done < <("$busybox_bin" --list-full)
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
	umoci repack --refresh-bundle --image "$img:demo" \
		--history.created_by "busybox-static $("$busybox_bin" | head -1 | cut -d' ' -f2)" "$bundle"

	# layer 2: some files
	mkdir -p "$rootfs/srv/www" "$rootfs/usr/share/demo"
	echo "Welcome to a cairn demo image." >"$rootfs/etc/motd"
	echo demo >"$rootfs/etc/hostname"
	echo '<h1>hello from cairn</h1>' >"$rootfs/srv/www/index.html"
	echo 'an old page' >"$rootfs/srv/www/old.html"
	seq 1 200000 >"$rootfs/usr/share/demo/numbers.txt"
	head -c 4194304 /dev/urandom >"$rootfs/usr/share/demo/noise.bin"
	chown -R 65534:65534 "$rootfs/srv/www"
	umoci repack --refresh-bundle --image "$img:demo" --history.created_by "some files" "$bundle"

	# layer 3: deletions (whiteouts in the layer)
	rm "$rootfs/srv/www/old.html" "$rootfs/usr/share/demo/noise.bin"
	rm "$rootfs/usr/bin/wget" "$rootfs/usr/bin/telnet"
	umoci repack --image "$img:demo" --history.created_by "deletions" "$bundle"
	rm -rf "$bundle"
}

# layer_listing N: `tar -tv` of the image's layer N (1-based).
layer_listing() {
	python3 - "$img" "$1" <<'PY'
import json, stat, sys, tarfile
lay, n = sys.argv[1], int(sys.argv[2])
kind = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK}
blob = lambda d: "%s/blobs/sha256/%s" % (lay, d["digest"].split(":")[1])
idx = json.load(open(lay + "/index.json"))
m = json.load(open(blob(idx["manifests"][0])))
l = m["layers"][n - 1]
print("%s  %d bytes" % (l["digest"], l["size"]))
for t in tarfile.open(blob(l)):
    mode = stat.filemode(t.mode | kind.get(t.type, stat.S_IFREG))
    link = " -> " + t.linkname if t.linkname else ""
    print("  %s %5d:%-5d %8d  %s%s" % (mode, t.uid, t.gid, t.size, t.name, link))
PY
}

echo "${bold}cairn demo${off}: cairn is $cairn"
echo "the store: $root (CAIRN_ROOT), the exported image: $out"
rm -rf "$root" "$out"

section "1. an OCI image made here with umoci: busybox-static, some files, some deletions"
note "umoci init/new/unpack, then three rounds of: change the rootfs, umoci repack"
make_image
show umoci ls --layout "$img"
note "layer 3 deletes files with whiteouts (.wh.NAME):"
layer_listing 3

section "2. import: each layer becomes a lazy record (verified, nothing extracted yet)"
show "$cairn" import "$img:demo"
show "$cairn" ls
show "$cairn" content ls

section "3. extract: unpack the layers into snapshots (a progress bar on a terminal)"
show "$cairn" extract demo
show "$cairn" ls

section "4. a writable record on top, written through its mount"
keep work_id "$cairn" new --parent demo --desc "demo: written with chroot"
mnt=$work/mnt
mounted+=("$mnt")
show "$cairn" mount "$work_id" "$mnt"
show chroot "$mnt" /bin/sh -c 'cat /etc/motd; echo hi >/hello; ls /; ls -l /srv/www /usr/share/demo; [ -e /usr/bin/wget ] || echo "no /usr/bin/wget: layer 3 deleted it"'
show "$cairn" umount "$mnt"

section "5. commit: the writable record becomes an immutable layer"
keep top "$cairn" commit "$work_id"
show "$cairn" tag "$top" demo-hello
show "$cairn" ls

section "6. export: the record and its parents as an OCI image layout"
show "$cairn" export demo-hello -o "$out" --tag hello
show skopeo inspect "oci:$out:hello"

section "7. disk usage"
show "$cairn" du

cat <<EOT

${bold}Done.${off} The store is at $root; the exported image is at $out.
Nothing is mounted. Next commands to try:
  export CAIRN_ROOT=$root
  $cairn ls
  $cairn info demo-hello
  $cairn mount --ro demo-hello /mnt && cat /mnt/hello && $cairn umount /mnt
  $cairn new --parent demo-hello          # another writable layer on top
  $cairn import $out:hello   # no new records: the same layers
  $cairn export demo --format docker-archive -o /tmp/demo.tar --tag demo:latest
  skopeo inspect --config oci:$out:hello
  umoci unpack --image $out:hello /tmp/demo-bundle
  $cairn prune --all && $cairn gc         # and the store is empty again
EOT
