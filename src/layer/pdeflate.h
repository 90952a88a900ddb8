/* SPDX-License-Identifier: MIT */
/*
 * Block deflate: a raw deflate stream made of independently compressed blocks, so that several
 * threads can compress one stream (the idea pigz uses; written here from the format).
 *
 * The input is cut into PDEFLATE_BLOCK-byte blocks by position alone. Each block is deflated
 * by zlib with the last 32 KiB of the block before it as the dictionary, and ends with a sync
 * flush (an empty stored block) so the next one starts on a byte boundary; the last block ends
 * the stream. The result is one ordinary deflate stream, readable by every inflater, and a pure
 * function of the input bytes and the level: how the caller splits its writes and how many
 * threads run change nothing.
 *
 * With threads > 0 the blocks are compressed on that many worker threads while the caller
 * fills the next ones; output is handed to @emit in order, on the caller's thread, from inside
 * pdeflate_write() and pdeflate_finish(). With 0 threads every block is compressed on the
 * caller's thread. Memory: (2 * threads + 1) blocks of input and output, plus one zlib state
 * per thread (about 6 MiB in all for two threads).
 *
 * A pdeflate object is used from one thread; its workers are its own.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define PDEFLATE_BLOCK (512 * 1024)

typedef struct pdeflate pdeflate;

/* Receives compressed bytes in stream order; a negative return stops the stream with it. */
typedef int (*pdeflate_emit_fn)(void *userdata, const void *buf, size_t len, cairn_error **reterr);

/*
 * pdeflate_new() - a block deflater at zlib @level (0-9) on @threads workers (0: none).
 * Errors: -EINVAL for a level out of range, -ENOMEM, -errno from pthread_create().
 */
int pdeflate_new(int level, unsigned threads, pdeflate_emit_fn emit, void *userdata,
                 pdeflate **ret);

/*
 * pdeflate_write() - add @len bytes. Errors: an error of @emit, or -EIO when zlib fails (the
 * message says "deflate"). After an error only pdeflate_free() is allowed.
 */
int pdeflate_write(pdeflate *p, const void *buf, size_t len, cairn_error **reterr);

/*
 * pdeflate_finish() - compress what is left, emit everything, and give the CRC-32 of all input
 * (for the gzip trailer). Errors: as pdeflate_write().
 */
int pdeflate_finish(pdeflate *p, uint32_t *ret_crc, cairn_error **reterr);

/* pdeflate_free() - NULL-safe; stops and joins the workers, an unfinished stream is dropped. */
pdeflate *pdeflate_free(pdeflate *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(pdeflate *, pdeflate_free)
