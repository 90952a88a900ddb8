/* SPDX-License-Identifier: MIT */
/*
 * What cairn push and cairn cache export share: a session on one REGISTRY/REPO:TAG that uploads
 * blobs (several at once, each checked with HEAD first), then a manifest, and counts what it
 * sent. Internal to src/remote.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

#include "cairn/remote.h"
#include "registry.h"

struct push_session {
	remote_ref ref;
	char *remote; /* "REGISTRY/REPO:TAG", for messages and the info */
	remote_options ro;
	remote_client *client; /* the caller's thread: ping, config, manifest */
	unsigned jobs;
	cairn_progress_fn progress;
	void *progress_userdata;
	pthread_mutex_t mu; /* progress calls and the counters below */
	uint64_t total, done;
	size_t n_sent, n_present, n_mounted;
	_Atomic uint64_t bytes_sent;
};

/* A blob to upload: from the content store (@fd) or memory (@buf). */
struct push_item {
	const char *digest;
	uint64_t size;
	/* A lazy blob (only at a registry): its source and the record whose chain fetches it when
	 * it must be sent (a blob of another repository of the same registry is mounted instead);
	 * both NULL for a blob of the content store. */
	const char *source;
	const char *record;
};

/*
 * push_session_open() - parse @remote (REGISTRY/REPO[:TAG]; a digest is -EINVAL), make a client
 * with @opts' credentials and transport, and check the registry answers (remote_ping()). Clear
 * *@s with push_session_close() whatever this returns.
 * Errors: -EINVAL naming @remote; those of remote_ping().
 */
int push_session_open(struct push_session *s, const char *remote, const cairn_remote_options *opts,
                      cairn_error **reterr);
void push_session_close(struct push_session *s);

/*
 * push_session_blobs() - upload the @n blobs @items of cache @c that the registry lacks (HEAD
 * each first), @s->jobs at once, one client per thread. A lazy blob is mounted from its source
 * repository when that is on the same registry, else fetched (cairn_ref_get_remote() of its
 * record) and sent. Errors: the first failure (the others stop after their current blob): the
 * registry client's, the content store's, the fetcher's.
 */
int push_session_blobs(struct push_session *s, cairn_cache *c, const struct push_item *items,
                       size_t n, cairn_error **reterr);

/* push_session_buffer() - upload @len bytes at @buf as blob @dg unless the registry has it. */
int push_session_buffer(struct push_session *s, const digest *dg, const void *buf, size_t len,
                        cairn_error **reterr);

/*
 * push_session_manifest() - put manifest @body (@len bytes, media type @mt, digest @dg) under
 * the session's tag. CAIRN_EDIGEST when the registry names another digest.
 */
int push_session_manifest(struct push_session *s, const char *mt, const char *body, size_t len,
                          const digest *dg, cairn_error **reterr);

/* push_session_info() - a new info with the session's counters (NULL on OOM). */
cairn_push_info *push_session_info(struct push_session *s, const char *id, const digest *manifest,
                                   const digest *config, uint64_t config_size);

/* push_remote_options() - the client options @opts asks for (@opts may be NULL). */
void push_remote_options(const cairn_remote_options *opts, remote_options *ret);
