/* SPDX-License-Identifier: MIT */
/*
 * Statement helpers for the files of src/meta only: binding, stepping, copying columns and
 * walking rows. Every function runs inside the caller's transaction and translates SQLite's
 * errors through meta_error().
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>

#include "labels.h"
#include "meta.h"

/* meta_bind_text() - bind @text (borrowed until the statement is reset) to parameter @i; NULL
 * binds SQL NULL. */
void meta_bind_text(sqlite3_stmt *st, int i, const char *text);

/* meta_dup_col() - a copy of text column @col (caller frees), NULL for SQL NULL; *@oom is set
 * when the copy fails. */
char *meta_dup_col(sqlite3_stmt *st, int col, bool *oom);

/*
 * meta_run() - the cached statement for @sql with @n text parameters bound (const char *, NULL
 * binds SQL NULL), run to completion. Errors: -EIO when it cannot be prepared, else those of
 * meta_step_done() naming @what.
 */
int meta_run(meta_tx *tx, const char *sql, const char *what, cairn_error **reterr, int n, ...);

/* meta_run_ints() - as meta_run() with @n int64_t parameters. */
int meta_run_ints(meta_tx *tx, const char *sql, const char *what, cairn_error **reterr, int n, ...);

/*
 * meta_step_row() - step the bound @st once: 1 when it yields a row (the caller reads it, then
 * resets @st), 0 when it yields none (@st reset). A failed step is translated naming the
 * printf-style @fmt, and @st reset.
 */
int meta_step_row(meta_tx *tx, sqlite3_stmt *st, cairn_error **reterr, const char *fmt, ...)
	_printf_(4, 5);

/* Fills the struct at @ret from the current row of @st: 0, or -ENOMEM leaving it zeroed. */
typedef int (*meta_read_fn)(sqlite3_stmt *st, void *ret);

/*
 * meta_get_one() - step the bound @st once and fill @ret with @read: 1 found, 0 absent. Errors
 * name "read <what> '<name>'"; -ENOMEM from @read adds ": out of memory". @st is left reset.
 */
int meta_get_one(meta_tx *tx, sqlite3_stmt *st, meta_read_fn read, void *ret, const char *what,
                 const char *name, cairn_error **reterr);

/*
 * meta_prepare_once() - an uncached statement for @sql into *@ret, for walks whose callbacks may
 * prepare other statements, even this one; the caller finalizes it (meta_finalizep). A failure
 * is translated naming the printf-style @fmt.
 */
int meta_prepare_once(meta_tx *tx, const char *sql, sqlite3_stmt **ret, cairn_error **reterr,
                      const char *fmt, ...) _printf_(5, 6);

static inline void meta_finalizep(sqlite3_stmt **st)
{
	sqlite3_finalize(*st);
}

/* Called by meta_walk() on each row; a negative return stops the walk and is returned. */
typedef int (*meta_row_fn)(sqlite3_stmt *st, void *userdata, cairn_error **reterr);

/*
 * meta_walk() - step the bound @st to its end, calling @row on each row until it returns a
 * negative value. A failed step is translated naming the printf-style @fmt. Returns 0 or a
 * negative value; the caller resets or finalizes @st.
 */
int meta_walk(meta_tx *tx, sqlite3_stmt *st, meta_row_fn row, void *userdata, cairn_error **reterr,
              const char *fmt, ...) _printf_(6, 7);

/* meta_walk_kv() - meta_walk() handing text columns 0 and 1 of each row to @fn. */
int meta_walk_kv(meta_tx *tx, sqlite3_stmt *st, meta_kv_fn fn, void *userdata, cairn_error **reterr,
                 const char *fmt, ...) _printf_(6, 7);
