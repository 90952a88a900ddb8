/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util.h"

/* The *xattrat syscalls (Linux 6.13) share their numbers on every architecture. */
#ifndef __NR_setxattrat
#define __NR_setxattrat 463
#endif
#ifndef __NR_getxattrat
#define __NR_getxattrat 464
#endif
#ifndef __NR_listxattrat
#define __NR_listxattrat 465
#endif

struct xattr_args_v0 {
	uint64_t value;
	uint32_t size;
	uint32_t flags;
};

#define MAX_LINKS   255
#define MAX_RESOLVE (4 * PATH_MAX)

char *path_clean(const char *name)
{
	size_t len = strlen(name);
	char *out = malloc(len + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (const char *p = name; *p;) {
		while (*p == '/')
			p++;
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 0 || (n == 1 && p[0] == '.')) {
			/* nothing */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--; /* the separator before the dropped component */
		} else {
			if (o > 0)
				out[o++] = '/';
			memcpy(out + o, p, n);
			o += n;
		}
		p = e;
	}
	out[o] = '\0';
	return out;
}

char *path_join(const char *dir, const char *name)
{
	char *s = NULL;
	if (asprintf(&s, "%s%s%s", dir, *dir ? "/" : "", name) < 0)
		return NULL;
	return s;
}

void path_split(char *path, const char **ret_dir, const char **ret_base)
{
	char *slash = strrchr(path, '/');
	if (!slash) {
		*ret_dir = "";
		*ret_base = path;
		return;
	}
	*slash = '\0';
	*ret_dir = path;
	*ret_base = slash + 1;
}

/* The resolution state: the resolved prefix, an fd on it (or -1 past a missing component). */
struct resolve {
	int rootfd;
	char *res;
	size_t len, cap;
	int cur;
};

static int res_append(struct resolve *st, const char *c, size_t n)
{
	if (st->len + n + 2 > MAX_RESOLVE)
		return -ENAMETOOLONG;
	if (st->len + n + 2 > st->cap) {
		size_t ncap = (st->len + n + 2) * 2;
		char *nr = realloc(st->res, ncap);
		if (!nr)
			return -ENOMEM;
		st->res = nr;
		st->cap = ncap;
	}
	if (st->len > 0)
		st->res[st->len++] = '/';
	memcpy(st->res + st->len, c, n);
	st->len += n;
	st->res[st->len] = '\0';
	return 0;
}

