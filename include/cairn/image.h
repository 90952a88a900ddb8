/* SPDX-License-Identifier: MIT */
/*
 * Images: OCI image layouts (skopeo's `oci:DIR:TAG`, umoci, buildah) and docker archives
 * (`docker save`, skopeo's `docker-archive:`) in and out of the cache.
 *
 * Import copies each blob into the content store (digest and size verified as it streams; a
 * blob already there is not copied again), stores the manifest and config blobs too (the
 * manifest labelled with containerd's `containerd.io/gc.ref.content.config` and
 * `containerd.io/gc.ref.content.l.<i>` so that gc keeps what a tagged manifest names), makes a
 * lazy record per layer with cairn_cache_get_by_blob() (parent first; the diff ids from the
 * config's rootfs.diff_ids, checked again when a layer is extracted) and tags the top record
 * with cairn_cache_tag_image(). Records are deduplicated by their blob chain: importing an image
 * twice makes nothing new, and images that share base layers share those records.
 *
 * Everything is parsed and checked (JSON, digests, sizes, the diff id count) before anything is
 * created; a failure after that removes what the import created (records, then blobs that were
 * new), so nothing half-imported remains. A crash mid-way leaves at most unreferenced blobs,
 * which gc removes, or records without a tag, which prune removes.
 *
 * Errors of both directions: CAIRN_ECORRUPT for bad input (a missing or wrong oci-layout, JSON
 * that is not JSON or not the right document, a missing manifest or blob, a descriptor size
 * that differs from the file, a diff id count that differs from the layer count), always naming
 * the file and the problem; CAIRN_EDIGEST for a malformed digest ("sha256:../../x") or content
 * that does not hash to its digest (naming both); -EFBIG for a document over its cap (4 MiB for
 * indexes and manifests, 16 MiB for configs), judged by its size before it is read;
 * -EOPNOTSUPP for unsupported media types (encrypted or foreign layers); -ENOENT when the
 * source path or the record is not there, or no image in the source has the name asked for
 * (the message lists the names there are); -EINVAL for bad arguments; errors of the cache and
 * the content store.
 *
 * Locking: both functions are thread-safe as the cache and store are; an import's records are
 * not visible to prune by name until tagged (another process could prune an untagged record
 * between its creation and the tag; the import then fails and cleans up).
 */
#ifndef CAIRN_IMAGE_H
#define CAIRN_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/cache.h"
#include "cairn/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Extract every layer once the records exist (cairn_ref_extract() of the top record). */
#define CAIRN_IMAGE_IMPORT_EXTRACT   (1u << 0)
#define CAIRN_IMAGE_IMPORT_FLAGS_ALL CAIRN_IMAGE_IMPORT_EXTRACT

#define CAIRN_IMAGE_IMPORT_OPTIONS_VERSION 1

typedef struct cairn_image_import_options {
	unsigned version; /* CAIRN_IMAGE_IMPORT_OPTIONS_VERSION */
	unsigned flags;   /* CAIRN_IMAGE_IMPORT_* */
	/*
	 * Which image of the source: matched against the `org.opencontainers.image.ref.name` and
	 * `io.containerd.image.name` annotations of index.json's entries, and a docker archive's
	 * RepoTags. NULL: the only image there is (or, when there are several, the one @tag
	 * names; else -EINVAL listing them).
	 */
	const char *name;
	/* The tag to give the top record. NULL: @name, else the image's own single name (its
	 * ref name annotation or RepoTags entry), else no tag. */
	const char *tag;
	/* "OS/ARCH" or "OS/ARCH/VARIANT" picked from a multi-platform index; NULL: linux/amd64. */
	const char *platform;
	/* Progress: bytes of blobs copied (and then extracted) of the total. May be NULL; called on
	 * the caller's thread while blobs are copied, on a worker while extracting. */
	cairn_progress_fn progress;
	void *userdata;
} cairn_image_import_options;

/* What an import made or found, or an export wrote. Free with cairn_image_info_free(). */
typedef struct cairn_image_info {
	char *id;              /* the top record (import), the exported record (export) */
	char *tag;             /* the tag set / the ref name written; NULL when none */
	char *manifest_digest; /* the image manifest */
	char *config_digest;
	char **layers;   /* import: record ids, base first; export: NULL */
	char **blobs;    /* layer blob digests, base first */
	char **diff_ids; /* their diff ids */
	size_t n_layers;
	size_t n_new_records; /* import: records this call created (0 when all existed) */
	size_t n_new_blobs;   /* import: blobs this call added to the content store */
} cairn_image_info;

