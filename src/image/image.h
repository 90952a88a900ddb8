/* SPDX-License-Identifier: MIT */
/* Helpers shared by import.c and export.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/digest.h"
#include "base/error.h"
#include "cairn/image.h"
#include "image/spec.h"

/* The gc labels an importer puts on a manifest blob (containerd's). */
#define LABEL_GC_CONFIG "containerd.io/gc.ref.content.config"
#define LABEL_GC_LAYER  "containerd.io/gc.ref.content.l."

/* image_info_new() - an empty info for @n layers (arrays allocated, zeroed); NULL on OOM. */
cairn_image_info *image_info_new(size_t n);

/*
 * image_manifest_build() - the OCI manifest JSON (compact, fixed key order) for config @config
 * of @config_size bytes with media type @config_mt and layers @layers (descriptors, digest,
 * size and media type used). *@ret is the caller's (free()). Errors: -ENOMEM.
 */
int image_manifest_build(const char *config_mt, const digest *config, int64_t config_size,
                         const struct image_desc *layers, size_t n, char **ret, size_t *ret_len,
                         cairn_error **reterr);

/* image_tag_valid() - whether @name can be a cairn tag (the rule of cairn_cache_tag()). */
bool image_tag_valid(const char *name);

/* An OCI image of a record chain: what `cairn export` writes and `cairn push` sends. */
struct image_built {
	char *id;           /* the top record */
	cairn_blob **blobs; /* the layer blobs, base first (made where missing) */
	char **sources;     /* per blob: where a lazy one is (not in the content store), or NULL */
	char **records;     /* per blob: the record id */
	size_t n;
	char *config, *manifest; /* the bytes */
	size_t config_len, manifest_len;
	digest config_digest, manifest_digest;
	char *config_mt, *manifest_mt;
};

/*
 * image_build() - the image of the record @ref names (an id, a prefix or a tag), as
 * cairn_image_export() builds it for an OCI layout: blobs made with cairn_ref_get_remote()
 * (@compression, @source_date_epoch as in cairn_image_export_options), the imported image's
 * manifest and config unchanged when the chain is exactly that image's. Lazy blobs are not
 * fetched (image_layer_blob(); built->sources says where they are). Fills *@ret (clear with
 * image_built_clear(); untouched on failure). Errors: as cairn_image_export().
 */
/*
 * image_layer_blob() - the blob of immutable @ref's record: when @lazy_ok and it is lazy (its
 * blob recorded but only at a registry), what the record and the blob's labels say, with
 * *@ret_source the source (caller frees); else cairn_ref_get_remote() (made where missing,
 * lazy blobs fetched) and *@ret_source NULL. *@ret is the caller's.
 */
int image_layer_blob(cairn_ref *ref, const char *compression, int64_t source_date_epoch,
                     bool lazy_ok, cairn_blob **ret, char **ret_source, cairn_error **reterr);

int image_build(cairn_cache *c, const char *ref, const char *compression, int64_t source_date_epoch,
                struct image_built *ret, cairn_error **reterr);
void image_built_clear(struct image_built *b);
