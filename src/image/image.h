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
