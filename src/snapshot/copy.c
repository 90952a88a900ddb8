/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "copy.h"

#define CFR_CHUNK (1LL << 30) /* copy_file_range moves at most this much per call */

/* Inodes already copied (hard links): open addressing on (dev, ino) -> relative path. */
struct link_slot {
	dev_t dev;
	ino_t ino;
	char *path;
};

struct copier {
	int dst_root;
	dev_t dev; /* the source filesystem: mounts below are not entered */
	const char *what;
	char *path; /* relative path of the current entry; grows */
	size_t path_len, path_cap;
	struct link_slot *links;
	size_t n_links, cap_links;
	bool try_reflink, try_cfr;
	cairn_error **reterr;
};

static size_t link_hash(dev_t dev, ino_t ino, size_t cap)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ULL) ^ dev) & (cap - 1);
}

static struct link_slot *link_find(struct copier *c, dev_t dev, ino_t ino)
{
	if (!c->cap_links)
		return NULL;
	for (size_t i = link_hash(dev, ino, c->cap_links);; i = (i + 1) & (c->cap_links - 1)) {
		struct link_slot *s = &c->links[i];
		if (!s->path)
			return NULL;
		if (s->dev == dev && s->ino == ino)
			return s;
	}
}

static int link_add(struct copier *c, dev_t dev, ino_t ino, const char *path)
{
	if ((c->n_links + 1) * 2 > c->cap_links) {
		size_t ncap = c->cap_links ? c->cap_links * 2 : 64;
		struct link_slot *n = calloc(ncap, sizeof(*n));
		if (!n)
			return -ENOMEM;
		for (size_t i = 0; i < c->cap_links; i++) {
			struct link_slot *s = &c->links[i];
			if (!s->path)
				continue;
			size_t j = link_hash(s->dev, s->ino, ncap);
			while (n[j].path)
				j = (j + 1) & (ncap - 1);
			n[j] = *s;
		}
		free(c->links);
		c->links = n;
		c->cap_links = ncap;
	}
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	size_t j = link_hash(dev, ino, c->cap_links);
	while (c->links[j].path)
		j = (j + 1) & (c->cap_links - 1);
	c->links[j] = (struct link_slot){dev, ino, p};
	c->n_links++;
	return 0;
}

/* Appends "/name" (or "name" at the top) to the current path; returns the old length. */
static int path_push(struct copier *c, const char *name, size_t *ret_old)
{
	size_t n = strlen(name), need = c->path_len + n + 2;
	if (need > c->path_cap) {
		size_t cap = c->path_cap ? c->path_cap * 2 : 256;
		while (cap < need)
			cap *= 2;
		char *p = realloc(c->path, cap);
		if (!p)
			return -ENOMEM;
		c->path = p;
		c->path_cap = cap;
	}
	*ret_old = c->path_len;
	if (c->path_len)
		c->path[c->path_len++] = '/';
	memcpy(c->path + c->path_len, name, n + 1);
	c->path_len += n;
	return 0;
}

static void path_pop(struct copier *c, size_t old)
{
	c->path_len = old;
	c->path[old] = '\0';
}

static int fail(struct copier *c, int code, const char *op)
{
	return err_errno(c->reterr, code, "%s '%s/%s'", op, c->what, c->path);
}

