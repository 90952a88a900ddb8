/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"
#include "fs.h"
#if HAVE_OPENAT2
#include <linux/openat2.h>
#endif

int fs_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

bool fs_name_valid(const char *name)
{
	size_t n = name ? strnlen(name, NAME_MAX + 1) : 0;
	return n > 0 && n <= NAME_MAX && !strchr(name, '/') && strcmp(name, ".") != 0 &&
	       strcmp(name, "..") != 0;
}

int fs_open_dir(const char *path, cairn_error **reterr)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return err_errno(reterr, -errno, "open '%s'", path);
	return fd;
}

/* O_NOFOLLOW|O_DIRECTORY says ENOTDIR for a symlink as for a file: tell the two apart. */
static int nofollow_error(int dfd, const char *name, int err)
{
	struct stat st;
	if (err == ENOTDIR && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		return -ELOOP;
	return -err;
}

static int open_dir_nofollow(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? nofollow_error(dfd, name, errno) : fd;
}

static int open_last(int dfd, const char *name, int flags, mode_t mode)
{
	if (flags & O_NOFOLLOW) {
		int fd = openat(dfd, name, flags | O_CLOEXEC, mode);
		return fd < 0 ? -errno : fd;
	}
	_cleanup_close_ int fd = openat(dfd, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return nofollow_error(dfd, name, errno);
	/* With O_PATH, O_NOFOLLOW opens a symlink itself where the caller wanted it followed. */
	struct stat st;
	if ((flags & O_PATH) && fstat(fd, &st) < 0)
		return -errno;
	if ((flags & O_PATH) && S_ISLNK(st.st_mode))
		return -ELOOP;
	return TAKE_FD(fd);
}

/*
 * Without openat2: walk component by component from the root, resolving ".." lexically within
 * the root and refusing every symlink, the last component's included: a symlink's target would
 * be resolved by the kernel against the real root, not ours. Only when @flags hold O_NOFOLLOW
 * does the last component keep the kernel's meaning (O_PATH opens the link, else -ELOOP).
 * Stricter than RESOLVE_IN_ROOT, never laxer.
 */
static int walk_open(int rootfd, const char *path, int flags, mode_t mode)
{
	_cleanup_free_ char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	char *parts[PATH_MAX / 2];
	size_t n = 0;
	for (char *s = NULL, *tok = strtok_r(copy, "/", &s); tok; tok = strtok_r(NULL, "/", &s)) {
		if (strcmp(tok, ".") == 0)
			continue;
		if (strcmp(tok, "..") == 0) {
			if (n > 0)
				n--;
			continue;
		}
		if (n == ELEMENTSOF(parts))
			return -ENAMETOOLONG;
		parts[n++] = tok;
	}
	_cleanup_close_ int cur = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return -errno;
	for (size_t i = 0; i + 1 < n; i++) {
		int next = open_dir_nofollow(cur, parts[i]);
		if (next < 0)
			return next;
		safe_close(cur);
		cur = next;
	}
	return open_last(cur, n ? parts[n - 1] : ".", flags, mode);
}

static atomic_int force_fallback;

void fs_force_fallback(bool on)
{
	atomic_store(&force_fallback, on);
}

static int open_confined(int rootfd, const char *path, int flags, mode_t mode)
{
#if HAVE_OPENAT2
	static atomic_int have_openat2 = 1;
	if (atomic_load(&have_openat2) && !atomic_load(&force_fallback)) {
		/* O_TMPFILE includes O_DIRECTORY's bit: test it whole, or every directory open
		 * would pass @mode and openat2 would refuse it (EINVAL). */
		bool creates = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
		struct open_how how = {
			.flags = (uint64_t)(flags | O_CLOEXEC),
			.mode = creates ? mode : 0,
			.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
		};
		for (;;) {
			long fd =
				syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof(how));
			if (fd >= 0)
				return (int)fd;
			if (errno == EAGAIN || errno == EINTR)
				continue; /* a concurrent rename raced the lookup */
			if (errno != ENOSYS)
				return -errno;
			break;
		}
		atomic_store(&have_openat2, 0);
	}
#endif
	return walk_open(rootfd, path, flags, mode);
}

int fs_openat(int rootfd, const char *path, int flags, mode_t mode, cairn_error **reterr)
{
	int fd = open_confined(rootfd, path, flags, mode);
	if (fd < 0)
		return err_errno(reterr, fd, "open '%s'", path);
	return fd;
}

int fs_open_parent(int rootfd, const char *path, const char **ret_name, cairn_error **reterr)
{
	size_t len = strlen(path);
	while (len > 0 && path[len - 1] == '/')
		len--;
	if (len == 0)
		return err_set(reterr, -EINVAL, "path '%s' has no last component", path);
	const char *slash = memrchr(path, '/', len);
	const char *name = slash ? slash + 1 : path;
	_cleanup_free_ char *dir = strndup(path, (size_t)(name - path));
	if (!dir)
		return err_set(reterr, -ENOMEM, "open parent of '%s': out of memory", path);
	int fd = open_confined(rootfd, dir, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return err_errno(reterr, fd, "open parent of '%s'", path);
	*ret_name = name;
	return fd;
}

int fs_mkdir_p(int rootfd, const char *path, mode_t mode, cairn_error **reterr)
{
	_cleanup_free_ char *buf = strdup(path);
	if (!buf)
		return err_set(reterr, -ENOMEM, "mkdir '%s': out of memory", path);
	size_t len = strlen(buf);
	/* Each prefix is resolved in the root; mkdirat then creates one plain name in it. */
	for (size_t i = 0; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		if (i == 0 || buf[i - 1] == '/')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		const char *name = NULL;
		_cleanup_close_ int dfd = fs_open_parent(rootfd, buf, &name, reterr);
		if (dfd < 0)
			return dfd;
		if (strcmp(name, "..") != 0 && strcmp(name, ".") != 0 &&
		    mkdirat(dfd, name, mode) < 0 && errno != EEXIST)
			return err_errno(reterr, -errno, "mkdir '%s'", buf);
		buf[i] = saved;
	}
	_cleanup_close_ int fd = open_confined(rootfd, path, O_PATH | O_DIRECTORY, 0);
	if (fd < 0)
		return err_errno(reterr, fd, "mkdir '%s'", path);
	return 0;
}

/*
 * Which mount a directory is on. st_dev alone misses a bind mount of the same filesystem, so the
 * mount id joins it where statx knows it (Linux >= 5.8; else 0, and st_dev decides alone).
 */
struct mnt_key {
	dev_t dev;
	uint64_t mnt_id;
};

static int mnt_key_fd(int fd, struct mnt_key *ret)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	*ret = (struct mnt_key){.dev = st.st_dev};
	struct statx stx;
	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) == 0 &&
	    (stx.stx_mask & STATX_MNT_ID))
		ret->mnt_id = stx.stx_mnt_id;
	return 0;
}

