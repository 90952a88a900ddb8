/* SPDX-License-Identifier: MIT */
/*
 * The cache manager: BuildKit's cache records and refs (spec/buildkit-cache.md §3-9) over the
 * store's snapshotter and database.
 *
 * A record is a filesystem state with an id (25 characters of [0-9a-z]), at most one parent
 * record, and metadata (description, record type, cache policy, times, usage count, size, layer
 * blob identities). A record is mutable (a writable snapshot, made by cairn_cache_new()) or
 * immutable (made by cairn_ref_commit(), or from a layer blob once the layer work lands).
 * Records live in the store's database and survive the process; what a process holds is a ref,
 * a handle on a record counted in memory. A record with a live ref, a live descendant, or a
 * persistent mount (cairn_ref_mount_at()) is in use and is never pruned or removed.
 *
 * Lazy commit: committing a mutable makes an immutable record that shares the mutable's data (the
 * two are a pair, BuildKit's equalMutable/equalImmutable) until something needs the immutable to
 * own its data: cairn_ref_finalize(), a read-write mount, or using it as a parent. Until then,
 * cairn_cache_get_mutable() on the mutable takes its data back and the immutable's id is gone.
 * When the last ref of a lazy immutable is released and neither half has the retain policy,
 * both records go; with retain on either half, both stay.
 *
 * Errors common to all functions: -EINVAL for a NULL argument or a ref in the wrong state
 * (released, committed, the wrong kind), naming the ref; -ENOENT "record 'ID' not found" (also
 * for tombstoned records); CAIRN_ELOCKED when a record is held by someone else ("record 'ID' is
 * locked: ..." says by what); -EBUSY for removing a record that has children or is in use (the
 * message names the children, the handles or the mount target); -EBADF after
 * cairn_cache_close(); errors of the database and the snapshotter, prefixed with the record id.
 * On error nothing changed, unless the function says otherwise.
 *
 * Locking (§9): a cairn_cache is thread-safe. It has one manager lock for its table of in-use
 * records, held briefly (never across snapshot copies, tree walks or mounts); the two records of
 * a pair share one record lock, taken by finalize and mount; sizes are computed once per record
 * at a time (single flight) with no lock held. Lock order: manager, then record, then the
 * database. A cairn_ref is not thread-safe: calls on one ref must not overlap (clone it for
 * another thread); different refs on one record may be used concurrently.
 *
 * Processes: the database is shared, and so are records, tombstones, persistent mounts and the
 * leases of views. Refs are counted per process, and each manager holding refs has a process
 * lease (pid and start time) naming the records it holds (taken in the transaction that finds a
 * record live, dropped when its last hold goes, deleted by close): another process's prune,
 * remove and get_mutable leave those records alone; once the process is gone the lease is dead,
 * prune ignores it and gc deletes it.
 *
 * Where cairn differs from BuildKit (spec §12 quirks, not copied):
 * - cairn_cache_get() on an unheld mutable without a committed partner fails with -EINVAL
 *   instead of committing it implicitly; disk usage never commits anything either.
 * - A committed mutable ref is consumed: releasing it again is harmless, mounting or
 *   committing it is -EINVAL (BuildKit destroyed the immutable when it was released).
 * - Releasing a ref twice is harmless and counts one use, not two.
 * - The two halves of a pair share one lock whether they were made in this process or loaded.
 * - A recorded size is recomputed when the content may have changed (a mutable handed out or
 *   unmounted, a finalize, an extract); a held mutable's size is computed live, never stored.
 * - Disk usage and prune skip tombstoned records. Prune chooses and tombstones under the manager
 *   lock (what it then removes is invisible to everyone), and reports and filters on every field
 *   (parent, description, in use, type, shared).
 * - Opening the cache checks every record against its snapshot: tombstoned records are
 *   removed, an interrupted finalize is completed, and a record whose data is gone is dropped
 *   with its descendants (a record whose blob is still there is kept as not extracted).
 * - The media type of a record without a blob is NULL, not the record id.
 *
 * Layer blobs (spec §4, §5.4, §6.6-6.7; see the end of this header): cairn_cache_get_by_blob()
 * makes a lazy record from a blob of the content store (nothing extracted), cairn_ref_extract()
 * makes its snapshot (mounting it, or making a child with cairn_cache_new(), extracts first),
 * cairn_ref_set_blob() and cairn_ref_get_remote() give committed records their blobs.
 */
