/* SPDX-License-Identifier: MIT */
/*
 * Cache records (spec/buildkit-cache.md §3) in the table `records`, persistent mounts in
 * `mounts`, and the temporary leases that hold read-only views (rows of `leases`).
 *
 * A record row is the whole persistent state of a BuildKit cache record: what BuildKit keeps as
 * metadata keys (§3.1) is one column each here. A lazily committed pair (§7) is an immutable row
 * whose equal_mutable names the mutable row; the mutable's partner is derived from that column,
 * so the pair can never disagree with itself. Foreign keys keep the parent of a record, the
 * mutable of a pair and the record of a mount from being deleted while something points at them.
 *
 * Holding: every row whose `deleted` is 0 holds the snapshot (snapshotter, snapshot) and the blob
 * it names, and every `mounts` row holds its view snapshot: gc treats them as roots. A row with
 * `deleted` 1 is a tombstone: the record is being removed and holds nothing any longer; whoever
 * opens the store next finishes the removal.
 *
 * All functions run inside the caller's transaction (writes need a write tx) and validate nothing
 * beyond what SQL enforces: the cache manager (src/cache) checks states. Strings in results are
 * owned by the result.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "labels.h"
#include "meta.h"

/* Values of records.kind (stored on disk). */
enum {
	META_RECORD_MUTABLE = 1,
	META_RECORD_IMMUTABLE = 2,
};

struct meta_record {
	char *id;
	char *snapshotter;     /* the snapshotter holding its data: "overlay", "native" */
	int kind;              /* META_RECORD_* */
	char *parent;          /* NULL: none */
	char *equal_mutable;   /* on a lazily committed immutable: its mutable (holds the data) */
	char *equal_immutable; /* on that mutable: the immutable (derived, read only) */
	char *snapshot;        /* snapshot key or name of its data; NULL on a lazy immutable */
	char *description;     /* never NULL */
	char *record_type;     /* never NULL; "" means regular */
	char *layer_type;      /* never NULL */
	bool retain;
	bool deleted;
	bool extracted;     /* false: only the blob is present, the snapshot is not made yet */
	int64_t created_at; /* ns since the epoch */
	int64_t last_used;  /* ns since the epoch; 0: never used */
	int64_t usage_count;
	int64_t gen;  /* bumped whenever the content may have changed */
	int64_t size; /* bytes, recorded at generation gen; -1 unknown or stale */
	char *blob, *diff_id, *media_type, *chain_id, *blob_chain_id; /* NULL when unset */
};

/* meta_record_clear() - free the strings of @r and zero it. */
void meta_record_clear(struct meta_record *r);

/* Called once per row, @r borrowed for the call; a negative return stops the walk and is returned.
 * The callback may run other queries in the same transaction. */
typedef int (*meta_record_fn)(const struct meta_record *r, void *userdata);

/* meta_record_get() - row @id (tombstones included): 1 and *@ret filled (clear it), 0 when
 * absent (*@ret zeroed). */
int meta_record_get(meta_tx *tx, const char *id, struct meta_record *ret, cairn_error **reterr);

/*
 * meta_record_insert() - add @r as it is (equal_immutable, gen and size are ignored: a new row
 * has generation 0 and no size). Errors: -EEXIST naming the id when taken, or when the parent or
 * equal_mutable it names does not exist (the foreign key); others from SQLite.
 */
int meta_record_insert(meta_tx *tx, const struct meta_record *r, cairn_error **reterr);

/* meta_record_list() - every row of @snapshotter (tombstones included) in id order. */
int meta_record_list(meta_tx *tx, const char *snapshotter, meta_record_fn fn, void *userdata,
                     cairn_error **reterr);

/* meta_record_list_take() - as meta_record_list(), but @fn owns *@r: it may keep the strings
 * (zeroing the fields it took); what it leaves is freed when it returns. Spares a listing of
 * 10,000 rows a copy of each string. */
typedef int (*meta_record_take_fn)(struct meta_record *r, void *userdata);
int meta_record_list_take(meta_tx *tx, const char *snapshotter, meta_record_take_fn fn,
                          void *userdata, cairn_error **reterr);

/* meta_record_list_unsettled() - as meta_record_list(), only the rows that may own files or are
 * tombstones: mutables, lazy halves of pairs, extracted records, tombstones. A lazy record (not
 * extracted, no pair) owns nothing on disk, so nothing of it can be half made or half removed. */
int meta_record_list_unsettled(meta_tx *tx, const char *snapshotter, meta_record_fn fn,
                               void *userdata, cairn_error **reterr);

/*
 * meta_record_prefix() - ids of live rows of @snapshotter starting with @prefix, in id order, at
 * most @max of them, into *@ret_ids (caller frees each and the array) and *@ret_n.
 */
int meta_record_prefix(meta_tx *tx, const char *snapshotter, const char *prefix, size_t max,
                       char ***ret_ids, size_t *ret_n, cairn_error **reterr);