static bool mnt_key_eq(const struct mnt_key *a, const struct mnt_key *b)
{
	return a->dev == b->dev && a->mnt_id == b->mnt_id;
}

static int rm_children(int dfd, const struct mnt_key *mnt, const char *what, cairn_error **reterr);

/* Remove @name in @dfd; @what is the path of @dfd for messages (NULL: the top of the walk). */
static int rm_entry(int dfd, const char *name, const struct mnt_key *mnt, const char *what,
                    cairn_error **reterr)
{
	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return err_errno(reterr, -errno, "remove '%s%s%s'", what ? what : "",
		                 what ? "/" : "", name);
	_cleanup_free_ char *sub_what = NULL;
	if (asprintf(&sub_what, "%s%s%s", what ? what : "", what ? "/" : "", name) < 0)
		return err_set(reterr, -ENOMEM, "remove '%s': out of memory", name);
	_cleanup_close_ int sub =
		openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub < 0)
		return errno == ENOENT ? 0 : err_errno(reterr, -errno, "open '%s'", sub_what);
	struct mnt_key key;
	int r = mnt_key_fd(sub, &key);
	if (r < 0)
		return err_errno(reterr, r, "stat '%s'", sub_what);
	if (!mnt_key_eq(&key, mnt))
		return err_set(reterr, -EBUSY, "remove '%s': a filesystem is mounted there",
		               sub_what);
	r = rm_children(sub, mnt, sub_what, reterr);
	if (r < 0)
		return r;
	if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return err_errno(reterr, -errno, "remove '%s'", sub_what);
	return 0;
}