/* Copies bytes [off, off + len) with read/write: the fallback for copy_file_range. */
static int copy_rw(int sfd, int dfd, off_t off, off_t len)
{
	static const size_t bufsize = 128 * 1024;
	_cleanup_free_ char *buf = malloc(bufsize);
	if (!buf)
		return -ENOMEM;
	while (len > 0) {
		ssize_t n = pread(sfd, buf, len < (off_t)bufsize ? (size_t)len : bufsize, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0; /* the file shrank: copy what there is */
		for (ssize_t w = 0; w < n;) {
			ssize_t k = pwrite(dfd, buf + w, (size_t)(n - w), off + w);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return -errno;
			w += k;
		}
		off += n;
		len -= n;
	}
	return 0;
}

static int copy_range(struct copier *c, int sfd, int dfd, off_t off, off_t len)
{
	loff_t so = off, doff = off;
	while (c->try_cfr && len > 0) {
		ssize_t n = copy_file_range(sfd, &so, dfd, &doff,
		                            (size_t)(len < CFR_CHUNK ? len : CFR_CHUNK), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 &&
		    (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
			c->try_cfr = false;
			break;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		len -= n;
	}
	return len > 0 ? copy_rw(sfd, dfd, so, len) : 0;
}

/* Data of a regular file: a reflink, else only the extents that hold data. */
static int copy_data(struct copier *c, int sfd, int dfd, off_t size)
{
	if (c->try_reflink) {
		if (ioctl(dfd, FICLONE, sfd) == 0)
			return 0;
		if (errno != EOPNOTSUPP && errno != ENOTTY && errno != EXDEV && errno != EINVAL)
			return -errno;
		c->try_reflink = false;
	}
	if (ftruncate(dfd, size) < 0)
		return -errno;
	for (off_t off = 0; off < size;) {
		off_t data = lseek(sfd, off, SEEK_DATA), hole;
		if (data < 0 && errno == ENXIO)
			break; /* only a hole remains */
		if (data < 0 && errno != EINVAL)
			return -errno;
		if (data < 0) {
			data = off; /* no SEEK_DATA here: copy it all */
			hole = size;
		} else {
			hole = lseek(sfd, data, SEEK_HOLE);
			if (hole < 0 || hole > size)
				hole = size;
		}
		int r = copy_range(c, sfd, dfd, data, hole - data);
		if (r < 0)
			return r;
		off = hole;
	}
	return 0;
}

/* Xattrs of @sfd onto @dfd (both fds), or of the paths @spath/@dpath when fds are -1. */
static int copy_xattrs(struct copier *c, int sfd, int dfd, const char *spath, const char *dpath)
{
	char names[16384], val[65536];
	ssize_t n = sfd >= 0 ? flistxattr(sfd, names, sizeof(names))
	                     : llistxattr(spath, names, sizeof(names));
	if (n < 0 && (errno == ENOTSUP || errno == ENOSYS))
		return 0;
	if (n < 0)
		return fail(c, -errno, "list xattrs of");
	for (char *name = names; name < names + n; name += strlen(name) + 1) {
		ssize_t len = sfd >= 0 ? fgetxattr(sfd, name, val, sizeof(val))
		                       : lgetxattr(spath, name, val, sizeof(val));
		if (len < 0 && errno == ENODATA)
			continue;
		if (len < 0)
			return fail(c, -errno, "read xattr of");
		int r = dfd >= 0 ? fsetxattr(dfd, name, val, (size_t)len, 0)
		                 : lsetxattr(dpath, name, val, (size_t)len, 0);
		if (r < 0) /* security.* and friends are often refused: skip, as containerd */
			log_debug("copy '%s/%s': skip xattr '%s': %m", c->what, c->path, name);
	}
	return 0;
}

static int chown_ok(int r, const struct stat *st, int dfd, const char *name)
{
	if (r == 0 || errno != EPERM)
		return r < 0 ? -errno : 0;
	/* EPERM is fine when the owner already matches (unprivileged copies of one's own files). */
	struct stat now;
	if (fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) == 0 &&
	    now.st_uid == st->st_uid && now.st_gid == st->st_gid)
		return 0;
	return -EPERM;
}

/* Owner, mode, xattrs and times of an open file or directory (chown first: it clears setuid). */
static int meta_fd(struct copier *c, int sfd, int dfd, const struct stat *st)
{
	int r = chown_ok(fchown(dfd, st->st_uid, st->st_gid), st, dfd, "");
	if (r < 0)
		return fail(c, r, "chown");
	if (fchmod(dfd, st->st_mode & 07777) < 0)
		return fail(c, -errno, "chmod");
	r = copy_xattrs(c, sfd, dfd, NULL, NULL);
	if (r < 0)
		return r;
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	if (futimens(dfd, ts) < 0)
		return fail(c, -errno, "set times of");
	return 0;
}

/* The same for an entry that is not opened (symlink, device, FIFO, socket). */
static int meta_at(struct copier *c, int sdir, int ddir, const char *name, const struct stat *st)
{
	int r = chown_ok(fchownat(ddir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW), st,
	                 ddir, name);
	if (r < 0)
		return fail(c, r, "chown");
	if (!S_ISLNK(st->st_mode) && fchmodat(ddir, name, st->st_mode & 07777, 0) < 0)
		return fail(c, -errno, "chmod");
	/* No fd to these without side effects (FIFOs block): name them through /proc. */
	char sp[PATH_MAX], dp[PATH_MAX];
	snprintf(sp, sizeof(sp), "/proc/self/fd/%d/%s", sdir, name);
	snprintf(dp, sizeof(dp), "/proc/self/fd/%d/%s", ddir, name);
	r = copy_xattrs(c, -1, -1, sp, dp);
	if (r < 0)
		return r;
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	if (utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return fail(c, -errno, "set times of");
	return 0;
}

static int copy_dir(struct copier *c, int sfd, int dfd);

static int copy_file(struct copier *c, int sdir, int ddir, const char *name, const struct stat *st)
{
	_cleanup_close_ int sfd = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0)
		return fail(c, -errno, "open");
	_cleanup_close_ int dfd =
		openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (dfd < 0)
		return fail(c, -errno, "create");
	int r = copy_data(c, sfd, dfd, st->st_size);
	if (r < 0)
		return fail(c, r, "copy");
	return meta_fd(c, sfd, dfd, st);
}

static int copy_subdir(struct copier *c, int sdir, int ddir, const char *name,
                       const struct stat *st)
{
	if (mkdirat(ddir, name, 0700) < 0)
		return fail(c, -errno, "mkdir");
	_cleanup_close_ int sfd =
		openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_close_ int dfd =
		openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0 || dfd < 0)
		return fail(c, -errno, "open");
	if (st->st_dev == c->dev) {
		int r = copy_dir(c, sfd, dfd);
		if (r < 0)
			return r;
	}
	return meta_fd(c, sfd, dfd, st); /* after the children, so the times stick */
}

static int copy_special(struct copier *c, int sdir, int ddir, const char *name,
                        const struct stat *st)
{
	if (S_ISLNK(st->st_mode)) {
		char target[PATH_MAX + 1];
		ssize_t n = readlinkat(sdir, name, target, sizeof(target) - 1);
		if (n < 0)
			return fail(c, -errno, "readlink");
		target[n] = '\0';
		if (symlinkat(target, ddir, name) < 0)
			return fail(c, -errno, "symlink");
	} else if (mknodat(ddir, name, (st->st_mode & S_IFMT) | 0600, st->st_rdev) < 0) {
		return fail(c, -errno, "mknod");
	}
	return meta_at(c, sdir, ddir, name, st);
}

static int copy_entry(struct copier *c, int sdir, int ddir, const char *name)
{
	struct stat st;
	if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return fail(c, -errno, "stat");
	if (S_ISDIR(st.st_mode))
		return copy_subdir(c, sdir, ddir, name, &st);
	if (st.st_nlink > 1) {
		struct link_slot *l = link_find(c, st.st_dev, st.st_ino);
		if (l) {
			if (linkat(c->dst_root, l->path, ddir, name, 0) < 0)
				return fail(c, -errno, "hard link");
			return 0;
		}
		if (link_add(c, st.st_dev, st.st_ino, c->path) < 0)
			return fail(c, -ENOMEM, "copy");
	}
	if (S_ISREG(st.st_mode))
		return copy_file(c, sdir, ddir, name, &st);
	if (S_ISLNK(st.st_mode) || S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ||
	    S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))
		return copy_special(c, sdir, ddir, name, &st);
	log_debug("copy '%s/%s': skip file of unknown type 0%o", c->what, c->path,
	          (unsigned)(st.st_mode & S_IFMT));
	return 0;
}

