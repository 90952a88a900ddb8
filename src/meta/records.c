/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "records.h"
#include "util.h"

#define RECORD_COLUMNS                                                                             \
	"r.id, r.snapshotter, r.kind, r.parent, r.equal_mutable, "                                 \
	"CASE WHEN r.kind = 1 THEN (SELECT i.id FROM records i WHERE i.equal_mutable = r.id) "     \
	"END, "                                                                                    \
	"r.snapshot, r.description, "                                                              \
	"r.record_type, r.layer_type, r.retain, r.deleted, r.extracted, r.created_at, "            \
	"r.last_used, r.usage_count, r.gen, CASE WHEN r.size_gen = r.gen THEN r.size END, "        \
	"r.blob, r.diff_id, r.media_type, r.chain_id, r.blob_chain_id "
#define SELECT_RECORD "SELECT " RECORD_COLUMNS "FROM records r "

void meta_record_clear(struct meta_record *r)
{
	char **strs[] = {&r->id,
	                 &r->snapshotter,
	                 &r->parent,
	                 &r->equal_mutable,
	                 &r->equal_immutable,
	                 &r->snapshot,
	                 &r->description,
	                 &r->record_type,
	                 &r->layer_type,
	                 &r->blob,
	                 &r->diff_id,
	                 &r->media_type,
	                 &r->chain_id,
	                 &r->blob_chain_id};
	for (size_t i = 0; i < ELEMENTSOF(strs); i++)
		free(*strs[i]);
	*r = (struct meta_record){0};
}

/* As meta_dup_col(), but "" for SQL NULL. */
static char *dup_str(sqlite3_stmt *st, int col, bool *oom)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	char *s = strdup(t ? t : "");
	if (!s)
		*oom = true;
	return s;
}

/* Fills the struct meta_record at @ret from the current row of a SELECT_RECORD statement (a
 * meta_read_fn); -ENOMEM leaves it zeroed. */
static int read_record(sqlite3_stmt *st, void *ret)
{
	struct meta_record *r = ret;
	bool oom = false;
	*r = (struct meta_record){
		.id = meta_dup_col(st, 0, &oom),
		.snapshotter = dup_str(st, 1, &oom),
		.kind = sqlite3_column_int(st, 2),
		.parent = meta_dup_col(st, 3, &oom),
		.equal_mutable = meta_dup_col(st, 4, &oom),
		.equal_immutable = meta_dup_col(st, 5, &oom),
		.snapshot = meta_dup_col(st, 6, &oom),
		.description = dup_str(st, 7, &oom),
		.record_type = dup_str(st, 8, &oom),
		.layer_type = dup_str(st, 9, &oom),
		.retain = sqlite3_column_int(st, 10) != 0,
		.deleted = sqlite3_column_int(st, 11) != 0,
		.extracted = sqlite3_column_int(st, 12) != 0,
		.created_at = sqlite3_column_int64(st, 13),
		.last_used = sqlite3_column_int64(st, 14),
		.usage_count = sqlite3_column_int64(st, 15),
		.gen = sqlite3_column_int64(st, 16),
		.size = sqlite3_column_type(st, 17) == SQLITE_NULL ? -1
	                                                           : sqlite3_column_int64(st, 17),
		.blob = meta_dup_col(st, 18, &oom),
		.diff_id = meta_dup_col(st, 19, &oom),
		.media_type = meta_dup_col(st, 20, &oom),
		.chain_id = meta_dup_col(st, 21, &oom),
		.blob_chain_id = meta_dup_col(st, 22, &oom),
	};
	if (oom || !r->id) {
		meta_record_clear(r);
		return -ENOMEM;
	}
	return 0;
}

/* As meta_run() on a statement about record @id (parameter 1; @arg, when not NULL, is
 * parameter 2): -ENOENT naming it when no row changed. */
static int update(meta_tx *tx, const char *sql, const char *id, const char *arg, const char *what,
                  cairn_error **reterr)
{
	int r = meta_run(tx, sql, what, reterr, arg ? 2 : 1, id, arg);
	if (r < 0)
		return err_prefix(reterr, "record '%s'", id);
	if (meta_changes(tx) == 0)
		return err_set(reterr, -ENOENT, "%s: record '%s' not found", what, id);
	return 0;
}

