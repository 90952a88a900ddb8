/* SPDX-License-Identifier: MIT */
/*
 * The content store: blobs addressed by their sha256 digest, with resumable ingests. The
 * semantics are containerd's local content store (spec/containerd.md §9) over a root dir fd:
 *
 *   blobs/sha256/<hex>     committed blobs, mode 0444; a file appears here only whole, fsynced
 *                          and verified (renamed from its ingest, RENAME_NOREPLACE)
 *   ingest/<H>/            one per ingest ref, H = hex sha256 of the ref string:
 *       ref                the ref string
 *       data               the bytes written so far (every partial byte lives here)
 *       startedat          ns since the epoch, decimal text (written atomically)
 *       updatedat          ns since the epoch, decimal text (refreshed on close)
 *       total              expected size, decimal text; only when known
 *   tmp/                   staging for other modules; the store only creates it
 *
 * An ingest is owned by at most one writer at a time: the writer holds flock(LOCK_EX) on the
 * ingest directory. flock belongs to an open file description, so two writers on one ref
 * conflict whether they are in two processes or two threads of one; the kernel drops the lock
 * when a process dies, and the ingest stays on disk to be resumed.
 *
 * Labels are not kept here: they live in the meta database (src/meta/labels.h), which the
 * public wrappers consult; this module knows only files.
 *
 * Digest arguments are strings, validated with digest_parse() before any path is built: a
 * malformed one is CAIRN_EDIGEST and touches nothing.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/digest.h"
#include "base/error.h"

/* The longest ingest ref accepted, in bytes. */
#define CONTENT_REF_MAX 1024

/*
 * A store handle. Locking: thread-safe; it holds only the root fd, never mutable state, so any
 * number of threads may use it at once (cross-thread and cross-process exclusion is per ingest,
 * by flock).
 */
typedef struct content_store content_store;

/* A writer on one ingest. Locking: not thread-safe; one thread at a time may use a writer. */
typedef struct content_writer content_writer;

/* A committed blob. */
typedef struct content_blob_info {
	char digest[DIGEST_STR_LEN + 1];
	uint64_t size;
	int64_t created_ns; /* mtime of the blob file: the commit time, ns since the epoch */
} content_blob_info;

/* An ingest in progress (or abandoned and resumable). */
typedef struct content_ingest_status {
	char ref[CONTENT_REF_MAX + 1];
	uint64_t offset;    /* bytes in data */
	uint64_t total;     /* expected size, 0 when unknown */
	int64_t started_ns; /* ns since the epoch */
	int64_t updated_ns; /* later of the updatedat file and the data file's mtime */
} content_ingest_status;

/*
 * content_store_open() - a store over directory fd @rootfd, creating blobs/sha256, ingest and
 * tmp below it when missing. Ownership: @rootfd stays the caller's (the store keeps a dup).
 * *@ret is the caller's; free with content_store_free().
 * Errors: -errno from dup or mkdir, with the directory named.
 */
int content_store_open(int rootfd, content_store **ret, cairn_error **reterr);