#ifndef CAIRN_CACHE_H
#define CAIRN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/common.h"
#include "cairn/mount.h"
#include "cairn/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_cache cairn_cache;
typedef struct cairn_ref cairn_ref;

/* The length of a record id made by cairn. Ids of other origin are at most 64 bytes. */
#define CAIRN_RECORD_ID_LEN 25

typedef enum cairn_cache_policy {
	CAIRN_CACHE_POLICY_DEFAULT = 0, /* a mutable goes when its last ref is released */
	CAIRN_CACHE_POLICY_RETAIN = 1,  /* it stays, unused, until pruned or removed */
} cairn_cache_policy;

/*
 * What a record looks like, for ls, info and du. Strings are owned by the info; free an array
 * with cairn_record_infos_free().
 */
typedef struct cairn_record_info {
	char *id;
	char *parent;       /* NULL: none */
	bool is_mutable;    /* kind "mutable" or "immutable" */
	bool in_use;        /* held by a ref of this process, a persistent mount or a live lease
	                     * (another process's refs), itself or a descendant (for a pair: either
	                     * half) */
	bool shared;        /* it or a descendant is tagged: a plain prune keeps it */
	bool reclaimable;   /* neither in use nor shared */
	bool retain;        /* cache policy retain */
	int64_t size;       /* bytes of its own layer (plus its blob); -1 unknown */
	int64_t created_at; /* ns since the epoch */
	int64_t last_used;  /* ns since the epoch; 0: never used */
	int64_t usage_count;
	char *description; /* "" when none */
	char *record_type; /* "regular" when none was set */
	char *snapshot_id; /* the snapshot holding its data now (the mutable's, for a lazy pair) */
	char *equal_mutable;   /* on a lazily committed immutable: its mutable; else NULL */
	char *equal_immutable; /* on a mutable so committed: its immutable; else NULL */
	char *blob, *diff_id, *chain_id, *blob_chain_id, *media_type; /* NULL when unset */
	bool extracted; /* its snapshot exists (false: only its blob does) */
	char **tags;    /* names tagging it, sorted */
	size_t n_tags;
} cairn_record_info;

/* cairn_record_infos_free() - free @n infos at @infos and the array. NULL-safe; returns NULL. */
CAIRN_PUBLIC cairn_record_info *cairn_record_infos_free(cairn_record_info *infos, size_t n);

/*
 * cairn_cache_open() - the cache manager of @store (borrowed: it must stay open until the
 * manager is closed and every ref freed). Opening repairs what a crash left (see above): it
 * finishes tombstoned removals, completes interrupted finalizes, drops records whose snapshots
 * are gone (with their descendants), and removes the temporary view leases (and views) of
 * processes that are gone. Snapshots an overlay extract committed unsynced in an earlier boot
 * (see cairn_ref_extract()) are emptied and extracted again from their blobs, parents first,
 * then synced; one opener does it while the others wait (an OFD lock on byte 0 of ROOT/LOCK). A
 * snapshot whose blob is gone is removed and its records become lazy. Marks of this boot at
 * least 30 s old are settled with one syncfs(). Open one manager per store handle: two managers of
 * one store see each other as two processes do. Errors: those of the database and the snapshotter;
 * a failed syncfs() of ROOT/snapshots. Ownership: *@ret is the caller's; close it with
 * cairn_cache_close().
 */
CAIRN_PUBLIC int cairn_cache_open(cairn_store *store, cairn_cache **ret, cairn_error **reterr);

/*
 * cairn_cache_close() - close @c: views made for refs of this manager are removed (unmount what
 * you mounted from them first), nothing else changes on disk: records, mutables and persistent
 * mounts stay, refs are not released (their records are not updated). Refs still alive become
 * inert: every call on them fails with -EBADF, cairn_ref_free() still works. NULL-safe; NULL.
 * Must not run concurrently with other calls on @c or its refs.
 */
CAIRN_PUBLIC cairn_cache *cairn_cache_close(cairn_cache *c);

/* Do not count releasing the ref as a use (BuildKit's NoUpdateLastUsed). */
#define CAIRN_CACHE_GET_NO_UPDATE_LAST_USED (1u << 0)
/* When @id is mutable, behave as cairn_cache_get_mutable() (for tools that take any id). */
#define CAIRN_CACHE_GET_ANY_KIND  (1u << 1)
#define CAIRN_CACHE_GET_FLAGS_ALL (CAIRN_CACHE_GET_NO_UPDATE_LAST_USED | CAIRN_CACHE_GET_ANY_KIND)

