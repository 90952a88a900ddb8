/* SPDX-License-Identifier: MIT */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/fs.h"
#include "diff.h"
#include "util.h"

#define COPY_BUF   (128 * 1024)
#define TAR_BLOCKS (128 * 1024)

enum change { ADD, MODIFY, DELETE, UNMODIFIED };

/* A multiply-linked inode of the upper tree: its first written name, names waiting for it. */
struct link_ent {
	dev_t dev;
	ino_t ino;
	bool used;
	char *first;
	char **pending;
	size_t n_pending;
};

struct links {
	struct link_ent *t;
	size_t cap, n;
};

struct diff {
	int lowerfd, upperfd;
	const struct layer_diff_opts *opts;
	bool overlay;
	layer_writer *w;
	struct archive *a;
	struct archive_entry *e;
	cairn_error *werr; /* the writer's error, raised under a libarchive callback */
	int wcode;
	bool aborted;        /* failed: archive_write_free() must not write the end marker */
	struct pathset dirs; /* directories written */
	struct links links;
	uint8_t *buf;
	uint64_t entries;
};

/* ---- hardlink table ---- */

static size_t link_slot(const struct links *l, dev_t dev, ino_t ino)
{
	size_t i = (size_t)((ino * 0x9e3779b97f4a7c15ULL) ^ dev) & (l->cap - 1);
	while (l->t[i].used && (l->t[i].dev != dev || l->t[i].ino != ino))
		i = (i + 1) & (l->cap - 1);
	return i;
}

static struct link_ent *link_get(struct links *l, dev_t dev, ino_t ino)
{
	if ((l->n + 1) * 2 > l->cap) {
		struct links n = {.cap = l->cap ? l->cap * 2 : 64, .n = l->n};
		n.t = calloc(n.cap, sizeof(*n.t));
		if (!n.t)
			return NULL;
		for (size_t i = 0; i < l->cap; i++)
			if (l->t[i].used)
				n.t[link_slot(&n, l->t[i].dev, l->t[i].ino)] = l->t[i];
		free(l->t);
		*l = n;
	}
	struct link_ent *le = &l->t[link_slot(l, dev, ino)];
	if (!le->used) {
		*le = (struct link_ent){.dev = dev, .ino = ino, .used = true};
		l->n++;
	}
	return le;
}

static void links_done(struct links *l)
{
	for (size_t i = 0; i < l->cap; i++) {
		free(l->t[i].first);
		for (size_t j = 0; j < l->t[i].n_pending; j++)
			free(l->t[i].pending[j]);
		free(l->t[i].pending);
	}
	free(l->t);
}

/* ---- libarchive boundary ---- */

static la_ssize_t write_cb(struct archive *a, void *userdata, const void *buf, size_t len)
{
	struct diff *d = userdata;
	if (d->aborted)
		return -1;
	int r = layer_writer_write(d->w, buf, len, &d->werr);
	if (r < 0) {
		d->wcode = r;
		archive_set_error(a, EIO, "%s", cairn_error_message(d->werr));
		return -1;
	}
	return (la_ssize_t)len;
}

static int archive_fail(struct diff *d, const char *path, cairn_error **reterr)
{
	if (d->wcode)
		return err_set(reterr, d->wcode, "%s", cairn_error_message(d->werr));
	const char *msg = archive_error_string(d->a);
	int code = archive_errno(d->a) == ENOMEM ? -ENOMEM : -EIO;
	return err_set(reterr, code, "write tar entry '%s': %s", path, msg ? msg : "unknown error");
}

/* ---- entries ---- */

