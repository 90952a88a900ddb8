/* SPDX-License-Identifier: MIT */
/*
 * Layer blobs in the cache (spec/buildkit-cache.md §4, §5.4, §6.6, §6.7): lazy records made from
 * blobs, extraction, and blobs computed for committed records.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/digest.h"
#include "base/fault.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/thread.h"
#include "internal.h"
#include "layer/apply.h"
#include "layer/compress.h"
#include "layer/diff.h"
#include "meta/labels.h"

/* H(a, b) of spec §4: sha256 of "a b", as a digest string. */
static void chain_hash(const char *a, const char *b, digest *ret)
{
	size_t la = strlen(a), lb = strlen(b);
	char buf[2 * (DIGEST_STR_LEN + 1) + 1];
	if (la + lb + 1 >= sizeof(buf)) {
		/* Digests are never this long (they were parsed); hash anyway. */
		_cleanup_free_ char *big = NULL;
		if (asprintf(&big, "%s %s", a, b) >= 0)
			digest_buffer(big, strlen(big), ret);
		return;
	}
	memcpy(buf, a, la);
	buf[la] = ' ';
	memcpy(buf + la + 1, b, lb);
	digest_buffer(buf, la + lb + 1, ret);
}

cairn_blob *cairn_blob_free(cairn_blob *b)
{
	if (!b)
		return NULL;
	free(b->digest);
	free(b->media_type);
	free(b->diff_id);
	free(b);
	return NULL;
}

static void cairn_blob_freep(cairn_blob **b)
{
	cairn_blob_free(*b);
}

/* What a descriptor resolves to once checked against the content store. */
struct resolved {
	digest blob;
	digest diff_id;
	char *media_type;
	int64_t size;
	bool lazy; /* not in the content store: the descriptor's source has it */
};

static void resolved_clear(struct resolved *x)
{
	free(x->media_type);
	*x = (struct resolved){0};
}

/* A source must fit a label and be printable: it ends up in messages and in the database. */
static int check_source(const cairn_descriptor *d, cairn_error **reterr)
{
	size_t n = strlen(d->source);
	if (n == 0 || n > 1024)
		return err_set(reterr, -EINVAL, "blob '%s': source must be 1-1024 bytes long",
		               d->digest);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)d->source[i] <= ' ' || d->source[i] == 0x7f)
			return err_set(reterr, -EINVAL,
			               "blob '%s': source '%.64s' has a space or control character",
			               d->digest, d->source);
	return 0;
}

/* A lazy descriptor (blob not in the content store, @d->source has it) carries what would
 * otherwise be read from the blob; the media type was parsed already. */
static int resolve_lazy(const cairn_descriptor *d, struct resolved *ret, cairn_error **reterr)
{
	if (!d->diff_id || d->size <= 0 || !d->media_type)
		return err_set(reterr, -EINVAL,
		               "blob '%s' is not in the content store: a lazy blob (source '%s') "
		               "needs its diff id, size and media type",
		               d->digest, d->source);
	ret->size = d->size;
	ret->lazy = true;
	ret->media_type = strdup(d->media_type);
	if (!ret->media_type)
		return err_set(reterr, -ENOMEM, "blob '%s': out of memory", d->digest);
	return 0;
}

/* Checks @d: the blob exists (and has the size given), the media type is one we read; computes
 * the diff id (and detects the compression) when not given. With a source, a blob the content
 * store does not have is lazy (resolve_lazy()). */
static int resolve(cairn_cache *c, const cairn_descriptor *d, struct resolved *ret,
                   cairn_error **reterr)
{
	*ret = (struct resolved){0};
	if (!d || !d->digest)
		return err_set(reterr, -EINVAL, "layer blob: no digest given");
	int r = digest_parse(d->digest, &ret->blob, reterr);
	if (r < 0)
		return err_set(reterr, -EINVAL, "layer blob: invalid digest '%s'", d->digest);
	if (d->diff_id && digest_parse(d->diff_id, &ret->diff_id, NULL) < 0)
		return err_set(reterr, -EINVAL, "blob '%s': invalid diff id '%s'", d->digest,
		               d->diff_id);
	layer_compression comp = LAYER_COMPRESSION_NONE;
	if (d->media_type && (r = layer_media_type_parse(d->media_type, &comp, reterr)) < 0)
		return err_prefix(reterr, "blob '%s'", d->digest);
	if (d->source && (r = check_source(d, reterr)) < 0)
		return r;
	if (d->source && (r = content_exists(c->store->content, ret->blob.str, reterr)) <= 0)
		return r < 0 ? r : resolve_lazy(d, ret, reterr);
	_cleanup_close_ int fd = -1;
	uint64_t size = 0;
	if ((r = content_open(c->store->content, ret->blob.str, &fd, &size, reterr)) < 0)
		return r;
	if (d->size > 0 && (uint64_t)d->size != size)
		return err_set(reterr, -EINVAL,
		               "blob '%s': size %" PRId64 " given, %" PRIu64 " found", d->digest,
		               d->size, size);
	ret->size = (int64_t)size;
	if (!d->diff_id) {
		struct layer_reader_opts o = {.what = ret->blob.str};
		_cleanup_(layer_reader_freep) layer_reader *rd = NULL;
		if ((r = layer_reader_new(fd, &o, &rd, reterr)) < 0 ||
		    (r = layer_reader_drain(rd, reterr)) < 0)
			return r;
		layer_reader_digests(rd, &ret->diff_id, NULL);
		if (!d->media_type)
			comp = layer_reader_compression(rd);
	} else if (!d->media_type) {
		uint8_t head[16];
		ssize_t n = pread(fd, head, sizeof(head), 0);
		if (n < 0)
			return err_errno(reterr, -errno, "read blob '%s'", d->digest);
		comp = layer_compression_detect(head, (size_t)n);
	}
	ret->media_type = strdup(d->media_type ? d->media_type : layer_media_type(comp));
	if (!ret->media_type)
		return err_set(reterr, -ENOMEM, "blob '%s': out of memory", d->digest);
	return 0;
}

/* Fills the blob columns of @b (strings borrowed from @x and @cbuf) for a layer on @parent (may
 * be NULL). -EINVAL when the parent has no chain ids. */