/* Reopen the fd of the resolved prefix, after ".." or an absolute link; -1 if it is missing. */
static int res_reopen(struct resolve *st)
{
	safe_close(st->cur);
	st->cur = -1;
	const char *p = st->len ? st->res : ".";
	int fd = openat(st->rootfd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	/* Every component of res was a directory when appended; a failure means it is gone. */
	if (fd < 0 && errno != ENOENT && errno != ENOTDIR && errno != ELOOP)
		return -errno;
	st->cur = fd;
	return 0;
}

/* Replace the unread path by "@target/@rest". */
static int res_splice(char **rest, const char *target, const char *tail)
{
	char *n = NULL;
	if (strlen(target) + strlen(tail) + 2 > MAX_RESOLVE)
		return -ENAMETOOLONG;
	if (asprintf(&n, "%s/%s", target, tail) < 0)
		return -ENOMEM;
	free(*rest);
	*rest = n;
	return 0;
}

/* One component @c (length @n) of the path; @tail is what follows it. */
static int res_step(struct resolve *st, const char *c, size_t n, const char *tail, bool last,
                    bool follow_last, char **rest, bool *ret_respliced, int *links)
{
	*ret_respliced = false;
	if (n == 2 && c[0] == '.' && c[1] == '.') {
		while (st->len > 0 && st->res[st->len - 1] != '/')
			st->len--;
		if (st->len > 0)
			st->len--;
		st->res[st->len] = '\0';
		return res_reopen(st);
	}
	_cleanup_free_ char *name = strndup(c, n);
	if (!name)
		return -ENOMEM;
	struct stat s;
	if (st->cur < 0 || (last && !follow_last) ||
	    fstatat(st->cur, name, &s, AT_SYMLINK_NOFOLLOW) < 0) {
		if (st->cur >= 0 && !(last && !follow_last) && errno != ENOENT && errno != ENOTDIR)
			return -errno;
		st->cur = safe_close(st->cur);
		return res_append(st, c, n);
	}
	if (S_ISLNK(s.st_mode)) {
		if (++*links > MAX_LINKS)
			return -ELOOP;
		char target[PATH_MAX];
		ssize_t k = readlinkat(st->cur, name, target, sizeof(target) - 1);
		if (k < 0)
			return -errno;
		target[k] = '\0';
		if (target[0] == '/') {
			st->len = 0;
			st->res[0] = '\0';
			int r = res_reopen(st);
			if (r < 0)
				return r;
		}
		*ret_respliced = true;
		return res_splice(rest, target, tail);
	}
	int r = res_append(st, c, n);
	if (r < 0)
		return r;
	if (!S_ISDIR(s.st_mode)) {
		st->cur = safe_close(st->cur);
		return 0;
	}
	int fd = openat(st->cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	safe_close(st->cur);
	st->cur = fd < 0 ? -1 : fd;
	return 0;
}

int root_path(int rootfd, const char *path, bool follow_last, char **ret)
{
	struct resolve st = {.rootfd = rootfd, .cur = -1};
	_cleanup_free_ char *rest = strdup(path);
	st.cap = 64;
	st.res = malloc(st.cap);
	if (!rest || !st.res) {
		free(st.res);
		return -ENOMEM;
	}
	st.res[0] = '\0';
	int links = 0;
	int r = res_reopen(&st);
	const char *p = rest;
	while (r == 0 && *p) {
		while (*p == '/')
			p++;
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 0 || (n == 1 && *p == '.')) {
			p = e;
			continue;
		}
		const char *tail = e;
		while (*tail == '/')
			tail++;
		bool respliced;
		r = res_step(&st, p, n, tail, *tail == '\0', follow_last, &rest, &respliced,
		             &links);
		p = respliced ? rest : e;
	}
	safe_close(st.cur);
	if (r < 0) {
		free(st.res);
		return r;
	}
	*ret = st.res;
	return 0;
}

/* ---- pathset ---- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ULL;
	return h;
}

static size_t slot(const struct pathset *s, const char *key, uint64_t h)
{
	size_t i = (size_t)h & (s->cap - 1);
	while (s->keys[i] && (s->hashes[i] != h || strcmp(s->keys[i], key) != 0))
		i = (i + 1) & (s->cap - 1);
	return i;
}

static int grow(struct pathset *s)
{
	size_t ncap = s->cap ? s->cap * 2 : 256;
	struct pathset n = {.cap = ncap};
	n.keys = calloc(ncap, sizeof(*n.keys));
	n.hashes = calloc(ncap, sizeof(*n.hashes));
	if (!n.keys || !n.hashes) {
		free(n.keys);
		free(n.hashes);
		return -ENOMEM;
	}
	for (size_t i = 0; i < s->cap; i++)
		if (s->keys[i]) {
			size_t j = slot(&n, s->keys[i], s->hashes[i]);
			n.keys[j] = s->keys[i];
			n.hashes[j] = s->hashes[i];
		}
	free(s->keys);
	free(s->hashes);
	n.n = s->n;
	*s = n;
	return 0;
}

int pathset_add(struct pathset *s, const char *key)
{
	if ((s->n + 1) * 2 > s->cap && grow(s) < 0)
		return -ENOMEM;
	uint64_t h = hash_str(key);
	size_t i = slot(s, key, h);
	if (s->keys[i])
		return 0;
	s->keys[i] = strdup(key);
	if (!s->keys[i])
		return -ENOMEM;
	s->hashes[i] = h;
	s->n++;
	return 1;
}

bool pathset_has(const struct pathset *s, const char *key)
{
	if (s->n == 0)
		return false;
	return s->keys[slot(s, key, hash_str(key))] != NULL;
}

void pathset_done(struct pathset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->keys[i]);
	free(s->keys);
	free(s->hashes);
	*s = (struct pathset){0};
}

/* ---- xattrs ---- */

static atomic_bool no_xattrat;

void xattr_force_proc(bool on)
{
	atomic_store(&no_xattrat, on);
}

/* Open @name O_PATH|O_NOFOLLOW and give its /proc/self/fd path in @buf. */
static int proc_path(int dfd, const char *name, char buf[static 64])
{
	int fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	snprintf(buf, 64, "/proc/self/fd/%d", fd);
	return fd;
}

int xattr_set_at(int dfd, const char *name, const char *key, const void *value, size_t len,
                 int flags)
{
	if (!atomic_load(&no_xattrat)) {
		struct xattr_args_v0 args = {
			.value = (uintptr_t)value, .size = (uint32_t)len, .flags = (uint32_t)flags};
		if (syscall(__NR_setxattrat, dfd, name, AT_SYMLINK_NOFOLLOW, key, &args,
		            sizeof(args)) == 0)
			return 0;
		if (errno != ENOSYS)
			return -errno;
		atomic_store(&no_xattrat, true);
	}
	char p[64];
	_cleanup_close_ int fd = proc_path(dfd, name, p);
	if (fd < 0)
		return fd;
	return setxattr(p, key, value, len, flags) < 0 ? -errno : 0;
}

ssize_t xattr_get_at(int dfd, const char *name, const char *key, void *value, size_t len)
{
	if (!atomic_load(&no_xattrat)) {
		struct xattr_args_v0 args = {.value = (uintptr_t)value, .size = (uint32_t)len};
		long n = syscall(__NR_getxattrat, dfd, name, AT_SYMLINK_NOFOLLOW, key, &args,
		                 sizeof(args));
		if (n >= 0)
			return n;
		if (errno != ENOSYS)
			return -errno;
		atomic_store(&no_xattrat, true);
	}
	char p[64];
	_cleanup_close_ int fd = proc_path(dfd, name, p);
	if (fd < 0)
		return fd;
	ssize_t n = getxattr(p, key, value, len);
	return n < 0 ? -errno : n;
}

ssize_t xattr_list_at(int dfd, const char *name, char *list, size_t len)
{
	if (!atomic_load(&no_xattrat)) {
		long n = syscall(__NR_listxattrat, dfd, name, AT_SYMLINK_NOFOLLOW, list, len);
		if (n >= 0)
			return n;
		if (errno != ENOSYS)
			return -errno;
		atomic_store(&no_xattrat, true);
	}
	char p[64];
	_cleanup_close_ int fd = proc_path(dfd, name, p);
	if (fd < 0)
		return fd;
	ssize_t n = listxattr(p, list, len);
	return n < 0 ? -errno : n;
}

static ssize_t list_once(int fd, int dfd, const char *name, char *buf, size_t len)
{
	if (fd >= 0) {
		ssize_t n = flistxattr(fd, buf, len);
		return n < 0 ? -errno : n;
	}
	return xattr_list_at(dfd, name, buf, len);
}

static ssize_t get_once(int fd, int dfd, const char *name, const char *key, char *buf, size_t len)
{
	if (fd >= 0) {
		ssize_t n = fgetxattr(fd, key, buf, len);
		return n < 0 ? -errno : n;
	}
	return xattr_get_at(dfd, name, key, buf, len);
}

/* Size, allocate, fetch; retry while the attribute grows between the calls (ERANGE). */
#define ALLOC_LOOP(call_sized, call_into)                                                          \
	for (int tries = 0; tries < 8; tries++) {                                                  \
		ssize_t n = call_sized;                                                            \
		if (n < 0)                                                                         \
			return (int)n;                                                             \
		_cleanup_free_ char *buf = malloc((size_t)n + 1);                                  \
		if (!buf)                                                                          \
			return -ENOMEM;                                                            \
		ssize_t m = call_into;                                                             \
		if (m == -ERANGE)                                                                  \
			continue;                                                                  \
		if (m < 0)                                                                         \
			return (int)m;                                                             \
		buf[m] = '\0';                                                                     \
		*ret_len = (size_t)m;                                                              \
		*ret = TAKE_PTR(buf);                                                              \
		return 0;                                                                          \
	}                                                                                          \
	return -ERANGE;

int xattr_list_alloc(int fd, int dfd, const char *name, char **ret, size_t *ret_len)
{
	ssize_t probe = list_once(fd, dfd, name, NULL, 0);
	if (probe == -ENOTSUP || probe == 0) {
		*ret = NULL;
		*ret_len = 0;
		return 0;
	}
	ALLOC_LOOP(list_once(fd, dfd, name, NULL, 0), list_once(fd, dfd, name, buf, (size_t)n))
}

int xattr_get_alloc(int fd, int dfd, const char *name, const char *key, char **ret, size_t *ret_len)
{
	ALLOC_LOOP(get_once(fd, dfd, name, key, NULL, 0),
	           get_once(fd, dfd, name, key, buf, (size_t)n))
}

static int set_one(int fd, int dfd, const char *name, const char *key, const void *v, size_t len,
                   int flags)
{
	if (fd >= 0)
		return fsetxattr(fd, key, v, len, flags) < 0 ? -errno : 0;
	return xattr_set_at(dfd, name, key, v, len, flags);
}

int copy_xattrs(int sfd, int sdfd, const char *sname, int dfd_obj, int ddfd, const char *dname,
                bool (*skip)(const char *key), int flags)
{
	_cleanup_free_ char *list = NULL;
	size_t len = 0;
	int r = xattr_list_alloc(sfd, sdfd, sname, &list, &len);
	if (r < 0)
		return r;
	for (size_t i = 0; i < len; i += strlen(list + i) + 1) {
		const char *key = list + i;
		if (skip && skip(key))
			continue;
		_cleanup_free_ char *v = NULL;
		size_t vlen = 0;
		r = xattr_get_alloc(sfd, sdfd, sname, key, &v, &vlen);
		if (r == -ENODATA)
			continue;
		if (r < 0)
			return r;
		r = set_one(dfd_obj, ddfd, dname, key, v, vlen, flags);
		if (r == -ENOTSUP || r == -EEXIST || (r == -EPERM && strncmp(key, "user.", 5) == 0))
			continue;
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- locale ---- */

static locale_t tar_locale;

static void tar_locale_init(void)
{
	tar_locale = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
	if (!tar_locale)
		tar_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

locale_t locale_push(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, tar_locale_init);
	return tar_locale ? uselocale(tar_locale) : (locale_t)0;
}

void locale_pop(locale_t old)
{
	if (old)
		uselocale(old);
}
