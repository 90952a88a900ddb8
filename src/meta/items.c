/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "items.h"
#include "util.h"

int meta_item_exists(meta_tx *tx, const char *id, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx, "SELECT 1 FROM items WHERE id = ?", reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, id);
	int r = meta_step_row(tx, st, reterr, "look up item '%s'", id);
	sqlite3_reset(st);
	return r;
}

int meta_item_get(meta_tx *tx, const char *id, const char *key, char **ret_value,
                  cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(
		tx, "SELECT value FROM item_values WHERE item = ? AND key = ?", reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, id);
	meta_bind_text(st, 2, key);
	int r = meta_step_row(tx, st, reterr, "read '%s' of item '%s'", key, id);
	if (r == 0)
		*ret_value = NULL;
	if (r <= 0)
		return r;
	char *v = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	if (!v)
		return err_set(reterr, -ENOMEM, "read '%s' of item '%s': out of memory", key, id);
	*ret_value = v;
	return 1;
}

static int ensure_item(meta_tx *tx, const char *id, cairn_error **reterr)
{
	return meta_run(tx, "INSERT OR IGNORE INTO items(id) VALUES (?)", "create item", reterr, 1,
	                id);
}

int meta_item_set(meta_tx *tx, const char *id, const char *key, const char *value, const char *idx,
                  cairn_error **reterr)
{
	if (!value)
		return meta_run(tx, "DELETE FROM item_values WHERE item = ? AND key = ?",
		                "delete item value", reterr, 2, id, key);
	int r = ensure_item(tx, id, reterr);
	if (r < 0)
		return r;
	return meta_run(tx,
	                "INSERT OR REPLACE INTO item_values(item, key, value, idx) "
	                "VALUES (?, ?, ?, ?)",
	                "set item value", reterr, 4, id, key, value, idx && *idx ? idx : NULL);
}

struct item_walk {
	meta_item_fn fn;
	void *userdata;
};

/* A meta_row_fn calling the walk's function with column 0 of each row. */
static int id_row(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	struct item_walk *w = userdata;
	/* Copy each id before calling out: @fn may run other statements. */
	_cleanup_free_ char *id = strdup((const char *)sqlite3_column_text(st, 0));
	if (!id)
		return err_set(reterr, -ENOMEM, "list items: out of memory");
	return w->fn(id, w->userdata);
}

/* Runs @st (bound by the caller) and calls @fn with column 0 of each row. */
static int each_id(meta_tx *tx, sqlite3_stmt *st, meta_item_fn fn, void *userdata,
                   cairn_error **reterr)
{
	struct item_walk w = {fn, userdata};
	return meta_walk(tx, st, id_row, &w, reterr, "list items");
}

struct value_walk {
	meta_value_fn fn;
	void *userdata;
};

static int value_row(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	struct value_walk *w = userdata;
	return w->fn((const char *)sqlite3_column_text(st, 0),
	             (const char *)sqlite3_column_text(st, 1),
	             (const char *)sqlite3_column_text(st, 2), w->userdata);
}

int meta_item_values(meta_tx *tx, const char *id, meta_value_fn fn, void *userdata,
                     cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(
		tx, "SELECT key, value, idx FROM item_values WHERE item = ? ORDER BY key", reterr);
	if (!st)
		return -EIO;
	meta_bind_text(st, 1, id);
	struct value_walk w = {fn, userdata};
	int r = meta_walk(tx, st, value_row, &w, reterr, "read values of item '%s'", id);
	sqlite3_reset(st);
	return r;
}

int meta_item_all(meta_tx *tx, meta_item_fn fn, void *userdata, cairn_error **reterr)
{
	/* Each id is copied before @fn runs, so a fresh statement per walk keeps @fn free to
	 * use the statement cache. */
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx, "SELECT id FROM items ORDER BY id", &st, reterr,
	                          "list items");
	if (r < 0)
		return r;
	return each_id(tx, st, fn, userdata, reterr);
}

int meta_item_search(meta_tx *tx, const char *idx, meta_item_fn fn, void *userdata,
                     cairn_error **reterr)
{
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx,
	                          "SELECT DISTINCT item FROM item_values WHERE idx = ? "
	                          "ORDER BY item",
	                          &st, reterr, "search index '%s'", idx);
	if (r < 0)
		return r;
	meta_bind_text(st, 1, idx);
	return each_id(tx, st, fn, userdata, reterr);
}

int meta_item_clear(meta_tx *tx, const char *id, cairn_error **reterr)
{
	/* Values and external data go by ON DELETE CASCADE. */
	return meta_run(tx, "DELETE FROM items WHERE id = ?", "clear item", reterr, 1, id);
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
	meta_bind_text(st, 1, id);
	meta_bind_text(st, 2, key);
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
	meta_bind_text(st, 1, id);
	meta_bind_text(st, 2, key);
	int r = meta_step_row(tx, st, reterr, "read external data '%s' of item '%s'", key, id);
	if (r == 0)
		return err_set(reterr, -ENOENT, "external data '%s' of item '%s' not found", key,
		               id);
	if (r < 0)
		return r;
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
