/* SPDX-License-Identifier: MIT */
/*
 * layer: compression streams, apply (containerd's TestBreakouts and apply tests, spec §7.8, each
 * in the native delete mode and the overlay mode), diff (TestDiffTar, spec §8) and round trips.
 * Tars are built in memory with libarchive's writer, or by hand where a writer would refuse the
 * header.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <locale.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "base/digest.h"
#include "base/fs.h"
#include "harness.h"
#include "layer/apply.h"
#include "layer/compress.h"
#include "layer/pgzip.h"
#include "layer/diff.h"
#include "layer/util.h"

#define T0            1700000000
#define EMPTY_DIFF_ID "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"

/* ---- helpers: files ---- */

static int new_memfd(void)
{
	int fd = memfd_create("layer", MFD_CLOEXEC);
	if (fd < 0)
		test_fail(__FILE__, __LINE__, "memfd_create: %m");
	return fd;
}

static void write_all(int fd, const void *buf, size_t len)
{
	if (fs_write_all(fd, buf, len) < 0)
		test_fail(__FILE__, __LINE__, "write: %m");
}

static void rewind_fd(int fd)
{
	if (lseek(fd, 0, SEEK_SET) != 0)
		test_fail(__FILE__, __LINE__, "lseek: %m");
}

/* All bytes of @fd from offset 0, in a malloc'd buffer. */
static uint8_t *slurp(int fd, size_t *ret_len)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		test_fail(__FILE__, __LINE__, "fstat: %m");
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	if (!buf || pread(fd, buf, (size_t)st.st_size, 0) != st.st_size)
		test_fail(__FILE__, __LINE__, "read: %m");
	*ret_len = (size_t)st.st_size;
	return buf;
}

static int fd_from(const void *buf, size_t len)
{
	int fd = new_memfd();
	write_all(fd, buf, len);
	rewind_fd(fd);
	return fd;
}

/* The content of @path (relative to cwd) or NULL. */
static char *read_text(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	char *buf = calloc(1, 65536);
	size_t n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void write_text(const char *path, const char *content, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		test_fail(__FILE__, __LINE__, "create '%s': %m", path);
	write_all(fd, content, strlen(content));
	if (fchmod(fd, mode) < 0)
		test_fail(__FILE__, __LINE__, "chmod '%s': %m", path);
	close(fd);
}

static void must(int r, const char *what)
{
	if (r < 0)
		test_fail(__FILE__, __LINE__, "%s: %m", what);
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static mode_t lmode(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return 0;
	return st.st_mode;
}

static char *link_target(const char *path)
{
	static char buf[4096];
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return buf;
}

/* ---- helpers: tars ---- */

struct tb {
	struct archive *a;
	int fd;
};

static la_ssize_t tb_write(struct archive *a, void *userdata, const void *buf, size_t len)
{
	struct tb *t = userdata;
	write_all(t->fd, buf, len);
	return (la_ssize_t)len;
}

static struct tb *tb_new_format(int format)
{
	struct tb *t = calloc(1, sizeof(*t));
	t->a = archive_write_new();
	t->fd = new_memfd();
	if (archive_write_set_format(t->a, format) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(t->a, 1) != ARCHIVE_OK ||
	    archive_write_open2(t->a, t, NULL, tb_write, NULL, NULL) != ARCHIVE_OK)
		test_fail(__FILE__, __LINE__, "archive: %s", archive_error_string(t->a));
	return t;
}

static struct tb *tb_new(void)
{
	return tb_new_format(ARCHIVE_FORMAT_TAR_PAX_RESTRICTED);
}

static struct archive_entry *ent(const char *name, mode_t type, mode_t perm)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_uid(e, getuid());
	archive_entry_set_gid(e, getgid());
	archive_entry_set_mtime(e, T0, 0);
	return e;
}

static void tb_add(struct tb *t, struct archive_entry *e, const void *data, size_t len)
{
	if (data)
		archive_entry_set_size(e, (la_int64_t)len);
	if (archive_write_header(t->a, e) < ARCHIVE_WARN)
		test_fail(__FILE__, __LINE__, "write header '%s': %s", archive_entry_pathname(e),
		          archive_error_string(t->a));
	if (len && archive_write_data(t->a, data, len) != (la_ssize_t)len)
		test_fail(__FILE__, __LINE__, "write data: %s", archive_error_string(t->a));
	archive_entry_free(e);
}

static void tb_file(struct tb *t, const char *name, mode_t perm, const char *data)
{
	tb_add(t, ent(name, AE_IFREG, perm), data ? data : "", data ? strlen(data) : 0);
}

static void tb_dir(struct tb *t, const char *name, mode_t perm)
{
	tb_add(t, ent(name, AE_IFDIR, perm), NULL, 0);
}

static void tb_symlink(struct tb *t, const char *name, const char *target)
{
	struct archive_entry *e = ent(name, AE_IFLNK, 0777);
	archive_entry_set_symlink(e, target);
	tb_add(t, e, NULL, 0);
}

static void tb_link(struct tb *t, const char *name, const char *target)
{
	struct archive_entry *e = ent(name, AE_IFREG, 0644);
	archive_entry_set_hardlink(e, target);
	archive_entry_set_size(e, 0);
	tb_add(t, e, NULL, 0);
}

static void tb_node(struct tb *t, const char *name, mode_t type, mode_t perm, int maj, int min)
{
	struct archive_entry *e = ent(name, type, perm);
	archive_entry_set_rdevmajor(e, maj);
	archive_entry_set_rdevminor(e, min);
	tb_add(t, e, NULL, 0);
}

/* Close the tar; returns its memfd at offset 0 and frees @t. */
static int tb_finish(struct tb *t)
{
	if (archive_write_close(t->a) != ARCHIVE_OK)
		test_fail(__FILE__, __LINE__, "close: %s", archive_error_string(t->a));
	archive_write_free(t->a);
	int fd = t->fd;
	free(t);
	rewind_fd(fd);
	return fd;
}

/* A hand-made ustar header (for names a writer refuses, such as ""). */
static void raw_header(int fd, const char *name, char type, const char *linkname, mode_t mode,
                       size_t size)
{
	char h[512] = {0};
	strncpy(h, name, 100);
	snprintf(h + 100, 8, "%07o", (unsigned)mode);
	snprintf(h + 108, 8, "%07o", (unsigned)getuid());
	snprintf(h + 116, 8, "%07o", (unsigned)getgid());
	snprintf(h + 124, 12, "%011zo", size);
	snprintf(h + 136, 12, "%011o", (unsigned)T0);
	memset(h + 148, ' ', 8);
	h[156] = type;
	if (linkname)
		strncpy(h + 157, linkname, 100);
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += (uint8_t)h[i];
	snprintf(h + 148, 8, "%06o", sum);
	h[155] = ' ';
	write_all(fd, h, sizeof(h));
}

static void raw_data(int fd, const char *data)
{
	size_t len = strlen(data);
	char pad[512] = {0};
	write_all(fd, data, len);
	if (len % 512)
		write_all(fd, pad, 512 - len % 512);
}

static int raw_finish(int fd)
{
	char end[1024] = {0};
	write_all(fd, end, sizeof(end));
	rewind_fd(fd);
	return fd;
}

/* Compress the whole of @fd into a new memfd. */
static int compress_fd(int fd, layer_compression c, int level)
{
	size_t len;
	_cleanup_free_ uint8_t *buf = slurp(fd, &len);
	int out = new_memfd();
	struct layer_writer_opts o = {.compression = c, .level = level, .what = "test"};
	_cleanup_(layer_writer_freep) layer_writer *w = NULL;
	ASSERT_OK(layer_writer_new(out, &o, &w, ERR));
	ASSERT_OK(layer_writer_write(w, buf, len, ERR));
	ASSERT_OK(layer_writer_finish(w, NULL, NULL, NULL, NULL, ERR));
	rewind_fd(out);
	return out;
}

/* ---- helpers: apply ---- */

static int root_fd(const char *root)
{
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		test_fail(__FILE__, __LINE__, "open '%s': %m", root);
	return fd;
}

static int apply_opts(const char *root, int fd, const struct layer_apply_opts *o,
                      struct layer_apply_result *res)
{
	_cleanup_close_ int rfd = root_fd(root);
	rewind_fd(fd);
	return layer_apply(rfd, fd, o, res, ERR);
}

static int apply_mode(const char *root, int fd, layer_whiteout_mode mode)
{
	struct layer_apply_opts o = {.whiteout = mode, .what = "sha256:layer"};
	return apply_opts(root, fd, &o, NULL);
}

/* ---- helpers: trees ---- */

struct seen_ino {
	dev_t dev;
	ino_t ino;
	char *path;
};

#define TL_MTIME    1u /* non-directory mtimes, seconds */
#define TL_DIRMTIME 2u /* directory mtimes, seconds */
#define TL_STRICT   4u /* inode numbers, ctimes and nanoseconds: any change at all */

struct lister {
	FILE *out;
	unsigned flags;
	struct seen_ino *seen;
	size_t n_seen;
};

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_xattrs(struct lister *l, const char *full)
{
	char names[4096], *sorted[128];
	ssize_t n = llistxattr(full, names, sizeof(names));
	size_t k = 0;
	for (ssize_t i = 0; i < n && k < 128; i += (ssize_t)strlen(names + i) + 1)
		if (strncmp(names + i, "trusted.overlay.", 16) != 0 &&
		    strcmp(names + i, "security.selinux") != 0)
			sorted[k++] = names + i;
	qsort(sorted, k, sizeof(*sorted), cmp_names);
	for (size_t i = 0; i < k; i++) {
		char v[1024];
		ssize_t vn = lgetxattr(full, sorted[i], v, sizeof(v));
		fprintf(l->out, " x:%s=", sorted[i]);
		for (ssize_t j = 0; j < vn; j++)
			fprintf(l->out, "%02x", (uint8_t)v[j]);
	}
}

static void list_entry(struct lister *l, const char *full, const char *rel, const struct stat *st)
{
	fprintf(l->out, "%s %o %u:%u", rel, st->st_mode, st->st_uid, st->st_gid);
	if (l->flags & TL_STRICT)
		fprintf(l->out, " ino=%lu ctime=%ld.%ld mtime=%ld.%ld", (unsigned long)st->st_ino,
		        (long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec, (long)st->st_mtim.tv_sec,
		        st->st_mtim.tv_nsec);
	else if ((S_ISDIR(st->st_mode) ? TL_DIRMTIME : TL_MTIME) & l->flags)
		fprintf(l->out, " mtime=%ld", (long)st->st_mtim.tv_sec);
	if (!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
		const char *first = NULL;
		for (size_t i = 0; i < l->n_seen; i++)
			if (l->seen[i].dev == st->st_dev && l->seen[i].ino == st->st_ino)
				first = l->seen[i].path;
		if (first) {
			fprintf(l->out, " link=%s\n", first);
			return;
		}
		l->seen = realloc(l->seen, (l->n_seen + 1) * sizeof(*l->seen));
		l->seen[l->n_seen++] = (struct seen_ino){st->st_dev, st->st_ino, strdup(rel)};
	}
	if (S_ISREG(st->st_mode)) {
		_cleanup_close_ int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		digest d;
		uint64_t size = 0;
		if (fd >= 0 && digest_fd(fd, full, &d, &size, NULL) == 0)
			fprintf(l->out, " size=%" PRIu64 " %s", size, d.str + 7 + 48);
	} else if (S_ISLNK(st->st_mode)) {
		fprintf(l->out, " -> %s", link_target(full));
	} else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
		fprintf(l->out, " dev=%u,%u", major(st->st_rdev), minor(st->st_rdev));
	}
	list_xattrs(l, full);
	fputc('\n', l->out);
}

static void list_rec(struct lister *l, const char *dir, const char *rel, const char *skip)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	char *names[4096];
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < 4096)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    !(skip && strcmp(de->d_name, skip) == 0))
			names[n++] = strdup(de->d_name);
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		char full[8192], sub[8192];
		snprintf(full, sizeof(full), "%s/%s", dir, names[i]);
		snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", names[i]);
		struct stat st;
		if (lstat(full, &st) == 0) {
			list_entry(l, full, sub, &st);
			if (S_ISDIR(st.st_mode))
				list_rec(l, full, sub, NULL);
		}
		free(names[i]);
	}
}

/* A text listing of the tree at @dir (its top-level entry @skip left out); caller frees. */
static char *tree_list(const char *dir, unsigned flags, const char *skip)
{
	char *buf = NULL;
	size_t len = 0;
	struct lister l = {.out = open_memstream(&buf, &len), .flags = flags};
	list_rec(&l, dir, "", skip);
	fclose(l.out);
	for (size_t i = 0; i < l.n_seen; i++)
		free(l.seen[i].path);
	free(l.seen);
	return buf;
}

#define ASSERT_TREES_EQ(a, b, flags)                                                               \
	do {                                                                                       \
		_cleanup_free_ char *_ta = tree_list(a, flags, NULL);                              \
		_cleanup_free_ char *_tb = tree_list(b, flags, NULL);                              \
		if (strcmp(_ta, _tb) != 0)                                                         \
			test_fail(__FILE__, __LINE__,                                              \
			          "trees '%s' and '%s' differ:\n--- %s\n%s--- %s\n%s", a, b, a,    \
			          _ta, b, _tb);                                                    \
	} while (0)

/* The state of host paths a breakout would write to. */
static char *host_state(void)
{
	static const char *paths[] = {"/etc/unbroken", "/etc/passwd",    "/etc/localpasswd",
	                              "/etc/emptied",  "/etc/whitedout", "/dne",
	                              "/etc/sub",      "/localpasswd",   "/tmp/unbroken"};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
		struct stat st;
		if (lstat(paths[i], &st) == 0)
			fprintf(f, "%s %o %lu %ld %ld.%ld\n", paths[i], st.st_mode,
			        (unsigned long)st.st_ino, (long)st.st_size, (long)st.st_ctim.tv_sec,
			        st.st_ctim.tv_nsec);
		else
			fprintf(f, "%s absent\n", paths[i]);
	}
	fclose(f);
	return buf;
}

/* ---- compression ---- */

TEST(compress_detect)
{
	static const uint8_t gz[] = {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0};
	static const uint8_t gz_other_method[] = {0x1f, 0x8b, 0x07, 0, 0, 0, 0, 0};
	static const uint8_t zst[] = {0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0};
	static const uint8_t skippable[] = {0x5a, 0x2a, 0x4d, 0x18, 0, 0, 0, 0};
	static const uint8_t skippable_short[] = {0x5a, 0x2a, 0x4d, 0x18};
	ASSERT_EQ(layer_compression_detect(gz, sizeof(gz)), LAYER_COMPRESSION_GZIP);
	ASSERT_EQ(layer_compression_detect(gz, 3), LAYER_COMPRESSION_GZIP);
	ASSERT_EQ(layer_compression_detect(gz, 2), LAYER_COMPRESSION_NONE);
	ASSERT_EQ(layer_compression_detect(gz_other_method, 8), LAYER_COMPRESSION_NONE);
	ASSERT_EQ(layer_compression_detect(zst, sizeof(zst)), LAYER_COMPRESSION_ZSTD);
	ASSERT_EQ(layer_compression_detect(skippable, sizeof(skippable)), LAYER_COMPRESSION_ZSTD);
	ASSERT_EQ(layer_compression_detect(skippable_short, 4), LAYER_COMPRESSION_NONE);
	ASSERT_EQ(layer_compression_detect("", 0), LAYER_COMPRESSION_NONE);
	ASSERT_EQ(layer_compression_detect("ustar\0\0\0", 8), LAYER_COMPRESSION_NONE);
}

TEST(compress_media_types)
{
	layer_compression c;
	ASSERT_OK(layer_media_type_parse("application/vnd.oci.image.layer.v1.tar+gzip", &c, ERR));
	ASSERT_EQ(c, LAYER_COMPRESSION_GZIP);
	ASSERT_OK(layer_media_type_parse("application/vnd.oci.image.layer.v1.tar+zstd", &c, ERR));
	ASSERT_EQ(c, LAYER_COMPRESSION_ZSTD);
	ASSERT_OK(layer_media_type_parse("application/vnd.oci.image.layer.v1.tar", &c, ERR));
	ASSERT_EQ(c, LAYER_COMPRESSION_NONE);
	ASSERT_OK(layer_media_type_parse("application/vnd.docker.image.rootfs.diff.tar.gzip", &c,
	                                 ERR));
	ASSERT_EQ(c, LAYER_COMPRESSION_GZIP);
	ASSERT_OK(layer_media_type_parse("application/vnd.docker.image.rootfs.foreign.diff.tar", &c,
	                                 ERR));
	ASSERT_EQ(c, LAYER_COMPRESSION_NONE);
	ASSERT_ERR(layer_media_type_parse("application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
	                                  &c, ERR),
	           -EOPNOTSUPP);
	ASSERT_ERRMSG("'application/vnd.oci.image.layer.v1.tar+gzip+encrypted'");
	ASSERT_ERR(layer_media_type_parse("application/json", &c, ERR), -EOPNOTSUPP);
	ASSERT_STREQ(layer_media_type(LAYER_COMPRESSION_ZSTD),
	             "application/vnd.oci.image.layer.v1.tar+zstd");
	ASSERT_OK(layer_compression_parse("zstd", &c, NULL, ERR));
	ASSERT_EQ(c, LAYER_COMPRESSION_ZSTD);
	ASSERT_OK(layer_compression_parse("none", &c, NULL, ERR));
	ASSERT_EQ(c, LAYER_COMPRESSION_NONE);
	ASSERT_ERR(layer_compression_parse("bzip2", &c, NULL, ERR), -EINVAL);
	ASSERT_ERRMSG("'bzip2'");
	int level = 0;
	ASSERT_OK(layer_compression_parse("gzip", &c, &level, ERR));
	ASSERT_EQ(level, LAYER_LEVEL_DEFAULT);
	ASSERT_OK(layer_compression_parse("gzip:6", &c, &level, ERR));
	ASSERT_EQ(c, LAYER_COMPRESSION_GZIP);
	ASSERT_EQ(level, 6);
	ASSERT_OK(layer_compression_parse("zstd:19", &c, &level, ERR));
	ASSERT_EQ(c, LAYER_COMPRESSION_ZSTD);
	ASSERT_EQ(level, 19);
	const char *bad[] = {"gzip:10",          "gzip:", "gzip:6x", "gzip:-1", "zstd:0", "none:1",
	                     "gzip:99999999999", "gzip6", ":6"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_ERR(layer_compression_parse(bad[i], &c, &level, ERR), -EINVAL);
		ASSERT_ERRMSG(bad[i]);
	}
	/* where no level applies, one is refused */
	ASSERT_ERR(layer_compression_parse("gzip:6", &c, NULL, ERR), -EINVAL);
}

