/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
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

int meta_content_label_digests(meta_tx *tx, meta_kv_fn fn, void *userdata, cairn_error **reterr)
{
	/* The (digest, key) primary key hands the groups out in order without a sort. */
	return each_kv(tx,
	               "SELECT digest, CAST(COUNT(*) AS TEXT) FROM content_labels GROUP BY digest "
	               "ORDER BY digest",
	               NULL, fn, userdata, "list labelled blobs", reterr);
}

int meta_content_labelled(meta_tx *tx, const char *key, meta_kv_fn fn, void *userdata,
                          cairn_error **reterr)
{
	return each_kv(tx, "SELECT digest, value FROM content_labels WHERE key = ? ORDER BY digest",
	               key, fn, userdata, "read content labels by key", reterr);
}

struct prefixed {
	meta_label_fn fn;
	void *userdata;
};

static int prefixed_row(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	(void)reterr;
	struct prefixed *p = userdata;
	return p->fn((const char *)sqlite3_column_text(st, 0),
	             (const char *)sqlite3_column_text(st, 1),
	             (const char *)sqlite3_column_text(st, 2), p->userdata);
}

int meta_content_labels_prefixed(meta_tx *tx, const char *prefix, meta_label_fn fn, void *userdata,
                                 cairn_error **reterr)
{
	/* A range over the (key, digest) index: keys from @prefix up to @prefix with its last
	 * byte raised by one. */
	size_t n = strlen(prefix);
	if (n == 0 || n > META_LABEL_MAX || (unsigned char)prefix[n - 1] == 0xff)
		return err_set(reterr, -EINVAL, "bad label prefix '%.64s'", prefix);
	char end[META_LABEL_MAX + 1];
	memcpy(end, prefix, n + 1);
	end[n - 1]++;
	_cleanup_(meta_finalizep) sqlite3_stmt *st = NULL;
	int r = meta_prepare_once(tx,
	                          "SELECT digest, key, value FROM content_labels "
	                          "WHERE key >= ? AND key < ? ORDER BY digest",
	                          &st, reterr, "read content labels '%s*'", prefix);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, end, -1, SQLITE_STATIC);
	struct prefixed p = {fn, userdata};
	return meta_walk(tx, st, prefixed_row, &p, reterr, "read content labels '%s*'", prefix);
}

int meta_tag_set(meta_tx *tx, const char *name, const char *target, const char *manifest,
                 cairn_error **reterr)
{
	sqlite3_stmt *st = meta_prepare(tx,
	                                "INSERT OR REPLACE INTO tags(name, target, created_at, "
	                                "manifest) VALUES (?, ?, ?, ?)",
	                                reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, target, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, meta_now_ns());
	meta_bind_text(st, 4, manifest);
	return meta_step_done(tx, st, "set tag", reterr);
}

int meta_tag_get(meta_tx *tx, const char *name, char **ret_target, char **ret_manifest,
                 cairn_error **reterr)
{
	*ret_target = NULL;
	if (ret_manifest)
		*ret_manifest = NULL;
	sqlite3_stmt *st =
		meta_prepare(tx, "SELECT target, manifest FROM tags WHERE name = ?", reterr);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	int r = meta_step_row(tx, st, reterr, "read tag '%s'", name);
	if (r <= 0)
		return r;
	bool oom = false;
	*ret_target = meta_dup_col(st, 0, &oom);
	if (ret_manifest)
		*ret_manifest = meta_dup_col(st, 1, &oom);
	sqlite3_reset(st);
	if (oom) {
		free(*ret_target);
		*ret_target = NULL;
		if (ret_manifest) {
			free(*ret_manifest);
			*ret_manifest = NULL;
		}
		return err_set(reterr, -ENOMEM, "read tag '%s': out of memory", name);
	}
	return 1;
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

int meta_tag_manifests(meta_tx *tx, meta_kv_fn fn, void *userdata, cairn_error **reterr)
{
	return each_kv(tx,
	               "SELECT name, manifest FROM tags WHERE manifest IS NOT NULL ORDER BY name",
	               NULL, fn, userdata, "list tag manifests", reterr);
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
