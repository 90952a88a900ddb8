/* SPDX-License-Identifier: MIT */
/*
 * cairn push: a record chain as an OCI image in a registry. The image is the one `cairn export`
 * writes (image_build()); its layer blobs go first, several at once, each after a HEAD that
 * skips what the registry has; then the config; the manifest last, so that a failure never
 * leaves a manifest naming a missing blob.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/fs.h"
#include "cache/internal.h"
#include "content/content.h"
#include "image/image.h"
#include "lazy.h"
#include "push.h"

#define JOBS_DEFAULT 4
#define JOBS_MAX     64

void push_remote_options(const cairn_remote_options *opts, remote_options *ret)
{
	*ret = (remote_options){0};
	if (opts) {
		ret->insecure = opts->insecure;
		ret->creds = opts->creds;
	}
}

int push_session_open(struct push_session *s, const char *remote, const cairn_remote_options *opts,
                      cairn_error **reterr)
{
	*s = (struct push_session){.jobs = JOBS_DEFAULT};
	pthread_mutex_init(&s->mu, NULL);
	push_remote_options(opts, &s->ro);
	if (opts) {
		if (opts->jobs)
			s->jobs = opts->jobs < JOBS_MAX ? opts->jobs : JOBS_MAX;
		s->progress = opts->progress;
		s->progress_userdata = opts->progress_userdata;
	}
	int r = remote_ref_parse(remote, &s->ref, reterr);
	if (r < 0)
		return r;
	if (s->ref.digest[0])
		return err_set(reterr, -EINVAL, "push to '%s': give a tag, not a digest", remote);
	if (!s->ref.tag[0])
		snprintf(s->ref.tag, sizeof(s->ref.tag), "latest");
	if (asprintf(&s->remote, "%s/%s:%s", s->ref.registry, s->ref.repo, s->ref.tag) < 0) {
		s->remote = NULL;
		return err_set(reterr, -ENOMEM, "push to '%s': out of memory", remote);
	}
	if ((r = remote_client_new(s->ref.registry, &s->ro, &s->client, reterr)) < 0)
		return r;
	return remote_ping(s->client, reterr);
}

void push_session_close(struct push_session *s)
{
	remote_client_free(s->client);
	free(s->remote);
	pthread_mutex_destroy(&s->mu);
	*s = (struct push_session){0};
}

static void progress_add(struct push_session *s, uint64_t n)
{
	if (!s->progress)
		return;
	pthread_mutex_lock(&s->mu);
	s->done += n;
	s->progress(s->done < s->total ? s->done : s->total, s->total, s->progress_userdata);
	pthread_mutex_unlock(&s->mu);
}

/* An upload's source: a file (pread) or memory; counts what the client reads. */
struct source {
	struct push_session *s;
	bool none; /* no bytes here (a lazy blob to mount): reading is -ENODATA */
	int fd;
	const uint8_t *buf;
	uint64_t size;
	const char *digest;
};

static ssize_t source_read(void *userdata, void *buf, size_t len, uint64_t offset,
                           cairn_error **reterr)
{
	struct source *src = userdata;
	if (offset >= src->size)
		return 0;
	if (len > src->size - offset)
		len = (size_t)(src->size - offset);
	if (src->none)
		return err_set(reterr, -ENODATA, "blob '%s' is not here (lazy)", src->digest);
	ssize_t n;
	if (src->buf) {
		memcpy(buf, src->buf + offset, len);
		n = (ssize_t)len;
	} else {
		do
			n = pread(src->fd, buf, len, (off_t)offset);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return err_errno(reterr, -errno, "read blob '%s'", src->digest);
	}
	atomic_fetch_add(&src->s->bytes_sent, (uint64_t)n);
	progress_add(src->s, (uint64_t)n);
	return n;
}

enum { BLOB_PRESENT, BLOB_SENT, BLOB_MOUNTED };

static void count(struct push_session *s, int how)
{
	pthread_mutex_lock(&s->mu);
	if (how == BLOB_PRESENT)
		s->n_present++;
	else if (how == BLOB_MOUNTED)
		s->n_mounted++;
	else
		s->n_sent++;
	pthread_mutex_unlock(&s->mu);
}

/* One blob: HEAD, then a mount or an upload from @src. */
static int put_one(struct push_session *s, remote_client *client, struct source *src,
                   const char *from_repo, cairn_error **reterr)
{
	int r = remote_blob_exists(client, s->ref.repo, src->digest, NULL, reterr);
	if (r < 0)
		return r;
	if (r > 0) {
		count(s, BLOB_PRESENT);
		progress_add(s, src->size);
		return 0;
	}
	uint64_t before = atomic_load(&s->bytes_sent);
	r = remote_blob_put(client, s->ref.repo, src->digest, src->size, source_read, src,
	                    from_repo, reterr);
	if (r < 0)
		return r;
	/* 0: mounted from @from_repo (or another pusher won the race): nothing was read. */
	count(s, r > 0 ? BLOB_SENT : from_repo ? BLOB_MOUNTED : BLOB_PRESENT);
	if (r == 0)
		progress_add(s, src->size - (atomic_load(&s->bytes_sent) - before));
	return 0;
}