/* Pseudo-random but compressible test data. */
static uint8_t *test_data(size_t len)
{
	uint8_t *buf = malloc(len);
	uint32_t x = 12345;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245 + 12345;
		buf[i] = (uint8_t)("abcdefgh \n"[(x >> 16) % 10]);
	}
	return buf;
}

/* Read all of @fd through a reader; check content and digests. */
static void check_read(int fd, const uint8_t *want, size_t len, layer_compression c)
{
	struct layer_reader_opts o = {.what = "sha256:blob", .compressed_digest = true};
	_cleanup_(layer_reader_freep) layer_reader *r = NULL;
	rewind_fd(fd);
	ASSERT_OK(layer_reader_new(fd, &o, &r, ERR));
	size_t off = 0;
	const void *buf;
	ssize_t n;
	while ((n = layer_reader_read(r, &buf, ERR)) > 0) {
		ASSERT_TRUE(off + (size_t)n <= len);
		ASSERT_TRUE(memcmp(buf, want + off, (size_t)n) == 0);
		off += (size_t)n;
	}
	ASSERT_OK(n);
	ASSERT_EQ(off, len);
	ASSERT_EQ(layer_reader_compression(r), c);
	ASSERT_EQ(layer_reader_size(r), len);
	digest diffid, comp, want_diffid, want_comp;
	layer_reader_digests(r, &diffid, &comp);
	digest_buffer(want, len, &want_diffid);
	ASSERT_STREQ(diffid.str, want_diffid.str);
	ASSERT_OK(digest_fd((rewind_fd(fd), fd), "blob", &want_comp, NULL, ERR));
	ASSERT_STREQ(comp.str, want_comp.str);
	ASSERT_EQ(layer_reader_read(r, &buf, ERR), 0); /* stays at the end */
}

static void roundtrip(layer_compression c, int level, bool zlib)
{
	layer_force_zlib(zlib);
	size_t len = 3 * 1024 * 1024 + 17;
	_cleanup_free_ uint8_t *data = test_data(len);
	_cleanup_close_ int in = fd_from(data, len);
	_cleanup_close_ int out = compress_fd(in, c, level);
	check_read(out, data, len, c);
	/* and through the other inflater */
	layer_force_zlib(!zlib);
	check_read(out, data, len, c);
}

TEST(compress_gzip_roundtrip_isal)
{
	if (!layer_have_isal())
		test_skip("built without ISA-L");
	roundtrip(LAYER_COMPRESSION_GZIP, LAYER_LEVEL_DEFAULT, false);
	roundtrip(LAYER_COMPRESSION_GZIP, 3, false);
}

TEST(compress_gzip_roundtrip_zlib)
{
	roundtrip(LAYER_COMPRESSION_GZIP, LAYER_LEVEL_DEFAULT, true);
	roundtrip(LAYER_COMPRESSION_GZIP, 9, true);
	roundtrip(LAYER_COMPRESSION_GZIP, 0, true);
}

/* Compresses @len bytes of @data with gzip at zlib @level on @threads, in writes of @chunk. */
static uint8_t *gzip_blocks(const uint8_t *data, size_t len, int level, unsigned threads,
                            size_t chunk, size_t *ret_len)
{
	_cleanup_close_ int out = new_memfd();
	struct layer_writer_opts o = {.compression = LAYER_COMPRESSION_GZIP,
	                              .level = level,
	                              .threads = threads,
	                              .what = "test"};
	_cleanup_(layer_writer_freep) layer_writer *w = NULL;
	ASSERT_OK(layer_writer_new(out, &o, &w, ERR));
	for (size_t off = 0; off < len; off += chunk)
		ASSERT_OK(layer_writer_write(w, data + off, len - off < chunk ? len - off : chunk,
		                             ERR));
	ASSERT_OK(layer_writer_finish(w, NULL, NULL, NULL, NULL, ERR));
	check_read(out, data, len, LAYER_COMPRESSION_GZIP);
	layer_force_zlib(true); /* and through the other inflater */
	check_read(out, data, len, LAYER_COMPRESSION_GZIP);
	layer_force_zlib(false);
	rewind_fd(out);
	return slurp(out, ret_len);
}

/* gzip at levels 0 and 4-9 is made of blocks compressed on worker threads, one gzip member
 * each: the bytes never depend on how many threads ran or how the writes were cut, whatever
 * the length (empty, block multiples). */
TEST(compress_gzip_blocks_deterministic)
{
	const size_t lens[] = {0, 1, PGZIP_BLOCK, 2 * PGZIP_BLOCK, 5 * PGZIP_BLOCK + 4097};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t len = lens[i], n0, n1, n3;
		_cleanup_free_ uint8_t *data = test_data(len ? len : 1);
		_cleanup_free_ uint8_t *a = gzip_blocks(data, len, 6, 0, len ? len : 1, &n0);
		_cleanup_free_ uint8_t *b = gzip_blocks(data, len, 6, 1, 1000, &n1);
		_cleanup_free_ uint8_t *c = gzip_blocks(data, len, 6, 3, 65536 + 3, &n3);
		ASSERT_EQ(n0, n1);
		ASSERT_EQ(n0, n3);
		ASSERT_TRUE(memcmp(a, b, n0) == 0 && memcmp(a, c, n0) == 0);
		if (len >= PGZIP_BLOCK)
			ASSERT_TRUE(n0 < len / 2);
		/* one gzip member per block (an empty input: one empty member), each ending where
		 * zlib's single-member inflate says, together exactly the input */
		_cleanup_free_ uint8_t *back = malloc(len + 1);
		size_t in_off = 0, out_off = 0, members = 0;
		while (in_off < n0) {
			z_stream z = {0};
			ASSERT_EQ(inflateInit2(&z, 16 + MAX_WBITS), Z_OK);
			z.next_in = a + in_off;
			z.avail_in = (uInt)(n0 - in_off);
			z.next_out = back + out_off;
			z.avail_out = (uInt)(len + 1 - out_off);
			int k = inflate(&z, Z_FINISH);
			inflateEnd(&z);
			ASSERT_EQ(k, Z_STREAM_END);
			ASSERT_EQ(z.total_out,
			          len - out_off < PGZIP_BLOCK ? len - out_off : PGZIP_BLOCK);
			in_off = n0 - z.avail_in;
			out_off += z.total_out;
			members++;
		}
		ASSERT_EQ(out_off, len);
		ASSERT_EQ(members, len ? (len + PGZIP_BLOCK - 1) / PGZIP_BLOCK : 1);
		ASSERT_TRUE(len == 0 || memcmp(back, data, len) == 0);
		/* and gzip -d reads them all */
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/members.gz", test_dir);
		_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		ASSERT_TRUE(fd >= 0 && write(fd, a, n0) == (ssize_t)n0);
		ASSERT_OK(test_sh("test \"$(gzip -dc '%s' | wc -c)\" = %zu", path, len));
	}
	/* a level changes the bytes */
	size_t len = 3 * PGZIP_BLOCK, n1, n9;
	_cleanup_free_ uint8_t *data = test_data(len);
	_cleanup_free_ uint8_t *l1 = gzip_blocks(data, len, 4, 2, len, &n1);
	_cleanup_free_ uint8_t *l9 = gzip_blocks(data, len, 9, 2, len, &n9);
	ASSERT_FALSE(n1 == n9 && memcmp(l1, l9, n1) == 0);
}

/* The block writer reports a write error of the output and names it. */
TEST(compress_gzip_blocks_write_error)
{
	size_t len = 4 * PGZIP_BLOCK;
	_cleanup_free_ uint8_t *data = test_data(len);
	_cleanup_close_ int ro = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(ro >= 0);
	struct layer_writer_opts o = {
		.compression = LAYER_COMPRESSION_GZIP, .level = 6, .threads = 2, .what = "out.tgz"};
	_cleanup_(layer_writer_freep) layer_writer *w = NULL;
	ASSERT_OK(layer_writer_new(ro, &o, &w, ERR));
	int r = layer_writer_write(w, data, len, ERR);
	if (r >= 0)
		r = layer_writer_finish(w, NULL, NULL, NULL, NULL, ERR);
	ASSERT_ERR(r, -EBADF);
	ASSERT_ERRMSG("'out.tgz'");
	ASSERT_TRUE(layer_writer_write(w, data, 1, ERR) < 0);
}

TEST(compress_zstd_roundtrip)
{
	roundtrip(LAYER_COMPRESSION_ZSTD, LAYER_LEVEL_DEFAULT, false);
	roundtrip(LAYER_COMPRESSION_ZSTD, 19, false);
}

TEST(compress_none_roundtrip)
{
	size_t len = 300000;
	_cleanup_free_ uint8_t *data = test_data(len);
	_cleanup_close_ int in = fd_from(data, len);
	_cleanup_close_ int out = compress_fd(in, LAYER_COMPRESSION_NONE, LAYER_LEVEL_DEFAULT);
	check_read(out, data, len, LAYER_COMPRESSION_NONE);
	size_t olen;
	_cleanup_free_ uint8_t *obytes = slurp(out, &olen);
	ASSERT_EQ(olen, len);
	ASSERT_TRUE(memcmp(obytes, data, len) == 0);
}

TEST(compress_empty_stream)
{
	_cleanup_close_ int fd = new_memfd();
	check_read(fd, (const uint8_t *)"", 0, LAYER_COMPRESSION_NONE);
}