/*
 * cairn_cache_get() - a new immutable ref on record @id. When @id is a mutable whose committed
 * partner exists, the ref is on that partner (its id differs from @id).
 * Errors: -ENOENT "record 'ID' not found"; CAIRN_ELOCKED when @id is a mutable that is held
 * (a ref or a persistent mount); -EINVAL when @id is a mutable that was never committed (cairn
 * does not commit it implicitly) or @flags has unknown bits.
 * Ownership: *@ret is the caller's: cairn_ref_release() then cairn_ref_free() (or only free).
 * Locking: the manager lock.
 */
CAIRN_PUBLIC int cairn_cache_get(cairn_cache *c, const char *id, unsigned flags, cairn_ref **ret,
                                 cairn_error **reterr);

/*
 * cairn_cache_get_mutable() - the one mutable ref on mutable record @id. If a lazily committed
 * immutable shares its data and is unheld, that immutable is removed (its id is then not found).
 * Errors: -ENOENT; -EINVAL when @id is immutable; CAIRN_ELOCKED when @id already has a ref or
 * a persistent mount, or its committed partner is in use (the message says which).
 * Ownership and locking: as cairn_cache_get().
 */
CAIRN_PUBLIC int cairn_cache_get_mutable(cairn_cache *c, const char *id, cairn_ref **ret,
                                         cairn_error **reterr);

#define CAIRN_NEW_OPTIONS_VERSION 1

typedef struct cairn_new_options {
	unsigned version;          /* CAIRN_NEW_OPTIONS_VERSION */
	cairn_cache_policy policy; /* default: the record goes with its last ref */
	const char *description;   /* NULL: none */
	/* NULL: regular; "internal" and "frontend" records survive a plain prune */
	const char *record_type;
} cairn_new_options;

/*
 * cairn_cache_new() - a new mutable record (an active snapshot) on top of @parent (NULL: empty)
 * and the one ref on it. Only @parent's id is read, as in BuildKit: a released ref will do while
 * its record exists. The parent is finalized first (a lazy immutable gets its own data).
 * @opts may be NULL (defaults).
 * Errors: -ENOENT for a parent record that is gone; -EINVAL for a mutable or not extracted
 * parent, an unknown options version or policy; errors of the snapshotter.
 * Ownership: *@ret is the caller's. Locking: the manager lock, briefly; the parent's record lock
 * while finalizing it. The snapshot (a copy of the parent, on the native driver) is made with no
 * lock held.
 */
CAIRN_PUBLIC int cairn_cache_new(cairn_cache *c, const cairn_ref *parent,
                                 const cairn_new_options *opts, cairn_ref **ret,
                                 cairn_error **reterr);

/* cairn_ref_id() - the record id; borrowed, valid until cairn_ref_free(@ref). */
CAIRN_PUBLIC const char *cairn_ref_id(const cairn_ref *ref);

/* cairn_ref_is_mutable() - whether @ref is a mutable ref (from new or get_mutable). */
CAIRN_PUBLIC bool cairn_ref_is_mutable(const cairn_ref *ref);

/*
 * cairn_ref_release() - drop the hold @ref has. Releasing the last ref of a record: counts a use
 * (unless the ref came from clone, or get with NO_UPDATE_LAST_USED), drops its view, and for a
 * mutable without the retain policy (or a lazy pair where neither half retains) removes the
 * record(s). Releasing a released or committed ref is harmless and returns 0. The handle stays
 * allocated (its id readable) until cairn_ref_free().
 * Errors: of the database and the snapshotter while removing; the ref is released all the same.
 * Locking: the manager lock; the record lock briefly; removal runs after the lock is dropped.
 */
CAIRN_PUBLIC int cairn_ref_release(cairn_ref *ref, cairn_error **reterr);

/* cairn_ref_free() - release (errors ignored) and free @ref. NULL-safe; returns NULL. */
CAIRN_PUBLIC cairn_ref *cairn_ref_free(cairn_ref *ref);

/*
 * cairn_ref_clone() - another immutable ref on @ref's record; releasing it counts no use.
 * Errors: -EINVAL for a mutable or released ref. Ownership: *@ret is the caller's.
 */
CAIRN_PUBLIC int cairn_ref_clone(cairn_ref *ref, cairn_ref **ret, cairn_error **reterr);

