/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <string.h>

#include "records.h"

#define RECORD_COLUMNS                                                                             \
	"r.id, r.snapshotter, r.kind, r.parent, r.equal_mutable, "                                 \
	"(SELECT i.id FROM records i WHERE i.equal_mutable = r.id), r.snapshot, r.description, "   \
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

/* A copy of text column @col, NULL for SQL NULL; *@oom is set when a copy fails. */
static char *dup_col(sqlite3_stmt *st, int col, bool *oom)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	if (!t)
		return NULL;
	char *s = strdup(t);
	if (!s)
		*oom = true;
	return s;
}

/* As dup_col(), but "" for SQL NULL. */
static char *dup_str(sqlite3_stmt *st, int col, bool *oom)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	char *s = strdup(t ? t : "");
	if (!s)
		*oom = true;
	return s;
}

/* Fills @r from the current row of a SELECT_RECORD statement; -ENOMEM leaves @r zeroed. */
static int read_record(sqlite3_stmt *st, struct meta_record *r)
{
	bool oom = false;
	*r = (struct meta_record){
		.id = dup_col(st, 0, &oom),
		.snapshotter = dup_str(st, 1, &oom),
		.kind = sqlite3_column_int(st, 2),
		.parent = dup_col(st, 3, &oom),
		.equal_mutable = dup_col(st, 4, &oom),
		.equal_immutable = dup_col(st, 5, &oom),
		.snapshot = dup_col(st, 6, &oom),
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
		.blob = dup_col(st, 18, &oom),
		.diff_id = dup_col(st, 19, &oom),
		.media_type = dup_col(st, 20, &oom),
		.chain_id = dup_col(st, 21, &oom),
		.blob_chain_id = dup_col(st, 22, &oom),
	};
	if (oom || !r->id) {
		meta_record_clear(r);
		return -ENOMEM;
	}
	return 0;
}

/* Binds @text (NULL binds SQL NULL) to parameter @i. */
static void bind_text(sqlite3_stmt *st, int i, const char *text)
{
	if (text)
		sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

/* Binds @n text parameters (NULL allowed) and runs @sql to completion. */
static int run(meta_tx *tx, const char *sql, const char *what, cairn_error **reterr, int n, ...)
{
	sqlite3_stmt *st = meta_prepare(tx, sql, reterr);
	if (!st)
		return -EIO;
	va_list ap;
	va_start(ap, n);
	for (int i = 1; i <= n; i++)
		bind_text(st, i, va_arg(ap, const char *));
	va_end(ap);
	return meta_step_done(tx, st, what, reterr);
}

/* As run() on a statement about record @id: -ENOENT naming it when no row changed. */
static int update(meta_tx *tx, const char *sql, const char *id, const char *what,
                  cairn_error **reterr)
{
	int r = run(tx, sql, what, reterr, 1, id);
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
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		int r = meta_error(tx, rc, reterr, "read record '%s'", id);
		sqlite3_reset(st);
		return r;
	}
	int r = read_record(st, ret);
	sqlite3_reset(st);
	if (r < 0)
		return err_set(reterr, r, "read record '%s': out of memory", id);
	return 1;
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
	bind_text(st, 1, rec->id);
	bind_text(st, 2, rec->snapshotter);
	sqlite3_bind_int(st, 3, rec->kind);
	bind_text(st, 4, rec->parent);
	bind_text(st, 5, rec->equal_mutable);
	bind_text(st, 6, rec->snapshot);
	bind_text(st, 7, rec->description ? rec->description : "");
	bind_text(st, 8, rec->record_type ? rec->record_type : "");
	bind_text(st, 9, rec->layer_type ? rec->layer_type : "");
	sqlite3_bind_int(st, 10, rec->retain);
	sqlite3_bind_int(st, 11, rec->deleted);
	sqlite3_bind_int(st, 12, rec->extracted);
	sqlite3_bind_int64(st, 13, rec->created_at);
	if (rec->last_used)
		sqlite3_bind_int64(st, 14, rec->last_used);
	else
		sqlite3_bind_null(st, 14);
	sqlite3_bind_int64(st, 15, rec->usage_count);
	bind_text(st, 16, rec->blob);
	bind_text(st, 17, rec->diff_id);
	bind_text(st, 18, rec->media_type);
	bind_text(st, 19, rec->chain_id);
	bind_text(st, 20, rec->blob_chain_id);
	int r = meta_step_done(tx, st, "insert record", reterr);
	if (r < 0)
		return err_prefix(reterr, "record '%s'", rec->id);
	return 0;
}