static int chain_ids(const struct resolved *x, const struct meta_record *parent, digest cbuf[2],
                     struct meta_record *b, cairn_error **reterr)
{
	digest t;
	chain_hash(x->blob.str, x->diff_id.str, &t);
	if (parent) {
		if (!parent->chain_id || !parent->blob_chain_id)
			return err_set(
				reterr, -EINVAL,
				"non-addressable parent '%s': it has no blob (set one first)",
				parent->id);
		chain_hash(parent->chain_id, x->diff_id.str, &cbuf[0]);
		chain_hash(parent->blob_chain_id, t.str, &cbuf[1]);
	} else {
		cbuf[0] = x->diff_id;
		cbuf[1] = t;
	}
	b->blob = (char *)x->blob.str;
	b->diff_id = (char *)x->diff_id.str;
	b->media_type = x->media_type;
	b->chain_id = cbuf[0].str;
	b->blob_chain_id = cbuf[1].str;
	return 0;
}

/* ---- get_by_blob ---- */

/* Pins immutable @id and finalizes it; *@ret_row gets its row. */
static int pin_parent(cairn_cache *c, const char *id, struct entry **ret_e,
                      struct meta_record *ret_row, cairn_error **reterr)
{
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	cache_lock(c);
	/* Held across processes while the child is made: a first hold writes the lease in the
	 * transaction that finds the parent live. */
	int r = meta_tx_begin(c->db, &tx, cache_needs_lease(c, id), reterr);
	if (r >= 0)
		r = cache_load(c, &tx, id, &row, reterr);
	struct entry *e = NULL;
	if (r >= 0 && row.kind == META_RECORD_MUTABLE)
		r = err_set(reterr, -EINVAL, "parent record '%s' is mutable: commit it first", id);
	if (r >= 0 && !(e = entry_acquire(c, id, false, row.equal_mutable)))
		r = err_set(reterr, -ENOMEM, "parent record '%s': out of memory", id);
	if (e)
		e->pins++;
	if (r >= 0 && e && !e->leased &&
	    ((r = cache_lease_hold(c, &tx, e, reterr)) < 0 ||
	     (r = meta_tx_commit(&tx, reterr)) < 0)) {
		e->pins--;
		entry_put(c, e);
		e = NULL;
	}
	meta_tx_end(&tx);
	cache_unlock(c);
	if (r < 0 || !e)
		return r < 0 ? r : -ENOMEM;
	*ret_e = e;
	pthread_mutex_lock(&e->lock->mu);
	r = cache_finalize_locked(c, id, reterr);
	pthread_mutex_unlock(&e->lock->mu);
	if (r < 0)
		return r;
	return cache_load_once(c, id, ret_row, reterr);
}

static void unpin_entry(cairn_cache *c, struct entry *e)
{
	if (!e)
		return;
	cache_lock(c);
	e->pins--;
	entry_put(c, e);
	cache_unlock(c);
}

/* A new ref on existing immutable @id (a dedup hit). 0 with *@ret NULL when the row is not there
 * (skipped, as later BuildKit does). Manager lock held. */
static int ref_existing_locked(cairn_cache *c, meta_tx *tx, const char *id, cairn_ref **ret,
                               cairn_error **reterr)
{
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	*ret = NULL;
	int r = cache_load(c, tx, id, &row, NULL);
	if (r < 0)
		return 0;
	struct entry *e = entry_acquire(c, id, false, row.equal_mutable);
	cairn_ref *ref = e ? cache_ref_new(c, e, false, true) : NULL;
	if (!ref) {
		if (e)
			entry_put(c, e);
		return err_set(reterr, -ENOMEM, "record '%s': out of memory", id);
	}
	if ((r = cache_lease_hold(c, tx, e, reterr)) < 0) {
		cache_ref_drop_locked(c, ref);
		return r;
	}
	*ret = ref;
	return 1;
}

/* Records where blob @x can be fetched from (its source and size), in write transaction @tx. */
static int set_source(meta_tx *tx, const struct resolved *x, const char *source,
                      cairn_error **reterr)
{
	char size[32];
	snprintf(size, sizeof(size), "%" PRId64, x->size);
	int r = meta_content_label_set(tx, x->blob.str, CACHE_LABEL_SOURCE, source, reterr);
	if (r >= 0)
		r = meta_content_label_set(tx, x->blob.str, CACHE_LABEL_SIZE, size, reterr);
	return r;
}

/* The dedup lookups and the insert of a new record, under the manager lock. @source (may be
 * NULL) is kept with the blob, in the same transaction. */
static int get_by_blob_locked(cairn_cache *c, struct meta_record *rec, const struct resolved *x,
                              const char *source, cairn_ref **ret, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	_cleanup_free_ char *hit = NULL, *link = NULL;
	_cleanup_(meta_record_clear) struct meta_record lrow = {0};
	int r = meta_tx_begin(c->db, &tx, true, reterr);
	if (r < 0 || (source && (r = set_source(&tx, x, source, reterr)) < 0))
		return r;
	/* Exact dedup: the same blob sequence (§5.4 step 5). */
	r = meta_record_find_chain(&tx, c->driver, true, rec->blob_chain_id, &hit, reterr);
	if (r < 0)
		return r;
	if (r > 0 && (r = ref_existing_locked(c, &tx, hit, ret, reterr)) != 0) {
		/* The hit's lease resource commits with the transaction that found it live. */
		if (r > 0 && (r = meta_tx_commit(&tx, reterr)) < 0) {
			cache_ref_drop_locked(c, *ret);
			*ret = NULL;
		}
		return r < 0 ? r : 0;
	}
	/* Content dedup: the same tree, another blob: share its snapshot (step 6-7). */
	r = meta_record_find_chain(&tx, c->driver, false, rec->chain_id, &link, reterr);
	if (r < 0)
		return r;
	if (r > 0 && cache_load(c, &tx, link, &lrow, NULL) == 0 && lrow.snapshot &&
	    !lrow.equal_mutable) {
		rec->snapshot = lrow.snapshot;
		rec->extracted = lrow.extracted;
	}
	if ((r = meta_record_insert(&tx, rec, reterr)) < 0)
		return r;
	struct entry *e = entry_acquire(c, rec->id, false, NULL);
	cairn_ref *ref = e ? cache_ref_new(c, e, false, true) : NULL;
	if (!ref) {
		if (e)
			entry_put(c, e);
		return err_set(reterr, -ENOMEM, "record '%s': out of memory", rec->id);
	}
	if ((r = cache_lease_hold(c, &tx, e, reterr)) < 0 ||
	    (r = meta_tx_commit(&tx, reterr)) < 0) {
		cache_ref_drop_locked(c, ref);
		return r;
	}
	log_debug("record '%s' for blob '%s' (snapshot '%s', %s%s%s)", rec->id, rec->blob,
	          rec->snapshot, rec->extracted ? "extracted" : "not extracted",
	          x->lazy ? ", lazy from " : "", x->lazy ? source : "");
	fault_point("import.recorded");
	*ret = ref;
	return 0;
}