/*
 * cairn_ref_parent() - a new immutable ref on the parent record; 0 with *@ret NULL when there
 * is none. Ownership: *@ret is the caller's.
 */
CAIRN_PUBLIC int cairn_ref_parent(cairn_ref *ref, cairn_ref **ret, cairn_error **reterr);

/*
 * cairn_ref_size() - bytes used by the record's own layer (plus its blob, when the content
 * store has it). Computed on first use, once however many callers ask at the same time, and
 * stored; recomputed after the content may have changed. A held mutable is measured each time.
 * Locking: none held while measuring (single flight per record).
 */
CAIRN_PUBLIC int cairn_ref_size(cairn_ref *ref, int64_t *ret, cairn_error **reterr);

/*
 * cairn_ref_mount() - the mount specs presenting the record, into *@ret and *@ret_n (caller
 * frees with cairn_mounts_free()). A mutable: its active snapshot, converted to read-only when
 * @readonly (BuildKit's conversion, cairn_mounts_readonly()). A lazily committed immutable
 * and @readonly: its mutable's snapshot, read-only, without finalizing. Any other immutable is
 * finalized, then presented through a read-only view snapshot that every ref on the record
 * shares and that goes with the record's last ref (@readonly is then implied); the view is held
 * by a temporary lease, which a later cairn_cache_open() clears if this process dies.
 * Mounting the specs is the caller's business (cairn_mount_apply()).
 * Errors: -EINVAL for a released or committed ref, or a record that is not extracted.
 * Locking: the record lock (also while a view is created: a copy on the native driver).
 */
CAIRN_PUBLIC int cairn_ref_mount(cairn_ref *ref, bool readonly, cairn_mount **ret, size_t *ret_n,
                                 cairn_error **reterr);

/*
 * cairn_ref_mount_at() - mount the record at the existing directory @target (root only) as
 * cairn_ref_mount() would present it, and record the mount in the store: it holds the record
 * (in use, not pruned, a mutable is locked against get_mutable and commit) until
 * cairn_cache_unmount(@target), in this process or another. An immutable gets a view of its own,
 * held by the mount. @target is stored canonical (realpath).
 * Errors: -ENOENT, -ENOTDIR for @target; -EBUSY when @target is already a cairn mount (naming
 * its record); -EINVAL as cairn_ref_mount(); -errno of mount(2) naming @target.
 * Locking: the record lock while the mount is recorded and its view made.
 */
CAIRN_PUBLIC int cairn_ref_mount_at(cairn_ref *ref, const char *target, bool readonly,
                                    cairn_error **reterr);

/*
 * cairn_cache_unmount() - undo cairn_ref_mount_at(@target): unmount, remove its view, forget the
 * mount. If that was the last hold on a mutable without the retain policy (or a lazy pair
 * neither half of which retains), the record goes, as on a last release.
 * Errors: -ENOENT "'T' is not a cairn mount"; -EBUSY and others of umount2(2) naming @target
 * (the mount is then kept on record).
 */
CAIRN_PUBLIC int cairn_cache_unmount(cairn_cache *c, const char *target, cairn_error **reterr);

/* A persistent mount, borrowed for a callback. */
typedef struct cairn_mount_info {
	const char *target;
	const char *record;
	const char *view; /* the view snapshot made for it, or NULL */
	bool readonly;
	int64_t created_at; /* ns since the epoch */
} cairn_mount_info;

typedef int (*cairn_mount_info_fn)(const cairn_mount_info *m, void *userdata);

/* cairn_cache_mounts() - call @fn for each persistent mount of record @id (NULL: all), in target
 * order; a negative return from @fn stops and is returned. */
CAIRN_PUBLIC int cairn_cache_mounts(cairn_cache *c, const char *id, cairn_mount_info_fn fn,
                                    void *userdata, cairn_error **reterr);

/*
 * cairn_ref_info() - what the record is now, into *@ret (one info; free with
 * cairn_record_infos_free(*@ret, 1)). The size is the recorded one (-1 when unknown).
 */
CAIRN_PUBLIC int cairn_ref_info(cairn_ref *ref, cairn_record_info **ret, cairn_error **reterr);

/*
 * cairn_ref_finalize() - make a lazily committed immutable own its data: its mutable's active
 * snapshot is committed under the immutable's id and the mutable record is removed. A no-op for
 * any other immutable. Errors: -EINVAL for a mutable or released ref; of the snapshotter.
 * Locking: the record lock of the pair.
 */
