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
#include "apply.h"
#include "util.h"

#define COPY_BUF (128 * 1024)

/*
 * With opts->writeback, writeback of a large file is started every WRITEBACK_STEP bytes
 * (sync_file_range, no wait), so the disk works while the layer is still being inflated and a
 * syncfs() after the apply finds little left to write.
 */
#define WRITEBACK_STEP (8 << 20)

/* Deepest directory chain kept open while applying (deeper parents take the slow path). */
#define CHAIN_MAX 64

struct dirtime {
	char *path; /* cleaned name from the tar, resolved again at the end */
	struct timespec ts[2];
};

struct apply {
	int rootfd;
	const struct layer_apply_opts *opts;
	layer_reader *reader;
	struct archive *a;
	cairn_error *rerr; /* the reader's error, raised under a libarchive callback */
	int rcode;
	struct pathset unpacked; /* delete mode: paths unpacked from this layer (for opaque) */
	struct dirtime *dirs;
	size_t n_dirs, cap_dirs;
	/* The parent of the previous entry: tar dir part, its resolved path, an fd on it (owned
	 * when cache_owned, else the top of the chain). */
	char *cache_key, *cache_res;
	int cache_fd;
	bool cache_owned;
	/*
	 * The directories leading to the parent when its path holds no symlink: chain_fd[i] is
	 * open on the first chain_end[i] bytes of cache_key. Entries only ever change children of
	 * their parent, never the directories leading to it, so the chain stays valid while the
	 * next entries' parents share a prefix with it; moving to a sibling directory costs one
	 * openat() instead of a walk from the root.
	 */
	int chain_fd[CHAIN_MAX];
	size_t chain_end[CHAIN_MAX];
	size_t n_chain;
	int root_dfd; /* the root, O_RDONLY */
	int plain;    /* -1 unknown; 1: the parent has no setgid bit and no default ACL */
	uid_t uid;    /* who creates the objects */
	gid_t gid;
	mode_t umask; /* the umask when the layer started (0777 when unknown) */
	int userns;   /* -1 unknown */
	uint64_t entries;
};

static bool overlay(const struct apply *ap)
{
	return ap->opts->whiteout == LAYER_WHITEOUT_OVERLAY;
}

static const char *opaque_xattr(const struct apply *ap)
{
	return ap->opts->userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque";
}

static bool in_userns(struct apply *ap)
{
	if (ap->userns >= 0)
		return ap->userns;
	ap->userns = fs_in_userns();
	return ap->userns;
}

/* xattrs never copied from a tar or a lower layer: trusted.* (containerd refuses them, and they
 * include overlayfs's own trusted.overlay.*), and user.overlay.* which overlayfs reads under
 * userxattr. */
static bool skip_lower_xattr(const char *key)
{
	return strncmp(key, "trusted.", 8) == 0 || strncmp(key, "user.overlay.", 13) == 0;
}

static bool skip_tar_xattr(const struct apply *ap, const char *key)
{
	return strncmp(key, "trusted.", 8) == 0 ||
	       (overlay(ap) && strncmp(key, "user.overlay.", 13) == 0);
}

/* ---- libarchive boundary ---- */

static la_ssize_t read_cb(struct archive *a, void *userdata, const void **buf)
{
	struct apply *ap = userdata;
	ssize_t n = layer_reader_read(ap->reader, buf, &ap->rerr);
	if (n < 0) {
		ap->rcode = (int)n;
		archive_set_error(a, EIO, "%s", cairn_error_message(ap->rerr));
		return -1;
	}
	return n;
}

/* Translate a libarchive failure: the reader's own error when it caused it, else the tar's. */
static int archive_fail(struct apply *ap, cairn_error **reterr, const char *ctx)
{
	if (ap->rcode)
		return err_set(reterr, ap->rcode, "%s", cairn_error_message(ap->rerr));
	int code = archive_errno(ap->a) == ENOMEM ? -ENOMEM : CAIRN_ECORRUPT;
	const char *msg = archive_error_string(ap->a);
	return err_set(reterr, code, "%s: invalid tar: %s", ctx, msg ? msg : "unknown error");
}

/* ---- times ---- */

static struct timespec bound(time_t s, long ns)
{
	if (s < 0)
		return (struct timespec){0, 0};
	return (struct timespec){s, ns};
}

static void entry_times(struct archive_entry *e, struct timespec ts[2])
{
	ts[1] = bound(archive_entry_mtime(e), archive_entry_mtime_nsec(e));
	ts[0] = ts[1];
	if (archive_entry_atime_is_set(e)) {
		struct timespec a = bound(archive_entry_atime(e), archive_entry_atime_nsec(e));
		if (a.tv_sec > ts[1].tv_sec ||
		    (a.tv_sec == ts[1].tv_sec && a.tv_nsec > ts[1].tv_nsec))
			ts[0] = a;
	}
}

static int remember_dir(struct apply *ap, const char *path, struct archive_entry *e,
                        cairn_error **reterr)
{
	if (ap->n_dirs == ap->cap_dirs) {
		size_t ncap = ap->cap_dirs ? ap->cap_dirs * 2 : 64;
		struct dirtime *nd = realloc(ap->dirs, ncap * sizeof(*nd));
		if (!nd)
			return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
		ap->dirs = nd;
		ap->cap_dirs = ncap;
	}
	struct dirtime *d = &ap->dirs[ap->n_dirs];
	d->path = strdup(path);
	if (!d->path)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
	entry_times(e, d->ts);
	ap->n_dirs++;
	return 0;
}

