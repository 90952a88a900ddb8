/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "labels.h"
#include "util.h"

int meta_label_check(const char *key, const char *value, cairn_error **reterr)
{
	size_t len = strlen(key) + (value ? strlen(value) : 0);
	if (!*key)
		return err_set(reterr, -EINVAL, "label key is empty");
	if (len > META_LABEL_MAX)
		return err_set(reterr, -EINVAL,
		               "label key and value of '%.64s' longer than %d bytes", key,
		               META_LABEL_MAX);
	return 0;
}

/* Runs @sql bound to @arg and hands each row's two text columns to @fn. */
static int each_kv(meta_tx *tx, const char *sql, const char *arg, meta_kv_fn fn, void *userdata,
                   const char *what, cairn_error **reterr)
{
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx, sql, &st, reterr, "%s", what);
	if (r < 0)
		return r;
	if (arg)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
	return meta_walk_kv(tx, st, fn, userdata, reterr, "%s", what);
}

/* Reads column 0 of the first row of @sql bound to @arg: 1 found, 0 absent. */
static int get_text(meta_tx *tx, const char *sql, const char *arg, char **ret, const char *what,
                    cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx, sql, reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
	*ret = NULL;
	int r = meta_step_row(tx, st, reterr, "%s '%s'", what, arg);
	if (r <= 0)
		return r;
	*ret = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	if (!*ret)
		return err_set(reterr, -ENOMEM, "%s '%s': out of memory", what, arg);
	return 1;
}

int meta_content_label_set(meta_tx *tx, const char *digest, const char *key, const char *value,
                           cairn_error **reterr)
{
	int r = meta_label_check(key, value, reterr);
	if (r < 0)
		return r;
	if (!value || !*value)
		return meta_run(tx, "DELETE FROM content_labels WHERE digest = ? AND key = ?",
		                "delete content label", reterr, 2, digest, key);
	return meta_run(
		tx, "INSERT OR REPLACE INTO content_labels(digest, key, value) VALUES (?, ?, ?)",
		"set content label", reterr, 3, digest, key, value);
}

int meta_content_labels(meta_tx *tx, const char *digest, meta_kv_fn fn, void *userdata,
                        cairn_error **reterr)
{
	return each_kv(tx, "SELECT key, value FROM content_labels WHERE digest = ? ORDER BY key",
	               digest, fn, userdata, "read content labels", reterr);
}

int meta_content_labels_clear(meta_tx *tx, const char *digest, cairn_error **reterr)
{
	return meta_run(tx, "DELETE FROM content_labels WHERE digest = ?", "clear content labels",
	                reterr, 1, digest);
}

int meta_tag_set(meta_tx *tx, const char *name, const char *target, cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(
		tx, "INSERT OR REPLACE INTO tags(name, target, created_at) VALUES (?, ?, ?)",
		reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, target, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, meta_now_ns());
	return meta_step_done(tx, st, "set tag", reterr);
}

int meta_tag_get(meta_tx *tx, const char *name, char **ret_target, cairn_error **reterr)
{
	return get_text(tx, "SELECT target FROM tags WHERE name = ?", name, ret_target, "read tag",
	                reterr);
}

int meta_tag_remove(meta_tx *tx, const char *name, cairn_error **reterr)
{
	int r = meta_run(tx, "DELETE FROM tags WHERE name = ?", "remove tag", reterr, 1, name);
	if (r < 0)
		return r;
	if (meta_changes(tx) == 0)
		return err_set(reterr, -ENOENT, "tag '%s' not found", name);
	return 0;
}

int meta_tags(meta_tx *tx, meta_kv_fn fn, void *userdata, cairn_error **reterr)
{
	return each_kv(tx, "SELECT name, target FROM tags ORDER BY name", NULL, fn, userdata,
	               "list tags", reterr);
}

int meta_info_get(meta_tx *tx, const char *key, char **ret_value, cairn_error **reterr)
{
	return get_text(tx, "SELECT value FROM store_info WHERE key = ?", key, ret_value,
	                "read store fact", reterr);
}

int meta_info_set(meta_tx *tx, const char *key, const char *value, cairn_error **reterr)
{
	return meta_run(tx, "INSERT OR REPLACE INTO store_info(key, value) VALUES (?, ?)",
	                "set store fact", reterr, 2, key, value);
}
