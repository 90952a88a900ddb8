/* SPDX-License-Identifier: MIT */
/*
 * The store: one directory holding blobs, snapshots and the metadata database.
 *
 *   ROOT/meta.db            SQLite (WAL): the single source of truth
 *   ROOT/blobs/sha256/<hex> content, as in an OCI image layout
 *   ROOT/ingest/<h>/        partial writes, resumable
 *   ROOT/snapshots/<id>/    snapshot directories
 *   ROOT/tmp/               staging; garbage after a crash
 *   ROOT/LOCK               flock: shared for normal use, exclusive for gc and fsck --repair
 *
 * A cairn_store is thread-safe: every function taking one may be called from any thread.
 */
#ifndef CAIRN_STORE_H
#define CAIRN_STORE_H

#include <stdint.h>

#include "cairn/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_store cairn_store;

#define CAIRN_STORE_OPTIONS_VERSION 1

/* Take ROOT/LOCK exclusively (gc, fsck --repair) instead of shared. */
#define CAIRN_STORE_EXCLUSIVE (1u << 0)
/* Fail with CAIRN_ELOCKED at once instead of waiting for the lock. */
#define CAIRN_STORE_NOWAIT (1u << 1)
/* Do not create a missing store: -ENOENT naming the root. */
#define CAIRN_STORE_NOCREATE  (1u << 2)
#define CAIRN_STORE_FLAGS_ALL (CAIRN_STORE_EXCLUSIVE | CAIRN_STORE_NOWAIT | CAIRN_STORE_NOCREATE)

typedef struct cairn_store_options {
	unsigned version;        /* CAIRN_STORE_OPTIONS_VERSION */
	unsigned flags;          /* CAIRN_STORE_* */
	const char *snapshotter; /* "overlay", "native" or NULL for the store's default */
} cairn_store_options;

/*
 * cairn_store_default_root() - the root used when none is given: $CAIRN_ROOT if set, else
 * /var/lib/cairn for root, else $XDG_DATA_HOME/cairn (~/.local/share/cairn). Returns a newly
 * allocated string (caller frees) or NULL on OOM or when no home is known.
 */
CAIRN_PUBLIC char *cairn_store_default_root(void);

/*
 * cairn_store_open() - open the store at @root, creating it (mode 0700) unless
 * CAIRN_STORE_NOCREATE. @opts may be NULL (defaults). Takes ROOT/LOCK, opens meta.db (migrating
 * its schema forward), and reconciles what a crash may have left: empties tmp/, removes blob
 * files whose name is not a valid digest.
 * Errors: -EINVAL for unknown flags or options version; -ENOENT (NOCREATE, missing root);
 * -EACCES, -EROFS naming the path that could not be created or written; CAIRN_ELOCKED when the
 * lock is held and CAIRN_STORE_NOWAIT was given; CAIRN_ECORRUPT naming meta.db when it is not a
 * database (it is never recreated); CAIRN_ESCHEMA when a newer cairn wrote it.
 * Ownership: *@ret_store belongs to the caller; release with cairn_store_close().
 * Locking: takes the LOCK flock for the lifetime of the handle.
 */
CAIRN_PUBLIC int cairn_store_open(const char *root, const cairn_store_options *opts,
                                  cairn_store **ret_store, cairn_error **reterr);

/* cairn_store_close() - release the lock and everything the handle owns. NULL-safe; NULL. */
CAIRN_PUBLIC cairn_store *cairn_store_close(cairn_store *store);

/* Bytes allocated on disk under a store's root, by part (st_blocks * 512, as du counts). */
typedef struct cairn_store_usage {
	uint64_t total;     /* the sum of the parts: what `du -sx ROOT` reports */
	uint64_t blobs;     /* blobs/ */
	uint64_t snapshots; /* snapshots/: the data of every snapshot and record */
	uint64_t metadata;  /* meta.db with its -wal and -shm files */
	uint64_t ingest;    /* ingest/: partial writes */
	uint64_t tmp;       /* tmp/: staging */
	uint64_t other;     /* the root directory itself, LOCK and anything else */
} cairn_store_usage;

/*
 * cairn_store_disk_usage() - walk the whole root and fill *@ret: allocated blocks of every file
 * and directory, each hardlinked inode counted once, staying on the root's filesystem (a mount
 * inside the root is not entered), as `du -sx ROOT` does. Files that vanish during the walk
 * count nothing. The cost is one stat per file under the root.
 * Errors: -EINVAL for NULL arguments; -errno of open, stat or readdir naming the path.
 * Locking: none (it reads the filesystem only; others may write meanwhile).
 */
CAIRN_PUBLIC int cairn_store_disk_usage(cairn_store *store, cairn_store_usage *ret,
                                        cairn_error **reterr);

/* cairn_store_root() - the root path; borrowed, valid until cairn_store_close(). */
CAIRN_PUBLIC const char *cairn_store_root(const cairn_store *store);

#ifdef __cplusplus
}
#endif
#endif
