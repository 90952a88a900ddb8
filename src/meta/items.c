/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "items.h"

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
	return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

int meta_item_exists(meta_tx *tx, const char *id, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx, "SELECT 1 FROM items WHERE id = ?", reterr);
	if (!st)
		return -EIO;
	bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return meta_error(tx, rc, reterr, "look up item '%s'", id);
}

int meta_item_get(meta_tx *tx, const char *id, const char *key, char **ret_value,
                  cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(
		tx, "SELECT value FROM item_values WHERE item = ? AND key = ?", reterr);
	if (!st)
		return -EIO;
	bind_text(st, 1, id);
	bind_text(st, 2, key);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		*ret_value = NULL;
		return 0;
	}
	if (rc != SQLITE_ROW)
		return meta_error(tx, rc, reterr, "read '%s' of item '%s'", key, id);
	char *v = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	if (!v)
		return err_set(reterr, -ENOMEM, "read '%s' of item '%s': out of memory", key, id);
	*ret_value = v;
	return 1;
}

static int ensure_item(meta_tx *tx, const char *id, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx, "INSERT OR IGNORE INTO items(id) VALUES (?)", reterr);
	if (!st)
		return -EIO;
	bind_text(st, 1, id);
	return meta_step_done(tx, st, "create item", reterr);
}

int meta_item_set(meta_tx *tx, const char *id, const char *key, const char *value, const char *idx,
                  cairn_error **reterr)
{
	sqlite3_stmt *st;
	if (!value) {
		st = meta_prepare(tx, "DELETE FROM item_values WHERE item = ? AND key = ?", reterr);
		if (!st)
			return -EIO;
		bind_text(st, 1, id);
		bind_text(st, 2, key);
		return meta_step_done(tx, st, "delete item value", reterr);
	}
	int r = ensure_item(tx, id, reterr);
	if (r < 0)
		return r;
	st = meta_prepare(tx,
	                  "INSERT OR REPLACE INTO item_values(item, key, value, idx) "
	                  "VALUES (?, ?, ?, ?)",
	                  reterr);
	if (!st)
		return -EIO;
	bind_text(st, 1, id);
	bind_text(st, 2, key);
	bind_text(st, 3, value);
	bind_text(st, 4, idx && *idx ? idx : NULL);
	return meta_step_done(tx, st, "set item value", reterr);
}

/* Runs @st (bound by the caller) and calls @fn with column 0 of each row. */
static int each_id(meta_tx *tx, sqlite3_stmt *st, meta_item_fn fn, void *userdata,
                   cairn_error **reterr)
{
	int rc, r = 0;
	/* Copy each id before calling out: @fn may run other statements. */
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		_cleanup_free_ char *id = strdup((const char *)sqlite3_column_text(st, 0));
		if (!id) {
			sqlite3_reset(st);
			return err_set(reterr, -ENOMEM, "list items: out of memory");
		}
		r = fn(id, userdata);
		if (r < 0) {
			sqlite3_reset(st);
			return r;
		}
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return meta_error(tx, rc, reterr, "list items");
	return 0;
}

int meta_item_values(meta_tx *tx, const char *id, meta_value_fn fn, void *userdata,
                     cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(
		tx, "SELECT key, value, idx FROM item_values WHERE item = ? ORDER BY key", reterr);
	if (!st)
		return -EIO;
	bind_text(st, 1, id);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int r = fn((const char *)sqlite3_column_text(st, 0),
		           (const char *)sqlite3_column_text(st, 1),
		           (const char *)sqlite3_column_text(st, 2), userdata);
		if (r < 0) {
			sqlite3_reset(st);
			return r;
		}
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return meta_error(tx, rc, reterr, "read values of item '%s'", id);
	return 0;
}

int meta_item_all(meta_tx *tx, meta_item_fn fn, void *userdata, cairn_error **reterr)
{
	/* Each id is copied before @fn runs, so a fresh statement per walk keeps @fn free to
	 * use the statement cache. */
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(meta_sqlite(tx), "SELECT id FROM items ORDER BY id", -1, &st,
	                            NULL);
	if (rc != SQLITE_OK)
		return meta_error(tx, rc, reterr, "list items");
	int r = each_id(tx, st, fn, userdata, reterr);
	sqlite3_finalize(st);
	return r;
}

int meta_item_search(meta_tx *tx, const char *idx, meta_item_fn fn, void *userdata,
                     cairn_error **reterr)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(meta_sqlite(tx),
	                            "SELECT DISTINCT item FROM item_values WHERE idx = ? "
	                            "ORDER BY item",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return meta_error(tx, rc, reterr, "search index '%s'", idx);
	bind_text(st, 1, idx);
	int r = each_id(tx, st, fn, userdata, reterr);
	sqlite3_finalize(st);
	return r;
}

int meta_item_clear(meta_tx *tx, const char *id, cairn_error **reterr)
{
	/* Values and external data go by ON DELETE CASCADE. */
	sqlite3_stmt *st = meta_prepare(tx, "DELETE FROM items WHERE id = ?", reterr);
	if (!st)
		return -EIO;
	bind_text(st, 1, id);
	return meta_step_done(tx, st, "clear item", reterr);
}

int meta_item_set_external(meta_tx *tx, const char *id, const char *key, const void *data,
                           size_t len, cairn_error **reterr)
{
	int r = ensure_item(tx, id, reterr);
	if (r < 0)
		return r;
	sqlite3_stmt *st = meta_prepare(
		tx, "INSERT OR REPLACE INTO item_external(item, key, data) VALUES (?, ?, ?)",
		reterr);
	if (!st)
		return -EIO;
	bind_text(st, 1, id);
	bind_text(st, 2, key);
	sqlite3_bind_blob64(st, 3, len ? data : "", len, SQLITE_STATIC);
	return meta_step_done(tx, st, "set external data", reterr);
}

int meta_item_get_external(meta_tx *tx, const char *id, const char *key, void **ret_data,
                           size_t *ret_len, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(
		tx, "SELECT data FROM item_external WHERE item = ? AND key = ?", reterr);
	if (!st)
		return -EIO;
	bind_text(st, 1, id);
	bind_text(st, 2, key);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return err_set(reterr, -ENOENT, "external data '%s' of item '%s' not found", key,
		               id);
	}
	if (rc != SQLITE_ROW)
		return meta_error(tx, rc, reterr, "read external data '%s' of item '%s'", key, id);
	size_t len = (size_t)sqlite3_column_bytes(st, 0);
	char *buf = malloc(len + 1);
	if (buf) {
		if (len)
			memcpy(buf, sqlite3_column_blob(st, 0), len);
		buf[len] = '\0';
	}
	sqlite3_reset(st);
	if (!buf)
		return err_set(reterr, -ENOMEM, "read external data '%s': out of memory", key);
	*ret_data = buf;
	if (ret_len)
		*ret_len = len;
	return 0;
}