int cairn_cache_get_by_blob(cairn_cache *c, const cairn_descriptor *desc, const cairn_ref *parent,
                            cairn_ref **ret, cairn_error **reterr)
{
	int r = cache_enter(c, !desc || !ret, "get by blob", reterr);
	if (r < 0)
		return r;
	_cleanup_(resolved_clear) struct resolved x = {0};
	if ((r = resolve(c, desc, &x, reterr)) < 0)
		return err_prefix(reterr, "get by blob");
	fault_point("import.resolved");
	struct entry *pe = NULL;
	_cleanup_(meta_record_clear) struct meta_record prow = {0};
	if (parent && (r = pin_parent(c, parent->id, &pe, &prow, reterr)) < 0) {
		unpin_entry(c, pe);
		return err_prefix(reterr, "get by blob '%s'", x.blob.str);
	}
	char id[CAIRN_RECORD_ID_LEN + 1];
	cache_new_id(id);
	digest cbuf[2];
	struct meta_record rec = {
		.id = id,
		.snapshotter = (char *)c->driver,
		.kind = META_RECORD_IMMUTABLE,
		.parent = parent ? (char *)parent->id : NULL,
		.created_at = meta_now_ns(),
	};
	r = chain_ids(&x, parent ? &prow : NULL, cbuf, &rec, reterr);
	if (r >= 0) {
		rec.snapshot = rec.chain_id;
		cache_lock(c);
		r = get_by_blob_locked(c, &rec, &x, desc->source, ret, reterr);
		cache_unlock(c);
	}
	unpin_entry(c, pe);
	if (r < 0)
		return err_prefix(reterr, "get by blob '%s'", x.blob.str);
	return 0;
}

/* ---- lazy blobs: fetched before a chain is applied or its blobs are handed out ---- */

void cairn_cache_set_fetcher(cairn_cache *c, cairn_fetch_fn fn, void *userdata,
                             void (*free_userdata)(void *userdata))
{
	if (!c)
		return;
	cache_fetcher_free(c);
	c->fetch = fn;
	c->fetch_userdata = userdata;
	c->fetch_free = free_userdata;
}

void cache_fetcher_free(cairn_cache *c)
{
	if (c->fetch_free && c->fetch_userdata)
		c->fetch_free(c->fetch_userdata);
	c->fetch = NULL;
	c->fetch_userdata = NULL;
	c->fetch_free = NULL;
}

void cache_set_fetch_jobs(cairn_cache *c, unsigned jobs)
{
	if (c)
		c->fetch_jobs = jobs;
}

/* One missing blob of a chain, and its share of a fetch. */
struct lazy_blob {
	char *record, *digest, *source;
	int64_t size;
	struct fetch_set *set;
	uint64_t done; /* bytes reported so far; under set->mu */
};

struct fetch_set {
	cairn_cache *c;
	struct lazy_blob *v;
	size_t n;
	uint64_t bytes; /* of the blobs to fetch */
	uint64_t total; /* what progress counts to: @bytes plus what the caller does next */
	cairn_progress_fn fn;
	void *userdata;
	pthread_mutex_t mu;
	uint64_t done; /* under mu */
	size_t next;   /* the next blob to fetch; under mu */
	int error;     /* the first failure; under mu */
	cairn_error *err;
};

static void fetch_set_clear(struct fetch_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].record);
		free(s->v[i].digest);
		free(s->v[i].source);
	}
	free(s->v);
	cairn_error_free(s->err);
}

struct labels_found {
	char *source;
	int64_t size;
};

static int pick_label(const char *key, const char *value, void *userdata)
{
	struct labels_found *l = userdata;
	if (strcmp(key, CACHE_LABEL_SOURCE) == 0 && !l->source && !(l->source = strdup(value)))
		return -ENOMEM;
	if (strcmp(key, CACHE_LABEL_SIZE) == 0) {
		char *end = NULL;
		long long v = strtoll(value, &end, 10);
		l->size = end && !*end && v > 0 ? v : 0;
	}
	return 0;
}

int cache_lazy_labels(meta_tx *tx, const char *blob, char **ret_source, int64_t *ret_size,
                      cairn_error **reterr)
{
	struct labels_found l = {0};
	int r = meta_content_labels(tx, blob, pick_label, &l, reterr);
	if (r == -ENOMEM)
		r = err_set(reterr, -ENOMEM, "labels of blob '%s': out of memory", blob);
	if (r < 0) {
		free(l.source);
		return r;
	}
	*ret_source = l.source;
	*ret_size = l.size;
	return 0;
}

/* Adds the blob of @row to @s when it is lazy: not in the content store, a source known. */
static int add_lazy(meta_tx *tx, struct fetch_set *s, const struct meta_record *row,
                    cairn_error **reterr)
{
	int r = content_exists(s->c->store->content, row->blob, reterr);
	if (r != 0)
		return r < 0 ? r : 0;
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].digest, row->blob) == 0)
			return 0;
	struct labels_found l = {0};
	r = cache_lazy_labels(tx, row->blob, &l.source, &l.size, reterr);
	if (r < 0 || !l.source) {
		/* Not lazy: the blob is gone, which extract reports as it always did. */
		free(l.source);
		return r;
	}
	struct lazy_blob *v = realloc(s->v, (s->n + 1) * sizeof(*v));
	if (!v) {
		free(l.source);
		return err_set(reterr, -ENOMEM, "out of memory");
	}
	s->v = v;
	v[s->n] = (struct lazy_blob){.record = strdup(row->id),
	                             .digest = strdup(row->blob),
	                             .source = l.source,
	                             .size = l.size,
	                             .set = s};
	if (!v[s->n].record || !v[s->n].digest) {
		s->n++;
		return err_set(reterr, -ENOMEM, "out of memory");
	}
	s->bytes += (uint64_t)l.size;
	s->n++;
	return 0;
}

/*
 * Collects into @s the lazy blobs of @id's chain: of every record (@pending_only false), or of
 * those not extracted yet (the chain up to the first extracted record). *@ret_local gets the
 * bytes of the pending records' blobs that are local.
 */
