/* SPDX-License-Identifier: MIT */
/*
 * Snapshotters: containerd's snapshot model (spec/containerd.md §1-6) over the store's one
 * database.
 *
 * A snapshot is a filesystem state with at most one parent. Prepare makes an active (writable)
 * snapshot, View a read-only one, Commit turns an active one into a committed snapshot (same id,
 * same storage, new name; the key goes away); only committed snapshots can be parents. Keys and
 * names share one namespace per snapshotter.
 *
 * Keys: the library accepts any non-empty string of at most SNAP_KEY_MAX bytes (C strings hold no
 * NUL); containerd's keys look like paths ("/tmp/x/preparing") and that is fine, because a key
 * never becomes a path: directories are named by numeric id (snapshots/<id>/fs). The CLI rejects
 * keys containing '/' or "..", which are confusing on a command line.
 *
 * Error classes: NOT_FOUND is -ENOENT, ALREADY_EXISTS -EEXIST, FAILED_PRECONDITION
 * CAIRN_EPRECONDITION, INVALID_ARGUMENT -EINVAL. Every message quotes the key or name involved,
 * and a failed remove says "remove". A failed call changes nothing (on disk or in the database).
 *
 * On disk (below the store root): snapshots/<id>/fs holds the snapshot (overlay: its upper
 * layer; native: the whole tree), snapshots/<id>/work is the overlay workdir of an active
 * snapshot, snapshots/new-XXXXXX is a directory being built (flock'ed by its builder),
 * snapshots/rm-<id> one being deleted. Crash ordering: a new directory is built under new-*,
 * renamed to <id> inside the write transaction that inserts the row; a removed one is renamed to
 * rm-<id> inside the transaction that deletes the row and deleted after it commits. snap_open()
 * reconciles whatever a crash left (see snap_reconcile()). Durability: a call that returned has
 * its row and its renames on disk; file data written into a snapshot is not synced (containerd
 * does not either): a caller that needs it calls syncfs() before committing.
 *
 * Thread safety: a snapshotter may be used from several threads at once. Every operation runs in
 * one transaction of the meta_db (which serialises threads of the process; SQLite serialises
 * processes). Locking: the write operations (prepare, view, commit, remove, update, reconcile)
 * hold the database write lock for their metadata and their renames; the native driver copies a
 * parent tree and Usage walks a tree with no lock held.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "meta/meta.h"
#include "mount.h"

#define SNAP_KEY_MAX 4096

typedef enum snap_kind {
	SNAP_KIND_UNKNOWN = 0,
	SNAP_KIND_VIEW = 1,
	SNAP_KIND_ACTIVE = 2,
	SNAP_KIND_COMMITTED = 3,
} snap_kind;

/* snap_kind_name() - "View", "Active", "Committed" or "Unknown" (static). */
const char *snap_kind_name(snap_kind k);
/* snap_kind_parse() - case-insensitive "view"/"active"/"committed"; SNAP_KIND_UNKNOWN otherwise. */
snap_kind snap_kind_parse(const char *s);

struct snap_label {
	const char *key;
	const char *value;
};

/* What Stat returns. Owned by whoever received it; free with snap_info_free(). */
typedef struct snap_info {
	snap_kind kind;
	char *name;                /* key (active, view) or name (committed) */
	char *parent;              /* name of the parent, "" when none; never NULL */
	struct snap_label *labels; /* sorted by key; strings owned by the info */
	size_t n_labels;
	int64_t created_ns, updated_ns; /* ns since the epoch, UTC */
} snap_info;

snap_info *snap_info_free(snap_info *i);
DEFINE_TRIVIAL_CLEANUP_FUNC(snap_info *, snap_info_free)
/* snap_info_label() - the value of label @key, or NULL; borrowed from @i. */
const char *snap_info_label(const snap_info *i, const char *key);

/* Usage of a snapshot's own layer: allocated bytes and inodes (a hardlinked inode once). */
struct snap_usage {
	int64_t size;
	int64_t inodes;
};

typedef struct snapshotter snapshotter;

/*
 * snap_open() - a snapshotter of the store whose root directory is @store_rootfd (borrowed; it
 * must stay open until snap_close) and whose database is @db (borrowed, likewise).
 * @driver: "overlay", "native", or NULL to pick overlay when an overlay mount works on the store's
 * filesystem and native otherwise. Whether overlay works is probed once per store (a tiny
 * overlay mounted under snapshots/) and remembered in store_info key "overlay.probe"; a probe
 * failing for lack of privilege is not remembered. Then reconciles the snapshot directories with
 * the database (snap_reconcile()). Mount sources are absolute paths of the store root as the
 * kernel names it (/proc/self/fd), so the store may be opened through any path.
 * Errors: -EINVAL for an unknown driver; -EOPNOTSUPP when overlay was asked for but does not work
 * (the message says why) or the store path holds ':' ',' or '\' (which overlay options cannot
 * carry); errors of the database and of the reconcile.
 */
