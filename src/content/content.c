/* SPDX-License-Identifier: MIT */
/*
 * The content store. Crash ordering, the invariant every step keeps: a name under blobs/sha256
 * only ever refers to a complete, fsynced, verified, read-only file. Partial bytes exist only as
 * ingest/<H>/data; the one step that publishes them is a rename (or link) of an fsynced file,
 * which is atomic, followed by an fsync of blobs/sha256 before the ingest is removed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/fs.h"
#include "base/log.h"
#include "content.h"

#define BLOBS_DIR  "blobs/sha256"
#define INGEST_DIR "ingest"
#define TMP_DIR    "tmp"
#define KEY_LEN    DIGEST_HEX_LEN
#define COPY_SIZE  (128 * 1024)
/* An ingest directory without a ref file younger than this may be a writer between its mkdir
 * and its lock; reconcile leaves it alone. */
#define ORPHAN_AGE_NS (INT64_C(600) * 1000000000)
/* The refs content_add_*() make up; reconcile removes such ingests when no writer holds them. */
#define ADD_REF_PREFIX "cairn-add-"
/* How often a writer retries when the ingest directory it locked was removed under it. */
#define LOCK_ATTEMPTS 64

struct content_store {
	int rootfd;
};

struct content_writer {
	content_store *store; /* borrowed: must outlive the writer */
	char *ref;
	char key[KEY_LEN + 1];
	int dirfd;  /* ingest/<key>, flocked; -EBADF once committed or closed */
	int datafd; /* ingest/<key>/data, positioned at offset; -EBADF likewise */
	hasher *hash;
	uint64_t offset;
	uint64_t total;
	int64_t started_ns;
	int64_t updated_ns;
	bool has_expected;
	digest expected;
};

