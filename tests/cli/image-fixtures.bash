# Image fixtures for image.bats made with umoci from files made here (root only: owners, device
# nodes, trusted. and security. xattrs).

# Debian's python3 (what make deps installs) when there is one: these tests start python often,
# and a version manager's shim in PATH costs most of a second per start.
if [ -x /usr/bin/python3 ]; then
	python3() { /usr/bin/python3 "$@"; }
fi

# fix ARGS: the python fixture builder; treecmp A B: the tree comparison.
fix() { python3 "$BATS_TEST_DIRNAME/image-fixtures.py" "$@"; }
treecmp() { python3 "$BATS_TEST_DIRNAME/treecmp.py" "$@"; }

# fill_base ROOTFS: layer 1, every kind of entry a layer can hold.
fill_base() {
	local r=$1
	mkdir -p "$r/etc" "$r/tmp" "$r/dir/sub" "$r/gone" "$r/deep/a/b/c/d" "$r/setgid" "$r/bin"
	echo hello >"$r/etc/hello"
	chmod 4755 "$r/etc/hello"
	setfattr -n user.greeting -v "hi there" "$r/etc/hello"
	chmod 1777 "$r/tmp"
	echo data >"$r/dir/sub/f"
	# file capabilities (cap_net_raw+ep) are a security. xattr; a trusted. one on a directory
	setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 "$r/dir/sub/f"
	setfattr -n trusted.cairn -v 0x00ff01 "$r/dir"
	ln "$r/dir/sub/f" "$r/dir/hl"
	ln "$r/dir/sub/f" "$r/etc/hl3"
	ln -s ../etc/hello "$r/dir/sym"
	ln -s /etc/hello "$r/abs"
	ln -s nowhere/at/all "$r/dangling"
	chown 1000:1001 "$r/dir/sub"
	chmod 0750 "$r/dir/sub"
	chown 0:42 "$r/setgid"
	chmod 2775 "$r/setgid"
	: >"$r/empty"
	echo secret >"$r/nobody"
	chown 65534:65534 "$r/nobody"
	chmod 0600 "$r/nobody"
	echo locked >"$r/zero"
	chmod 0000 "$r/zero"
	echo deep >"$r/deep/a/b/c/d/e"
	echo "odd name" >"$r/with space ü"
	echo long >"$r/$(printf 'n%.0s' {1..200})"
	head -c 1048577 /dev/urandom >"$r/bin/big"
	chmod 0755 "$r/bin/big"
	mkfifo "$r/fifo"
	mknod "$r/null" c 1 3
	mknod "$r/loop9" b 7 9
	echo x >"$r/gone/x"
	echo y >"$r/gone/y"
	echo 1 >"$r/sym-target"
	ln -s sym-target "$r/symgone"
}

# change_layer ROOTFS: layer 2, deletions (whiteouts), a changed file, a metadata-only change.
change_layer() {
	local r=$1
	rm "$r/gone/x" "$r/symgone"
	rm -r "$r/deep/a/b"
	echo changed >>"$r/etc/hello"
	chmod 0604 "$r/sym-target"
	chmod 0711 "$r/bin"
	chown 7:7 "$r/empty"
	setfattr -x user.greeting "$r/etc/hello"
	echo new >"$r/gone/new"
	ln "$r/gone/new" "$r/gone/new-link"
}

# make_umoci_image LAYOUT: tags "base" (layer 1), "t" (layers 1-3: the third one made by hand
# with an opaque directory and type changes, added with umoci raw add-layer) and "t2" (t plus
# one layer). Unpacks each tag with umoci to LAYOUT.ref/<tag>/rootfs, the expected trees.
make_umoci_image() {
	local l=$1 b=$1.bundle
	umoci init --layout "$l"
	umoci new --image "$l:t"
	umoci unpack --image "$l:t" "$b"
	fill_base "$b/rootfs"
	umoci repack --image "$l:t" "$b"
	umoci tag --image "$l:t" base
	rm -rf "$b"
	umoci unpack --image "$l:t" "$b"
	change_layer "$b/rootfs"
	umoci repack --image "$l:t" "$b"
	rm -rf "$b"
	fix opaque-layer "$l.opaque.tar"
	umoci raw add-layer --image "$l:t" "$l.opaque.tar"
	rm "$l.opaque.tar"
	umoci unpack --image "$l:t" "$b"
	echo more >"$b/rootfs/more"
	umoci repack --image "$l:t2" "$b"
	rm -rf "$b"
	local tag
	for tag in base t t2; do
		umoci unpack --image "$l:$tag" "$l.ref/$tag"
	done
}