CAIRN_PUBLIC int cairn_ref_finalize(cairn_ref *ref, cairn_error **reterr);

/*
 * cairn_ref_commit() - commit mutable @ref: a new immutable record that shares the mutable's
 * data (lazy: no snapshot work) and the one ref on it in *@ret. @ref is consumed: it stays
 * allocated, releasing it is harmless, anything else on it is -EINVAL. The policy and record type
 * are not copied; the description is.
 * Errors: -EINVAL for an immutable, released or already committed ref; -EBUSY when the mutable
 * has a persistent mount (naming it). Locking: the manager lock.
 */
CAIRN_PUBLIC int cairn_ref_commit(cairn_ref *ref, cairn_ref **ret, cairn_error **reterr);

/* cairn_ref_set_cache_policy() - set the record's cache policy (see cairn_cache_policy). */
CAIRN_PUBLIC int cairn_ref_set_cache_policy(cairn_ref *ref, cairn_cache_policy policy,
                                            cairn_error **reterr);

/* cairn_ref_set_record_type() - set the record type (NULL or "": regular). */
CAIRN_PUBLIC int cairn_ref_set_record_type(cairn_ref *ref, const char *type, cairn_error **reterr);

/*
 * cairn_cache_resolve() - the record id @name designates: an id, a tag, or a unique prefix of
 * an id, tried in that order; *@ret_id is the caller's.
 * Errors: -ENOENT "record 'NAME' not found" (a tag naming a record that is gone says so);
 * -ENOTUNIQ when the prefix matches several ids (the message names two).
 */
CAIRN_PUBLIC int cairn_cache_resolve(cairn_cache *c, const char *name, char **ret_id,
                                     cairn_error **reterr);

/*
 * cairn_cache_tag() - point tag @name at record @id (replacing where it pointed before). A tag
 * makes the record and its ancestors shared: a plain prune keeps them. Names: 1-255 bytes of
 * [A-Za-z0-9._:/@+-], not starting with '-' or '.', and not shaped like a record id.
 * Errors: -EINVAL for a bad name; -ENOENT for @id.
 */
CAIRN_PUBLIC int cairn_cache_tag(cairn_cache *c, const char *id, const char *name,
                                 cairn_error **reterr);

/*
 * cairn_cache_tag_image() - as cairn_cache_tag(), and the tag also names the image manifest blob
 * @manifest_digest that record @id came from (an image import's top layer). While the tag lives,
 * gc keeps that blob and every blob its `containerd.io/gc.ref.content*` labels name (its config
 * and layers, when the importer labelled them). @manifest_digest NULL: a plain tag.
 * Errors: -EINVAL for a bad name; CAIRN_EDIGEST for a malformed digest; -ENOENT for @id or when
 * the manifest blob is not in the content store. Locking: one write transaction.
 */
CAIRN_PUBLIC int cairn_cache_tag_image(cairn_cache *c, const char *id, const char *name,
                                       const char *manifest_digest, cairn_error **reterr);

/*
 * cairn_cache_resolve_image() - as cairn_cache_resolve(), and when @name is a tag made by
 * cairn_cache_tag_image() *@ret_manifest_digest is its manifest digest (else NULL). Both
 * strings are the caller's. @ret_manifest_digest may be NULL. Errors: as cairn_cache_resolve().
 */
CAIRN_PUBLIC int cairn_cache_resolve_image(cairn_cache *c, const char *name, char **ret_id,
                                           char **ret_manifest_digest, cairn_error **reterr);

/* cairn_cache_untag() - remove tag @name. Errors: -ENOENT "tag 'NAME' not found". */
CAIRN_PUBLIC int cairn_cache_untag(cairn_cache *c, const char *name, cairn_error **reterr);

/*
 * cairn_cache_info() - the info of record @id without taking a ref (no use is counted), into
 * *@ret (free with cairn_record_infos_free(*@ret, 1)). The size is the recorded one.
 */
CAIRN_PUBLIC int cairn_cache_info(cairn_cache *c, const char *id, cairn_record_info **ret,
                                  cairn_error **reterr);

/*
 * cairn_cache_size() - the size of record @id as cairn_ref_size() computes it, without taking a
 * ref (for tools: no use is counted, a mutable is not locked). Errors: -ENOENT.
 */