/* Hand a locally collected error to the caller's @reterr (first error wins, as with err_set). */
static int err_pass(cairn_error **reterr, cairn_error **e, int code)
{
	if (reterr && !*reterr)
		*reterr = *e;
	else
		cairn_error_free(*e);
	*e = NULL;
	return code;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t timespec_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* Whether @name is 64 lowercase hex digits: a blob file name or an ingest key. */
static bool key_valid(const char *name)
{
	size_t i = 0;
	for (; i < KEY_LEN; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return name[i] == '\0';
}

static int ref_check(const char *ref, cairn_error **reterr)
{
	if (!ref || !*ref)
		return err_set(reterr, -EINVAL, "invalid ingest ref '': empty");
	if (strnlen(ref, CONTENT_REF_MAX + 1) > CONTENT_REF_MAX)
		return err_set(reterr, -EINVAL,
		               "invalid ingest ref '%.64s...': longer than %d bytes", ref,
		               CONTENT_REF_MAX);
	return 0;
}

/* The ingest directory name of @ref: hex sha256 of the ref, so any ref string is a safe name. */
static void ref_key(const char *ref, char key[KEY_LEN + 1])
{
	digest d;
	digest_buffer(ref, strlen(ref), &d);
	memcpy(key, digest_hex(&d), KEY_LEN + 1);
}

static int write_u64(int dfd, const char *name, uint64_t v, cairn_error **reterr)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return fs_write_atomic(dfd, name, buf, (size_t)n, 0644, reterr);
}

/* Read a decimal file: -errno, or -EINVAL when it does not hold just a number. */
static int read_u64(int dfd, const char *name, uint64_t *ret)
{
	_cleanup_free_ char *buf = NULL;
	int r = fs_read_file(dfd, name, 32, &buf, NULL, NULL);
	if (r < 0)
		return r;
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(buf, &end, 10);
	if (errno != 0 || end == buf || *end != '\0' || buf[0] == '-')
		return -EINVAL;
	*ret = v;
	return 0;
}

static int read_ns(int dfd, const char *name, int64_t *ret)
{
	uint64_t v = 0;
	int r = read_u64(dfd, name, &v);
	if (r < 0)
		return r;
	if (v > INT64_MAX)
		return -EINVAL;
	*ret = (int64_t)v;
	return 0;
}

/* Whether directory @fd is still the entry @name of @parentfd: 1 yes, 0 gone or replaced. */
static int still_there(int parentfd, const char *name, int fd)
{
	struct stat a, b;
	if (fstat(fd, &a) < 0)
		return -errno;
	if (fstatat(parentfd, name, &b, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int flock_nb(int fd)
{
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

/* Open a directory of the store, creating it (and its parents) first when @create. */
static int open_store_dir(content_store *s, const char *path, bool create, cairn_error **reterr)
{
	int fd = fs_openat(s->rootfd, path, O_RDONLY | O_DIRECTORY, 0, NULL);
	if (fd != -ENOENT || !create)
		return fd < 0 ? err_errno(reterr, fd, "open '%s'", path) : fd;
	int r = fs_mkdir_p(s->rootfd, path, 0755, reterr);
	if (r < 0)
		return r;
	return fs_openat(s->rootfd, path, O_RDONLY | O_DIRECTORY, 0, reterr);
}

/* A NULL-terminated list of the entries of directory @dfd ("." and ".." left out). */
static char **strv_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
	return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free)

static int read_names(int dfd, const char *what, char ***ret, size_t *ret_n, cairn_error **reterr)
{
	DIR *d = NULL;
	int r = fs_opendir_fd(dfd, what, &d, reterr);
	if (r < 0)
		return r;
	_cleanup_(strv_freep) char **v = calloc(1, sizeof(char *));
	size_t n = 0, cap = 1;
	r = v ? 0 : -ENOMEM;
	struct dirent *de;
	while (r == 0 && (de = fs_readdir(d))) {
		if (n + 1 >= cap) {
			char **nv = realloc(v, 2 * cap * sizeof(char *));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
			cap *= 2;
		}
		if (!(v[n] = strdup(de->d_name)))
			r = -ENOMEM;
		else
			v[++n] = NULL;
	}
	if (r == 0 && errno != 0)
		r = -errno;
	closedir(d);
	if (r < 0)
		return err_errno(reterr, r, "read directory '%s'", what);
	*ret = TAKE_PTR(v);
	if (ret_n)
		*ret_n = n;
	return 0;
}

int content_store_open(int rootfd, content_store **ret, cairn_error **reterr)
{
	static const char *const dirs[] = {BLOBS_DIR, INGEST_DIR, TMP_DIR};
	_cleanup_close_ int fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return err_errno(reterr, -errno, "content store: dup root fd %d", rootfd);
	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		int r = fs_mkdir_p(fd, dirs[i], 0755, reterr);
		if (r < 0)
			return err_prefix(reterr, "content store");
	}
	content_store *s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(reterr, -ENOMEM, "content store: out of memory");
	s->rootfd = TAKE_FD(fd);
	*ret = s;
	return 0;
}

content_store *content_store_free(content_store *s)
{
	if (s) {
		safe_close(s->rootfd);
		free(s);
	}
	return NULL;
}

/* ---- blobs ---- */

static void blob_path(const digest *d, char ret[sizeof(BLOBS_DIR) + 1 + KEY_LEN])
{
	snprintf(ret, sizeof(BLOBS_DIR) + 1 + KEY_LEN, BLOBS_DIR "/%s", digest_hex(d));
}

/* Open blob @d with @flags (O_NOFOLLOW added) and check it is a regular file. */
static int blob_open(content_store *s, const digest *d, int flags, struct stat *ret_st,
                     cairn_error **reterr)
{
	char path[sizeof(BLOBS_DIR) + 1 + KEY_LEN];
	blob_path(d, path);
	/* O_NONBLOCK: opening a FIFO planted under blobs/ must not hang the caller. (openat2
	 * refuses it beside O_PATH, which opens nothing anyway.) */
	int nonblock = (flags & O_PATH) ? 0 : O_NONBLOCK;
	_cleanup_close_ int fd = fs_openat(s->rootfd, path, flags | O_NOFOLLOW | nonblock, 0, NULL);
	if (fd == -ENOENT)
		return err_set(reterr, -ENOENT, "blob '%s' not found", d->str);
	if (fd < 0)
		return err_errno(reterr, fd, "open blob '%s' ('%s')", d->str, path);
	if (fstat(fd, ret_st) < 0)
		return err_errno(reterr, -errno, "stat blob '%s' ('%s')", d->str, path);
	if (!S_ISREG(ret_st->st_mode))
		return err_set(reterr, CAIRN_ECORRUPT, "blob '%s' ('%s') is not a regular file",
		               d->str, path);
	int fl = nonblock ? fcntl(fd, F_GETFL) : 0;
	if (fl < 0 || (nonblock && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0))
		return err_errno(reterr, -errno, "open blob '%s' ('%s')", d->str, path);
	return TAKE_FD(fd);
}

static int blob_present(content_store *s, const digest *d, cairn_error **reterr)
{
	struct stat st;
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	_cleanup_close_ int fd = blob_open(s, d, O_PATH, &st, &e);
	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return err_pass(reterr, &e, fd);
	return 1;
}

int content_open(content_store *s, const char *digest_str, int *ret_fd, uint64_t *ret_size,
                 cairn_error **reterr)
{
	digest d;
	int r = digest_parse(digest_str, &d, reterr);
	if (r < 0)
		return r;
	struct stat st;
	int fd = blob_open(s, &d, O_RDONLY, &st, reterr);
	if (fd < 0)
		return fd;
	*ret_fd = fd;
	if (ret_size)
		*ret_size = (uint64_t)st.st_size;
	return 0;
}

int content_info(content_store *s, const char *digest_str, content_blob_info *ret,
                 cairn_error **reterr)
{
	digest d;
	int r = digest_parse(digest_str, &d, reterr);
	if (r < 0)
		return r;
	struct stat st;
	_cleanup_close_ int fd = blob_open(s, &d, O_PATH, &st, reterr);
	if (fd < 0)
		return fd;
	memcpy(ret->digest, d.str, sizeof(ret->digest));
	ret->size = (uint64_t)st.st_size;
	ret->created_ns = timespec_ns(&st.st_mtim);
	return 0;
}

int content_exists(content_store *s, const char *digest_str, cairn_error **reterr)
{
	digest d;
	int r = digest_parse(digest_str, &d, reterr);
	if (r < 0)
		return r;
	return blob_present(s, &d, reterr);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int content_walk(content_store *s, content_blob_fn fn, void *userdata, cairn_error **reterr)
{
	_cleanup_close_ int bfd = open_store_dir(s, BLOBS_DIR, false, NULL);
	if (bfd == -ENOENT)
		return 0;
	if (bfd < 0)
		return err_errno(reterr, bfd, "walk blobs: open '%s'", BLOBS_DIR);
	_cleanup_(strv_freep) char **names = NULL;
	size_t n = 0;
	int r = read_names(bfd, BLOBS_DIR, &names, &n, reterr);
	if (r < 0)
		return r;
	/* Listed first, called after: @fn may delete blobs without upsetting readdir. */
	if (n > 0)
		qsort(names, n, sizeof(char *), cmp_names);
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (!key_valid(names[i]))
			continue;
		if (fstatat(bfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			return err_errno(reterr, -errno, "stat '%s/%s'", BLOBS_DIR, names[i]);
		}
		if (!S_ISREG(st.st_mode))
			continue;
		content_blob_info info = {
			.size = (uint64_t)st.st_size,
			.created_ns = timespec_ns(&st.st_mtim),
		};
		snprintf(info.digest, sizeof(info.digest), "sha256:%s", names[i]);
		r = fn(&info, userdata);
		if (r < 0)
			return r;
	}
	return 0;
}

int content_delete(content_store *s, const char *digest_str, cairn_error **reterr)
{
	digest d;
	int r = digest_parse(digest_str, &d, reterr);
	if (r < 0)
		return r;
	_cleanup_close_ int bfd = open_store_dir(s, BLOBS_DIR, false, NULL);
	if (bfd == -ENOENT)
		return err_set(reterr, -ENOENT, "blob '%s' not found", d.str);
	if (bfd < 0)
		return err_errno(reterr, bfd, "delete blob '%s': open '%s'", d.str, BLOBS_DIR);
	/* No fsync of the directory: a delete a crash undoes is redone by the next gc. */
	if (unlinkat(bfd, digest_hex(&d), 0) < 0) {
		if (errno == ENOENT)
			return err_set(reterr, -ENOENT, "blob '%s' not found", d.str);
		return err_errno(reterr, -errno, "delete blob '%s' ('%s/%s')", d.str, BLOBS_DIR,
		                 digest_hex(&d));
	}
	return 0;
}

int content_verify(content_store *s, const char *digest_str, cairn_error **reterr)
{
	digest d, got;
	int r = digest_parse(digest_str, &d, reterr);
	if (r < 0)
		return r;
	struct stat st;
	_cleanup_close_ int fd = blob_open(s, &d, O_RDONLY, &st, reterr);
	if (fd < 0)
		return fd;
	char path[sizeof(BLOBS_DIR) + 1 + KEY_LEN];
	blob_path(&d, path);
	r = digest_fd(fd, path, &got, NULL, reterr);
	if (r < 0)
		return err_prefix(reterr, "verify blob '%s'", d.str);
	if (strcmp(got.str, d.str) != 0)
		return err_set(reterr, CAIRN_EDIGEST,
		               "blob '%s' is corrupt: content hashes to '%s'", d.str, got.str);
	return 0;
}

/* ---- ingests: locking and status ---- */

static int open_ingest_root(content_store *s, bool create, const char *ref, cairn_error **reterr)
{
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	int fd = open_store_dir(s, INGEST_DIR, create, &e);
	if (fd == -ENOENT && !create)
		return err_set(reterr, -ENOENT, "ingest '%s' not found", ref);
	if (fd < 0)
		return err_pass(reterr, &e, fd);
	return fd;
}

/*
 * Lock ingest/<@key>: mkdir it (when @create), open it, flock it without waiting. Whoever removes
 * an ingest directory (commit, abort, reconcile) does so holding its lock, so once we hold the
 * lock, a directory that is still at ingest/<key> stays there; one that went away meanwhile was
 * locked in vain, and we start again. *@ret_created (may be NULL) tells whether our mkdir made
 * it. Returns the locked directory fd.
 */
static int ingest_lock(content_store *s, const char *key, const char *ref, bool create,
                       bool *ret_created, cairn_error **reterr)
{
	_cleanup_close_ int ifd = open_ingest_root(s, create, ref, reterr);
	if (ifd < 0)
		return ifd;
	for (unsigned attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
		bool created = false;
		if (create && mkdirat(ifd, key, 0755) == 0)
			created = true;
		else if (create && errno != EEXIST)
			return err_errno(reterr, -errno, "create ingest '%s' ('%s/%s')", ref,
			                 INGEST_DIR, key);
		_cleanup_close_ int dfd =
			openat(ifd, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0 && errno == ENOENT && create)
			continue;
		if (dfd < 0 && errno == ENOENT)
			return err_set(reterr, -ENOENT, "ingest '%s' not found", ref);
		if (dfd < 0)
			return err_errno(reterr, -errno, "open ingest '%s' ('%s/%s')", ref,
			                 INGEST_DIR, key);
		int r = flock_nb(dfd);
		if (r == -EWOULDBLOCK)
			return err_set(reterr, CAIRN_ELOCKED, "ingest '%s' is locked", ref);
		if (r < 0)
			return err_errno(reterr, r, "lock ingest '%s' ('%s/%s')", ref, INGEST_DIR,
			                 key);
		r = still_there(ifd, key, dfd);
		if (r < 0)
			return err_errno(reterr, r, "stat ingest '%s' ('%s/%s')", ref, INGEST_DIR,
			                 key);
		if (r == 0 && !create)
			return err_set(reterr, -ENOENT, "ingest '%s' not found", ref);
		if (r == 0)
			continue;
		if (ret_created)
			*ret_created = created;
		return TAKE_FD(dfd);
	}
	return err_set(reterr, -EAGAIN, "lock ingest '%s' ('%s/%s'): removed again and again", ref,
	               INGEST_DIR, key);
}

/* Remove ingest/<@key> (whose lock the caller holds). */
static int ingest_remove(content_store *s, const char *key, cairn_error **reterr)
{
	char path[sizeof(INGEST_DIR) + 1 + KEY_LEN];
	snprintf(path, sizeof(path), INGEST_DIR "/%s", key);
	return fs_rm_rf(s->rootfd, path, reterr);
}

/* Status of the ingest directory @dfd from its files. -errno, without a message. */
static int status_read(int dfd, content_ingest_status *ret)
{
	_cleanup_free_ char *ref = NULL;
	size_t len = 0;
	int r = fs_read_file(dfd, "ref", CONTENT_REF_MAX, &ref, &len, NULL);
	if (r < 0)
		return r == -EFBIG ? -EINVAL : r;
	if (len == 0 || strlen(ref) != len)
		return -EINVAL;
	struct stat st;
	if (fstatat(dfd, "data", &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	memset(ret, 0, sizeof(*ret));
	memcpy(ret->ref, ref, len + 1);
	ret->offset = (uint64_t)st.st_size;
	(void)read_u64(dfd, "total", &ret->total);
	(void)read_ns(dfd, "startedat", &ret->started_ns);
	(void)read_ns(dfd, "updatedat", &ret->updated_ns);
	if (timespec_ns(&st.st_mtim) > ret->updated_ns)
		ret->updated_ns = timespec_ns(&st.st_mtim);
	return 0;
}

int content_status(content_store *s, const char *ref, content_ingest_status *ret,
                   cairn_error **reterr)
{
	int r = ref_check(ref, reterr);
	if (r < 0)
		return r;
	char key[KEY_LEN + 1];
	ref_key(ref, key);
	_cleanup_close_ int ifd = open_ingest_root(s, false, ref, reterr);
	if (ifd < 0)
		return ifd;
	_cleanup_close_ int dfd = openat(ifd, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 && errno == ENOENT)
		return err_set(reterr, -ENOENT, "ingest '%s' not found", ref);
	if (dfd < 0)
		return err_errno(reterr, -errno, "open ingest '%s' ('%s/%s')", ref, INGEST_DIR,
		                 key);
	content_ingest_status st;
	r = status_read(dfd, &st);
	if (r == -ENOENT || (r == 0 && strcmp(st.ref, ref) != 0))
		return err_set(reterr, -ENOENT, "ingest '%s' not found", ref);
	if (r < 0)
		return err_errno(reterr, r, "read ingest '%s' ('%s/%s')", ref, INGEST_DIR, key);
	*ret = st;
	return 0;
}

int content_list_ingests(content_store *s, content_ingest_fn fn, void *userdata,
                         cairn_error **reterr)
{
	_cleanup_close_ int ifd = open_store_dir(s, INGEST_DIR, false, NULL);
	if (ifd == -ENOENT)
		return 0;
	if (ifd < 0)
		return err_errno(reterr, ifd, "list ingests: open '%s'", INGEST_DIR);
	_cleanup_(strv_freep) char **names = NULL;
	int r = read_names(ifd, INGEST_DIR, &names, NULL, reterr);
	if (r < 0)
		return r;
	for (char **p = names; *p; p++) {
		if (!key_valid(*p))
			continue;
		_cleanup_close_ int dfd =
			openat(ifd, *p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		content_ingest_status st;
		r = dfd < 0 ? -errno : status_read(dfd, &st);
		if (r < 0) {
			/* Vanished, or not written yet: not an ingest to report. */
			log_debug("list ingests: skipping '%s/%s': %s", INGEST_DIR, *p,
			          cairn_strerror(r));
			continue;
		}
		r = fn(&st, userdata);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Asks @fn about the ingest directory @name of @ifd unless a writer holds it; 1 when removed. */
static int check_ingest(content_store *s, int ifd, const char *name, content_ingest_check_fn fn,
                        void *userdata, cairn_error **reterr)
{
	_cleanup_close_ int dfd =
		openat(ifd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP))
		return 0;
	if (dfd < 0)
		return err_errno(reterr, -errno, "check ingest '%s/%s'", INGEST_DIR, name);
	/* Held: a writer is at work. Gone: someone else removed it. */
	if (flock_nb(dfd) < 0 || still_there(ifd, name, dfd) != 1)
		return 0;
	content_ingest_status st;
	content_ingest_check c = {.key = name};
	struct stat dst;
	if (status_read(dfd, &st) == 0) {
		c.ref = st.ref;
		c.offset = st.offset;
		c.updated_ns = st.updated_ns;
	} else if (fstat(dfd, &dst) == 0) {
		c.updated_ns = timespec_ns(&dst.st_mtim);
	}
	int r = fn(&c, userdata);
	if (r <= 0)
		return r;
	r = ingest_remove(s, name, reterr);
	return r < 0 ? err_prefix(reterr, "remove ingest '%s/%s'", INGEST_DIR, name) : 1;
}

int content_check_ingests(content_store *s, content_ingest_check_fn fn, void *userdata,
                          cairn_error **reterr)
{
	_cleanup_close_ int ifd = open_store_dir(s, INGEST_DIR, false, NULL);
	if (ifd == -ENOENT)
		return 0;
	if (ifd < 0)
		return err_errno(reterr, ifd, "check ingests: open '%s'", INGEST_DIR);
	_cleanup_(strv_freep) char **names = NULL;
	int r = read_names(ifd, INGEST_DIR, &names, NULL, reterr), n = 0;
	for (char **p = names; r >= 0 && *p; p++) {
		if (!key_valid(*p))
			continue;
		r = check_ingest(s, ifd, *p, fn, userdata, reterr);
		n += r > 0 ? r : 0;
	}
	return r < 0 ? r : n;
}

int content_abort(content_store *s, const char *ref, cairn_error **reterr)
{
	int r = ref_check(ref, reterr);
	if (r < 0)
		return r;
	char key[KEY_LEN + 1];
	ref_key(ref, key);
	_cleanup_close_ int dfd = ingest_lock(s, key, ref, false, NULL, reterr);
	if (dfd < 0)
		return dfd;
	r = ingest_remove(s, key, reterr);
	if (r < 0)
		return err_prefix(reterr, "abort ingest '%s'", ref);
	return 0;
}

/* ---- writers ---- */

static void writer_destroy(content_writer *w)
{
	safe_close(w->datafd);
	safe_close(w->dirfd); /* drops the flock */
	hasher_free(w->hash);
	free(w->ref);
	free(w);
}

static content_writer *writer_new(content_store *s, const char *ref, uint64_t total,
                                  const digest *expected)
{
	content_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->dirfd = w->datafd = -EBADF;
	w->store = s;
	w->total = total;
	w->ref = strdup(ref);
	w->hash = hasher_new();
	if (!w->ref || !w->hash) {
		writer_destroy(w);
		return NULL;
	}
	ref_key(ref, w->key);
	if (expected) {
		w->has_expected = true;
		w->expected = *expected;
	}
	return w;
}

/*
 * Open the ingest's data for reading and writing. A crash between commit's chmod and its rename
 * leaves data read-only; the ingest is ours (we hold its lock), so make it writable again.
 */
static int data_open(content_writer *w, int flags, cairn_error **reterr)
{
	for (int attempt = 0;; attempt++) {
		int fd = openat(w->dirfd, "data", O_RDWR | O_NOFOLLOW | O_CLOEXEC | flags, 0644);
		if (fd >= 0 || errno != EACCES || attempt > 0)
			return fd >= 0 ? fd
			               : err_errno(reterr, -errno,
			                           "open ingest '%s' ('%s/%s/data')", w->ref,
			                           INGEST_DIR, w->key);
		_cleanup_close_ int ro =
			openat(w->dirfd, "data", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (ro < 0 || fchmod(ro, 0644) < 0)
			return err_errno(reterr, -errno, "open ingest '%s' ('%s/%s/data')", w->ref,
			                 INGEST_DIR, w->key);
	}
}

/* Feed the whole of @fd (at offset 0) to the writer's hash; leaves @fd at its end. */
static int rehash(content_writer *w, int fd, cairn_error **reterr)
{
	_cleanup_free_ uint8_t *buf = malloc(COPY_SIZE);
	if (!buf)
		return err_set(reterr, -ENOMEM, "resume ingest '%s': out of memory", w->ref);
	hasher_reset(w->hash);
	for (;;) {
		ssize_t n = read(fd, buf, COPY_SIZE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_errno(reterr, -errno, "resume ingest '%s': read '%s/%s/data'",
			                 w->ref, INGEST_DIR, w->key);
		if (n == 0)
			break;
		hasher_update(w->hash, buf, (size_t)n);
	}
	w->offset = hasher_total(w->hash);
	return 0;
}

/*
 * Pick up an ingest left on disk. Returns 0 when resumed (w->datafd set), 1 when what is there
 * cannot be resumed and the ingest must start over, or a negative error.
 */
static int ingest_resume(content_writer *w, cairn_error **reterr)
{
	content_ingest_status st;
	int r = status_read(w->dirfd, &st);
	const char *why = r < 0 ? cairn_strerror(r) : NULL;
	if (r == 0 && strcmp(st.ref, w->ref) != 0)
		why = "ref file differs";
	else if (r == 0 && st.total > 0 && w->total > 0 && st.total != w->total)
		why = "a different total size was expected";
	else if (r == 0 && w->total > 0 && st.offset > w->total)
		why = "more data than the expected size";
	if (why) {
		log_debug("ingest '%s': cannot resume (%s), starting over", w->ref, why);
		return 1;
	}
	if (w->total == 0)
		w->total = st.total;
	else if (st.total == 0 && (r = write_u64(w->dirfd, "total", w->total, reterr)) < 0)
		return err_prefix(reterr, "ingest '%s'", w->ref);
	_cleanup_close_ int fd = data_open(w, 0, reterr);
	if (fd < 0)
		return fd;
	r = rehash(w, fd, reterr);
	if (r < 0)
		return r;
	w->started_ns = st.started_ns;
	w->updated_ns = st.updated_ns;
	w->datafd = TAKE_FD(fd);
	return 0;
}

/* Start the ingest afresh: drop old data, write ref and times, create data. */
static int ingest_init(content_writer *w, cairn_error **reterr)
{
	w->started_ns = w->updated_ns = now_ns();
	w->offset = 0;
	hasher_reset(w->hash);
	int r = fs_rm_rf(w->dirfd, "data", reterr);
	if (r >= 0)
		r = fs_write_atomic(w->dirfd, "ref", w->ref, strlen(w->ref), 0644, reterr);
	if (r >= 0)
		r = write_u64(w->dirfd, "startedat", (uint64_t)w->started_ns, reterr);
	if (r >= 0)
		r = write_u64(w->dirfd, "updatedat", (uint64_t)w->updated_ns, reterr);
	if (r >= 0 && w->total > 0)
		r = write_u64(w->dirfd, "total", w->total, reterr);
	if (r >= 0 && w->total == 0 && unlinkat(w->dirfd, "total", 0) < 0 && errno != ENOENT)
		r = err_errno(reterr, -errno, "remove 'total'");
	if (r < 0)
		return err_prefix(reterr, "ingest '%s' ('%s/%s')", w->ref, INGEST_DIR, w->key);
	int fd = data_open(w, O_CREAT | O_EXCL, reterr);
	if (fd < 0)
		return fd;
	w->datafd = fd;
	return 0;
}

int content_writer_open(content_store *s, const char *ref, uint64_t expected_size,
                        const char *expected_digest, content_writer **ret, cairn_error **reterr)
{
	digest exp;
	int r = ref_check(ref, reterr);
	if (r < 0)
		return r;
	if (expected_digest && (r = digest_parse(expected_digest, &exp, reterr)) < 0)
		return r;
	if (expected_digest && (r = blob_present(s, &exp, reterr)) != 0)
		return r < 0 ? r : err_set(reterr, -EEXIST, "blob '%s' already exists", exp.str);
	_cleanup_(content_writer_freep) content_writer *w =
		writer_new(s, ref, expected_size, expected_digest ? &exp : NULL);
	if (!w)
		return err_set(reterr, -ENOMEM, "open ingest '%s': out of memory", ref);
	bool created = false;
	w->dirfd = ingest_lock(s, w->key, ref, true, &created, reterr);
	if (w->dirfd < 0)
		return w->dirfd;
	/* Again under the lock: a writer on the same ref may have committed it meanwhile. */
	if (expected_digest && (r = blob_present(s, &exp, reterr)) != 0) {
		if (r > 0 && created)
			(void)ingest_remove(s, w->key, NULL);
		return r < 0 ? r : err_set(reterr, -EEXIST, "blob '%s' already exists", exp.str);
	}
	r = created ? 1 : ingest_resume(w, reterr);
	if (r > 0)
		r = ingest_init(w, reterr);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(w);
	return 0;
}

static int writer_check_open(const content_writer *w, const char *op, cairn_error **reterr)
{
	if (w->datafd < 0)
		return err_set(reterr, CAIRN_EPRECONDITION,
		               "%s ingest '%s': the writer is done (commit was called)", op,
		               w->ref);
	return 0;
}

int content_writer_write(content_writer *w, const void *buf, size_t len, cairn_error **reterr)
{
	int r = writer_check_open(w, "write", reterr);
	if (r < 0)
		return r;
	const uint8_t *p = buf;
	/* Hash only what reached the file, so a failed write leaves hash and data in step. */
	while (len > 0) {
		ssize_t n = write(w->datafd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		hasher_update(w->hash, p, (size_t)n);
		w->offset += (uint64_t)n;
		p += n;
		len -= (size_t)n;
		fault_point("content.ingest.written");
	}
	w->updated_ns = now_ns();
	if (r < 0)
		return err_errno(reterr, r, "write ingest '%s' ('%s/%s/data')", w->ref, INGEST_DIR,
		                 w->key);
	return 0;
}

uint64_t content_writer_offset(const content_writer *w)
{
	return w->offset;
}

void content_writer_digest(const content_writer *w, digest *ret)
{
	hasher_peek(w->hash, ret);
}

void content_writer_status(const content_writer *w, content_ingest_status *ret)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->ref, sizeof(ret->ref), "%s", w->ref);
	ret->offset = w->offset;
	ret->total = w->total;
	ret->started_ns = w->started_ns;
	ret->updated_ns = w->updated_ns;
}

int content_writer_truncate(content_writer *w, uint64_t size, cairn_error **reterr)
{
	if (size != 0)
		return err_set(reterr, -EINVAL,
		               "truncate ingest '%s' to %" PRIu64 ": only 0 is supported", w->ref,
		               size);
	int r = writer_check_open(w, "truncate", reterr);
	if (r < 0)
		return r;
	if (ftruncate(w->datafd, 0) < 0 || lseek(w->datafd, 0, SEEK_SET) < 0)
		return err_errno(reterr, -errno, "truncate ingest '%s' ('%s/%s/data')", w->ref,
		                 INGEST_DIR, w->key);
	hasher_reset(w->hash);
	w->offset = 0;
	w->updated_ns = now_ns();
	return 0;
}

/* Rename (or link, where RENAME_NOREPLACE is unsupported) without replacing; -errno. */
static int link_noreplace(int olddfd, const char *oldname, int newdfd, const char *newname)
{
	if (renameat2(olddfd, oldname, newdfd, newname, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
		return -errno;
	/* linkat refuses an existing name just the same; the ingest's name goes with its dir. */
	return linkat(olddfd, oldname, newdfd, newname, 0) < 0 ? -errno : 0;
}

/*
 * Make the verified, fsynced data blob @d. Returns 1 when linked, 0 when the blob was there.
 * The file turns read-only and gets the commit time as mtime before it becomes visible, so no
 * one ever sees a writable blob; fsync of blobs/sha256 makes the name durable before the caller
 * removes the ingest.
 */
static int publish(content_writer *w, int dirfd, int datafd, const digest *d, cairn_error **reterr)
{
	_cleanup_close_ int bfd = open_store_dir(w->store, BLOBS_DIR, true, reterr);
	if (bfd < 0)
		return err_prefix(reterr, "commit ingest '%s'", w->ref);
	if (fchmod(datafd, 0444) < 0 || futimens(datafd, NULL) < 0)
		return err_errno(reterr, -errno, "commit ingest '%s': chmod '%s/%s/data'", w->ref,
		                 INGEST_DIR, w->key);
	int r = link_noreplace(dirfd, "data", bfd, digest_hex(d));
	if (r == -EEXIST) {
		log_debug("commit ingest '%s': blob '%s' exists already", w->ref, d->str);
		return 0;
	}
	if (r < 0)
		return err_errno(reterr, r, "commit ingest '%s': rename to '%s/%s'", w->ref,
		                 BLOBS_DIR, digest_hex(d));
	fault_point("content.commit.renamed");
	if (fsync(bfd) < 0)
		return err_errno(reterr, -errno, "commit blob '%s': fsync '%s'", d->str, BLOBS_DIR);
	return 1;
}

/* Check size and digest of what was written; the data is fsynced first. */
static int commit_check(content_writer *w, int datafd, uint64_t size, const digest *expected,
                        digest *ret, cairn_error **reterr)
{
	struct stat st;
	if (fsync(datafd) < 0 || fstat(datafd, &st) < 0)
		return err_errno(reterr, -errno, "commit ingest '%s': fsync '%s/%s/data'", w->ref,
		                 INGEST_DIR, w->key);
	if ((uint64_t)st.st_size != w->offset)
		return err_set(reterr, CAIRN_ECORRUPT,
		               "commit ingest '%s': '%s/%s/data' holds %" PRIu64
		               " bytes but %" PRIu64 " were written",
		               w->ref, INGEST_DIR, w->key, (uint64_t)st.st_size, w->offset);
	if (size > 0 && size != w->offset)
		return err_set(reterr, CAIRN_EPRECONDITION,
		               "commit ingest '%s': expected size %" PRIu64 ", got %" PRIu64,
		               w->ref, size, w->offset);
	hasher_peek(w->hash, ret);
	if (expected && strcmp(expected->str, ret->str) != 0)
		return err_set(reterr, CAIRN_EDIGEST,
		               "commit ingest '%s': expected digest '%s', got '%s'", w->ref,
		               expected->str, ret->str);
	return 0;
}

int content_writer_commit(content_writer *w, uint64_t size, const char *expected,
                          digest *ret_digest, cairn_error **reterr)
{
	int r = writer_check_open(w, "commit", reterr);
	if (r < 0)
		return r;
	/* The lock goes whatever happens below, as containerd's Commit does. */
	_cleanup_close_ int dirfd = TAKE_FD(w->dirfd);
	_cleanup_close_ int datafd = TAKE_FD(w->datafd);
	digest exp = w->expected, got;
	bool has_exp = w->has_expected;
	if (expected && (r = digest_parse(expected, &exp, reterr)) < 0)
		return err_prefix(reterr, "commit ingest '%s'", w->ref);
	has_exp = has_exp || expected;
	r = commit_check(w, datafd, size ? size : w->total, has_exp ? &exp : NULL, &got, reterr);
	if (r < 0)
		return r;
	fault_point("content.commit.synced");
	int linked = publish(w, dirfd, datafd, &got, reterr);
	if (linked < 0)
		return linked;
	fault_point("content.commit.published");
	/* Still under the lock. A leftover directory only costs a restart to the next writer. */
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	if (ingest_remove(w->store, w->key, &e) < 0)
		log_debug("commit ingest '%s': %s", w->ref, cairn_error_message(e));
	w->updated_ns = now_ns();
	if (ret_digest)
		*ret_digest = got;
	return linked;
}

int content_writer_close(content_writer *w, cairn_error **reterr)
{
	if (!w)
		return 0;
	int r = 0;
	if (w->datafd >= 0 && fsync(w->datafd) < 0)
		r = err_errno(reterr, -errno, "close ingest '%s': fsync '%s/%s/data'", w->ref,
		              INGEST_DIR, w->key);
	if (w->datafd >= 0 && write_u64(w->dirfd, "updatedat", (uint64_t)w->updated_ns, reterr) < 0)
		r = err_prefix(reterr, "close ingest '%s' ('%s/%s')", w->ref, INGEST_DIR, w->key);
	writer_destroy(w);
	return r;
}

content_writer *content_writer_free(content_writer *w)
{
	content_writer_close(w, NULL);
	return NULL;
}

/* ---- convenience ---- */

/* A source of bytes for add: an fd, or a memory buffer. */
struct source {
	bool from_fd;
	int fd;
	const uint8_t *buf;
	size_t len;
};

/* A ref no other writer uses: time, pid, a per-process counter and a few random bits. */
static void unique_ref(char *buf, size_t size)
{
	static atomic_uint counter;
	uint32_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = 0;
	snprintf(buf, size, ADD_REF_PREFIX "%" PRId64 "-%d-%u-%08" PRIx32, now_ns(), (int)getpid(),
	         atomic_fetch_add(&counter, 1), rnd);
}

static int copy_in(content_writer *w, struct source *src, cairn_error **reterr)
{
	if (!src->from_fd)
		return content_writer_write(w, src->buf, src->len, reterr);
	_cleanup_free_ uint8_t *buf = malloc(COPY_SIZE);
	if (!buf)
		return err_set(reterr, -ENOMEM, "add content: out of memory");
	for (;;) {
		ssize_t n = read(src->fd, buf, COPY_SIZE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_errno(reterr, -errno, "add content: read input fd %d", src->fd);
		if (n == 0)
			return 0;
		int r = content_writer_write(w, buf, (size_t)n, reterr);
		if (r < 0)
			return r;
	}
}

/* The blob @d is there already: fill the out-params from it. */
static int add_existing(content_store *s, const digest *d, digest *ret_digest, uint64_t *ret_size,
                        cairn_error **reterr)
{
	content_blob_info info;
	int r = content_info(s, d->str, &info, reterr);
	if (r < 0)
		return r;
	if (ret_digest)
		*ret_digest = *d;
	if (ret_size)
		*ret_size = info.size;
	return 0;
}

static int add_source(content_store *s, struct source *src, const char *expected,
                      digest *ret_digest, uint64_t *ret_size, cairn_error **reterr)
{
	digest exp, got;
	int r;
	if (expected && (r = digest_parse(expected, &exp, reterr)) < 0)
		return r;
	char ref[96];
	unique_ref(ref, sizeof(ref));
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	_cleanup_(content_writer_freep) content_writer *w = NULL;
	r = content_writer_open(s, ref, 0, expected, &w, &e);
	if (r == -EEXIST && expected)
		return add_existing(s, &exp, ret_digest, ret_size, reterr);
	if (r < 0)
		return err_pass(reterr, &e, r);
	r = copy_in(w, src, reterr);
	if (r >= 0)
		r = content_writer_commit(w, 0, NULL, &got, reterr);
	uint64_t size = content_writer_offset(w);
	w = content_writer_free(w);
	if (r < 0) {
		/* The ref is ours alone: nobody will resume it. */
		(void)content_abort(s, ref, NULL);
		return r;
	}
	if (ret_digest)
		*ret_digest = got;
	if (ret_size)
		*ret_size = size;
	return r;
}

int content_add_fd(content_store *s, int fd, const char *expected, digest *ret_digest,
                   uint64_t *ret_size, cairn_error **reterr)
{
	struct source src = {.from_fd = true, .fd = fd};
	return add_source(s, &src, expected, ret_digest, ret_size, reterr);
}

int content_add_buffer(content_store *s, const void *buf, size_t len, const char *expected,
                       digest *ret_digest, cairn_error **reterr)
{
	struct source src = {.buf = buf, .len = len};
	return add_source(s, &src, expected, ret_digest, NULL, reterr);
}

/* ---- reconcile ---- */

/* Remove every entry of blobs/sha256 that is not a blob. Returns the count removed. */
static int reconcile_blobs(content_store *s, cairn_error **reterr)
{
	_cleanup_close_ int bfd = open_store_dir(s, BLOBS_DIR, false, NULL);
	if (bfd == -ENOENT)
		return 0;
	if (bfd < 0)
		return err_errno(reterr, bfd, "reconcile: open '%s'", BLOBS_DIR);
	_cleanup_(strv_freep) char **names = NULL;
	int r = read_names(bfd, BLOBS_DIR, &names, NULL, reterr), n = 0;
	for (char **p = names; r >= 0 && *p; p++) {
		struct stat st;
		if (key_valid(*p) && fstatat(bfd, *p, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode))
			continue;
		log_debug("reconcile: removing '%s/%s': not a blob", BLOBS_DIR, *p);
		r = fs_rm_rf(bfd, *p, reterr);
		n++;
	}
	return r < 0 ? err_prefix(reterr, "reconcile '%s'", BLOBS_DIR) : n;
}

/* Why the ingest directory @dfd, locked by the caller, is garbage; NULL when it is resumable. */
static const char *ingest_garbage(int dfd)
{
	_cleanup_free_ char *ref = NULL;
	struct stat st;
	int r = fs_read_file(dfd, "ref", CONTENT_REF_MAX, &ref, NULL, NULL);
	if (r == -ENOENT && fstat(dfd, &st) == 0 &&
	    now_ns() - timespec_ns(&st.st_mtim) > ORPHAN_AGE_NS)
		return "ingest without a ref";
	/* add's refs belong to one call, which holds the lock until it commits or aborts: an
	 * unlocked one was left by a process that died. */
	if (r >= 0 && strncmp(ref, ADD_REF_PREFIX, strlen(ADD_REF_PREFIX)) == 0)
		return "abandoned add";
	return NULL;
}

/* Tidy one ingest directory @name of @ifd if no writer holds it. Returns the count removed. */
static int reconcile_ingest(int ifd, const char *name, cairn_error **reterr)
{
	_cleanup_close_ int dfd =
		openat(ifd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 && errno == ENOENT)
		return 0;
	if (dfd < 0 && errno != ENOTDIR && errno != ELOOP)
		return err_errno(reterr, -errno, "reconcile: open '%s/%s'", INGEST_DIR, name);
	if (dfd < 0 || !key_valid(name)) {
		log_debug("reconcile: removing '%s/%s': not an ingest", INGEST_DIR, name);
		return fs_rm_rf(ifd, name, reterr) < 0 ? err_prefix(reterr, "reconcile") : 1;
	}
	/* Held: a writer is at work. Gone: someone else tidied it. */
	if (flock_nb(dfd) < 0 || still_there(ifd, name, dfd) != 1)
		return 0;
	const char *why = ingest_garbage(dfd);
	if (why) {
		log_debug("reconcile: removing '%s/%s': %s", INGEST_DIR, name, why);
		return fs_rm_rf(ifd, name, reterr) < 0 ? err_prefix(reterr, "reconcile") : 1;
	}
	/* Temp files of an atomic write that a crash interrupted (fs_write_atomic's ".#"). */
	_cleanup_(strv_freep) char **names = NULL;
	int r = read_names(dfd, name, &names, NULL, reterr), n = 0;
	for (char **p = names; r >= 0 && *p; p++) {
		if (strncmp(*p, ".#", 2) != 0)
			continue;
		if (unlinkat(dfd, *p, 0) < 0 && errno != ENOENT)
			return err_errno(reterr, -errno, "reconcile: remove '%s/%s/%s'", INGEST_DIR,
			                 name, *p);
		n++;
	}
	return r < 0 ? r : n;
}

int content_reconcile(content_store *s, cairn_error **reterr)
{
	int n = reconcile_blobs(s, reterr);
	if (n < 0)
		return n;
	_cleanup_close_ int ifd = open_store_dir(s, INGEST_DIR, false, NULL);
	if (ifd == -ENOENT)
		return n;
	if (ifd < 0)
		return err_errno(reterr, ifd, "reconcile: open '%s'", INGEST_DIR);
	_cleanup_(strv_freep) char **names = NULL;
	int r = read_names(ifd, INGEST_DIR, &names, NULL, reterr);
	for (char **p = names; r >= 0 && *p; p++) {
		r = reconcile_ingest(ifd, *p, reterr);
		n += r > 0 ? r : 0;
	}
	if (r < 0)
		return r;
	if (n > 0)
		log_debug("reconcile: removed %d entries", n);
	return n;
}
