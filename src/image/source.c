/* SPDX-License-Identifier: MIT */
/* Reading layouts and archives: confined directory opens, or an index of tar members. */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fs.h"
#include "image/source.h"
#include "layer/util.h"

#define MEMBERS_MAX  (1u << 20)
#define LINK_HOPS    8
#define ARCHIVE_NAME 4096

struct member {
	char *name;
	char *link; /* symlink or hardlink target (an archive path), or NULL */
	bool regular, sparse;
	uint64_t offset, size;
};

struct image_source {
	char *path;
	int dirfd; /* a layout: its directory; else -EBADF */
	int tarfd; /* an archive; else -EBADF */
	struct member *members;
	size_t n, cap;
};

bool image_source_is_archive(const image_source *s)
{
	return s->tarfd >= 0;
}

const char *image_source_path(const image_source *s)
{
	return s->path;
}

image_source *image_source_free(image_source *s)
{
	if (!s)
		return NULL;
	for (size_t i = 0; i < s->n; i++) {
		free(s->members[i].name);
		free(s->members[i].link);
	}
	free(s->members);
	safe_close(s->dirfd);
	safe_close(s->tarfd);
	free(s->path);
	free(s);
	return NULL;
}

/* The lexical clean of archive path @p (layer/util.h's path_clean()) into @out (size
 * ARCHIVE_NAME): -ENAMETOOLONG when it does not fit, -ENOMEM. */
static int clean_path(const char *p, char *out)
{
	_cleanup_free_ char *c = path_clean(p);
	if (!c)
		return -ENOMEM;
	size_t n = strlen(c);
	if (n >= ARCHIVE_NAME)
		return -ENAMETOOLONG;
	memcpy(out, c, n + 1);
	return 0;
}

static int add_member(image_source *s, struct archive_entry *ae, uint64_t offset,
                      cairn_error **reterr)
{
	const char *raw = archive_entry_pathname(ae);
	char name[ARCHIVE_NAME];
	if (!raw || clean_path(raw, name) < 0 || !*name)
		return 0; /* the root or a name too long to matter: never looked up */
	mode_t type = archive_entry_filetype(ae);
	const char *hl = archive_entry_hardlink(ae);
	if (type != AE_IFREG && type != AE_IFLNK && !hl)
		return 0;
	if (s->n >= MEMBERS_MAX)
		return err_set(reterr, -E2BIG, "'%s': more than %u archive members", s->path,
		               MEMBERS_MAX);
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct member *m = realloc(s->members, cap * sizeof(*m));
		if (!m)
			return err_set(reterr, -ENOMEM, "'%s': out of memory", s->path);
		s->members = m;
		s->cap = cap;
	}
	struct member *m = &s->members[s->n];
	*m = (struct member){.regular = type == AE_IFREG && !hl,
	                     .sparse = archive_entry_sparse_count(ae) > 0,
	                     .offset = offset,
	                     .size = archive_entry_size_is_set(ae) && archive_entry_size(ae) > 0
	                                     ? (uint64_t)archive_entry_size(ae)
	                                     : 0};
	char target[ARCHIVE_NAME];
	if (hl) {
		/* Hardlink targets are archive paths. */
		if (clean_path(hl, target) < 0)
			return 0;
	} else if (type == AE_IFLNK) {
		/* Symlink targets are relative to the member's directory ("/" is the top). */
		const char *t = archive_entry_symlink(ae);
		char joined[2 * ARCHIVE_NAME + 2];
		const char *slash = strrchr(name, '/');
		if (!t)
			return 0;
		if (t[0] == '/' || !slash)
			snprintf(joined, sizeof(joined), "%s", t);
		else
			snprintf(joined, sizeof(joined), "%.*s/%s", (int)(slash - name), name, t);
		if (clean_path(joined, target) < 0)
			return 0;
	}
	m->name = strdup(name);
	m->link = (hl || type == AE_IFLNK) ? strdup(target) : NULL;
	if (!m->name || ((hl || type == AE_IFLNK) && !m->link)) {
		free(m->name);
		free(m->link);
		return err_set(reterr, -ENOMEM, "'%s': out of memory", s->path);
	}
	s->n++;
	return 0;
}

static int index_archive(image_source *s, cairn_error **reterr)
{
	uint8_t head[4] = {0};
	ssize_t got = pread(s->tarfd, head, sizeof(head), 0);
	if (got == 4 &&
	    ((head[0] == 0x1f && head[1] == 0x8b) ||
	     (head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd)))
		return err_set(reterr, CAIRN_ECORRUPT,
		               "'%s': a compressed archive: docker archives are plain tar files "
		               "(decompress it first)",
		               s->path);
	struct archive *a = archive_read_new();
	if (!a)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", s->path);
	archive_read_support_format_tar(a);
	int r = 0;
	if (archive_read_open_fd(a, s->tarfd, 1 << 16) != ARCHIVE_OK) {
		r = err_set(reterr, CAIRN_ECORRUPT, "'%s': not a tar archive: %s", s->path,
		            archive_error_string(a));
		goto out;
	}
	struct archive_entry *ae;
	for (;;) {
		int ar = archive_read_next_header(a, &ae);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar < ARCHIVE_WARN) {
			r = err_set(reterr, CAIRN_ECORRUPT,
			            "'%s': not a tar archive or corrupt: %s", s->path,
			            archive_error_string(a));
			goto out;
		}
		/* The outer tar is uncompressed: the data starts where the header reading ended. */
		int64_t off = archive_filter_bytes(a, 0);
		if (off < 0 || (r = add_member(s, ae, (uint64_t)off, reterr)) < 0)
			goto out;
		if (archive_read_data_skip(a) < ARCHIVE_WARN) {
			r = err_set(reterr, CAIRN_ECORRUPT, "'%s': truncated archive: %s", s->path,
			            archive_error_string(a));
			goto out;
		}
	}
