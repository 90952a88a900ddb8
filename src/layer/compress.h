/* SPDX-License-Identifier: MIT */
/*
 * Layer streams: reading a layer blob as its uncompressed tar, and writing a tar as a blob.
 *
 * Reading detects the compression by the magic bytes at the start of the stream (the media type is
 * only a hint: Docker's "rootfs.diff.tar" is often gzip, spec/containerd.md §12.2): gzip (1F 8B
 * 08), zstd (28 B5 2F FD, or a skippable frame), anything else is a plain tar; an empty stream is
 * an empty plain layer. gzip is inflated by ISA-L's igzip where the build has it (HAVE_ISAL) and by
 * zlib otherwise; concatenated gzip members are one stream. zstd is decoded by libzstd's streaming
 * API; concatenated and skippable frames are fine. While the bytes stream through, the reader
 * hashes the uncompressed stream (the diffID) and, when asked, the compressed one (the blob
 * digest). Memory is bounded: two 128 KiB buffers (plus four 1 MiB ones when threaded) and the
 * decoder's state; zstd frames whose
 * window exceeds LAYER_ZSTD_WINDOW_LOG_MAX are refused rather than decoded with more memory.
 *
 * Writing compresses a stream into an fd with gzip (ISA-L for levels 1-3 when present, zlib's
 * block deflate on worker threads otherwise), zstd (a level and worker threads) or nothing,
 * hashing both sides. Output is a pure function of the input bytes, the compression, the level
 * and the build's compressor (never of the number of threads): the gzip
 * header carries mtime 0, no name, XFL 0 and OS 255 ("unknown"), whichever deflater runs; zstd's
 * output does not depend on the number of workers once there is at least one.
 *
 * Neither object is thread-safe; distinct objects are independent.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/digest.h"
#include "base/error.h"

typedef enum layer_compression {
	LAYER_COMPRESSION_NONE = 0,
	LAYER_COMPRESSION_GZIP = 1,
	LAYER_COMPRESSION_ZSTD = 2,
} layer_compression;

/* The largest zstd window the reader accepts: 2^25 bytes (32 MiB), below the 64 MiB budget. */
#define LAYER_ZSTD_WINDOW_LOG_MAX 25

#define LAYER_LEVEL_DEFAULT (-1)

/* layer_compression_name() - "none", "gzip" or "zstd" (static). */
const char *layer_compression_name(layer_compression c);

/*
 * layer_compression_parse() - "none"/"uncompressed", "gzip" or "zstd", optionally followed by
 * ":LEVEL" ("gzip:6", "zstd:19"), into *@ret and *@ret_level (LAYER_LEVEL_DEFAULT without a
 * level). @ret_level may be NULL where no level applies: a level is then refused.
 * Errors: -EINVAL naming @s, for an unknown name or a level out of the compression's range.
 */
int layer_compression_parse(const char *s, layer_compression *ret, int *ret_level,
                            cairn_error **reterr);

/*
 * layer_compression_detect() - the compression the first @len bytes of a stream announce (at
 * least 8 bytes, or the whole stream if shorter, decide every case).
 */
layer_compression layer_compression_detect(const void *buf, size_t len);

/*
 * layer_media_type_parse() - the compression a layer media type claims (spec §12.3): the OCI
 * layer and nondistributable types with no suffix, "+gzip" or "+zstd"; Docker's rootfs.diff.tar
 * (NONE: detection decides), .tar.gzip and the foreign variants. Errors: -EOPNOTSUPP naming @mt
 * for anything else, encrypted layers included.
 */
int layer_media_type_parse(const char *mt, layer_compression *ret, cairn_error **reterr);

/* layer_media_type() - the OCI layer media type for @c (static). */
const char *layer_media_type(layer_compression c);

/*
 * layer_force_zlib() - for tests: use zlib for gzip even where ISA-L is built in (@on true), to
 * cover the fallback; process-wide.
 */
void layer_force_zlib(bool on);

/* layer_force_direct() - for tests: ignore opts->threaded (@on true), so that every reader decodes
 * on its caller's thread; process-wide. */
void layer_force_direct(bool on);

/* layer_have_isal() - whether gzip currently runs on ISA-L (built in and not forced off). */
bool layer_have_isal(void);

/* ---- reading ---- */

typedef struct layer_reader layer_reader;

/* Called with the number of compressed bytes read so far, after each read from the fd. */
typedef void (*layer_progress_fn)(uint64_t compressed_bytes, void *userdata);

struct layer_reader_opts {
	const char *what;           /* the blob's name for messages (its digest); may be NULL */
	bool compressed_digest;     /* also hash the compressed bytes */
	layer_progress_fn progress; /* may be NULL; always called on the caller's thread */
	void *userdata;
	/*
	 * Read and decode on a thread of the reader's own, up to 4 MiB ahead of the caller (four
	 * 1 MiB buffers), so that inflating overlaps with what the caller does with the bytes.
	 * The diffID is hashed, in stream order, on whichever side waits for the other (at
	 * first the caller's for gzip, the reader's for zstd and plain tars; two waits move it).
	 * Without a thread (pthread_create failing) the reader
	 * falls back to reading on the caller's thread. In this mode the digests, sizes and
	 * compression are only meaningful at the end of the stream.
	 */
	bool threaded;
};

