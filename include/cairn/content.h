/* SPDX-License-Identifier: MIT */
/*
 * Content: blobs addressed by their sha256 digest, stored as ROOT/blobs/sha256/<hex>.
 * A blob becomes visible only once its bytes hashed to its digest; partial writes live in
 * ROOT/ingest/ and are never read as content. Digest strings are "sha256:<64 lowercase hex>";
 * anything else is CAIRN_EDIGEST before any path is touched.
 */
#ifndef CAIRN_CONTENT_H
#define CAIRN_CONTENT_H

#include <stdint.h>

#include "cairn/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_DIGEST_MAX 72 /* "sha256:" + 64 hex + NUL, rounded up */

typedef struct cairn_content_info {
	char digest[CAIRN_DIGEST_MAX];
	uint64_t size;
	int64_t created_ns; /* commit time, ns since the epoch */
} cairn_content_info;

/*
 * cairn_content_add_fd() - stream @fd to its end into the store. With @expected (may be NULL)
 * the content must hash to it. Adding content that is already there is success.
 * Returns 1 when the blob was new, 0 when it was already present.
 * Errors: CAIRN_EDIGEST for a malformed @expected or content that does not match it (the message
 * names both digests; nothing is committed); -errno from reading @fd or writing the store.
 * Ownership: @fd stays the caller's. Locking: thread-safe.
 */
CAIRN_PUBLIC int cairn_content_add_fd(cairn_store *store, int fd, const char *expected,
                                      cairn_content_info *ret_info, cairn_error **reterr);

/*
 * cairn_content_open() - a read-only fd (O_CLOEXEC, caller closes) on blob @digest.
 * Errors: CAIRN_EDIGEST (malformed), -ENOENT "blob '<digest>' not found".
 */
CAIRN_PUBLIC int cairn_content_open(cairn_store *store, const char *digest, int *ret_fd,
                                    cairn_error **reterr);

/* cairn_content_info_get() - size and commit time of @digest. Errors as cairn_content_open(). */
CAIRN_PUBLIC int cairn_content_info_get(cairn_store *store, const char *digest,
                                        cairn_content_info *ret_info, cairn_error **reterr);

/* A walk callback: @info is borrowed for the call; a negative return stops the walk. */
typedef int (*cairn_content_walk_fn)(const cairn_content_info *info, void *userdata);

/* cairn_content_walk() - every committed blob, in digest order. */
CAIRN_PUBLIC int cairn_content_walk(cairn_store *store, cairn_content_walk_fn fn, void *userdata,
                                    cairn_error **reterr);

/* cairn_content_delete() - remove blob @digest and its labels. Errors: CAIRN_EDIGEST, -ENOENT. */
CAIRN_PUBLIC int cairn_content_delete(cairn_store *store, const char *digest, cairn_error **reterr);

/* cairn_content_verify() - re-hash blob @digest. Errors: CAIRN_EDIGEST naming expected and
 * actual digests when the file no longer matches; -ENOENT. */
CAIRN_PUBLIC int cairn_content_verify(cairn_store *store, const char *digest, cairn_error **reterr);

/*
 * cairn_content_label_set() - set label @key of blob @digest to @value (NULL or "" deletes it).
 * A key and value together are at most 4096 bytes.
 * Errors: CAIRN_EDIGEST (malformed), -ENOENT (no such blob), -EINVAL (empty or oversized label).
 * Locking: one write transaction of the store's database.
 */
CAIRN_PUBLIC int cairn_content_label_set(cairn_store *store, const char *digest, const char *key,
                                         const char *value, cairn_error **reterr);

/* A label callback: @key and @value borrowed for the call; a negative return stops the walk. */
typedef int (*cairn_label_fn)(const char *key, const char *value, void *userdata);

/* cairn_content_labels() - every label of blob @digest, in key order. Errors as label_set. */
CAIRN_PUBLIC int cairn_content_labels(cairn_store *store, const char *digest, cairn_label_fn fn,
                                      void *userdata, cairn_error **reterr);

#ifdef __cplusplus
}
#endif
#endif