out:
	archive_read_free(a);
	return r;
}

int image_source_open(const char *path, image_source **ret, cairn_error **reterr)
{
	_cleanup_(image_source_freep) image_source *s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path)))
		return err_set(reterr, -ENOMEM, "open '%s': out of memory", path);
	s->dirfd = s->tarfd = -EBADF;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && errno == ENOENT)
		return err_set(reterr, -ENOENT, "'%s' not found", path);
	if (fd < 0)
		return err_errno(reterr, -errno, "open '%s'", path);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		safe_close(fd);
		return err_errno(reterr, -errno, "stat '%s'", path);
	}
	if (S_ISDIR(st.st_mode)) {
		s->dirfd = fd;
	} else if (S_ISREG(st.st_mode)) {
		s->tarfd = fd;
		int r = index_archive(s, reterr);
		if (r < 0)
			return r;
	} else {
		safe_close(fd);
		return err_set(reterr, CAIRN_ECORRUPT,
		               "'%s' is neither an image layout directory nor an archive", path);
	}
	*ret = TAKE_PTR(s);
	return 0;
}

/* The regular member @name designates, following links; NULL when none. */
static const struct member *find_member(image_source *s, const char *name)
{
	char cur[ARCHIVE_NAME];
	if (clean_path(name, cur) < 0)
		return NULL;
	for (int hop = 0; hop <= LINK_HOPS; hop++) {
		const struct member *m = NULL;
		for (size_t i = s->n; i-- > 0;)
			if (strcmp(s->members[i].name, cur) == 0) {
				m = &s->members[i];
				break;
			}
		if (!m || !m->link)
			return m;
		snprintf(cur, sizeof(cur), "%s", m->link);
	}
	return NULL;
}

bool image_source_exists(image_source *s, const char *name)
{
	if (s->tarfd >= 0) {
		const struct member *m = find_member(s, name);
		return m && m->regular;
	}
	struct stat st;
	_cleanup_close_ int fd = fs_openat(s->dirfd, name, O_RDONLY | O_NONBLOCK, 0, NULL);
	return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

void image_range_close(struct image_range *r)
{
	if (r->owned)
		safe_close(r->fd);
	*r = (struct image_range){.fd = -EBADF};
}

int image_source_range(image_source *s, const char *name, struct image_range *ret,
                       cairn_error **reterr)
{
	if (s->tarfd >= 0) {
		const struct member *m = find_member(s, name);
		if (!m)
			return err_set(reterr, CAIRN_ECORRUPT, "'%s/%s': missing from the archive",
			               s->path, name);
		if (!m->regular || m->sparse)
			return err_set(reterr, CAIRN_ECORRUPT,
			               "'%s/%s': not a regular archive member", s->path, name);
		*ret = (struct image_range){.fd = s->tarfd, .offset = m->offset, .size = m->size};
		return 0;
	}
	cairn_error *e = NULL;
	int fd = fs_openat(s->dirfd, name, O_RDONLY | O_NONBLOCK, 0, &e);
	if (fd < 0) {
		int r = fd == -ENOENT || fd == -ENOTDIR ? CAIRN_ECORRUPT : fd;
		err_set(reterr, r, "'%s/%s': %s", s->path, name,
		        fd == -ENOENT ? "missing" : cairn_error_message(e));
		cairn_error_free(e);
		return r;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int r = err_errno(reterr, -errno, "stat '%s/%s'", s->path, name);
		safe_close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode)) {
		safe_close(fd);
		return err_set(reterr, CAIRN_ECORRUPT, "'%s/%s': not a regular file", s->path,
		               name);
	}
	*ret = (struct image_range){.fd = fd, .owned = true, .size = (uint64_t)st.st_size};
	return 0;
}

int image_source_read(image_source *s, const char *name, size_t max, char **ret, size_t *ret_len,
                      cairn_error **reterr)
{
	struct image_range rg = {.fd = -EBADF};
	int r = image_source_range(s, name, &rg, reterr);
	if (r < 0)
		return r;
	if (rg.size > max) {
		r = err_set(reterr, -EFBIG, "'%s/%s' is too large: %" PRIu64 " bytes (at most %zu)",
		            s->path, name, rg.size, max);
		image_range_close(&rg);
		return r;
	}
	char *buf = malloc(rg.size + 1);
	if (!buf) {
		image_range_close(&rg);
		return err_set(reterr, -ENOMEM, "read '%s/%s': out of memory", s->path, name);
	}
	size_t done = 0;
	while (done < rg.size) {
		ssize_t n = pread(rg.fd, buf + done, rg.size - done, (off_t)(rg.offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? err_errno(reterr, -errno, "read '%s/%s'", s->path, name)
			          : err_set(reterr, -EIO, "read '%s/%s': short read", s->path,
			                    name);
			free(buf);
			image_range_close(&rg);
			return r;
		}
		done += (size_t)n;
	}
	buf[done] = '\0';
	image_range_close(&rg);
	*ret = buf;
	if (ret_len)
		*ret_len = done;
	return 0;
}