/* content_store_free() - NULL-safe; writers must have been freed first. Returns NULL. */
content_store *content_store_free(content_store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(content_store *, content_store_free)

/*
 * content_writer_open() - open the ingest @ref for writing: a new one, or resume an existing
 * one (its data is re-hashed and the writer's offset is its size). @expected_size (0: unknown)
 * is recorded as the ingest's total; when the ingest on disk has a different non-zero total,
 * or a different ref string, or more data than @expected_size, the old bytes are discarded and
 * the ingest starts over (containerd does the same). @expected_digest (may be NULL) and
 * @expected_size are the defaults content_writer_commit() checks against.
 * *@ret is the caller's: end it with content_writer_commit() and/or content_writer_close(), or
 * content_writer_free().
 * Errors: -EINVAL for an empty ref or one longer than CONTENT_REF_MAX; CAIRN_EDIGEST for a
 * malformed @expected_digest; -EEXIST "blob '<digest>' already exists" when @expected_digest is
 * committed already (no ingest is left behind); CAIRN_ELOCKED "ingest '<ref>' is locked" when
 * another writer (any process or thread) holds @ref; -errno from the filesystem.
 * Locking: takes the ingest's flock without waiting; the writer holds it until commit or close.
 * Callers that want to wait retry on CAIRN_ELOCKED.
 */
int content_writer_open(content_store *s, const char *ref, uint64_t expected_size,
                        const char *expected_digest, content_writer **ret, cairn_error **reterr);

/*
 * content_writer_write() - append @len bytes. The bytes that reached the file are hashed and
 * counted even when a later part of the write fails, so the writer stays consistent with its
 * data and can be committed, truncated or closed for a resume.
 * Errors: CAIRN_EPRECONDITION once commit was called (whatever its outcome); -errno from write(2)
 * (-ENOSPC, -EIO) naming the ingest.
 */
int content_writer_write(content_writer *w, const void *buf, size_t len, cairn_error **reterr);

/* content_writer_offset() - bytes written so far (including those resumed from disk). */
uint64_t content_writer_offset(const content_writer *w);

/* content_writer_digest() - digest of the bytes written so far. */
void content_writer_digest(const content_writer *w, digest *ret);

/* content_writer_status() - the writer's in-memory status (ref, offset, total, times). */
void content_writer_status(const content_writer *w, content_ingest_status *ret);

/*
 * content_writer_truncate() - discard the bytes written: only @size 0 is supported.
 * Errors: -EINVAL for any other size; CAIRN_EPRECONDITION after commit; -errno from ftruncate.
 */
int content_writer_truncate(content_writer *w, uint64_t size, cairn_error **reterr);

/*
 * content_writer_commit() - fsync the data, check it and make it blob <digest>: chmod 0444,
 * renameat2(RENAME_NOREPLACE) into blobs/sha256/, fsync blobs/sha256, remove the ingest.
 * @size (0: the writer's expected size, if any) and @expected (NULL: the writer's expected
 * digest, if any) are checked first. *@ret_digest (may be NULL) gets the content's digest.
 * Returns 1 when this call created the blob, 0 when the blob existed already (another writer
 * won the race; this ingest is removed all the same, and the ref is free).
 * Errors: CAIRN_EDIGEST for a malformed @expected, or content that hashes otherwise (the
 * message names the expected and the actual digest); CAIRN_EPRECONDITION "expected size N,
 * got M", and for a writer whose commit was called already; CAIRN_ECORRUPT when the data file
 * no longer holds what was written; -errno from fsync, chmod or rename. After a size or digest
 * mismatch nothing is committed and the ingest stays, so a new writer on the ref resumes its
 * bytes. A failed fsync of blobs/sha256 is reported although the blob is in place; a failure to
 * remove the ingest after the rename is not (the next writer on the ref starts over).
 * Locking: always releases the ingest lock, success or not; the writer then only answers
 * offset/digest/status and must still be freed with content_writer_close() or _free().
 */
int content_writer_commit(content_writer *w, uint64_t size, const char *expected,
                          digest *ret_digest, cairn_error **reterr);

/*
 * content_writer_close() - fsync the data, record updatedat, release the lock and free @w
 * (always, even on error). The ingest stays on disk for a later resume. After a commit it only
 * frees. Errors: -errno from fsync or writing updatedat. Ownership: consumes @w (NULL is fine).
 */
int content_writer_close(content_writer *w, cairn_error **reterr);

/* content_writer_free() - content_writer_close() without error reporting. Returns NULL. */
content_writer *content_writer_free(content_writer *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(content_writer *, content_writer_free)

/*
 * content_abort() - delete the ingest @ref and its bytes.
 * Errors: -EINVAL (bad ref), -ENOENT "ingest '<ref>' not found", CAIRN_ELOCKED when a writer
 * holds it, -errno from removal.
 * Locking: takes the ingest's flock without waiting, for the removal.
 */
int content_abort(content_store *s, const char *ref, cairn_error **reterr);

/*
 * content_status() - status of ingest @ref, read from disk (the offset is the size of data).
 * Errors: -EINVAL (bad ref), -ENOENT "ingest '<ref>' not found" (also when its ref or data
 * file is missing), -errno. Locking: none; a writer may be appending meanwhile.
 */
int content_status(content_store *s, const char *ref, content_ingest_status *ret,
                   cairn_error **reterr);

/* A callback over ingests or blobs: the argument is borrowed for the call; a negative return
 * stops the iteration and is returned by it. */
typedef int (*content_ingest_fn)(const content_ingest_status *st, void *userdata);
typedef int (*content_blob_fn)(const content_blob_info *info, void *userdata);

/*
 * content_list_ingests() - call @fn for every ingest on disk, in no particular order. Ingests
 * that vanish meanwhile, or have no readable ref or data file yet, are skipped.
 * Errors: -errno reading ingest/, or @fn's negative return.
 */
int content_list_ingests(content_store *s, content_ingest_fn fn, void *userdata,
                         cairn_error **reterr);

/* An ingest directory that no writer holds, as content_check_ingests() sees it. */
typedef struct content_ingest_check {
	const char *key;    /* its directory is ingest/<key> */
	const char *ref;    /* NULL when it has no readable ref or data file (a write cut short) */
	uint64_t offset;    /* bytes in data */
	int64_t updated_ns; /* as content_ingest_status; without a ref: the directory's mtime */
} content_ingest_check;

/* Called per unheld ingest, with its lock held: 1 removes it, 0 keeps it, < 0 stops. */
typedef int (*content_ingest_check_fn)(const content_ingest_check *c, void *userdata);

/*
 * content_check_ingests() - call @fn for every ingest directory that no writer holds (held
 * ones are in use and skipped; so are entries that are not ingest directories, which
 * content_reconcile() removes), and remove those for which @fn returns 1, still holding the
 * lock, so that no writer can take it meanwhile. For fsck. Returns the number removed.
 * Errors: -errno reading or removing (naming the directory), or @fn's negative return.
 * Locking: takes each ingest's flock without waiting, one at a time.
 */
int content_check_ingests(content_store *s, content_ingest_check_fn fn, void *userdata,
                          cairn_error **reterr);

/*
 * content_add_fd() - stream @fd from its current offset to EOF into the store, through an
 * ingest with a fresh unique ref that is aborted on any failure. With @expected (may be NULL)
 * the content must hash to it; when @expected is committed already nothing is read.
 * *@ret_digest and *@ret_size (each may be NULL) describe the blob.
 * Returns 1 when the blob is new, 0 when it was present already.
 * Errors: CAIRN_EDIGEST (malformed @expected, or a mismatch naming both digests: nothing is
 * committed); -errno from read(2) on @fd ("read 'what'") or from the store.
 * Ownership: @fd stays the caller's.
 */
int content_add_fd(content_store *s, int fd, const char *expected, digest *ret_digest,
                   uint64_t *ret_size, cairn_error **reterr);

/* content_add_buffer() - content_add_fd() for @len bytes at @buf. */
int content_add_buffer(content_store *s, const void *buf, size_t len, const char *expected,
                       digest *ret_digest, cairn_error **reterr);

/*
 * content_open() - a read-only fd (O_CLOEXEC, the caller's) on blob @digest; *@ret_size (may be
 * NULL) gets its size at open time.
 * Errors: CAIRN_EDIGEST for a malformed @digest (nothing touched), -ENOENT "blob '<digest>' not
 * found", CAIRN_ECORRUPT when the entry is not a regular file, -errno.
 */
int content_open(content_store *s, const char *digest, int *ret_fd, uint64_t *ret_size,
                 cairn_error **reterr);

/* content_info() - size and commit time of blob @digest. Errors as content_open(). */
int content_info(content_store *s, const char *digest, content_blob_info *ret,
                 cairn_error **reterr);

/* content_exists() - 1 when blob @digest is committed, 0 when not. Errors: CAIRN_EDIGEST,
 * -errno other than -ENOENT. */
int content_exists(content_store *s, const char *digest, cairn_error **reterr);

/*
 * content_walk() - call @fn for every committed blob, in digest order. Names under
 * blobs/sha256 that are not 64 lowercase hex digits, and entries that are not regular files,
 * are skipped; blobs deleted during the walk are skipped. @fn may delete blobs.
 * Errors: -errno reading blobs/sha256, or @fn's negative return.
 */
int content_walk(content_store *s, content_blob_fn fn, void *userdata, cairn_error **reterr);

/* content_delete() - remove blob @digest. Errors: CAIRN_EDIGEST, -ENOENT "blob '<digest>' not
 * found", -errno. A reader holding it open keeps its bytes. */
int content_delete(content_store *s, const char *digest, cairn_error **reterr);

/*
 * content_verify() - re-hash blob @digest. Errors: CAIRN_EDIGEST "blob 'A' is corrupt: content
 * hashes to 'B'" when it no longer matches; CAIRN_EDIGEST (malformed), -ENOENT, -errno.
 */
int content_verify(content_store *s, const char *digest, cairn_error **reterr);

/*
 * content_reconcile() - remove what a crash or a foreign tool may have left: entries under
 * blobs/sha256 whose names are not digests (temp files) or that are not regular files, entries
 * under ingest/ that are not ingest directories, and, among the ingests no writer holds, those
 * without a ref file (older than 10 minutes: a younger one may be a writer between mkdir and
 * lock), those of a content_add_*() whose process died, and interrupted atomic-write temp files.
 * Resumable ingests stay. Returns the number of entries removed.
 * Errors: -errno reading or removing, naming the entry.
 * Locking: takes each ingest's flock without waiting; held ingests are left alone, so this is
 * safe while other processes write.
 */
int content_reconcile(content_store *s, cairn_error **reterr);