static int copy_dir(struct copier *c, int sfd, int dfd)
{
	int dup_fd = openat(sfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dup_fd < 0)
		return fail(c, -errno, "open");
	DIR *d = fdopendir(dup_fd);
	if (!d) {
		safe_close(dup_fd);
		return fail(c, -errno, "opendir");
	}
	int r = 0;
	struct dirent *de;
	while (r == 0 && (de = fs_readdir(d))) {
		size_t old;
		if (path_push(c, de->d_name, &old) < 0) {
			r = fail(c, -ENOMEM, "copy");
			break;
		}
		r = copy_entry(c, sfd, dfd, de->d_name);
		path_pop(c, old);
	}
	if (r == 0 && errno != 0)
		r = fail(c, -errno, "readdir");
	closedir(d);
	return r;
}

int snap_copy_tree(int srcfd, int dstfd, const char *what, cairn_error **reterr)
{
	struct stat st;
	if (fstat(srcfd, &st) < 0)
		return err_errno(reterr, -errno, "stat '%s'", what);
	struct copier c = {
		.dst_root = dstfd,
		.dev = st.st_dev,
		.what = what,
		.try_reflink = true,
		.try_cfr = true,
		.reterr = reterr,
	};
	int r = path_push(&c, "", &(size_t){0});
	if (r < 0)
		r = err_set(reterr, r, "copy '%s': out of memory", what);
	if (r == 0)
		r = copy_dir(&c, srcfd, dstfd);
	if (r == 0)
		r = meta_fd(&c, srcfd, dstfd, &st);
	for (size_t i = 0; i < c.cap_links; i++)
		free(c.links[i].path);
	free(c.links);
	free(c.path);
	return r;
}
