/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/lockstat.h"
#include "meta.h"
#include "schema.h"

#define STMT_CACHE      64
#define BUSY_TIMEOUT_MS 10000
/* WAL frames (pages) after which a commit checkpoints. SQLite's default is 1,000; a prune of
 * 10,000 records rewrites the same index pages in every batch, and a checkpoint writes each page
 * once however often the WAL holds it: 4,000 (a WAL of up to 16 MiB) takes about a quarter off
 * prune. */
#define CHECKPOINT_FRAMES 4000

struct stmt_slot {
	const char *sql;
	sqlite3_stmt *stmt;
};

struct meta_db {
	sqlite3 *db;
	char *path;
	pthread_mutex_t lock;
	struct stmt_slot stmts[STMT_CACHE];
	size_t n_stmts;
	int64_t write_since; /* lockstat: when the open write transaction began */
	int wal_frames;      /* frames in the WAL after the last commit (the WAL hook) */
};

int64_t meta_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int code_of(int rc, int sys_errno)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return CAIRN_ELOCKED;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return CAIRN_ECORRUPT;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return sys_errno ? -sys_errno : -EACCES;
	case SQLITE_IOERR:
		return sys_errno ? -sys_errno : -EIO;
	}
	return -EIO;
}

static int verror(sqlite3 *db, int rc, cairn_error **reterr, const char *fmt, va_list ap)
{
	int code = code_of(rc, db ? sqlite3_system_errno(db) : 0);
	_cleanup_free_ char *what = NULL;
	if (vasprintf(&what, fmt, ap) < 0)
		what = NULL;
	const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
	return err_set(reterr, code, "%s: %s", what ? what : "database", msg);
}

int meta_verror(meta_tx *tx, int rc, cairn_error **reterr, const char *fmt, va_list ap)
{
	return verror(tx && tx->db ? tx->db->db : NULL, rc, reterr, fmt, ap);
}

int meta_error(meta_tx *tx, int rc, cairn_error **reterr, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int code = meta_verror(tx, rc, reterr, fmt, ap);
	va_end(ap);
	return code;
}

static int db_error(meta_db *db, int rc, cairn_error **reterr, const char *fmt, ...) _printf_(4, 5);
static int db_error(meta_db *db, int rc, cairn_error **reterr, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int code = verror(db->db, rc, reterr, fmt, ap);
	va_end(ap);
	return code;
}

const char *meta_path(const meta_db *db)
{
	return db->path;
}

sqlite3 *meta_sqlite(meta_tx *tx)
{
	return tx->db->db;
}

int64_t meta_changes(meta_tx *tx)
{
	return sqlite3_changes64(tx->db->db);
}

sqlite3_stmt *meta_prepare(meta_tx *tx, const char *sql, cairn_error **reterr)
{
	meta_db *db = tx->db;
	for (size_t i = 0; i < db->n_stmts; i++)
		if (db->stmts[i].sql == sql || strcmp(db->stmts[i].sql, sql) == 0) {
			sqlite3_stmt *st = db->stmts[i].stmt;
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			return st;
		}
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v3(db->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
	if (rc != SQLITE_OK) {
		db_error(db, rc, reterr, "prepare statement in '%s'", db->path);
		return NULL;
	}
	if (db->n_stmts == STMT_CACHE) {
		/* Full: evict the oldest slot. Callers use a statement only until their next
		 * meta_prepare, so evicting is safe. */
		sqlite3_finalize(db->stmts[0].stmt);
		memmove(db->stmts, db->stmts + 1, (STMT_CACHE - 1) * sizeof(db->stmts[0]));
		db->n_stmts--;
	}
	db->stmts[db->n_stmts++] = (struct stmt_slot){sql, st};
	return st;
}

int meta_exec(meta_tx *tx, const char *sql, cairn_error **reterr)
{
	int rc = sqlite3_exec(tx->db->db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return meta_error(tx, rc, reterr, "'%s'", tx->db->path);
	return 0;
}

int meta_step_done(meta_tx *tx, sqlite3_stmt *st, const char *what, cairn_error **reterr)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
		sqlite3_reset(st);
		return 0;
	}
	int code = meta_error(tx, rc, reterr, "%s in '%s'", what, tx->db->path);
	sqlite3_reset(st);
	return code;
}

