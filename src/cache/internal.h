/* SPDX-License-Identifier: MIT */
/*
 * The insides of the cache manager, shared by the files of src/cache.
 *
 * The database is the record of truth; memory holds only what is per process: the records that
 * are in use here (an `entry` per record with live refs or internal holds), their views and the
 * locks. An entry exists while handles + pins > 0 and is freed by entry_put() when both drop to
 * zero. Invariants (under the manager lock):
 *   - a mutable has at most one handle, and while it has one it has no committed partner;
 *   - while a lazy immutable has handles, its mutable has none;
 *   - the entries of a pair, when both exist, share one struct rec_lock.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "base/flight.h"
#include "cairn/cache.h"
#include "meta/records.h"
#include "snapshot/snapshotter.h"
#include "store/store.h"

#define CACHE_ID_MAX 64
#define CACHE_TABLE  256

/* A record lock, shared by the two halves of a lazy pair. */
struct rec_lock {
	pthread_mutex_t mu;
	unsigned refs; /* entries using it; under the manager lock */
};

/* A record in use in this process. */
struct entry {
	struct entry *next; /* hash chain */
	char id[CACHE_ID_MAX + 1];
	bool is_mutable;
	struct rec_lock *lock;
	/* under the manager lock: */
	unsigned handles;  /* live refs */
	unsigned triggers; /* live refs whose release counts a use */
	unsigned pins;     /* internal holds: a parent being used, a teardown in flight */
	bool leased;       /* the process lease holds the record (see cache_lease_hold) */
	/* under lock->mu (or the manager lock once handles is 0): */
	char *view; /* the shared read-only view snapshot, NULL when none */
	struct snap_mount *view_mounts;
	size_t n_view_mounts;
};

struct cairn_cache {
	cairn_store *store;   /* borrowed */
	snapshotter *snap;    /* borrowed from the store */
	meta_db *db;          /* borrowed from the store */
	const char *driver;   /* snap_driver_name() */
	pthread_mutex_t lock; /* the manager lock */
	int64_t lock_since;   /* lockstat: when the manager lock was taken */
	pthread_mutex_t prune_lock;
	struct entry *table[CACHE_TABLE];
	flight_group *flight;
	unsigned refs; /* 1 until closed, + 1 per allocated ref; under the manager lock */
	bool closed;
	int64_t pid, pid_start; /* this process, for the leases of views */
	/*
	 * The process lease: what this manager holds (records with an entry that ever had a
	 * handle or a pin), so that other processes' prune and gc leave it alone; made on the
	 * first hold, deleted by close, dead (and collected by gc) when the process is gone.
	 * Under the manager lock.
	 */
	char lease_id[64];
	bool lease_used;
	char **stale; /* records freed from the entry table whose resource is still recorded */
	size_t n_stale;
	/* Lazy blobs (blobs.c): the fetcher, its data, and how many blobs it gets at once. Set
	 * before the cache is shared, read without a lock. */
	cairn_fetch_fn fetch;
	void *fetch_userdata;
	void (*fetch_free)(void *userdata);
	unsigned fetch_jobs; /* 0: CACHE_FETCH_JOBS */
	/* This boot's id (unsynced.c), "" when unknown: then every extract syncs. Set at open. */
	char boot[40];
};

struct cairn_ref {
	cairn_cache *cache;
	struct entry *e; /* NULL once released or consumed */
	char id[CACHE_ID_MAX + 1];
	bool is_mutable;
	bool released; /* under the manager lock */
	bool consumed; /* a mutable ref that was committed */
	bool trigger;
};

/* Deferred work: what a call decided under the manager lock and does after dropping it. */
struct cache_work {
	char *view; /* a view to remove (snapshot and lease) */
	struct snap_mount *view_mounts;
	size_t n_view_mounts;
	char *remove[2]; /* tombstoned records to remove, in this order */
	size_t n_remove;
	struct entry *unpin[3]; /* entries pinned until the work is done */
	size_t n_unpin;
};

/* ---- manager.c ---- */

/* cache_new_id() - a fresh random record id (25 of [0-9a-z]) into @buf. */
void cache_new_id(char buf[CAIRN_RECORD_ID_LEN + 1]);

/* cache_id_valid() - whether @id may name a record: 1-64 bytes of [A-Za-z0-9_.-]. */
bool cache_id_valid(const char *id);

/* cache_check_open() - -EBADF naming the store once @c was closed. */
int cache_check_open(cairn_cache *c, cairn_error **reterr);

/* cache_enter() - the checks a public entry point starts with: -EINVAL "<op>: invalid
 * arguments" when @invalid, else cache_check_open(). */
int cache_enter(cairn_cache *c, bool invalid, const char *op, cairn_error **reterr);

/* cache_ref_check() - -EINVAL for a ref that cannot be used (released, committed), -EBADF after
 * close. @what names the operation. */