int push_session_buffer(struct push_session *s, const digest *dg, const void *buf, size_t len,
                        cairn_error **reterr)
{
	pthread_mutex_lock(&s->mu);
	s->total += len;
	pthread_mutex_unlock(&s->mu);
	struct source src = {.s = s, .fd = -EBADF, .buf = buf, .size = len, .digest = dg->str};
	int r = put_one(s, s->client, &src, NULL, reterr);
	return r < 0 ? err_prefix(reterr, "push to '%s': config", s->remote) : 0;
}

/* The workers of push_session_blobs(). */
struct pool {
	struct push_session *s;
	cairn_cache *c;
	const struct push_item *items;
	size_t n;
	_Atomic size_t next;
	_Atomic bool stop;
	pthread_mutex_t mu;
	cairn_error *err; /* the first failure */
	int r;
};

static void pool_fail(struct pool *p, int r, cairn_error *e)
{
	pthread_mutex_lock(&p->mu);
	if (p->r >= 0) {
		p->r = r;
		p->err = e;
		e = NULL;
	}
	pthread_mutex_unlock(&p->mu);
	cairn_error_free(e);
	atomic_store(&p->stop, true);
}

/* The repository of the same registry lazy blob @it is in, else NULL (into @buf). */
static const char *mount_repo(struct push_session *s, const struct push_item *it,
                              struct remote_source *buf)
{
	if (!it->source || remote_source_parse(it->source, buf, NULL) < 0)
		return NULL;
	if (strcmp(buf->registry, s->ref.registry) != 0 || strcmp(buf->repo, s->ref.repo) == 0)
		return NULL;
	return buf->repo;
}

/* A lazy blob: present, or mounted from its repository; 1 when it has to be fetched and sent. */
static int push_lazy(struct pool *p, remote_client *client, const struct push_item *it,
                     cairn_error **reterr)
{
	struct remote_source src_buf;
	const char *from = mount_repo(p->s, it, &src_buf);
	struct source src = {
		.s = p->s, .none = true, .fd = -EBADF, .size = it->size, .digest = it->digest};
	cairn_error *e = NULL;
	int r = from ? put_one(p->s, client, &src, from, &e)
	             : remote_blob_exists(client, p->s->ref.repo, it->digest, NULL, &e);
	if (r == -ENODATA || (!from && r == 0)) {
		/* Not mountable (or absent, with nothing to mount from): fetch it, then send it. */
		cairn_error_free(e);
		return 1;
	}
	if (r < 0) {
		if (reterr)
			*reterr = e;
		else
			cairn_error_free(e);
		return r;
	}
	if (!from) {
		count(p->s, BLOB_PRESENT);
		progress_add(p->s, it->size);
	}
	return 0;
}

/* Fetch lazy blob @it into the content store through its record's chain. */
static int fetch_lazy(struct pool *p, const struct push_item *it, cairn_error **reterr)
{
	cairn_ref *ref = NULL;
	cairn_blob *b = NULL;
	int r = cairn_cache_get(p->c, it->record, CAIRN_CACHE_GET_NO_UPDATE_LAST_USED, &ref,
	                        reterr);
	if (r >= 0)
		r = cairn_ref_get_remote(ref, NULL, -1, &b, reterr);
	cairn_blob_free(b);
	cairn_ref_free(ref);
	return r < 0 ? err_prefix(reterr, "fetch blob '%s' from '%s'", it->digest, it->source) : 0;
}

static int push_item(struct pool *p, remote_client *client, const struct push_item *it,
                     cairn_error **reterr)
{
	_cleanup_close_ int fd = -EBADF;
	uint64_t size = 0;
	int r = 0;
	if (it->record && (r = content_exists(p->c->store->content, it->digest, reterr)) == 0) {
		if ((r = push_lazy(p, client, it, reterr)) <= 0)
			return r;
		r = fetch_lazy(p, it, reterr);
	}
	if (r < 0 || (r = content_open(p->c->store->content, it->digest, &fd, &size, reterr)) < 0)
		return r;
	if (size != it->size)
		return err_set(reterr, CAIRN_ECORRUPT,
		               "blob '%s' has %" PRIu64 " bytes in the store, not %" PRIu64,
		               it->digest, size, it->size);
	struct source src = {.s = p->s, .fd = fd, .size = size, .digest = it->digest};
	return put_one(p->s, client, &src, NULL, reterr);
}

static void *pool_worker(void *userdata)
{
	struct pool *p = userdata;
	cairn_error *e = NULL;
	remote_client *client = NULL;
	int r = remote_client_new(p->s->ref.registry, &p->s->ro, &client, &e);
	if (r < 0) {
		pool_fail(p, r, e);
		return NULL;
	}
	while (!atomic_load(&p->stop)) {
		size_t i = atomic_fetch_add(&p->next, 1);
		if (i >= p->n)
			break;
		if ((r = push_item(p, client, &p->items[i], &e)) < 0) {
			err_prefix(&e, "push to '%s'", p->s->remote);
			pool_fail(p, r, e);
			e = NULL;
			break;
		}
	}
	remote_client_free(client);
	return NULL;
}