/* Compress with the system tools and decode: interop, multi-member gzip, skippable frames. */
TEST(compress_system_tools)
{
	size_t len = 200000;
	_cleanup_free_ uint8_t *data = test_data(len);
	_cleanup_close_ int fd = open("data", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	write_all(fd, data, len);
	/* gzip -N stores the name and mtime in the header; two members, then zstd frames */
	ASSERT_EQ(test_sh("head -c 100000 data > a && tail -c +100001 data > b && "
	                  "gzip -N -c a > ab.gz && gzip -9 -c b >> ab.gz && "
	                  "zstd -q -c a > ab.zst && zstd -q -19 -c b >> ab.zst && "
	                  "zstd -q -c --no-check data > plain.zst"),
	          0);
	/* A skippable frame before the data. */
	static const uint8_t skip[] = {0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 'c', 'r', 'n', '!'};
	_cleanup_close_ int sk = open("skip.zst", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	write_all(sk, skip, sizeof(skip));
	ASSERT_EQ(test_sh("cat plain.zst >> skip.zst"), 0);
	for (int zlib = 0; zlib < 2; zlib++) {
		layer_force_zlib(zlib);
		_cleanup_close_ int g = open("ab.gz", O_RDONLY | O_CLOEXEC);
		check_read(g, data, len, LAYER_COMPRESSION_GZIP);
	}
	_cleanup_close_ int z = open("ab.zst", O_RDONLY | O_CLOEXEC);
	check_read(z, data, len, LAYER_COMPRESSION_ZSTD);
	_cleanup_close_ int s = open("skip.zst", O_RDONLY | O_CLOEXEC);
	check_read(s, data, len, LAYER_COMPRESSION_ZSTD);
	/* our output decodes with the system tools */
	_cleanup_close_ int in = fd_from(data, len);
	_cleanup_close_ int ours = compress_fd(in, LAYER_COMPRESSION_GZIP, LAYER_LEVEL_DEFAULT);
	size_t olen;
	_cleanup_free_ uint8_t *obytes = slurp(ours, &olen);
	_cleanup_close_ int of = open("ours.gz", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	write_all(of, obytes, olen);
	ASSERT_EQ(test_sh("gzip -t ours.gz && gzip -dc ours.gz | cmp -s - data"), 0);
}

/* Read all of @fd; return the reader's final code. */
static int read_to_end(int fd)
{
	_cleanup_(layer_reader_freep) layer_reader *r = NULL;
	struct layer_reader_opts o = {.what = "sha256:broken"};
	rewind_fd(fd);
	ASSERT_OK(layer_reader_new(fd, &o, &r, ERR));
	return layer_reader_drain(r, ERR);
}

static void corrupt_cases(layer_compression c)
{
	size_t len = 100000;
	_cleanup_free_ uint8_t *data = test_data(len);
	_cleanup_close_ int in = fd_from(data, len);
	_cleanup_close_ int z = compress_fd(in, c, LAYER_LEVEL_DEFAULT);
	size_t zlen;
	_cleanup_free_ uint8_t *zb = slurp(z, &zlen);
	/* truncated anywhere: in the middle, in the trailer, after the header */
	size_t cuts[] = {zlen / 2, zlen - 1, zlen - 4, 12};
	for (size_t i = 0; i < ELEMENTSOF(cuts); i++) {
		_cleanup_close_ int t = fd_from(zb, cuts[i]);
		ASSERT_ERR(read_to_end(t), CAIRN_ECORRUPT);
		ASSERT_ERRMSG("sha256:broken");
		ASSERT_ERRMSG(layer_compression_name(c));
	}
	/* a flipped byte in the checksum trailer */
	zb[zlen - (c == LAYER_COMPRESSION_GZIP ? 6 : 2)] ^= 0x55;
	_cleanup_close_ int bad = fd_from(zb, zlen);
	ASSERT_ERR(read_to_end(bad), CAIRN_ECORRUPT);
	zb[zlen - (c == LAYER_COMPRESSION_GZIP ? 6 : 2)] ^= 0x55;
	/* garbage in the middle of the data */
	for (size_t i = zlen / 3; i < zlen / 3 + 64; i++)
		zb[i] ^= 0xa5;
	_cleanup_close_ int garbled = fd_from(zb, zlen);
	ASSERT_ERR(read_to_end(garbled), CAIRN_ECORRUPT);
}

TEST(compress_gzip_corrupt)
{
	for (int zlib = 0; zlib < 2; zlib++) {
		layer_force_zlib(zlib);
		corrupt_cases(LAYER_COMPRESSION_GZIP);
	}
}

TEST(compress_zstd_corrupt)
{
	corrupt_cases(LAYER_COMPRESSION_ZSTD);
}

TEST(compress_gzip_trailing_garbage)
{
	_cleanup_close_ int in = fd_from("hello", 5);
	for (int zlib = 0; zlib < 2; zlib++) {
		layer_force_zlib(zlib);
		_cleanup_close_ int z =
			compress_fd(in, LAYER_COMPRESSION_GZIP, LAYER_LEVEL_DEFAULT);
		size_t zlen;
		_cleanup_free_ uint8_t *zb = slurp(z, &zlen);
		zb = realloc(zb, zlen + 4);
		memcpy(zb + zlen, "junk", 4);
		_cleanup_close_ int t = fd_from(zb, zlen + 4);
		ASSERT_ERR(read_to_end(t), CAIRN_ECORRUPT);
		ASSERT_ERRMSG("not gzip");
	}
}

TEST(compress_zstd_window_limit)
{
	/* A frame that declares a 128 MiB window is refused: memory stays bounded. */
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 27);
	char out[256];
	ZSTD_inBuffer in = {"hello", 5, 0};
	ZSTD_outBuffer o = {out, sizeof(out), 0};
	/* Streamed (size unknown): the frame keeps the window it was told. */
	ZSTD_compressStream2(cc, &o, &in, ZSTD_e_continue);
	ZSTD_inBuffer none = {"", 0, 0};
	ASSERT_EQ(ZSTD_compressStream2(cc, &o, &none, ZSTD_e_end), 0);
	ZSTD_freeCCtx(cc);
	_cleanup_close_ int fd = fd_from(out, o.pos);
	ASSERT_ERR(read_to_end(fd), CAIRN_ECORRUPT);
	ASSERT_ERRMSG("memory");
}

TEST(compress_deterministic)
{
	size_t len = 500000;
	_cleanup_free_ uint8_t *data = test_data(len);
	_cleanup_close_ int in = fd_from(data, len);
	struct {
		layer_compression c;
		int level;
		bool zlib;
	} cases[] = {{LAYER_COMPRESSION_GZIP, LAYER_LEVEL_DEFAULT, false},
	             {LAYER_COMPRESSION_GZIP, 6, true},
	             {LAYER_COMPRESSION_ZSTD, 3, false}};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		layer_force_zlib(cases[i].zlib);
		_cleanup_close_ int a = compress_fd(in, cases[i].c, cases[i].level);
		_cleanup_close_ int b = compress_fd(in, cases[i].c, cases[i].level);
		digest da, db;
		ASSERT_OK(digest_fd(a, "a", &da, NULL, ERR));
		ASSERT_OK(digest_fd(b, "b", &db, NULL, ERR));
		ASSERT_STREQ(da.str, db.str);
		if (cases[i].c == LAYER_COMPRESSION_GZIP) {
			uint8_t hdr[10];
			ASSERT_EQ(pread(a, hdr, 10, 0), 10);
			static const uint8_t want[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
			ASSERT_TRUE(memcmp(hdr, want, 10) == 0);
		}
	}
}

static void zstd_with_threads(const uint8_t *data, size_t len, unsigned threads, digest *ret)
{
	int out = new_memfd();
	struct layer_writer_opts o = {
		.compression = LAYER_COMPRESSION_ZSTD, .level = 3, .threads = threads};
	_cleanup_(layer_writer_freep) layer_writer *w = NULL;
	ASSERT_OK(layer_writer_new(out, &o, &w, ERR));
	for (size_t off = 0; off < len; off += 65536)
		ASSERT_OK(layer_writer_write(w, data + off, len - off < 65536 ? len - off : 65536,
		                             ERR));
	uint64_t size, csize;
	digest diffid;
	ASSERT_OK(layer_writer_finish(w, &diffid, ret, &size, &csize, ERR));
	ASSERT_EQ(size, len);
	struct stat st;
	ASSERT_OK(fstat(out, &st));
	ASSERT_EQ(csize, st.st_size);
	ASSERT_ERR(layer_writer_finish(w, NULL, NULL, NULL, NULL, ERR), -EINVAL);
	check_read(out, data, len, LAYER_COMPRESSION_ZSTD);
	close(out);
}

TEST(compress_zstd_threads)
{
	size_t len = 8 * 1024 * 1024;
	_cleanup_free_ uint8_t *data = test_data(len);
	digest one, four;
	zstd_with_threads(data, len, 1, &one);
	zstd_with_threads(data, len, 4, &four);
	/* Output does not depend on the number of workers. */
	ASSERT_STREQ(one.str, four.str);
}

TEST(compress_writer_bad_args)
{
	_cleanup_(layer_writer_freep) layer_writer *w = NULL;
	struct layer_writer_opts o = {.compression = LAYER_COMPRESSION_GZIP, .level = 10};
	ASSERT_ERR(layer_writer_new(1, &o, &w, ERR), -EINVAL);
	ASSERT_ERRMSG("'10'");
	o = (struct layer_writer_opts){.compression = LAYER_COMPRESSION_ZSTD, .level = 99};
	ASSERT_ERR(layer_writer_new(1, &o, &w, ERR), -EINVAL);
	o = (struct layer_writer_opts){.compression = (layer_compression)7};
	ASSERT_ERR(layer_writer_new(1, &o, &w, ERR), -EINVAL);
	/* a write error names the output */
	_cleanup_close_ int ro = open("/dev/null", O_RDONLY | O_CLOEXEC);
	o = (struct layer_writer_opts){.compression = LAYER_COMPRESSION_NONE, .what = "out.tar"};
	ASSERT_OK(layer_writer_new(ro, &o, &w, ERR));
	ASSERT_ERR(layer_writer_write(w, "x", 1, ERR), -EBADF);
	ASSERT_ERRMSG("'out.tar'");
}

static void count_progress(uint64_t bytes, void *userdata)
{
	uint64_t *last = userdata;
	ASSERT_TRUE(bytes >= *last);
	*last = bytes;
}

TEST(compress_progress)
{
	size_t len = 1024 * 1024;
	_cleanup_free_ uint8_t *data = test_data(len);
	_cleanup_close_ int in = fd_from(data, len);
	_cleanup_close_ int z = compress_fd(in, LAYER_COMPRESSION_GZIP, LAYER_LEVEL_DEFAULT);
	struct stat st;
	ASSERT_OK(fstat(z, &st));
	uint64_t last = 0;
	struct layer_reader_opts o = {.progress = count_progress, .userdata = &last};
	_cleanup_(layer_reader_freep) layer_reader *r = NULL;
	ASSERT_OK(layer_reader_new(z, &o, &r, ERR));
	ASSERT_OK(layer_reader_drain(r, ERR));
	ASSERT_EQ(last, st.st_size);
	ASSERT_EQ(layer_reader_compressed_size(r), st.st_size);
	ASSERT_EQ(layer_reader_size(r), len);
}

/* ---- apply: containerd's TestBreakouts (spec §7.8), in both whiteout modes ---- */

struct breakout {
	void (*pre)(void);  /* prepare "root" (cwd is the test dir) */
	int (*build)(void); /* the tar, as a memfd */
	int err;            /* expected error, 0 for success */
	void (*check)(layer_whiteout_mode mode);
};

/* Both in-root paths, resolved in the root, are the same inode. */
static bool same_in_root(const char *a, const char *b)
{
	_cleanup_close_ int rfd = root_fd("root");
	_cleanup_free_ char *ra = NULL, *rb = NULL;
	if (root_path(rfd, a, true, &ra) < 0 || root_path(rfd, b, true, &rb) < 0)
		return false;
	/* resolved: no symlink left, so the fallback walk of fs_openat() takes them too */
	_cleanup_close_ int fa = fs_openat(rfd, ra, O_PATH, 0, NULL);
	_cleanup_close_ int fb = fs_openat(rfd, rb, O_PATH, 0, NULL);
	struct stat sa, sb;
	if (fa < 0 || fb < 0 || fstat(fa, &sa) < 0 || fstat(fb, &sb) < 0)
		return false;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Gone in delete mode; an overlay whiteout in overlay mode. */
static void assert_deleted(const char *path, layer_whiteout_mode mode)
{
	struct stat st;
	if (mode == LAYER_WHITEOUT_DELETE) {
		if (lstat(path, &st) == 0)
			test_fail(__FILE__, __LINE__, "'%s' still exists", path);
		return;
	}
	if (lstat(path, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(0, 0))
		test_fail(__FILE__, __LINE__, "'%s' is not a whiteout", path);
}

static void run_breakout(const struct breakout *c, layer_whiteout_mode mode)
{
	must(mkdir("root", 0755), "mkdir root");
	must(mkdir("outside", 0755), "mkdir outside");
	write_text("outside/sentinel", "sentinel", 0644);
	if (c->pre)
		c->pre();
	_cleanup_free_ char *before = tree_list(test_dir, TL_STRICT, "root");
	_cleanup_free_ char *host_before = host_state();
	_cleanup_close_ int fd = c->build();
	int r = apply_mode("root", fd, mode);
	if (c->err) {
		ASSERT_ERR(r, c->err);
		ASSERT_ERRMSG("sha256:layer");
	} else {
		ASSERT_OK(r);
	}
	/* Nothing outside the root was created, changed or removed. */
	_cleanup_free_ char *after = tree_list(test_dir, TL_STRICT, "root");
	_cleanup_free_ char *host_after = host_state();
	ASSERT_STREQ(after, before);
	ASSERT_STREQ(host_after, host_before);
	if (c->check)
		c->check(mode);
}

#define BREAKOUT(n, ...)                                                                           \
	static const struct breakout bo_##n = {__VA_ARGS__};                                       \
	TEST(breakout_##n##_native)                                                                \
	{                                                                                          \
		run_breakout(&bo_##n, LAYER_WHITEOUT_DELETE);                                      \
	}                                                                                          \
	TEST(breakout_##n##_overlay)                                                               \
	{                                                                                          \
		run_breakout(&bo_##n, LAYER_WHITEOUT_OVERLAY);                                     \
	}

static void check_unbroken(layer_whiteout_mode mode)
{
	_cleanup_free_ char *s = read_text("root/etc/unbroken");
	ASSERT_STREQ(s, "unbroken");
}

static void check_passwd_link(const char *name)
{
	ASSERT_TRUE(same_in_root(name, "etc/passwd"));
	_cleanup_free_ char *s = read_text("root/etc/passwd");
	ASSERT_STREQ(s, "inside");
}

static void check_localpasswd(layer_whiteout_mode mode)
{
	check_passwd_link("localpasswd");
}

static void check_localetc_localpasswd(layer_whiteout_mode mode)
{
	check_passwd_link("localetc/localpasswd");
}

static void check_mypasswd(layer_whiteout_mode mode)
{
	check_passwd_link("breakouts/mypasswd");
}

/* 1. SymlinkAbsolute */
static int b_symlink_absolute(void)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_symlink(t, "localetc", "/etc");
	tb_file(t, "localetc/unbroken", 0644, "unbroken");
	return tb_finish(t);
}
BREAKOUT(symlink_absolute, .build = b_symlink_absolute, .check = check_unbroken)

/* 2. SymlinkUpAndOut */
static int b_symlink_up_and_out(void)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_dir(t, "dummy", 0755);
	tb_symlink(t, "localetc", "/dummy/../etc");
	tb_file(t, "localetc/unbroken", 0644, "unbroken");
	return tb_finish(t);
}
BREAKOUT(symlink_up_and_out, .build = b_symlink_up_and_out, .check = check_unbroken)

/* 3. SymlinkMultipleAbsolute */
static int b_symlink_multiple_absolute(void)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_dir(t, "dummy", 0755);
	tb_symlink(t, "dummy/etc", "/etc");
	tb_symlink(t, "localetc", "/dummy/etc");
	tb_file(t, "dummy/etc/unbroken", 0644, "unbroken");
	return tb_finish(t);
}
BREAKOUT(symlink_multiple_absolute, .build = b_symlink_multiple_absolute, .check = check_unbroken)

/* 4. SymlinkMultipleRelative */
static int b_symlink_multiple_relative(void)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_dir(t, "dummy", 0755);
	tb_symlink(t, "dummy/etc", "/etc");
	tb_symlink(t, "localetc", "./dummy/etc");
	tb_file(t, "dummy/etc/unbroken", 0644, "unbroken");
	return tb_finish(t);
}
BREAKOUT(symlink_multiple_relative, .build = b_symlink_multiple_relative, .check = check_unbroken)

/* 5. SymlinkEmptyFile */
static int b_symlink_empty_file(void)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_file(t, "etc/emptied", 0644, "notempty");
	tb_symlink(t, "localetc", "/etc");
	tb_file(t, "localetc/emptied", 0644, "");
	return tb_finish(t);
}
static void c_symlink_empty_file(layer_whiteout_mode mode)
{
	_cleanup_free_ char *s = read_text("root/etc/emptied");
	ASSERT_STREQ(s, "");
}
BREAKOUT(symlink_empty_file, .build = b_symlink_empty_file, .check = c_symlink_empty_file)

/* 6./7. HardlinkRelative, HardlinkDownAndOut */
static int b_hardlink_through(const char *d1)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_file(t, "etc/passwd", 0644, "inside");
	tb_dir(t, "breakouts", 0755);
	tb_dir(t, "downandout", 0755);
	tb_symlink(t, "breakouts/d1", d1);
	tb_link(t, "breakouts/mypasswd", "/breakouts/d1/passwd");
	return tb_finish(t);
}
static int b_hardlink_relative(void)
{
	return b_hardlink_through("../../etc");
}
BREAKOUT(hardlink_relative, .build = b_hardlink_relative, .check = check_mypasswd)
static int b_hardlink_down_and_out(void)
{
	return b_hardlink_through("../downandout/../../etc");
}
BREAKOUT(hardlink_down_and_out, .build = b_hardlink_down_and_out, .check = check_mypasswd)

/* 8.-10. HardlinkAbsolute, HardlinkRelativeLong, HardlinkRelativeUpAndOut */
static int b_hardlink_via(const char *localetc)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_file(t, "etc/passwd", 0644, "inside");
	tb_symlink(t, "localetc", localetc);
	tb_link(t, "localpasswd", "/localetc/passwd");
	return tb_finish(t);
}
static int b_hardlink_absolute(void)
{
	return b_hardlink_via("/etc");
}
BREAKOUT(hardlink_absolute, .build = b_hardlink_absolute, .check = check_localpasswd)
static int b_hardlink_relative_long(void)
{
	return b_hardlink_via("../../../../../../../etc");
}
BREAKOUT(hardlink_relative_long, .build = b_hardlink_relative_long, .check = check_localpasswd)
static int b_hardlink_relative_up_and_out(void)
{
	return b_hardlink_via("upandout/../../../etc");
}
BREAKOUT(hardlink_relative_up_and_out, .build = b_hardlink_relative_up_and_out,
         .check = check_localpasswd)

/* 11./12. HardlinkDirectRelative, HardlinkDirectAbsolute */
static int b_hardlink_direct(const char *target)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_file(t, "etc/passwd", 0644, "inside");
	tb_link(t, "localpasswd", target);
	return tb_finish(t);
}
static int b_hardlink_direct_relative(void)
{
	return b_hardlink_direct("../../../../../etc/passwd");
}
BREAKOUT(hardlink_direct_relative, .build = b_hardlink_direct_relative, .check = check_localpasswd)
static int b_hardlink_direct_absolute(void)
{
	return b_hardlink_direct("/etc/passwd");
}
BREAKOUT(hardlink_direct_absolute, .build = b_hardlink_direct_absolute, .check = check_localpasswd)

/* 13. SymlinkParentDirectory: a symlink named ".." resolves to the root and is skipped. */
static int b_symlink_parent_directory(void)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_file(t, "etc/passwd", 0644, "inside");
	tb_symlink(t, "..", "/etc/");
	tb_link(t, "localpasswd", "/etc/passwd");
	return tb_finish(t);
}
BREAKOUT(symlink_parent_directory, .build = b_symlink_parent_directory, .check = check_localpasswd)

/* 14. SymlinkEmptyFilename: written by hand, libarchive refuses an empty name. */
static int b_symlink_empty_filename(void)
{
	int fd = new_memfd();
	raw_header(fd, "etc/", '5', NULL, 0755, 0);
	raw_header(fd, "etc/passwd", '0', NULL, 0644, 6);
	raw_data(fd, "inside");
	raw_header(fd, "", '2', "/etc/", 0777, 0);
	raw_header(fd, "localpasswd", '1', "/etc/passwd", 0644, 0);
	return raw_finish(fd);
}
BREAKOUT(symlink_empty_filename, .build = b_symlink_empty_filename, .check = check_localpasswd)

/* 15. SymlinkParentRelative: "localetc/sub/.." cleans to "localetc". */
static int b_symlink_parent_relative(void)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_file(t, "etc/passwd", 0644, "inside");
	tb_symlink(t, "localetc/sub/..", "/etc/");
	tb_link(t, "/localetc/localpasswd", "/etc/passwd");
	return tb_finish(t);
}
static void c_symlink_parent_relative(layer_whiteout_mode mode)
{
	check_passwd_link("localetc/localpasswd");
	ASSERT_TRUE(S_ISLNK(lmode("root/localetc")));
	ASSERT_TRUE(S_ISREG(lmode("root/etc/localpasswd")));
}
BREAKOUT(symlink_parent_relative, .build = b_symlink_parent_relative,
         .check = c_symlink_parent_relative)

/* 16. SymlinkSlashEnded */
static int b_symlink_slash_ended(void)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_file(t, "etc/passwd", 0644, "inside");
	tb_dir(t, "localetc/", 0770);
	tb_link(t, "localetc/localpasswd", "/etc/passwd");
	return tb_finish(t);
}
BREAKOUT(symlink_slash_ended, .build = b_symlink_slash_ended, .check = check_localetc_localpasswd)

/* 17./18. SymlinkOverrideDirectory(Relative): a symlink replaces a directory. */
static void pre_etc_localetc_dir(void)
{
	must(mkdir("root/etc", 0755), "mkdir");
	write_text("root/etc/passwd", "inside", 0644);
	must(mkdir("root/localetc", 0755), "mkdir");
}
static int b_override_dir(const char *target)
{
	struct tb *t = tb_new();
	tb_symlink(t, "localetc", target);
	tb_link(t, "localetc/localpasswd", "/etc/passwd");
	return tb_finish(t);
}
static int b_symlink_override_directory(void)
{
	return b_override_dir("/etc");
}
static void c_override_dir(layer_whiteout_mode mode)
{
	check_passwd_link("localetc/localpasswd");
	ASSERT_TRUE(S_ISLNK(lmode("root/localetc")));
}
BREAKOUT(symlink_override_directory, .pre = pre_etc_localetc_dir,
         .build = b_symlink_override_directory, .check = c_override_dir)
static int b_symlink_override_directory_relative(void)
{
	return b_override_dir("../../etc");
}
BREAKOUT(symlink_override_directory_relative, .pre = pre_etc_localetc_dir,
         .build = b_symlink_override_directory_relative, .check = c_override_dir)

/* 19. DirectoryOverrideSymlink: a directory replaces a symlink. */
static void pre_etc_localetc_link(void)
{
	must(mkdir("root/etc", 0755), "mkdir");
	write_text("root/etc/passwd", "inside", 0644);
	must(symlink("/etc", "root/localetc"), "symlink");
}
static int b_directory_override_symlink(void)
{
	struct tb *t = tb_new();
	tb_dir(t, "localetc/", 0755);
	tb_link(t, "localetc/localpasswd", "/etc/passwd");
	return tb_finish(t);
}
static void c_directory_override_symlink(layer_whiteout_mode mode)
{
	check_passwd_link("localetc/localpasswd");
	ASSERT_TRUE(S_ISDIR(lmode("root/localetc")));
	ASSERT_FALSE(exists("root/etc/localpasswd"));
}
BREAKOUT(directory_override_symlink, .pre = pre_etc_localetc_link,
         .build = b_directory_override_symlink, .check = c_directory_override_symlink)

/* 20. DirectoryOverrideSymlinkAndHardlink */
static void pre_symlink_and_hardlink(void)
{
	must(mkdir("root/etc", 0755), "mkdir");
	write_text("root/etc/passwd", "inside", 0644);
	must(symlink("etc", "root/localetc"), "symlink");
	must(link("root/etc/passwd", "root/etc/localpasswd"), "link");
}
static int b_directory_override_symlink_and_hardlink(void)
{
	struct tb *t = tb_new();
	tb_dir(t, "localetc/", 0755);
	tb_file(t, "localetc/localpasswd", 0644, "different");
	return tb_finish(t);
}
static void c_directory_override_symlink_and_hardlink(layer_whiteout_mode mode)
{
	ASSERT_FALSE(same_in_root("localetc/localpasswd", "etc/passwd"));
	_cleanup_free_ char *a = read_text("root/localetc/localpasswd");
	_cleanup_free_ char *b = read_text("root/etc/passwd");
	ASSERT_STREQ(a, "different");
	ASSERT_STREQ(b, "inside");
}
BREAKOUT(directory_override_symlink_and_hardlink, .pre = pre_symlink_and_hardlink,
         .build = b_directory_override_symlink_and_hardlink,
         .check = c_directory_override_symlink_and_hardlink)