int snap_open(int store_rootfd, meta_db *db, const char *driver, snapshotter **ret,
              cairn_error **reterr);

/* snap_close() - free; NULL-safe; returns NULL. No operation may be running. */
snapshotter *snap_close(snapshotter *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(snapshotter *, snap_close)

/* snap_driver_name() - "overlay" or "native"; borrowed, valid until snap_close. */
const char *snap_driver_name(const snapshotter *s);

/*
 * snap_prepare() - create active snapshot @key on committed @parent (NULL or "": none) with
 * @labels (later duplicates win; an empty value drops the key). Returns the mounts that present
 * it in *@ret_mounts and *@ret_n (caller frees with snap_mounts_free; both may be NULL).
 * Checks in containerd's order: @parent missing -ENOENT; @parent not committed -EINVAL; @key
 * taken (by any kind) -EEXIST. Also -EINVAL for an invalid key or label.
 * Locking: the native driver copies @parent before taking the write lock.
 */
int snap_prepare(snapshotter *s, const char *key, const char *parent,
                 const struct snap_label *labels, size_t n_labels, struct snap_mount **ret_mounts,
                 size_t *ret_n, cairn_error **reterr);

/* snap_view() - as snap_prepare(), but a read-only view snapshot. */
int snap_view(snapshotter *s, const char *key, const char *parent, const struct snap_label *labels,
              size_t n_labels, struct snap_mount **ret_mounts, size_t *ret_n, cairn_error **reterr);

/*
 * snap_commit() - commit active @key as @name with exactly @labels (the active's labels are not
 * inherited). O(1): no data is copied or walked; the usage is computed on the first
 * snap_usage() and then recorded. Errors in order: @name taken -EEXIST; @key missing -ENOENT;
 * @key a view or committed CAIRN_EPRECONDITION.
 */
int snap_commit(snapshotter *s, const char *name, const char *key, const struct snap_label *labels,
                size_t n_labels, cairn_error **reterr);

/*
 * snap_remove() - remove @key (any kind). The key is reusable as soon as this returns; the
 * directory is deleted after the transaction commits (a failure to delete is left to the next
 * reconcile, not reported). Errors: -ENOENT; CAIRN_EPRECONDITION when a snapshot has @key as
 * parent ("remove snapshot 'K': snapshot has children").
 */
int snap_remove(snapshotter *s, const char *key, cairn_error **reterr);

/*
 * Decides, inside the write transaction of a remove (@tx), whether @key may go: 1 yes, 0 keep
 * it, a negative errno to fail. Must only read and write through @tx.
 */
typedef int (*snap_remove_guard_fn)(meta_tx *tx, const char *key, void *userdata,
                                    cairn_error **reterr);

/*
 * snap_remove_if() - snap_remove(), but only when @guard (NULL: always) agrees, asked inside the
 * transaction that deletes the row, so that nothing the guard looked at can change in between
 * (another process's rows live in the same database). 0 removed, 1 kept because the guard said
 * so; errors as snap_remove() plus the guard's (prefixed "remove snapshot 'K'").
 * Locking: the database write lock, from before the guard runs until the row is deleted.
 */
int snap_remove_if(snapshotter *s, const char *key, snap_remove_guard_fn guard, void *userdata,
                   cairn_error **reterr);

/*
 * snap_mounts() - the mounts of active or view @key (the same as prepare/view returned).
 * Errors: -ENOENT; CAIRN_EPRECONDITION for a committed snapshot.
 */
int snap_mounts(snapshotter *s, const char *key, struct snap_mount **ret_mounts, size_t *ret_n,
                cairn_error **reterr);

/* snap_stat() - the info of @key into *@ret (the caller's; @ret may be NULL to test existence).
 * -ENOENT when missing. */
int snap_stat(snapshotter *s, const char *key, snap_info **ret, cairn_error **reterr);

/*
 * snap_update() - update the labels of @info->name (the only mutable field) and set its update
 * time; kind, parent and created are kept whatever @info says. @fieldpaths (n = 0: all labels):
 * "labels" replaces the whole set with @info's; "labels.<k>" sets k to @info's value or deletes
 * it when @info lacks it or it is empty. *@ret (may be NULL) gets the stored info.
 * Errors: -ENOENT; -EINVAL for any other fieldpath (naming it) or an invalid label.
 */
int snap_update(snapshotter *s, const snap_info *info, const char *const *fieldpaths,
                size_t n_fieldpaths, snap_info **ret, cairn_error **reterr);

/*
 * snap_usage() - the usage of @key's own layer: active: computed now from its directory (no
 * lock held while walking); committed: recorded (computed once, on first call after commit);
 * view: zeros. -ENOENT when missing.
 */
int snap_usage(snapshotter *s, const char *key, struct snap_usage *ret, cairn_error **reterr);

/*
 * Called once per snapshot by snap_walk(); @info is borrowed for the call. A negative return
 * stops the walk and is returned by snap_walk(). The callback runs with no transaction open and
 * may call any snap_ function on @s.
 */
typedef int (*snap_walk_fn)(const snap_info *info, void *userdata);

/*
 * snap_walk() - call @fn for every snapshot matching any of @filters (containerd's filter
 * language over the fields kind, name, parent and labels.<key>; n = 0 or an empty string
 * matches all), in bytewise name order. -EINVAL for a filter that does not parse (message
 * quotes it).
 */
int snap_walk(snapshotter *s, const char *const *filters, size_t n_filters, snap_walk_fn fn,
              void *userdata, cairn_error **reterr);

/*
 * snap_reconcile() - make the snapshot directories agree with the database (run by snap_open;
 * fsck may run it again). Under the write lock: a snapshots/<n> directory without a row is
 * deleted (a prepare that did not commit); rm-<id> is renamed back when its row still exists (a
 * remove that did not commit) and deleted otherwise; new-* directories whose builder is gone
 * (no flock held) are deleted; a row whose snapshots/<id>/fs is missing is dropped together
 * with every snapshot below it (a child is unusable without its parent's layer), and their
 * directories deleted. Returns the number of rows dropped.
 */
int snap_reconcile(snapshotter *s, cairn_error **reterr);

/*
 * snap_open_fs() - an O_DIRECTORY fd of the directory holding @key's own layer (overlay: the
 * upper directory; native: the whole tree), e.g. to apply a layer without mounting.
 * *@ret_path (may be NULL) gets its absolute path (caller frees). -ENOENT when missing.
 */
int snap_open_fs(snapshotter *s, const char *key, char **ret_path, cairn_error **reterr);

/* ---- for drivers ---- */

/* What a driver is told about a snapshot. */
struct snap_ref {
	int64_t id; /* 0 while its directory is being staged (the id is not allocated yet) */
	snap_kind kind;
	const int64_t *parents; /* parents[0] is the immediate parent, then its parent, ... */
	size_t n_parents;
};

/*
 * The ops table of a driver (STYLE.md "Pluggable parts"). The dispatcher validates arguments,
 * runs the metadata in one transaction and does the renames that make a change visible; the
 * driver does the filesystem work. Methods marked optional may be NULL.
 */
struct snap_ops {
	unsigned version; /* SNAP_OPS_VERSION */
	const char *name;
	/* Fill the staging directory @stagefd (empty) for a new active (or, when .view is NULL, a
	 * view) snapshot: create "fs" (0755) and whatever else the driver needs. May be slow;
	 * runs with no lock held. */
	int (*prepare)(snapshotter *s, int stagefd, const struct snap_ref *ref,
	               cairn_error **reterr);
	/* optional: as prepare for a view. */
	int (*view)(snapshotter *s, int stagefd, const struct snap_ref *ref, cairn_error **reterr);
	/* optional: filesystem work of a commit (inside the write transaction; must be O(1)). */
	int (*commit)(snapshotter *s, const struct snap_ref *ref, cairn_error **reterr);
	/* optional: delete the directory @dirname (rm-<id>) of a removed snapshot after the commit.
	 * NULL: the dispatcher deletes it recursively. */
	int (*remove)(snapshotter *s, const char *dirname, cairn_error **reterr);
	/* The mounts of an active or view snapshot. */
	int (*mounts)(snapshotter *s, const struct snap_ref *ref, struct snap_mount **ret,
	              size_t *ret_n, cairn_error **reterr);
	/* optional: add driver facts to a returned info (Stat, Update and Walk results). */
	int (*stat)(snapshotter *s, const struct snap_ref *ref, snap_info *info,
	            cairn_error **reterr);
	/* optional: usage of an active or committed snapshot. NULL: walk snapshots/<id>/fs. */
	int (*usage)(snapshotter *s, const struct snap_ref *ref, struct snap_usage *ret,
	             cairn_error **reterr);
	/* optional: driver setup at snap_open (probes); may set *@ret_state. */
	int (*init)(snapshotter *s, meta_db *db, void **ret_state, cairn_error **reterr);
	/* optional: free the state made by init. */
	void (*free)(void *state);
};

#define SNAP_OPS_VERSION 1

extern const struct snap_ops snap_overlay_ops;
extern const struct snap_ops snap_native_ops;

/* snap_set_mount_options() - extra options placed first in every overlay mount of @s (as
 * containerd's mount_options, e.g. "volatile"); copied. Call before using @s from other threads. */
int snap_set_mount_options(snapshotter *s, const char *const *options, size_t n,
                           cairn_error **reterr);

/* snap_fs_path() - "<root>/snapshots/<id>/<sub>" into *@ret (caller frees); -ENOMEM. */
int snap_fs_path(const snapshotter *s, int64_t id, const char *sub, char **ret);

/*
 * snap_overlay_probe() - whether an overlay mount (two lowers, an upper, @userxattr if asked)
 * works in a staging directory of @s. 0 works; otherwise a negative errno with the kernel's
 * reason in the message. For the overlay driver and tests.
 */
int snap_overlay_probe(snapshotter *s, bool userxattr, cairn_error **reterr);