/* Runs the uncached @st (callbacks may prepare other statements) and hands each row to @fn. */
static int each_record(meta_tx *tx, sqlite3_stmt *st, meta_record_fn fn, void *userdata,
                       cairn_error **reterr)
{
	int rc = SQLITE_DONE, r = 0;
	while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct meta_record rec;
		r = read_record(st, &rec);
		if (r < 0) {
			r = err_set(reterr, r, "list records: out of memory");
			break;
		}
		r = fn(&rec, userdata);
		meta_record_clear(&rec);
	}
	if (r >= 0 && rc != SQLITE_DONE)
		r = meta_error(tx, rc, reterr, "list records");
	return r < 0 ? r : 0;
}

int meta_record_list(meta_tx *tx, const char *snapshotter, meta_record_fn fn, void *userdata,
                     cairn_error **reterr)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(meta_sqlite(tx),
	                            SELECT_RECORD "WHERE r.snapshotter = ? ORDER BY r.id", -1, &st,
	                            NULL);
	if (rc != SQLITE_OK)
		return meta_error(tx, rc, reterr, "list records");
	sqlite3_bind_text(st, 1, snapshotter, -1, SQLITE_STATIC);
	int r = each_record(tx, st, fn, userdata, reterr);
	sqlite3_finalize(st);
	return r;
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
	bind_text(st, 1, snapshotter);
	bind_text(st, 2, snapshot);
	bind_text(st, 3, except);
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
	              id, "finalize", reterr);
}

int meta_record_set_deleted(meta_tx *tx, const char *id, bool deleted, cairn_error **reterr)
{
	return update(tx,
	              deleted ? "UPDATE records SET deleted = 1 WHERE id = ?"
	                      : "UPDATE records SET deleted = 0 WHERE id = ?",
	              id, "mark deleted", reterr);
}

int meta_record_delete(meta_tx *tx, const char *id, cairn_error **reterr)
{
	int r = run(tx, "DELETE FROM tags WHERE target = ?", "delete tags", reterr, 1, id);
	if (r < 0)
		return err_prefix(reterr, "record '%s'", id);
	r = run(tx, "DELETE FROM records WHERE id = ?", "delete record", reterr, 1, id);
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
	return update(tx, "UPDATE records SET gen = gen + 1 WHERE id = ?", id, "invalidate size",
	              reterr);
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
	              id, "set cache policy", reterr);
}

int meta_record_set_type(meta_tx *tx, const char *id, const char *type, cairn_error **reterr)
{
	int r = run(tx, "UPDATE records SET record_type = ?2 WHERE id = ?1", "set record type",
	            reterr, 2, id, type ? type : "");
	if (r < 0)
		return err_prefix(reterr, "record '%s'", id);
	if (meta_changes(tx) == 0)
		return err_set(reterr, -ENOENT, "set record type: record '%s' not found", id);
	return 0;
}

