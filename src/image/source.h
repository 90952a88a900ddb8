/* SPDX-License-Identifier: MIT */
/*
 * Where an import reads from: an OCI image layout directory or an uncompressed tar archive
 * (docker save, docker-archive). Files are addressed by their path inside the layout or the
 * archive ("index.json", "blobs/sha256/<hex>", "<id>/layer.tar").
 *
 * Directory: every open goes through fs_openat() confined to the layout (a symlinked blobs/ or
 * a "../" cannot leave it), opened O_NONBLOCK (a FIFO never blocks) and must be a regular file.
 * Archive: the members are indexed once (name, data offset, size; the outer tar is uncompressed,
 * so a member's bytes are a range of the file, read with pread and never held in memory);
 * symlink and hardlink members are followed lexically inside the archive, at most 8 hops;
 * duplicate names: the last one wins, as tar extraction would have it.
 * Not thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct image_source image_source;

/* A readable range: @fd (borrowed from the source, or the caller's when @owned) from @offset. */
struct image_range {
	int fd;
	bool owned;
	uint64_t offset, size;
};

/*
 * image_source_open() - @path is a directory (a layout) or a regular file (a tar archive).
 * Errors: -ENOENT "'PATH' not found"; CAIRN_ECORRUPT for an archive that is not an uncompressed
 * tar or has a corrupt header (naming it); -errno naming @path.
 */
int image_source_open(const char *path, image_source **ret, cairn_error **reterr);
image_source *image_source_free(image_source *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(image_source *, image_source_free)

/* image_source_is_archive() - whether @s is a tar archive. */
bool image_source_is_archive(const image_source *s);

/* image_source_path() - the path given at open; borrowed. */
const char *image_source_path(const image_source *s);

/* image_source_exists() - whether file @name is there (a regular file or an archive member). */
bool image_source_exists(image_source *s, const char *name);

/*
 * image_source_range() - the bytes of @name into *@ret (close with image_range_close()).
 * Errors: CAIRN_ECORRUPT "'SRC/NAME': missing" when absent (a missing member of a layout is
 * bad input, not "not found"), "not a regular file"; -errno naming the file.
 */
int image_source_range(image_source *s, const char *name, struct image_range *ret,
                       cairn_error **reterr);
void image_range_close(struct image_range *r);

/*
 * image_source_read() - all of @name into a NUL-terminated buffer *@ret (caller frees), checked
 * against @max by its size before a byte is read: -EFBIG "'SRC/NAME' is too large: N bytes (at
 * most MAX)". Errors: as image_source_range(); -EIO for a short read.
 */
int image_source_read(image_source *s, const char *name, size_t max, char **ret, size_t *ret_len,
                      cairn_error **reterr);