int push_session_blobs(struct push_session *s, cairn_cache *c, const struct push_item *items,
                       size_t n, cairn_error **reterr)
{
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n; i++)
		s->total += items[i].size;
	pthread_mutex_unlock(&s->mu);
	struct pool p = {.s = s, .c = c, .items = items, .n = n};
	pthread_mutex_init(&p.mu, NULL);
	size_t nt = n < s->jobs ? n : s->jobs;
	pthread_t th[JOBS_MAX];
	size_t started = 0;
	for (; started < nt; started++)
		if (pthread_create(&th[started], NULL, pool_worker, &p) != 0)
			break;
	if (started == 0 && n > 0)
		pool_worker(&p); /* no thread could start: do it here */
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&p.mu);
	if (p.r < 0) {
		if (reterr)
			*reterr = p.err;
		else
			cairn_error_free(p.err);
		return p.r;
	}
	return 0;
}

int push_session_manifest(struct push_session *s, const char *mt, const char *body, size_t len,
                          const digest *dg, cairn_error **reterr)
{
	digest got;
	int r = remote_manifest_put(s->client, s->ref.repo, s->ref.tag, mt, body, len, &got,
	                            reterr);
	if (r < 0)
		return err_prefix(reterr, "push to '%s'", s->remote);
	if (strcmp(got.str, dg->str) != 0)
		return err_set(reterr, CAIRN_EDIGEST,
		               "push to '%s': manifest '%s' was stored as '%s'", s->remote, dg->str,
		               got.str);
	return 0;
}

cairn_push_info *push_session_info(struct push_session *s, const char *id, const digest *manifest,
                                   const digest *config, uint64_t config_size)
{
	cairn_push_info *info = calloc(1, sizeof(*info));
	if (!info)
		return NULL;
	info->id = id ? strdup(id) : NULL;
	info->remote = strdup(s->remote);
	info->manifest_digest = strdup(manifest->str);
	info->config_digest = strdup(config->str);
	if ((id && !info->id) || !info->remote || !info->manifest_digest || !info->config_digest)
		return cairn_push_info_free(info);
	info->config_size = (int64_t)config_size;
	info->n_blobs_sent = s->n_sent;
	info->n_blobs_present = s->n_present;
	info->n_blobs_mounted = s->n_mounted;
	info->bytes_sent = atomic_load(&s->bytes_sent);
	return info;
}

cairn_push_info *cairn_push_info_free(cairn_push_info *info)
{
	if (info) {
		free(info->id);
		free(info->remote);
		free(info->manifest_digest);
		free(info->config_digest);
		free(info);
	}
	return NULL;
}

/* The layer blobs of @b as upload items. */
static int items_of(const struct image_built *b, struct push_item **ret, cairn_error **reterr)
{
	struct push_item *items = calloc(b->n ? b->n : 1, sizeof(*items));
	if (!items)
		return err_set(reterr, -ENOMEM, "push '%s': out of memory", b->id);
	for (size_t i = 0; i < b->n; i++)
		items[i] = (struct push_item){.digest = b->blobs[i]->digest,
		                              .size = (uint64_t)b->blobs[i]->size,
		                              .source = b->sources[i],
		                              .record = b->sources[i] ? b->records[i] : NULL};
	*ret = items;
	return 0;
}

int cairn_push(cairn_cache *c, const char *ref, const char *remote,
               const cairn_remote_options *opts, cairn_push_info **ret, cairn_error **reterr)
{
	int r = cache_enter(c, !c || !ref || !remote, "push", reterr);
	if (r < 0)
		return r;
	struct push_session s;
	struct image_built b = {0};
	_cleanup_free_ struct push_item *items = NULL;
	int64_t sde = opts && opts->source_date_epoch > 0 ? opts->source_date_epoch : -1;
	r = push_session_open(&s, remote, opts, reterr);
	if (r >= 0 &&
	    (r = image_build(c, ref, opts ? opts->compression : NULL, sde, &b, reterr)) < 0)
		err_prefix(reterr, "push to '%s'", s.remote);
	if (r >= 0)
		r = items_of(&b, &items, reterr);
	if (r >= 0)
		r = push_session_blobs(&s, c, items, b.n, reterr);
	if (r >= 0)
		r = push_session_buffer(&s, &b.config_digest, b.config, b.config_len, reterr);
	if (r >= 0)
		r = push_session_manifest(&s, b.manifest_mt, b.manifest, b.manifest_len,
		                          &b.manifest_digest, reterr);
	if (r >= 0 && ret) {
		cairn_push_info *info = push_session_info(&s, b.id, &b.manifest_digest,
		                                          &b.config_digest, b.config_len);
		if (!info)
			r = err_set(reterr, -ENOMEM, "push '%s': out of memory", ref);
		else {
			info->n_records = info->n_blobs = b.n;
			*ret = info;
		}
	}
	image_built_clear(&b);
	push_session_close(&s);
	return r;
}
