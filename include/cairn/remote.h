/* SPDX-License-Identifier: MIT */
/*
 * Sharing layers through an OCI registry: pull (lazy), push, and cache manifests.
 *
 * REMOTE arguments are REGISTRY/REPO[:TAG][@DIGEST] ("localhost:5000/app:v1"; a reference
 * without a registry means docker.io). Every error message names the registry and the object
 * (manifest, blob digest) involved. Nothing is left half-written: a failed pull creates no
 * records, a failed push leaves no manifest pointing at missing blobs.
 *
 * A program using these functions should ignore SIGPIPE (libcurl's TLS writes to a closed
 * connection can raise it).
 */
#ifndef CAIRN_REMOTE_H
#define CAIRN_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include "cairn/cache.h"
#include "cairn/common.h"
#include "cairn/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Options shared by every remote call (zero-initialise, then set what you need). */
typedef struct cairn_remote_options {
	const char *creds;          /* "USER:PASS"; NULL: $DOCKER_CONFIG or ~/.docker/config.json */
	bool insecure;              /* plain http (meant for registries on localhost) */
	const char *platform;       /* pull: OS/ARCH[/VARIANT] from an index (NULL: linux/amd64) */
	const char *compression;    /* push/cache export: "gzip" (NULL), "zstd", "none" */
	int64_t source_date_epoch;  /* push: clamp mtimes of blobs made now (-1 or 0: not) */
	unsigned jobs;              /* blobs moved at once (0: 4) */
	cairn_progress_fn progress; /* bytes moved; may be NULL */
	void *progress_userdata;
} cairn_remote_options;

/*
 * cairn_remote_attach() - make @c fetch lazy blobs whose source is a registry (see
 * cairn_cache_set_fetcher()) with the credentials and transport of @opts (copied). Several
 * blobs are fetched at once, each streamed into the content store and verified; an interrupted
 * download resumes with Range. Errors: -EINVAL for bad options; -ENOMEM.
 * Ownership: the attachment lives as long as @c (freed by cairn_cache_close()).
 */
CAIRN_PUBLIC int cairn_remote_attach(cairn_cache *c, const cairn_remote_options *opts,
                                     cairn_error **reterr);

/* What a push or a cache export sent. Free with cairn_push_info_free(). */
typedef struct cairn_push_info {
	char *id;              /* push: the record pushed; cache export: NULL */
	char *remote;          /* REGISTRY/REPO:TAG as pushed */
	char *manifest_digest; /* the manifest put under the tag */
	char *config_digest;
	int64_t config_size;
	size_t n_records;       /* push: layers; cache export: records described */
	size_t n_blobs;         /* layer blobs in the manifest */
	size_t n_blobs_sent;    /* layer and config blobs uploaded */
	size_t n_blobs_present; /* ... the registry had already (HEAD: no bytes sent) */
	size_t n_blobs_mounted; /* ... mounted from another repository of the registry */
	uint64_t bytes_sent;    /* blob bytes uploaded (retries count again) */
} cairn_push_info;

/* cairn_push_info_free() - NULL-safe; returns NULL. */
CAIRN_PUBLIC cairn_push_info *cairn_push_info_free(cairn_push_info *info);

/*
 * cairn_push() - push the record @ref names (an id, a unique prefix or a tag) and its ancestors
 * as an OCI image to @remote (REGISTRY/REPO[:TAG], tag "latest" when none; a digest is -EINVAL).
 * The manifest and config are those cairn_image_export() would write for @ref (a record
 * imported or pulled with its own manifest pushes that manifest and config unchanged); blobs a
 * record lacks are made with cairn_ref_get_remote() (@opts->compression, source_date_epoch).
 * Each layer blob is checked with HEAD first and not sent when the registry has it; up to
 * @opts->jobs blobs move at once (one connection each); the config goes next and the manifest
 * last, so the registry never holds a manifest naming a missing blob. @opts may be NULL.
 * Progress: bytes uploaded of the bytes to upload. *@ret (may be NULL) is the caller's.
 * Errors: -EINVAL for a bad @remote or options; those of cairn_ref_get_remote(); the registry
 * client's, naming the registry, the repository and the blob or manifest: -EACCES (401, 403),
 * -ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT, -ECONNRESET, -EPROTO, CAIRN_EDIGEST, -EIO.
 * A failure leaves at most blobs the manifest would have named (registries collect them).
 * Locking: none of its own; the cache and store lock as their calls say.
 */
CAIRN_PUBLIC int cairn_push(cairn_cache *c, const char *ref, const char *remote,
                            const cairn_remote_options *opts, cairn_push_info **ret,
                            cairn_error **reterr);

/* The media type of a cairn cache config (JSON Lines: a header, then one record a line). */
#define CAIRN_CACHE_CONFIG_MEDIA_TYPE "application/vnd.cairn.cache.config.v1+jsonl"

/*
 * cairn_cache_export() - push the record chains of the @n_refs records @refs name to @remote
 * (REGISTRY/REPO[:TAG]) as a cache manifest: an OCI image manifest whose layers are the chains'
 * blobs (made where missing, as cairn_push() does, and not sent again when the registry has
 * them) and whose config (CAIRN_CACHE_CONFIG_MEDIA_TYPE, any size: uploaded in chunks) describes
 * every record, parents first: chain id, blob chain id, diff id, blob digest, size and media
 * type, parent (index), description, creation time and tags. The manifest goes last.
 * Errors: as cairn_push(); -EFBIG when the layer list does not fit a 4 MiB manifest; -EINVAL for
 * a mutable record. *@ret (may be NULL) is the caller's.
 */
