/* SPDX-License-Identifier: MIT */
/*
 * Snapshots, with containerd's semantics: active (read-write, from prepare), view (read-only,
 * from view) and committed (from commit of an active one; the only kind that can be a parent).
 * Keys of active and view snapshots and names of committed ones share one namespace per
 * snapshotter. The snapshotter is the store's: overlay where an overlay mount works on its
 * filesystem, else native (or as chosen in cairn_store_options).
 *
 * Keys are any non-empty string without NUL of at most 4096 bytes: they never become paths
 * (snapshot directories are named by number). The CLI is stricter (no '/', no '..').
 *
 * Errors common to all: -ENOENT for a missing key or parent (the message names it); -EEXIST when
 * a key or name is taken; CAIRN_EPRECONDITION for the wrong kind (committing a view, removing a
 * snapshot that has children, mounts of a committed snapshot); -EINVAL for a malformed key or a
 * parent that is not committed. On error nothing changed.
 * Locking: thread-safe; each call is one transaction of the store's database.
 */
#ifndef CAIRN_SNAPSHOT_H
#define CAIRN_SNAPSHOT_H

#include <stdint.h>

#include "cairn/mount.h"
#include "cairn/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cairn_snapshot_kind {
	CAIRN_SNAPSHOT_VIEW = 1,
	CAIRN_SNAPSHOT_ACTIVE = 2,
	CAIRN_SNAPSHOT_COMMITTED = 3,
} cairn_snapshot_kind;

typedef struct cairn_snapshot_info {
	cairn_snapshot_kind kind;
	const char *name;   /* key or name */
	const char *parent; /* "" when none */
	int64_t created_ns, updated_ns;
	size_t n_labels;
	const char *const *label_keys; /* n_labels each, sorted by key */
	const char *const *label_values;
} cairn_snapshot_info;

/* cairn_snapshotter_name() - "overlay" or "native"; static. */
CAIRN_PUBLIC const char *cairn_snapshotter_name(cairn_store *store);

/* cairn_snapshot_prepare() - a new active snapshot @key on committed @parent (NULL or "": empty)
 * and its mounts (*@ret_mounts, caller frees with cairn_mounts_free; both may be NULL). */
CAIRN_PUBLIC int cairn_snapshot_prepare(cairn_store *store, const char *key, const char *parent,
                                        cairn_mount **ret_mounts, size_t *ret_n,
                                        cairn_error **reterr);

/* cairn_snapshot_view() - as prepare, read-only. */
CAIRN_PUBLIC int cairn_snapshot_view(cairn_store *store, const char *key, const char *parent,
                                     cairn_mount **ret_mounts, size_t *ret_n, cairn_error **reterr);

/* cairn_snapshot_commit() - active @key becomes committed @name (same data, O(1)); @key is gone. */
CAIRN_PUBLIC int cairn_snapshot_commit(cairn_store *store, const char *name, const char *key,
                                       cairn_error **reterr);

/* cairn_snapshot_remove() - remove @key; its name is reusable at once. The error message of a
 * snapshot with children says "remove". */
CAIRN_PUBLIC int cairn_snapshot_remove(cairn_store *store, const char *key, cairn_error **reterr);

/* cairn_snapshot_mounts() - the mounts of active or view @key (caller frees). */
CAIRN_PUBLIC int cairn_snapshot_mounts(cairn_store *store, const char *key, cairn_mount **ret,
                                       size_t *ret_n, cairn_error **reterr);

/* cairn_snapshot_usage() - bytes and inodes of @key's own layer: live for active, recorded for
 * committed, zero for views. */
CAIRN_PUBLIC int cairn_snapshot_usage(cairn_store *store, const char *key, int64_t *ret_size,
                                      int64_t *ret_inodes, cairn_error **reterr);

/* A walk callback: @info is borrowed for the call; a negative return stops the walk. */
typedef int (*cairn_snapshot_walk_fn)(const cairn_snapshot_info *info, void *userdata);

/* cairn_snapshot_walk() - every snapshot matching all of @filters (containerd's filter syntax:
 * name, parent, kind, labels.KEY with ==, !=, ~=; NULL or 0 filters: all), in name order.
 * @fn may call other cairn_snapshot_* functions. Errors: -EINVAL for a filter that does not
 * parse. */
CAIRN_PUBLIC int cairn_snapshot_walk(cairn_store *store, const char *const *filters,
                                     size_t n_filters, cairn_snapshot_walk_fn fn, void *userdata,
                                     cairn_error **reterr);

/* cairn_snapshot_stat() - the info of @key through @fn (called once, info borrowed). */
CAIRN_PUBLIC int cairn_snapshot_stat(cairn_store *store, const char *key, cairn_snapshot_walk_fn fn,
                                     void *userdata, cairn_error **reterr);

#ifdef __cplusplus
}
#endif
#endif