static int collect_lazy(cairn_cache *c, const char *id, bool pending_only, struct fetch_set *s,
                        uint64_t *ret_local, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	_cleanup_free_ char *next = r < 0 ? NULL : strdup(id);
	if (r >= 0 && !next)
		return err_set(reterr, -ENOMEM, "out of memory");
	*ret_local = 0;
	while (next && r >= 0) {
		_cleanup_(meta_record_clear) struct meta_record row = {0};
		if ((r = cache_load(c, &tx, next, &row, reterr)) < 0)
			break;
		free(next);
		next = NULL;
		if (pending_only && row.extracted)
			break;
		content_blob_info bi = {0};
		if (row.blob && content_info(c->store->content, row.blob, &bi, NULL) == 0)
			*ret_local += bi.size;
		else if (row.blob)
			r = add_lazy(&tx, s, &row, reterr);
		next = TAKE_PTR(row.parent);
	}
	return r;
}

static void fetch_progress(uint64_t done, uint64_t total, void *userdata)
{
	(void)total;
	struct lazy_blob *b = userdata;
	struct fetch_set *s = b->set;
	pthread_mutex_lock(&s->mu);
	if (done > b->done) {
		s->done += done - b->done;
		b->done = done;
		if (s->fn)
			s->fn(s->done, s->total, s->userdata);
	}
	pthread_mutex_unlock(&s->mu);
}

/* The work of one fetch (single flight per digest: two extracts sharing a blob fetch it once). */
static int fetch_work(void *userdata, const atomic_bool *cancelled, int64_t *ret_value,
                      cairn_error **reterr)
{
	(void)cancelled;
	struct lazy_blob *b = userdata;
	cairn_cache *c = b->set->c;
	*ret_value = 0;
	int r = content_exists(c->store->content, b->digest, reterr);
	if (r != 0)
		return r < 0 ? r : 0;
	r = c->fetch(c->fetch_userdata, b->source, b->digest, b->size, fetch_progress, b, reterr);
	if (r < 0)
		return err_set(reterr, r, "the fetcher failed"); /* keeps the fetcher's message */
	if ((r = content_exists(c->store->content, b->digest, reterr)) == 0)
		return err_set(reterr, -EIO, "the fetcher returned without the blob");
	return r < 0 ? r : 0;
}

static int fetch_one(struct lazy_blob *b, cairn_error **reterr)
{
	struct fetch_set *s = b->set;
	_cleanup_free_ char *key = NULL;
	if (asprintf(&key, "fetch %s", b->digest) < 0)
		return err_set(reterr, -ENOMEM, "out of memory");
	int r = flight_do(s->c->flight, key, fetch_work, b, NULL, NULL, reterr);
	if (r < 0)
		return err_prefix(reterr, "record '%s': fetch blob '%s' from '%s'", b->record,
		                  b->digest, b->source);
	return 0;
}

static void *fetch_thread(void *userdata)
{
	struct fetch_set *s = userdata;
	for (;;) {
		pthread_mutex_lock(&s->mu);
		size_t i = s->next++;
		bool stop = i >= s->n || s->error;
		pthread_mutex_unlock(&s->mu);
		if (stop)
			return NULL;
		cairn_error *err = NULL;
		int r = fetch_one(&s->v[i], &err);
		pthread_mutex_lock(&s->mu);
		if (r < 0 && !s->error) {
			s->error = r;
			s->err = TAKE_PTR(err);
		}
		pthread_mutex_unlock(&s->mu);
		cairn_error_free(err);
	}
}

/* Fetches the blobs of @s, at most c->fetch_jobs at once; the first failure stops what has not
 * started and is returned. */