static int parent(struct apply *ap, const char *dir, bool create, cairn_error **reterr);

/* After the stream: directory times, in archive order, never through a link. */
static int restore_dir_times(struct apply *ap, cairn_error **reterr)
{
	for (size_t i = 0; i < ap->n_dirs; i++) {
		_cleanup_free_ char *copy = strdup(ap->dirs[i].path);
		if (!copy)
			return err_set(reterr, -ENOMEM, "'%s': out of memory", ap->dirs[i].path);
		const char *dir, *base;
		path_split(copy, &dir, &base);
		int dfd = parent(ap, dir, false, NULL);
		if (dfd == -ENOMEM)
			return err_set(reterr, -ENOMEM, "'%s': out of memory", ap->dirs[i].path);
		struct stat st;
		if (dfd < 0 || fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue; /* removed or replaced by a later entry */
		if (utimensat(dfd, base, ap->dirs[i].ts, AT_SYMLINK_NOFOLLOW) < 0)
			return err_errno(reterr, -errno, "set times of '%s'", ap->dirs[i].path);
	}
	return 0;
}

/* ---- parents ---- */

/* An overlay whiteout: a character device 0/0. */
static bool is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

static bool is_opaque(int dfd)
{
	char v[2];
	ssize_t n = fgetxattr(dfd, "trusted.overlay.opaque", v, sizeof(v));
	if (n == 1 && v[0] == 'y')
		return true;
	n = fgetxattr(dfd, "user.overlay.opaque", v, sizeof(v));
	return n == 1 && v[0] == 'y';
}

/* Directory @fd was just created at @path: take the attributes of the first lower directory at
 * the same path, as an overlayfs copy-up would (spec §7.4). */
static int inherit(struct apply *ap, const char *path, int fd, cairn_error **reterr)
{
	for (size_t i = 0; i < ap->opts->n_parents; i++) {
		int pfd = ap->opts->parent_fds[i];
		_cleanup_free_ char *res = NULL;
		if (root_path(pfd, path, true, &res) < 0)
			continue;
		_cleanup_close_ int lfd = fs_openat(pfd, res, O_PATH | O_NOFOLLOW, 0, NULL);
		struct stat st;
		if (lfd < 0 || fstat(lfd, &st) < 0)
			continue;
		if (!S_ISDIR(st.st_mode))
			return 0;
		safe_close(lfd);
		lfd = fs_openat(pfd, res, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, NULL);
		if (lfd < 0)
			return 0;
		if (fchown(fd, st.st_uid, st.st_gid) < 0 && errno != EPERM)
			return err_errno(reterr, -errno, "chown '%s'", path);
		struct timespec ts[2] = {st.st_atim, st.st_mtim};
		if (fchmod(fd, st.st_mode & 07777) < 0 || futimens(fd, ts) < 0)
			return err_errno(reterr, -errno, "copy attributes to '%s'", path);
		int r = copy_xattrs(lfd, -1, NULL, fd, -1, NULL, skip_lower_xattr, XATTR_CREATE);
		if (r < 0)
			return err_errno(reterr, r, "copy xattrs to '%s'", path);
		return 0;
	}
	return 0;
}

/*
 * Open directory @res (resolved, symlink-free) below the root, creating what is missing with
 * mode 0755 (chmod'ed: umask-proof) and inherited attributes. Returns an O_RDONLY fd.
 */
static int mkparent(struct apply *ap, const char *res, cairn_error **reterr)
{
	int fd = fs_openat(ap->rootfd, res, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, NULL);
	if (fd >= 0)
		return fd;
	if (fd != -ENOENT)
		return err_errno(reterr, fd == -ELOOP ? -ENOTDIR : fd, "open directory '%s'",
		                 *res ? res : "/");
	_cleanup_close_ int cur = fs_openat(ap->rootfd, "", O_RDONLY | O_DIRECTORY, 0, reterr);
	if (cur < 0)
		return cur;
	_cleanup_free_ char *prefix = strdup(res);
	if (!prefix)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", res);
	for (char *p = prefix, *e;; p = e + 1) {
		e = strchrnul(p, '/');
		char saved = *e;
		*e = '\0';
		if (!fs_name_valid(p))
			return err_set(reterr, -EINVAL, "create directory '%s': invalid name",
			               prefix);
		bool created = mkdirat(cur, p, 0755) == 0;
		if (!created && errno != EEXIST)
			return err_errno(reterr, -errno, "create directory '%s'", prefix);
		int next = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
			return err_errno(reterr, errno == ELOOP ? -ENOTDIR : -errno,
			                 "open directory '%s'", prefix);
		safe_close(cur);
		cur = next;
		if (created && fchmod(cur, 0755) < 0)
			return err_errno(reterr, -errno, "chmod '%s'", prefix);
		if (created) {
			int r = inherit(ap, prefix, cur, reterr);
			if (r < 0)
				return r;
		}
		if (!saved)
			break;
		*e = saved;
	}
	return TAKE_FD(cur);
}

/* Closes the chain's directories deeper than @n. */
static void chain_cut(struct apply *ap, size_t n)
{
	while (ap->n_chain > n)
		safe_close(ap->chain_fd[--ap->n_chain]);
}

static int chain_top(const struct apply *ap)
{
	return ap->n_chain ? ap->chain_fd[ap->n_chain - 1] : ap->root_dfd;
}

/*
 * Extends the chain down @dir (cleaned; the chain holds a component-wise prefix of it) through
 * directories that exist and are not symlinks, one openat() each. False when a component is
 * missing, a symlink or no directory, or the chain is full: the slow path resolves @dir then.
 */
static bool chain_descend(struct apply *ap, const char *dir)
{
	for (;;) {
		size_t start = ap->n_chain ? ap->chain_end[ap->n_chain - 1] : 0;
		if (dir[start] == '\0')
			return true;
		if (dir[start] == '/')
			start++;
		size_t n = (size_t)(strchrnul(dir + start, '/') - (dir + start));
		char name[NAME_MAX + 1];
		if (ap->n_chain == CHAIN_MAX || n > NAME_MAX)
			return false;
		memcpy(name, dir + start, n);
		name[n] = '\0';
		int fd = openat(chain_top(ap), name,
		                O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return false;
		ap->chain_fd[ap->n_chain] = fd;
		ap->chain_end[ap->n_chain++] = start + n;
	}
}

static void parent_forget(struct apply *ap)
{
	free(ap->cache_key);
	free(ap->cache_res);
	ap->cache_key = ap->cache_res = NULL;
	if (ap->cache_owned)
		safe_close(ap->cache_fd);
	ap->cache_fd = -EBADF;
	ap->cache_owned = false;
	ap->plain = -1;
}

/* Makes the chain, now open down all of @key, the cached parent (taking @key). */
static int parent_chain(struct apply *ap, char **key, cairn_error **reterr)
{
	ap->cache_res = strdup(*key);
	if (!ap->cache_res)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", *key);
	ap->cache_key = TAKE_PTR(*key);
	ap->cache_fd = chain_top(ap);
	return ap->cache_fd;
}

/*
 * The parent directory fd of an entry whose cleaned dir part is @dir; borrowed (cached). With
 * @create, missing directories are made (mkparent); without, a missing one is -ENOENT with no
 * message.
 */
static int parent(struct apply *ap, const char *dir, bool create, cairn_error **reterr)
{
	/* Entries of one directory come together: while the dir part stays the same the previous
	 * resolution holds, because an entry can only change its own directory's children, never
	 * the path that leads to it. */
	if (ap->cache_key && strcmp(ap->cache_key, dir) == 0)
		return ap->cache_fd;
	size_t keep = 0;
	while (ap->cache_key && !ap->cache_owned && keep < ap->n_chain) {
		size_t end = ap->chain_end[keep];
		if (strncmp(dir, ap->cache_key, end) != 0 || (dir[end] != '/' && dir[end] != '\0'))
			break;
		keep++;
	}
	chain_cut(ap, keep);
	parent_forget(ap);
	_cleanup_free_ char *key = strdup(dir), *res = NULL;
	if (!key)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", dir);
	if (chain_descend(ap, dir))
		return parent_chain(ap, &key, reterr);
	/* A symlink on the way, or directories to make. */
	chain_cut(ap, 0);
	int r = root_path(ap->rootfd, dir, true, &res);
	if (r < 0)
		return err_errno(reterr, r, "resolve '%s'", dir);
	int fd = create ? mkparent(ap, res, reterr)
	                : fs_openat(ap->rootfd, res, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, NULL);
	if (fd < 0)
		return create ? fd : -ENOENT;
	if (strcmp(res, dir) == 0 && chain_descend(ap, dir)) {
		safe_close(fd);
		return parent_chain(ap, &key, reterr);
	}
	chain_cut(ap, 0);
	ap->cache_key = TAKE_PTR(key);
	ap->cache_res = TAKE_PTR(res);
	ap->cache_fd = fd;
	ap->cache_owned = true;
	return fd;
}

/*
 * Whether an object created in the current parent gets exactly the owner (this process's ids)
 * and mode (the mode asked for, less the umask) it is created with: the parent has no setgid
 * bit (which would hand down its group, and to directories the bit) and no default ACL (which
 * replaces the umask).
 */
static bool parent_plain(struct apply *ap)
{
	if (ap->plain < 0) {
		struct stat st;
		char v;
		ap->plain = fstat(ap->cache_fd, &st) == 0 && !(st.st_mode & S_ISGID) &&
		            fgetxattr(ap->cache_fd, "system.posix_acl_default", &v, 0) < 0 &&
		            (errno == ENODATA || errno == EOPNOTSUPP);
	}
	return ap->plain;
}

/* The umask, read without changing it (umask(2) cannot); 0777 when unknown. */
static mode_t read_umask(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
	char line[128];
	unsigned m;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Umask: %o", &m) == 1)
			return (mode_t)m & 0777;
	return 0777;
}

/* ---- whiteouts ---- */

/* Delete mode, ".wh..wh..opq": remove what in directory @dfd (@path) this layer did not unpack. */
static int opaque_walk(struct apply *ap, int dfd, const char *path, cairn_error **reterr)
{
	int dup_fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dup_fd < 0)
		return err_errno(reterr, -errno, "open '%s'", path);
	DIR *d = fdopendir(dup_fd);
	if (!d) {
		safe_close(dup_fd);
		return err_errno(reterr, -errno, "open '%s'", path);
	}
	int r = 0;
	struct dirent *de;
	/* Removing entries while reading the directory may skip others: collect first. */
	struct pathset names = {0};
	while (r >= 0 && (errno = 0, de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			r = pathset_add(&names, de->d_name);
	if (r >= 0 && errno)
		r = -errno;
	closedir(d);
	for (size_t i = 0; r >= 0 && i < names.cap; i++) {
		const char *name = names.keys[i];
		if (!name)
			continue;
		_cleanup_free_ char *child = path_join(path, name);
		if (!child) {
			r = -ENOMEM;
			break;
		}
		if (!pathset_has(&ap->unpacked, child)) {
			r = fs_rm_rf(dfd, name, reterr);
			continue;
		}
		_cleanup_close_ int sub =
			openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0)
			r = opaque_walk(ap, sub, child, reterr);
	}
	pathset_done(&names);
	if (r < 0)
		return err_errno(reterr, r, "opaque directory '%s'", path);
	return 0;
}

static int whiteout(struct apply *ap, struct archive_entry *e, int pfd, const char *base,
                    cairn_error **reterr)
{
	const char *dir = ap->cache_res;
	if (strcmp(base, ".wh..wh..opq") == 0) {
		if (!overlay(ap))
			return opaque_walk(ap, pfd, dir, reterr);
		if (fsetxattr(pfd, opaque_xattr(ap), "y", 1, 0) < 0)
			return err_errno(reterr, -errno, "set %s on '%s'", opaque_xattr(ap),
			                 *dir ? dir : "/");
		return 0;
	}
	const char *name = base + 4;
	int r = fs_rm_rf(pfd, name, reterr);
	if (r < 0 || !overlay(ap))
		return r;
	_cleanup_free_ char *path = path_join(dir, name);
	if (!path)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", name);
	if (mknodat(pfd, name, S_IFCHR, makedev(0, 0)) < 0)
		return err_errno(reterr, -errno, "create whiteout '%s'", path);
	if (!ap->opts->no_same_owner &&
	    fchownat(pfd, name, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
	             AT_SYMLINK_NOFOLLOW) < 0)
		return err_errno(reterr, -errno, "chown whiteout '%s'", path);
	return 0;
}

/* ---- metadata ---- */

static int set_xattrs(struct apply *ap, struct archive_entry *e, int fd, int pfd, const char *base,
                      mode_t type, const char *path, cairn_error **reterr)
{
	const char *key;
	const void *value;
	size_t size;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK) {
		if (skip_tar_xattr(ap, key))
			continue;
		int r = fd >= 0 ? (fsetxattr(fd, key, value, size, 0) < 0 ? -errno : 0)
		                : xattr_set_at(pfd, base, key, value, size, 0);
		if (r == -ENOTSUP || (r == -EPERM && strncmp(key, "user.", 5) == 0 &&
		                      !S_ISREG(type) && !S_ISDIR(type)))
			continue;
		if (r < 0)
			return err_errno(reterr, r, "set xattr '%s' on '%s'", key, path);
	}
	return 0;
}

/*
 * Owner, xattrs, mode, times (not for directories: see restore_dir_times) of the entry @base in
 * @pfd, through @fd when the caller has one open on it (a file or a directory). @fresh is the
 * type (S_IFREG, S_IFDIR, S_IFLNK) of an object this layer just created with the entry's
 * permission bits (0777 of them), or 0 for anything else; a fresh object in a plain parent skips
 * the stat and the chown and chmod that would change nothing.
 */
static int set_meta(struct apply *ap, struct archive_entry *e, int pfd, const char *base, int fd,
                    mode_t fresh, const char *path, cairn_error **reterr)
{
	struct stat st = {.st_mode = fresh};
	if (!fresh && (fd >= 0 ? fstat(fd, &st) : fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW)) < 0)
		return err_errno(reterr, -errno, "stat '%s'", path);
	bool plain = fresh && parent_plain(ap);
	_cleanup_close_ int own = -EBADF;
	if (fd < 0 && S_ISREG(st.st_mode)) {
		own = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (own < 0)
			return err_errno(reterr, -errno, "open '%s'", path);
		fd = own;
	}
	uid_t uid = (uid_t)archive_entry_uid(e);
	gid_t gid = (gid_t)archive_entry_gid(e);
	if (!ap->opts->no_same_owner && !(plain && uid == ap->uid && gid == ap->gid)) {
		if ((fd >= 0 ? fchown(fd, uid, gid)
		             : fchownat(pfd, base, uid, gid, AT_SYMLINK_NOFOLLOW)) < 0)
			return err_errno(reterr, -errno, "chown '%s' to %u:%u%s", path, uid, gid,
			                 errno == EINVAL && in_userns(ap)
			                         ? " (outside the user namespace's id mapping)"
			                         : "");
	}
	int r = set_xattrs(ap, e, fd, pfd, base, st.st_mode, path, reterr);
	if (r < 0)
		return r;
	mode_t perm = archive_entry_perm(e) & 07777;
	/* The mode it was created with stands unless a special bit, the umask or an ACL xattr
	 * (which moves the group bits) says otherwise. */
	bool as_created = plain && !(perm & 07000) && !(perm & ap->umask) &&
	                  archive_entry_xattr_count(e) == 0;
	if (!S_ISLNK(st.st_mode) && !as_created &&
	    (fd >= 0 ? fchmod(fd, perm) : fchmodat(pfd, base, perm, AT_SYMLINK_NOFOLLOW)) < 0)
		return err_errno(reterr, -errno, "chmod '%s' to %04o", path, perm);
	if (S_ISDIR(st.st_mode))
		return 0;
	struct timespec ts[2];
	entry_times(e, ts);
	if ((fd >= 0 ? futimens(fd, ts) : utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW)) < 0)
		return err_errno(reterr, -errno, "set times of '%s'", path);
	return 0;
}