CAIRN_PUBLIC int cairn_cache_export(cairn_cache *c, const char *const *refs, size_t n_refs,
                                    const char *remote, const cairn_remote_options *opts,
                                    cairn_push_info **ret, cairn_error **reterr);

/* What a cache import found and made. Free with cairn_cache_import_info_free(). */
typedef struct cairn_cache_import_info {
	char *manifest_digest; /* NULL when there was no usable cache manifest */
	bool miss;             /* no usable cache (no manifest, an invalid one, a bad config) */
	size_t n_records;      /* records the config describes */
	size_t n_imported;     /* records now in the cache from it (new or reused) */
	size_t n_new;          /* ... of which this call created */
	size_t n_missed;       /* records cut off: a blob the registry lacks, or its parent's */
	size_t n_tags;         /* tags set */
	size_t n_fetched;      /* blobs downloaded now (0 unless the cache has no lazy blobs) */
	char **warnings;       /* why something was a miss, naming the registry and the object */
	size_t n_warnings;
} cairn_cache_import_info;

/* cairn_cache_import_info_free() - NULL-safe; returns NULL. */
CAIRN_PUBLIC cairn_cache_import_info *cairn_cache_import_info_free(cairn_cache_import_info *info);

/*
 * cairn_cache_import() - read the cache manifest @remote (REGISTRY/REPO[:TAG]) and make its
 * records in @c without downloading any layer: each is a lazy record (cairn_cache_get_by_blob()
 * with source "REGISTRY/REPO", "http://REGISTRY/REPO" when @opts->insecure; blobs come when
 * extracted, through the fetcher cairn_remote_attach() sets). A record whose blob chain id a
 * live record has already is that record (nothing new); tags are set last.
 * The config is verified before anything is made: its digest and size, JSON, every digest, known
 * media types, parents given as earlier indexes (so no cycles), chain ids recomputed from the
 * diff ids and blobs, every blob listed in the manifest, and at most 1 GiB (read as it streams,
 * one record at a time).
 * A cache miss is not an error: no manifest under the tag, a manifest or config that is invalid
 * or unreadable make *@ret->miss true and create nothing; a layer blob the registry lacks (HEAD)
 * cuts its chain there (that record and its descendants missed). Each miss adds a warning.
 * Errors (nothing created): -EINVAL for a bad @remote; transport failures and -EACCES of the
 * manifest request; errors of the cache while creating (what this call created is then
 * removed). *@ret (may be NULL) is the caller's, also on a miss.
 */
CAIRN_PUBLIC int cairn_cache_import(cairn_cache *c, const char *remote,
                                    const cairn_remote_options *opts, cairn_cache_import_info **ret,
                                    cairn_error **reterr);

/*
 * cairn_pull() - make the image @remote names (REGISTRY/REPO[:TAG][@DIGEST]; tag "latest" when
 * neither) a chain of lazy records in @c, without downloading any layer: the manifest is read
 * (OCI or Docker; an index or manifest list picks @opts->platform, default linux/amd64), then
 * the config (digest and size verified, one rootfs.diff_ids entry per layer, every descriptor
 * checked), then the manifest and config are stored in the content store (labelled so that gc
 * keeps them while the tag lives, and `cairn export` gives back this very manifest), a record per
 * layer is made with cairn_cache_get_by_blob() and the source "REGISTRY/REPO" ("http://REGISTRY/
 * REPO" with @opts->insecure), parent first, and the top one is tagged @tag (NULL: the remote
 * as "REGISTRY/REPO:TAG" or "REGISTRY/REPO@DIGEST", left untagged if that is no valid tag name)
 * with the manifest (cairn_cache_tag_image()). Layers whose blob chain id a live record has are
 * that record (pulling the same image twice makes nothing new; a layer already here is never
 * downloaded). Layers come when a record is extracted or mounted, through cairn_remote_attach().
 * @opts may be NULL; only creds, insecure and platform are used.
 * Errors (nothing is created; what was made is undone): -EINVAL for a bad @remote, @tag or
 * platform; -ENOENT when the registry has no such manifest or the index no such platform
 * (listing the platforms there are); CAIRN_ECORRUPT for a config that is missing, has the wrong
 * size or diff id count, a layer of size 0; CAIRN_EDIGEST for content that does not hash to its
 * digest; -EFBIG for a manifest over 4 MiB or a config over 16 MiB; -EOPNOTSUPP for a layer
 * media type cairn does not read; the registry client's (-EACCES, -ECONNREFUSED, -EPROTO for
 * HTML where JSON was expected, ...), each naming the registry and the object; those of
 * cairn_cache_get_by_blob() and cairn_cache_tag_image().
 * Ownership: *@ret, an immutable ref on the top record, is the caller's. Locking: no lock of its
 * own; no lock is held while the registry is asked.
 */
CAIRN_PUBLIC int cairn_pull(cairn_cache *c, const char *remote, const char *tag,
                            const cairn_remote_options *opts, cairn_ref **ret,
                            cairn_error **reterr);

#ifdef __cplusplus
}
#endif
#endif
