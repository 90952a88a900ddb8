/* SPDX-License-Identifier: MIT */
/*
 * Leases (spec/containerd.md §11.1) in the tables `leases`, `lease_labels` and `lease_resources`.
 * A lease holds resources against gc: a resource is (type, id) with type "blob" (id a digest),
 * "record" (a record id) or "snapshots/<snapshotter>" (a snapshot key or name). A lease may
 * expire (expires_at, ns since the epoch; 0 never) and may belong to a process (pid and its start
 * time, /proc/PID/stat field 22; 0 none): it dies with that process.
 *
 * All functions run inside the caller's transaction (writes need a write tx) and validate nothing
 * beyond what SQL enforces: src/lease checks arguments. Strings in results are owned by the
 * result.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "labels.h"
#include "meta.h"

struct meta_lease {
	char *id;
	int64_t created_at; /* ns since the epoch */
	int64_t expires_at; /* ns since the epoch; 0: never */
	int64_t pid;        /* 0: not a process lease */
	int64_t pid_start;  /* clock ticks after boot */
};

/* meta_lease_clear() - free the strings of @l and zero it. */
void meta_lease_clear(struct meta_lease *l);

/* Called once per lease, @l borrowed for the call; a negative return stops the walk and is
 * returned. The callback may run other queries in the same transaction. */
typedef int (*meta_lease_fn)(const struct meta_lease *l, void *userdata);

/* meta_lease_insert() - add @l (created_at as given). -EEXIST naming the id when it is taken. */
int meta_lease_insert(meta_tx *tx, const struct meta_lease *l, cairn_error **reterr);

/* meta_lease_get() - 1 and *@ret filled (clear it) when @id exists, 0 when not. */
int meta_lease_get(meta_tx *tx, const char *id, struct meta_lease *ret, cairn_error **reterr);

/* meta_lease_delete() - delete @id with its labels and resources. -ENOENT "lease 'ID' not found"
 * when absent. */
int meta_lease_delete(meta_tx *tx, const char *id, cairn_error **reterr);

/* meta_lease_list() - every lease in id order. */
int meta_lease_list(meta_tx *tx, meta_lease_fn fn, void *userdata, cairn_error **reterr);

/* meta_lease_label_set() - set label @key of lease @id (@value NULL or "": delete it). -EINVAL
 * past META_LABEL_MAX. */
int meta_lease_label_set(meta_tx *tx, const char *id, const char *key, const char *value,
                         cairn_error **reterr);

/* meta_lease_labels() - the labels of @id in key order. */
int meta_lease_labels(meta_tx *tx, const char *id, meta_kv_fn fn, void *userdata,
                      cairn_error **reterr);

/* meta_lease_resource_add() - add (@type, @res) to lease @id; idempotent. -ENOENT when the
 * lease does not exist. */
int meta_lease_resource_add(meta_tx *tx, const char *id, const char *type, const char *res,
                            cairn_error **reterr);

/* meta_lease_resource_remove() - remove (@type, @res) from lease @id; a missing one is success. */
int meta_lease_resource_remove(meta_tx *tx, const char *id, const char *type, const char *res,
                               cairn_error **reterr);

/* meta_lease_resources() - the resources of @id as (type, id) pairs, in type then id order. */
int meta_lease_resources(meta_tx *tx, const char *id, meta_kv_fn fn, void *userdata,
                         cairn_error **reterr);

/* Called once per resource held by a lease (@l and @res borrowed for the call). */
typedef int (*meta_lease_hold_fn)(const struct meta_lease *l, const char *res, void *userdata);

/* meta_lease_holds() - every resource of type @type (only @res when not NULL) with its lease, in
 * lease then resource order (dead and expired leases included: the caller judges with
 * lease_live()). */
int meta_lease_holds(meta_tx *tx, const char *type, const char *res, meta_lease_hold_fn fn,
                     void *userdata, cairn_error **reterr);

/* ---- roots and references for gc and fsck (read only) ---- */

/*
 * meta_record_refs() - every record row (tombstones included) as (id, snapshotter, snapshot,
 * blob, parent, deleted, extracted), in id order; NULL columns are passed as NULL.
 */
typedef int (*meta_record_ref_fn)(const char *id, const char *snapshotter, const char *snapshot,
                                  const char *blob, const char *parent, bool deleted,
                                  bool extracted, void *userdata);
int meta_record_refs(meta_tx *tx, meta_record_ref_fn fn, void *userdata, cairn_error **reterr);

/* meta_mount_refs() - every mount as (record, snapshotter of the record, view or NULL). */
typedef int (*meta_mount_ref_fn)(const char *target, const char *record, const char *snapshotter,
                                 const char *view, void *userdata);
int meta_mount_refs(meta_tx *tx, meta_mount_ref_fn fn, void *userdata, cairn_error **reterr);