/* ---- objects ---- */

/* Zero runs shorter than this are written: a hole saves nothing below a page. */
#define ZERO_BLOCK_MIN 4096

static bool all_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	return p[0] == 0 && memcmp(p, p + 1, len - 1) == 0;
}

static int write_data(struct apply *ap, struct archive_entry *e, int fd, const char *path,
                      cairn_error **reterr)
{
	int64_t end = 0, written = 0, kicked = 0;
	for (;;) {
		const void *buf;
		size_t len;
		la_int64_t off;
		int k = archive_read_data_block(ap->a, &buf, &len, &off);
		if (k == ARCHIVE_EOF)
			break;
		if (k != ARCHIVE_OK && k != ARCHIVE_WARN) {
			archive_fail(ap, reterr, "read data");
			return err_prefix(reterr, "write '%s'", path);
		}
		if (off + (int64_t)len > end)
			end = off + (int64_t)len;
		/* The file is new: a block of zeros need not be written, a hole reads the same. */
		if (len >= ZERO_BLOCK_MIN && all_zero(buf, len))
			continue;
		if (off + (int64_t)len > written)
			written = off + (int64_t)len;
		for (size_t done = 0; done < len;) {
			ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
			                   (off_t)(off + (int64_t)done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return err_errno(reterr, n < 0 ? -errno : -EIO, "write '%s'", path);
			done += (size_t)n;
		}
		if (ap->opts->writeback && written - kicked >= WRITEBACK_STEP) {
			/* A hint: without it, syncfs() writes back as before. */
			(void)sync_file_range(fd, kicked, written - kicked, SYNC_FILE_RANGE_WRITE);
			kicked = written;
		}
	}
	/* A sparse file, or one whose last block was zeros, ends in a hole. */
	if (archive_entry_size_is_set(e) && archive_entry_size(e) > end)
		end = archive_entry_size(e);
	if (end > written && ftruncate(fd, end) < 0)
		return err_errno(reterr, -errno, "truncate '%s'", path);
	return 0;
}

/* The create_* functions: with @probe, a name that is taken is -EEXIST with no message. */

static int create_file(struct apply *ap, struct archive_entry *e, int pfd, const char *base,
                       bool probe, const char *path, cairn_error **reterr)
{
	_cleanup_close_ int fd =
		openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	               archive_entry_perm(e) & 0777);
	if (fd < 0 && probe && errno == EEXIST)
		return -EEXIST;
	if (fd < 0)
		return err_errno(reterr, -errno, "create '%s'", path);
	int r = write_data(ap, e, fd, path, reterr);
	if (r < 0)
		return r;
	return set_meta(ap, e, pfd, base, fd, S_IFREG, path, reterr);
}