static int fetch_all(struct fetch_set *s, cairn_error **reterr)
{
	cairn_cache *c = s->c;
	if (!c->fetch)
		return err_set(
			reterr, -ENOENT,
			"record '%s': blob '%s' is not in the content store and no fetcher is "
			"set to get it from '%s'",
			s->v[0].record, s->v[0].digest, s->v[0].source);
	size_t jobs = c->fetch_jobs ? c->fetch_jobs : CACHE_FETCH_JOBS;
	if (jobs > s->n)
		jobs = s->n;
	pthread_t tids[64];
	if (jobs > ELEMENTSOF(tids))
		jobs = ELEMENTSOF(tids);
	size_t started = 0;
	/* The caller's thread is one of the workers. */
	for (; started + 1 < jobs; started++)
		if (pthread_create(&tids[started], NULL, fetch_thread, s) != 0)
			break;
	fetch_thread(s);
	for (size_t i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	if (s->error)
		return err_set(reterr, s->error, "%s", cairn_error_message(s->err));
	return 0;
}

/* The records whose blobs arrived count them now: their recorded sizes are stale. */
static int sizes_changed(struct fetch_set *s, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(s->c->db, &tx, true, reterr);
	for (size_t i = 0; r >= 0 && i < s->n; i++)
		r = meta_record_bump_gen(&tx, s->v[i].record, reterr);
	return r < 0 ? r : meta_tx_commit(&tx, reterr);
}

/*
 * Fetches the lazy blobs of @id's chain (see collect_lazy() for @pending_only) through the
 * cache's fetcher. Progress counts the fetched bytes toward a total that adds, with
 * @pending_only, the bytes of every pending blob (extract applies them next); *@ret_fetched (may
 * be NULL) gets the bytes fetched.
 */
static int fetch_chain(cairn_cache *c, const char *id, bool pending_only, cairn_progress_fn fn,
                       void *userdata, uint64_t *ret_fetched, cairn_error **reterr)
{
	struct fetch_set s = {.c = c, .fn = fn, .userdata = userdata};
	uint64_t local = 0;
	int r = collect_lazy(c, id, pending_only, &s, &local, reterr);
	if (r >= 0 && s.n) {
		s.total = s.bytes + (pending_only ? s.bytes + local : 0);
		pthread_mutex_init(&s.mu, NULL);
		r = fetch_all(&s, reterr);
		pthread_mutex_destroy(&s.mu);
		if (r >= 0)
			r = sizes_changed(&s, reterr);
	}
	if (ret_fetched)
		*ret_fetched = r >= 0 ? s.bytes : 0;
	fetch_set_clear(&s);
	return r;
}

/* ---- extract ---- */

struct extract_args {
	cairn_cache *c;
	const char *id;
	cairn_progress_fn fn;
	void *userdata;
	uint64_t base, total; /* bytes of the layers before this one, of all of them */
	uint64_t size;        /* bytes of this layer's blob */
};

static void apply_progress(uint64_t bytes, void *userdata)
{
	struct extract_args *a = userdata;
	if (2 * bytes >= a->size)
		fault_point("extract.applying");
	if (a->fn)
		a->fn(a->base + bytes, a->total, a->userdata);
}

static bool committed(cairn_cache *c, const char *key)
{
	_cleanup_(snap_info_freep) snap_info *info = NULL;
	return snap_stat(c->snap, key, &info, NULL) == 0 && info->kind == SNAP_KIND_COMMITTED;
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
}

/* Opens the layer directories of @row's ancestors, nearest first (overlay's lower layers). */
static int open_parents(cairn_cache *c, const struct meta_record *row, int **ret_fds, size_t *ret_n,
                        cairn_error **reterr)
{
	int *fds = NULL;
	size_t n = 0;
	_cleanup_free_ char *next = row->parent ? strdup(row->parent) : NULL;
	int r = 0;
	while (next) {
		_cleanup_(meta_record_clear) struct meta_record p = {0};
		if ((r = cache_load_once(c, next, &p, reterr)) < 0)
			break;
		int *nf = realloc(fds, (n + 1) * sizeof(int));
		if (!nf) {
			r = err_set(reterr, -ENOMEM, "out of memory");
			break;
		}
		fds = nf;
		const char *key = p.equal_mutable ? p.equal_mutable : p.snapshot;
		if ((r = snap_open_fs(c->snap, key, NULL, reterr)) < 0)
			break;
		fds[n++] = r;
		free(next);
		next = TAKE_PTR(p.parent);
	}
	if (r < 0) {
		close_fds(fds, n);
		return r;
	}
	*ret_fds = fds;
	*ret_n = n;
	return 0;
}

/*
 * Early writeback of an extract: while the layer is applied, a thread runs syncfs() on the
 * snapshot's filesystem every FLUSH_PERIOD_MS, so the disk writes what is already there and the
 * syncfs() before the commit finds little left. Its syncfs() goes through its own open file,
 * so a writeback error it meets is still reported to the extract's final syncfs() (errors are
 * sampled per open file). Only a hint: without the thread, the final syncfs() does it all.
 */
#define FLUSH_PERIOD_MS 500

struct flusher {
	int fd;
	bool running, stop;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
};

static void *flush_loop(void *userdata)
{
	struct flusher *f = userdata;
	pthread_mutex_lock(&f->mu);
	while (!f->stop) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += FLUSH_PERIOD_MS * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		while (!f->stop && pthread_cond_timedwait(&f->cond, &f->mu, &until) != ETIMEDOUT)
			;
		if (f->stop)
			break;
		pthread_mutex_unlock(&f->mu);
		(void)syncfs(f->fd);
		pthread_mutex_lock(&f->mu);
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

/* Starts early writeback of the filesystem of @dirfd; a failure to start is ignored. */
static void flusher_start(struct flusher *f, int dirfd)
{
	*f = (struct flusher){.fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
	if (f->fd < 0)
		return;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cond, &ca);
	pthread_condattr_destroy(&ca);
	f->running = thread_spawn(&f->thread, flush_loop, f) == 0;
}

static void flusher_stop(struct flusher *f)
{
	if (f->fd < 0)
		return;
	if (f->running) {
		pthread_mutex_lock(&f->mu);
		f->stop = true;
		pthread_cond_signal(&f->cond);
		pthread_mutex_unlock(&f->mu);
		pthread_join(f->thread, NULL);
	}
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->mu);
	close(f->fd);
	f->fd = -1;
}

/*
 * Applies @row's blob into @rootfd (the own layer directory of the snapshot being made for it),
 * on its parents' layers (overlay). With @sync the tree is durable when this returns (large
 * files are written back early, a thread syncs while the layer is applied, and a failed
 * writeback fails the call); without, it may still sit in the page cache.
 */
static int apply_blob(cairn_cache *c, const struct meta_record *row, int rootfd, bool sync,
                      layer_progress_fn progress, void *userdata, cairn_error **reterr)
{
	_cleanup_close_ int blobfd = -1;
	int *pfds = NULL;
	size_t np = 0;
	bool overlay = strcmp(c->driver, "overlay") == 0;
	struct layer_apply_opts o = {
		.whiteout = overlay ? LAYER_WHITEOUT_OVERLAY : LAYER_WHITEOUT_DELETE,
		.writeback = sync,
		.what = row->blob,
		.expected_diffid = row->diff_id,
		.progress = progress,
		.userdata = userdata,
	};
	int r = 0;
	if (overlay && (r = open_parents(c, row, &pfds, &np, reterr)) < 0)
		return r;
	o.parent_fds = pfds;
	o.n_parents = np;
	if ((r = content_open(c->store->content, row->blob, &blobfd, NULL, reterr)) < 0)
		goto out;
	fault_point("extract.opened");
	struct flusher fl = {.fd = -1};
	if (sync)
		flusher_start(&fl, rootfd);
	r = layer_apply(rootfd, blobfd, &o, NULL, reterr);
	flusher_stop(&fl);
	if (r >= 0 && sync && syncfs(rootfd) < 0)
		r = err_errno(reterr, -errno, "sync the extracted tree of record '%s'", row->id);
out:
	close_fds(pfds, np);
	return r;
}

/*
 * Whether an extract may commit before its files are synced: on overlay (a layer directory
 * holds only its own layer, so it can be extracted again in place) and when the boot id is
 * known (src/cache/unsynced.c).
 */
static bool defer_sync(cairn_cache *c)
{
	return c->boot[0] && strcmp(c->driver, "overlay") == 0;
}

/* Applies @row's blob into a new active snapshot on @lower and commits it as its snapshot. */
static int extract_one(struct extract_args *a, const struct meta_record *row, const char *lower,
                       cairn_error **reterr)
{
	cairn_cache *c = a->c;
	if (!row->blob)
		return err_set(reterr, -EINVAL, "record '%s' has neither data nor a blob", row->id);
	char rnd[CAIRN_RECORD_ID_LEN + 1];
	cache_new_id(rnd);
	_cleanup_free_ char *key = NULL;
	if (asprintf(&key, "extract-%s %s", rnd, row->chain_id ? row->chain_id : row->id) < 0)
		return err_set(reterr, -ENOMEM, "out of memory");
	int r = snap_prepare(c->snap, key, lower, NULL, 0, NULL, NULL, reterr);
	if (r < 0)
		return r;
	fault_point("extract.prepared");
	_cleanup_close_ int rootfd = -1;
	_cleanup_(cairn_error_freep) cairn_error *err = NULL;
	bool sync = !defer_sync(c);
	if ((r = snap_open_fs(c->snap, key, NULL, reterr)) < 0)
		goto fail;
	rootfd = r;
	if ((r = apply_blob(c, row, rootfd, sync, apply_progress, a, reterr)) < 0)
		goto fail;
	/* Unsynced, the tree is marked before the commit that publishes it: a reboot before it is
	 * synced sends it back to be extracted again. */
	if (!sync && (r = cache_unsynced_mark(c, row->snapshot, reterr)) < 0)
		goto fail;
	fault_point("extract.applied");
	r = snap_commit(c->snap, row->snapshot, key, NULL, 0, &err);
	if (r < 0) {
		/* A record sharing the snapshot (same chain id) was extracted meanwhile: fine. */
		snap_remove(c->snap, key, NULL);
		if (r == -EEXIST && committed(c, row->snapshot))
			return 0;
		return err_set(reterr, r, "%s", cairn_error_message(err));
	}
	return 0;
fail:
	/* The half-extracted snapshot goes; nothing was committed. */
	snap_remove(c->snap, key, NULL);
	return r;
}

int cache_reextract(cairn_cache *c, const char *snapshot, cairn_error **reterr)
{
	_cleanup_free_ char *id = NULL;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	if (r < 0 || (r = meta_record_find_snapshot(&tx, c->driver, snapshot, &id, reterr)) < 0)
		return r;
	meta_tx_end(&tx);
	if (r == 0 || !committed(c, snapshot))
		return 0;
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	if ((r = cache_load_once(c, id, &row, reterr)) < 0)
		return r;
	_cleanup_close_ int rootfd = snap_open_fs(c->snap, snapshot, NULL, reterr);
	if (rootfd < 0)
		return rootfd;
	if ((r = fs_rm_rf_children(rootfd, snapshot, reterr)) < 0)
		return err_prefix(reterr, "empty snapshot '%s'", snapshot);
	if ((r = apply_blob(c, &row, rootfd, false, NULL, NULL, reterr)) < 0)
		return err_prefix(reterr, "extract record '%s' again into snapshot '%s'", row.id,
		                  snapshot);
	return 1;
}

static int extract_work(void *userdata, const atomic_bool *cancelled, int64_t *ret_value,
                        cairn_error **reterr)
{
	struct extract_args *a = userdata;
	cairn_cache *c = a->c;
	_cleanup_(meta_record_clear) struct meta_record row = {0}, parent = {0};
	*ret_value = 0;
	int r = cache_load_once(c, a->id, &row, reterr);
	if (r < 0 || row.extracted)
		return r;
	if (!committed(c, row.snapshot)) {
		const char *lower = NULL;
		if (row.parent) {
			if ((r = cache_load_once(c, row.parent, &parent, reterr)) < 0)
				return r;
			if (!parent.extracted)
				return err_set(reterr, -EINVAL,
				               "parent record '%s' is not extracted", parent.id);
			lower = parent.snapshot;
		}
		if ((r = extract_one(a, &row, lower, reterr)) < 0)
			return r;
		fault_point("extract.committed");
	}
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if ((r = meta_tx_begin(c->db, &tx, true, reterr)) < 0 ||
	    (r = meta_record_set_extracted_snapshot(&tx, c->driver, row.snapshot, true, reterr)) <
	            0 ||
	    (r = meta_tx_commit(&tx, reterr)) < 0)
		return r;
	log_debug("extracted record '%s' (blob '%s')", row.id, row.blob);
	fault_point("extract.recorded");
	*ret_value = 1;
	return 0;
}

/* The records of @id's chain that are not extracted, root first, into *@ret_ids; their blob
 * sizes summed into *@ret_total. */
static int pending_chain(cairn_cache *c, const char *id, char ***ret_ids, uint64_t **ret_sizes,
                         size_t *ret_n, uint64_t *ret_total, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	if (r < 0)
		return r;
	char **ids = NULL;
	uint64_t *sizes = NULL, total = 0;
	size_t n = 0;
	_cleanup_free_ char *next = strdup(id);
	while (next && r >= 0) {
		_cleanup_(meta_record_clear) struct meta_record row = {0};
		if ((r = cache_load(c, &tx, next, &row, reterr)) < 0)
			break;
		free(next);
		next = NULL;
		if (row.extracted)
			break;
		char **ni = realloc(ids, (n + 1) * sizeof(char *));
		uint64_t *ns = ni ? realloc(sizes, (n + 1) * sizeof(uint64_t)) : NULL;
		if (ni)
			ids = ni;
		if (ns)
			sizes = ns;
		if (!ni || !ns) {
			r = err_set(reterr, -ENOMEM, "out of memory");
			break;
		}
		content_blob_info bi = {0};
		sizes[n] = row.blob && content_info(c->store->content, row.blob, &bi, NULL) == 0
		                   ? bi.size
		                   : 0;
		total += sizes[n];
		ids[n++] = TAKE_PTR(row.id);
		next = TAKE_PTR(row.parent);
	}
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			free(ids[i]);
		free(ids);
		free(sizes);
		return r;
	}
	/* Root first. */
	for (size_t i = 0; i < n / 2; i++) {
		char *t = ids[i];
		ids[i] = ids[n - 1 - i];
		ids[n - 1 - i] = t;
		uint64_t s = sizes[i];
		sizes[i] = sizes[n - 1 - i];
		sizes[n - 1 - i] = s;
	}
	*ret_ids = ids;
	*ret_sizes = sizes;
	*ret_n = n;
	*ret_total = total;
	return 0;
}