int cache_ref_check(const cairn_ref *ref, const char *what, cairn_error **reterr);

/* The manager lock. */
void cache_lock(cairn_cache *c);
void cache_unlock(cairn_cache *c);

/* entry_find() - the entry of @id, or NULL. Manager lock held. */
struct entry *entry_find(cairn_cache *c, const char *id);

/* entry_acquire() - the entry of @id, made if missing (sharing the lock of @partner's entry when
 * that exists). NULL on OOM. Manager lock held; the caller adds a handle or a pin at once. */
struct entry *entry_acquire(cairn_cache *c, const char *id, bool is_mutable, const char *partner);

/*
 * cache_lease_hold() - make the process lease of @c hold record @e->id (creating the lease when
 * it is missing), inside write transaction @tx, and drop the resources of records no longer held
 * (c->stale). A no-op for an entry already leased. Manager lock held. Whoever takes the first hold
 * on a record calls it in the same transaction that checked the record is live, so that a prune
 * elsewhere either saw the hold or removed the record before the check.
 */
int cache_lease_hold(cairn_cache *c, meta_tx *tx, struct entry *e, cairn_error **reterr);

/* cache_lease_drop() - @e (no longer held) leaves the lease, inside write transaction @tx. */
int cache_lease_drop(cairn_cache *c, meta_tx *tx, struct entry *e, cairn_error **reterr);

/* cache_held_elsewhere() - 1 when a live lease other than this manager's holds record @id
 * (another process's refs), 0 when not. */
int cache_held_elsewhere(cairn_cache *c, meta_tx *tx, const char *id, cairn_error **reterr);

/* cache_needs_lease() - whether a first hold on @id here must write the lease. */
bool cache_needs_lease(cairn_cache *c, const char *id);

/* entry_put() - free @e if nothing holds it any longer. Manager lock held. */
void entry_put(cairn_cache *c, struct entry *e);

/* entry_busy() - whether @e (may be NULL) holds its record. */
static inline bool entry_busy(const struct entry *e)
{
	return e && (e->handles || e->pins);
}

/* cache_ref_new() - a new ref on @e (handles + 1). NULL on OOM. Manager lock held. */
cairn_ref *cache_ref_new(cairn_cache *c, struct entry *e, bool is_mutable, bool trigger);

/* cache_ref_drop_locked() - undo cache_ref_new() (a call that failed later). Manager lock held. */
void cache_ref_drop_locked(cairn_cache *c, cairn_ref *ref);

/* cache_unref() - drop one reference to @c (the opener's or a ref's); the last one frees it. */
void cache_unref(cairn_cache *c);

/* cache_load_once() - cache_load() in a read transaction of its own. */
int cache_load_once(cairn_cache *c, const char *id, struct meta_record *ret, cairn_error **reterr);

/* cache_load() - the live row @id of this snapshotter into *@ret; -ENOENT "record 'ID' not
 * found" for a missing, tombstoned or foreign one. */
int cache_load(cairn_cache *c, meta_tx *tx, const char *id, struct meta_record *ret,
               cairn_error **reterr);

/* cache_first_mount() - 1 and the first mount target of @id into *@ret_target (caller frees)
 * when the record has persistent mounts, 0 when not. */
int cache_first_mount(meta_tx *tx, const char *id, char **ret_target, cairn_error **reterr);

/* cache_proc_alive() - whether process @pid started at @start (clock ticks) still runs. */
bool cache_proc_alive(int64_t pid, int64_t start);

/* cache_repair() - the open-time repair (see cairn_cache_open()). */
int cache_repair(cairn_cache *c, cairn_error **reterr);

/*
 * Unsynced extracts (unsynced.c). An overlay extract commits its snapshot without waiting for
 * its files to reach the disk; the snapshot is marked with this boot's id first. A process
 * that dies loses nothing (the files are in the page cache); a kernel that dies loses the boot
 * id with them. cache_unsynced_settle(), at open, extracts the snapshots marked by an earlier
 * boot again from their blobs (parents first, in place, under a recovery lock), and syncs and
 * forgets this boot's marks once they are CACHE_UNSYNCED_SETTLE_NS old.
 */
#define CACHE_UNSYNCED_SETTLE_NS (30 * 1000000000LL)

/* cache_boot_id() - this boot's id into @buf ($CAIRN_BOOT_ID when set, for tests; else the
 * kernel's), "" when it cannot be read. */
void cache_boot_id(char buf[40]);

/* cache_unsynced_mark() - mark @snapshot as extracted by this boot and not yet synced, in a
 * write transaction of its own. */
int cache_unsynced_mark(cairn_cache *c, const char *snapshot, cairn_error **reterr);

/* cache_unsynced_settle() - the open-time step above. A snapshot that cannot be extracted
 * again is removed and its records made lazy, or, when it has children, kept and its mark
 * kept (warned about; the next open tries again). Errors: the database's, syncfs()'s. */
