/* SPDX-License-Identifier: MIT */
/*
 * cairn error objects.
 *
 * Every fallible function returns 0 (or a count) on success and a negative error code on
 * failure: a negative errno (-ENOENT, -EEXIST, -EINVAL, -EBUSY, -ENOSPC, ...) or one of the
 * domain codes below, which sit in a reserved range above every errno. When the caller passes a
 * non-NULL `reterr`, the failing function also stores a cairn_error that names the object
 * involved ("open 'blobs/sha256/ab..': No such file or directory"). Callers that add context
 * prefix the message; they never replace it.
 */
#ifndef CAIRN_ERROR_H
#define CAIRN_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CAIRN_PUBLIC __attribute__((visibility("default")))
#else
#define CAIRN_PUBLIC
#endif

/* Domain error codes (negative, below -4096 so they never collide with an errno). */
enum {
	CAIRN_EDIGEST = -4097,       /* malformed digest, or content that does not hash to it */
	CAIRN_ECORRUPT = -4098,      /* on-disk state that cannot be trusted (meta.db, a blob) */
	CAIRN_EPRECONDITION = -4099, /* object in the wrong state (snapshot has children, ...) */
	CAIRN_ELOCKED = -4100,       /* the store or an ingest ref is held by someone else */
	CAIRN_ESCHEMA = -4101,       /* meta.db written by a newer cairn */
};

/* An error: a code and a message. Owned by whoever received it; free with cairn_error_free. */
typedef struct cairn_error cairn_error;

/*
 * cairn_error_code() - the negative code the failing call returned.
 * cairn_error_message() - the message; borrowed, valid until cairn_error_free(@e).
 * Both accept NULL (code 0, message "").
 */
CAIRN_PUBLIC int cairn_error_code(const cairn_error *e);
CAIRN_PUBLIC const char *cairn_error_message(const cairn_error *e);

/* cairn_error_free() - free @e (NULL is fine). Returns NULL. */
CAIRN_PUBLIC cairn_error *cairn_error_free(cairn_error *e);

/*
 * cairn_strerror() - a static, human text for @code: strerror() for a negative errno, a name
 * for the domain codes, "Unknown error N" otherwise. Thread-safe; never NULL.
 */
CAIRN_PUBLIC const char *cairn_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