int meta_record_get(meta_tx *tx, const char *id, struct meta_record *ret, cairn_error **reterr)
{
	*ret = (struct meta_record){0};
	sqlite3_stmt *st = meta_prepare(tx, SELECT_RECORD "WHERE r.id = ?", reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	return meta_get_one(tx, st, read_record, ret, "record", id, reterr);
}

int meta_record_insert(meta_tx *tx, const struct meta_record *rec, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(
		tx,
		"INSERT INTO records(id, snapshotter, kind, parent, equal_mutable, snapshot, "
		"description, record_type, layer_type, retain, deleted, extracted, created_at, "
		"last_used, usage_count, blob, diff_id, media_type, chain_id, blob_chain_id) "
		"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, rec->id);
	meta_bind_text(st, 2, rec->snapshotter);
	sqlite3_bind_int(st, 3, rec->kind);
	meta_bind_text(st, 4, rec->parent);
	meta_bind_text(st, 5, rec->equal_mutable);
	meta_bind_text(st, 6, rec->snapshot);
	meta_bind_text(st, 7, rec->description ? rec->description : "");
	meta_bind_text(st, 8, rec->record_type ? rec->record_type : "");
	meta_bind_text(st, 9, rec->layer_type ? rec->layer_type : "");
	sqlite3_bind_int(st, 10, rec->retain);
	sqlite3_bind_int(st, 11, rec->deleted);
	sqlite3_bind_int(st, 12, rec->extracted);
	sqlite3_bind_int64(st, 13, rec->created_at);
	if (rec->last_used)
		sqlite3_bind_int64(st, 14, rec->last_used);
	else
		sqlite3_bind_null(st, 14);
	sqlite3_bind_int64(st, 15, rec->usage_count);
	meta_bind_text(st, 16, rec->blob);
	meta_bind_text(st, 17, rec->diff_id);
	meta_bind_text(st, 18, rec->media_type);
	meta_bind_text(st, 19, rec->chain_id);
	meta_bind_text(st, 20, rec->blob_chain_id);
	int r = meta_step_done(tx, st, "insert record", reterr);
	if (r < 0)
		return err_prefix(reterr, "record '%s'", rec->id);
	return 0;
}

struct record_walk {
	meta_record_fn fn;
	meta_record_take_fn take; /* instead of @fn */
	void *userdata;
};

/* A meta_row_fn: hands each row of a SELECT_RECORD statement to the walk's function. */
static int record_row(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	struct record_walk *w = userdata;
	struct meta_record rec;
	int r = read_record(st, &rec);
	if (r < 0)
		return err_set(reterr, r, "list records: out of memory");
	r = w->take ? w->take(&rec, w->userdata) : w->fn(&rec, w->userdata);
	meta_record_clear(&rec);
	return r;
}

/* Walks the rows of @snapshotter that @sql (a SELECT_RECORD with the snapshotter as parameter
 * 1) finds, handing each to @w. */
static int list_rows(meta_tx *tx, const char *sql, const char *snapshotter, struct record_walk *w,
                     cairn_error **reterr)
{
	/* Uncached: the callback may prepare other statements. */
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx, sql, &st, reterr, "list records");
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, snapshotter, -1, SQLITE_STATIC);
	return meta_walk(tx, st, record_row, w, reterr, "list records");
}

/* "+": a scan of the table in id order, not a lookup per row through the snapshot index and a
 * sort (10x slower with 10,000 rows). */
#define LIST_ALL SELECT_RECORD "WHERE +r.snapshotter = ? ORDER BY r.id"

int meta_record_list(meta_tx *tx, const char *snapshotter, meta_record_fn fn, void *userdata,
                     cairn_error **reterr)
{
	struct record_walk w = {.fn = fn, .userdata = userdata};
	return list_rows(tx, LIST_ALL, snapshotter, &w, reterr);
}

int meta_record_list_take(meta_tx *tx, const char *snapshotter, meta_record_take_fn fn,
                          void *userdata, cairn_error **reterr)
{
	struct record_walk w = {.take = fn, .userdata = userdata};
	return list_rows(tx, LIST_ALL, snapshotter, &w, reterr);
}

int meta_record_list_unsettled(meta_tx *tx, const char *snapshotter, meta_record_fn fn,
                               void *userdata, cairn_error **reterr)
{
	struct record_walk w = {.fn = fn, .userdata = userdata};
	return list_rows(tx,
	                 SELECT_RECORD "WHERE +r.snapshotter = ? AND (r.deleted OR r.kind = 1 OR "
	                               "r.equal_mutable IS NOT NULL OR r.extracted) ORDER BY r.id",
	                 snapshotter, &w, reterr);
}