CAIRN_PUBLIC int cairn_cache_size(cairn_cache *c, const char *id, int64_t *ret,
                                  cairn_error **reterr);

/* cairn_cache_list() - every record, in id order, with recorded sizes (-1 when unknown);
 * caller frees with cairn_record_infos_free(). */
CAIRN_PUBLIC int cairn_cache_list(cairn_cache *c, cairn_record_info **ret, size_t *ret_n,
                                  cairn_error **reterr);

/*
 * cairn_cache_disk_usage() - one row per record, a lazy pair as one row (the immutable while
 * it is held, else the mutable), matching any of @filters (containerd's syntax; fields id,
 * parent, description, type, inuse, mutable, immutable, shared, private; none: all), in id
 * order, sizes computed where unknown. Caller frees with cairn_record_infos_free().
 * Errors: -EINVAL quoting a filter that does not parse.
 */
CAIRN_PUBLIC int cairn_cache_disk_usage(cairn_cache *c, const char *const *filters,
                                        size_t n_filters, cairn_record_info **ret, size_t *ret_n,
                                        cairn_error **reterr);

/* Prune shared records and the types "internal" and "frontend" too. */
#define CAIRN_PRUNE_ALL (1u << 0)
/* Choose and report (sizes computed) as prune would, but remove nothing. */
#define CAIRN_PRUNE_DRY_RUN   (1u << 1)
#define CAIRN_PRUNE_FLAGS_ALL (CAIRN_PRUNE_ALL | CAIRN_PRUNE_DRY_RUN)

/*
 * Told about each record prune removed (a pair is one report; @removed borrowed for the call). A
 * negative return stops prune and is returned: the batches of records not begun yet stay; the rest
 * of the batch being reported (up to 512 records removed in one transaction) is gone unreported.
 */
typedef int (*cairn_prune_fn)(const cairn_record_info *removed, void *userdata);

/* Version 2 appended keep_duration_ns and keep_bytes; version 1 is still accepted. */
#define CAIRN_PRUNE_OPTIONS_VERSION 2

typedef struct cairn_prune_options {
	unsigned version;           /* CAIRN_PRUNE_OPTIONS_VERSION (1 or 2) */
	unsigned flags;             /* CAIRN_PRUNE_* */
	const char *const *filters; /* as cairn_cache_disk_usage(); none: all */
	size_t n_filters;
	cairn_prune_fn fn; /* may be NULL */
	void *userdata;
	/* Version 2. Keep records used (last_used, else created_at) within this many ns; 0: off. */
	int64_t keep_duration_ns;
	/*
	 * 0: off. Otherwise remove only until the total size of all records (pairs once, sizes
	 * computed where unknown) is at or under it, victims ordered by last use (never used
	 * first, oldest first), then usage count (lowest first), then creation, then id.
	 */
	int64_t keep_bytes;
} cairn_prune_options;

/*
 * cairn_cache_prune() - remove every record that is not in use, has no children left and passes
 * the filters (skipping shared ones and the types internal and frontend unless CAIRN_PRUNE_ALL),
 * then again for the parents so freed, until nothing more qualifies. The retain policy does not
 * protect from prune (it keeps a mutable past its release, as in BuildKit). @opts may be NULL.
 * keep_duration_ns and keep_bytes narrow what goes (see cairn_prune_options); with
 * CAIRN_PRUNE_DRY_RUN the reports are those of a real prune at this moment and nothing changes.
 * Returns the number of reports (a pair counts once).
 * Errors: -EINVAL for a bad filter, flags, version or a negative keep value; the first removal
 * error (prune goes on with the others). Locking: one prune at a time per manager; the manager lock
 * while choosing.
 */
CAIRN_PUBLIC int cairn_cache_prune(cairn_cache *c, const cairn_prune_options *opts,
                                   cairn_error **reterr);

/*
 * cairn_cache_remove() - remove record @id now. A mutable takes its committed partner along; a
 * lazy immutable goes alone (its mutable stays).
 * Errors: -ENOENT; -EBUSY "record 'ID' has children: 'A', 'B'" or "record 'ID' is in use: ..."
 * (refs of this process, a mount target, its partner).
 */
CAIRN_PUBLIC int cairn_cache_remove(cairn_cache *c, const char *id, cairn_error **reterr);

/* ---- layer blobs ---- */