/* 21.-24. Whiteouts that name the directory itself or its parent are invalid. */
static void pre_passwd(void)
{
	must(mkdir("root/etc", 0755), "mkdir");
	write_text("root/etc/passwd", "all users", 0644);
}
static void c_passwd_intact(layer_whiteout_mode mode)
{
	_cleanup_free_ char *s = read_text("root/etc/passwd");
	ASSERT_STREQ(s, "all users");
}
static int b_one_file(const char *name)
{
	struct tb *t = tb_new();
	tb_file(t, name, 0644, "");
	return tb_finish(t);
}
static int b_whiteout_root_parent(void)
{
	return b_one_file(".wh...");
}
BREAKOUT(whiteout_root_parent, .pre = pre_passwd, .build = b_whiteout_root_parent,
         .err = CAIRN_ECORRUPT, .check = c_passwd_intact)
static int b_whiteout_parent(void)
{
	return b_one_file("etc/.wh...");
}
BREAKOUT(whiteout_parent, .pre = pre_passwd, .build = b_whiteout_parent, .err = CAIRN_ECORRUPT,
         .check = c_passwd_intact)
static int b_whiteout_root(void)
{
	return b_one_file(".wh..");
}
BREAKOUT(whiteout_root, .pre = pre_passwd, .build = b_whiteout_root, .err = CAIRN_ECORRUPT,
         .check = c_passwd_intact)
static int b_whiteout_current_directory(void)
{
	return b_one_file("etc/.wh..");
}
BREAKOUT(whiteout_current_directory, .pre = pre_passwd, .build = b_whiteout_current_directory,
         .err = CAIRN_ECORRUPT, .check = c_passwd_intact)

/* 25. WhiteoutSymlink: the link goes, its target stays. */
static void pre_passwd_localetc(void)
{
	pre_passwd();
	must(symlink("/etc", "root/localetc"), "symlink");
}
static int b_whiteout_symlink(void)
{
	return b_one_file(".wh.localetc");
}
static void c_whiteout_symlink(layer_whiteout_mode mode)
{
	c_passwd_intact(mode);
	assert_deleted("root/localetc", mode);
}
BREAKOUT(whiteout_symlink, .pre = pre_passwd_localetc, .build = b_whiteout_symlink,
         .check = c_whiteout_symlink)

/* 26. WhiteoutSymlinkPath: the parent resolves through the in-root link. */
static void pre_whitedout(void)
{
	pre_passwd_localetc();
	write_text("root/etc/whitedout", "x", 0644);
}
static int b_whiteout_symlink_path(void)
{
	return b_one_file("localetc/.wh.whitedout");
}
static void c_whiteout_symlink_path(layer_whiteout_mode mode)
{
	c_passwd_intact(mode);
	assert_deleted("root/etc/whitedout", mode);
}
BREAKOUT(whiteout_symlink_path, .pre = pre_whitedout, .build = b_whiteout_symlink_path,
         .check = c_whiteout_symlink_path)

/* 27. WhiteoutDirectoryName: the prefix on a directory component is no whiteout. */
static int b_whiteout_directory_name(void)
{
	struct tb *t = tb_new();
	tb_file(t, ".wh.etc/somefile", 0644, "non-empty");
	return tb_finish(t);
}
static void c_whiteout_directory_name(layer_whiteout_mode mode)
{
	c_passwd_intact(mode);
	_cleanup_free_ char *s = read_text("root/.wh.etc/somefile");
	ASSERT_STREQ(s, "non-empty");
}
BREAKOUT(whiteout_directory_name, .pre = pre_passwd, .build = b_whiteout_directory_name,
         .check = c_whiteout_directory_name)

/* 28. WhiteoutDeadSymlinkParent: the parent resolves to ROOT/dne, created. */
static void pre_dead_link(void)
{
	pre_passwd();
	must(symlink("/dne", "root/localetc"), "symlink");
}
static int b_whiteout_dead_symlink_parent(void)
{
	return b_one_file("localetc/.wh.etc");
}
static void c_whiteout_dead_symlink_parent(layer_whiteout_mode mode)
{
	c_passwd_intact(mode);
	ASSERT_TRUE(S_ISDIR(lmode("root/dne")));
	ASSERT_TRUE(S_ISLNK(lmode("root/localetc")));
}
BREAKOUT(whiteout_dead_symlink_parent, .pre = pre_dead_link,
         .build = b_whiteout_dead_symlink_parent, .check = c_whiteout_dead_symlink_parent)

/* 29. WhiteoutRelativePath: "dne/../.wh.etc" cleans to ".wh.etc". */
static int b_whiteout_relative_path(void)
{
	return b_one_file("dne/../.wh.etc");
}
static void c_whiteout_relative_path(layer_whiteout_mode mode)
{
	ASSERT_FALSE(exists("root/etc/passwd"));
	assert_deleted("root/etc", mode);
}
BREAKOUT(whiteout_relative_path, .pre = pre_dead_link, .build = b_whiteout_relative_path,
         .check = c_whiteout_relative_path)

/* 30. HardlinkSymlinkBeforeCreateTarget: a hardlink of a dangling symlink. */
static int b_hardlink_symlink_before_create_target(void)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_symlink(t, "localpasswd", "/etc/passwd");
	tb_link(t, "localpasswd-dup", "localpasswd");
	tb_file(t, "etc/passwd", 0644, "after");
	return tb_finish(t);
}
static void c_hardlink_symlink_before_create_target(layer_whiteout_mode mode)
{
	ASSERT_TRUE(S_ISLNK(lmode("root/localpasswd-dup")));
	ASSERT_TRUE(same_in_root("localpasswd-dup", "etc/passwd"));
}
BREAKOUT(hardlink_symlink_before_create_target, .build = b_hardlink_symlink_before_create_target,
         .check = c_hardlink_symlink_before_create_target)

/* 31./32. HardlinkSymlinkRelative, HardlinkSymlinkAbsolute */
static int b_hardlink_symlink(const char *target)
{
	struct tb *t = tb_new();
	tb_dir(t, "etc", 0755);
	tb_file(t, "etc/passwd", 0644, "inside");
	tb_symlink(t, "passwdlink", target);
	tb_link(t, "localpasswd", "/passwdlink");
	return tb_finish(t);
}
static void c_hardlink_symlink(layer_whiteout_mode mode)
{
	ASSERT_TRUE(S_ISLNK(lmode("root/localpasswd")));
	ASSERT_TRUE(S_ISLNK(lmode("root/passwdlink")));
	_cleanup_free_ char *a = strdup(link_target("root/localpasswd"));
	ASSERT_STREQ(a, link_target("root/passwdlink"));
	check_passwd_link("localpasswd");
	check_passwd_link("passwdlink");
}
static int b_hardlink_symlink_relative(void)
{
	return b_hardlink_symlink("../../../../../etc/passwd");
}
BREAKOUT(hardlink_symlink_relative, .build = b_hardlink_symlink_relative,
         .check = c_hardlink_symlink)
static int b_hardlink_symlink_absolute(void)
{
	return b_hardlink_symlink("/etc/passwd");
}
BREAKOUT(hardlink_symlink_absolute, .build = b_hardlink_symlink_absolute,
         .check = c_hardlink_symlink)

/* 33. HardlinkSymlinkChmod: a mode for a hardlink of a symlink is not applied through it. */
static char chmod_a[4200], chmod_b[4200];
static void pre_chmod(void)
{
	snprintf(chmod_a, sizeof(chmod_a), "%s/outside/A", test_dir);
	snprintf(chmod_b, sizeof(chmod_b), "%s/outside/B", test_dir);
	write_text(chmod_a, "a", 0400);
	write_text(chmod_b, "b", 0640);
}
static int b_hardlink_symlink_chmod(void)
{
	struct tb *t = tb_new();
	tb_symlink(t, chmod_b, chmod_a);
	struct archive_entry *e = ent("sketchylink", AE_IFREG, 0666);
	archive_entry_set_hardlink(e, chmod_b);
	archive_entry_set_size(e, 0);
	tb_add(t, e, NULL, 0);
	return tb_finish(t);
}
static void c_hardlink_symlink_chmod(layer_whiteout_mode mode)
{
	ASSERT_EQ(lmode(chmod_a) & 07777, 0400);
	ASSERT_EQ(lmode(chmod_b) & 07777, 0640);
	ASSERT_TRUE(S_ISLNK(lmode("root/sketchylink")));
}
BREAKOUT(hardlink_symlink_chmod, .pre = pre_chmod, .build = b_hardlink_symlink_chmod,
         .check = c_hardlink_symlink_chmod)

/* 34. SymlinkOverridePath (2.x): a symlink to "/" replaces a directory, files written through
 * it land in the root, then a directory replaces the symlink again. */
static char breakout_name[64];
static int b_symlink_override_path(void)
{
	snprintf(breakout_name, sizeof(breakout_name), "breakout-%d", (int)getpid());
	char p[256];
	snprintf(p, sizeof(p), "foo/tmp/%s", breakout_name);
	struct tb *t = tb_new();
	tb_dir(t, "foo", 0755);
	tb_dir(t, "foo/tmp", 0755);
	tb_file(t, p, 0644, "012");
	tb_symlink(t, "foo", "/");
	tb_file(t, p, 0644, "345");
	tb_dir(t, "foo", 0755);
	tb_dir(t, "foo/tmp", 0755);
	tb_file(t, p, 0644, "678");
	return tb_finish(t);
}
static void c_symlink_override_path(layer_whiteout_mode mode)
{
	char p[512];
	snprintf(p, sizeof(p), "/tmp/%s", breakout_name);
	ASSERT_FALSE(exists(p));
	snprintf(p, sizeof(p), "root/foo/tmp/%s", breakout_name);
	_cleanup_free_ char *s = read_text(p);
	ASSERT_STREQ(s, "678");
	snprintf(p, sizeof(p), "root/tmp/%s", breakout_name);
	_cleanup_free_ char *r = read_text(p);
	ASSERT_STREQ(r, "345");
}
BREAKOUT(symlink_override_path, .build = b_symlink_override_path, .check = c_symlink_override_path)

/* Beyond containerd's list: "../" names, absolute names, writes through a symlink to a file
 * outside, a hardlink to a host file, a device through a link. */
static int b_dotdot_names(void)
{
	struct tb *t = tb_new();
	tb_file(t, "../escaped", 0644, "x");
	tb_file(t, "../../../../tmp/unbroken", 0644, "x");
	tb_file(t, "/etc/unbroken", 0644, "unbroken");
	tb_dir(t, "a/../../b", 0755);
	return tb_finish(t);
}
static void c_dotdot_names(layer_whiteout_mode mode)
{
	ASSERT_TRUE(exists("root/escaped"));
	ASSERT_TRUE(exists("root/tmp/unbroken"));
	ASSERT_TRUE(S_ISDIR(lmode("root/b")));
	check_unbroken(mode);
}
BREAKOUT(dotdot_names, .build = b_dotdot_names, .check = c_dotdot_names)

static void pre_outside_link(void)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/outside/sentinel", test_dir);
	must(symlink(p, "root/out"), "symlink");
	must(symlink("../outside", "root/outdir"), "symlink");
}
static int b_write_through_symlink(void)
{
	struct tb *t = tb_new();
	tb_file(t, "out", 0644, "replaced");      /* replaces the link, never writes through it */
	tb_file(t, "outdir/sentinel", 0644, "x"); /* parent resolves to ROOT/outside */
	tb_node(t, "outdir/fifo", AE_IFIFO, 0644, 0, 0);
	tb_link(t, "hostpasswd", "/etc/passwd"); /* ROOT/etc/passwd does not exist */
	return tb_finish(t);
}
BREAKOUT(write_through_symlink, .pre = pre_outside_link, .build = b_write_through_symlink,
         .err = -ENOENT)

/* Every breakout again through the component walk fs_openat() uses without openat2. */
static const struct breakout *all_breakouts[] = {
	&bo_symlink_absolute,
	&bo_symlink_up_and_out,
	&bo_symlink_multiple_absolute,
	&bo_symlink_multiple_relative,
	&bo_symlink_empty_file,
	&bo_hardlink_relative,
	&bo_hardlink_down_and_out,
	&bo_hardlink_absolute,
	&bo_hardlink_relative_long,
	&bo_hardlink_relative_up_and_out,
	&bo_hardlink_direct_relative,
	&bo_hardlink_direct_absolute,
	&bo_symlink_parent_directory,
	&bo_symlink_empty_filename,
	&bo_symlink_parent_relative,
	&bo_symlink_slash_ended,
	&bo_symlink_override_directory,
	&bo_symlink_override_directory_relative,
	&bo_directory_override_symlink,
	&bo_directory_override_symlink_and_hardlink,
	&bo_whiteout_root_parent,
	&bo_whiteout_parent,
	&bo_whiteout_root,
	&bo_whiteout_current_directory,
	&bo_whiteout_symlink,
	&bo_whiteout_symlink_path,
	&bo_whiteout_directory_name,
	&bo_whiteout_dead_symlink_parent,
	&bo_whiteout_relative_path,
	&bo_hardlink_symlink_before_create_target,
	&bo_hardlink_symlink_relative,
	&bo_hardlink_symlink_absolute,
	&bo_symlink_override_path,
	&bo_dotdot_names,
	&bo_write_through_symlink,
};

TEST(breakouts_fallback_walk)
{
	fs_force_fallback(true);
	char base[4096];
	snprintf(base, sizeof(base), "%s", test_dir);
	for (size_t i = 0; i < ELEMENTSOF(all_breakouts); i++)
		for (int mode = 0; mode < 2; mode++) {
			snprintf(test_dir, 4096, "%s/case-%zu-%d", base, i, mode);
			must(mkdir(test_dir, 0700), "mkdir");
			must(chdir(test_dir), "chdir");
			run_breakout(all_breakouts[i], (layer_whiteout_mode)mode);
		}
}

/* ---- apply: other tests ---- */

static void in_both_modes(void (*fn)(layer_whiteout_mode))
{
	char base[4096];
	snprintf(base, sizeof(base), "%s", test_dir);
	for (int mode = 0; mode < 2; mode++) {
		snprintf(test_dir, 4096, "%s/mode-%d", base, mode);
		must(mkdir(test_dir, 0700), "mkdir");
		must(chdir(test_dir), "chdir");
		fn((layer_whiteout_mode)mode);
	}
}

/* TestApplyTar/DirectoryCreation: missing parents are created. */
static void directory_creation(layer_whiteout_mode mode)
{
	must(mkdir("root", 0755), "mkdir");
	must(mkdir("root/etc", 0755), "mkdir");
	struct tb *t = tb_new();
	tb_dir(t, "/etc/subdir", 0755);
	tb_dir(t, "/etc/subdir2/", 0755);
	tb_dir(t, "/etc/subdir2/more", 0755);
	tb_dir(t, "/other/noparent-1/1", 0755);
	tb_dir(t, "/other/noparent-2/2/", 0755);
	_cleanup_close_ int fd = tb_finish(t);
	ASSERT_OK(apply_mode("root", fd, mode));
	const char *want[] = {"etc/subdir", "etc/subdir2", "etc/subdir2/more", "other/noparent-1/1",
	                      "other/noparent-2/2"};
	for (size_t i = 0; i < ELEMENTSOF(want); i++) {
		char p[256];
		snprintf(p, sizeof(p), "root/%s", want[i]);
		ASSERT_TRUE(S_ISDIR(lmode(p)));
	}
	/* implicit parents: 0755, umask-proof */
	ASSERT_EQ(lmode("root/other") & 07777, 0755);
}

TEST(apply_directory_creation)
{
	umask(077);
	in_both_modes(directory_creation);
}

/* TestTarWithXattr, and the xattrs that are never applied. */
static void xattrs(layer_whiteout_mode mode)
{
	must(mkdir("root", 0755), "mkdir");
	static const char selinux[] = "unconfined_u:object_r:default_t:s0\0";
	static const uint8_t cap[20] = {1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0,
	                                0, 0, 0, 0, 0,    0, 0, 0, 0, 0};
	struct tb *t = tb_new();
	struct archive_entry *e = ent("file", AE_IFREG, 0755);
	archive_entry_xattr_add_entry(e, "user.key", "value", 5);
	archive_entry_xattr_add_entry(e, "security.selinux", selinux, sizeof(selinux) - 1);
	archive_entry_xattr_add_entry(e, "security.capability", cap, sizeof(cap));
	archive_entry_xattr_add_entry(e, "trusted.overlay.opaque", "y", 1);
	archive_entry_xattr_add_entry(e, "trusted.other", "z", 1);
	tb_add(t, e, "#!/bin/true\n", 12);
	e = ent("dir", AE_IFDIR, 0755);
	archive_entry_xattr_add_entry(e, "trusted.overlay.opaque", "y", 1);
	archive_entry_xattr_add_entry(e, "user.overlay.opaque", "y", 1);
	archive_entry_xattr_add_entry(e, "user.dir", "d", 1);
	tb_add(t, e, NULL, 0);
	e = ent("link", AE_IFLNK, 0777);
	archive_entry_set_symlink(e, "file");
	archive_entry_xattr_add_entry(e, "user.nope", "n", 1); /* EPERM on a symlink: skipped */
	archive_entry_xattr_add_entry(e, "security.cairn", "s", 1);
	tb_add(t, e, NULL, 0);
	_cleanup_close_ int fd = tb_finish(t);
	ASSERT_OK(apply_mode("root", fd, mode));
	char v[256];
	ASSERT_EQ(getxattr("root/file", "user.key", v, sizeof(v)), 5);
	ASSERT_TRUE(memcmp(v, "value", 5) == 0);
	ssize_t n = getxattr("root/file", "security.selinux", v, sizeof(v));
	if (n >= 0) {
		ASSERT_EQ(n, sizeof(selinux) - 1);
		ASSERT_TRUE(memcmp(v, selinux, (size_t)n) == 0);
	}
	ASSERT_EQ(getxattr("root/file", "security.capability", v, sizeof(v)), sizeof(cap));
	ASSERT_TRUE(memcmp(v, cap, sizeof(cap)) == 0);
	ASSERT_TRUE(getxattr("root/file", "trusted.overlay.opaque", v, sizeof(v)) < 0);
	ASSERT_TRUE(getxattr("root/file", "trusted.other", v, sizeof(v)) < 0);
	ASSERT_TRUE(getxattr("root/dir", "trusted.overlay.opaque", v, sizeof(v)) < 0);
	ASSERT_EQ(getxattr("root/dir", "user.dir", v, sizeof(v)), 1);
	/* on the link itself, not its target */
	ASSERT_EQ(lgetxattr("root/link", "security.cairn", v, sizeof(v)), 1);
	ASSERT_TRUE(getxattr("root/file", "security.cairn", v, sizeof(v)) < 0);
	/* user.overlay.* means something to overlayfs only in overlay mode */
	n = getxattr("root/dir", "user.overlay.opaque", v, sizeof(v));
	ASSERT_EQ(n, mode == LAYER_WHITEOUT_OVERLAY ? -1 : 1);
}