int fs_opendir_fd(int dfd, const char *what, DIR **ret, cairn_error **reterr)
{
	int dup_fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dup_fd < 0)
		return err_errno(reterr, -errno, "open '%s'", what);
	DIR *d = fdopendir(dup_fd);
	if (!d) {
		safe_close(dup_fd);
		return err_errno(reterr, -errno, "opendir '%s'", what);
	}
	*ret = d;
	return 0;
}

struct dirent *fs_readdir(DIR *d)
{
	struct dirent *de;
	do {
		errno = 0;
		de = readdir(d);
	} while (de && (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0));
	return de;
}

static int rm_children(int dfd, const struct mnt_key *mnt, const char *what, cairn_error **reterr)
{
	DIR *d = NULL;
	int r = fs_opendir_fd(dfd, what, &d, reterr);
	if (r < 0)
		return r;
	struct dirent *de;
	while (r == 0 && (de = fs_readdir(d)))
		r = rm_entry(dfd, de->d_name, mnt, what, reterr);
	if (r == 0 && errno != 0)
		r = err_errno(reterr, -errno, "readdir '%s'", what);
	closedir(d);
	return r;
}

int fs_rm_rf_children(int dfd, const char *what, cairn_error **reterr)
{
	struct mnt_key mnt;
	int r = mnt_key_fd(dfd, &mnt);
	if (r < 0)
		return err_errno(reterr, r, "stat '%s'", what);
	return rm_children(dfd, &mnt, what, reterr);
}

int fs_rm_rf(int rootfd, const char *path, cairn_error **reterr)
{
	/* "dir/" names dir: drop trailing slashes so the last component is a plain name. */
	_cleanup_free_ char *p = strdup(path);
	if (!p)
		return err_set(reterr, -ENOMEM, "remove '%s': out of memory", path);
	for (size_t len = strlen(p); len > 1 && p[len - 1] == '/'; len--)
		p[len - 1] = '\0';
	const char *name = NULL;
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	_cleanup_close_ int dfd = fs_open_parent(rootfd, p, &name, &e);
	if (dfd == -ENOENT)
		return 0;
	if (dfd < 0)
		return err_set(reterr, dfd, "%s", cairn_error_message(e));
	if (!fs_name_valid(name))
		return err_set(reterr, -EINVAL, "remove '%s': refusing to remove '.' or '..'",
		               path);
	struct mnt_key mnt;
	int r = mnt_key_fd(dfd, &mnt);
	if (r < 0)
		return err_errno(reterr, r, "stat parent of '%s'", path);
	/* Messages name entries below @path by their path from the root. */
	_cleanup_free_ char *parent = strndup(p, (size_t)(name - p));
	if (!parent)
		return err_set(reterr, -ENOMEM, "remove '%s': out of memory", path);
	size_t plen = strlen(parent);
	while (plen > 0 && parent[plen - 1] == '/')
		parent[--plen] = '\0';
	return rm_entry(dfd, name, &mnt, plen ? parent : NULL, reterr);
}

