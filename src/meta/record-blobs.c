/* SPDX-License-Identifier: MIT */
/* The layer-blob columns of records (lookups by chain id and snapshot, writing the blob fields)
 * and the unsynced marks of extracted snapshots. */
#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "util.h"

int meta_record_set_blob(meta_tx *tx, const char *id, const struct meta_record *b,
                         cairn_error **reterr)
{
	int r = meta_run(tx,
	                 "UPDATE records SET blob = ?2, diff_id = ?3, media_type = ?4, "
	                 "chain_id = ?5, blob_chain_id = ?6, gen = gen + 1 WHERE id = ?1",
	                 "set blob", reterr, 6, id, b->blob, b->diff_id, b->media_type, b->chain_id,
	                 b->blob_chain_id);
	if (r < 0)
		return err_prefix(reterr, "record '%s'", id);
	if (meta_changes(tx) == 0)
		return err_set(reterr, -ENOENT, "set blob: record '%s' not found", id);
	return 0;
}

/* Runs @sql (two text parameters) for one id: 1 and the id in *@ret_id, 0 when none. */
static int find_id(meta_tx *tx, const char *sql, const char *p1, const char *p2, const char *what,
                   char **ret_id, cairn_error **reterr)
{
	*ret_id = NULL;
	sqlite3_stmt *st = meta_prepare(tx, sql, reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, p1);
	meta_bind_text(st, 2, p2);
	int r = meta_step_row(tx, st, reterr, "look up %s '%s'", what, p1);
	if (r <= 0)
		return r;
	bool oom = false;
	*ret_id = meta_dup_col(st, 0, &oom);
	sqlite3_reset(st);
	if (oom)
		return err_set(reterr, -ENOMEM, "look up %s '%s': out of memory", what, p1);
	return 1;
}

int meta_record_find_chain(meta_tx *tx, const char *snapshotter, bool blob_chain, const char *value,
                           char **ret_id, cairn_error **reterr)
{
	return find_id(tx,
	               blob_chain ? "SELECT id FROM records WHERE blob_chain_id = ? AND "
	                            "snapshotter = ? AND deleted = 0 AND kind = 2 "
	                            "ORDER BY created_at, id LIMIT 1"
	                          : "SELECT id FROM records WHERE chain_id = ? AND snapshotter = ? "
	                            "AND deleted = 0 AND kind = 2 ORDER BY created_at, id LIMIT 1",
	               value, snapshotter, blob_chain ? "blob chain id" : "chain id", ret_id,
	               reterr);
}

int meta_record_set_extracted_snapshot(meta_tx *tx, const char *snapshotter, const char *snapshot,
                                       bool extracted, cairn_error **reterr)
{
	return meta_run(tx,
	                extracted ? "UPDATE records SET extracted = 1, gen = gen + 1 WHERE "
	                            "snapshotter = ? AND snapshot = ? AND deleted = 0 AND "
	                            "extracted = 0"
	                          : "UPDATE records SET extracted = 0, gen = gen + 1 WHERE "
	                            "snapshotter = ? AND snapshot = ? AND deleted = 0 AND "
	                            "extracted = 1 AND kind = 2 AND blob IS NOT NULL",
	                "set extracted", reterr, 2, snapshotter, snapshot);
}

int meta_record_find_snapshot(meta_tx *tx, const char *snapshotter, const char *snapshot,
                              char **ret_id, cairn_error **reterr)
{
	return find_id(tx,
	               "SELECT id FROM records WHERE snapshot = ? AND snapshotter = ? AND "
	               "deleted = 0 AND blob IS NOT NULL ORDER BY created_at, id LIMIT 1",
	               snapshot, snapshotter, "the records of snapshot", ret_id, reterr);
}

int meta_unsynced_add(meta_tx *tx, const char *snapshotter, const char *snapshot, const char *boot,
                      int64_t at, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx,
	                                "INSERT OR REPLACE INTO unsynced (snapshotter, snapshot, "
	                                "boot, at) VALUES (?, ?, ?, ?)",
	                                reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, snapshotter);
	meta_bind_text(st, 2, snapshot);
	meta_bind_text(st, 3, boot);
	sqlite3_bind_int64(st, 4, at);
	return meta_step_done(tx, st, "mark unsynced", reterr);
}

int meta_unsynced_remove(meta_tx *tx, const char *snapshotter, const char *snapshot,
                         cairn_error **reterr)
{
	return meta_run(tx, "DELETE FROM unsynced WHERE snapshotter = ? AND snapshot = ?",
	                "forget unsynced", reterr, 2, snapshotter, snapshot);
}

int meta_unsynced_clear(meta_tx *tx, const char *snapshotter, const char *boot, int64_t before,
                        cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(
		tx, "DELETE FROM unsynced WHERE snapshotter = ? AND boot = ? AND at < ?", reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, snapshotter);
	meta_bind_text(st, 2, boot);
	sqlite3_bind_int64(st, 3, before);
	return meta_step_done(tx, st, "forget unsynced", reterr);
}

int meta_unsynced_count(meta_tx *tx, const char *snapshotter, const char *boot, int64_t before,
                        int64_t *ret_other, int64_t *ret_settled, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx,
	                                "SELECT IFNULL(SUM(boot <> ?2), 0), "
	                                "IFNULL(SUM(boot = ?2 AND at < ?3), 0) FROM unsynced "
	                                "WHERE snapshotter = ?1",
	                                reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, snapshotter);
	meta_bind_text(st, 2, boot);
	sqlite3_bind_int64(st, 3, before);
	int r = meta_step_row(tx, st, reterr, "count unsynced snapshots");
	if (r < 0)
		return r;
	*ret_other = r ? sqlite3_column_int64(st, 0) : 0;
	*ret_settled = r ? sqlite3_column_int64(st, 1) : 0;
	sqlite3_reset(st);
	return 0;
}

struct name_list {
	char **v;
	size_t n;
};

static int add_name(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	struct name_list *l = userdata;
	char **nv = realloc(l->v, (l->n + 1) * sizeof(char *));
	if (!nv)
		return err_set(reterr, -ENOMEM, "list unsynced snapshots: out of memory");
	l->v = nv;
	bool oom = false;
	if (!(l->v[l->n] = meta_dup_col(st, 0, &oom)) || oom)
		return err_set(reterr, -ENOMEM, "list unsynced snapshots: out of memory");
	l->n++;
	return 0;
}

int meta_unsynced_other(meta_tx *tx, const char *snapshotter, const char *boot, char ***ret,
                        size_t *ret_n, cairn_error **reterr)
{
	*ret = NULL;
	*ret_n = 0;
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx,
	                          "SELECT u.snapshot FROM unsynced u LEFT JOIN snapshots s ON "
	                          "s.snapshotter = u.snapshotter AND s.name = u.snapshot "
	                          "WHERE u.snapshotter = ?1 AND u.boot <> ?2 "
	                          "ORDER BY s.id IS NULL, s.id, u.snapshot",
	                          &st, reterr, "list unsynced snapshots");
	if (r < 0)
		return r;
	meta_bind_text(st, 1, snapshotter);
	meta_bind_text(st, 2, boot);
	struct name_list l = {0};
	r = meta_walk(tx, st, add_name, &l, reterr, "list unsynced snapshots");
	if (r < 0) {
		for (size_t i = 0; i < l.n; i++)
			free(l.v[i]);
		free(l.v);
		return r;
	}
	*ret = l.v;
	*ret_n = l.n;
	return 0;
}
