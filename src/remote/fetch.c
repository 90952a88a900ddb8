/* SPDX-License-Identifier: MIT */
/*
 * The cache's fetcher for lazy blobs whose source is a registry: "REGISTRY/REPO", or
 * "http://REGISTRY/REPO" for a plain-http one (cairn_pull() writes them so). A registry client is
 * not thread-safe and the cache fetches several blobs at once, so each fetch borrows an idle
 * client of its registry from a small pool (keep-alive and tokens survive between blobs) or makes
 * one, and gives it back after.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cache/internal.h"
#include "cairn/remote.h"
#include "registry.h"
#include "lazy.h"

#define FETCH_JOBS_MAX 64

struct pooled {
	struct pooled *next;
	char *registry;
	bool insecure;
	remote_client *client;
};

struct attachment {
	content_store *cs; /* borrowed from the cache's store */
	char *creds;       /* NULL: the docker config */
	bool insecure;     /* every source plain http, whatever it says */
	unsigned max_idle;
	pthread_mutex_t mu;
	struct pooled *idle; /* under mu */
	unsigned n_idle;
};

static void attachment_free(void *userdata)
{
	struct attachment *a = userdata;
	if (!a)
		return;
	while (a->idle) {
		struct pooled *p = a->idle;
		a->idle = p->next;
		remote_client_free(p->client);
		free(p->registry);
		free(p);
	}
	if (a->creds)
		explicit_bzero(a->creds, strlen(a->creds));
	free(a->creds);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

int remote_source_parse(const char *source, struct remote_source *ret, cairn_error **reterr)
{
	const char *s = source;
	*ret = (struct remote_source){0};
	if (strncmp(s, "http://", 7) == 0) {
		ret->insecure = true;
		s += 7;
	} else if (strncmp(s, "https://", 8) == 0) {
		s += 8;
	}
	const char *slash = strchr(s, '/');
	if (!slash || slash == s || (size_t)(slash - s) > REMOTE_HOST_MAX ||
	    !remote_repo_valid(slash + 1))
		return err_set(reterr, -EINVAL,
		               "source '%.300s' is not [http://]REGISTRY/REPO (a registry source)",
		               source);
	memcpy(ret->registry, s, (size_t)(slash - s));
	ret->registry[slash - s] = '\0';
	snprintf(ret->repo, sizeof(ret->repo), "%s", slash + 1);
	return 0;
}

/* An idle client of @registry from the pool, or a new one. */
static int client_get(struct attachment *a, const struct remote_source *src, remote_client **ret,
                      cairn_error **reterr)
{
	pthread_mutex_lock(&a->mu);
	for (struct pooled **pp = &a->idle; *pp; pp = &(*pp)->next) {
		struct pooled *p = *pp;
		if (p->insecure == src->insecure && strcmp(p->registry, src->registry) == 0) {
			*pp = p->next;
			a->n_idle--;
			pthread_mutex_unlock(&a->mu);
			*ret = p->client;
			free(p->registry);
			free(p);
			return 0;
		}
	}
	pthread_mutex_unlock(&a->mu);
	remote_options ro = {.insecure = src->insecure, .creds = a->creds};
	return remote_client_new(src->registry, &ro, ret, reterr);
}

/* Gives @client back to the pool (freed when the pool is full). */
static void client_put(struct attachment *a, const struct remote_source *src, remote_client *client)
{
	struct pooled *p = calloc(1, sizeof(*p));
	if (p && (p->registry = strdup(src->registry))) {
		p->insecure = src->insecure;
		p->client = client;
		pthread_mutex_lock(&a->mu);
		if (a->n_idle < a->max_idle) {
			p->next = a->idle;
			a->idle = p;
			a->n_idle++;
			p = NULL;
			client = NULL;
		}
		pthread_mutex_unlock(&a->mu);
	}
	if (p)
		free(p->registry);
	free(p);
	remote_client_free(client);
}

static int fetch(void *userdata, const char *source, const char *dgst, int64_t size,
                 cairn_progress_fn fn, void *fn_userdata, cairn_error **reterr)
{
	struct attachment *a = userdata;
	struct remote_source src;
	int r = remote_source_parse(source, &src, reterr);
	if (r < 0)
		return r;
	src.insecure |= a->insecure;
	if (size <= 0)
		return err_set(reterr, -EINVAL, "registry '%s': blob '%s' in '%s': size unknown",
		               src.registry, dgst, src.repo);
	remote_client *client = NULL;
	if ((r = client_get(a, &src, &client, reterr)) < 0)
		return r;
	log_debug("registry '%s': fetch blob '%s' of '%s' (%" PRId64 " bytes)", src.registry, dgst,
	          src.repo, size);
	r = remote_blob_fetch_progress(client, a->cs, src.repo, dgst, (uint64_t)size, fn,
	                               fn_userdata, reterr);
	client_put(a, &src, client);
	return r < 0 ? r : 0;
}

int cairn_remote_attach(cairn_cache *c, const cairn_remote_options *opts, cairn_error **reterr)
{
	int r = cache_enter(c, false, "attach a registry", reterr);
	if (r < 0)
		return r;
	unsigned jobs = opts && opts->jobs ? opts->jobs : CACHE_FETCH_JOBS;
	if (jobs > FETCH_JOBS_MAX)
		return err_set(reterr, -EINVAL, "attach a registry: %u jobs (at most %d)", jobs,
		               FETCH_JOBS_MAX);
	if (opts && opts->creds && !strchr(opts->creds, ':'))
		return err_set(reterr, -EINVAL, "attach a registry: credentials must be USER:PASS");
	struct attachment *a = calloc(1, sizeof(*a));
	if (!a)
		return err_set(reterr, -ENOMEM, "attach a registry: out of memory");
	pthread_mutex_init(&a->mu, NULL);
	a->cs = c->store->content;
	a->insecure = opts && opts->insecure;
	a->max_idle = jobs;
	if (opts && opts->creds && !(a->creds = strdup(opts->creds))) {
		attachment_free(a);
		return err_set(reterr, -ENOMEM, "attach a registry: out of memory");
	}
	cairn_cache_set_fetcher(c, fetch, a, attachment_free);
	cache_set_fetch_jobs(c, jobs);
	return 0;
}
