/* SPDX-License-Identifier: MIT */
/*
 * Leases, garbage collection and fsck (spec/containerd.md §11).
 *
 * A lease holds resources against gc: blobs (type "blob", id a digest), cache records (type
 * "record") and snapshots (type "snapshots/<snapshotter>", id a snapshot key or name). A resource
 * need not exist to be added. A lease may expire, and may belong to a process (its pid and start
 * time): once that process is gone the lease is dead, and gc deletes it, as it deletes expired
 * leases.
 *
 * Locking: the lease calls take the database write lock for one short transaction; cairn_gc and
 * cairn_fsck with CAIRN_FSCK_REPAIR need a store opened with CAIRN_STORE_EXCLUSIVE (the LOCK
 * protocol keeps every other process out while they run).
 */
#ifndef CAIRN_LEASE_H
#define CAIRN_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_LEASE_OPTIONS_VERSION 1

/* The lease belongs to the calling process: it dies with it. */
#define CAIRN_LEASE_PROCESS   (1u << 0)
#define CAIRN_LEASE_FLAGS_ALL (CAIRN_LEASE_PROCESS)

typedef struct cairn_lease_options {
	unsigned version;  /* CAIRN_LEASE_OPTIONS_VERSION */
	unsigned flags;    /* CAIRN_LEASE_* */
	const char *id;    /* NULL: a random id */
	int64_t expire_ns; /* lifetime from now in ns; 0: never expires */
	size_t n_labels;
	const char *const *label_keys; /* n_labels each */
	const char *const *label_values;
} cairn_lease_options;

/*
 * cairn_lease_create() - a new lease. *@ret_id (may be NULL) gets its id (caller frees).
 * Errors: -EINVAL for a bad options version, unknown flags, an empty or over-long id (at most
 * 256 bytes, no '/' or control characters) or a label over the limits; -EEXIST "lease 'ID'
 * already exists".
 */
CAIRN_PUBLIC int cairn_lease_create(cairn_store *store, const cairn_lease_options *opts,
                                    char **ret_id, cairn_error **reterr);

/* cairn_lease_delete() - delete lease @id; what it held becomes collectable by the next gc.
 * Errors: -ENOENT "lease 'ID' not found". */
CAIRN_PUBLIC int cairn_lease_delete(cairn_store *store, const char *id, cairn_error **reterr);

/*
 * cairn_lease_add_resource() - lease @id holds (@type, @res); idempotent.
 * Errors: -ENOENT when the lease is missing; -EINVAL for an unknown @type (naming it), an empty
 * @res, or a "blob" @res that is not a digest (CAIRN_EDIGEST).
 */
CAIRN_PUBLIC int cairn_lease_add_resource(cairn_store *store, const char *id, const char *type,
                                          const char *res, cairn_error **reterr);

/* cairn_lease_remove_resource() - the lease no longer holds (@type, @res); a resource it does not
 * hold is success. Errors: -ENOENT when the lease is missing. */
CAIRN_PUBLIC int cairn_lease_remove_resource(cairn_store *store, const char *id, const char *type,
                                             const char *res, cairn_error **reterr);

typedef struct cairn_lease_resource {
	char *type;
	char *id;
} cairn_lease_resource;

typedef struct cairn_lease_info {
	char *id;
	int64_t created_ns;
	int64_t expires_ns; /* 0: never */
	int64_t pid;        /* 0: not a process lease */
	bool live;          /* false: expired, or its process is gone (gc will delete it) */
	size_t n_labels;
	char **label_keys; /* n_labels each, in key order */
	char **label_values;
	size_t n_resources;
	cairn_lease_resource *resources; /* in type then id order */
} cairn_lease_info;

/* cairn_lease_list() - every lease in id order into *@ret (free with cairn_lease_infos_free) and
 * *@ret_n. */
CAIRN_PUBLIC int cairn_lease_list(cairn_store *store, cairn_lease_info **ret, size_t *ret_n,
                                  cairn_error **reterr);

/* cairn_lease_infos_free() - free what cairn_lease_list returned. NULL-safe; returns NULL. */
CAIRN_PUBLIC cairn_lease_info *cairn_lease_infos_free(cairn_lease_info *infos, size_t n);

