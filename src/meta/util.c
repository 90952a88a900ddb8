/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "util.h"

void meta_bind_text(sqlite3_stmt *st, int i, const char *text)
{
	if (text)
		sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

char *meta_dup_col(sqlite3_stmt *st, int col, bool *oom)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	if (!t)
		return NULL;
	char *s = strdup(t);
	if (!s)
		*oom = true;
	return s;
}

/* Binds @n parameters from @ap (int64_t with @ints, else text) and runs @sql to completion. */
static int run_va(meta_tx *tx, const char *sql, const char *what, cairn_error **reterr, bool ints,
                  int n, va_list ap)
{
	sqlite3_stmt *st = meta_prepare(tx, sql, reterr);
	if (!st)
		return -EIO;
	for (int i = 1; i <= n; i++)
		if (ints)
			sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
		else
			meta_bind_text(st, i, va_arg(ap, const char *));
	return meta_step_done(tx, st, what, reterr);
}

int meta_run(meta_tx *tx, const char *sql, const char *what, cairn_error **reterr, int n, ...)
{
	va_list ap;
	va_start(ap, n);
	int r = run_va(tx, sql, what, reterr, false, n, ap);
	va_end(ap);
	return r;
}

int meta_run_ints(meta_tx *tx, const char *sql, const char *what, cairn_error **reterr, int n, ...)
{
	va_list ap;
	va_start(ap, n);
	int r = run_va(tx, sql, what, reterr, true, n, ap);
	va_end(ap);
	return r;
}

/* Steps @st once: 1 row (not reset), 0 none, or the error translated naming @fmt. */
static int step_va(meta_tx *tx, sqlite3_stmt *st, cairn_error **reterr, const char *fmt, va_list ap)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	int r = rc == SQLITE_DONE ? 0 : meta_verror(tx, rc, reterr, fmt, ap);
	sqlite3_reset(st);
	return r;
}

int meta_step_row(meta_tx *tx, sqlite3_stmt *st, cairn_error **reterr, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = step_va(tx, st, reterr, fmt, ap);
	va_end(ap);
	return r;
}

int meta_get_one(meta_tx *tx, sqlite3_stmt *st, meta_read_fn read, void *ret, const char *what,
                 const char *name, cairn_error **reterr)
{
	int r = meta_step_row(tx, st, reterr, "read %s '%s'", what, name);
	if (r <= 0)
		return r;
	r = read(st, ret);
	sqlite3_reset(st);
	if (r < 0)
		return err_set(reterr, r, "read %s '%s': out of memory", what, name);
	return 1;
}

int meta_prepare_once(meta_tx *tx, const char *sql, sqlite3_stmt **ret, cairn_error **reterr,
                      const char *fmt, ...)
{
	int rc = sqlite3_prepare_v2(meta_sqlite(tx), sql, -1, ret, NULL);
	if (rc == SQLITE_OK)
		return 0;
	va_list ap;
	va_start(ap, fmt);
	int r = meta_verror(tx, rc, reterr, fmt, ap);
	va_end(ap);
	return r;
}

/* meta_walk() with a va_list. */
static int walk_va(meta_tx *tx, sqlite3_stmt *st, meta_row_fn row, void *userdata,
                   cairn_error **reterr, const char *fmt, va_list ap)
{
	int rc = SQLITE_DONE, r = 0;
	while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
		r = row(st, userdata, reterr);
	if (r >= 0 && rc != SQLITE_DONE)
		r = meta_verror(tx, rc, reterr, fmt, ap);
	return r < 0 ? r : 0;
}

int meta_walk(meta_tx *tx, sqlite3_stmt *st, meta_row_fn row, void *userdata, cairn_error **reterr,
              const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = walk_va(tx, st, row, userdata, reterr, fmt, ap);
	va_end(ap);
	return r;
}

struct kv_walk {
	meta_kv_fn fn;
	void *userdata;
};

static int kv_row(sqlite3_stmt *st, void *userdata, cairn_error **reterr)
{
	struct kv_walk *w = userdata;
	return w->fn((const char *)sqlite3_column_text(st, 0),
	             (const char *)sqlite3_column_text(st, 1), w->userdata);
}

int meta_walk_kv(meta_tx *tx, sqlite3_stmt *st, meta_kv_fn fn, void *userdata, cairn_error **reterr,
                 const char *fmt, ...)
{
	struct kv_walk w = {fn, userdata};
	va_list ap;
	va_start(ap, fmt);
	int r = walk_va(tx, st, kv_row, &w, reterr, fmt, ap);
	va_end(ap);
	return r;
}
