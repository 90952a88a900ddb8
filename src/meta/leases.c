/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "leases.h"
#include "util.h"

void meta_lease_clear(struct meta_lease *l)
{
	free(l->id);
	*l = (struct meta_lease){0};
}

int meta_lease_insert(meta_tx *tx, const struct meta_lease *l, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx,
	                                "INSERT INTO leases(id, created_at, expires_at, pid, "
	                                "pid_start) VALUES (?, ?, ?, ?, ?)",
	                                reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, l->id);
	sqlite3_bind_int64(st, 2, l->created_at);
	if (l->expires_at)
		sqlite3_bind_int64(st, 3, l->expires_at);
	if (l->pid) {
		sqlite3_bind_int64(st, 4, l->pid);
		sqlite3_bind_int64(st, 5, l->pid_start);
	}
	cairn_error *e = NULL;
	int r = meta_step_done(tx, st, "insert lease", &e);
	if (r == -EEXIST) {
		cairn_error_free(e);
		return err_set(reterr, r, "lease '%s' already exists", l->id);
	}
	if (r < 0) {
		if (reterr && !*reterr)
			*reterr = e;
		else
			cairn_error_free(e);
		return err_prefix(reterr, "lease '%s'", l->id);
	}
	return 0;
}

#define SELECT_LEASE                                                                               \
	"SELECT id, created_at, IFNULL(expires_at, 0), IFNULL(pid, 0), IFNULL(pid_start, 0) "      \
	"FROM leases "

static int read_lease(sqlite3_stmt *st, void *ret)
{
	struct meta_lease *l = ret;
	bool oom = false;
	*l = (struct meta_lease){
		.id = meta_dup_col(st, 0, &oom),
		.created_at = sqlite3_column_int64(st, 1),
		.expires_at = sqlite3_column_int64(st, 2),
		.pid = sqlite3_column_int64(st, 3),
		.pid_start = sqlite3_column_int64(st, 4),
	};
	if (oom) {
		meta_lease_clear(l);
		return -ENOMEM;
	}
	return 0;
}

int meta_lease_get(meta_tx *tx, const char *id, struct meta_lease *ret, cairn_error **reterr)
{
	*ret = (struct meta_lease){0};
	sqlite3_stmt *st = meta_prepare(tx, SELECT_LEASE "WHERE id = ?", reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, id);
	return meta_get_one(tx, st, read_lease, ret, "lease", id, reterr);
}

int meta_lease_delete(meta_tx *tx, const char *id, cairn_error **reterr)
{
	/* Labels and resources go with the lease (ON DELETE CASCADE). */
	int r = meta_run(tx, "DELETE FROM leases WHERE id = ?", "delete lease", reterr, 1, id);
	if (r < 0)
		return err_prefix(reterr, "lease '%s'", id);
	if (meta_changes(tx) == 0)
		return err_set(reterr, -ENOENT, "lease '%s' not found", id);
	return 0;
}

struct lease_walk {
	meta_lease_fn fn;
	void *userdata;
};

static int lease_row(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	struct lease_walk *w = userdata;
	struct meta_lease l;
	if (read_lease(st, &l) < 0)
		return err_set(reterr, -ENOMEM, "list leases: out of memory");
	int r = w->fn(&l, w->userdata);
	meta_lease_clear(&l);
	return r;
}

int meta_lease_list(meta_tx *tx, meta_lease_fn fn, void *userdata, cairn_error **reterr)
{
	/* Uncached: @fn may prepare other statements. */
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx, SELECT_LEASE "ORDER BY id", &st, reterr, "list leases");
	if (r < 0)
		return r;
	struct lease_walk w = {fn, userdata};
	return meta_walk(tx, st, lease_row, &w, reterr, "list leases");
}

int meta_lease_label_set(meta_tx *tx, const char *id, const char *key, const char *value,
                         cairn_error **reterr)
{
	int r = meta_label_check(key, value, reterr);
	if (r < 0)
		return r;
	if (!value || !*value)
		return meta_run(tx, "DELETE FROM lease_labels WHERE lease = ? AND key = ?",
		                "delete lease label", reterr, 2, id, key);
	return meta_run(tx,
	                "INSERT OR REPLACE INTO lease_labels(lease, key, value) VALUES (?, ?, ?)",
	                "set lease label", reterr, 3, id, key, value);
}

static int each_kv(meta_tx *tx, const char *sql, const char *id, meta_kv_fn fn, void *userdata,
                   const char *what, cairn_error **reterr)
{
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx, sql, &st, reterr, "%s of lease '%s'", what, id);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	return meta_walk_kv(tx, st, fn, userdata, reterr, "%s of lease '%s'", what, id);
}