/* Collects text column 0 of @st's rows (bound by the caller; at most @max) into an array. */
static int collect(meta_tx *tx, sqlite3_stmt *st, size_t max, char ***ret_ids, size_t *ret_n,
                   const char *what, cairn_error **reterr)
{
	char **ids = NULL;
	size_t n = 0;
	int rc = SQLITE_DONE, r = 0;
	while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		char **nids = realloc(ids, (n + 1) * sizeof(*ids));
		char *id = strdup((const char *)sqlite3_column_text(st, 0));
		if (nids)
			ids = nids;
		if (!nids || !id) {
			free(id);
			r = err_set(reterr, -ENOMEM, "%s: out of memory", what);
			break;
		}
		ids[n++] = id;
	}
	if (r == 0 && n < max && rc != SQLITE_DONE)
		r = meta_error(tx, rc, reterr, "%s", what);
	sqlite3_reset(st);
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			free(ids[i]);
		free(ids);
		return r;
	}
	*ret_ids = ids;
	*ret_n = n;
	return 0;
}

int meta_record_prefix(meta_tx *tx, const char *snapshotter, const char *prefix, size_t max,
                       char ***ret_ids, size_t *ret_n, cairn_error **reterr)
{
	/* A range over the primary key: every id starting with @prefix sorts between @prefix and
	 * @prefix followed by the highest byte. */
	sqlite3_stmt *st =
		meta_prepare(tx,
	                     "SELECT id FROM records WHERE id >= ?1 AND id < ?1 || x'ff' "
	                     "AND snapshotter = ?2 AND deleted = 0 ORDER BY id",
	                     reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, snapshotter, -1, SQLITE_STATIC);
	return collect(tx, st, max, ret_ids, ret_n, "look up record prefix", reterr);
}

int meta_record_children(meta_tx *tx, const char *id, char ***ret_ids, size_t *ret_n,
                         cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(
		tx, "SELECT id FROM records WHERE parent = ? AND deleted = 0 ORDER BY id", reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	return collect(tx, st, SIZE_MAX, ret_ids, ret_n, "look for children of a record", reterr);
}

int meta_record_snapshot_users(meta_tx *tx, const char *snapshotter, const char *snapshot,
                               const char *except, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx,
	                                "SELECT count(*) FROM records WHERE snapshotter = ? AND "
	                                "snapshot = ? AND deleted = 0 AND id IS NOT ?",
	                                reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, snapshotter);
	meta_bind_text(st, 2, snapshot);
	meta_bind_text(st, 3, except);
	int rc = sqlite3_step(st);
	int n = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return meta_error(tx, rc, reterr, "count users of snapshot '%s'", snapshot);
	return n;
}

int meta_record_finalize(meta_tx *tx, const char *id, cairn_error **reterr)
{
	return update(tx,
	              "UPDATE records SET equal_mutable = NULL, snapshot = id, gen = gen + 1 "
	              "WHERE id = ?",
	              id, NULL, "finalize", reterr);
}

int meta_record_set_deleted(meta_tx *tx, const char *id, bool deleted, cairn_error **reterr)
{
	return update(tx,
	              deleted ? "UPDATE records SET deleted = 1 WHERE id = ?"
	                      : "UPDATE records SET deleted = 0 WHERE id = ?",
	              id, NULL, "mark deleted", reterr);
}

int meta_record_delete(meta_tx *tx, const char *id, cairn_error **reterr)
{
	int r = meta_run(tx, "DELETE FROM tags WHERE target = ?", "delete tags", reterr, 1, id);
	if (r < 0)
		return err_prefix(reterr, "record '%s'", id);
	r = meta_run(tx, "DELETE FROM records WHERE id = ?", "delete record", reterr, 1, id);
	if (r < 0)
		return err_prefix(reterr, "record '%s'", id);
	return 0;
}

int meta_record_add_use(meta_tx *tx, const char *id, int64_t now, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx,
	                                "UPDATE records SET usage_count = usage_count + 1, "
	                                "last_used = ? WHERE id = ?",
	                                reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
	int r = meta_step_done(tx, st, "record a use", reterr);
	if (r < 0)
		return err_prefix(reterr, "record '%s'", id);
	return 0;
}

int meta_record_bump_gen(meta_tx *tx, const char *id, cairn_error **reterr)
{
	return update(tx, "UPDATE records SET gen = gen + 1 WHERE id = ?", id, NULL,
	              "invalidate size", reterr);
}

int meta_record_set_size(meta_tx *tx, const char *id, int64_t gen, int64_t size,
                         cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(
		tx, "UPDATE records SET size = ?, size_gen = gen WHERE id = ? AND gen = ?", reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, size);
	sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, gen);
	int r = meta_step_done(tx, st, "record size", reterr);
	if (r < 0)
		return err_prefix(reterr, "record '%s'", id);
	return meta_changes(tx) > 0;
}

