/* SPDX-License-Identifier: MIT */
/*
 * The JSON documents of OCI image layouts and docker archives, parsed from memory into plain C
 * structs and checked: the `oci-layout` file, image indexes (and Docker manifest lists), image
 * manifests (OCI and Docker schema 2), image configs (only what cairn needs: diff ids and the
 * platform; the document itself is kept for export) and docker-save's `manifest.json`.
 *
 * Every input is hostile: sizes are capped before parsing, JSON is parsed with duplicate keys
 * rejected, every digest goes through digest_parse() (so "sha256:../../x" never reaches a path),
 * sizes are non-negative integers, counts are capped. Messages name @what (the file, as the
 * caller wants it quoted) and the field: "'index.json': manifests[2].digest: ...".
 * Nothing here touches the filesystem. Not thread-safe objects; the functions are reentrant.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/digest.h"
#include "base/error.h"

/* Caps: bytes of an index, manifest or manifest.json; of a config; entries of lists. */
#define IMAGE_JSON_MAX   (4u << 20)
#define IMAGE_CONFIG_MAX (16u << 20)
#define IMAGE_LIST_MAX   4096
#define IMAGE_LAYERS_MAX 1024

#define MT_OCI_INDEX     "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST  "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_CONFIG    "application/vnd.oci.image.config.v1+json"
#define MT_DOCKER_LIST   "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIF  "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

#define ANNOT_REF_NAME   "org.opencontainers.image.ref.name"
#define ANNOT_IMAGE_NAME "io.containerd.image.name"

typedef enum image_kind {
	IMAGE_KIND_OTHER = 0,
	IMAGE_KIND_INDEX,    /* an OCI index or a Docker manifest list */
	IMAGE_KIND_MANIFEST, /* an OCI or Docker schema 2 manifest */
} image_kind;

/* A descriptor. Strings owned. */
struct image_desc {
	char *media_type; /* never NULL after parsing */
	digest digest;
	int64_t size;
	char *ref_name;            /* annotation org.opencontainers.image.ref.name, or NULL */
	char *image_name;          /* annotation io.containerd.image.name, or NULL */
	char *os, *arch, *variant; /* platform; NULL when absent */
};

struct image_index {
	struct image_desc *manifests;
	size_t n;
};

struct image_manifest {
	char *media_type; /* the document's mediaType, or NULL */
	struct image_desc config;
	struct image_desc *layers;
	size_t n_layers;
};

struct image_config {
	digest *diff_ids;
	size_t n_diff_ids;
	char *os, *arch, *variant; /* NULL when absent */
	json_t *doc;               /* the whole document */
};

/* One image of a docker archive's manifest.json. Paths are as written (archive members). */
struct docker_image {
	char *config;
	char **repo_tags;
	size_t n_repo_tags;
	char **layers;
	size_t n_layers;
};

struct docker_manifest {
	struct docker_image *images;
	size_t n;
};

/* image_kind_of() - what a descriptor media type designates. */
image_kind image_kind_of(const char *media_type);

/*
 * image_layout_parse() - check an `oci-layout` file: a JSON object whose imageLayoutVersion is
 * "1.0.0". Errors: CAIRN_ECORRUPT naming @what ("not JSON: ...", "imageLayoutVersion 'X' is not
 * supported (1.0.0)").
 */
int image_layout_parse(const char *buf, size_t len, const char *what, cairn_error **reterr);

/*
 * image_index_parse() - an index (index.json or a nested index blob) into *@ret (clear with
 * image_index_clear(); untouched on failure). Each entry needs mediaType, a valid sha256 digest
 * and a size >= 0. Errors: CAIRN_ECORRUPT naming @what and the field; CAIRN_EDIGEST for a
 * malformed digest; -E2BIG past IMAGE_LIST_MAX entries.
 */
int image_index_parse(const char *buf, size_t len, const char *what, struct image_index *ret,
                      cairn_error **reterr);
void image_index_clear(struct image_index *x);

/*
 * image_manifest_parse() - a manifest into *@ret (clear with image_manifest_clear()). The config
 * must have a config media type; layers the media types layer_media_type_parse() knows
 * (-EOPNOTSUPP otherwise: encrypted, foreign). Errors as image_index_parse(); -E2BIG past
 * IMAGE_LAYERS_MAX layers.
 */
int image_manifest_parse(const char *buf, size_t len, const char *what, struct image_manifest *ret,
                         cairn_error **reterr);
void image_manifest_clear(struct image_manifest *x);

/*
 * image_config_parse() - an image config into *@ret (clear with image_config_clear()): rootfs
 * must be {"type": "layers", "diff_ids": [valid digests]}. Errors as image_index_parse().
 */
int image_config_parse(const char *buf, size_t len, const char *what, struct image_config *ret,
                       cairn_error **reterr);
void image_config_clear(struct image_config *x);

/*
 * docker_manifest_parse() - docker save's manifest.json: a non-empty array of {"Config": path,
 * "RepoTags": [names] or null, "Layers": [paths]}. Paths must be non-empty and hold no NUL.
 * Errors as image_index_parse().
 */
int docker_manifest_parse(const char *buf, size_t len, const char *what,
                          struct docker_manifest *ret, cairn_error **reterr);
void docker_manifest_clear(struct docker_manifest *x);

/* image_desc_clear() - free the strings of @d. */
void image_desc_clear(struct image_desc *d);

/* image_platform_match() - whether @d's platform is @os/@arch (and @variant when non-NULL). */
bool image_platform_match(const struct image_desc *d, const char *os, const char *arch,
                          const char *variant);