/*
 * layer_reader_new() - a reader of the uncompressed stream of @fd, read from its current offset to
 * EOF. @fd is borrowed: it stays open and must outlive the reader. @opts may be NULL. Detection
 * happens on the first read. Errors: -ENOMEM.
 */
int layer_reader_new(int fd, const struct layer_reader_opts *opts, layer_reader **ret_reader,
                     cairn_error **reterr);

/*
 * layer_reader_read() - the next chunk of the uncompressed stream: *@ret_buf points into the
 * reader's buffer (borrowed, valid until the next call or free). Returns its length, 0 at the end
 * of the stream. At the end, the compressed stream has been checked complete: a truncated gzip
 * member or zstd frame, a gzip CRC or length mismatch, bytes after the last gzip member that do
 * not start another member are CAIRN_ECORRUPT; read errors are negative errno. Every message names
 * opts->what and the compression. Once it failed, every later call returns the same code.
 */
ssize_t layer_reader_read(layer_reader *r, const void **ret_buf, cairn_error **reterr);

/*
 * layer_reader_drain() - read and hash the rest of the stream (tar padding after the end marker
 * counts in the diffID). Errors: as layer_reader_read().
 */
int layer_reader_drain(layer_reader *r, cairn_error **reterr);

/* layer_reader_compression() - what detection found (NONE before the first read). */
layer_compression layer_reader_compression(const layer_reader *r);

/* layer_reader_size() - uncompressed bytes delivered so far. */
uint64_t layer_reader_size(const layer_reader *r);

/* layer_reader_caller_hashed() - how many buffers of a threaded reader the caller's thread
 * hashed (the reader's thread hashed the others); for tests and profiles. */
uint64_t layer_reader_caller_hashed(const layer_reader *r);

/* layer_reader_compressed_size() - bytes read from the fd so far. */
uint64_t layer_reader_compressed_size(const layer_reader *r);

/*
 * layer_reader_digests() - the diffID (SHA-256 of the uncompressed bytes delivered so far) and,
 * if opts->compressed_digest was set, the digest of the compressed bytes read so far (for a plain
 * tar the two are equal). Either pointer may be NULL. Meaningful after the stream's end.
 */
void layer_reader_digests(const layer_reader *r, digest *ret_diffid, digest *ret_compressed);

/* layer_reader_free() - NULL-safe; does not close the fd. Returns NULL. */
layer_reader *layer_reader_free(layer_reader *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(layer_reader *, layer_reader_free)

/* ---- writing ---- */

typedef struct layer_writer layer_writer;

struct layer_writer_opts {
	layer_compression compression;
	/*
	 * gzip: 0-9; with ISA-L, 1-3 run isal_deflate at its levels 1-3 (one gzip member, one
	 * thread), the others libdeflate's levels in parallel, one gzip member per 512 KiB block
	 * (see pgzip.h). LAYER_LEVEL_DEFAULT: ISA-L level 1 with ISA-L, else libdeflate 6.
	 * zstd: 1-19 (22 with more memory); LAYER_LEVEL_DEFAULT is zstd's 3. none: ignored.
	 */
	int level;
	/*
	 * Worker threads for zstd and for libdeflate's gzip (see pgzip.h); 0 compresses on the
	 * calling thread. The output does not depend on it. ISA-L: unused.
	 */
	unsigned threads;
	const char *what; /* the output's name for messages; may be NULL */
};

/*
 * layer_writer_new() - a writer that compresses into @fd (borrowed; written from its current
 * offset, never closed). Errors: -EINVAL for an unknown compression or a level out of range
 * (quoted), -ENOMEM.
 */
int layer_writer_new(int fd, const struct layer_writer_opts *opts, layer_writer **ret_writer,
                     cairn_error **reterr);

/*
 * layer_writer_write() - compress @len bytes. Errors: negative errno from write(2) naming
 * opts->what; -EIO for a compressor failure. After a failure the writer only accepts free().
 */
int layer_writer_write(layer_writer *w, const void *buf, size_t len, cairn_error **reterr);

/*
 * layer_writer_finish() - end the stream (trailer, last frame) and give the diffID, the digest
 * of the bytes written to the fd and both sizes; every out-pointer may be NULL. The fd is not
 * fsynced. Errors: as layer_writer_write(); a second finish is -EINVAL.
 */
int layer_writer_finish(layer_writer *w, digest *ret_diffid, digest *ret_compressed,
                        uint64_t *ret_size, uint64_t *ret_compressed_size, cairn_error **reterr);

/* layer_writer_free() - NULL-safe; an unfinished stream is abandoned. Returns NULL. */
layer_writer *layer_writer_free(layer_writer *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(layer_writer *, layer_writer_free)