/* A layer blob as callers describe it; strings borrowed for the call. */
typedef struct cairn_descriptor {
	const char *digest;     /* "sha256:..." of the blob; in the content store unless @source */
	int64_t size;           /* bytes, checked when > 0; 0: unknown */
	const char *media_type; /* NULL: the OCI layer type of the compression found */
	const char *diff_id;    /* the uncompressed tar's digest; NULL: computed from the blob */
	/* Where the blob can be fetched from while it is not in the content store (a lazy blob):
	 * an opaque string the cache keeps with the record and hands to its fetcher (see
	 * cairn_cache_set_fetcher(); the remote module uses "REGISTRY/REPO", with an "http://"
	 * prefix for a plain-http registry). NULL: the blob must be in the content store. A lazy
	 * descriptor needs @diff_id, @size > 0 and @media_type. */
	const char *source;
} cairn_descriptor;

/* A blob cairn made or found; free with cairn_blob_free(). */
typedef struct cairn_blob {
	char *digest;
	int64_t size;
	char *media_type;
	char *diff_id;
} cairn_blob;

/* cairn_blob_free() - NULL-safe; returns NULL. */
CAIRN_PUBLIC cairn_blob *cairn_blob_free(cairn_blob *b);

/*
 * cairn_cache_get_by_blob() - an immutable ref on the record of blob @desc on top of @parent (NULL:
 * a base layer). Lazy: nothing is extracted. When @desc->diff_id is NULL the blob is read through
 * once to compute it (and to find its compression). Chain ids as spec §4: chain_id =
 * H(parent.chain_id, diff_id), blob_chain_id = H(parent.blob_chain_id, H(blob, diff_id)),
 * H(a, b) = sha256 of "a b". A live record with the same blob chain id is returned instead of a
 * new one; a new record whose chain id some record has already shares that record's snapshot.
 * Lazy blobs: with @desc->source set and the blob not in the content store, the record is made
 * without it (nothing is read; @desc->diff_id, @size > 0 and @media_type are trusted, and
 * checked when the blob arrives); the source and size are kept in the database with the blob
 * (content labels "cairn.lazy.source" and "cairn.lazy.size", in the transaction that makes the
 * record), also when the blob is local (harmless) or the record existed. The blob is fetched
 * through the cache's fetcher when the record is extracted, mounted, or its blob handed out
 * (cairn_ref_get_remote()). Until then the record counts 0 local bytes, fsck does not report
 * the absent blob, and gc keeps a fetched blob as it keeps any record's blob.
 * Errors: -ENOENT "blob 'DIGEST' not found" (no source given); -EINVAL for a malformed digest or
 * diff id, a size that differs from the blob's, a lazy descriptor without diff id, size or media
 * type, or a source that is empty, over 1024 bytes or holds spaces or control characters (each
 * naming the digest), or a parent that is mutable or has no chain ids ("non-addressable
 * parent"); -EOPNOTSUPP for an unsupported media type; CAIRN_ECORRUPT for a blob that does not
 * decompress (when the diff id is computed). Ownership: *@ret is the caller's.
 * Locking: the manager lock briefly; the parent's record lock while it is finalized.
 */
CAIRN_PUBLIC int cairn_cache_get_by_blob(cairn_cache *c, const cairn_descriptor *desc,
                                         const cairn_ref *parent, cairn_ref **ret,
                                         cairn_error **reterr);

/* Progress of a long call: @done of @total bytes (compressed bytes of the blobs). Called on
 * another thread than the caller's; never after the call returned. */
typedef void (*cairn_progress_fn)(uint64_t done, uint64_t total, void *userdata);

/*
 * A fetcher brings lazy blob @digest (@size bytes) from @source (as given in the descriptor) into
 * the cache's content store, verified, and returns 0; @fn/@fn_userdata (may be NULL) report its
 * bytes. It may be called from several threads at once, for different digests. Errors it
 * returns are passed on by the caller (-ENOENT when the source no longer has the blob).
 */
typedef int (*cairn_fetch_fn)(void *userdata, const char *source, const char *digest, int64_t size,
                              cairn_progress_fn fn, void *fn_userdata, cairn_error **reterr);

/*
 * cairn_cache_set_fetcher() - the fetcher (NULL: none) that cairn_ref_extract(), mounts,
 * cairn_ref_get_remote() and cairn_ref_diff() call for the lazy blobs of a chain (several at
 * once, before applying). Without one, a lazy blob is an error naming the record, the digest and
 * the source. Ownership: @userdata is the cache's from now on; @free_userdata (may be NULL) is
 * called on it when the fetcher is replaced and by cairn_cache_close(). Locking: set it before
 * the cache is shared between threads.
 */
