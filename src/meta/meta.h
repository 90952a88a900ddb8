/* SPDX-License-Identifier: MIT */
/*
 * meta: the store's one SQLite database (ROOT/meta.db) and the only SQL in the tree.
 *
 * WAL mode, foreign keys on, a busy timeout, schema versioned with PRAGMA user_version and
 * migrated forward on open. A meta_db is one connection guarded by one mutex: a transaction
 * (meta_tx) holds the mutex from begin to end, so threads of one process never interleave
 * statements; other processes are serialised by SQLite's own locking (BEGIN IMMEDIATE for
 * writers). Functions named meta_<table>_* in the files of this folder run inside the caller's
 * transaction: they take a meta_tx and never begin one themselves.
 */
#pragma once

#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"

typedef struct meta_db meta_db;

#define META_SCHEMA_VERSION 4

/*
 * meta_open() - open or create the database at @path (an ordinary path: the store has already
 * confined it). Creates with mode 0600, sets the pragmas, migrates an older schema forward in one
 * transaction. It reads the header and schema, not every page (meta_check() does). Errors:
 * CAIRN_ECORRUPT when @path is not a SQLite database (message names @path; the file is left
 * alone, never recreated); CAIRN_ESCHEMA when user_version is newer than META_SCHEMA_VERSION;
 * -EACCES/-EROFS and others from SQLite's open.
 */
int meta_open(const char *path, meta_db **ret, cairn_error **reterr);

/* meta_check() - SQLite's quick_check of the whole file (reads every page: fsck's job, not
 * open's). Errors: CAIRN_ECORRUPT naming the path and SQLite's first finding; others from SQLite.
 * Locking: takes the db mutex. */
int meta_check(meta_db *db, cairn_error **reterr);

/* meta_close() - close; NULL-safe; returns NULL. No transaction may be open. */
meta_db *meta_close(meta_db *db);
DEFINE_TRIVIAL_CLEANUP_FUNC(meta_db *, meta_close)

/* meta_path() - the path given at open; borrowed until meta_close. */
const char *meta_path(const meta_db *db);

/*
 * A transaction guard. Declare with `_cleanup_(meta_tx_end) meta_tx tx = {0};`, begin it, do the
 * work, then meta_tx_commit(). Leaving scope without a commit rolls back.
 * Locking: meta_tx_begin takes the db mutex; commit/rollback/end release it.
 */
typedef struct meta_tx {
	meta_db *db;
	bool active;
	bool write;
	/* Set after begin: the commit leaves a due WAL checkpoint to meta_checkpoint(), for a
	 * caller that holds another lock across the commit (prune: the manager's). */
	bool defer_checkpoint;
} meta_tx;

/* meta_tx_begin() - BEGIN (read) or BEGIN IMMEDIATE (@write). Errors: CAIRN_ELOCKED when another
 * process holds the write lock past the busy timeout; others from SQLite. */
int meta_tx_begin(meta_db *db, meta_tx *tx, bool write, cairn_error **reterr);
/* meta_tx_commit() - COMMIT. On failure the transaction is rolled back. Once the WAL has grown
 * past 4,000 frames, a write commit then runs a passive checkpoint (SQLite's auto-checkpoint,
 * after the write lock is released; no other writer waits for it) unless @tx->defer_checkpoint. */
int meta_tx_commit(meta_tx *tx, cairn_error **reterr);
/* meta_checkpoint() - the checkpoint a deferring commit left, if one is due. No transaction of
 * this connection may be open. Locking: takes the db mutex. */
void meta_checkpoint(meta_db *db);
/* meta_tx_end() - roll back if still active. Safe on a zeroed or committed tx. */
void meta_tx_end(meta_tx *tx);

/* For the files of src/meta only: */

/* meta_sqlite() - the raw handle; only while a tx is active. */
sqlite3 *meta_sqlite(meta_tx *tx);

/*
 * meta_error() - translate SQLite's result @rc into a cairn error (the one boundary where SQLite
 * errors are translated), keeping SQLite's text: "<what>: <sqlite message>". SQLITE_BUSY/LOCKED
 * become CAIRN_ELOCKED, SQLITE_CORRUPT/NOTADB CAIRN_ECORRUPT, SQLITE_CONSTRAINT -EEXIST,
 * SQLITE_READONLY -EROFS, SQLITE_FULL -ENOSPC, SQLITE_CANTOPEN -EACCES or -ENOENT, else -EIO.
 */
int meta_error(meta_tx *tx, int rc, cairn_error **reterr, const char *fmt, ...) _printf_(4, 5);
/* meta_verror() - meta_error() with a va_list. */
int meta_verror(meta_tx *tx, int rc, cairn_error **reterr, const char *fmt, va_list ap)
	_printf_(4, 0);

/*
 * meta_prepare() - a cached prepared statement for @sql (the same string pointer is looked up
 * by value, so pass string literals). The statement is reset and its bindings cleared; it stays
 * owned by the db. Returns NULL with *@reterr set on failure.
 */
sqlite3_stmt *meta_prepare(meta_tx *tx, const char *sql, cairn_error **reterr);

/* meta_exec() - run @sql (no results). */
int meta_exec(meta_tx *tx, const char *sql, cairn_error **reterr);

/* meta_step_done() - sqlite3_step expecting SQLITE_DONE; translates errors naming @what. */
int meta_step_done(meta_tx *tx, sqlite3_stmt *st, const char *what, cairn_error **reterr);

/* meta_changes() - rows changed by the last statement. */
int64_t meta_changes(meta_tx *tx);

/* meta_now_ns() - wall-clock time in nanoseconds since the epoch, as stored in every *_at column.
 */
int64_t meta_now_ns(void);