static int create_dir(struct apply *ap, struct archive_entry *e, int pfd, const char *base,
                      bool probe, const char *path, bool replaced_whiteout, cairn_error **reterr)
{
	bool made = mkdirat(pfd, base, archive_entry_perm(e) & 0777) == 0;
	if (!made && probe && errno == EEXIST)
		return -EEXIST;
	if (!made && errno != EEXIST)
		return err_errno(reterr, -errno, "create directory '%s'", path);
	_cleanup_close_ int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return err_errno(reterr, -errno, "open directory '%s'", path);
	int r = set_meta(ap, e, pfd, base, fd, made ? S_IFDIR : 0, path, reterr);
	if (r < 0)
		return r;
	/* A directory that replaces a whiteout in the same layer replaces the lower directory
	 * too: overlayfs would otherwise merge the lower one back in. */
	if (replaced_whiteout && fsetxattr(fd, opaque_xattr(ap), "y", 1, 0) < 0)
		return err_errno(reterr, -errno, "set %s on '%s'", opaque_xattr(ap), path);
	return 0;
}

static int create_node(struct apply *ap, struct archive_entry *e, int pfd, const char *base,
                       mode_t type, const char *path, cairn_error **reterr)
{
	dev_t dev = type == AE_IFIFO
	                    ? 0
	                    : makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
	if (mknodat(pfd, base,
	            (type == AE_IFCHR   ? S_IFCHR
	             : type == AE_IFBLK ? S_IFBLK
	                                : S_IFIFO) |
	                    0600,
	            dev) < 0) {
		/* containerd skips devices in a user namespace, where mknod is denied. */
		if (errno == EPERM && type != AE_IFIFO && in_userns(ap))
			return 0;
		return err_errno(reterr, -errno, "create device '%s'", path);
	}
	return set_meta(ap, e, pfd, base, -1, 0, path, reterr);
}