int fs_write_atomic(int rootfd, const char *path, const void *data, size_t len, mode_t mode,
                    cairn_error **reterr)
{
	const char *name = NULL;
	_cleanup_close_ int dfd = fs_open_parent(rootfd, path, &name, reterr);
	if (dfd < 0)
		return dfd;
	if (!fs_name_valid(name))
		return err_set(reterr, -EINVAL, "write '%s': not a file name", path);
	char tmp[NAME_MAX + 1];
	if (snprintf(tmp, sizeof(tmp), ".#%.200s.%d.tmp", name, (int)gettid()) >= (int)sizeof(tmp))
		return err_set(reterr, -ENAMETOOLONG, "write '%s': name too long", path);
	_cleanup_close_ int fd =
		openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return err_errno(reterr, -errno, "create temporary file for '%s'", path);
	int r = fs_write_all(fd, data, len);
	if (r == 0 && fchmod(fd, mode) < 0)
		r = -errno;
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && renameat(dfd, tmp, dfd, name) < 0)
		r = -errno;
	if (r < 0) {
		unlinkat(dfd, tmp, 0);
		return err_errno(reterr, r, "write '%s'", path);
	}
	if (fsync(dfd) < 0)
		return err_errno(reterr, -errno, "fsync directory of '%s'", path);
	return 0;
}

int fs_read_file(int rootfd, const char *path, size_t max, char **ret, size_t *ret_len,
                 cairn_error **reterr)
{
	_cleanup_close_ int fd = fs_openat(rootfd, path, O_RDONLY | O_NOFOLLOW, 0, reterr);
	if (fd < 0)
		return fd;
	size_t cap = max < 4096 ? max : 4096, len = 0;
	_cleanup_free_ char *buf = malloc(cap + 1);
	if (!buf)
		return err_set(reterr, -ENOMEM, "read '%s': out of memory", path);
	for (;;) {
		if (len == cap && cap < max) {
			cap = cap > max / 2 ? max : cap * 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb)
				return err_set(reterr, -ENOMEM, "read '%s': out of memory", path);
			buf = nb;
		}
		/* At @max bytes, read one more: only EOF shows that the file fits exactly. */
		char probe;
		ssize_t n = len < cap ? read(fd, buf + len, cap - len) : read(fd, &probe, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_errno(reterr, -errno, "read '%s'", path);
		if (n == 0)
			break;
		if (len == cap)
			return err_set(reterr, -EFBIG, "read '%s': larger than %zu bytes", path,
			               max);
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (ret_len)
		*ret_len = len;
	*ret = TAKE_PTR(buf);
	return 0;
}

int fs_fsync_path(int rootfd, const char *path, cairn_error **reterr)
{
	_cleanup_close_ int fd = fs_openat(rootfd, path, O_RDONLY | O_NOFOLLOW, 0, reterr);
	if (fd < 0)
		return fd;
	if (fsync(fd) < 0)
		return err_errno(reterr, -errno, "fsync '%s'", path);
	return 0;
}

/* Inode set for counting hardlinks once: open addressing on (dev, ino). */
struct inoset {
	uint64_t *keys;
	size_t cap, n;
};

static int inoset_add(struct inoset *s, uint64_t key)
{
	if (s->n * 2 >= s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 1024;
		uint64_t *nk = calloc(ncap, sizeof(*nk));
		if (!nk)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++)
			if (s->keys[i])
				for (size_t j = s->keys[i] % ncap;; j = (j + 1) % ncap)
					if (!nk[j]) {
						nk[j] = s->keys[i];
						break;
					}
		free(s->keys);
		s->keys = nk;
		s->cap = ncap;
	}
	key |= 1ULL << 63; /* never zero: zero marks an empty slot */
	for (size_t j = key % s->cap;; j = (j + 1) % s->cap) {
		if (s->keys[j] == key)
			return 0;
		if (!s->keys[j]) {
			s->keys[j] = key;
			s->n++;
			return 1;
		}
	}
}

struct usage {
	struct mnt_key mnt;
	struct inoset seen;
	uint64_t bytes, inodes;
};

static int usage_walk(int dfd, struct usage *u, const char *what, cairn_error **reterr);