CAIRN_PUBLIC void cairn_cache_set_fetcher(cairn_cache *c, cairn_fetch_fn fn, void *userdata,
                                          void (*free_userdata)(void *userdata));

/*
 * cairn_ref_extract() - make the snapshots of @ref's record and of its ancestors that exist only
 * as blobs, parent first: each blob is applied into a new active snapshot (overlay: its own
 * upper directory, the ancestors' layers standing in for hardlink targets; native: a copy of the
 * parent), its diff id verified, and the snapshot committed under the record's snapshot name.
 * Durability: native syncs the tree before the commit. Overlay commits first, after marking the
 * snapshot with the boot id; a process that dies loses nothing (the page cache holds the files),
 * and the first cairn_cache_open() after a reboot extracts the marked snapshots again from their
 * blobs (see there).
 * A no-op for extracted records. One extraction per record at a time (single flight: a second
 * caller waits for the first's and gets its result; @fn is the first caller's). Lazy blobs of
 * the records to extract are fetched first, all of them, several at once (one fetch per digest
 * however many callers want it) before anything is applied; @fn then counts the fetched bytes
 * and the applied bytes toward one total (it may be called from several threads, one at a time).
 * Errors: of the fetcher, prefixed "record 'ID': fetch blob 'DIGEST' from 'SOURCE'" (nothing is
 * applied; the blobs that arrived stay); -ENOENT naming the record, the digest and the source
 * for a lazy blob when no fetcher is set; CAIRN_EDIGEST when the blob's content is not its diff id
 * (naming both; the half-made snapshot is removed, nothing is committed); CAIRN_ECORRUPT for a
 * corrupt blob (naming its digest and the entry); -ENOENT when a blob is gone; errors of layer
 * apply and the snapshotter, prefixed "extract record 'ID'". Locking: none held while applying.
 */
CAIRN_PUBLIC int cairn_ref_extract(cairn_ref *ref, cairn_progress_fn fn, void *userdata,
                                   cairn_error **reterr);

/*
 * cairn_ref_set_blob() - record blob @desc as the layer of immutable @ref (finalizing it first):
 * blob, diff id, media type and chain ids. A record that has chain ids already is left alone
 * (0: read cairn_ref_info() for the effective values).
 * Errors: -ENOENT for a blob not in the content store; -EINVAL for a mutable ref or a parent
 * without chain ids; as cairn_cache_get_by_blob() for @desc. Locking: the record lock.
 */
CAIRN_PUBLIC int cairn_ref_set_blob(cairn_ref *ref, const cairn_descriptor *desc,
                                    cairn_error **reterr);

/*
 * cairn_ref_get_remote() - the blob of immutable @ref, making what is missing: every record of
 * the chain without a blob, parent first, is diffed against its parent (native: the double walk
 * of the two trees; overlay: its upper directory), compressed with @compression ("gzip", "zstd",
 * "none"; NULL: gzip) at the default level with mtimes clamped to @source_date_epoch (seconds;
 * -1: not clamped), added to the content store and set with cairn_ref_set_blob(). Records that
 * have blobs keep them whatever @compression says; lazy ones of the chain are fetched first
 * (errors as cairn_ref_extract()), not extracted. *@ret is the caller's (cairn_blob_free()).
 * Errors: -EINVAL for a mutable ref or an unknown compression; -EINVAL for a record in the chain
 * that is not extracted and has no blob; errors of the diff and the content store.
 */
CAIRN_PUBLIC int cairn_ref_get_remote(cairn_ref *ref, const char *compression,
                                      int64_t source_date_epoch, cairn_blob **ret,
                                      cairn_error **reterr);

/*
 * cairn_ref_diff() - write the layer of immutable @ref (its changes over its parent, as
 * cairn_ref_get_remote() computes them) to @fd (borrowed, written from its offset) without
 * recording anything; *@ret (may be NULL) describes what was written. A record that is only a
 * blob (lazy: fetched first) is extracted first.
 * Errors: as cairn_ref_get_remote(); -errno of write(2).
 */
CAIRN_PUBLIC int cairn_ref_diff(cairn_ref *ref, const char *compression, int64_t source_date_epoch,
                                int fd, cairn_blob **ret, cairn_error **reterr);

#ifdef __cplusplus
}
#endif
#endif