static int create_symlink(struct apply *ap, struct archive_entry *e, int pfd, const char *base,
                          bool probe, const char *path, cairn_error **reterr)
{
	const char *target = archive_entry_symlink(e);
	if (!target)
		return err_set(reterr, CAIRN_ECORRUPT, "symlink '%s' has no target", path);
	if (symlinkat(target, pfd, base) < 0) {
		if (probe && errno == EEXIST)
			return -EEXIST;
		return err_errno(reterr, -errno, "create symlink '%s'", path);
	}
	return set_meta(ap, e, pfd, base, -1, S_IFLNK, path, reterr);
}

/* Copy the object @name of directory @sdfd (stat @st) into @ddfd, with owner, mode, xattrs and
 * times: an overlayfs copy-up. */
static int copy_object(int sdfd, int ddfd, const char *name, const struct stat *st,
                       const char *path, cairn_error **reterr)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	if (S_ISLNK(st->st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(sdfd, name, target, sizeof(target) - 1);
		if (n < 0)
			return err_errno(reterr, -errno, "copy up '%s'", path);
		target[n] = '\0';
		if (symlinkat(target, ddfd, name) < 0 ||
		    fchownat(ddfd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0 ||
		    utimensat(ddfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
			return err_errno(reterr, -errno, "copy up '%s'", path);
		return 0;
	}
	if (!S_ISREG(st->st_mode)) {
		if (S_ISSOCK(st->st_mode) || S_ISDIR(st->st_mode))
			return err_set(reterr, -EOPNOTSUPP, "copy up '%s': not a file", path);
		if (mknodat(ddfd, name, (st->st_mode & S_IFMT) | 0600, st->st_rdev) < 0 ||
		    fchownat(ddfd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0 ||
		    fchmodat(ddfd, name, st->st_mode & 07777, AT_SYMLINK_NOFOLLOW) < 0 ||
		    utimensat(ddfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
			return err_errno(reterr, -errno, "copy up '%s'", path);
		return 0;
	}
	_cleanup_close_ int in = openat(sdfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_close_ int out =
		in < 0 ? -EBADF
		       : openat(ddfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	                        0600);
	if (in < 0 || out < 0)
		return err_errno(reterr, -errno, "copy up '%s'", path);
	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
		if (n == 0)
			break;
		if (n > 0)
			continue;
		if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
			return err_errno(reterr, -errno, "copy up '%s'", path);
		char buf[COPY_BUF / 2];
		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (fs_write_all(out, buf, (size_t)n) < 0)
				return err_errno(reterr, -errno, "copy up '%s'", path);
		if (n < 0)
			return err_errno(reterr, -errno, "copy up '%s'", path);
		break;
	}
	int r = copy_xattrs(in, -1, NULL, out, -1, NULL, skip_lower_xattr, 0);
	if (r < 0)
		return err_errno(reterr, r, "copy up xattrs of '%s'", path);
	if (fchown(out, st->st_uid, st->st_gid) < 0 || fchmod(out, st->st_mode & 07777) < 0 ||
	    futimens(out, ts) < 0)
		return err_errno(reterr, -errno, "copy up '%s'", path);
	return 0;
}

/* Whether directory @res of tree @tfd hides deeper layers: it or an ancestor is a whiteout or
 * an opaque directory. */
static bool hides_lower(int tfd, const char *res)
{
	_cleanup_free_ char *prefix = strdup(res);
	_cleanup_close_ int cur = openat(tfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!prefix || cur < 0)
		return false;
	if (is_opaque(cur))
		return true;
	for (char *p = prefix, *e; *p; p = e + 1) {
		e = strchrnul(p, '/');
		bool last = !*e;
		*e = '\0';
		struct stat st;
		if (fstatat(cur, p, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return false;
		if (is_whiteout(&st))
			return true;
		int next = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
			return false;
		safe_close(cur);
		cur = next;
		if (is_opaque(cur))
			return true;
		if (last)
			break;
	}
	return false;
}

/* A hardlink target @tres/@tbase missing from the root: copy it up from the nearest lower layer
 * that has it. -ENOENT when none does. */
static int copy_up(struct apply *ap, const char *tres, const char *tbase, const char *tpath,
                   cairn_error **reterr)
{
	/* Something at the target in the root (a whiteout) or above it hides the lower layers. */
	_cleanup_close_ int rdfd = fs_openat(ap->rootfd, tres, O_PATH | O_DIRECTORY, 0, NULL);
	struct stat rst;
	if ((rdfd >= 0 && fstatat(rdfd, tbase, &rst, AT_SYMLINK_NOFOLLOW) == 0) ||
	    hides_lower(ap->rootfd, tres))
		return -ENOENT;
	for (size_t i = 0; i < ap->opts->n_parents; i++) {
		int lfd = ap->opts->parent_fds[i];
		_cleanup_free_ char *lres = NULL;
		if (root_path(lfd, tres, true, &lres) < 0)
			continue;
		_cleanup_close_ int ldfd = fs_openat(lfd, lres, O_PATH | O_DIRECTORY, 0, NULL);
		struct stat st;
		if (ldfd >= 0 && fstatat(ldfd, tbase, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (is_whiteout(&st))
				return -ENOENT;
			_cleanup_close_ int ddfd = mkparent(ap, tres, reterr);
			if (ddfd < 0)
				return ddfd;
			return copy_object(ldfd, ddfd, tbase, &st, tpath, reterr);
		}
		if (hides_lower(lfd, lres))
			break;
	}
	return -ENOENT;
}

/* link(2) @tbase of directory @tres to @base in @pfd; a whiteout this layer wrote is no target. */
static int link_target(struct apply *ap, const char *tres, const char *tbase, int pfd,
                       const char *base)
{
	_cleanup_close_ int tdfd = fs_openat(ap->rootfd, tres, O_PATH | O_DIRECTORY, 0, NULL);
	if (tdfd < 0)
		return tdfd;
	struct stat st;
	if (overlay(ap) && fstatat(tdfd, tbase, &st, AT_SYMLINK_NOFOLLOW) == 0 && is_whiteout(&st))
		return -ENOENT;
	return linkat(tdfd, tbase, pfd, base, 0) < 0 ? -errno : 0;
}

static int create_hardlink(struct apply *ap, struct archive_entry *e, int pfd, const char *base,
                           const char *path, cairn_error **reterr)
{
	const char *link = archive_entry_hardlink(e);
	_cleanup_free_ char *tpath = path_clean(link);
	if (!tpath)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
	if (!*tpath)
		return err_set(reterr, CAIRN_ECORRUPT, "hardlink '%s' points to the root", path);
	_cleanup_free_ char *copy = strdup(tpath), *tres = NULL;
	if (!copy)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", path);
	const char *tdir, *tbase;
	path_split(copy, &tdir, &tbase);
	/* The target's directory is resolved in the root; its last component is not followed. */
	int r = root_path(ap->rootfd, tdir, true, &tres);
	if (r < 0)
		return err_errno(reterr, r, "resolve hardlink target '%s'", link);
	for (int attempt = 0;; attempt++) {
		int err = link_target(ap, tres, tbase, pfd, base);
		if (err == 0)
			break;
		if (err == -ENOENT && attempt == 0 && ap->opts->n_parents > 0) {
			r = copy_up(ap, tres, tbase, tpath, reterr);
			if (r < 0 && r != -ENOENT)
				return r;
			if (r == 0)
				continue;
		}
		return err_errno(reterr, err, "hardlink '%s' to '%s'", path, link);
	}
	return set_meta(ap, e, pfd, base, -1, 0, path, reterr);
}

/* ---- entries ---- */

static int create(struct apply *ap, struct archive_entry *e, int pfd, const char *base,
                  const char *path, cairn_error **reterr)
{
	mode_t type = archive_entry_filetype(e);
	bool hardlink = archive_entry_hardlink(e) != NULL;
	bool dir = !hardlink && type == AE_IFDIR;
	/* First as if the name were free, as it nearly always is: a taken name (EEXIST) then costs
	 * what the stat that would otherwise come first costs. */
	int r = -EEXIST;
	if (!hardlink && type == AE_IFREG)
		r = create_file(ap, e, pfd, base, true, path, reterr);
	else if (dir)
		r = create_dir(ap, e, pfd, base, true, path, false, reterr);
	else if (!hardlink && type == AE_IFLNK)
		r = create_symlink(ap, e, pfd, base, true, path, reterr);
	if (r != -EEXIST)
		return r;
	struct stat old;
	bool exists = fstatat(pfd, base, &old, AT_SYMLINK_NOFOLLOW) == 0;
	if (!exists && errno != ENOENT)
		return err_errno(reterr, -errno, "stat '%s'", path);
	bool replaced_whiteout = exists && overlay(ap) && is_whiteout(&old);
	if (exists && !(dir && S_ISDIR(old.st_mode))) {
		r = fs_rm_rf(pfd, base, reterr);
		if (r < 0)
			return r;
	}
	if (hardlink)
		return create_hardlink(ap, e, pfd, base, path, reterr);
	switch (type) {
	case AE_IFREG:
		return create_file(ap, e, pfd, base, false, path, reterr);
	case AE_IFDIR:
		return create_dir(ap, e, pfd, base, false, path, replaced_whiteout && dir, reterr);
	case AE_IFLNK:
		return create_symlink(ap, e, pfd, base, false, path, reterr);
	case AE_IFCHR:
	case AE_IFBLK:
	case AE_IFIFO:
		return create_node(ap, e, pfd, base, type, path, reterr);
	default:
		return err_set(reterr, -EOPNOTSUPP, "'%s': unsupported entry type 0%o", path,
		               (unsigned)type);
	}
}

static int apply_entry(struct apply *ap, struct archive_entry *e, const char *name,
                       cairn_error **reterr)
{
	_cleanup_free_ char *path = path_clean(name);
	if (!path)
		return err_set(reterr, -ENOMEM, "out of memory");
	if (!*path)
		return 0; /* resolves to the root: nothing to create */
	_cleanup_free_ char *copy = strdup(path);
	if (!copy)
		return err_set(reterr, -ENOMEM, "out of memory");
	const char *dir, *base;
	path_split(copy, &dir, &base);
	if (strlen(base) > NAME_MAX)
		return err_set(reterr, -ENAMETOOLONG, "'%s': name too long", path);
	bool wh = strncmp(base, ".wh.", 4) == 0;
	if (wh && strcmp(base, ".wh..wh..opq") != 0 && !fs_name_valid(base + 4))
		return err_set(reterr, CAIRN_ECORRUPT,
		               "invalid archive: whiteout '%s' names no entry of its directory",
		               path);
	int pfd = parent(ap, dir, true, reterr);
	if (pfd < 0)
		return pfd;
	if (wh)
		return whiteout(ap, e, pfd, base, reterr);
	/* Messages and the unpacked set use the resolved path. */
	_cleanup_free_ char *res = path_join(ap->cache_res, base);
	if (!res)
		return err_set(reterr, -ENOMEM, "out of memory");
	int r = create(ap, e, pfd, base, res, reterr);
	if (r < 0)
		return r;
	if (!overlay(ap) && pathset_add(&ap->unpacked, res) < 0)
		return err_set(reterr, -ENOMEM, "out of memory");
	if (archive_entry_filetype(e) == AE_IFDIR && !archive_entry_hardlink(e))
		return remember_dir(ap, path, e, reterr);
	return 0;
}

static int apply_stream(struct apply *ap, cairn_error **reterr)
{
	ap->a = archive_read_new();
	if (!ap->a)
		return err_set(reterr, -ENOMEM, "out of memory");
	archive_read_support_format_tar(ap->a);
	archive_read_support_format_empty(ap->a);
	if (archive_read_open(ap->a, ap, NULL, read_cb, NULL) != ARCHIVE_OK)
		return archive_fail(ap, reterr, "open tar");
	for (;;) {
		struct archive_entry *e;
		int k = archive_read_next_header(ap->a, &e);
		if (k == ARCHIVE_EOF)
			break;
		if (k != ARCHIVE_OK && k != ARCHIVE_WARN) {
			char ctx[64];
			snprintf(ctx, sizeof(ctx), "read header of entry %llu",
			         (unsigned long long)ap->entries + 1);
			return archive_fail(ap, reterr, ctx);
		}
		ap->entries++;
		const char *name = archive_entry_pathname(e);
		if (!name)
			return err_set(reterr, CAIRN_ECORRUPT, "entry %llu: unreadable name",
			               (unsigned long long)ap->entries);
		int r = apply_entry(ap, e, name, reterr);
		if (r < 0)
			return err_prefix(reterr, "entry '%s'", name);
	}
	return 0;
}

static int check_diffid(struct apply *ap, digest *got, cairn_error **reterr)
{
	layer_reader_digests(ap->reader, got, NULL);
	const char *want = ap->opts->expected_diffid;
	if (want && strcmp(want, got->str) != 0)
		return err_set(reterr, CAIRN_EDIGEST,
		               "diffID mismatch: the layer claims '%s' but its content is '%s'",
		               want, got->str);
	return 0;
}

static void apply_done(struct apply *ap)
{
	if (ap->a)
		archive_read_free(ap->a);
	cairn_error_free(ap->rerr);
	pathset_done(&ap->unpacked);
	for (size_t i = 0; i < ap->n_dirs; i++)
		free(ap->dirs[i].path);
	free(ap->dirs);
	parent_forget(ap);
	chain_cut(ap, 0);
	safe_close(ap->root_dfd);
}

static int apply_run(struct apply *ap, struct layer_apply_result *ret, cairn_error **reterr)
{
	const char *want = ap->opts->expected_diffid;
	if (want && !digest_valid(want))
		return err_set(reterr, -EINVAL, "expected diffID '%s' is not a sha256 digest",
		               want);
	ap->root_dfd = fs_openat(ap->rootfd, "", O_RDONLY | O_DIRECTORY, 0, reterr);
	if (ap->root_dfd < 0)
		return ap->root_dfd;
	int r = apply_stream(ap, reterr);
	if (r < 0)
		return r;
	r = layer_reader_drain(ap->reader, reterr);
	if (r < 0)
		return r;
	digest got;
	r = check_diffid(ap, &got, reterr);
	if (r < 0)
		return r;
	r = restore_dir_times(ap, reterr);
	if (r < 0)
		return r;
	if (ret) {
		*ret = (struct layer_apply_result){
			.diffid = got,
			.compression = layer_reader_compression(ap->reader),
			.size = layer_reader_size(ap->reader),
			.compressed_size = layer_reader_compressed_size(ap->reader),
			.entries = ap->entries,
		};
		layer_reader_digests(ap->reader, NULL, &ret->compressed_digest);
	}
	return 0;
}

int layer_apply_reader(int rootfd, layer_reader *reader, const struct layer_apply_opts *opts,
                       struct layer_apply_result *ret, cairn_error **reterr)
{
	static const struct layer_apply_opts defaults = {0};
	if (!opts)
		opts = &defaults;
	if (opts->whiteout != LAYER_WHITEOUT_DELETE && opts->whiteout != LAYER_WHITEOUT_OVERLAY)
		return err_set(reterr, -EINVAL, "apply layer '%s': unknown whiteout mode %d",
		               opts->what ? opts->what : "", (int)opts->whiteout);
	struct apply ap = {
		.rootfd = rootfd,
		.opts = opts,
		.reader = reader,
		.cache_fd = -EBADF,
		.root_dfd = -EBADF,
		.plain = -1,
		.uid = geteuid(),
		.gid = getegid(),
		.umask = read_umask(),
		.userns = -1,
	};
	locale_t old = locale_push();
	int r = apply_run(&ap, ret, reterr);
	apply_done(&ap);
	locale_pop(old);
	if (r < 0 && opts->what)
		return err_prefix(reterr, "apply layer '%s'", opts->what);
	return r;
}

int layer_apply(int rootfd, int fd, const struct layer_apply_opts *opts,
                struct layer_apply_result *ret, cairn_error **reterr)
{
	struct layer_reader_opts ropts = {
		.what = opts ? opts->what : NULL,
		/* Only a caller that asks for the result needs the blob's digest. */
		.compressed_digest = ret != NULL,
		.threaded = true,
		.progress = opts ? opts->progress : NULL,
		.userdata = opts ? opts->userdata : NULL,
	};
	_cleanup_(layer_reader_freep) layer_reader *reader = NULL;
	int r = layer_reader_new(fd, &ropts, &reader, reterr);
	if (r < 0)
		return r;
	return layer_apply_reader(rootfd, reader, opts, ret, reterr);
}