/* Count entry @name of @dfd (stat in *@st) and, for a directory on the same mount, its tree. */
static int usage_entry(int dfd, const char *name, const struct stat *st, struct usage *u,
                       const char *what, cairn_error **reterr)
{
	_cleanup_close_ int sub = -EBADF;
	if (S_ISDIR(st->st_mode)) {
		sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			return errno == ENOENT
			               ? 0
			               : err_errno(reterr, -errno, "open '%s/%s'", what, name);
		struct mnt_key key;
		int r = mnt_key_fd(sub, &key);
		if (r < 0)
			return err_errno(reterr, r, "stat '%s/%s'", what, name);
		if (!mnt_key_eq(&key, &u->mnt))
			return 0; /* a mount point, bind mounts of the same filesystem included */
	}
	int r = st->st_nlink > 1 ? inoset_add(&u->seen, st->st_ino) : 1;
	if (r < 0)
		return err_set(reterr, r, "usage of '%s': out of memory", what);
	if (r == 1) {
		u->bytes += (uint64_t)st->st_blocks * 512;
		u->inodes += 1;
	}
	return sub >= 0 ? usage_walk(sub, u, what, reterr) : 0;
}

static int usage_walk(int dfd, struct usage *u, const char *what, cairn_error **reterr)
{
	DIR *d = NULL;
	int r = fs_opendir_fd(dfd, what, &d, reterr);
	if (r < 0)
		return r;
	struct dirent *de;
	while (r == 0 && (de = fs_readdir(d))) {
		struct stat st;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				r = err_errno(reterr, -errno, "stat '%s/%s'", what, de->d_name);
			continue;
		}
		if (st.st_dev == u->mnt.dev)
			r = usage_entry(dfd, de->d_name, &st, u, what, reterr);
	}
	if (r == 0 && errno != 0)
		r = err_errno(reterr, -errno, "readdir '%s'", what);
	closedir(d);
	return r;
}

int fs_usage_fd(int dfd, const char *what, uint64_t *ret_bytes, uint64_t *ret_inodes,
                cairn_error **reterr)
{
	struct stat st;
	if (fstat(dfd, &st) < 0)
		return err_errno(reterr, -errno, "stat '%s'", what);
	struct usage u = {.bytes = (uint64_t)st.st_blocks * 512, .inodes = 1};
	int r = mnt_key_fd(dfd, &u.mnt);
	if (r < 0)
		return err_errno(reterr, r, "stat '%s'", what);
	r = usage_walk(dfd, &u, what, reterr);
	free(u.seen.keys);
	if (r < 0)
		return r;
	*ret_bytes = u.bytes;
	*ret_inodes = u.inodes;
	return 0;
}

struct fs_du {
	struct usage u;
};

int fs_du_new(int dfd, fs_du **ret, cairn_error **reterr)
{
	fs_du *du = calloc(1, sizeof(*du));
	if (!du)
		return err_set(reterr, -ENOMEM, "disk usage: out of memory");
	int r = mnt_key_fd(dfd, &du->u.mnt);
	if (r < 0) {
		free(du);
		return err_errno(reterr, r, "disk usage: stat the top directory");
	}
	*ret = du;
	return 0;
}

int fs_du_add(fs_du *du, int dfd, const char *name, const char *what, uint64_t *ret_bytes,
              cairn_error **reterr)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : err_errno(reterr, -errno, "stat '%s'", what);
	if (st.st_dev != du->u.mnt.dev)
		return 0; /* another filesystem mounted here: du -x does not count it */
	uint64_t before = du->u.bytes;
	int r = usage_entry(dfd, name, &st, &du->u, what, reterr);
	if (r < 0)
		return r;
	*ret_bytes += du->u.bytes - before;
	return 0;
}

fs_du *fs_du_free(fs_du *du)
{
	if (du) {
		free(du->u.seen.keys);
		free(du);
	}
	return NULL;
}

bool fs_in_userns(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/uid_map", "re");
	unsigned long a, b, c;
	if (!f || fscanf(f, "%lu %lu %lu", &a, &b, &c) != 3)
		return false;
	return !(a == 0 && b == 0 && c == 4294967295UL);
}