int cache_extract_id(cairn_cache *c, const char *id, cairn_progress_fn fn, void *userdata,
                     cairn_error **reterr)
{
	char **ids = NULL;
	uint64_t *sizes = NULL, total = 0, done = 0;
	size_t n = 0;
	/* Every lazy blob first, several at once: nothing is applied unless all arrived. */
	int r = fetch_chain(c, id, true, fn, userdata, &done, reterr);
	if (r >= 0)
		r = pending_chain(c, id, &ids, &sizes, &n, &total, reterr);
	if (r < 0)
		return err_prefix(reterr, "extract record '%s'", id);
	total += done;
	for (size_t i = 0; i < n && r >= 0; i++) {
		struct extract_args a = {c, ids[i], fn, userdata, done, total, sizes[i]};
		_cleanup_free_ char *key = NULL;
		if (asprintf(&key, "%s-extract", ids[i]) < 0) {
			r = err_set(reterr, -ENOMEM, "out of memory");
			break;
		}
		r = flight_do(c->flight, key, extract_work, &a, NULL, NULL, reterr);
		if (r < 0)
			err_prefix(reterr, "extract record '%s'", ids[i]);
		done += sizes[i];
	}
	if (r >= 0 && n && fn)
		fn(total, total, userdata);
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	free(sizes);
	return r < 0 ? r : 0;
}

