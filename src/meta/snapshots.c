/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "snapshots.h"
#include "util.h"

#define SELECT_ROW                                                                                 \
	"SELECT s.id, s.kind, s.parent, s.snapshotter, s.name, p.name, s.created_at, "             \
	"s.updated_at, s.size, s.inodes FROM snapshots s LEFT JOIN snapshots p ON p.id = "         \
	"s.parent "

void meta_snapshot_clear(struct meta_snapshot *s)
{
	free(s->snapshotter);
	free(s->name);
	free(s->parent_name);
	*s = (struct meta_snapshot){0};
}

/* A meta_read_fn filling a struct meta_snapshot from a SELECT_ROW row. */
static int read_row(sqlite3_stmt *st, void *ret)
{
	struct meta_snapshot *s = ret;
	bool oom = false;
	*s = (struct meta_snapshot){
		.id = sqlite3_column_int64(st, 0),
		.kind = sqlite3_column_int(st, 1),
		.parent = sqlite3_column_int64(st, 2),
		.snapshotter = meta_dup_col(st, 3, &oom),
		.name = meta_dup_col(st, 4, &oom),
		.parent_name = meta_dup_col(st, 5, &oom),
		.created_at = sqlite3_column_int64(st, 6),
		.updated_at = sqlite3_column_int64(st, 7),
		.size = sqlite3_column_int64(st, 8),
		.inodes = sqlite3_column_int64(st, 9),
	};
	/* A parent id without a row (a damaged database) reads with parent_name NULL: fsck must
	 * see the row to report it. */
	if (oom || !s->snapshotter || !s->name) {
		meta_snapshot_clear(s);
		return -ENOMEM;
	}
	return 0;
}

/* Steps a bound SELECT_ROW statement once: 1 found, 0 absent. */
static int get_one(meta_tx *tx, sqlite3_stmt *st, struct meta_snapshot *ret, const char *what,
                   cairn_error **reterr)
{
	*ret = (struct meta_snapshot){0};
	return meta_get_one(tx, st, read_row, ret, "snapshot", what, reterr);
}

int meta_snapshot_get(meta_tx *tx, const char *snapshotter, const char *name,
                      struct meta_snapshot *ret, cairn_error **reterr)
{
	sqlite3_stmt *st =
		meta_prepare(tx, SELECT_ROW "WHERE s.snapshotter = ? AND s.name = ?", reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, snapshotter, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	return get_one(tx, st, ret, name, reterr);
}

int meta_snapshot_get_id(meta_tx *tx, int64_t id, struct meta_snapshot *ret, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx, SELECT_ROW "WHERE s.id = ?", reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, id);
	char what[32];
	snprintf(what, sizeof(what), "%" PRId64, id);
	return get_one(tx, st, ret, what, reterr);
}

int meta_snapshot_insert(meta_tx *tx, const char *snapshotter, const char *name, int kind,
                         int64_t parent, int64_t now, int64_t *ret_id, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx,
	                                "INSERT INTO snapshots(snapshotter, name, kind, parent, "
	                                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
	                                reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, snapshotter, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, kind);
	if (parent)
		sqlite3_bind_int64(st, 4, parent);
	else
		sqlite3_bind_null(st, 4);
	sqlite3_bind_int64(st, 5, now);
	sqlite3_bind_int64(st, 6, now);
	int r = meta_step_done(tx, st, "insert snapshot", reterr);
	if (r < 0)
		return err_prefix(reterr, "snapshot '%s'", name);
	*ret_id = sqlite3_last_insert_rowid(meta_sqlite(tx));
	return 0;
}

int meta_snapshot_commit(meta_tx *tx, int64_t id, const char *name, int64_t now, int64_t size,
                         int64_t inodes, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx,
	                                "UPDATE snapshots SET name = ?, kind = 3, created_at = ?, "
	                                "updated_at = ?, size = ?, inodes = ? WHERE id = ?",
	                                reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_int64(st, 4, size);
	sqlite3_bind_int64(st, 5, inodes);
	sqlite3_bind_int64(st, 6, id);
	int r = meta_step_done(tx, st, "commit snapshot", reterr);
	if (r < 0)
		return err_prefix(reterr, "snapshot '%s'", name);
	return meta_snapshot_labels_clear(tx, id, reterr);
}

int meta_snapshot_delete(meta_tx *tx, int64_t id, cairn_error **reterr)
{
	int r = meta_run_ints(tx, "DELETE FROM snapshots WHERE id = ?", "delete snapshot", reterr,
	                      1, id);
	if (r < 0)
		return err_prefix(reterr, "snapshot %" PRId64, id);
	if (meta_changes(tx) == 0)
		return err_set(reterr, -ENOENT, "snapshot %" PRId64 " not found", id);
	return 0;
}

int meta_snapshot_clear_parent(meta_tx *tx, int64_t id, cairn_error **reterr)
{
	int r = meta_run_ints(tx, "UPDATE snapshots SET parent = NULL WHERE id = ?",
	                      "unlink snapshot from its parent", reterr, 1, id);
	if (r < 0)
		return err_prefix(reterr, "snapshot %" PRId64, id);
	if (meta_changes(tx) == 0)
		return err_set(reterr, -ENOENT, "snapshot %" PRId64 " not found", id);
	return 0;
}

int meta_snapshot_has_children(meta_tx *tx, int64_t id, cairn_error **reterr)
{
	sqlite3_stmt *st =
		meta_prepare(tx, "SELECT 1 FROM snapshots WHERE parent = ? LIMIT 1", reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, id);
	int r = meta_step_row(tx, st, reterr, "look for children of snapshot %" PRId64, id);
	sqlite3_reset(st);
	return r;
}

