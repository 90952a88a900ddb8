/* SPDX-License-Identifier: MIT */
/*
 * Snapshot rows: the metadata of every snapshotter (spec/containerd.md §2) in the tables
 * `snapshots` and `snapshot_labels`. A row's id names its directory snapshots/<id>; ids come from
 * AUTOINCREMENT and are never reused once committed. Names are unique per snapshotter; keys of
 * active/view snapshots and names of committed ones share that one namespace.
 *
 * All functions run inside the caller's transaction (writes need a write tx) and do no
 * validation beyond what SQL enforces: the snapshotter dispatcher (src/snapshot) checks states
 * and ordering. Strings in results are owned by the result.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "labels.h"
#include "meta.h"

/* Values of snapshots.kind (stored on disk; equal to containerd's). */
enum {
	META_SNAPSHOT_VIEW = 1,
	META_SNAPSHOT_ACTIVE = 2,
	META_SNAPSHOT_COMMITTED = 3,
};

/* size of a committed snapshot whose usage has not been computed yet (computed on demand). */
#define META_SNAPSHOT_SIZE_UNKNOWN (-1)

struct meta_snapshot {
	int64_t id;
	int kind;
	int64_t parent;    /* 0: no parent */
	char *snapshotter; /* "overlay", "native" */
	char *name;
	char *parent_name; /* NULL: no parent (or, with parent set, a parent row that is missing:
	                    * a damaged database, which fsck reports) */
	int64_t created_at, updated_at;
	int64_t size, inodes;
};

/* meta_snapshot_clear() - free the strings of @s and zero it. */
void meta_snapshot_clear(struct meta_snapshot *s);

/* Called once per row; a negative return stops the walk and is returned. @s is borrowed for the
 * call. The callback may run other meta_snapshot_* queries in the same transaction. */
typedef int (*meta_snapshot_fn)(const struct meta_snapshot *s, void *userdata);

/*
 * meta_snapshot_get() - the row @name of @snapshotter: 1 and *@ret filled (clear it), 0 when
 * absent (*@ret zeroed).
 */
int meta_snapshot_get(meta_tx *tx, const char *snapshotter, const char *name,
                      struct meta_snapshot *ret, cairn_error **reterr);

/* meta_snapshot_get_id() - as meta_snapshot_get(), by id. */
int meta_snapshot_get_id(meta_tx *tx, int64_t id, struct meta_snapshot *ret, cairn_error **reterr);

/*
 * meta_snapshot_insert() - add a row of @kind named @name with @parent (0: none), created and
 * updated at @now; *@ret_id gets the new id. Errors: -EEXIST when @name is taken (message names
 * it); others from SQLite.
 */
int meta_snapshot_insert(meta_tx *tx, const char *snapshotter, const char *name, int kind,
                         int64_t parent, int64_t now, int64_t *ret_id, cairn_error **reterr);

/*
 * meta_snapshot_commit() - turn row @id into committed snapshot @name: same id and parent, new
 * name, kind committed, created = updated = @now, usage @size/@inodes (size may be
 * META_SNAPSHOT_SIZE_UNKNOWN), every label dropped. -EEXIST when @name is taken.
 */
int meta_snapshot_commit(meta_tx *tx, int64_t id, const char *name, int64_t now, int64_t size,
                         int64_t inodes, cairn_error **reterr);

/* meta_snapshot_delete() - delete row @id and its labels. -ENOENT when absent; the foreign key
 * makes it fail (-EEXIST, SQLite's constraint text) while a child row points at it. */
int meta_snapshot_delete(meta_tx *tx, int64_t id, cairn_error **reterr);

/* meta_snapshot_clear_parent() - make row @id a snapshot without a parent (fsck --repair, before
 * it removes a snapshot on a broken chain). -ENOENT when absent. */
int meta_snapshot_clear_parent(meta_tx *tx, int64_t id, cairn_error **reterr);

/* meta_snapshot_has_children() - 1 if some row has @id as parent, 0 if none. */
int meta_snapshot_has_children(meta_tx *tx, int64_t id, cairn_error **reterr);

/*
 * meta_snapshot_chain() - the ancestors of @id: *@ret_ids[0] is the immediate parent, then the
 * grandparent, ... down to the base (containerd's parentIDs order). *@ret_ids is NULL when there
 * is no parent; caller frees.
 */
int meta_snapshot_chain(meta_tx *tx, int64_t id, int64_t **ret_ids, size_t *ret_n,
                        cairn_error **reterr);

/*
 * meta_snapshot_descendants() - @id and every row below it, parents before children (so
 * deleting in reverse order never breaks the foreign key). Caller frees *@ret_ids.
 */
int meta_snapshot_descendants(meta_tx *tx, int64_t id, int64_t **ret_ids, size_t *ret_n,
                              cairn_error **reterr);

/* meta_snapshot_touch() - set updated_at of @id to @now. */
int meta_snapshot_touch(meta_tx *tx, int64_t id, int64_t now, cairn_error **reterr);

/* meta_snapshot_set_usage() - record the usage of @id (computed after commit, on demand). */
int meta_snapshot_set_usage(meta_tx *tx, int64_t id, int64_t size, int64_t inodes,
                            cairn_error **reterr);

/* meta_snapshot_labels() - every label of @id in key order. */
int meta_snapshot_labels(meta_tx *tx, int64_t id, meta_kv_fn fn, void *userdata,
                         cairn_error **reterr);

/* meta_snapshot_label_set() - set label @key of @id to @value; NULL or "" deletes it. -EINVAL
 * (naming the key) past META_LABEL_MAX. */
int meta_snapshot_label_set(meta_tx *tx, int64_t id, const char *key, const char *value,
                            cairn_error **reterr);

/* meta_snapshot_labels_clear() - drop every label of @id. */
int meta_snapshot_labels_clear(meta_tx *tx, int64_t id, cairn_error **reterr);

/* meta_snapshot_list() - every row of @snapshotter (NULL: of all) in bytewise name order. */
int meta_snapshot_list(meta_tx *tx, const char *snapshotter, meta_snapshot_fn fn, void *userdata,
                       cairn_error **reterr);
