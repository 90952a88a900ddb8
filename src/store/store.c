/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <pwd.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "base/fs.h"
#include "base/log.h"
#include "store.h"

/* Directories of a store, created in this order, each 0700. */
static const char *const layout[] = {"blobs", "blobs/sha256", "ingest", "snapshots", "tmp"};

char *cairn_store_default_root(void)
{
	const char *env = getenv("CAIRN_ROOT");
	char *r = NULL;
	if (env && *env)
		return strdup(env);
	if (geteuid() == 0)
		return strdup("/var/lib/cairn");
	const char *xdg = getenv("XDG_DATA_HOME");
	if (xdg && *xdg)
		return asprintf(&r, "%s/cairn", xdg) < 0 ? NULL : r;
	const char *home = getenv("HOME");
	if (!home || !*home) {
		struct passwd *pw = getpwuid(geteuid());
		home = pw ? pw->pw_dir : NULL;
	}
	if (!home)
		return NULL;
	return asprintf(&r, "%s/.local/share/cairn", home) < 0 ? NULL : r;
}

/* mkdir -p of the root itself: an ordinary path chosen by the user, so no confinement. */
static int make_root(const char *root, cairn_error **reterr)
{
	_cleanup_free_ char *p = strdup(root);
	if (!p)
		return err_set(reterr, -ENOMEM, "create store '%s': out of memory", root);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return err_errno(reterr, -errno, "create store '%s': mkdir '%s'", root, p);
		*s = '/';
	}
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return err_errno(reterr, -errno, "create store '%s'", root);
	return 0;
}

static int take_lock(cairn_store *s, cairn_error **reterr)
{
	s->lockfd = fs_openat(s->rootfd, "LOCK", O_RDWR | O_CREAT | O_NOFOLLOW, 0600, reterr);
	if (s->lockfd < 0)
		return err_prefix(reterr, "store '%s'", s->root);
	int op = (s->flags & CAIRN_STORE_EXCLUSIVE) ? LOCK_EX : LOCK_SH;
	if (s->flags & CAIRN_STORE_NOWAIT)
		op |= LOCK_NB;
	while (flock(s->lockfd, op) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK)
			return err_set(reterr, CAIRN_ELOCKED,
			               "store '%s' is busy: '%s/LOCK' is held by another process",
			               s->root, s->root);
		return err_errno(reterr, -errno, "lock '%s/LOCK'", s->root);
	}
	return 0;
}

static int make_layout(cairn_store *s, cairn_error **reterr)
{
	for (size_t i = 0; i < ELEMENTSOF(layout); i++) {
		if (mkdirat(s->rootfd, layout[i], 0700) < 0 && errno != EEXIST)
			return err_errno(reterr, -errno, "create '%s/%s'", s->root, layout[i]);
	}
	return 0;
}

int store_tmpdir_clean(cairn_store *s, cairn_error **reterr)
{
	_cleanup_close_ int fd = fs_openat(s->rootfd, "tmp", O_RDONLY | O_DIRECTORY, 0, reterr);
	if (fd < 0)
		return err_prefix(reterr, "store '%s'", s->root);
	return fs_rm_rf_children(fd, "tmp", reterr);
}

static int open_parts(cairn_store *s, const char *driver, cairn_error **reterr)
{
	_cleanup_free_ char *dbpath = NULL;
	if (asprintf(&dbpath, "%s/meta.db", s->root) < 0)
		return err_set(reterr, -ENOMEM, "open store '%s': out of memory", s->root);
	int r = meta_open(dbpath, &s->db, reterr);
	if (r < 0)
		return r;
	r = content_store_open(s->rootfd, &s->content, reterr);
	if (r < 0)
		return err_prefix(reterr, "store '%s'", s->root);
	/* snap_open reconciles the snapshot directories with the database. */
	r = snap_open(s->rootfd, s->db, driver, &s->snap, reterr);
	if (r < 0)
		return err_prefix(reterr, "store '%s'", s->root);
	return 0;
}

/* Take the shared lock back after an upgrade attempt, waiting for a gc that slipped in. */
static int relock_shared(cairn_store *s, cairn_error **reterr)
{
	while (flock(s->lockfd, LOCK_SH) < 0)
		if (errno != EINTR)
			return err_errno(reterr, -errno, "lock '%s/LOCK'", s->root);
	return 0;
}

/*
 * tmp/ may hold another process's staging files, so it is emptied only when no other process has
 * the store open: a non-blocking exclusive flock tells, and is then turned back into the lock
 * the caller asked for. flock conversion is not atomic: Linux drops the shared lock first, and
 * a failed non-blocking upgrade leaves no lock at all, so the shared lock is taken again on both
 * paths (a gc that got in between finishes first; nothing has been touched yet).
 */
static int clean_tmp_if_alone(cairn_store *s, cairn_error **reterr)
{
	if (s->flags & CAIRN_STORE_EXCLUSIVE)
		return store_tmpdir_clean(s, reterr);
	if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0)
		return relock_shared(s, reterr); /* others are working: their tmp files stay */
	int r = store_tmpdir_clean(s, reterr);
	int k = relock_shared(s, r < 0 ? NULL : reterr);
	return r < 0 ? r : k;
}

/* What a crash may have left: staging files, and blob files that are not content. */
static int reconcile(cairn_store *s, cairn_error **reterr)
{
	int r = clean_tmp_if_alone(s, reterr);
	if (r < 0)
		return r;
	r = content_reconcile(s->content, reterr);
	if (r < 0)
		return err_prefix(reterr, "store '%s'", s->root);
	return 0;
}

int cairn_store_open(const char *root, const cairn_store_options *opts, cairn_store **ret_store,
                     cairn_error **reterr)
{
	cairn_store_options defaults = {.version = CAIRN_STORE_OPTIONS_VERSION};
	if (!opts)
		opts = &defaults;
	if (!root || !*root || !ret_store)
		return err_set(reterr, -EINVAL, "open store: no root given");
	if (opts->version != CAIRN_STORE_OPTIONS_VERSION || (opts->flags & ~CAIRN_STORE_FLAGS_ALL))
		return err_set(reterr, -EINVAL, "open store '%s': unknown options", root);

	_cleanup_(cairn_store_closep) cairn_store *s = calloc(1, sizeof(*s));
	if (!s || !(s->root = strdup(root))) {
		free(s);
		return err_set(reterr, -ENOMEM, "open store '%s': out of memory", root);
	}
	s->rootfd = s->lockfd = -EBADF;
	s->flags = opts->flags;
	int r;
	if (!(opts->flags & CAIRN_STORE_NOCREATE) && (r = make_root(root, reterr)) < 0)
		return r;
	s->rootfd = fs_open_dir(root, reterr);
	if (s->rootfd < 0)
		return err_prefix(reterr, "open store");
	if ((r = make_layout(s, reterr)) < 0 || (r = take_lock(s, reterr)) < 0 ||
	    (r = open_parts(s, opts->snapshotter, reterr)) < 0 || (r = reconcile(s, reterr)) < 0)
		return r;
	log_debug("opened store '%s'", root);
	*ret_store = TAKE_PTR(s);
	return 0;
}

cairn_store *cairn_store_close(cairn_store *s)
{
	if (!s)
		return NULL;
	snap_close(s->snap);
	content_store_free(s->content);
	meta_close(s->db);
	safe_close(s->lockfd); /* closing the fd drops the flock */
	safe_close(s->rootfd);
	free(s->root);
	free(s);
	return NULL;
}

const char *cairn_store_root(const cairn_store *s)
{
	return s->root;
}