static int db_exec(meta_db *db, const char *sql, cairn_error **reterr)
{
	int rc = sqlite3_exec(db->db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return db_error(db, rc, reterr, "'%s'", db->path);
	return 0;
}

int meta_tx_begin(meta_db *db, meta_tx *tx, bool write, cairn_error **reterr)
{
	pthread_mutex_lock(&db->lock);
	int r = db_exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN", reterr);
	if (r < 0) {
		pthread_mutex_unlock(&db->lock);
		return err_prefix(reterr, "begin transaction");
	}
	*tx = (meta_tx){.db = db, .active = true, .write = write};
	if (write)
		db->write_since = lockstat_start();
	return 0;
}

/*
 * The WAL hook: remembers the WAL's size. SQLite calls it once a commit is durable and the write
 * lock released; checkpoint() then does what SQLite's own auto-checkpoint would, but after the
 * write transaction's end is recorded, so that lockstat's write holds are what other writers
 * wait for.
 */
static int wal_hook(void *userdata, sqlite3 *handle, const char *name, int frames)
{
	meta_db *db = userdata;
	db->wal_frames = frames;
	return SQLITE_OK;
}

/* A passive checkpoint once the WAL has grown past CHECKPOINT_FRAMES (db mutex held). It takes
 * no write lock: writers in other processes go on; a failure is left to the next commit. */
static void checkpoint(meta_db *db)
{
	if (db->wal_frames < CHECKPOINT_FRAMES)
		return;
	int64_t since = lockstat_start();
	sqlite3_wal_checkpoint_v2(db->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	db->wal_frames = 0;
	lockstat_end(LOCKSTAT_DB_CHECKPOINT, since);
}

int meta_tx_commit(meta_tx *tx, cairn_error **reterr)
{
	if (!tx->active)
		return err_set(reterr, -EINVAL, "commit: no transaction is open");
	int r = db_exec(tx->db, "COMMIT", reterr);
	if (r < 0) {
		meta_tx_end(tx);
		return err_prefix(reterr, "commit transaction");
	}
	tx->active = false;
	if (tx->write) {
		lockstat_end(LOCKSTAT_DB_WRITE, tx->db->write_since);
		if (!tx->defer_checkpoint)
			checkpoint(tx->db);
	}
	pthread_mutex_unlock(&tx->db->lock);
	return 0;
}

void meta_checkpoint(meta_db *db)
{
	pthread_mutex_lock(&db->lock);
	checkpoint(db);
	pthread_mutex_unlock(&db->lock);
}

void meta_tx_end(meta_tx *tx)
{
	if (!tx->db || !tx->active)
		return;
	/* A failed COMMIT may already have rolled back; ROLLBACK then fails harmlessly. */
	if (!sqlite3_get_autocommit(tx->db->db))
		sqlite3_exec(tx->db->db, "ROLLBACK", NULL, NULL, NULL);
	tx->active = false;
	if (tx->write)
		lockstat_end(LOCKSTAT_DB_WRITE, tx->db->write_since);
	pthread_mutex_unlock(&tx->db->lock);
}

static int user_version(meta_db *db, int *ret, cairn_error **reterr)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		*ret = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return db_error(db, rc, reterr, "read schema version of '%s'", db->path);
	return 0;
}

/* Runs every migration from the stored version up to META_SCHEMA_VERSION in one transaction. */
static int migrate(meta_db *db, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(db, &tx, true, reterr);
	if (r < 0)
		return r;
	int version = 0;
	r = user_version(db, &version, reterr);
	if (r < 0)
		return r;
	if (version > META_SCHEMA_VERSION)
		return err_set(reterr, CAIRN_ESCHEMA,
		               "'%s' has schema version %d; this cairn knows up to %d", db->path,
		               version, META_SCHEMA_VERSION);
	for (int v = version; v < META_SCHEMA_VERSION; v++) {
		r = db_exec(db, meta_migrations[v], reterr);
		if (r < 0)
			return err_prefix(reterr, "migrate schema %d -> %d", v, v + 1);
	}
	if (version != META_SCHEMA_VERSION) {
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", META_SCHEMA_VERSION);
		r = db_exec(db, sql, reterr);
		if (r < 0)
			return r;
	}
	return meta_tx_commit(&tx, reterr);
}

/*
 * Whether the file is a database: reading the schema reads its header and schema pages, so a file
 * that is not a database fails here (reported, never overwritten). The whole-file check is
 * meta_check(), which fsck runs: at 10,000 records it reads 10 MB, most of an open's budget, and
 * damage elsewhere shows as SQLITE_CORRUPT (CAIRN_ECORRUPT) on the first read that meets it.
 */
static int check_header(meta_db *db, cairn_error **reterr)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db->db, "SELECT count(*) FROM sqlite_schema", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return db_error(db, rc, reterr, "check '%s'", db->path);
	return 0;
}