int meta_lease_labels(meta_tx *tx, const char *id, meta_kv_fn fn, void *userdata,
                      cairn_error **reterr)
{
	return each_kv(tx, "SELECT key, value FROM lease_labels WHERE lease = ? ORDER BY key", id,
	               fn, userdata, "list labels", reterr);
}

int meta_lease_resource_add(meta_tx *tx, const char *id, const char *type, const char *res,
                            cairn_error **reterr)
{
	struct meta_lease l;
	int r = meta_lease_get(tx, id, &l, reterr);
	meta_lease_clear(&l);
	if (r == 0)
		return err_set(reterr, -ENOENT, "lease '%s' not found", id);
	if (r < 0)
		return r;
	return meta_run(tx,
	                "INSERT OR IGNORE INTO lease_resources(lease, type, id) VALUES (?, ?, ?)",
	                "add lease resource", reterr, 3, id, type, res);
}

int meta_lease_resource_remove(meta_tx *tx, const char *id, const char *type, const char *res,
                               cairn_error **reterr)
{
	return meta_run(tx, "DELETE FROM lease_resources WHERE lease = ? AND type = ? AND id = ?",
	                "remove lease resource", reterr, 3, id, type, res);
}

int meta_lease_resources(meta_tx *tx, const char *id, meta_kv_fn fn, void *userdata,
                         cairn_error **reterr)
{
	return each_kv(tx, "SELECT type, id FROM lease_resources WHERE lease = ? ORDER BY type, id",
	               id, fn, userdata, "list resources", reterr);
}

/* ---- roots and references ---- */

struct record_ref_walk {
	meta_record_ref_fn fn;
	void *userdata;
};

struct mount_ref_walk {
	meta_mount_ref_fn fn;
	void *userdata;
};

static const char *col(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

static int record_ref_row(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	(void)reterr;
	struct record_ref_walk *w = userdata;
	return w->fn(col(st, 0), col(st, 1), col(st, 2), col(st, 3), col(st, 4),
	             sqlite3_column_int(st, 5) != 0, sqlite3_column_int(st, 6) != 0, w->userdata);
}

int meta_record_refs(meta_tx *tx, meta_record_ref_fn fn, void *userdata, cairn_error **reterr)
{
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx,
	                          "SELECT id, snapshotter, snapshot, blob, parent, deleted, "
	                          "extracted FROM records ORDER BY id",
	                          &st, reterr, "list records");
	if (r < 0)
		return r;
	struct record_ref_walk w = {fn, userdata};
	return meta_walk(tx, st, record_ref_row, &w, reterr, "list records");
}

static int mount_ref_row(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	(void)reterr;
	struct mount_ref_walk *w = userdata;
	return w->fn(col(st, 0), col(st, 1), col(st, 2), col(st, 3), w->userdata);
}

int meta_mount_refs(meta_tx *tx, meta_mount_ref_fn fn, void *userdata, cairn_error **reterr)
{
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx,
	                          "SELECT m.target, m.record, r.snapshotter, m.view FROM mounts m "
	                          "LEFT JOIN records r ON r.id = m.record ORDER BY m.target",
	                          &st, reterr, "list mounts");
	if (r < 0)
		return r;
	struct mount_ref_walk w = {fn, userdata};
	return meta_walk(tx, st, mount_ref_row, &w, reterr, "list mounts");
}

struct hold_walk {
	meta_lease_hold_fn fn;
	void *userdata;
};

static int hold_row(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	struct hold_walk *w = userdata;
	struct meta_lease l;
	if (read_lease(st, &l) < 0)
		return err_set(reterr, -ENOMEM, "list lease resources: out of memory");
	int r = w->fn(&l, col(st, 5), w->userdata);
	meta_lease_clear(&l);
	return r;
}

#define SELECT_HOLDS                                                                               \
	"SELECT l.id, l.created_at, IFNULL(l.expires_at, 0), IFNULL(l.pid, 0), "                   \
	"IFNULL(l.pid_start, 0), r.id FROM lease_resources r JOIN leases l ON l.id = r.lease "     \
	"WHERE r.type = ? "

int meta_lease_holds(meta_tx *tx, const char *type, const char *res, meta_lease_hold_fn fn,
                     void *userdata, cairn_error **reterr)
{
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx,
	                          res ? SELECT_HOLDS "AND r.id = ? ORDER BY l.id"
	                              : SELECT_HOLDS "ORDER BY l.id, r.id",
	                          &st, reterr, "list lease resources");
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	if (res)
		sqlite3_bind_text(st, 2, res, -1, SQLITE_STATIC);
	struct hold_walk w = {fn, userdata};
	return meta_walk(tx, st, hold_row, &w, reterr, "list lease resources");
}