int cairn_ref_extract(cairn_ref *ref, cairn_progress_fn fn, void *userdata, cairn_error **reterr)
{
	int r = cache_ref_check(ref, "extract", reterr);
	if (r < 0)
		return r;
	return cache_extract_id(ref->cache, ref->id, fn, userdata, reterr);
}

/* ---- set_blob ---- */

/* Sets the blob of finalized immutable @id; the record lock held. */
static int set_blob_locked(cairn_cache *c, const char *id, const struct resolved *x,
                           cairn_error **reterr)
{
	_cleanup_(meta_record_clear) struct meta_record row = {0}, prow = {0};
	int r = cache_load_once(c, id, &row, reterr);
	if (r < 0)
		return r;
	if (row.chain_id)
		return 0;
	if ((r = cache_finalize_locked(c, id, reterr)) < 0)
		return r;
	if (row.parent && (r = cache_load_once(c, row.parent, &prow, reterr)) < 0)
		return r;
	digest cbuf[2];
	struct meta_record b = {0};
	if ((r = chain_ids(x, row.parent ? &prow : NULL, cbuf, &b, reterr)) < 0)
		return err_prefix(reterr, "set blob");
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if ((r = meta_tx_begin(c->db, &tx, true, reterr)) < 0 ||
	    (r = meta_record_set_blob(&tx, id, &b, reterr)) < 0 ||
	    (r = meta_tx_commit(&tx, reterr)) < 0)
		return r;
	log_debug("record '%s': blob '%s' (diff id '%s')", id, b.blob, b.diff_id);
	return 0;
}

int cairn_ref_set_blob(cairn_ref *ref, const cairn_descriptor *desc, cairn_error **reterr)
{
	int r = cache_ref_check(ref, "set blob", reterr);
	if (r < 0)
		return r;
	if (ref->is_mutable)
		return err_set(reterr, -EINVAL, "set blob '%s': the ref is mutable (commit it)",
		               ref->id);
	_cleanup_(resolved_clear) struct resolved x = {0};
	if ((r = resolve(ref->cache, desc, &x, reterr)) < 0)
		return err_prefix(reterr, "set blob '%s'", ref->id);
	if (x.lazy)
		return err_set(reterr, -ENOENT, "set blob '%s': blob '%s' not found", ref->id,
		               x.blob.str);
	pthread_mutex_lock(&ref->e->lock->mu);
	r = set_blob_locked(ref->cache, ref->id, &x, reterr);
	pthread_mutex_unlock(&ref->e->lock->mu);
	if (r < 0)
		return err_prefix(reterr, "set blob '%s'", ref->id);
	return 0;
}

/* ---- diff and get_remote ---- */

/* Compressor threads: one per CPU, at most 8 (the output does not depend on the number). */
static unsigned compress_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 8 ? 8 : (unsigned)n;
}

/* Writes the layer of record @row to @fd. */
static int diff_row(cairn_cache *c, const struct meta_record *row, layer_compression comp,
                    int level, int64_t sde, int fd, struct resolved *ret, cairn_error **reterr)
{
	if (!row->extracted || !row->snapshot || row->equal_mutable)
		return err_set(reterr, -EINVAL, "record '%s' is not extracted and has no blob",
		               row->id);
	_cleanup_(meta_record_clear) struct meta_record prow = {0};
	_cleanup_close_ int upper = -1, lower = -1;
	int r;
	if (row->parent) {
		if ((r = cache_load_once(c, row->parent, &prow, reterr)) < 0)
			return r;
		if (!prow.extracted || !prow.snapshot)
			return err_set(reterr, -EINVAL, "parent record '%s' is not extracted",
			               prow.id);
	}
	if ((r = snap_open_fs(c->snap, row->snapshot, NULL, reterr)) < 0)
		return r;
	upper = r;
	bool overlay = strcmp(c->driver, "overlay") == 0;
	if (!overlay && row->parent) {
		if ((r = snap_open_fs(c->snap, prow.snapshot, NULL, reterr)) < 0)
			return r;
		lower = r;
	}
	struct layer_writer_opts wo = {.compression = comp,
	                               .level = level,
	                               .threads = compress_threads(),
	                               .what = row->id};
	_cleanup_(layer_writer_freep) layer_writer *w = NULL;
	if ((r = layer_writer_new(fd, &wo, &w, reterr)) < 0)
		return r;
	struct layer_diff_opts o = {
		.what = row->id, .has_source_date_epoch = sde >= 0, .source_date_epoch = sde};
	if (overlay) {
		/* Without the merged lower tree every whiteout and directory is written. */
		r = layer_diff_overlay(-1, upper, w, &o, NULL, reterr);
		if (r == -EOPNOTSUPP)
			return err_prefix(reterr, "diff record '%s'", row->id);
	} else {
		r = layer_diff(lower, upper, w, &o, NULL, reterr);
	}
	if (r < 0)
		return r;
	uint64_t csize = 0;
	if ((r = layer_writer_finish(w, &ret->diff_id, &ret->blob, NULL, &csize, reterr)) < 0)
		return r;
	ret->size = (int64_t)csize;
	ret->media_type = strdup(layer_media_type(comp));
	if (!ret->media_type)
		return err_set(reterr, -ENOMEM, "out of memory");
	return 0;
}

/* A temporary file in the store's tmp/ (gone when closed). */
static int open_tmp(cairn_cache *c, cairn_error **reterr)
{
	int fd = openat(c->store->rootfd, "tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_errno(reterr, -errno, "open a temporary file in '%s/tmp'",
		                 c->store->root);
	return fd;
}

