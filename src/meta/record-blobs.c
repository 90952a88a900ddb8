/* SPDX-License-Identifier: MIT */
/* The layer-blob columns of records: lookups by chain id and writing the blob fields. */
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

int meta_record_find_chain(meta_tx *tx, const char *snapshotter, bool blob_chain, const char *value,
                           char **ret_id, cairn_error **reterr)
{
	*ret_id = NULL;
	sqlite3_stmt *st = meta_prepare(
		tx,
		blob_chain ? "SELECT id FROM records WHERE blob_chain_id = ? AND snapshotter = ? "
			     "AND deleted = 0 AND kind = 2 ORDER BY created_at, id LIMIT 1"
			   : "SELECT id FROM records WHERE chain_id = ? AND snapshotter = ? "
			     "AND deleted = 0 AND kind = 2 ORDER BY created_at, id LIMIT 1",
		reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, value);
	meta_bind_text(st, 2, snapshotter);
	int r = meta_step_row(tx, st, reterr, "look up %s '%s'",
	                      blob_chain ? "blob chain id" : "chain id", value);
	if (r <= 0)
		return r;
	bool oom = false;
	*ret_id = meta_dup_col(st, 0, &oom);
	sqlite3_reset(st);
	if (oom)
		return err_set(reterr, -ENOMEM, "look up chain id '%s': out of memory", value);
	return 1;
}

int meta_record_set_extracted_snapshot(meta_tx *tx, const char *snapshotter, const char *snapshot,
                                       cairn_error **reterr)
{
	return meta_run(tx,
	                "UPDATE records SET extracted = 1, gen = gen + 1 WHERE snapshotter = ? AND "
	                "snapshot = ? AND deleted = 0 AND extracted = 0",
	                "set extracted", reterr, 2, snapshotter, snapshot);
}