int meta_record_set_retain(meta_tx *tx, const char *id, bool retain, cairn_error **reterr)
{
	return update(tx,
	              retain ? "UPDATE records SET retain = 1 WHERE id = ?"
	                     : "UPDATE records SET retain = 0 WHERE id = ?",
	              id, NULL, "set cache policy", reterr);
}

int meta_record_set_type(meta_tx *tx, const char *id, const char *type, cairn_error **reterr)
{
	return update(tx, "UPDATE records SET record_type = ?2 WHERE id = ?1", id, type ? type : "",
	              "set record type", reterr);
}

int meta_record_set_description(meta_tx *tx, const char *id, const char *desc, cairn_error **reterr)
{
	return update(tx, "UPDATE records SET description = ?2 WHERE id = ?1", id, desc ? desc : "",
	              "set description", reterr);
}

int meta_record_set_extracted(meta_tx *tx, const char *id, bool extracted, cairn_error **reterr)
{
	return update(tx,
	              extracted ? "UPDATE records SET extracted = 1, gen = gen + 1 WHERE id = ?"
	                        : "UPDATE records SET extracted = 0, gen = gen + 1 WHERE id = ?",
	              id, NULL, "set extracted", reterr);
}

/* ---- mounts ---- */

void meta_mount_clear(struct meta_mount *m)
{
	free(m->target);
	free(m->record);
	free(m->view);
	*m = (struct meta_mount){0};
}

#define SELECT_MOUNT "SELECT target, record, view, readonly, created_at FROM mounts "

/* A meta_read_fn filling a struct meta_mount from a SELECT_MOUNT row. */
static int read_mount(sqlite3_stmt *st, void *ret)
{
	struct meta_mount *m = ret;
	bool oom = false;
	*m = (struct meta_mount){
		.target = meta_dup_col(st, 0, &oom),
		.record = meta_dup_col(st, 1, &oom),
		.view = meta_dup_col(st, 2, &oom),
		.readonly = sqlite3_column_int(st, 3) != 0,
		.created_at = sqlite3_column_int64(st, 4),
	};
	if (oom || !m->target || !m->record) {
		meta_mount_clear(m);
		return -ENOMEM;
	}
	return 0;
}

int meta_mount_insert(meta_tx *tx, const struct meta_mount *m, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx,
	                                "INSERT INTO mounts(target, record, view, readonly, "
	                                "created_at) VALUES (?, ?, ?, ?, ?)",
	                                reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, m->target);
	meta_bind_text(st, 2, m->record);
	meta_bind_text(st, 3, m->view);
	sqlite3_bind_int(st, 4, m->readonly);
	sqlite3_bind_int64(st, 5, m->created_at);
	int r = meta_step_done(tx, st, "insert mount", reterr);
	if (r < 0)
		return err_prefix(reterr, "mount '%s'", m->target);
	return 0;
}

int meta_mount_get(meta_tx *tx, const char *target, struct meta_mount *ret, cairn_error **reterr)
{
	*ret = (struct meta_mount){0};
	sqlite3_stmt *st = meta_prepare(tx, SELECT_MOUNT "WHERE target = ?", reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, target, -1, SQLITE_STATIC);
	return meta_get_one(tx, st, read_mount, ret, "mount", target, reterr);
}

int meta_mount_delete(meta_tx *tx, const char *target, cairn_error **reterr)
{
	int r = meta_run(tx, "DELETE FROM mounts WHERE target = ?", "delete mount", reterr, 1,
	                 target);
	if (r < 0)
		return err_prefix(reterr, "mount '%s'", target);
	if (meta_changes(tx) == 0)
		return err_set(reterr, -ENOENT, "'%s' is not a cairn mount", target);
	return 0;
}

struct mount_walk {
	meta_mount_fn fn;
	void *userdata;
};

/* A meta_row_fn: hands each row of a SELECT_MOUNT statement to the walk's function. */
static int mount_row(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	struct mount_walk *w = userdata;
	struct meta_mount m;
	if (read_mount(st, &m) < 0)
		return err_set(reterr, -ENOMEM, "list mounts: out of memory");
	int r = w->fn(&m, w->userdata);
	meta_mount_clear(&m);
	return r;
}

int meta_mount_list(meta_tx *tx, const char *record, meta_mount_fn fn, void *userdata,
                    cairn_error **reterr)
{
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx,
	                          SELECT_MOUNT "WHERE ?1 IS NULL OR record = ?1 ORDER BY target",
	                          &st, reterr, "list mounts");
	if (r < 0)
		return r;
	meta_bind_text(st, 1, record);
	struct mount_walk w = {fn, userdata};
	return meta_walk(tx, st, mount_row, &w, reterr, "list mounts");
}

