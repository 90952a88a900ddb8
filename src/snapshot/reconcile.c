/* SPDX-License-Identifier: MIT */
/*
 * What a crash can leave, given the orderings of snapshotter.c, and what reconcile does:
 *   new-XXXXXX          staging of a prepare that never reached its transaction: delete, unless
 *                       its builder still holds the flock (it is alive).
 *   <id> without a row  published inside a transaction that never committed: delete. Safe only
 *                       under the write lock (an id of a rolled-back transaction is handed out
 *                       again), which is why all of this runs in one write transaction.
 *   rm-<id>             a remove: its row still there means the transaction never committed, so
 *                       the directory goes back; no row means it committed: delete.
 *   row without <id>/fs nothing a crash can cause; lost by hand or by a broken disk. Drop the row
 *                       and everything above it (their layers are unusable without it).
 */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "base/fs.h"
#include "base/log.h"
#include "internal.h"

struct id_set {
	int64_t *ids;
	size_t n, cap;
};

static int collect_id(const struct meta_snapshot *row, void *userdata)
{
	struct id_set *set = userdata;
	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 64;
		int64_t *n = realloc(set->ids, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		set->ids = n;
		set->cap = cap;
	}
	set->ids[set->n++] = row->id;
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static bool has_id(const struct id_set *set, int64_t id)
{
	return set->n && bsearch(&id, set->ids, set->n, sizeof(id), cmp_id) != NULL;
}

/* A decimal id without leading zeros, or -1. */
static int64_t parse_id(const char *s)
{
	if (!*s || (*s == '0' && s[1]) || strlen(s) > 18)
		return -1;
	int64_t v = 0;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

static bool exists(int dfd, const char *path)
{
	struct stat st;
	return fstatat(dfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int remove_entry(snapshotter *s, const char *name, cairn_error **reterr)
{
	log_debug("reconcile '%s/snapshots': delete '%s'", s->root, name);
	return fs_rm_rf(s->snapfd, name, reterr);
}

/* A staging directory whose builder is gone (its flock is free). */
static int reap_stage(snapshotter *s, const char *name, cairn_error **reterr)
{
	_cleanup_close_ int fd =
		openat(s->snapfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : err_errno(reterr, -errno, "open 'snapshots/%s'", name);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK
		               ? 0
		               : err_errno(reterr, -errno, "lock 'snapshots/%s'", name);
	/* Holding the lock until the directory is gone tells a racing builder to retry. */
	return remove_entry(s, name, reterr);
}

static int reconcile_entry(snapshotter *s, const struct id_set *ids, const char *name,
                           cairn_error **reterr)
{
	int64_t id = parse_id(name);
	if (id > 0)
		return has_id(ids, id) ? 0 : remove_entry(s, name, reterr);
	if (strncmp(name, "rm-", 3) == 0 && (id = parse_id(name + 3)) > 0) {
		if (!has_id(ids, id) || exists(s->snapfd, name + 3))
			return remove_entry(s, name, reterr);
		log_debug("reconcile '%s/snapshots': restore '%s'", s->root, name);
		if (renameat(s->snapfd, name, s->snapfd, name + 3) < 0)
			return err_errno(reterr, -errno, "rename 'snapshots/%s' to 'snapshots/%s'",
			                 name, name + 3);
		return 0;
	}
	if (strncmp(name, "new-", 4) == 0)
		return reap_stage(s, name, reterr);
	return 0; /* not ours: leave it */
}

static int scan_dir(snapshotter *s, const struct id_set *ids, cairn_error **reterr)
{
	int dup_fd = openat(s->snapfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dup_fd < 0)
		return err_errno(reterr, -errno, "open '%s/snapshots'", s->root);
	DIR *d = fdopendir(dup_fd);
	if (!d) {
		safe_close(dup_fd);
		return err_errno(reterr, -errno, "open '%s/snapshots'", s->root);
	}
	int r = 0;
	struct dirent *de;
	while (r >= 0 && (errno = 0, de = readdir(d)))
		if (de->d_name[0] != '.')
			r = reconcile_entry(s, ids, de->d_name, reterr);
	if (r >= 0 && errno)
		r = err_errno(reterr, -errno, "read '%s/snapshots'", s->root);
	closedir(d);
	return r;
}

/* Drops row @id and every row below it, with their directories. Returns the number dropped. */
static int drop_tree(meta_tx *tx, snapshotter *s, int64_t id, cairn_error **reterr)
{
	_cleanup_free_ int64_t *ids = NULL;
	size_t n = 0;
	int r = meta_snapshot_descendants(tx, id, &ids, &n, reterr);
	if (r < 0)
		return r;
	for (size_t i = n; i-- > 0;) {
		char name[24];
		log_debug("reconcile '%s/snapshots': drop snapshot %" PRId64 " (%s)", s->root,
		          ids[i], i ? "its parent is broken" : "its directory is missing");
		r = meta_snapshot_delete(tx, ids[i], reterr);
		if (r >= 0)
			r = fs_rm_rf(s->snapfd, snap_id_name(ids[i], name, sizeof(name)), reterr);
		if (r < 0)
			return r;
	}
	return (int)n;
}

static int drop_broken(meta_tx *tx, snapshotter *s, const struct id_set *ids, cairn_error **reterr)
{
	int dropped = 0;
	for (size_t i = 0; i < ids->n; i++) {
		char path[48];
		snprintf(path, sizeof(path), "%" PRId64 "/fs", ids->ids[i]);
		if (exists(s->snapfd, path))
			continue;
		struct meta_snapshot row = {0};
		int r = meta_snapshot_get_id(tx, ids->ids[i], &row, reterr);
		meta_snapshot_clear(&row);
		if (r == 0)
			continue; /* already dropped with an ancestor */
		if (r > 0)
			r = drop_tree(tx, s, ids->ids[i], reterr);
		if (r < 0)
			return r;
		dropped += r;
	}
	return dropped;
}

int snap_reconcile(snapshotter *s, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(s->db, &tx, true, reterr);
	if (r < 0)
		return err_prefix(reterr, "reconcile '%s/snapshots'", s->root);
	struct id_set ids = {0};
	r = meta_snapshot_list(&tx, NULL, collect_id, &ids, reterr);
	if (r == -ENOMEM)
		r = err_set(reterr, r, "reconcile '%s/snapshots': out of memory", s->root);
	if (r >= 0) {
		if (ids.n)
			qsort(ids.ids, ids.n, sizeof(*ids.ids), cmp_id);
		r = scan_dir(s, &ids, reterr);
	}
	int dropped = r >= 0 ? drop_broken(&tx, s, &ids, reterr) : r;
	free(ids.ids);
	if (dropped < 0)
		return err_prefix(reterr, "reconcile '%s/snapshots'", s->root);
	r = meta_tx_commit(&tx, reterr);
	if (r < 0)
		return err_prefix(reterr, "reconcile '%s/snapshots'", s->root);
	return dropped;
}