TEST(apply_xattrs)
{
	in_both_modes(xattrs);
}

/* The same through /proc/self/fd, as on kernels without setxattrat() (before 6.13). */
TEST(apply_xattrs_proc_fallback)
{
	xattr_force_proc(true);
	in_both_modes(xattrs);
}

/* Owners, setuid/setgid/sticky after chown, no_same_owner, times, devices, fifos. */
static void owners_modes(layer_whiteout_mode mode)
{
	must(mkdir("root", 0755), "mkdir");
	must(mkdir("root2", 0755), "mkdir");
	struct tb *t = tb_new_format(ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE); /* sub-second times */
	struct archive_entry *e = ent("dir", AE_IFDIR, 01777);
	archive_entry_set_uid(e, 1234);
	archive_entry_set_gid(e, 5678);
	archive_entry_set_mtime(e, 1000000000, 500);
	tb_add(t, e, NULL, 0);
	e = ent("dir/suid", AE_IFREG, 06755);
	archive_entry_set_uid(e, 1000);
	archive_entry_set_gid(e, 1000);
	archive_entry_set_mtime(e, 1200000000, 123456789);
	archive_entry_set_atime(e, 1300000000, 0);
	tb_add(t, e, "x", 1);
	e = ent("dir/old", AE_IFREG, 0600);
	archive_entry_set_mtime(e, -100, 0); /* before 1970: becomes 0 */
	tb_add(t, e, "", 0);
	e = ent("dir/link", AE_IFLNK, 0777);
	archive_entry_set_symlink(e, "suid");
	archive_entry_set_uid(e, 42);
	archive_entry_set_gid(e, 43);
	archive_entry_set_mtime(e, 1100000000, 0);
	tb_add(t, e, NULL, 0);
	tb_node(t, "dir/null", AE_IFCHR, 0666, 1, 3);
	tb_node(t, "dir/loop", AE_IFBLK, 0660, 7, 0);
	tb_node(t, "dir/fifo", AE_IFIFO, 0640, 0, 0);
	_cleanup_close_ int fd = tb_finish(t);
	ASSERT_OK(apply_mode("root", fd, mode));
	struct stat st;
	ASSERT_OK(lstat("root/dir", &st));
	ASSERT_EQ(st.st_mode & 07777, 01777);
	ASSERT_EQ(st.st_uid, 1234);
	ASSERT_EQ(st.st_gid, 5678);
	/* the directory's mtime survived the creation of its children */
	ASSERT_EQ(st.st_mtim.tv_sec, 1000000000);
	ASSERT_EQ(st.st_mtim.tv_nsec, 500);
	ASSERT_OK(lstat("root/dir/suid", &st));
	ASSERT_EQ(st.st_mode & 07777, 06755);
	ASSERT_EQ(st.st_uid, 1000);
	ASSERT_EQ(st.st_mtim.tv_sec, 1200000000);
	ASSERT_EQ(st.st_mtim.tv_nsec, 123456789);
	ASSERT_EQ(st.st_atim.tv_sec, 1300000000);
	ASSERT_OK(lstat("root/dir/old", &st));
	ASSERT_EQ(st.st_mtim.tv_sec, 0);
	ASSERT_OK(lstat("root/dir/link", &st));
	ASSERT_TRUE(S_ISLNK(st.st_mode));
	ASSERT_EQ(st.st_uid, 42);
	ASSERT_EQ(st.st_mtim.tv_sec, 1100000000);
	ASSERT_OK(lstat("root/dir/null", &st));
	ASSERT_TRUE(S_ISCHR(st.st_mode));
	ASSERT_EQ(st.st_rdev, makedev(1, 3));
	ASSERT_EQ(st.st_mode & 07777, 0666);
	ASSERT_OK(lstat("root/dir/loop", &st));
	ASSERT_TRUE(S_ISBLK(st.st_mode));
	ASSERT_EQ(st.st_rdev, makedev(7, 0));
	ASSERT_OK(lstat("root/dir/fifo", &st));
	ASSERT_TRUE(S_ISFIFO(st.st_mode));
	ASSERT_EQ(st.st_mode & 07777, 0640);
	/* no_same_owner: everything belongs to the caller */
	struct layer_apply_opts o = {.whiteout = mode, .no_same_owner = true};
	ASSERT_OK(apply_opts("root2", fd, &o, NULL));
	ASSERT_OK(lstat("root2/dir/suid", &st));
	ASSERT_EQ(st.st_uid, getuid());
	ASSERT_EQ(st.st_mode & 07777, 06755);
}

TEST(apply_owners_modes_times)
{
	if (getuid() != 0)
		test_skip("needs root for chown and mknod");
	in_both_modes(owners_modes);
}

/* Long names in the pax, GNU and ustar formats. */
TEST(apply_long_names)
{
	char dir[200], name[400], target[300];
	memset(dir, 'd', sizeof(dir) - 1);
	dir[sizeof(dir) - 1] = '\0';
	snprintf(name, sizeof(name), "%s/%0150d", dir, 7);
	memset(target, 't', sizeof(target) - 1);
	target[sizeof(target) - 1] = '\0';
	int formats[] = {ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FORMAT_TAR_GNUTAR};
	for (size_t i = 0; i < ELEMENTSOF(formats); i++) {
		char root[32];
		snprintf(root, sizeof(root), "root%zu", i);
		must(mkdir(root, 0755), "mkdir");
		struct tb *t = tb_new_format(formats[i]);
		tb_file(t, name, 0644, "long");
		tb_symlink(t, "sym", target);
		tb_link(t, "hard", name);
		_cleanup_close_ int fd = tb_finish(t);
		ASSERT_OK(apply_mode(root, fd, LAYER_WHITEOUT_DELETE));
		char p[1024];
		snprintf(p, sizeof(p), "%s/%s", root, name);
		_cleanup_free_ char *s = read_text(p);
		ASSERT_STREQ(s, "long");
		snprintf(p, sizeof(p), "%s/sym", root);
		ASSERT_STREQ(link_target(p), target);
		snprintf(p, sizeof(p), "%s/hard", root);
		_cleanup_free_ char *h = read_text(p);
		ASSERT_STREQ(h, "long");
	}
}

/* TestPrefixHeaderReadable: a gzip'ed ustar whose name uses the prefix field, NoSameOwner. */
TEST(apply_prefix_header_readable)
{
	char prefix[97];
	memset(prefix, 'a', 96);
	prefix[96] = '\0';
	/* a ustar header by hand: name "foo", prefix "aaa…a" (path of 100 bytes) */
	int plain = new_memfd();
	char h[512] = {0};
	memcpy(h, "foo", 3);
	memcpy(h + 100, "0000644", 7);
	memcpy(h + 108, "0001750", 7);
	memcpy(h + 116, "0001750", 7);
	memcpy(h + 124, "00000000003", 11);
	memcpy(h + 136, "14524715400", 11);
	memset(h + 148, ' ', 8);
	h[156] = '0';
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memcpy(h + 345, prefix, 96);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += (uint8_t)h[i];
	snprintf(h + 148, 8, "%06o", sum);
	h[155] = ' ';
	write_all(plain, h, 512);
	raw_data(plain, "foo");
	raw_finish(plain);
	_cleanup_close_ int gz = compress_fd(plain, LAYER_COMPRESSION_GZIP, LAYER_LEVEL_DEFAULT);
	close(plain);
	must(mkdir("root", 0755), "mkdir");
	struct layer_apply_opts o = {.no_same_owner = true};
	struct layer_apply_result res;
	ASSERT_OK(apply_opts("root", gz, &o, &res));
	ASSERT_EQ(res.compression, LAYER_COMPRESSION_GZIP);
	char p[256];
	snprintf(p, sizeof(p), "root/%s/foo", prefix);
	_cleanup_free_ char *s = read_text(p);
	ASSERT_STREQ(s, "foo");
	struct stat st;
	ASSERT_OK(lstat(p, &st));
	ASSERT_EQ(st.st_uid, getuid());
}

/* Sparse files keep their holes: GNU tar's sparse format and pax's. */
TEST(apply_sparse)
{
	ASSERT_EQ(test_sh("mkdir src && truncate -s 64M src/sparse && echo tail >> src/sparse && "
	                  "printf head | dd of=src/sparse conv=notrunc status=none && "
	                  "tar --sparse --format=gnu -C src -cf gnu.tar sparse && "
	                  "tar --sparse --format=posix -C src -cf pax.tar sparse"),
	          0);
	const char *tars[] = {"gnu.tar", "pax.tar"};
	for (size_t i = 0; i < ELEMENTSOF(tars); i++) {
		must(mkdir("root", 0755), "mkdir");
		_cleanup_close_ int fd = open(tars[i], O_RDONLY | O_CLOEXEC);
		struct stat st;
		ASSERT_OK(fstat(fd, &st));
		ASSERT_TRUE(st.st_size < 1024 * 1024); /* the tar holds no zeros */
		ASSERT_OK(apply_mode("root", fd, LAYER_WHITEOUT_DELETE));
		ASSERT_OK(lstat("root/sparse", &st));
		ASSERT_EQ(st.st_size, 64 * 1024 * 1024 + 5);
		ASSERT_TRUE(st.st_blocks * 512 < 1024 * 1024);
		ASSERT_EQ(test_sh("cmp -s root/sparse src/sparse"), 0);
		ASSERT_EQ(test_sh("rm -rf root"), 0);
	}
}

/* TestUnpack: tars written by GNU tar (gnu and posix formats, xattrs) apply to the same tree. */
TEST(apply_gnu_tar_interop)
{
	ASSERT_EQ(test_sh("mkdir -p src/d/e && echo hi > src/d/f && ln src/d/f src/d/hard && "
	                  "ln -s ../d/f src/d/e/sym && mkfifo src/fifo && chmod 4750 src/d/f && "
	                  "chmod 1777 src/d/e && touch -d @1500000000 src/fifo && "
	                  "chown -h 12:34 src/d/e/sym && "
	                  "touch -h -d @1500000000 src/d/e/sym && touch -d @1400000000 src/d/e && "
	                  "tar --format=gnu -C src -cf gnu.tar . && "
	                  "tar --xattrs --xattrs-include='*' --format=posix -C src -cf pax.tar ."),
	          0);
	const char *tars[] = {"gnu.tar", "pax.tar"};
	for (size_t i = 0; i < ELEMENTSOF(tars); i++) {
		must(mkdir("root", 0755), "mkdir");
		_cleanup_close_ int fd = open(tars[i], O_RDONLY | O_CLOEXEC);
		ASSERT_OK(apply_mode("root", fd, LAYER_WHITEOUT_DELETE));
		ASSERT_TREES_EQ("src", "root", TL_MTIME | TL_DIRMTIME);
		ASSERT_EQ(test_sh("rm -rf root"), 0);
	}
}

/* Whiteouts in delete mode: files, directories, opaque directories (what this layer unpacked
 * before the marker stays). */
TEST(apply_whiteouts_native)
{
	ASSERT_EQ(test_sh("mkdir -p root/a/b root/x root/keepdir && touch root/a/b/c root/d "
	                  "root/x/old root/keepdir/f && ln -s keepdir root/lnk"),
	          0);
	struct tb *t = tb_new();
	tb_file(t, ".wh.d", 0644, "");
	tb_file(t, "a/.wh..wh..opq", 0644, "");
	tb_file(t, "a/new", 0644, "new");
	tb_dir(t, "x/sub", 0755);
	tb_file(t, "x/keep", 0644, "keep");
	tb_file(t, "x/.wh..wh..opq", 0644, "");
	tb_file(t, ".wh.lnk", 0644, "");
	tb_file(t, ".wh.missing", 0644, "");
	_cleanup_close_ int fd = tb_finish(t);
	ASSERT_OK(apply_mode("root", fd, LAYER_WHITEOUT_DELETE));
	ASSERT_FALSE(exists("root/d"));
	ASSERT_FALSE(exists("root/a/b"));
	ASSERT_TRUE(exists("root/a/new"));
	ASSERT_FALSE(exists("root/a/.wh..wh..opq"));
	ASSERT_TRUE(exists("root/x/keep"));
	ASSERT_TRUE(S_ISDIR(lmode("root/x/sub")));
	ASSERT_FALSE(exists("root/x/old"));
	ASSERT_FALSE(exists("root/lnk"));
	ASSERT_TRUE(exists("root/keepdir/f"));
	ASSERT_FALSE(exists("root/.wh.d"));
}

/* Whiteouts in overlay mode: devices 0/0 with the entry's owner, opaque xattrs (trusted, or
 * user with userxattr), a directory replacing a whiteout is opaque. */
static void whiteouts_overlay(bool userxattr)
{
	must(mkdir("root", 0755), "mkdir");
	struct tb *t = tb_new();
	struct archive_entry *e = ent(".wh.d", AE_IFREG, 0);
	archive_entry_set_uid(e, 7);
	archive_entry_set_gid(e, 8);
	tb_add(t, e, "", 0);
	tb_file(t, "a/.wh..wh..opq", 0644, "");
	tb_file(t, "a/new", 0644, "new");
	tb_file(t, ".wh.re", 0644, "");
	tb_dir(t, "re", 0755);
	_cleanup_close_ int fd = tb_finish(t);
	struct layer_apply_opts o = {.whiteout = LAYER_WHITEOUT_OVERLAY, .userxattr = userxattr};
	ASSERT_OK(apply_opts("root", fd, &o, NULL));
	struct stat st;
	ASSERT_OK(lstat("root/d", &st));
	ASSERT_TRUE(S_ISCHR(st.st_mode));
	ASSERT_EQ(st.st_rdev, makedev(0, 0));
	ASSERT_EQ(st.st_uid, 7);
	ASSERT_EQ(st.st_gid, 8);
	const char *key = userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque";
	const char *other = userxattr ? "trusted.overlay.opaque" : "user.overlay.opaque";
	char v[8];
	ASSERT_EQ(getxattr("root/a", key, v, sizeof(v)), 1);
	ASSERT_EQ(v[0], 'y');
	ASSERT_TRUE(getxattr("root/a", other, v, sizeof(v)) < 0);
	ASSERT_TRUE(exists("root/a/new"));
	ASSERT_FALSE(exists("root/a/.wh..wh..opq"));
	ASSERT_TRUE(S_ISDIR(lmode("root/re")));
	ASSERT_EQ(getxattr("root/re", key, v, sizeof(v)), 1);
}

TEST(apply_whiteouts_overlay)
{
	whiteouts_overlay(false);
}

TEST(apply_whiteouts_overlay_userxattr)
{
	whiteouts_overlay(true);
}

/* A layer applied in overlay mode really is an overlay layer: mount it over its parent. */
TEST(apply_overlay_mounts)
{
	ASSERT_EQ(test_sh("mkdir -p lower/a/b lower/keep lower/c mnt work && touch lower/a/b/c "
	                  "lower/d lower/c/old lower/keep/k && echo old > lower/f"),
	          0);
	must(mkdir("upper", 0755), "mkdir");
	struct tb *t = tb_new();
	tb_file(t, ".wh.d", 0644, "");
	tb_file(t, "a/.wh..wh..opq", 0644, "");
	tb_file(t, "a/new", 0644, "new");
	tb_file(t, ".wh.c", 0644, "");
	tb_dir(t, "c", 0755);
	tb_file(t, "c/fresh", 0644, "fresh");
	tb_file(t, "f", 0644, "new\n");
	_cleanup_close_ int fd = tb_finish(t);
	ASSERT_OK(apply_mode("upper", fd, LAYER_WHITEOUT_OVERLAY));
	char opts[8192];
	snprintf(opts, sizeof(opts), "lowerdir=%s/upper:%s/lower", test_dir, test_dir);
	if (mount("overlay", "mnt", "overlay", MS_RDONLY, opts) < 0)
		test_skip("cannot mount overlay");
	bool ok = !exists("mnt/d") && !exists("mnt/a/b") && exists("mnt/a/new") &&
	          !exists("mnt/c/old") && exists("mnt/c/fresh") && exists("mnt/keep/k");
	_cleanup_free_ char *f = read_text("mnt/f");
	umount2("mnt", MNT_DETACH);
	ASSERT_TRUE(ok);
	ASSERT_STREQ(f, "new\n");
}

/* A hardlink to a file of a lower layer: the target is copied up first, and a missing parent
 * takes its attributes from the lower directory (overlayfs copy-up). */