/* meta_record_children() - ids of the live rows whose parent is @id, into *@ret_ids (caller
 * frees each and the array) and *@ret_n. */
int meta_record_children(meta_tx *tx, const char *id, char ***ret_ids, size_t *ret_n,
                         cairn_error **reterr);

/* meta_record_snapshot_users() - how many live rows of @snapshotter other than @except (may be
 * NULL) hold snapshot @snapshot. */
int meta_record_snapshot_users(meta_tx *tx, const char *snapshotter, const char *snapshot,
                               const char *except, cairn_error **reterr);

/* What may keep a row from being removed, as meta_record_removable() finds it. */
struct meta_record_hold {
	bool deleted; /* a tombstone already */
	int64_t gen, last_used;
	bool children; /* live rows name it as their parent */
	bool partner;  /* a live lazy immutable shares its data */
	bool mounted;  /* a persistent mount holds it */
	bool tagged;   /* a tag names it (only when asked) */
	bool leased;   /* a lease other than the caller's holds it (live or not: judge it) */
	bool on_disk;  /* it may own files: a mutable, a lazy half of a pair, or extracted */
};

/* meta_record_removable() - 1 and *@ret filled for row @id, 0 when there is no such row. @tags:
 * whether to look for tags; @own_lease (may be NULL): a lease whose holds do not count. One
 * indexed query (prune checks each victim in the transaction that tombstones it). */
int meta_record_removable(meta_tx *tx, const char *id, const char *own_lease, bool tags,
                          struct meta_record_hold *ret, cairn_error **reterr);

/* meta_record_finalize() - the lazy immutable @id now owns its data in snapshot @id: clear
 * equal_mutable, set snapshot = @id, bump the generation. -ENOENT when absent. */
int meta_record_finalize(meta_tx *tx, const char *id, cairn_error **reterr);

/* meta_record_set_deleted() - write (or clear) the tombstone of @id. -ENOENT when absent. */
int meta_record_set_deleted(meta_tx *tx, const char *id, bool deleted, cairn_error **reterr);

/*
 * meta_record_delete() - delete row @id and every tag pointing at it. A missing row is success
 * (removal is idempotent: a crashed remover's work may be finished twice). Errors: -EEXIST
 * (SQLite's constraint text) while a child row, a pair partner or a mount points at it.
 */
int meta_record_delete(meta_tx *tx, const char *id, cairn_error **reterr);

/* meta_record_add_use() - usage_count + 1, last_used = @now. */
int meta_record_add_use(meta_tx *tx, const char *id, int64_t now, cairn_error **reterr);

/* meta_record_bump_gen() - a new generation: the recorded size no longer counts. */
int meta_record_bump_gen(meta_tx *tx, const char *id, cairn_error **reterr);

/* meta_record_set_size() - record @size for generation @gen; a row that moved on to another
 * generation (or vanished) is left alone. Returns 1 when stored, 0 when not. */
int meta_record_set_size(meta_tx *tx, const char *id, int64_t gen, int64_t size,
                         cairn_error **reterr);

/* meta_record_set_retain() / meta_record_set_type() / meta_record_set_extracted() - one column.
 * -ENOENT when absent. set_extracted bumps the generation too. */
int meta_record_set_retain(meta_tx *tx, const char *id, bool retain, cairn_error **reterr);
int meta_record_set_type(meta_tx *tx, const char *id, const char *type, cairn_error **reterr);
/* meta_record_set_description() - NULL writes "" (a cache import restores descriptions). */
int meta_record_set_description(meta_tx *tx, const char *id, const char *desc,
                                cairn_error **reterr);
int meta_record_set_extracted(meta_tx *tx, const char *id, bool extracted, cairn_error **reterr);

/* ---- persistent mounts: a mount that outlives its process holds its record ---- */

struct meta_mount {
	char *target; /* absolute path, canonical when mounted */
	char *record;
	char *view; /* the view snapshot made for this mount; NULL when the record's own is used */
	bool readonly;
	int64_t created_at;
};

/* meta_mount_clear() - free the strings of @m and zero it. */
void meta_mount_clear(struct meta_mount *m);

typedef int (*meta_mount_fn)(const struct meta_mount *m, void *userdata);

/* meta_mount_insert() - -EEXIST when @m->target is taken or the record does not exist. */
int meta_mount_insert(meta_tx *tx, const struct meta_mount *m, cairn_error **reterr);
/* meta_mount_get() - 1 and *@ret (clear it) when @target is a mount, 0 when not. */
int meta_mount_get(meta_tx *tx, const char *target, struct meta_mount *ret, cairn_error **reterr);
/* meta_mount_delete() - -ENOENT "'T' is not a cairn mount" when absent. */
int meta_mount_delete(meta_tx *tx, const char *target, cairn_error **reterr);
/* meta_mount_list() - mounts of @record (NULL: all) in target order. */
int meta_mount_list(meta_tx *tx, const char *record, meta_mount_fn fn, void *userdata,
                    cairn_error **reterr);