/* ---- garbage collection ---- */

/* Report what would go, remove nothing. */
#define CAIRN_GC_DRY_RUN   (1u << 0)
#define CAIRN_GC_FLAGS_ALL (CAIRN_GC_DRY_RUN)

typedef struct cairn_gc_report {
	size_t snapshots, blobs, ingests, leases, tmp_entries; /* removed (or to remove) */
	uint64_t snapshot_bytes, blob_bytes, ingest_bytes, tmp_bytes;
	uint64_t bytes; /* the sum */
	size_t skipped; /* objects that could not be removed (see the error of a failed call) */
	size_t labels;  /* blobs not in the store whose labels went (or would go): what a lazy
	                 * record (pull, cache import) pruned before its blob was fetched left */
} cairn_gc_report;

/*
 * cairn_gc() - mark and sweep. Roots: live leases' resources; every record that is not a
 * tombstone (its snapshot and that snapshot's ancestors, its blob, its parent record); tags'
 * records; mounts' records and view snapshots. Swept: snapshots of every snapshotter that nothing
 * marks (children before parents), unmarked blobs with their labels, the labels of unmarked blobs
 * that are not in the store (a pruned lazy record's cairn.lazy.* labels), ingests not written to
 * for a day, expired and dead-process leases, and everything in tmp/. The database part (leases,
 * labels) goes in one transaction before any file. Sizes are measured before removal.
 * *@ret_report (may be NULL) is filled also with CAIRN_GC_DRY_RUN, which changes nothing.
 * Errors: -EINVAL for unknown flags, or a store not opened with CAIRN_STORE_EXCLUSIVE (gc must
 * not race other processes; the message says so); errors of the database and filesystem, naming
 * the object. Objects removed before a failure stay removed (each removal is crash safe).
 * Locking: runs under the store's exclusive LOCK.
 */
CAIRN_PUBLIC int cairn_gc(cairn_store *store, unsigned flags, cairn_gc_report *ret_report,
                          cairn_error **reterr);

/* ---- fsck ---- */

#define CAIRN_FSCK_REPAIR    (1u << 0)
#define CAIRN_FSCK_FLAGS_ALL (CAIRN_FSCK_REPAIR)

typedef struct cairn_fsck_problem {
	const char *kind;    /* "blob", "ingest", "snapshot", "record", "tag", "mount" */
	const char *object;  /* the digest, ingest ref (or key), snapshot key, record id, tag or
	                      * mount target */
	const char *message; /* one line naming the object */
	bool repaired;       /* with CAIRN_FSCK_REPAIR: it was fixed */
} cairn_fsck_problem;

/* Called once per problem; the strings are borrowed for the call. A negative return stops fsck
 * and is returned. */
typedef int (*cairn_fsck_fn)(const cairn_fsck_problem *p, void *userdata);

/*
 * cairn_fsck() - check the store: every blob's digest, ingests no writer holds (abandoned: older
 * than a day, or cut short without a ref file), snapshot rows against their directories (in
 * both directions), snapshot chains (every parent exists and is committed, no loops, each
 * record's snapshot sits on its parent record's), every record's snapshot (when extracted),
 * parent and blob (when not extracted), tags and mounts pointing at live records and existing
 * views. With CAIRN_FSCK_REPAIR, fixes what it can: dangling tags are dropped, abandoned ingests
 * removed, orphan snapshot directories and rows without directories reconciled, corrupt blobs
 * deleted, snapshots on a broken chain removed (with what sits on them) unless one holds the
 * only copy of a record's data, records whose snapshot is missing marked not extracted when
 * their blob is present (the next extract re-creates the snapshot); what it cannot fix is
 * reported with what to do. *@ret_problems (may be NULL) gets the number of problems not
 * repaired.
 * Errors: -EINVAL for unknown flags, or CAIRN_FSCK_REPAIR on a store not opened with
 * CAIRN_STORE_EXCLUSIVE; errors of the database and filesystem.
 */
CAIRN_PUBLIC int cairn_fsck(cairn_store *store, unsigned flags, cairn_fsck_fn fn, void *userdata,
                            size_t *ret_problems, cairn_error **reterr);

#ifdef __cplusplus
}
#endif
#endif