static void hardlink_copy_up(layer_whiteout_mode mode)
{
	ASSERT_EQ(test_sh("mkdir -p l0/etc l1/etc root && echo pw > l0/etc/passwd && "
	                  "chown 5:6 l0/etc l0/etc/passwd && chmod 0750 l0/etc && "
	                  "chmod 0604 l0/etc/passwd && touch -d @1500000000 l0/etc/passwd && "
	                  "echo x > l0/etc/hidden && mknod l1/etc/hidden c 0 0 && "
	                  "chown 7:8 l1/etc && chmod 0710 l1/etc"),
	          0);
	must(setxattr("l0/etc/passwd", "user.copied", "1", 1, 0), "setxattr");
	_cleanup_close_ int l0 = root_fd("l0"), l1 = root_fd("l1");
	int parents[] = {l1, l0};
	struct tb *t = tb_new();
	/* as real tars do, the link's header carries the inode's metadata (it is applied) */
	struct archive_entry *e = ent("etc/p2", AE_IFREG, 0604);
	archive_entry_set_hardlink(e, "/etc/passwd");
	archive_entry_set_uid(e, 5);
	archive_entry_set_gid(e, 6);
	archive_entry_set_mtime(e, 1500000000, 0);
	tb_add(t, e, NULL, 0);
	_cleanup_close_ int fd = tb_finish(t);
	struct layer_apply_opts o = {.whiteout = mode, .parent_fds = parents, .n_parents = 2};
	ASSERT_OK(apply_opts("root", fd, &o, NULL));
	struct stat st, st2;
	ASSERT_OK(lstat("root/etc/passwd", &st));
	ASSERT_OK(lstat("root/etc/p2", &st2));
	ASSERT_EQ(st.st_ino, st2.st_ino);
	ASSERT_EQ(st.st_nlink, 2);
	_cleanup_free_ char *s = read_text("root/etc/passwd");
	ASSERT_STREQ(s, "pw\n");
	/* the nearest lower layer that has the directory gives its attributes */
	ASSERT_OK(lstat("root/etc", &st));
	ASSERT_EQ(st.st_mode & 07777, 0710);
	ASSERT_EQ(st.st_uid, 7);
	ASSERT_OK(lstat("root/etc/passwd", &st));
	ASSERT_EQ(st.st_mode & 07777, 0604);
	ASSERT_EQ(st.st_uid, 5);
	ASSERT_EQ(st.st_mtim.tv_sec, 1500000000);
	char v[4];
	ASSERT_EQ(getxattr("root/etc/passwd", "user.copied", v, sizeof(v)), 1);
	/* a whiteout in the nearer layer hides the deeper file */
	t = tb_new();
	tb_link(t, "etc/h2", "/etc/hidden");
	_cleanup_close_ int fd2 = tb_finish(t);
	ASSERT_ERR(apply_opts("root", fd2, &o, NULL), -ENOENT);
	ASSERT_ERRMSG("'etc/h2'");
	ASSERT_FALSE(exists("root/etc/hidden"));
	/* overlay: a whiteout written by the layer itself hides the lower file too (in delete
	 * mode the root stands for the whole lower tree: what it lacks, a parent may supply) */
	if (mode != LAYER_WHITEOUT_OVERLAY)
		return;
	t = tb_new();
	tb_file(t, "etc/.wh.passwd", 0644, "");
	tb_link(t, "etc/p3", "/etc/passwd");
	_cleanup_close_ int fd3 = tb_finish(t);
	must(mkdir("root3", 0755), "mkdir");
	ASSERT_ERR(apply_opts("root3", fd3, &o, NULL), -ENOENT);
	ASSERT_ERRMSG("'etc/p3'");
	ASSERT_FALSE(exists("root3/etc/p3"));
}

TEST(apply_hardlink_copy_up)
{
	if (getuid() != 0)
		test_skip("needs root for chown");
	in_both_modes(hardlink_copy_up);
}

/* diffID verification, the result, and errors that name the layer and the entry. */
TEST(apply_result_and_diffid)
{
	struct tb *t = tb_new();
	tb_dir(t, "d", 0755);
	tb_file(t, "d/f", 0644, "hello");
	_cleanup_close_ int plain = tb_finish(t);
	digest want;
	ASSERT_OK(digest_fd(plain, "tar", &want, NULL, ERR));
	_cleanup_close_ int gz = compress_fd(plain, LAYER_COMPRESSION_GZIP, LAYER_LEVEL_DEFAULT);
	digest gzd;
	uint64_t gzsize;
	ASSERT_OK(digest_fd((rewind_fd(gz), gz), "gz", &gzd, &gzsize, ERR));
	must(mkdir("root", 0755), "mkdir");
	struct layer_apply_opts o = {.what = "sha256:blob", .expected_diffid = want.str};
	struct layer_apply_result res;
	ASSERT_OK(apply_opts("root", gz, &o, &res));
	ASSERT_STREQ(res.diffid.str, want.str);
	ASSERT_STREQ(res.compressed_digest.str, gzd.str);
	ASSERT_EQ(res.compressed_size, gzsize);
	ASSERT_EQ(res.entries, 2);
	struct stat st;
	ASSERT_OK(fstat(plain, &st));
	ASSERT_EQ(res.size, st.st_size);
	ASSERT_EQ(res.compression, LAYER_COMPRESSION_GZIP);
	/* a mismatch names both digests and the layer */
	const char *bad = EMPTY_DIFF_ID;
	o.expected_diffid = bad;
	must(mkdir("root2", 0755), "mkdir");
	ASSERT_ERR(apply_opts("root2", gz, &o, &res), CAIRN_EDIGEST);
	ASSERT_ERRMSG(bad);
	ASSERT_ERRMSG(want.str);
	ASSERT_ERRMSG("apply layer 'sha256:blob'");
	o.expected_diffid = "sha256:xyz";
	ASSERT_ERR(apply_opts("root2", gz, &o, &res), -EINVAL);
	ASSERT_ERRMSG("'sha256:xyz'");
}

/* Trailing bytes after the end marker count in the diffID (containerd drains them). */
TEST(apply_trailing_padding)
{
	struct tb *t = tb_new();
	tb_file(t, "f", 0644, "x");
	_cleanup_close_ int fd = tb_finish(t);
	char zeros[10240] = {0};
	ASSERT_EQ(lseek(fd, 0, SEEK_END) > 0, 1);
	write_all(fd, zeros, sizeof(zeros));
	digest want;
	ASSERT_OK(digest_fd((rewind_fd(fd), fd), "tar", &want, NULL, ERR));
	must(mkdir("root", 0755), "mkdir");
	struct layer_apply_result res;
	struct layer_apply_opts o = {.expected_diffid = want.str};
	ASSERT_OK(apply_opts("root", fd, &o, &res));
	ASSERT_STREQ(res.diffid.str, want.str);
}

TEST(apply_empty_layers)
{
	must(mkdir("root", 0755), "mkdir");
	struct layer_apply_result res;
	_cleanup_close_ int empty = new_memfd();
	ASSERT_OK(apply_opts("root", empty, NULL, &res));
	ASSERT_EQ(res.entries, 0);
	ASSERT_EQ(res.size, 0);
	char zeros[1024] = {0};
	_cleanup_close_ int z = fd_from(zeros, sizeof(zeros));
	struct layer_apply_opts o = {.expected_diffid = EMPTY_DIFF_ID};
	ASSERT_OK(apply_opts("root", z, &o, &res));
	ASSERT_EQ(res.entries, 0);
	_cleanup_close_ int zz = compress_fd(z, LAYER_COMPRESSION_ZSTD, LAYER_LEVEL_DEFAULT);
	ASSERT_OK(apply_opts("root", zz, &o, &res));
	ASSERT_EQ(res.compression, LAYER_COMPRESSION_ZSTD);
}

/* Truncated or corrupt tars, gzip and zstd streams: CAIRN_ECORRUPT naming the layer. */
TEST(apply_corrupt)
{
	struct tb *t = tb_new();
	tb_file(t, "a", 0644, "aaaa");
	_cleanup_free_ char *big = calloc(1, 100001);
	memset(big, 'b', 100000);
	tb_file(t, "b", 0644, big);
	_cleanup_close_ int plain = tb_finish(t);
	size_t len;
	_cleanup_free_ uint8_t *bytes = slurp(plain, &len);
	struct layer_apply_opts o = {.what = "sha256:bad"};
	int n = 0;
	for (int c = 0; c < 3; c++) {
		_cleanup_close_ int full = compress_fd(plain, (layer_compression)c, 1);
		size_t flen;
		_cleanup_free_ uint8_t *fb = slurp(full, &flen);
		size_t cuts[] = {flen / 2, flen - 2};
		for (size_t i = 0; i < ELEMENTSOF(cuts); i++) {
			char root[32];
			snprintf(root, sizeof(root), "root%d", n++);
			must(mkdir(root, 0755), "mkdir");
			_cleanup_close_ int fd = fd_from(fb, cuts[i]);
			int r = apply_opts(root, fd, &o, NULL);
			if (c == LAYER_COMPRESSION_NONE && i == 1)
				ASSERT_OK(r); /* only end-marker padding lost: a clean EOF */
			else
				ASSERT_ERR(r, CAIRN_ECORRUPT);
			if (r < 0)
				ASSERT_ERRMSG("sha256:bad");
		}
	}
	/* not a tar at all */
	memset(bytes, 'x', 2048);
	_cleanup_close_ int junk = fd_from(bytes, 2048);
	must(mkdir("rootj", 0755), "mkdir");
	ASSERT_ERR(apply_opts("rootj", junk, &o, NULL), CAIRN_ECORRUPT);
	ASSERT_ERRMSG("sha256:bad");
	/* a corrupt header checksum after a good entry: the message names the place */
	_cleanup_free_ uint8_t *b2 = slurp(plain, &len);
	b2[1024 + 148] ^= 1; /* header of "b", checksum field */
	_cleanup_close_ int badsum = fd_from(b2, len);
	must(mkdir("rootc", 0755), "mkdir");
	ASSERT_ERR(apply_opts("rootc", badsum, &o, NULL), CAIRN_ECORRUPT);
}

/* Errors name the entry: a file where a directory is needed. */
TEST(apply_error_names_entry)
{
	must(mkdir("root", 0755), "mkdir");
	struct tb *t = tb_new();
	tb_file(t, "f", 0644, "x");
	tb_file(t, "f/g", 0644, "y");
	_cleanup_close_ int fd = tb_finish(t);
	struct layer_apply_opts o = {.what = "sha256:named"};
	ASSERT_ERR(apply_opts("root", fd, &o, NULL), -ENOTDIR);
	ASSERT_ERRMSG("apply layer 'sha256:named': entry 'f/g'");
}

/* Memory stays bounded whatever the layer size: 256 MiB of file data, gzip'ed. */
static la_ssize_t to_writer(struct archive *a, void *userdata, const void *buf, size_t len)
{
	ASSERT_OK(layer_writer_write(userdata, buf, len, ERR));
	return (la_ssize_t)len;
}

TEST(apply_bounded_memory)
{
	const size_t size = 256u << 20;
	int out = new_memfd();
	struct layer_writer_opts wo = {.compression = LAYER_COMPRESSION_GZIP};
	layer_writer *w = NULL;
	ASSERT_OK(layer_writer_new(out, &wo, &w, ERR));
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	ASSERT_EQ(archive_write_open2(a, w, NULL, to_writer, NULL, NULL), ARCHIVE_OK);
	struct archive_entry *e = ent("big", AE_IFREG, 0644);
	archive_entry_set_size(e, (la_int64_t)size);
	ASSERT_EQ(archive_write_header(a, e), ARCHIVE_OK);
	archive_entry_free(e);
	uint8_t *chunk = calloc(1, 1 << 20);
	for (size_t i = 0; i < size; i += 1 << 20)
		ASSERT_EQ(archive_write_data(a, chunk, 1 << 20), 1 << 20);
	free(chunk);
	ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	ASSERT_OK(layer_writer_finish(w, NULL, NULL, NULL, NULL, ERR));
	layer_writer_free(w);
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	must(mkdir("root", 0755), "mkdir");
	struct layer_apply_result res;
	ASSERT_OK(apply_opts("root", out, NULL, &res));
	getrusage(RUSAGE_SELF, &ru1);
	ASSERT_TRUE(res.size > size);
	ASSERT_EQ(res.compression, LAYER_COMPRESSION_GZIP);
	/* maxrss is a high-water mark in KiB: applying stayed far below 64 MiB */
	printf("# maxrss before %ld KiB, after %ld KiB\n", ru0.ru_maxrss, ru1.ru_maxrss);
	ASSERT_TRUE(ru1.ru_maxrss < 64 * 1024);
	struct stat st;
	ASSERT_OK(lstat("root/big", &st));
	ASSERT_EQ(st.st_size, size);
	close(out);
}

/* ---- diff: TestDiffTar (spec §8) ---- */

#define SH(...) ASSERT_EQ(test_sh(__VA_ARGS__), 0)

/* Diff @lower (NULL: none) to @upper into an uncompressed tar; returns its memfd. */
static int diff_tar(const char *lower, const char *upper, const struct layer_diff_opts *o,
                    bool overlay, digest *ret_diffid)
{
	_cleanup_close_ int lfd = lower ? root_fd(lower) : -EBADF;
	_cleanup_close_ int ufd = root_fd(upper);
	int out = new_memfd();
	struct layer_writer_opts wo = {.compression = LAYER_COMPRESSION_NONE};
	_cleanup_(layer_writer_freep) layer_writer *w = NULL;
	ASSERT_OK(layer_writer_new(out, &wo, &w, ERR));
	if (overlay)
		ASSERT_OK(layer_diff_overlay(lfd, ufd, w, o, NULL, ERR));
	else
		ASSERT_OK(layer_diff(lfd, ufd, w, o, NULL, ERR));
	digest d, c;
	ASSERT_OK(layer_writer_finish(w, &d, &c, NULL, NULL, ERR));
	ASSERT_STREQ(d.str, c.str);
	if (ret_diffid)
		*ret_diffid = d;
	rewind_fd(out);
	return out;
}

/* The entries of the tar in @fd: "name type perm[ -> target]" lines; mtimes when asked. */
static char *tar_entries(int fd, bool mtimes)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	archive_read_support_format_empty(a);
	rewind_fd(fd);
	ASSERT_EQ(archive_read_open_fd(a, fd, 10240), ARCHIVE_OK);
	struct archive_entry *e;
	int k;
	while ((k = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		const char *hl = archive_entry_hardlink(e), *sl = archive_entry_symlink(e);
		mode_t t = archive_entry_filetype(e);
		char type = hl              ? 'h'
		            : t == AE_IFDIR ? 'd'
		            : t == AE_IFLNK ? 'l'
		            : t == AE_IFCHR ? 'c'
		            : t == AE_IFBLK ? 'b'
		            : t == AE_IFIFO ? 'p'
		                            : 'f';
		fprintf(f, "%s %c %04o", archive_entry_pathname(e), type,
		        (unsigned)archive_entry_perm(e));
		if (hl || sl)
			fprintf(f, " -> %s", hl ? hl : sl);
		if (mtimes)
			fprintf(f, " @%lld", (long long)archive_entry_mtime(e));
		fputc('\n', f);
	}
	ASSERT_EQ(k, ARCHIVE_EOF);
	archive_read_free(a);
	fclose(f);
	return buf;
}

static void check_diff(const char *lower, const char *upper, const char *want)
{
	_cleanup_close_ int fd = diff_tar(lower, upper, NULL, false, NULL);
	_cleanup_free_ char *got = tar_entries(fd, false);
	if (strcmp(got, want) != 0)
		test_fail(__FILE__, __LINE__, "diff entries:\n%s--- want:\n%s", got, want);
}

TEST(diff_empty)
{
	SH("mkdir -p a/d && echo x > a/d/f && cp -a a b && mkdir empty");
	digest d;
	_cleanup_close_ int fd = diff_tar("a", "b", NULL, false, &d);
	ASSERT_STREQ(d.str, EMPTY_DIFF_ID);
	struct stat st;
	ASSERT_OK(fstat(fd, &st));
	ASSERT_EQ(st.st_size, 1024);
	close(diff_tar(NULL, "empty", NULL, false, &d));
	ASSERT_STREQ(d.str, EMPTY_DIFF_ID);
	close(diff_tar(NULL, "empty", NULL, true, &d));
	ASSERT_STREQ(d.str, EMPTY_DIFF_ID);
}

TEST(diff_parent_inclusion)
{
	SH("mkdir -p a/d1 a/d2 && chmod 0755 a/d1 && chmod 0770 a/d2 && cp -a a b && "
	   "mkdir b/d1/d && chmod 0700 b/d1/d && echo ok > b/d2/f && chmod 0644 b/d2/f");
	check_diff("a", "b",
	           "d1/ d 0755\n"
	           "d1/d/ d 0700\n"
	           "d2/ d 0770\n"
	           "d2/f f 0644\n");
}

TEST(diff_hardlink_parent_inclusion)
{
	SH("umask 022 && mkdir -p a/d1 a/d2 a/d3 a/d4 a/d5 a/d6 && "
	   "echo 1 > a/d1/f1 && ln a/d1/f1 a/d6/l1 && echo 5 > a/d5/f1 && ln a/d5/f1 a/d6/l2 && "
	   "echo 2 > a/d2/f1 && echo 4 > a/d4/f1 && cp -a a b && "
	   "ln b/d1/f1 b/d2/l1 && ln b/d4/f1 b/d3/l1 && rm b/d6/l1 b/d6/l2");
	check_diff("a", "b",
	           "d2/ d 0755\n"
	           "d2/l1 f 0644\n"
	           "d1/ d 0755\n"
	           "d1/f1 h 0644 -> d2/l1\n"
	           "d3/ d 0755\n"
	           "d3/l1 f 0644\n"
	           "d4/ d 0755\n"
	           "d4/f1 h 0644 -> d3/l1\n"
	           "d6/ d 0755\n"
	           "d6/.wh.l1 f 0000\n"
	           "d6/.wh.l2 f 0000\n");
}

TEST(diff_update_directory_permission)
{
	SH("umask 022 && mkdir -p a/d1 a/d2 && cp -a a b && chmod 0777 b/d1 && mkdir b/d1/d && "
	   "echo x > b/d2/f");
	check_diff("a", "b",
	           "d1/ d 0777\n"
	           "d1/d/ d 0755\n"
	           "d2/ d 0755\n"
	           "d2/f f 0644\n");
}