int meta_check(meta_db *db, cairn_error **reterr)
{
	pthread_mutex_lock(&db->lock);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db->db, "PRAGMA quick_check", -1, &st, NULL);
	const char *res = NULL;
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		res = (const char *)sqlite3_column_text(st, 0);
	int r = 0;
	if (rc != SQLITE_ROW)
		r = db_error(db, rc, reterr, "check '%s'", db->path);
	else if (!res || strcmp(res, "ok") != 0)
		r = err_set(reterr, CAIRN_ECORRUPT, "'%s' is corrupt: %s", db->path,
		            res ? res : "quick_check failed");
	sqlite3_finalize(st);
	pthread_mutex_unlock(&db->lock);
	return r;
}

int meta_open(const char *path, meta_db **ret, cairn_error **reterr)
{
	meta_db *db = calloc(1, sizeof(*db));
	if (!db || !(db->path = strdup(path))) {
		free(db);
		return err_set(reterr, -ENOMEM, "open '%s': out of memory", path);
	}
	pthread_mutex_init(&db->lock, NULL);
	_cleanup_(meta_closep) meta_db *guard = db;

	/* Create the file ourselves so that its mode is 0600 whatever the umask. */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return err_errno(reterr, -errno, "open '%s'", path);
	close(fd);
	int rc = sqlite3_open_v2(
		path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW,
		NULL);
	if (rc != SQLITE_OK)
		return db_error(db, rc, reterr, "open '%s'", path);
	sqlite3_extended_result_codes(db->db, 1);
	sqlite3_busy_timeout(db->db, BUSY_TIMEOUT_MS);
	/* Replaces SQLite's auto-checkpoint hook: meta_tx_commit() checkpoints (see wal_hook()). */
	sqlite3_wal_hook(db->db, wal_hook, db);
	int r = check_header(db, reterr);
	if (r < 0)
		return r;
	r = db_exec(db,
	            "PRAGMA journal_mode = WAL;"
	            "PRAGMA synchronous = FULL;"
	            /* up to 32 MiB of pages: a scan of 10,000 records (10 MB) stays in memory */
	            "PRAGMA cache_size = -32768;"
	            /* Debian's SQLite zeroes every freed page (SECURE_DELETE): each freed page
	             * written to the WAL once more. FAST zeroes deleted cells only in pages written
	             * anyway; freed pages keep old record metadata (ids, digests) until reused, in
	             * a file only the owner reads. Halves what a prune writes. */
	            "PRAGMA secure_delete = FAST;"
	            "PRAGMA foreign_keys = ON;",
	            reterr);
	if (r < 0)
		return err_prefix(reterr, "configure '%s'", path);
	r = migrate(db, reterr);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(guard);
	return 0;
}

meta_db *meta_close(meta_db *db)
{
	if (!db)
		return NULL;
	for (size_t i = 0; i < db->n_stmts; i++)
		sqlite3_finalize(db->stmts[i].stmt);
	if (db->db)
		sqlite3_close_v2(db->db);
	pthread_mutex_destroy(&db->lock);
	free(db->path);
	free(db);
	return NULL;
}
