/* SPDX-License-Identifier: MIT */
/*
 * Layer apply: the input is a layer blob (tar, gzip or zstd) applied into a fresh root inside a
 * temporary directory, once in delete mode and once in overlay mode (with a lower layer as
 * parent). The directory also holds a sentinel tree and the lower layer; if anything outside the
 * root was created, changed or removed (names, types, modes, owners, sizes, times, inode numbers,
 * xattrs, contents), the harness traps. A failed apply is fine: only what it did matters.
 *
 * libarchive is not instrumented, so the fuzzer cannot learn tar header checksums by itself:
 * for an uncompressed input the harness recomputes the checksum of every header block it can
 * find (following the size fields) before applying.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/digest.h"
#include "base/fs.h"
#include "layer/apply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put(hasher *h, const void *p, size_t n)
{
	hasher_update(h, p, n);
}

static void hash_tree(hasher *h, int dfd, int depth);

/* Everything about entry @name of @dfd, into @h. */
static void hash_entry(hasher *h, int dfd, const char *name, int depth)
{
	struct stat st;
	put(h, name, strlen(name) + 1);
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		put(h, "?", 1);
		return;
	}
	uint64_t v[] = {st.st_mode,
	                st.st_uid,
	                st.st_gid,
	                (uint64_t)st.st_size,
	                st.st_ino,
	                st.st_nlink,
	                st.st_rdev,
	                (uint64_t)st.st_mtim.tv_sec,
	                (uint64_t)st.st_mtim.tv_nsec,
	                (uint64_t)st.st_ctim.tv_sec,
	                (uint64_t)st.st_ctim.tv_nsec};
	put(h, v, sizeof(v));
	if (S_ISLNK(st.st_mode)) {
		char t[4096];
		ssize_t n = readlinkat(dfd, name, t, sizeof(t));
		if (n > 0)
			put(h, t, (size_t)n);
		return;
	}
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	char x[4096];
	ssize_t n = flistxattr(fd, x, sizeof(x));
	if (n > 0)
		put(h, x, (size_t)n);
	if (S_ISDIR(st.st_mode) && depth < 16) {
		hash_tree(h, fd, depth + 1);
	} else if (S_ISREG(st.st_mode)) {
		while ((n = read(fd, x, sizeof(x))) > 0)
			put(h, x, (size_t)n);
	}
	close(fd);
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every entry of directory @dfd but "root", sorted. */
static void hash_tree(hasher *h, int dfd, int depth)
{
	int dup_fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
	if (!d) {
		if (dup_fd >= 0)
			close(dup_fd);
		put(h, "!", 1);
		return;
	}
	char *names[256];
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < 256)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    !(depth == 0 && strcmp(de->d_name, "root") == 0))
			names[n++] = strdup(de->d_name);
	closedir(d);
	qsort(names, n, sizeof(*names), cmp);
	for (size_t i = 0; i < n; i++) {
		if (names[i])
			hash_entry(h, dfd, names[i], depth);
		free(names[i]);
	}
}

static void state(int dfd, digest *ret)
{
	hasher *h = hasher_new();
	if (!h)
		__builtin_trap();
	/* Not the directory's own times: making and removing "root" changes them. */
	hash_tree(h, dfd, 0);
	hasher_peek(h, ret);
	hasher_free(h);
}

static void make_sentinels(int dfd)
{
	mkdirat(dfd, "sentinel", 0755);
	int s = openat(dfd, "sentinel", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int f = openat(s, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (f >= 0) {
		(void)!write(f, "sentinel", 8);
		close(f);
	}
	symlinkat("../root", s, "to-root");
	symlinkat("/etc", s, "etc");
	close(s);
	/* a lower layer for overlay mode's copy-up and attribute inheritance */
	mkdirat(dfd, "lower", 0755);
	int l = openat(dfd, "lower", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	mkdirat(l, "etc", 0750);
	f = openat(l, "etc/passwd", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (f >= 0) {
		(void)!write(f, "root:x:0:0::/root:/bin/sh\n", 26);
		close(f);
	}
	symlinkat("/etc/passwd", l, "etc/link");
	symlinkat("../../sentinel", l, "up");
	close(l);
	f = openat(dfd, "sibling", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (f >= 0)
		close(f);
}

static uint64_t octal(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '7'; i++)
		v = v * 8 + (uint64_t)(p[i] - '0');
	return v;
}

static void fix_checksums(uint8_t *buf, size_t len)
{
	static const uint8_t zero[512];
	for (size_t off = 0; off + 512 <= len;) {
		uint8_t *h = buf + off;
		if (memcmp(h, zero, 512) == 0) {
			off += 512;
			continue;
		}
		memset(h + 148, ' ', 8);
		unsigned sum = 0;
		for (int i = 0; i < 512; i++)
			sum += h[i];
		char field[8];
		snprintf(field, sizeof(field), "%06o", sum & 0777777);
		memcpy(h + 148, field, 7);
		uint64_t size = (h[124] & 0x80) ? 0 : octal(h + 124, 12);
		if (size > len)
			break;
		off += 512 + (size + 511) / 512 * 512;
	}
}

static void apply_once(int dfd, int blob, layer_whiteout_mode mode)
{
	if (mkdirat(dfd, "root", 0755) < 0)
		__builtin_trap();
	int root = openat(dfd, "root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int lower = openat(dfd, "lower", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0 || lower < 0)
		__builtin_trap();
	struct layer_apply_opts o = {
		.whiteout = mode,
		.parent_fds = &lower,
		.n_parents = mode == LAYER_WHITEOUT_OVERLAY ? 1 : 0,
		.what = "sha256:fuzz",
	};
	cairn_error *e = NULL;
	lseek(blob, 0, SEEK_SET);
	int r = layer_apply(root, blob, &o, NULL, &e);
	/* a failure always says what failed */
	if (r < 0 && (!e || cairn_error_code(e) != r || !*cairn_error_message(e)))
		__builtin_trap();
	cairn_error_free(e);
	close(lower);
	close(root);
	if (fs_rm_rf(dfd, "root", NULL) < 0)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[] = "/tmp/cairn-fuzz-apply-XXXXXX";
	if (!mkdtemp(dir))
		return 0;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int blob = memfd_create("layer", MFD_CLOEXEC);
	uint8_t *copy = malloc(size ? size : 1);
	if (dfd < 0 || blob < 0 || !copy)
		__builtin_trap();
	memcpy(copy, data, size);
	if (size >= 4 && !(copy[0] == 0x1f && copy[1] == 0x8b) &&
	    !(copy[0] == 0x28 && copy[1] == 0xb5 && copy[2] == 0x2f && copy[3] == 0xfd))
		fix_checksums(copy, size);
	if (fs_write_all(blob, copy, size) < 0)
		__builtin_trap();
	free(copy);
	make_sentinels(dfd);
	digest before, after;
	state(dfd, &before);
	for (int mode = 0; mode < 2; mode++) {
		apply_once(dfd, blob, (layer_whiteout_mode)mode);
		state(dfd, &after);
		if (strcmp(before.str, after.str) != 0)
			__builtin_trap(); /* something outside the root changed */
	}
	close(blob);
	close(dfd);
	int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	fs_rm_rf(tmp, dir + 5, NULL);
	close(tmp);
	return 0;
}