int meta_record_set_extracted(meta_tx *tx, const char *id, bool extracted, cairn_error **reterr)
{
	return update(tx,
	              extracted ? "UPDATE records SET extracted = 1, gen = gen + 1 WHERE id = ?"
	                        : "UPDATE records SET extracted = 0, gen = gen + 1 WHERE id = ?",
	              id, "set extracted", reterr);
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

static int read_mount(sqlite3_stmt *st, struct meta_mount *m)
{
	bool oom = false;
	*m = (struct meta_mount){
		.target = dup_col(st, 0, &oom),
		.record = dup_col(st, 1, &oom),
		.view = dup_col(st, 2, &oom),
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
	bind_text(st, 1, m->target);
	bind_text(st, 2, m->record);
	bind_text(st, 3, m->view);
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
	int rc = sqlite3_step(st);
	int r = 0;
	if (rc == SQLITE_ROW)
		r = read_mount(st, ret) < 0
		            ? err_set(reterr, -ENOMEM, "read mount '%s': out of memory", target)
		            : 1;
	else if (rc != SQLITE_DONE)
		r = meta_error(tx, rc, reterr, "read mount '%s'", target);
	sqlite3_reset(st);
	return r;
}

int meta_mount_delete(meta_tx *tx, const char *target, cairn_error **reterr)
{
	int r = run(tx, "DELETE FROM mounts WHERE target = ?", "delete mount", reterr, 1, target);
	if (r < 0)
		return err_prefix(reterr, "mount '%s'", target);
	if (meta_changes(tx) == 0)
		return err_set(reterr, -ENOENT, "'%s' is not a cairn mount", target);
	return 0;
}

int meta_mount_list(meta_tx *tx, const char *record, meta_mount_fn fn, void *userdata,
                    cairn_error **reterr)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(meta_sqlite(tx),
	                            SELECT_MOUNT "WHERE ?1 IS NULL OR record = ?1 ORDER BY target",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return meta_error(tx, rc, reterr, "list mounts");
	bind_text(st, 1, record);
	int r = 0;
	while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct meta_mount m;
		if (read_mount(st, &m) < 0) {
			r = err_set(reterr, -ENOMEM, "list mounts: out of memory");
			break;
		}
		r = fn(&m, userdata);
		meta_mount_clear(&m);
	}
	if (r >= 0 && rc != SQLITE_DONE)
		r = meta_error(tx, rc, reterr, "list mounts");
	sqlite3_finalize(st);
	return r < 0 ? r : 0;
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
	r = run(tx, "INSERT INTO lease_labels(lease, key, value) VALUES (?, ?, ?)", "label lease",
	        reterr, 3, id, META_LEASE_TEMPORARY, value);
	if (r >= 0)
		r = run(tx, "INSERT INTO lease_resources(lease, type, id) VALUES (?, ?, ?)",
		        "add lease resource", reterr, 3, id, type, res);
	if (r < 0)
		return err_prefix(reterr, "lease '%s'", id);
	return 0;
}

int meta_temp_lease_remove(meta_tx *tx, const char *id, cairn_error **reterr)
{
	/* Labels and resources go with the lease (ON DELETE CASCADE). */
	int r = run(tx, "DELETE FROM leases WHERE id = ?", "delete lease", reterr, 1, id);
	if (r < 0)
		return err_prefix(reterr, "lease '%s'", id);
	return 0;
}

int meta_temp_leases(meta_tx *tx, meta_temp_lease_fn fn, void *userdata, cairn_error **reterr)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(meta_sqlite(tx),
	                            "SELECT l.id, l.pid, l.pid_start, r.type, r.id FROM leases l "
	                            "JOIN lease_labels t ON t.lease = l.id AND t.key = ?1 "
	                            "LEFT JOIN lease_resources r ON r.lease = l.id ORDER BY l.id",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return meta_error(tx, rc, reterr, "list temporary leases");
	sqlite3_bind_text(st, 1, META_LEASE_TEMPORARY, -1, SQLITE_STATIC);
	int r = 0;
	while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
		r = fn((const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
		       sqlite3_column_int64(st, 2), (const char *)sqlite3_column_text(st, 3),
		       (const char *)sqlite3_column_text(st, 4), userdata);
	if (r >= 0 && rc != SQLITE_DONE)
		r = meta_error(tx, rc, reterr, "list temporary leases");
	sqlite3_finalize(st);
	return r < 0 ? r : 0;
}