int cache_unsynced_settle(cairn_cache *c, cairn_error **reterr);

/* cache_reextract() - empty committed snapshot @snapshot and apply the blob of the record
 * holding it again (blobs.c), unsynced: 1 done, 0 when no such snapshot or record is left. */
int cache_reextract(cairn_cache *c, const char *snapshot, cairn_error **reterr);

/* ---- refs.c ---- */

/*
 * cache_finalize_locked() - make lazy immutable @id own its data (no-op when not lazy).
 * The record lock of @id held, the manager lock not.
 */
int cache_finalize_locked(cairn_cache *c, const char *id, cairn_error **reterr);

/*
 * cache_unheld_locked() - the record of live row @row just lost its last hold (ref, pin or
 * persistent mount): apply the cache policy, tombstoning what must go and pinning it in @w.
 * Manager lock held, inside the write transaction @tx.
 */
int cache_unheld_locked(cairn_cache *c, meta_tx *tx, const struct meta_record *row,
                        struct cache_work *w, cairn_error **reterr);

/* cache_detach_view() - move the view of @e (if any) into @w for removal, pinning @e until the
 * work is done. Manager lock held; @e has no handles left. */
void cache_detach_view(struct entry *e, struct cache_work *w);

/* cache_work_run() - do @w without the manager lock (takes it at the end to unpin). Returns the
 * first error; everything is attempted. */
int cache_work_run(cairn_cache *c, struct cache_work *w, cairn_error **reterr);

/*
 * cache_remove_records() - remove the @n tombstoned records @ids in order (children and lazy
 * immutables before what they point at): their snapshots (when no other live record holds them),
 * then their rows in one transaction. A snapshot that turns out to have children (someone
 * started using it) aborts: the tombstones are cleared and -EBUSY names the record.
 * No manager lock held.
 */
int cache_remove_records(cairn_cache *c, char *const *ids, size_t n, cairn_error **reterr);

/* cache_remove_snapshots() - the first half of cache_remove_records(): the snapshots only. On
 * failure the records whose snapshots went are deleted, the others untombstoned. */
int cache_remove_snapshots(cairn_cache *c, char *const *ids, size_t n, cairn_error **reterr);

/* cache_delete_rows() - the second half: delete the rows of the @n tombstoned records @ids, in
 * order, in one transaction. */
int cache_delete_rows(cairn_cache *c, char *const *ids, size_t n, cairn_error **reterr);

/* cache_untombstone() - clear the tombstones of @ids (a removal that will not go on). */
void cache_untombstone(cairn_cache *c, char *const *ids, size_t n);

/* cache_remove_view() - remove view snapshot @key and its lease (missing ones are fine). */
int cache_remove_view(cairn_cache *c, const char *key, cairn_error **reterr);

/* ---- usage.c ---- */

/* cache_size() - the size of record @id (see cairn_ref_size()); single flight per id. */
int cache_size(cairn_cache *c, const char *id, int64_t *ret, cairn_error **reterr);

/* cache_record_info_fill() - fill @info from @row and the given facts; -ENOMEM. */
int cache_record_info_fill(cairn_record_info *info, const struct meta_record *row, bool in_use,
                           bool shared);

/* ---- blobs.c ---- */

/*
 * cache_extract_id() - cairn_ref_extract() for record @id, which the caller holds (a ref or a
 * pin); a no-op when it and its ancestors are extracted. No lock held.
 */
int cache_extract_id(cairn_cache *c, const char *id, cairn_progress_fn fn, void *userdata,
                     cairn_error **reterr);

/* How many lazy blobs are fetched at once unless cache_set_fetch_jobs() said otherwise. */
#define CACHE_FETCH_JOBS 4

/* The content labels that make a blob lazy: where it comes from and its size (decimal). */
#define CACHE_LABEL_SOURCE "cairn.lazy.source"
#define CACHE_LABEL_SIZE   "cairn.lazy.size"

/* cache_lazy_labels() - the source and recorded size labelled on lazy blob @blob (*@ret_source
 * NULL and *@ret_size 0 when it has none); *@ret_source is the caller's. Errors: meta's; -ENOMEM
 * naming the blob. Locking: inside @tx. */
int cache_lazy_labels(meta_tx *tx, const char *blob, char **ret_source, int64_t *ret_size,
                      cairn_error **reterr);

/* cache_set_fetch_jobs() - fetch at most @jobs (0: CACHE_FETCH_JOBS) lazy blobs at once. Locking:
 * as cairn_cache_set_fetcher(). */
void cache_set_fetch_jobs(cairn_cache *c, unsigned jobs);

/* cache_fetcher_free() - drop the fetcher (cairn_cache_close()). */
void cache_fetcher_free(cairn_cache *c);