static bool skip_xattr(const struct diff *d, const char *key)
{
	return strncmp(key, "trusted.", 8) == 0 || strcmp(key, "security.selinux") == 0 ||
	       (d->overlay && strncmp(key, "user.overlay.", 13) == 0);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add the object's xattrs, sorted by name, to d->e. */
static int add_xattrs(struct diff *d, int fd, int dfd, const char *name, const char *path,
                      cairn_error **reterr)
{
	_cleanup_free_ char *list = NULL;
	size_t len = 0;
	int r = xattr_list_alloc(fd, dfd, name, &list, &len);
	if (r < 0)
		return err_errno(reterr, r, "list xattrs of '%s'", path);
	size_t n = 0;
	for (size_t i = 0; i < len; i += strlen(list + i) + 1)
		n++;
	if (n == 0)
		return 0;
	_cleanup_free_ char **keys = calloc(n, sizeof(*keys));
	if (!keys)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
	n = 0;
	for (size_t i = 0; i < len; i += strlen(list + i) + 1)
		keys[n++] = list + i;
	qsort(keys, n, sizeof(*keys), cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (skip_xattr(d, keys[i]))
			continue;
		_cleanup_free_ char *v = NULL;
		size_t vlen = 0;
		r = xattr_get_alloc(fd, dfd, name, keys[i], &v, &vlen);
		if (r == -ENODATA)
			continue;
		if (r < 0)
			return err_errno(reterr, r, "read xattr '%s' of '%s'", keys[i], path);
		archive_entry_xattr_add_entry(d->e, keys[i], v, vlen);
	}
	return 0;
}

static time_t clamp_mtime(const struct diff *d, time_t t)
{
	if (d->opts->has_source_date_epoch && t > d->opts->source_date_epoch)
		return (time_t)d->opts->source_date_epoch;
	return t;
}

static int write_header(struct diff *d, const char *path, cairn_error **reterr)
{
	int k = archive_write_header(d->a, d->e);
	if (k != ARCHIVE_OK && k != ARCHIVE_WARN)
		return archive_fail(d, path, reterr);
	d->entries++;
	return 0;
}

/* A whiteout for @path: "<dir>/.wh.<base>", empty, mode 0, owner 0:0. */
static int write_whiteout(struct diff *d, const char *path, cairn_error **reterr)
{
	_cleanup_free_ char *copy = strdup(path), *name = NULL;
	if (!copy)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
	const char *dir, *base;
	path_split(copy, &dir, &base);
	if (asprintf(&name, "%s%s.wh.%s", dir, *dir ? "/" : "", base) < 0)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
	archive_entry_clear(d->e);
	archive_entry_set_pathname(d->e, name);
	archive_entry_set_filetype(d->e, AE_IFREG);
	archive_entry_set_perm(d->e, 0);
	archive_entry_set_size(d->e, 0);
	archive_entry_set_mtime(
		d->e, d->opts->has_source_date_epoch ? (time_t)d->opts->source_date_epoch : 0, 0);
	return write_header(d, name, reterr);
}

static int copy_data(struct diff *d, int fd, const struct stat *st, const char *path,
                     cairn_error **reterr)
{
	off_t left = st->st_size;
	while (left > 0) {
		size_t want = left < COPY_BUF ? (size_t)left : COPY_BUF;
		ssize_t n = read(fd, d->buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_errno(reterr, -errno, "read '%s'", path);
		if (n == 0)
			return err_set(reterr, -EIO, "read '%s': short read (the file shrank)",
			               path);
		if (archive_write_data(d->a, d->buf, (size_t)n) != n)
			return archive_fail(d, path, reterr);
		left -= n;
	}
	return 0;
}

/*
 * Write the object @name of directory @dfd (stat @st) as @path; a hardlink to @link when that is
 * non-NULL. @path of a directory has no trailing slash here.
 */
static int write_object(struct diff *d, const char *path, const struct stat *st, int dfd,
                        const char *name, const char *link, cairn_error **reterr)
{
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *tname = NULL;
	char target[PATH_MAX];
	if (S_ISDIR(st->st_mode) || (S_ISREG(st->st_mode) && !link)) {
		fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return err_errno(reterr, -errno, "open '%s'", path);
	}
	archive_entry_clear(d->e);
	if (S_ISDIR(st->st_mode) && asprintf(&tname, "%s/", path) < 0)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
	archive_entry_set_pathname(d->e, tname ? tname : path);
	archive_entry_set_mode(d->e, (st->st_mode & S_IFMT) | (st->st_mode & 07777));
	archive_entry_set_uid(d->e, st->st_uid);
	archive_entry_set_gid(d->e, st->st_gid);
	archive_entry_set_mtime(d->e, clamp_mtime(d, st->st_mtim.tv_sec), 0);
	if (link) {
		archive_entry_set_hardlink(d->e, link);
		archive_entry_set_size(d->e, 0);
	} else if (S_ISREG(st->st_mode)) {
		archive_entry_set_size(d->e, st->st_size);
	} else if (S_ISLNK(st->st_mode)) {
		ssize_t n = readlinkat(dfd, name, target, sizeof(target) - 1);
		if (n < 0)
			return err_errno(reterr, -errno, "readlink '%s'", path);
		target[n] = '\0';
		archive_entry_set_symlink(d->e, target);
	} else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
		archive_entry_set_rdevmajor(d->e, major(st->st_rdev));
		archive_entry_set_rdevminor(d->e, minor(st->st_rdev));
	}
	int r = add_xattrs(d, fd, dfd, name, path, reterr);
	if (r < 0)
		return r;
	r = write_header(d, path, reterr);
	if (r < 0 || link || !S_ISREG(st->st_mode))
		return r;
	return copy_data(d, fd, st, path, reterr);
}

/* Write the directories above @path that were not written yet, outermost first. */
static int include_parents(struct diff *d, const char *path, cairn_error **reterr)
{
	if (d->opts->no_parents)
		return 0;
	_cleanup_free_ char *parent = strdup(path);
	if (!parent)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
	char *slash = strrchr(parent, '/');
	if (!slash)
		return 0; /* a child of the root */
	*slash = '\0';
	if (pathset_has(&d->dirs, parent))
		return 0;
	int r = include_parents(d, parent, reterr);
	if (r < 0)
		return r;
	if (pathset_add(&d->dirs, parent) < 0)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
	const char *name;
	_cleanup_close_ int dfd = fs_open_parent(d->upperfd, parent, &name, reterr);
	if (dfd < 0)
		return dfd;
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return err_errno(reterr, -errno, "stat '%s'", parent);
	return write_object(d, parent, &st, dfd, name, NULL, reterr);
}

/* The names that waited for an inode's first name are written as links to it. */
static int flush_pending(struct diff *d, struct link_ent *le, const struct stat *st,
                         cairn_error **reterr)
{
	for (size_t i = 0; i < le->n_pending; i++) {
		const char *p = le->pending[i];
		int r = include_parents(d, p, reterr);
		if (r < 0)
			return r;
		archive_entry_clear(d->e);
		archive_entry_set_pathname(d->e, p);
		archive_entry_set_mode(d->e, (st->st_mode & S_IFMT) | (st->st_mode & 07777));
		archive_entry_set_uid(d->e, st->st_uid);
		archive_entry_set_gid(d->e, st->st_gid);
		archive_entry_set_mtime(d->e, clamp_mtime(d, st->st_mtim.tv_sec), 0);
		archive_entry_set_hardlink(d->e, le->first);
		archive_entry_set_size(d->e, 0);
		r = write_header(d, p, reterr);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < le->n_pending; i++)
		free(le->pending[i]);
	free(le->pending);
	le->pending = NULL;
	le->n_pending = 0;
	return 0;
}

static int link_pend(struct link_ent *le, const char *path)
{
	char **np = realloc(le->pending, (le->n_pending + 1) * sizeof(*np));
	if (!np)
		return -ENOMEM;
	le->pending = np;
	np[le->n_pending] = strdup(path);
	if (!np[le->n_pending])
		return -ENOMEM;
	le->n_pending++;
	return 0;
}

/* continuity's ChangeWriter.HandleChange (spec §8.2). */
static int handle_change(struct diff *d, enum change k, const char *path, const struct stat *st,
                         int dfd, const char *name, cairn_error **reterr)
{
	if (k == DELETE) {
		int r = include_parents(d, path, reterr);
		return r < 0 ? r : write_whiteout(d, path, reterr);
	}
	if (S_ISSOCK(st->st_mode))
		return 0;
	struct link_ent *le = NULL;
	const char *link = NULL;
	if (!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
		le = link_get(&d->links, st->st_dev, st->st_ino);
		if (!le)
			return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
		if (le->first)
			link = le->first;
		else if (k == UNMODIFIED)
			return link_pend(le, path) < 0
			               ? err_set(reterr, -ENOMEM, "'%s': out of memory", path)
			               : 0;
		else if (!(le->first = strdup(path)))
			return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
	} else if (k == UNMODIFIED) {
		return 0;
	}
	if (S_ISDIR(st->st_mode) && pathset_has(&d->dirs, path))
		return 0;
	int r = include_parents(d, path, reterr);
	if (r < 0)
		return r;
	if (S_ISDIR(st->st_mode) && pathset_add(&d->dirs, path) < 0)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
	r = write_object(d, path, st, dfd, name, link, reterr);
	if (r < 0 || !le || link)
		return r;
	return flush_pending(d, le, st, reterr);
}

/* ---- comparing ---- */

static int same_content(int afd, const char *aname, int bfd, const char *bname, bool *ret)
{
	_cleanup_close_ int a = openat(afd, aname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_close_ int b = openat(bfd, bname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (a < 0 || b < 0)
		return -errno;
	_cleanup_free_ uint8_t *ba = malloc(COPY_BUF), *bb = malloc(COPY_BUF);
	if (!ba || !bb)
		return -ENOMEM;
	for (;;) {
		ssize_t na = read(a, ba, COPY_BUF);
		if (na < 0)
			return -errno;
		size_t got = 0;
		while (got < (size_t)na) {
			ssize_t nb = read(b, bb + got, (size_t)na - got);
			if (nb < 0)
				return -errno;
			if (nb == 0)
				break;
			got += (size_t)nb;
		}
		if (got != (size_t)na || memcmp(ba, bb, got) != 0) {
			*ret = false;
			return 0;
		}
		if (na == 0) {
			*ret = true;
			return 0;
		}
	}
}

static int same_xattr(int afd, const char *aname, int bfd, const char *bname, const char *key,
                      bool *ret)
{
	_cleanup_free_ char *va = NULL, *vb = NULL;
	size_t la = 0, lb = 0;
	int ra = xattr_get_alloc(-1, afd, aname, key, &va, &la);
	int rb = xattr_get_alloc(-1, bfd, bname, key, &vb, &lb);
	if (ra == -ENOTSUP)
		ra = -ENODATA;
	if (rb == -ENOTSUP)
		rb = -ENODATA;
	if ((ra < 0 && ra != -ENODATA) || (rb < 0 && rb != -ENODATA))
		return ra < 0 && ra != -ENODATA ? ra : rb;
	*ret = ra == rb && (ra < 0 || (la == lb && memcmp(va, vb, la) == 0));
	return 0;
}

/* continuity's sameFile (spec §8.1). */
static int same_file(int afd, const char *name, const struct stat *as, int bfd,
                     const struct stat *bs, bool *ret)
{
	*ret = false;
	if (as->st_dev == bs->st_dev && as->st_ino == bs->st_ino) {
		*ret = true;
		return 0;
	}
	if (as->st_mode != bs->st_mode || as->st_uid != bs->st_uid || as->st_gid != bs->st_gid ||
	    as->st_rdev != bs->st_rdev)
		return 0;
	bool eq;
	int r = same_xattr(afd, name, bfd, name, "security.capability", &eq);
	if (r < 0 || !eq)
		return r;
	if (S_ISDIR(as->st_mode)) {
		*ret = true;
		return 0;
	}
	if (as->st_size != bs->st_size || as->st_mtim.tv_sec != bs->st_mtim.tv_sec)
		return 0;
	if (as->st_mtim.tv_nsec != bs->st_mtim.tv_nsec)
		return 0;
	if (as->st_mtim.tv_nsec != 0) {
		*ret = true;
		return 0;
	}
	/* Both mtimes may have been truncated by a tar round trip: look at the contents. */
	if (S_ISLNK(as->st_mode)) {
		char ta[PATH_MAX], tb[PATH_MAX];
		ssize_t na = readlinkat(afd, name, ta, sizeof(ta));
		ssize_t nb = readlinkat(bfd, name, tb, sizeof(tb));
		if (na < 0 || nb < 0)
			return -errno;
		*ret = na == nb && memcmp(ta, tb, (size_t)na) == 0;
		return 0;
	}
	if (as->st_size == 0 || !S_ISREG(as->st_mode)) {
		*ret = true;
		return 0;
	}
	return same_content(afd, name, bfd, name, ret);
}

/* ---- walking ---- */

struct names {
	char **v;
	size_t n;
};

static void names_done(struct names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static int list_dir(int dfd, struct names *ret)
{
	*ret = (struct names){0};
	if (dfd < 0)
		return 0;
	int dup_fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dup_fd < 0)
		return -errno;
	DIR *dir = fdopendir(dup_fd);
	if (!dir) {
		safe_close(dup_fd);
		return -errno;
	}
	size_t cap = 0;
	int r = 0;
	struct dirent *de;
	while ((errno = 0, de = readdir(dir))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (ret->n == cap) {
			cap = cap ? cap * 2 : 32;
			char **nv = realloc(ret->v, cap * sizeof(*nv));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			ret->v = nv;
		}
		if (!(ret->v[ret->n] = strdup(de->d_name))) {
			r = -ENOMEM;
			break;
		}
		ret->n++;
	}
	if (r == 0 && errno)
		r = -errno;
	closedir(dir);
	if (r < 0) {
		names_done(ret);
		return r;
	}
	if (ret->n > 1)
		qsort(ret->v, ret->n, sizeof(*ret->v), cmp_str);
	return 0;
}

static int open_subdir(int dfd, const char *name, const char *path, cairn_error **reterr)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return err_errno(reterr, -errno, "open '%s'", path);
	return fd;
}

static int walk(struct diff *d, int afd, int bfd, const char *prefix, cairn_error **reterr);

/* A path present in both trees. */
static int walk_both(struct diff *d, int afd, int bfd, const char *name, const char *path,
                     cairn_error **reterr)
{
	struct stat as, bs;
	if (fstatat(afd, name, &as, AT_SYMLINK_NOFOLLOW) < 0)
		return err_errno(reterr, -errno, "stat lower '%s'", path);
	if (fstatat(bfd, name, &bs, AT_SYMLINK_NOFOLLOW) < 0)
		return err_errno(reterr, -errno, "stat '%s'", path);
	bool same;
	int r = same_file(afd, name, &as, bfd, &bs, &same);
	if (r < 0)
		return err_errno(reterr, r, "compare '%s'", path);
	if (!same)
		r = handle_change(d, MODIFY, path, &bs, bfd, name, reterr);
	else if (!S_ISDIR(bs.st_mode) && bs.st_nlink > 1)
		r = handle_change(d, UNMODIFIED, path, &bs, bfd, name, reterr);
	if (r < 0 || !S_ISDIR(bs.st_mode))
		return r;
	_cleanup_close_ int sb = open_subdir(bfd, name, path, reterr);
	if (sb < 0)
		return sb;
	/* A directory replacing a non-directory: everything below it is new. */
	_cleanup_close_ int sa =
		S_ISDIR(as.st_mode) ? open_subdir(afd, name, path, reterr) : -EBADF;
	if (S_ISDIR(as.st_mode) && sa < 0)
		return sa;
	return walk(d, sa, sb, path, reterr);
}

static int walk_added(struct diff *d, int bfd, const char *name, const char *path,
                      cairn_error **reterr)
{
	struct stat bs;
	if (fstatat(bfd, name, &bs, AT_SYMLINK_NOFOLLOW) < 0)
		return err_errno(reterr, -errno, "stat '%s'", path);
	int r = handle_change(d, ADD, path, &bs, bfd, name, reterr);
	if (r < 0 || !S_ISDIR(bs.st_mode))
		return r;
	_cleanup_close_ int sb = open_subdir(bfd, name, path, reterr);
	if (sb < 0)
		return sb;
	return walk(d, -EBADF, sb, path, reterr);
}

/* The double walk of directories @afd (may be < 0: absent) and @bfd, both at @prefix. */
static int walk(struct diff *d, int afd, int bfd, const char *prefix, cairn_error **reterr)
{
	struct names a, b;
	int r = list_dir(afd, &a);
	if (r < 0)
		return err_errno(reterr, r, "read lower directory '%s'", *prefix ? prefix : "/");
	r = list_dir(bfd, &b);
	if (r < 0) {
		names_done(&a);
		return err_errno(reterr, r, "read directory '%s'", *prefix ? prefix : "/");
	}
	size_t i = 0, j = 0;
	while (r >= 0 && (i < a.n || j < b.n)) {
		int c = i == a.n ? 1 : j == b.n ? -1 : strcmp(a.v[i], b.v[j]);
		const char *name = c < 0 ? a.v[i] : b.v[j];
		_cleanup_free_ char *path = path_join(prefix, name);
		if (!path)
			r = err_set(reterr, -ENOMEM, "'%s': out of memory", name);
		else if (c < 0)
			r = handle_change(d, DELETE, path, NULL, -1, NULL, reterr);
		else if (c > 0)
			r = walk_added(d, bfd, name, path, reterr);
		else
			r = walk_both(d, afd, bfd, name, path, reterr);
		i += c <= 0;
		j += c >= 0;
	}
	names_done(&a);
	names_done(&b);
	return r;
}

/* ---- the overlay fast path ---- */

static bool xattr_is_y(int fd, const char *key)
{
	char v[2];
	return fgetxattr(fd, key, v, sizeof(v)) == 1 && v[0] == 'y';
}

static bool lower_has(struct diff *d, const char *path, struct stat *ret)
{
	if (d->lowerfd < 0)
		return false;
	_cleanup_close_ int fd = fs_openat(d->lowerfd, path, O_PATH | O_NOFOLLOW, 0, NULL);
	return fd >= 0 && fstat(fd, ret) == 0;
}

/* A directory whose lower twin has the same mode, owner and mtime (seconds when either lost its
 * nanoseconds) needs no entry of its own. */
static bool dir_unchanged(struct diff *d, const char *path, const struct stat *st)
{
	struct stat ls;
	if (!lower_has(d, path, &ls) || ls.st_mode != st->st_mode || ls.st_uid != st->st_uid ||
	    ls.st_gid != st->st_gid || ls.st_mtim.tv_sec != st->st_mtim.tv_sec)
		return false;
	return ls.st_mtim.tv_nsec == st->st_mtim.tv_nsec || ls.st_mtim.tv_nsec == 0 ||
	       st->st_mtim.tv_nsec == 0;
}

static int walk_upper(struct diff *d, int bfd, const char *prefix, cairn_error **reterr);

static int upper_dir(struct diff *d, int bfd, const char *name, const char *path,
                     const struct stat *st, cairn_error **reterr)
{
	_cleanup_close_ int sub = open_subdir(bfd, name, path, reterr);
	if (sub < 0)
		return sub;
	char v[1];
	if (fgetxattr(sub, "trusted.overlay.redirect", v, 0) >= 0 || errno == ERANGE)
		return err_set(reterr, -EOPNOTSUPP,
		               "'%s': renamed overlay directory (redirect_dir) cannot be diffed "
		               "from the upper directory",
		               path);
	bool opaque =
		xattr_is_y(sub, "trusted.overlay.opaque") || xattr_is_y(sub, "user.overlay.opaque");
	int r = 0;
	if (opaque || !dir_unchanged(d, path, st))
		r = handle_change(d, MODIFY, path, st, bfd, name, reterr);
	if (r >= 0 && opaque) {
		/* DELETE of "<dir>/.wh..opq" is written as "<dir>/.wh..wh..opq". */
		_cleanup_free_ char *marker = path_join(path, ".wh..opq");
		r = marker ? handle_change(d, DELETE, marker, NULL, -1, NULL, reterr)
		           : err_set(reterr, -ENOMEM, "'%s': out of memory", path);
	}
	return r < 0 ? r : walk_upper(d, sub, path, reterr);
}

static int upper_entry(struct diff *d, int bfd, const char *name, const char *path,
                       cairn_error **reterr)
{
	struct stat st, ls;
	if (fstatat(bfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return err_errno(reterr, -errno, "stat '%s'", path);
	if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
		if (d->lowerfd >= 0 && !lower_has(d, path, &ls))
			return 0; /* hides nothing */
		return handle_change(d, DELETE, path, NULL, -1, NULL, reterr);
	}
	if (S_ISDIR(st.st_mode))
		return upper_dir(d, bfd, name, path, &st, reterr);
	if (S_ISREG(st.st_mode)) {
		ssize_t n = xattr_get_at(bfd, name, "trusted.overlay.metacopy", NULL, 0);
		if (n >= 0)
			return err_set(reterr, -EOPNOTSUPP,
			               "'%s': metacopy file holds no data in the upper directory",
			               path);
	}
	return handle_change(d, MODIFY, path, &st, bfd, name, reterr);
}

static int walk_upper(struct diff *d, int bfd, const char *prefix, cairn_error **reterr)
{
	struct names b;
	int r = list_dir(bfd, &b);
	if (r < 0)
		return err_errno(reterr, r, "read directory '%s'", *prefix ? prefix : "/");
	for (size_t j = 0; r >= 0 && j < b.n; j++) {
		_cleanup_free_ char *path = path_join(prefix, b.v[j]);
		r = path ? upper_entry(d, bfd, b.v[j], path, reterr)
		         : err_set(reterr, -ENOMEM, "'%s': out of memory", b.v[j]);
	}
	names_done(&b);
	return r;
}

/* ---- driver ---- */

static int diff_run(struct diff *d, cairn_error **reterr)
{
	d->a = archive_write_new();
	d->e = archive_entry_new();
	d->buf = malloc(COPY_BUF);
	if (!d->a || !d->e || !d->buf)
		return err_set(reterr, -ENOMEM, "diff: out of memory");
	/* pax_restricted: ustar headers, pax records only where a field needs them (as Go's
	 * writer does); xattrs as SCHILY.xattr records only (what containerd reads), not also as
	 * LIBARCHIVE.xattr; blocks of 128 KiB for the compressor, no padding after the end
	 * marker. */
	if (archive_write_set_format_pax_restricted(d->a) != ARCHIVE_OK ||
	    archive_write_set_format_option(d->a, "pax", "xattrheader", "SCHILY") != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(d->a, TAR_BLOCKS) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(d->a, 1) != ARCHIVE_OK ||
	    archive_write_open2(d->a, d, NULL, write_cb, NULL, NULL) != ARCHIVE_OK)
		return archive_fail(d, "", reterr);
	_cleanup_close_ int bfd = fs_openat(d->upperfd, "", O_RDONLY | O_DIRECTORY, 0, reterr);
	if (bfd < 0)
		return bfd;
	int r;
	if (d->overlay) {
		r = walk_upper(d, bfd, "", reterr);
	} else {
		_cleanup_close_ int afd =
			d->lowerfd >= 0
				? fs_openat(d->lowerfd, "", O_RDONLY | O_DIRECTORY, 0, reterr)
				: -EBADF;
		if (d->lowerfd >= 0 && afd < 0)
			return afd;
		r = walk(d, afd, bfd, "", reterr);
	}
	if (r < 0)
		return r;
	if (archive_write_close(d->a) != ARCHIVE_OK)
		return archive_fail(d, "(end of archive)", reterr);
	return 0;
}

static int diff_main(int lowerfd, int upperfd, layer_writer *w, bool overlay,
                     const struct layer_diff_opts *opts, struct layer_diff_result *ret,
                     cairn_error **reterr)
{
	static const struct layer_diff_opts defaults = {0};
	struct diff d = {
		.lowerfd = lowerfd,
		.upperfd = upperfd,
		.opts = opts ? opts : &defaults,
		.overlay = overlay,
		.w = w,
	};
	locale_t old = locale_push();
	int r = diff_run(&d, reterr);
	d.aborted = r < 0;
	if (d.a)
		archive_write_free(d.a);
	locale_pop(old);
	archive_entry_free(d.e);
	free(d.buf);
	cairn_error_free(d.werr);
	pathset_done(&d.dirs);
	links_done(&d.links);
	if (r < 0 && d.opts->what)
		return err_prefix(reterr, "diff '%s'", d.opts->what);
	if (r == 0 && ret)
		ret->entries = d.entries;
	return r;
}

int layer_diff(int lowerfd, int upperfd, layer_writer *w, const struct layer_diff_opts *opts,
               struct layer_diff_result *ret, cairn_error **reterr)
{
	return diff_main(lowerfd, upperfd, w, false, opts, ret, reterr);
}

int layer_diff_overlay(int lowerfd, int upperfd, layer_writer *w,
                       const struct layer_diff_opts *opts, struct layer_diff_result *ret,
                       cairn_error **reterr)
{
	return diff_main(lowerfd, upperfd, w, true, opts, ret, reterr);
}
