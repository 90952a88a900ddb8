/* SPDX-License-Identifier: MIT */
/*
 * Parallel gzip: the input is cut into PGZIP_BLOCK-byte blocks by position alone, and each block
 * becomes one complete gzip member (header, deflate data, CRC-32 and size), compressed by
 * libdeflate at the given level; the output is the members in order. RFC 1952 (§2.2) makes a
 * gzip file a series of members, and the readers layers meet read them all: Go's
 * compress/gzip (containerd, Docker, BuildKit, podman, skopeo, umoci), gzip -d, libarchive,
 * Python's gzip, cairn's own reader. The bytes are a pure function of the input and the level:
 * how the caller splits its writes and how many threads run change nothing. An empty input is
 * one empty member.
 *
 * Why members and not pigz's single stream: libdeflate compresses whole buffers about 3x faster
 * than zlib at the same level (with slightly smaller output) but cannot prime a block with the
 * previous one's last 32 KiB nor end it without the final-block bit, which a single stream needs.
 * Independent 512 KiB blocks cost about 0.5% of size.
 *
 * With threads > 0 the blocks are compressed on that many worker threads while the caller
 * fills the next ones; output is handed to @emit in order, on the caller's thread, from inside
 * pgzip_write() and pgzip_finish(). With 0 threads every block is compressed on the caller's
 * thread. Memory: (2 * threads + 1) blocks of input and output, plus one compressor per thread.
 *
 * A pgzip object is used from one thread; its workers are its own.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define PGZIP_BLOCK (512 * 1024)

typedef struct pgzip pgzip;

/* Receives compressed bytes in stream order; a negative return stops the stream with it. */
typedef int (*pgzip_emit_fn)(void *userdata, const void *buf, size_t len, cairn_error **reterr);

/*
 * pgzip_new() - a parallel gzip writer at @level (0-9, as gzip's) on @threads workers (0: none).
 * Errors: -EINVAL for a level out of range, -ENOMEM, -errno from pthread_create().
 */
int pgzip_new(int level, unsigned threads, pgzip_emit_fn emit, void *userdata, pgzip **ret);

/*
 * pgzip_write() - add @len bytes. Errors: an error of @emit, or -EIO when a block cannot be
 * compressed (the message says "gzip"). After an error only pgzip_free() is allowed.
 */
int pgzip_write(pgzip *p, const void *buf, size_t len, cairn_error **reterr);

/* pgzip_finish() - compress what is left and emit everything. Errors: as pgzip_write(). */
int pgzip_finish(pgzip *p, cairn_error **reterr);

/* pgzip_free() - NULL-safe; stops and joins the workers, an unfinished stream is dropped. */
pgzip *pgzip_free(pgzip *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(pgzip *, pgzip_free)