TEST(diff_hardlink_updated_parent)
{
	SH("umask 022 && mkdir -p a/d1 a/d2 a/d3 a/d4 && echo 1 > a/d1/f1 && echo 3 > a/d3/f1 && "
	   "cp -a a b && chmod 0777 b/d1 && ln b/d1/f1 b/d2/l1 && chmod 0777 b/d4 && "
	   "ln b/d3/f1 b/d4/l1");
	check_diff("a", "b",
	           "d1/ d 0777\n"
	           "d2/ d 0755\n"
	           "d2/l1 f 0644\n"
	           "d1/f1 h 0644 -> d2/l1\n"
	           "d4/ d 0777\n"
	           "d4/l1 f 0644\n"
	           "d3/ d 0755\n"
	           "d3/f1 h 0644 -> d4/l1\n");
}

TEST(diff_whiteout_includes_parents)
{
	SH("umask 022 && mkdir -p a/d1 a/d2 a/d3 a/d4 a/d5 && touch a/d1/f1 a/d2/f1 a/d2/f2 "
	   "a/d3/f1 a/d4/f1 a/d5/f1 && cp -a a b && rm b/d1/f1 b/d2/f1 b/d3/f1 b/d4/f1 && "
	   "chmod 0777 b/d2/f2 && touch b/d3/f2 b/d4/f0 && rm -r b/d5");
	check_diff("a", "b",
	           "d1/ d 0755\n"
	           "d1/.wh.f1 f 0000\n"
	           "d2/ d 0755\n"
	           "d2/.wh.f1 f 0000\n"
	           "d2/f2 f 0777\n"
	           "d3/ d 0755\n"
	           "d3/.wh.f1 f 0000\n"
	           "d3/f2 f 0644\n"
	           "d4/ d 0755\n"
	           "d4/f0 f 0644\n"
	           "d4/.wh.f1 f 0000\n"
	           ".wh.d5 f 0000\n");
}

TEST(diff_whiteout_parent_removal)
{
	SH("umask 022 && mkdir -p a/d1 a/d2 && touch a/d2/f1 && cp -a a b && rm -r b/d1 b/d2 && "
	   "mkdir b/d3");
	check_diff("a", "b",
	           ".wh.d1 f 0000\n"
	           ".wh.d2 f 0000\n"
	           "d3/ d 0755\n");
}

TEST(diff_ignore_sockets)
{
	SH("umask 022 && mkdir a && cp -a a b && touch b/f2 b/f3 && "
	   "python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"b/s0\")'");
	ASSERT_TRUE(S_ISSOCK(lmode("b/s0")));
	check_diff("a", "b",
	           "f2 f 0644\n"
	           "f3 f 0644\n");
}

TEST(diff_source_date_epoch)
{
	const int64_t epoch = 1642941296; /* 2022-01-23T12:34:56Z */
	SH("umask 022 && mkdir a && touch a/f1 && cp -a a b && rm b/f1 && "
	   "touch -d @1500000000 b/f2 && touch b/f3");
	struct layer_diff_opts o = {.has_source_date_epoch = true, .source_date_epoch = epoch};
	digest first;
	for (int i = 0; i < 30; i++) {
		digest d;
		_cleanup_close_ int fd = diff_tar("a", "b", &o, false, &d);
		if (i == 0) {
			first = d;
			_cleanup_free_ char *got = tar_entries(fd, true);
			ASSERT_STREQ(got, ".wh.f1 f 0000 @1642941296\n"
			                  "f2 f 0644 @1500000000\n"
			                  "f3 f 0644 @1642941296\n");
		}
		ASSERT_STREQ(d.str, first.str);
	}
	/* without the epoch, whiteouts are dated 1970 and mtimes are the files' own */
	_cleanup_close_ int fd = diff_tar("a", "b", NULL, false, NULL);
	_cleanup_free_ char *got = tar_entries(fd, true);
	ASSERT_TRUE(strstr(got, ".wh.f1 f 0000 @0\n") != NULL);
	ASSERT_TRUE(strstr(got, "f2 f 0644 @1500000000\n") != NULL);
}

/* Owners, modes, xattrs (sorted, trusted.* and security.selinux left out), devices, links. */
static void diff_headers(void);

TEST(diff_headers)
{
	diff_headers();
}

TEST(diff_headers_proc_fallback)
{
	xattr_force_proc(true);
	diff_headers();
}

static void diff_headers(void)
{
	if (getuid() != 0)
		test_skip("needs root for chown and mknod");
	SH("umask 022 && mkdir -p b/d && echo x > b/d/suid && chown 12:34 b/d/suid && "
	   "chmod 4750 b/d/suid && ln -s ../elsewhere b/d/sym && mknod b/d/null c 1 3 && "
	   "mknod b/d/loop b 7 1 && mkfifo b/d/fifo && chmod 1777 b/d");
	must(setxattr("b/d/suid", "user.zz", "2", 1, 0), "setxattr");
	must(setxattr("b/d/suid", "user.aa", "1", 1, 0), "setxattr");
	must(setxattr("b/d/suid", "trusted.secret", "s", 1, 0), "setxattr");
	static const uint8_t cap[20] = {1, 0, 0, 2, 0x20};
	must(setxattr("b/d/suid", "security.capability", cap, sizeof(cap), 0), "setxattr");
	must(lsetxattr("b/d/sym", "security.cairn", "s", 1, 0), "lsetxattr");
	_cleanup_close_ int fd = diff_tar(NULL, "b", NULL, false, NULL);
	_cleanup_free_ char *got = tar_entries(fd, false);
	ASSERT_STREQ(got, "d/ d 1777\n"
	                  "d/fifo p 0644\n"
	                  "d/loop b 0644\n"
	                  "d/null c 0644\n"
	                  "d/suid f 4750\n"
	                  "d/sym l 0777 -> ../elsewhere\n");
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	rewind_fd(fd);
	ASSERT_EQ(archive_read_open_fd(a, fd, 10240), ARCHIVE_OK);
	struct archive_entry *e;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		ASSERT_TRUE(archive_entry_uname(e) == NULL || !*archive_entry_uname(e));
		ASSERT_FALSE(archive_entry_atime_is_set(e));
		ASSERT_FALSE(archive_entry_ctime_is_set(e));
		ASSERT_EQ(archive_entry_mtime_nsec(e), 0);
		if (strcmp(name, "d/sym") == 0) {
			const char *k;
			const void *v;
			size_t sz;
			ASSERT_EQ(archive_entry_xattr_reset(e), 1);
			ASSERT_EQ(archive_entry_xattr_next(e, &k, &v, &sz), ARCHIVE_OK);
			ASSERT_STREQ(k, "security.cairn");
		}
		if (strcmp(name, "d/null") == 0) {
			ASSERT_EQ(archive_entry_rdevmajor(e), 1);
			ASSERT_EQ(archive_entry_rdevminor(e), 3);
		}
		if (strcmp(name, "d/suid") != 0)
			continue;
		ASSERT_EQ(archive_entry_uid(e), 12);
		ASSERT_EQ(archive_entry_gid(e), 34);
		ASSERT_EQ(archive_entry_xattr_reset(e), 3);
		const char *k[3];
		const void *v;
		size_t sz;
		for (int i = 0; i < 3; i++)
			ASSERT_EQ(archive_entry_xattr_next(e, &k[i], &v, &sz), ARCHIVE_OK);
		ASSERT_STREQ(k[0], "security.capability");
		ASSERT_STREQ(k[1], "user.aa");
		ASSERT_STREQ(k[2], "user.zz");
	}
	archive_read_free(a);
}

/* ---- diff: the overlay upper-dir fast path ---- */

TEST(diff_overlay_upper)
{
	SH("umask 022 && mkdir -p lower/c lower/d upper/c upper/d && touch lower/b lower/c/old "
	   "lower/gone && echo a > upper/a && mknod upper/b c 0 0 && mknod upper/nothing c 0 0 && "
	   "touch upper/c/x upper/d/new && touch -r lower/d upper/d");
	must(setxattr("upper/c", "trusted.overlay.opaque", "y", 1, 0), "setxattr");
	/* with the lower tree: the whiteout of a path the lower lacks is dropped, d is unchanged */
	_cleanup_close_ int fd = diff_tar("lower", "upper", NULL, true, NULL);
	_cleanup_free_ char *got = tar_entries(fd, false);
	ASSERT_STREQ(got, "a f 0644\n"
	                  ".wh.b f 0000\n"
	                  "c/ d 0755\n"
	                  "c/.wh..wh..opq f 0000\n"
	                  "c/x f 0644\n"
	                  "d/ d 0755\n"
	                  "d/new f 0644\n");
	/* without it every whiteout is written */
	_cleanup_close_ int fd2 = diff_tar(NULL, "upper", NULL, true, NULL);
	_cleanup_free_ char *got2 = tar_entries(fd2, false);
	ASSERT_TRUE(strstr(got2, ".wh.nothing f 0000\n") != NULL);
	/* user.overlay.opaque (userxattr mounts) is honoured and never copied into the tar */
	SH("mkdir -p u2/o && touch u2/o/f");
	must(setxattr("u2/o", "user.overlay.opaque", "y", 1, 0), "setxattr");
	_cleanup_close_ int fd3 = diff_tar(NULL, "u2", NULL, true, NULL);
	_cleanup_free_ char *got3 = tar_entries(fd3, false);
	ASSERT_STREQ(got3, "o/ d 0755\n"
	                   "o/.wh..wh..opq f 0000\n"
	                   "o/f f 0644\n");
	/* redirect and metacopy cannot be diffed from the upper dir */
	SH("mkdir -p u3/r");
	must(setxattr("u3/r", "trusted.overlay.redirect", "/x", 2, 0), "setxattr");
	_cleanup_close_ int ufd = root_fd("u3");
	_cleanup_close_ int out = new_memfd();
	struct layer_writer_opts wo = {0};
	_cleanup_(layer_writer_freep) layer_writer *w = NULL;
	ASSERT_OK(layer_writer_new(out, &wo, &w, ERR));
	struct layer_diff_opts o = {.what = "snapshot 7"};
	ASSERT_ERR(layer_diff_overlay(-1, ufd, w, &o, NULL, ERR), -EOPNOTSUPP);
	ASSERT_ERRMSG("diff 'snapshot 7': 'r'");
}

/* A real overlay mount: changes made through it, diffed from its upper dir, applied natively
 * onto the lower tree give the merged view. */
TEST(diff_overlay_mounted)
{
	SH("umask 022 && mkdir -p lower/etc lower/var/lib/x lower/keep upper work mnt && "
	   "echo a > lower/etc/a && echo b > lower/etc/b && touch lower/var/lib/x/f lower/keep/k");
	char opts[8192];
	snprintf(opts, sizeof(opts), "lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work",
	         test_dir, test_dir, test_dir);
	if (mount("overlay", "mnt", "overlay", 0, opts) < 0)
		test_skip("cannot mount overlay");
	int r = test_sh("echo changed > mnt/etc/a && rm mnt/etc/b && rm -r mnt/var/lib && "
	                "mkdir -p mnt/var/lib && echo new > mnt/var/lib/n && mkdir mnt/newdir && "
	                "ln -s ../etc/a mnt/newdir/link && cp -a mnt expected");
	umount2("mnt", MNT_DETACH);
	ASSERT_EQ(r, 0);
	_cleanup_close_ int fd = diff_tar("lower", "upper", NULL, true, NULL);
	SH("cp -a lower result");
	ASSERT_OK(apply_mode("result", fd, LAYER_WHITEOUT_DELETE));
	ASSERT_TREES_EQ("expected", "result", TL_MTIME);
}

/* ---- diff + apply: continuity's test suite (TestDiffApply, TestOverlayApply,
 * TestOverlayApplyNoParents), symlink suites, round trips ---- */

/*
 * Build states s0 (empty) .. sN, each a copy of the previous with @layers[i] (shell, run inside
 * it) applied; diff each pair; then apply the diffs (1) natively onto one tree, (2) in overlay
 * mode into one upper dir each, with the previous ones as parents, mounted together, (3) the
 * same with diffs written without parent directories. Each result must equal sN.
 */
static void run_suite(const char *const *layers, size_t n)
{
	SH("umask 022 && mkdir s0 native empty mnt");
	for (size_t i = 1; i <= n; i++)
		SH("cp -a s%zu s%zu && cd s%zu && %s", i - 1, i, i, layers[i - 1]);
	char last[16];
	snprintf(last, sizeof(last), "s%zu", n);
	int fds[16], np_fds[16];
	for (size_t i = 1; i <= n; i++) {
		char a[16], b[16];
		snprintf(a, sizeof(a), "s%zu", i - 1);
		snprintf(b, sizeof(b), "s%zu", i);
		fds[i] = diff_tar(a, b, NULL, false, NULL);
		struct layer_diff_opts o = {.no_parents = true};
		np_fds[i] = diff_tar(a, b, &o, false, NULL);
	}
	for (size_t i = 1; i <= n; i++)
		ASSERT_OK(apply_mode("native", fds[i], LAYER_WHITEOUT_DELETE));
	ASSERT_TREES_EQ(last, "native", TL_MTIME);
	for (int variant = 0; variant < 2; variant++) {
		int parents[16];
		char lowers[8192] = "";
		for (size_t i = 1; i <= n; i++) {
			char u[32];
			snprintf(u, sizeof(u), "u%d-%zu", variant, i);
			must(mkdir(u, 0755), "mkdir");
			struct layer_apply_opts o = {.whiteout = LAYER_WHITEOUT_OVERLAY,
			                             .parent_fds = parents,
			                             .n_parents = i - 1};
			/* parents: nearest first */
			for (size_t j = 0; j + 1 < i; j++) {
				char p[32];
				snprintf(p, sizeof(p), "u%d-%zu", variant, i - 1 - j);
				parents[j] = root_fd(p);
			}
			ASSERT_OK(apply_opts(u, variant ? np_fds[i] : fds[i], &o, NULL));
			for (size_t j = 0; j + 1 < i; j++)
				close(parents[j]);
			char tmp[8192];
			snprintf(tmp, sizeof(tmp), "%s/%s%s%s", test_dir, u, *lowers ? ":" : "",
			         lowers);
			snprintf(lowers, sizeof(lowers), "%s", tmp);
		}
		char opts[8300];
		snprintf(opts, sizeof(opts), "lowerdir=%s:%s/empty", lowers, test_dir);
		if (mount("overlay", "mnt", "overlay", MS_RDONLY, opts) < 0)
			test_skip("cannot mount overlay");
		_cleanup_free_ char *want = tree_list(last, TL_MTIME, NULL);
		_cleanup_free_ char *got = tree_list("mnt", TL_MTIME, NULL);
		umount2("mnt", MNT_DETACH);
		if (strcmp(want, got) != 0)
			test_fail(__FILE__, __LINE__,
			          "overlay (%s) differs:\n--- want\n%s--- got\n%s",
			          variant ? "no parents" : "parents", want, got);
	}
	for (size_t i = 1; i <= n; i++) {
		close(fds[i]);
		close(np_fds[i]);
	}
}

#define BASE_LAYER                                                                                 \
	"mkdir -p etc && printf '127.0.0.1 localhost' > etc/hosts && chmod 0644 etc/hosts && "     \
	"ln etc/hosts etc/hosts.allow && mkdir -p usr/local/lib && printf '\\0\\0' > "             \
	"usr/local/lib/libnothing.so && chmod 0755 usr/local/lib/libnothing.so && "                \
	"ln -s libnothing.so usr/local/lib/libnothing.so.2 && mkdir -p home/derek && "             \
	"chmod 0700 home/derek"

TEST(suite_basic)
{
	static const char *const layers[] = {
		BASE_LAYER,
		"printf '127.0.0.1 localhost.localdomain' > etc/hosts && "
		"printf '/dev/sda1\\t/\\text4\\tdefaults 1 1\\n' > etc/fstab && chmod 0600 "
		"etc/fstab && "
		": > etc/badfile && chmod 0666 etc/badfile && "
		"printf '#ZSH is just better\\n' > home/derek/.zshrc && chmod 0640 "
		"home/derek/.zshrc",
		"rm etc/badfile && mv home/derek home/notderek",
		"rm -r usr && rm etc/hosts.allow",
		"rm -r home && mkdir -p home/derek && chmod 0700 home/derek && "
		"printf '#not going away\\n' > home/derek/.bashrc && chmod 0640 home/derek/.bashrc "
		"&& "
		"ln etc/hosts etc/hosts.allow",
	};
	run_suite(layers, ELEMENTSOF(layers));
}

TEST(suite_deletion)
{
	static const char *const layers[] = {
		"mkdir -p test/somedir lib && chmod 0700 lib && : > lib/hidden",
		(": > test/a && : > test/b && mkdir test/otherdir && : > test/otherdir/.empty && "
	         "rm -r lib && mkdir lib && chmod 0700 lib && : > lib/not-hidden"),
		"rm test/a test/b && rm -r test/otherdir && : > lib/newfile",
	};
	run_suite(layers, ELEMENTSOF(layers));
}

TEST(suite_update)
{
	static const char *const layers[] = {
		"mkdir d1 d2 && chmod 0700 d2 && printf 'something...' > d1/f1 && "
		"printf 'else...' > d1/f2 && printf 'entirely...' > d1/f3",
		"printf 'file content of a different length' > d1/f1 && chmod 0664 d1/f1 && "
		"rm d1/f3 && printf 'updated content' > d1/f3 && chmod 0664 d1/f3 && "
		"chmod 0766 d1/f2 && chmod 0777 d2",
	};
	run_suite(layers, ELEMENTSOF(layers));
}

TEST(suite_directory_permissions)
{
	static const char *const layers[] = {
		"mkdir d1 d2 d3 && chmod 0700 d1 && chmod 0751 d2 && chmod 0777 d3",
		"echo irrelevant > d1/f && mkdir d1/d && chmod 0700 d1/d && echo irrelevant > "
		"d1/d/f "
		"&& echo irrelevant > d2/f && echo irrelevant > d3/f",
	};
	run_suite(layers, ELEMENTSOF(layers));
}

