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
	const char *creds;           /* "USER:PASS"; NULL: $DOCKER_CONFIG or ~/.docker/config.json */
	bool insecure;               /* plain http (meant for registries on localhost) */
	const char *platform;        /* pull: OS/ARCH[/VARIANT] from an index (NULL: linux/amd64) */
	const char *compression;     /* push/cache export: "gzip" (NULL), "zstd", "none" */
	int64_t source_date_epoch;   /* push: clamp mtimes of blobs made now (-1 or 0: not) */
	unsigned jobs;               /* blobs moved at once (0: 4) */
	cairn_progress_fn progress;  /* bytes moved; may be NULL */
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

#ifdef __cplusplus
}
#endif
#endif