/* ---- temporary leases: a view snapshot held by the process that made it ---- */

/* The label marking a lease as temporary (its value: creation time, ns since the epoch). */
#define META_LEASE_TEMPORARY "cairn.lease.temporary"

/*
 * meta_temp_lease_add() - lease @id, labelled temporary, owned by process @pid started at
 * @pid_start (clock ticks after boot, /proc/PID/stat field 22), holding resource @type/@res.
 * -EEXIST when @id is taken.
 */
int meta_temp_lease_add(meta_tx *tx, const char *id, const char *type, const char *res, int64_t pid,
                        int64_t pid_start, cairn_error **reterr);

/* meta_temp_lease_remove() - delete lease @id and its resources; a missing lease is success. */
int meta_temp_lease_remove(meta_tx *tx, const char *id, cairn_error **reterr);

/* Called once per resource of a temporary lease (a lease without resources: @type, @res NULL). */
typedef int (*meta_temp_lease_fn)(const char *id, int64_t pid, int64_t pid_start, const char *type,
                                  const char *res, void *userdata);

/* meta_temp_leases() - every temporary lease, in id order. */
int meta_temp_leases(meta_tx *tx, meta_temp_lease_fn fn, void *userdata, cairn_error **reterr);

/* ---- layer blobs (record-blobs.c) ---- */

/*
 * meta_record_set_blob() - write the blob columns of @id from @b (blob, diff_id, media_type,
 * chain_id, blob_chain_id; NULL writes NULL) and bump the generation. -ENOENT when absent.
 */
int meta_record_set_blob(meta_tx *tx, const char *id, const struct meta_record *b,
                         cairn_error **reterr);

/*
 * meta_record_find_chain() - the oldest live immutable row of @snapshotter whose blob_chain_id
 * (@blob_chain true) or chain_id is @value: 1 and its id in *@ret_id (caller frees), 0 when none.
 */
int meta_record_find_chain(meta_tx *tx, const char *snapshotter, bool blob_chain, const char *value,
                           char **ret_id, cairn_error **reterr);

/* meta_record_set_extracted_snapshot() - mark every live row of @snapshotter holding snapshot
 * @snapshot extracted (its data now exists) or, @extracted false, not extracted (lazy again),
 * bumping the generations of the rows that change. */
int meta_record_set_extracted_snapshot(meta_tx *tx, const char *snapshotter, const char *snapshot,
                                       bool extracted, cairn_error **reterr);

/*
 * meta_record_find_snapshot() - the oldest live row of @snapshotter that holds snapshot @snapshot
 * and has a blob: 1 and its id in *@ret_id (caller frees), 0 when none.
 */
int meta_record_find_snapshot(meta_tx *tx, const char *snapshotter, const char *snapshot,
                              char **ret_id, cairn_error **reterr);

/*
 * Unsynced snapshots (table unsynced): an extracted snapshot committed before its files were
 * synced, with the boot id of the kernel that holds them in its page cache and the
 * CLOCK_BOOTTIME (ns) of the commit. Only that boot may trust the files; src/cache/unsynced.c
 * syncs and forgets the marks later in the same boot, or extracts the snapshots again after a
 * reboot. Every function runs in the caller's transaction (write ones in a write transaction).
 */

/* meta_unsynced_add() - mark @snapshot of @snapshotter (replacing an older mark). */
int meta_unsynced_add(meta_tx *tx, const char *snapshotter, const char *snapshot, const char *boot,
                      int64_t at, cairn_error **reterr);

/* meta_unsynced_remove() - forget the mark of @snapshot; none is not an error. */
int meta_unsynced_remove(meta_tx *tx, const char *snapshotter, const char *snapshot,
                         cairn_error **reterr);

/* meta_unsynced_clear() - forget the marks of boot @boot made before @before (ns). */
int meta_unsynced_clear(meta_tx *tx, const char *snapshotter, const char *boot, int64_t before,
                        cairn_error **reterr);

/*
 * meta_unsynced_count() - *@ret_other: marks of @snapshotter from boots other than @boot;
 * *@ret_settled: marks of @boot made before @before (ns).
 */
int meta_unsynced_count(meta_tx *tx, const char *snapshotter, const char *boot, int64_t before,
                        int64_t *ret_other, int64_t *ret_settled, cairn_error **reterr);

/*
 * meta_unsynced_other() - the snapshots of @snapshotter marked by boots other than @boot, in
 * the order their snapshot rows were made (parents before children; names whose snapshot row
 * is gone come last), each copied into *@ret (caller frees each and the array).
 */
int meta_unsynced_other(meta_tx *tx, const char *snapshotter, const char *boot, char ***ret,
                        size_t *ret_n, cairn_error **reterr);