/* Collects column 0 of every row of @sql bound to @id into a growing array. */
static int collect_ids(meta_tx *tx, const char *sql, int64_t id, int64_t **ret_ids, size_t *ret_n,
                       const char *what, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx, sql, reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, id);
	_cleanup_free_ int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			int64_t *nids = realloc(ids, cap * sizeof(*ids));
			if (!nids) {
				sqlite3_reset(st);
				return err_set(reterr, -ENOMEM, "%s %" PRId64 ": out of memory",
				               what, id);
			}
			ids = nids;
		}
		ids[n++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return meta_error(tx, rc, reterr, "%s %" PRId64, what, id);
	*ret_ids = TAKE_PTR(ids);
	*ret_n = n;
	return 0;
}

int meta_snapshot_chain(meta_tx *tx, int64_t id, int64_t **ret_ids, size_t *ret_n,
                        cairn_error **reterr)
{
	/* depth bounds the walk even if a corrupt database held a cycle. */
	return collect_ids(tx,
	                   "WITH RECURSIVE chain(id, parent, depth) AS ("
	                   " SELECT id, parent, 0 FROM snapshots WHERE id = ?1"
	                   " UNION ALL SELECT s.id, s.parent, c.depth + 1 FROM snapshots s"
	                   " JOIN chain c ON s.id = c.parent WHERE c.depth < 100000)"
	                   " SELECT id FROM chain WHERE depth > 0 ORDER BY depth",
	                   id, ret_ids, ret_n, "read parents of snapshot", reterr);
}

int meta_snapshot_descendants(meta_tx *tx, int64_t id, int64_t **ret_ids, size_t *ret_n,
                              cairn_error **reterr)
{
	return collect_ids(tx,
	                   "WITH RECURSIVE d(id, depth) AS (SELECT ?1, 0"
	                   " UNION ALL SELECT s.id, d.depth + 1 FROM snapshots s"
	                   " JOIN d ON s.parent = d.id WHERE d.depth < 100000)"
	                   " SELECT id FROM d ORDER BY depth, id",
	                   id, ret_ids, ret_n, "read descendants of snapshot", reterr);
}

int meta_snapshot_touch(meta_tx *tx, int64_t id, int64_t now, cairn_error **reterr)
{
	return meta_run_ints(tx, "UPDATE snapshots SET updated_at = ?2 WHERE id = ?1",
	                     "update snapshot", reterr, 2, id, now);
}

int meta_snapshot_set_usage(meta_tx *tx, int64_t id, int64_t size, int64_t inodes,
                            cairn_error **reterr)
{
	return meta_run_ints(tx, "UPDATE snapshots SET size = ?2, inodes = ?3 WHERE id = ?1",
	                     "record snapshot usage", reterr, 3, id, size, inodes);
}

int meta_snapshot_labels(meta_tx *tx, int64_t id, meta_kv_fn fn, void *userdata,
                         cairn_error **reterr)
{
	/* A fresh statement: @fn may run other queries, even this one. */
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx,
	                          "SELECT key, value FROM snapshot_labels WHERE snapshot = ? "
	                          "ORDER BY key",
	                          &st, reterr, "read labels of snapshot %" PRId64, id);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, id);
	return meta_walk_kv(tx, st, fn, userdata, reterr, "read labels of snapshot %" PRId64, id);
}

int meta_snapshot_label_set(meta_tx *tx, int64_t id, const char *key, const char *value,
                            cairn_error **reterr)
{
	int r = meta_label_check(key, value, reterr);
	if (r < 0)
		return r;
	bool del = !value || !*value;
	sqlite3_stmt *st =
		meta_prepare(tx,
	                     del ? "DELETE FROM snapshot_labels WHERE snapshot = ? AND "
	                           "key = ?"
	                         : "INSERT OR REPLACE INTO snapshot_labels(snapshot, key, "
	                           "value) VALUES (?, ?, ?)",
	                     reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	if (!del)
		sqlite3_bind_text(st, 3, value, -1, SQLITE_STATIC);
	r = meta_step_done(tx, st, "set snapshot label", reterr);
	if (r < 0)
		return err_prefix(reterr, "label '%.64s'", key);
	return 0;
}

int meta_snapshot_labels_clear(meta_tx *tx, int64_t id, cairn_error **reterr)
{
	return meta_run_ints(tx, "DELETE FROM snapshot_labels WHERE snapshot = ?",
	                     "clear snapshot labels", reterr, 1, id);
}

struct snapshot_walk {
	meta_snapshot_fn fn;
	void *userdata;
};

/* A meta_row_fn: hands each row of a SELECT_ROW statement to the walk's function. */
static int snapshot_row(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	struct snapshot_walk *w = userdata;
	struct meta_snapshot s;
	int r = read_row(st, &s);
	if (r < 0)
		return err_set(reterr, r, "list snapshots: out of memory");
	r = w->fn(&s, w->userdata);
	meta_snapshot_clear(&s);
	return r;
}

int meta_snapshot_list(meta_tx *tx, const char *snapshotter, meta_snapshot_fn fn, void *userdata,
                       cairn_error **reterr)
{
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx,
	                          SELECT_ROW "WHERE ?1 IS NULL OR s.snapshotter = ?1 "
	                                     "ORDER BY s.name COLLATE BINARY, s.id",
	                          &st, reterr, "list snapshots");
	if (r < 0)
		return r;
	if (snapshotter)
		sqlite3_bind_text(st, 1, snapshotter, -1, SQLITE_STATIC);
	struct snapshot_walk w = {fn, userdata};
	return meta_walk(tx, st, snapshot_row, &w, reterr, "list snapshots");
}