/* Computes, stores and sets the blob of record @id (finalized, extracted, no blob). */
static int make_blob(cairn_cache *c, const char *id, layer_compression comp, int level, int64_t sde,
                     cairn_error **reterr)
{
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	int r = cache_load_once(c, id, &row, reterr);
	if (r < 0 || row.blob)
		return r;
	_cleanup_close_ int fd = open_tmp(c, reterr);
	if (fd < 0)
		return fd;
	_cleanup_(resolved_clear) struct resolved x = {0};
	if ((r = diff_row(c, &row, comp, level, sde, fd, &x, reterr)) < 0)
		return r;
	if (lseek(fd, 0, SEEK_SET) < 0)
		return err_errno(reterr, -errno, "seek the layer of record '%s'", id);
	if ((r = content_add_fd(c->store->content, fd, x.blob.str, NULL, NULL, reterr)) < 0)
		return r;
	/* The record lock of @id, when this process has its entry; else no one here uses it. */
	cache_lock(c);
	struct entry *e = entry_acquire(c, id, false, NULL);
	if (e)
		e->pins++;
	cache_unlock(c);
	if (!e)
		return err_set(reterr, -ENOMEM, "record '%s': out of memory", id);
	pthread_mutex_lock(&e->lock->mu);
	r = set_blob_locked(c, id, &x, reterr);
	pthread_mutex_unlock(&e->lock->mu);
	unpin_entry(c, e);
	return r;
}

static int parse_compression(const char *s, layer_compression *ret, int *ret_level,
                             cairn_error **reterr)
{
	*ret = LAYER_COMPRESSION_GZIP;
	*ret_level = LAYER_LEVEL_DEFAULT;
	return s ? layer_compression_parse(s, ret, ret_level, reterr) : 0;
}

static int blob_of(cairn_cache *c, const char *id, cairn_blob **ret, cairn_error **reterr)
{
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	int r = cache_load_once(c, id, &row, reterr);
	if (r < 0)
		return r;
	if (!row.blob)
		return err_set(reterr, -ENOENT, "record '%s' has no blob", id);
	content_blob_info bi = {0};
	if ((r = content_info(c->store->content, row.blob, &bi, reterr)) < 0)
		return r;
	_cleanup_(cairn_blob_freep) cairn_blob *b = calloc(1, sizeof(*b));
	if (!b)
		return err_set(reterr, -ENOMEM, "out of memory");
	b->digest = TAKE_PTR(row.blob);
	b->diff_id = TAKE_PTR(row.diff_id);
	b->media_type = TAKE_PTR(row.media_type);
	b->size = (int64_t)bi.size;
	*ret = TAKE_PTR(b);
	return 0;
}

/* The common start of get_remote and diff: a usable immutable ref, a known compression, and the
 * record owning its data (finalized under the record lock). */
static int layer_out_prepare(cairn_ref *ref, const char *op, bool bad_args, const char *compression,
                             layer_compression *comp, int *level, cairn_error **reterr)
{
	int r = cache_ref_check(ref, op, reterr);
	if (r < 0)
		return r;
	if (ref->is_mutable || bad_args)
		return err_set(reterr, -EINVAL, "%s '%s': %s", op, ref->id,
		               ref->is_mutable ? "the ref is mutable (commit it)"
		                               : "invalid arguments");
	if ((r = parse_compression(compression, comp, level, reterr)) < 0)
		return r;
	pthread_mutex_lock(&ref->e->lock->mu);
	r = cache_finalize_locked(ref->cache, ref->id, reterr);
	pthread_mutex_unlock(&ref->e->lock->mu);
	return r < 0 ? err_prefix(reterr, "%s '%s'", op, ref->id) : 0;
}

int cairn_ref_get_remote(cairn_ref *ref, const char *compression, int64_t source_date_epoch,
                         cairn_blob **ret, cairn_error **reterr)
{
	cairn_cache *c = ref ? ref->cache : NULL;
	layer_compression comp;
	int level;
	int r = layer_out_prepare(ref, "get remote", !ret, compression, &comp, &level, reterr);
	if (r < 0)
		return r;
	/* Lazy blobs are handed out as they are, once they are here. */
	if ((r = fetch_chain(c, ref->id, false, NULL, NULL, NULL, reterr)) < 0)
		return err_prefix(reterr, "get remote '%s'", ref->id);
	/* The chain, leaf first; blobs are made root first. */
	char **ids = NULL;
	size_t n = 0;
	_cleanup_free_ char *next = strdup(ref->id);
	while (next && r >= 0) {
		_cleanup_(meta_record_clear) struct meta_record row = {0};
		if ((r = cache_load_once(c, next, &row, reterr)) < 0)
			break;
		free(next);
		next = NULL;
		char **ni = realloc(ids, (n + 1) * sizeof(char *));
		if (!ni) {
			r = err_set(reterr, -ENOMEM, "out of memory");
			break;
		}
		ids = ni;
		ids[n++] = TAKE_PTR(row.id);
		next = TAKE_PTR(row.parent);
	}
	for (size_t i = n; i-- > 0 && r >= 0;)
		r = make_blob(c, ids[i], comp, level, source_date_epoch, reterr);
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	if (r < 0 || (r = blob_of(c, ref->id, ret, reterr)) < 0)
		return err_prefix(reterr, "get remote '%s'", ref->id);
	return 0;
}

int cairn_ref_diff(cairn_ref *ref, const char *compression, int64_t source_date_epoch, int fd,
                   cairn_blob **ret, cairn_error **reterr)
{
	cairn_cache *c = ref ? ref->cache : NULL;
	layer_compression comp;
	int level;
	int r = layer_out_prepare(ref, "diff", fd < 0, compression, &comp, &level, reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	_cleanup_(resolved_clear) struct resolved x = {0};
	if ((r = cache_load_once(c, ref->id, &row, reterr)) < 0)
		return err_prefix(reterr, "diff '%s'", ref->id);
	/* A record that is only a blob (maybe lazy: fetched first) is diffed once extracted. */
	if (!row.extracted && row.blob) {
		meta_record_clear(&row);
		if ((r = cache_extract_id(c, ref->id, NULL, NULL, reterr)) < 0 ||
		    (r = cache_load_once(c, ref->id, &row, reterr)) < 0)
			return err_prefix(reterr, "diff '%s'", ref->id);
	}
	if ((r = diff_row(c, &row, comp, level, source_date_epoch, fd, &x, reterr)) < 0)
		return err_prefix(reterr, "diff '%s'", ref->id);
	if (!ret)
		return 0;
	_cleanup_(cairn_blob_freep) cairn_blob *b = calloc(1, sizeof(*b));
	if (!b || !(b->digest = strdup(x.blob.str)) || !(b->diff_id = strdup(x.diff_id.str)))
		return err_set(reterr, -ENOMEM, "out of memory");
	b->media_type = TAKE_PTR(x.media_type);
	b->size = x.size;
	*ret = TAKE_PTR(b);
	return 0;
}
