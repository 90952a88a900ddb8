/* SPDX-License-Identifier: MIT */
/*
 * Digests: "sha256:<64 lowercase hex>". Only sha256 is accepted for content we store; the
 * parser knows sha384 and sha512 by name so that it can say "unsupported" rather than
 * "malformed".
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define DIGEST_HEX_LEN 64
#define DIGEST_STR_LEN (7 + DIGEST_HEX_LEN) /* "sha256:" + hex, without NUL */

/* A parsed sha256 digest: raw bytes and its canonical text. Plain value, copy freely. */
typedef struct digest {
	uint8_t raw[32];
	char str[DIGEST_STR_LEN + 1];
} digest;

/*
 * digest_parse() - validate @s and fill *@ret. Errors: CAIRN_EDIGEST for anything but
 * "sha256:" followed by exactly 64 lowercase hex digits (upper case, wrong length, unknown or
 * unsupported algorithm, path characters); the message quotes @s (truncated to 80 bytes).
 * *@ret is untouched on failure.
 */
int digest_parse(const char *s, digest *ret, cairn_error **reterr);

/* digest_valid() - whether @s is a valid sha256 digest string (no error object). */
bool digest_valid(const char *s);

/* digest_hex() - the 64-char hex part of @d's string; borrowed from @d. */
static inline const char *digest_hex(const digest *d)
{
	return d->str + 7;
}

/* digest_from_raw() - fill *@ret from 32 raw bytes. */
void digest_from_raw(const uint8_t raw[32], digest *ret);

/* A streaming SHA-256 (OpenSSL EVP, which uses the CPU's SHA extensions). Not thread-safe. */
typedef struct hasher hasher;

/* hasher_new() - a fresh hasher, or NULL on OOM. Free with hasher_free (NULL-safe). */
hasher *hasher_new(void);
hasher *hasher_free(hasher *h);
/* hasher_update() - feed @len bytes. */
void hasher_update(hasher *h, const void *buf, size_t len);
/* hasher_reset() - back to the empty state. */
void hasher_reset(hasher *h);
/* hasher_peek() - the digest of everything fed so far; @h stays usable for more updates. */
void hasher_peek(const hasher *h, digest *ret);
/* hasher_total() - number of bytes fed since creation or reset. */
uint64_t hasher_total(const hasher *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(hasher *, hasher_free)

/* digest_buffer() - the digest of a memory buffer. */
void digest_buffer(const void *buf, size_t len, digest *ret);

/*
 * digest_fd() - hash @fd from its current offset to EOF; *@ret_size gets the byte count
 * (may be NULL). Errors: negative errno from read(), with a message naming @what.
 */
int digest_fd(int fd, const char *what, digest *ret, uint64_t *ret_size, cairn_error **reterr);