/* ---- temporary leases ---- */

int meta_temp_lease_add(meta_tx *tx, const char *id, const char *type, const char *res, int64_t pid,
                        int64_t pid_start, cairn_error **reterr)
{
	int64_t now = meta_now_ns();
	sqlite3_stmt *st = meta_prepare(
		tx, "INSERT INTO leases(id, created_at, pid, pid_start) VALUES (?, ?, ?, ?)",
		reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, pid);
	sqlite3_bind_int64(st, 4, pid_start);
	int r = meta_step_done(tx, st, "insert lease", reterr);
	if (r < 0)
		return err_prefix(reterr, "lease '%s'", id);
	char value[32];
	snprintf(value, sizeof(value), "%lld", (long long)now);
	r = meta_run(tx, "INSERT INTO lease_labels(lease, key, value) VALUES (?, ?, ?)",
	             "label lease", reterr, 3, id, META_LEASE_TEMPORARY, value);
	if (r >= 0)
		r = meta_run(tx, "INSERT INTO lease_resources(lease, type, id) VALUES (?, ?, ?)",
		             "add lease resource", reterr, 3, id, type, res);
	if (r < 0)
		return err_prefix(reterr, "lease '%s'", id);
	return 0;
}

int meta_temp_lease_remove(meta_tx *tx, const char *id, cairn_error **reterr)
{
	/* Labels and resources go with the lease (ON DELETE CASCADE). */
	int r = meta_run(tx, "DELETE FROM leases WHERE id = ?", "delete lease", reterr, 1, id);
	if (r < 0)
		return err_prefix(reterr, "lease '%s'", id);
	return 0;
}

struct lease_walk {
	meta_temp_lease_fn fn;
	void *userdata;
};

static int lease_row(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	struct lease_walk *w = userdata;
	return w->fn((const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
	             sqlite3_column_int64(st, 2), (const char *)sqlite3_column_text(st, 3),
	             (const char *)sqlite3_column_text(st, 4), w->userdata);
}

int meta_temp_leases(meta_tx *tx, meta_temp_lease_fn fn, void *userdata, cairn_error **reterr)
{
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx,
	                          "SELECT l.id, l.pid, l.pid_start, r.type, r.id FROM leases l "
	                          "JOIN lease_labels t ON t.lease = l.id AND t.key = ?1 "
	                          "LEFT JOIN lease_resources r ON r.lease = l.id ORDER BY l.id",
	                          &st, reterr, "list temporary leases");
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, META_LEASE_TEMPORARY, -1, SQLITE_STATIC);
	struct lease_walk w = {fn, userdata};
	return meta_walk(tx, st, lease_row, &w, reterr, "list temporary leases");
}

int meta_record_removable(meta_tx *tx, const char *id, const char *own_lease, bool tags,
                          struct meta_record_hold *ret, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(
		tx,
		"SELECT r.deleted, r.gen, IFNULL(r.last_used, 0), "
		"EXISTS(SELECT 1 FROM records c WHERE c.parent = r.id AND c.deleted = 0), "
		"EXISTS(SELECT 1 FROM records i WHERE i.equal_mutable = r.id AND i.deleted = 0), "
		"EXISTS(SELECT 1 FROM mounts m WHERE m.record = r.id), "
		"? AND EXISTS(SELECT 1 FROM tags t WHERE t.target = r.id), "
		"EXISTS(SELECT 1 FROM lease_resources l WHERE l.type = 'record' AND l.id = r.id "
		"AND l.lease IS NOT ?), "
		"r.kind = 1 OR r.equal_mutable IS NOT NULL OR r.extracted "
		"FROM records r WHERE r.id = ?",
		reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_int(st, 1, tags);
	meta_bind_text(st, 2, own_lease);
	meta_bind_text(st, 3, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*ret = (struct meta_record_hold){
			.deleted = sqlite3_column_int(st, 0) != 0,
			.gen = sqlite3_column_int64(st, 1),
			.last_used = sqlite3_column_int64(st, 2),
			.children = sqlite3_column_int(st, 3) != 0,
			.partner = sqlite3_column_int(st, 4) != 0,
			.mounted = sqlite3_column_int(st, 5) != 0,
			.tagged = sqlite3_column_int(st, 6) != 0,
			.leased = sqlite3_column_int(st, 7) != 0,
			.on_disk = sqlite3_column_int(st, 8) != 0,
		};
		sqlite3_reset(st);
		return 1;
	}
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return 0;
	}
	int code = meta_error(tx, rc, reterr, "check record '%s'", id);
	sqlite3_reset(st);
	return code;
}