/* cairn_image_info_free() - free @info and its strings. NULL-safe; returns NULL. */
CAIRN_PUBLIC cairn_image_info *cairn_image_info_free(cairn_image_info *info);

/*
 * cairn_image_import() - import the image at @source into cache @c: an OCI image layout
 * directory, or an uncompressed tar archive holding either docker save's manifest.json (the
 * legacy `<id>/layer.tar` form; the layers are stored as they are and cairn writes an OCI
 * manifest for them) or an OCI layout (the form Docker 25 writes; its index.json is preferred
 * to its manifest.json). @source is a path; when no file or directory of that name exists and
 * it holds a ':', it is split at the last ':' into the path and @opts->name ("LAYOUT:TAG"),
 * unless @opts->name is given. @opts may be NULL (defaults).
 * Index entries that are indexes themselves are followed (at most 8 deep), picking by platform.
 * Ownership: *@ret (may be NULL) is the caller's.
 * Errors: see the top of this header.
 */
CAIRN_PUBLIC int cairn_image_import(cairn_cache *c, const char *source,
                                    const cairn_image_import_options *opts, cairn_image_info **ret,
                                    cairn_error **reterr);

typedef enum cairn_image_format {
	CAIRN_IMAGE_FORMAT_OCI = 0,            /* an OCI image layout directory */
	CAIRN_IMAGE_FORMAT_DOCKER_ARCHIVE = 1, /* a docker archive tar file */
} cairn_image_format;

#define CAIRN_IMAGE_EXPORT_OPTIONS_VERSION 1

typedef struct cairn_image_export_options {
	unsigned version;          /* CAIRN_IMAGE_EXPORT_OPTIONS_VERSION */
	cairn_image_format format; /* default OCI */
	/* The image's name: the ref.name annotation in index.json (an entry of that name is
	 * replaced, others are kept), the RepoTags entry of a docker archive. NULL: "latest". */
	const char *tag;
	/* For layers that have no blob yet: "gzip" (NULL), "zstd" or "none". Layers that have a
	 * blob keep it. A docker archive holds every layer uncompressed whatever this says. */
	const char *compression;
	/* Seconds since the epoch for the mtimes of new layer blobs and the config's times; -1:
	 * none (the config's times then come from the record or the imported config). */
	int64_t source_date_epoch;
	cairn_progress_fn progress; /* may be NULL; called on the caller's thread */
	void *userdata;
} cairn_image_export_options;

/*
 * cairn_image_export() - write the record @ref names (an id, a prefix or a tag), with its
 * ancestors as the layers, as an image at @output.
 * OCI: @output is a directory (created when missing; an existing one must be an OCI layout or
 * empty): blobs/sha256/<hex> for every layer (made with cairn_ref_get_remote() where a record has
 * none; copied from the content store with copy_file_range, skipped when present), the config
 * (rootfs.diff_ids and one history entry per layer; when @ref is a tag made by an image import,
 * that image's config with its other fields (else the image of the nearest ancestor that an
 * image tag names: a record built on an imported image keeps its Env, Entrypoint, ...), and
 * when the chain is that image's own, its manifest and config unchanged), the manifest,
 * oci-layout, and index.json last, atomically.
 * Docker archive: @output is a tar file (written beside it and renamed into place) holding
 * manifest.json ({"Config", "RepoTags", "Layers"} with uncompressed layer tars under
 * blobs/sha256/, what docker load and skopeo read) and the same image as an OCI layout
 * (oci-layout, index.json), as Docker 25 writes it. Members are in a fixed order with fixed
 * owners and mtimes (@source_date_epoch or 0): the same chain and options give the same bytes.
 * Ownership: *@ret (may be NULL) is the caller's. Errors: see the top of this header; -EEXIST
 * when @output is a directory that is not an OCI layout and not empty; CAIRN_EDIGEST when a
 * layer's content is not its diff id.
 */
CAIRN_PUBLIC int cairn_image_export(cairn_cache *c, const char *ref, const char *output,
                                    const cairn_image_export_options *opts, cairn_image_info **ret,
                                    cairn_error **reterr);

#ifdef __cplusplus
}
#endif
#endif