TEST(suite_parent_directory_permissions)
{
	static const char *const layers[] = {
		"mkdir -p d1/a/b/c && chmod 0700 d1 d1/a d1/a/b d1/a/b/c && echo content1 > "
		"d1/a/b/f && mkdir -p d2/a/b/c && chmod 0751 d2 d2/a/b d2/a/b/c && "
		"echo content1 > d2/a/b/f",
		"echo content1 > d1/a/b/f && chmod 0700 d1/a/b/c && echo content2 > d2/a/b/f && "
		"chmod 0751 d2/a/b/c",
	};
	run_suite(layers, ELEMENTSOF(layers));
}

TEST(suite_hardlink_unmodified)
{
	static const char *const layers[] = {
		BASE_LAYER,
		"printf '127.0.0.1 localhost.localdomain' > etc/hosts",
		"ln etc/hosts etc/hosts.deny",
	};
	run_suite(layers, ELEMENTSOF(layers));
}

TEST(suite_hardlink_before_unmodified)
{
	static const char *const layers[] = {
		BASE_LAYER,
		"printf '127.0.0.1 localhost.localdomain' > etc/hosts",
		"ln etc/hosts etc/before-hosts",
	};
	run_suite(layers, ELEMENTSOF(layers));
}

TEST(suite_hardlink_before_modified)
{
	static const char *const layers[] = {
		BASE_LAYER,
		"printf '127.0.0.1 localhost.localdomain' > etc/hosts",
		("rm etc/hosts && printf '127.0.0.1 localhost' > etc/hosts && "
	         "ln etc/hosts etc/before-hosts"),
	};
	run_suite(layers, ELEMENTSOF(layers));
}

/* TestSymlinks / TestRelativeSymlinks: links that point outside, replaced by absolute and
 * relative variants and by directories; their text survives, they are never followed. */
TEST(suite_symlinks)
{
	static const char *const layers[] = {
		"mkdir -p d1/d2 other && ln -s ../other d1/link1 && ln -s ../../etc d1/d2/link2 && "
		"ln -s ../../../breakout link3 && ln -s /etc link4 && ln -s link4 d1/link5 && "
		"ln -s . self && ln -s d1/d2 via",
		"rm d1/link1 && ln -s /other d1/link1 && rm link3 && mkdir link3 && "
		"echo inside > link3/f && rm link4 && ln -s etc link4 && echo x > via/through",
		"rm -r link3 && ln -s ../../../../etc/passwd link3 && rm d1/link5 && mkdir "
		"d1/link5",
	};
	run_suite(layers, ELEMENTSOF(layers));
}

/* A tree with every kind of object, for round trips. */
static void make_rich_tree(const char *dir)
{
	SH("umask 022 && mkdir -p %1$s/d/e %1$s/empty %1$s/deep/a/b/c/d/e/f/g && cd %1$s && "
	   "echo hi > d/f && ln d/f d/hard && ln d/f hard2 && ln -s ../d/f d/e/sym && "
	   "ln -s /etc/passwd abs && ln -s ../../../../outside up && mkfifo fifo && "
	   "mknod null c 1 3 && chown 12:34 d/f && chmod 4750 d/f && chmod 1777 d/e && "
	   "chmod 2755 deep && chown -h 56:78 abs && touch -h -d @1400000000 abs && "
	   "dd if=/dev/urandom of=deep/a/b/c/d/e/f/g/blob bs=1k count=300 status=none && "
	   "touch %2$0200d && echo z > deep/a/b/c/d/e/f/g/%3$0180d && "
	   "touch -d @1300000000 d/e empty && touch -d @1200000000 deep/a",
	   dir, 1, 2);
	char p[4200];
	snprintf(p, sizeof(p), "%s/d/f", dir);
	must(setxattr(p, "user.one", "1", 1, 0), "setxattr");
	static const uint8_t cap[20] = {1, 0, 0, 2, 0x20};
	must(setxattr(p, "security.capability", cap, sizeof(cap), 0), "setxattr");
	snprintf(p, sizeof(p), "%s/d", dir);
	must(setxattr(p, "user.dir", "dd", 2, 0), "setxattr");
}

TEST(roundtrip_apply_diff_apply)
{
	if (getuid() != 0)
		test_skip("needs root for chown and mknod");
	make_rich_tree("t");
	for (int c = 0; c < 3; c++) {
		char r1[16], r2[16];
		snprintf(r1, sizeof(r1), "r1-%d", c);
		snprintf(r2, sizeof(r2), "r2-%d", c);
		must(mkdir(r1, 0755), "mkdir");
		must(mkdir(r2, 0755), "mkdir");
		digest d1, d2;
		_cleanup_close_ int tar = diff_tar(NULL, "t", NULL, false, &d1);
		_cleanup_close_ int blob =
			compress_fd(tar, (layer_compression)c, LAYER_LEVEL_DEFAULT);
		struct layer_apply_opts o = {.expected_diffid = d1.str};
		ASSERT_OK(apply_opts(r1, blob, &o, NULL));
		ASSERT_TREES_EQ("t", r1, TL_MTIME | TL_DIRMTIME);
		/* the applied tree diffs to the same layer */
		close(diff_tar(NULL, r1, NULL, false, &d2));
		ASSERT_STREQ(d2.str, d1.str);
		/* and in overlay mode too */
		o.whiteout = LAYER_WHITEOUT_OVERLAY;
		ASSERT_OK(apply_opts(r2, blob, &o, NULL));
		ASSERT_TREES_EQ("t", r2, TL_MTIME | TL_DIRMTIME);
	}
}

TEST(roundtrip_deterministic)
{
	if (getuid() != 0)
		test_skip("needs root for chown and mknod");
	make_rich_tree("t");
	SH("cp -a t t2 && touch -d @1 t2 && sleep 0.01 && cat t2/d/f > /dev/null && chmod 4750 "
	   "t2/d/f");
	for (int c = 0; c < 3; c++) {
		digest first = {0};
		for (int i = 0; i < 3; i++) {
			_cleanup_close_ int tar =
				diff_tar(NULL, i == 2 ? "t2" : "t", NULL, false, NULL);
			_cleanup_close_ int blob = compress_fd(tar, (layer_compression)c, 3);
			digest d;
			ASSERT_OK(digest_fd(blob, "blob", &d, NULL, ERR));
			if (i == 0)
				first = d;
			/* the same tree, a copy of it included, gives the same bytes */
			ASSERT_STREQ(d.str, first.str);
		}
	}
}

/* TestBaseDiff: GNU tar reads what diff writes, and the tree it extracts is the same. */
TEST(roundtrip_gnu_tar_reads_diff)
{
	if (getuid() != 0)
		test_skip("needs root for chown and mknod");
	make_rich_tree("t");
	_cleanup_close_ int tar = diff_tar(NULL, "t", NULL, false, NULL);
	size_t len;
	_cleanup_free_ uint8_t *bytes = slurp(tar, &len);
	_cleanup_close_ int f = open("diff.tar", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	write_all(f, bytes, len);
	SH("mkdir x && tar --xattrs --xattrs-include='*' -xpf diff.tar -C x");
	ASSERT_TREES_EQ("t", "x", TL_MTIME | TL_DIRMTIME);
}

/* Names that are not ASCII (nor UTF-8) keep their bytes, whatever the process locale. */
TEST(roundtrip_non_ascii_names)
{
	SH("python3 -c \"import tarfile, io\n"
	   "t = tarfile.open('u.tar', 'w', format=tarfile.PAX_FORMAT)\n"
	   "for n in ['caf\\u00e9', '\\u540d\\u524d/x', 'l\\u00e4nk']:\n"
	   "    ti = tarfile.TarInfo(n); ti.size = 1; t.addfile(ti, io.BytesIO(b'x'))\n"
	   "t.close()\"");
	must(mkdir("root", 0755), "mkdir");
	_cleanup_close_ int fd = open("u.tar", O_RDONLY | O_CLOEXEC);
	ASSERT_OK(apply_mode("root", fd, LAYER_WHITEOUT_DELETE));
	ASSERT_TRUE(exists("root/caf\xc3\xa9"));
	ASSERT_TRUE(exists("root/\xe5\x90\x8d\xe5\x89\x8d/x"));
	/* a name that is not UTF-8 */
	write_text("root/bin\xff\xfe", "b", 0644);
	digest c_locale, utf8_locale;
	_cleanup_close_ int d1 = diff_tar(NULL, "root", NULL, false, &c_locale);
	if (setlocale(LC_ALL, "C.UTF-8")) {
		close(diff_tar(NULL, "root", NULL, false, &utf8_locale));
		ASSERT_STREQ(utf8_locale.str, c_locale.str);
		setlocale(LC_ALL, "C");
	}
	must(mkdir("again", 0755), "mkdir");
	ASSERT_OK(apply_mode("again", d1, LAYER_WHITEOUT_DELETE));
	ASSERT_TREES_EQ("root", "again", TL_MTIME);
	/* and applying under a UTF-8 locale gives the same names */
	if (setlocale(LC_ALL, "C.UTF-8")) {
		must(mkdir("again2", 0755), "mkdir");
		ASSERT_OK(apply_mode("again2", d1, LAYER_WHITEOUT_DELETE));
		must(mkdir("again3", 0755), "mkdir");
		ASSERT_OK(apply_mode("again3", fd, LAYER_WHITEOUT_DELETE));
		setlocale(LC_ALL, "C");
		ASSERT_TRUE(exists("again3/caf\xc3\xa9"));
		ASSERT_TRUE(exists("again3/\xe5\x90\x8d\xe5\x89\x8d/x"));
		ASSERT_TREES_EQ("root", "again2", TL_MTIME);
	}
}

/* ---- issue 8: the fast paths give what the plain ones give ---- */

/* A reader on its own thread delivers the same bytes and digests, across many slots. */
TEST(compress_threaded_reader)
{
	size_t len = 9 * 1024 * 1024 + 333; /* more than the four 1 MiB slots */
	_cleanup_free_ uint8_t *data = test_data(len);
	_cleanup_close_ int in = fd_from(data, len);
	layer_compression cs[] = {LAYER_COMPRESSION_GZIP, LAYER_COMPRESSION_ZSTD,
	                          LAYER_COMPRESSION_NONE};
	for (size_t i = 0; i < ELEMENTSOF(cs); i++) {
		_cleanup_close_ int z = compress_fd(in, cs[i], LAYER_LEVEL_DEFAULT);
		struct layer_reader_opts o = {.what = "sha256:t", .threaded = true};
		_cleanup_(layer_reader_freep) layer_reader *r = NULL;
		ASSERT_OK(layer_reader_new(z, &o, &r, ERR));
		size_t off = 0;
		const void *buf;
		ssize_t n;
		while ((n = layer_reader_read(r, &buf, ERR)) > 0) {
			ASSERT_TRUE(off + (size_t)n <= len);
			ASSERT_TRUE(memcmp(buf, data + off, (size_t)n) == 0);
			off += (size_t)n;
		}
		ASSERT_OK(n);
		ASSERT_EQ(off, len);
		ASSERT_EQ(layer_reader_compression(r), cs[i]);
		digest got, want;
		layer_reader_digests(r, &got, NULL);
		digest_buffer(data, len, &want);
		ASSERT_STREQ(got.str, want.str);
		rewind_fd(in);
	}
	/* a corrupt stream fails on the caller's side with the decoder's message */
	_cleanup_close_ int z = compress_fd(in, LAYER_COMPRESSION_GZIP, LAYER_LEVEL_DEFAULT);
	size_t zlen;
	_cleanup_free_ uint8_t *zb = slurp(z, &zlen);
	_cleanup_close_ int cut = fd_from(zb, zlen / 2);
	struct layer_reader_opts o = {.what = "sha256:cut", .threaded = true};
	_cleanup_(layer_reader_freep) layer_reader *r = NULL;
	ASSERT_OK(layer_reader_new(cut, &o, &r, ERR));
	ASSERT_ERR(layer_reader_drain(r, ERR), CAIRN_ECORRUPT);
	ASSERT_ERRMSG("sha256:cut");
	/* and freeing a reader in the middle of the stream stops its thread */
	_cleanup_close_ int z2 = compress_fd(in, LAYER_COMPRESSION_ZSTD, LAYER_LEVEL_DEFAULT);
	layer_reader *r2 = NULL;
	const void *buf;
	ASSERT_OK(layer_reader_new(z2, &o, &r2, ERR));
	ASSERT_TRUE(layer_reader_read(r2, &buf, ERR) > 0);
	layer_reader_free(r2);
}

/* The diffID moves to the side that waits: a caller that is sometimes quick and sometimes slow
 * gets some buffers hashed by the reader's thread and some on its own, and the digest is the
 * one of the whole stream in order. */
TEST(compress_threaded_reader_hash_moves)
{
	size_t len = 40 * 1024 * 1024 + 777;
	_cleanup_free_ uint8_t *data = test_data(len);
	_cleanup_close_ int in = fd_from(data, len);
	layer_compression cs[] = {LAYER_COMPRESSION_GZIP, LAYER_COMPRESSION_ZSTD};
	for (size_t i = 0; i < ELEMENTSOF(cs); i++) {
		_cleanup_close_ int z = compress_fd(in, cs[i], LAYER_LEVEL_DEFAULT);
		struct layer_reader_opts o = {.what = "sha256:moves", .threaded = true};
		_cleanup_(layer_reader_freep) layer_reader *r = NULL;
		ASSERT_OK(layer_reader_new(z, &o, &r, ERR));
		size_t off = 0, reads = 0;
		const void *buf;
		ssize_t n;
		while ((n = layer_reader_read(r, &buf, ERR)) > 0) {
			ASSERT_TRUE(off + (size_t)n <= len);
			ASSERT_TRUE(memcmp(buf, data + off, (size_t)n) == 0);
			off += (size_t)n;
			/* ten reads as fast as it can, then six that keep the reader waiting */
			if (reads++ % 16 >= 10)
				usleep(5000);
		}
		ASSERT_OK(n);
		ASSERT_EQ(off, len);
		uint64_t mine = layer_reader_caller_hashed(r);
		ASSERT_TRUE(mine > 0);
		ASSERT_TRUE(mine < reads);
		digest got, want;
		layer_reader_digests(r, &got, NULL);
		digest_buffer(data, len, &want);
		ASSERT_STREQ(got.str, want.str);
		rewind_fd(in);
	}
}

/* A deep tree applied with the directory chain, the create-first path and the skipped
 * chown/chmod, on its own reader thread, equals the same tree applied on one thread; a symlinked
 * directory on the way still resolves in the root, and modes the umask would cut are set. */
TEST(apply_fast_paths_same_tree)
{
	struct tb *t = tb_new();
	tb_dir(t, "a", 0755);
	tb_dir(t, "a/b", 0750);
	tb_dir(t, "a/b/c", 0700);
	char name[64];
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "a/b/c/f%02d", i);
		tb_file(t, name, i % 2 ? 0644 : 0777, "x");
	}
	tb_file(t, "a/b/g", 04755, "suid");
	tb_file(t, "a/h", 0666, "wide");
	tb_dir(t, "a/d", 02775);
	tb_file(t, "a/d/in-sgid", 0640, "sgid parent");
	tb_symlink(t, "l", "a/b");
	tb_file(t, "l/via-link", 0600, "through the link");
	tb_file(t, "a/b/c/f00", 0600, "replaced");
	tb_file(t, "new/implicit/parent", 0644, "made");
	_cleanup_close_ int fd = tb_finish(t);
	mode_t old = umask(022);
	must(mkdir("threaded", 0755), "mkdir");
	ASSERT_OK(apply_mode("threaded", fd, LAYER_WHITEOUT_DELETE));
	layer_force_direct(true);
	must(mkdir("direct", 0755), "mkdir");
	ASSERT_OK(apply_mode("direct", fd, LAYER_WHITEOUT_DELETE));
	layer_force_direct(false);
	umask(old);
	ASSERT_TREES_EQ("threaded", "direct", TL_MTIME | TL_DIRMTIME);
	ASSERT_EQ(lmode("threaded/a/h") & 07777, 0666);
	ASSERT_EQ(lmode("threaded/a/b/g") & 07777, 04755);
	ASSERT_EQ(lmode("threaded/a/b/c/f01") & 07777, 0644);
	ASSERT_EQ(lmode("threaded/a/b/c/f00") & 07777, 0600);
	ASSERT_EQ(lmode("threaded/a/b") & 07777, 0750);
	ASSERT_EQ(lmode("threaded/a/d/in-sgid") & 07777, 0640);
	_cleanup_free_ char *v = read_text("threaded/a/b/via-link");
	ASSERT_STREQ(v, "through the link");
	_cleanup_free_ char *r = read_text("threaded/a/b/c/f00");
	ASSERT_STREQ(r, "replaced");
}

/* Blocks of zeros become holes: the file reads the same and has its full size. */
TEST(apply_zero_blocks_are_holes)
{
	size_t len = 3 * 1024 * 1024;
	_cleanup_free_ uint8_t *data = calloc(1, len);
	memcpy(data + 1024 * 1024, "not zero", 8);
	struct tb *t = tb_new();
	tb_add(t, ent("zeros-at-both-ends", AE_IFREG, 0644), data, len);
	tb_add(t, ent("all-zero", AE_IFREG, 0644), data + 2 * 1024 * 1024, 1024 * 1024);
	_cleanup_close_ int fd = tb_finish(t);
	must(mkdir("root", 0755), "mkdir");
	ASSERT_OK(apply_mode("root", fd, LAYER_WHITEOUT_DELETE));
	_cleanup_close_ int f = open("root/zeros-at-both-ends", O_RDONLY | O_CLOEXEC);
	size_t got_len;
	_cleanup_free_ uint8_t *got = slurp(f, &got_len);
	ASSERT_EQ(got_len, len);
	ASSERT_TRUE(memcmp(got, data, len) == 0);
	struct stat st;
	must(stat("root/all-zero", &st), "stat");
	ASSERT_EQ((size_t)st.st_size, (size_t)1024 * 1024);
	ASSERT_TRUE((size_t)st.st_blocks * 512 < (size_t)st.st_size);
}
