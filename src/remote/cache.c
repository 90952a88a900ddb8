/* SPDX-License-Identifier: MIT */
/*
 * Cache manifests: record chains shared through a registry (cairn cache export / import).
 *
 * Export: the chains' blobs (as cairn push sends them: HEAD first, nothing sent twice), the
 * cache config (cachecfg.h) as a blob of any size, then an OCI image manifest whose config is
 * that blob and whose layers are the blobs.
 *
 * Import: the manifest, then the config streamed through the parser (memory: the parsed records,
 * not the text), checked whole before anything is made; then, parents first, each record is
 * the local one with the same blob chain id, or a lazy record whose blob stays in the registry.
 * Everything that can go wrong with the cache itself (no manifest, a bad config, a blob the
 * registry lost) is a miss with a warning, never a failure: a build without its cache is slow,
 * not broken.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "cache/internal.h"
#include "cachecfg.h"
#include "content/content.h"
#include "image/image.h"
#include "meta/records.h"
#include "push.h"

/* ---- a set of strings (record ids, digests) with an index each ---- */

struct strset {
	char **keys;
	size_t *vals;
	size_t cap, n;
};

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

static void strset_clear(struct strset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->keys[i]);
	free(s->keys);
	free(s->vals);
	*s = (struct strset){0};
}

/* The slot of @key: its own, or the empty one where it would go. */
static size_t strset_slot(const struct strset *s, const char *key)
{
	size_t i = str_hash(key) & (s->cap - 1);
	while (s->keys[i] && strcmp(s->keys[i], key) != 0)
		i = (i + 1) & (s->cap - 1);
	return i;
}

static bool strset_get(const struct strset *s, const char *key, size_t *ret)
{
	if (!s->cap)
		return false;
	size_t i = strset_slot(s, key);
	if (!s->keys[i])
		return false;
	*ret = s->vals[i];
	return true;
}

static int strset_put(struct strset *s, const char *key, size_t val)
{
	if (2 * (s->n + 1) > s->cap) {
		struct strset g = {.cap = s->cap ? 2 * s->cap : 64};
		g.keys = calloc(g.cap, sizeof(char *));
		g.vals = calloc(g.cap, sizeof(size_t));
		if (!g.keys || !g.vals) {
			strset_clear(&g);
			return -ENOMEM;
		}
		for (size_t i = 0; i < s->cap; i++)
			if (s->keys[i]) {
				size_t j = strset_slot(&g, s->keys[i]);
				g.keys[j] = s->keys[i];
				g.vals[j] = s->vals[i];
				g.n++;
			}
		free(s->keys);
		free(s->vals);
		*s = g;
	}
	size_t i = strset_slot(s, key);
	if (!s->keys[i]) {
		if (!(s->keys[i] = strdup(key)))
			return -ENOMEM;
		s->n++;
	}
	s->vals[i] = val;
	return 0;
}

/* ---- export ---- */

struct export
{
	cairn_cache *c;
	const cairn_remote_options *opts;
	int64_t sde;
	struct cachecfg cfg;
	struct strset ids;   /* record id -> index in cfg */
	struct strset blobs; /* blob digest -> index in layers */
	struct image_desc *layers;
	char **sources, **records; /* per layer: a lazy blob's source and record, else NULL */
	size_t n_layers, cap_layers;
	cairn_ref **refs; /* held until the push is done */
	size_t n_refs, cap_refs;
	/* Every record's info from one scan of the store (cairn_cache_list()), loaded at the
	 * first describe(): cairn_ref_info() scans (and copies) the whole store per call, which
	 * made a chain's export O(n^2) in records and their descriptions. */
	cairn_record_info *infos;
	size_t n_infos;
	bool infos_loaded;
	struct strset info_ids; /* record id -> index in infos */
};

static void export_clear(struct export *x)
{
	cachecfg_clear(&x->cfg);
	strset_clear(&x->ids);
	strset_clear(&x->blobs);
	for (size_t i = 0; i < x->n_layers; i++) {
		free(x->sources[i]);
		free(x->records[i]);
	}
	free(x->layers);
	free(x->sources);
	free(x->records);
	for (size_t i = 0; i < x->n_refs; i++)
		cairn_ref_free(x->refs[i]);
	free(x->refs);
	cairn_record_infos_free(x->infos, x->n_infos);
	strset_clear(&x->info_ids);
}

/* The info of record @id from the one scan, or NULL (not listed then, or without a blob then:
 * the caller asks cairn_ref_info() for that one). Borrowed until export_clear(). */
static const cairn_record_info *listed_info(struct export *x, const char *id, cairn_error **reterr,
                                            int *ret_r)
{
	*ret_r = 0;
	if (!x->infos_loaded) {
		x->infos_loaded = true;
		if ((*ret_r = cairn_cache_list(x->c, &x->infos, &x->n_infos, reterr)) < 0)
			return NULL;
		for (size_t i = 0; i < x->n_infos; i++)
			if (strset_put(&x->info_ids, x->infos[i].id, i) < 0) {
				*ret_r = err_set(reterr, -ENOMEM, "cache export: out of memory");
				return NULL;
			}
	}
	size_t i;
	if (!strset_get(&x->info_ids, id, &i) || !x->infos[i].blob)
		return NULL;
	return &x->infos[i];
}

static int keep_ref(struct export *x, cairn_ref *ref, cairn_error **reterr)
{
	if (x->n_refs == x->cap_refs) {
		size_t cap = x->cap_refs ? 2 * x->cap_refs : 16;
		cairn_ref **nr = realloc(x->refs, cap * sizeof(*nr));
		if (!nr) {
			cairn_ref_free(ref);
			return err_set(reterr, -ENOMEM, "cache export: out of memory");
		}
		x->refs = nr;
		x->cap_refs = cap;
	}
	x->refs[x->n_refs++] = ref;
	return 0;
}

static int grow_layers(struct export *x)
{
	if (x->n_layers < x->cap_layers)
		return 0;
	size_t cap = x->cap_layers ? 2 * x->cap_layers : 16;
	struct image_desc *nl = realloc(x->layers, cap * sizeof(*nl));
	if (nl)
		x->layers = nl;
	char **ns = realloc(x->sources, cap * sizeof(char *));
	if (ns)
		x->sources = ns;
	char **nr = realloc(x->records, cap * sizeof(char *));
	if (nr)
		x->records = nr;
	if (!nl || !ns || !nr)
		return -ENOMEM;
	x->cap_layers = cap;
	return 0;
}

/* Blob @b of record @id (lazy when @source is not NULL: taken) as a layer, once per digest. */
static int add_layer(struct export *x, const cairn_blob *b, const char *id, char **source,
                     cairn_error **reterr)
{
	size_t i;
	if (strset_get(&x->blobs, b->digest, &i))
		return 0;
	if (grow_layers(x) < 0)
		return err_set(reterr, -ENOMEM, "cache export: out of memory");
	struct image_desc *d = &x->layers[x->n_layers];
	*d = (struct image_desc){.size = b->size};
	x->sources[x->n_layers] = x->records[x->n_layers] = NULL;
	int r = digest_parse(b->digest, &d->digest, reterr);
	if (r < 0)
		return r;
	if (*source && !(x->records[x->n_layers] = strdup(id)))
		return err_set(reterr, -ENOMEM, "cache export: out of memory");
	x->sources[x->n_layers] = TAKE_PTR(*source);
	/* The media type is the record's in the config; the descriptor borrows that copy. */
	if (strset_put(&x->blobs, b->digest, x->n_layers) < 0)
		return err_set(reterr, -ENOMEM, "cache export: out of memory");
	x->n_layers++;
	return 0;
}

static void blob_freep(cairn_blob **b)
{
	cairn_blob_free(*b);
}

/* The blob of @info when the content store has it: 1 and *@ret; 0 when not (none yet, or lazy).
 * Cheaper than cairn_ref_get_remote(), which walks the whole chain each time. */
static int stored_blob(struct export *x, const cairn_record_info *info, cairn_blob **ret,
                       cairn_error **reterr)
{
	content_blob_info bi = {0};
	if (!info->blob || !info->diff_id || !info->media_type)
		return 0;
	int r = content_info(x->c->store->content, info->blob, &bi, NULL);
	if (r < 0)
		return 0;
	cairn_blob *b = calloc(1, sizeof(*b));
	if (!b || !(b->digest = strdup(info->blob)) || !(b->diff_id = strdup(info->diff_id)) ||
	    !(b->media_type = strdup(info->media_type))) {
		cairn_blob_free(b);
		return err_set(reterr, -ENOMEM, "cache export: out of memory");
	}
	b->size = (int64_t)bi.size;
	*ret = b;
	return 1;
}

/* Record @ref (whose parent, if any, is described already) into the config. */
static int describe(struct export *x, cairn_ref *ref, cairn_error **reterr)
{
	const char *id = cairn_ref_id(ref);
	_cleanup_(blob_freep) cairn_blob *b = NULL;
	_cleanup_free_ char *source = NULL;
	cairn_record_info *own = NULL;
	int r;
	const cairn_record_info *info = listed_info(x, id, reterr, &r);
	if (r >= 0 && !info && (r = cairn_ref_info(ref, &own, reterr)) >= 0)
		info = own;
	if (r >= 0 && (r = stored_blob(x, info, &b, reterr)) == 0)
		r = image_layer_blob(ref, x->opts ? x->opts->compression : NULL, x->sde, true, &b,
		                     &source, reterr);
	if (r < 0) {
		cairn_record_infos_free(own, 1);
		return err_prefix(reterr, "cache export: record '%s'", id);
	}
	struct cachecfg_record rec = {.size = b->size,
	                              .media_type = b->media_type,
	                              .parent = -1,
	                              .description = info->description,
	                              .created = info->created_at,
	                              .tags = info->tags,
	                              .n_tags = info->n_tags};
	size_t pi;
	if (info->parent && strset_get(&x->ids, info->parent, &pi))
		rec.parent = (int64_t)pi;
	if (digest_parse(b->digest, &rec.blob, NULL) < 0 ||
	    digest_parse(b->diff_id, &rec.diff_id, NULL) < 0 || !info->chain_id ||
	    !info->blob_chain_id || digest_parse(info->chain_id, &rec.chain_id, NULL) < 0 ||
	    digest_parse(info->blob_chain_id, &rec.blob_chain_id, NULL) < 0)
		r = err_set(reterr, CAIRN_ECORRUPT,
		            "cache export: record '%s' has no valid chain ids", id);
	if (r >= 0)
		r = add_layer(x, b, id, &source, reterr);
	if (r >= 0)
		r = cachecfg_add(&x->cfg, &rec, reterr);
	if (r >= 0 && strset_put(&x->ids, id, x->cfg.n - 1) < 0)
		r = err_set(reterr, -ENOMEM, "cache export: out of memory");
	cairn_record_infos_free(own, 1);
	return r;
}

/* The chain of @name, root first, into the config (records met before are skipped). */
static int add_chain(struct export *x, const char *name, cairn_error **reterr)
{
	_cleanup_free_ char *id = NULL;
	cairn_ref *top = NULL;
	int r = cairn_cache_resolve(x->c, name, &id, reterr);
	if (r >= 0)
		r = cairn_cache_get(x->c, id, CAIRN_CACHE_GET_NO_UPDATE_LAST_USED, &top, reterr);
	if (r < 0)
		return err_prefix(reterr, "cache export '%s'", name);
	size_t first = x->n_refs, dummy;
	if ((r = keep_ref(x, top, reterr)) < 0)
		return r;
	/* A top without a blob: make the chain's missing blobs in one walk, not one per record. */
	cairn_record_info *info = NULL;
	if ((r = cairn_ref_info(top, &info, reterr)) >= 0 && !info->blob) {
		cairn_blob *b = NULL;
		r = cairn_ref_get_remote(top, x->opts ? x->opts->compression : NULL, x->sde, &b,
		                         reterr);
		cairn_blob_free(b);
	}
	cairn_record_infos_free(info, 1);
	if (r < 0)
		return err_prefix(reterr, "cache export '%s'", name);
	/* Up to the root or a record described already. */
	for (;;) {
		cairn_ref *cur = x->refs[x->n_refs - 1], *parent = NULL;
		if (strset_get(&x->ids, cairn_ref_id(cur), &dummy))
			break;
		if ((r = cairn_ref_parent(cur, &parent, reterr)) < 0)
			return err_prefix(reterr, "cache export '%s'", name);
		if (!parent)
			break;
		if ((r = keep_ref(x, parent, reterr)) < 0)
			return r;
	}
	for (size_t i = x->n_refs; i-- > first;) {
		if (strset_get(&x->ids, cairn_ref_id(x->refs[i]), &dummy))
			continue;
		if ((r = describe(x, x->refs[i], reterr)) < 0)
			return r;
	}
	return 0;
}

static int export_push(struct export *x, struct push_session *s, cairn_push_info **ret,
                       cairn_error **reterr)
{
	_cleanup_free_ struct push_item *items = calloc(x->n_layers + 1, sizeof(*items));
	_cleanup_free_ char *cfgbuf = NULL, *manifest = NULL;
	size_t cfglen = 0, mlen = 0;
	if (!items)
		return err_set(reterr, -ENOMEM, "cache export: out of memory");
	for (size_t i = 0; i < x->cfg.n; i++) {
		size_t li = 0;
		strset_get(&x->blobs, x->cfg.recs[i].blob.str, &li);
		x->layers[li].media_type = x->cfg.recs[i].media_type;
	}
	for (size_t i = 0; i < x->n_layers; i++)
		items[i] = (struct push_item){.digest = x->layers[i].digest.str,
		                              .size = (uint64_t)x->layers[i].size,
		                              .source = x->sources[i],
		                              .record = x->records[i]};
	digest cd, md;
	int r = cachecfg_dump(&x->cfg, &cfgbuf, &cfglen, reterr);
	if (r < 0)
		return r;
	digest_buffer(cfgbuf, cfglen, &cd);
	if ((r = image_manifest_build(CAIRN_CACHE_CONFIG_MEDIA_TYPE, &cd, (int64_t)cfglen,
	                              x->layers, x->n_layers, &manifest, &mlen, reterr)) < 0)
		return r;
	if (mlen > REMOTE_MANIFEST_MAX)
		return err_set(reterr, -EFBIG,
		               "cache export to '%s': %zu blobs make a manifest of %zu bytes, over "
		               "the %u bytes registries take: export fewer records at once",
		               s->remote, x->n_layers, mlen, REMOTE_MANIFEST_MAX);
	digest_buffer(manifest, mlen, &md);
	if ((r = push_session_blobs(s, x->c, items, x->n_layers, reterr)) < 0 ||
	    (r = push_session_buffer(s, &cd, cfgbuf, cfglen, reterr)) < 0 ||
	    (r = push_session_manifest(s, MT_OCI_MANIFEST, manifest, mlen, &md, reterr)) < 0)
		return r;
	if (!ret)
		return 0;
	cairn_push_info *info = push_session_info(s, NULL, &md, &cd, cfglen);
	if (!info)
		return err_set(reterr, -ENOMEM, "cache export: out of memory");
	info->n_records = x->cfg.n;
	info->n_blobs = x->n_layers;
	*ret = info;
	return 0;
}

int cachecfg_export(cairn_cache *c, const char *const *refs, size_t n_refs, const char *remote,
                    const cairn_remote_options *opts, char **ret, size_t *ret_len,
                    cairn_error **reterr)
{
	struct export x = {.c = c,
	                   .opts = opts,
	                   .sde = opts && opts->source_date_epoch > 0 ? opts->source_date_epoch
	                                                              : -1};
	cachecfg_init(&x.cfg, remote);
	int r = 0;
	for (size_t i = 0; r >= 0 && i < n_refs; i++)
		r = add_chain(&x, refs[i], reterr);
	if (r >= 0)
		r = cachecfg_dump(&x.cfg, ret, ret_len, reterr);
	export_clear(&x);
	return r;
}

int cairn_cache_export(cairn_cache *c, const char *const *refs, size_t n_refs, const char *remote,
                       const cairn_remote_options *opts, cairn_push_info **ret,
                       cairn_error **reterr)
{
	int r = cache_enter(c, !c || !refs || !n_refs || !remote, "cache export", reterr);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n_refs; i++)
		if (!refs[i])
			return err_set(reterr, -EINVAL, "cache export: invalid arguments");
	struct export x = {.c = c,
	                   .opts = opts,
	                   .sde = opts && opts->source_date_epoch > 0 ? opts->source_date_epoch
	                                                              : -1};
	cachecfg_init(&x.cfg, remote);
	struct push_session s;
	r = push_session_open(&s, remote, opts, reterr);
	for (size_t i = 0; r >= 0 && i < n_refs; i++)
		r = add_chain(&x, refs[i], reterr);
	if (r >= 0)
		r = export_push(&x, &s, ret, reterr);
	push_session_close(&s);
	export_clear(&x);
	return r;
}

/* ---- import ---- */

struct import {
	cairn_cache *c;
	remote_ref ref;
	char *source; /* "REGISTRY/REPO", "http://" prefixed when insecure */
	char *what;   /* "REGISTRY/REPO:TAG" */
	remote_client *client;
	cairn_cache_import_info *info;
	struct cachecfg cfg;
	struct strset layers; /* digest -> size */
	cairn_ref **refs;     /* per record; NULL: missed */
	char **created;       /* ids of records this call made, in order */
	size_t n_created;
	cairn_progress_fn progress;
	void *progress_userdata;
	uint64_t cfg_size, cfg_done;
};

cairn_cache_import_info *cairn_cache_import_info_free(cairn_cache_import_info *info)
{
	if (info) {
		free(info->manifest_digest);
		for (size_t i = 0; i < info->n_warnings; i++)
			free(info->warnings[i]);
		free(info->warnings);
		free(info);
	}
	return NULL;
}

static void import_clear(struct import *x)
{
	for (size_t i = 0; x->refs && i < x->cfg.n; i++)
		cairn_ref_free(x->refs[i]);
	free(x->refs);
	for (size_t i = 0; i < x->n_created; i++)
		free(x->created[i]);
	free(x->created);
	cachecfg_clear(&x->cfg);
	strset_clear(&x->layers);
	remote_client_free(x->client);
	free(x->source);
	free(x->what);
	cairn_cache_import_info_free(x->info);
}

static void warn(struct import *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A warning for the caller (and the debug log); out of memory drops it. */
static void warn(struct import *x, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	log_debug("cache import: %s", msg);
	char **nw = realloc(x->info->warnings, (x->info->n_warnings + 1) * sizeof(char *));
	if (!nw) {
		free(msg);
		return;
	}
	x->info->warnings = nw;
	nw[x->info->n_warnings++] = msg;
}

/* A miss of the whole cache: warn with @e's message (freed). */
static int miss(struct import *x, cairn_error *e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int miss(struct import *x, cairn_error *e, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (e)
		warn(x, "%s: %s: no cache", buf, cairn_error_message(e));
	else
		warn(x, "%s: no cache", buf);
	cairn_error_free(e);
	x->info->miss = true;
	return 0;
}

/* The manifest's config descriptor and layers (digest -> size); @x->info->miss when it is not
 * a cairn cache manifest. */
static int read_manifest(struct import *x, const remote_manifest *m, digest *ret_cfg,
                         uint64_t *ret_cfg_size)
{
	json_error_t je;
	json_t *doc = json_loadb(m->body, m->len, JSON_REJECT_DUPLICATES, &je);
	json_t *cfg = json_object_get(doc, "config"), *layers = json_object_get(doc, "layers");
	json_t *mt = json_object_get(cfg, "mediaType"), *dg = json_object_get(cfg, "digest");
	json_t *sz = json_object_get(cfg, "size");
	int r = 0;
	if (!json_is_string(mt) ||
	    strcmp(json_string_value(mt), CAIRN_CACHE_CONFIG_MEDIA_TYPE) != 0)
		r = miss(x, NULL, "registry '%s': manifest '%s' is not a cairn cache manifest",
		         x->ref.registry, x->what);
	else if (!json_is_string(dg) || digest_parse(json_string_value(dg), ret_cfg, NULL) < 0 ||
	         !json_is_integer(sz) || json_integer_value(sz) <= 0 || !json_is_array(layers))
		r = miss(x, NULL, "registry '%s': cache manifest '%s' has a bad config or layers",
		         x->ref.registry, x->what);
	else if ((uint64_t)json_integer_value(sz) > CACHECFG_MAX)
		r = miss(x, NULL,
		         "registry '%s': cache config '%s' of '%s' has %" PRId64
		         " bytes, over the limit of %llu",
		         x->ref.registry, json_string_value(dg), x->what,
		         (int64_t)json_integer_value(sz), (unsigned long long)CACHECFG_MAX);
	else
		*ret_cfg_size = (uint64_t)json_integer_value(sz);
	for (size_t i = 0; !x->info->miss && i < json_array_size(layers); i++) {
		json_t *l = json_array_get(layers, i);
		json_t *ld = json_object_get(l, "digest"), *ls = json_object_get(l, "size");
		if (!json_is_string(ld) || !digest_valid(json_string_value(ld)) ||
		    !json_is_integer(ls) || json_integer_value(ls) <= 0) {
			r = miss(x, NULL,
			         "registry '%s': cache manifest '%s': layers[%zu] is invalid",
			         x->ref.registry, x->what, i);
			break;
		}
		if (strset_put(&x->layers, json_string_value(ld), (size_t)json_integer_value(ls)) <
		    0)
			r = -ENOMEM;
	}
	json_decref(doc);
	return r;
}

static int feed(void *userdata, const void *buf, size_t len, cairn_error **reterr)
{
	struct import *x = userdata;
	x->cfg_done += len;
	if (x->progress)
		x->progress(x->cfg_done, x->cfg_size, x->progress_userdata);
	return cachecfg_feed(&x->cfg, buf, len, reterr);
}

/* The config, streamed through the parser, then checked against the manifest's layers. */
static void read_config(struct import *x, const digest *dg, uint64_t size)
{
	cairn_error *e = NULL;
	x->cfg_size = size;
	int r = remote_blob_get(x->client, x->ref.repo, dg->str, size, 0, 0, feed, x, &e);
	if (r >= 0)
		r = cachecfg_finish(&x->cfg, &e);
	for (size_t i = 0; r >= 0 && i < x->cfg.n; i++) {
		size_t lsize = 0;
		const struct cachecfg_record *rec = &x->cfg.recs[i];
		if (!strset_get(&x->layers, rec->blob.str, &lsize) || lsize != (size_t)rec->size)
			r = err_set(&e, CAIRN_ECORRUPT,
			            "record %zu: blob '%s' of %" PRId64
			            " bytes is not among the manifest's layers",
			            i, rec->blob.str, rec->size);
	}
	if (r < 0) {
		miss(x, e, "registry '%s': cache config '%s' of '%s'", x->ref.registry, dg->str,
		     x->what);
		cachecfg_clear(&x->cfg);
	}
}

/* The live record with blob chain id @bci, if any, into *@ret_id. */
static int find_local(cairn_cache *c, const char *bci, char **ret_id, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	if (r < 0)
		return r;
	return meta_record_find_chain(&tx, c->driver, true, bci, ret_id, reterr);
}

static int note_created(struct import *x, const char *id, cairn_error **reterr)
{
	char **nc = realloc(x->created, (x->n_created + 1) * sizeof(char *));
	if (!nc || !(id = strdup(id))) {
		if (nc)
			x->created = nc;
		return err_set(reterr, -ENOMEM, "cache import: out of memory");
	}
	x->created = nc;
	x->created[x->n_created++] = (char *)id;
	return 0;
}

/* Without lazy blobs in the cache (get_by_blob refusing a source), the blob is fetched now. */
static int lazy_fallback(struct import *x, const struct cachecfg_record *rec, cairn_error **reterr)
{
	if (reterr) {
		cairn_error_free(*reterr);
		*reterr = NULL;
	}
	int r = remote_blob_fetch_to_store(x->client, x->c->store->content, x->ref.repo,
	                                   rec->blob.str, (uint64_t)rec->size, reterr);
	if (r >= 0)
		x->info->n_fetched++;
	return r;
}

/* A new record for @rec on @parent: lazy when the store lacks the blob and the registry has it.
 * 0 with *@ret NULL when the registry lacks it (a miss, warned). */
static int make_record(struct import *x, size_t i, cairn_ref *parent, cairn_ref **ret,
                       cairn_error **reterr)
{
	const struct cachecfg_record *rec = &x->cfg.recs[i];
	cairn_descriptor d = {.digest = rec->blob.str,
	                      .size = rec->size,
	                      .media_type = rec->media_type,
	                      .diff_id = rec->diff_id.str};
	int r = content_exists(x->c->store->content, rec->blob.str, reterr);
	if (r < 0)
		return r;
	if (r == 0) {
		uint64_t size = 0;
		cairn_error *e = NULL;
		r = remote_blob_exists(x->client, x->ref.repo, rec->blob.str, &size, &e);
		if (r <= 0 || size != (uint64_t)rec->size) {
			warn(x,
			     "registry '%s': blob '%s' of '%s' %s%s: record %zu and what is "
			     "built on it are a cache miss",
			     x->ref.registry, rec->blob.str, x->what,
			     r < 0    ? "cannot be checked: "
			     : r == 0 ? "is missing"
			              : "has another size",
			     r < 0 ? cairn_error_message(e) : "", i);
			cairn_error_free(e);
			*ret = NULL;
			return 0;
		}
		d.source = x->source;
	}
	r = cairn_cache_get_by_blob(x->c, &d, parent, ret, reterr);
	if (r == -ENOENT && d.source && lazy_fallback(x, rec, reterr) >= 0) {
		/* A cache without lazy blobs: the blob is in the store now. */
		d.source = NULL;
		r = cairn_cache_get_by_blob(x->c, &d, parent, ret, reterr);
	}
	return r < 0 ? err_prefix(reterr, "cache import: record %zu (blob '%s')", i, d.digest) : 0;
}

/* A new record gets the description it had where it was made. */
static int set_description(cairn_cache *c, const char *id, const char *desc, cairn_error **reterr)
{
	if (!*desc)
		return 0;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, true, reterr);
	if (r >= 0)
		r = meta_record_set_description(&tx, id, desc, reterr);
	if (r >= 0)
		r = meta_tx_commit(&tx, reterr);
	return r;
}

/* Record @i: the local one with its blob chain id, a new one, or a miss (x->refs[i] NULL). */
static int import_record(struct import *x, size_t i, cairn_error **reterr)
{
	const struct cachecfg_record *rec = &x->cfg.recs[i];
	cairn_ref *parent = rec->parent >= 0 ? x->refs[rec->parent] : NULL;
	if (rec->parent >= 0 && !parent) {
		x->info->n_missed++;
		return 0;
	}
	_cleanup_free_ char *local = NULL;
	int r = find_local(x->c, rec->blob_chain_id.str, &local, reterr);
	if (r < 0)
		return r;
	if (r > 0 && cairn_cache_get(x->c, local, CAIRN_CACHE_GET_NO_UPDATE_LAST_USED, &x->refs[i],
	                             NULL) >= 0) {
		x->info->n_imported++;
		return 0;
	}
	if ((r = make_record(x, i, parent, &x->refs[i], reterr)) < 0)
		return r;
	if (!x->refs[i]) {
		x->info->n_missed++;
		return 0;
	}
	x->info->n_imported++;
	x->info->n_new++;
	if ((r = note_created(x, cairn_ref_id(x->refs[i]), reterr)) < 0)
		return r;
	return set_description(x->c, cairn_ref_id(x->refs[i]), rec->description, reterr);
}

/* What this call created goes again (a later step failed), newest first. */
static void undo(struct import *x)
{
	for (size_t i = 0; x->refs && i < x->cfg.n; i++)
		x->refs[i] = cairn_ref_free(x->refs[i]);
	for (size_t i = x->n_created; i-- > 0;)
		(void)cairn_cache_remove(x->c, x->created[i], NULL);
}

static int import_records(struct import *x, cairn_error **reterr)
{
	x->info->n_records = x->cfg.n;
	if (!(x->refs = calloc(x->cfg.n ? x->cfg.n : 1, sizeof(*x->refs))))
		return err_set(reterr, -ENOMEM, "cache import: out of memory");
	int r = 0;
	for (size_t i = 0; r >= 0 && i < x->cfg.n; i++)
		r = import_record(x, i, reterr);
	for (size_t i = 0; r >= 0 && i < x->cfg.n; i++)
		for (size_t t = 0; r >= 0 && x->refs[i] && t < x->cfg.recs[i].n_tags; t++) {
			r = cairn_cache_tag(x->c, cairn_ref_id(x->refs[i]), x->cfg.recs[i].tags[t],
			                    reterr);
			x->info->n_tags += r >= 0;
		}
	if (r < 0) {
		undo(x);
		return err_prefix(reterr, "cache import from '%s'", x->what);
	}
	return 0;
}

static int import_open(struct import *x, const char *remote, const cairn_remote_options *opts,
                       cairn_error **reterr)
{
	int r = remote_ref_parse(remote, &x->ref, reterr);
	if (r < 0)
		return r;
	bool insecure = opts && opts->insecure;
	if (asprintf(&x->source, "%s%s/%s", insecure ? "http://" : "", x->ref.registry,
	             x->ref.repo) < 0 ||
	    asprintf(&x->what, "%s/%s%s%s", x->ref.registry, x->ref.repo,
	             x->ref.digest[0] ? "@" : ":", remote_ref_reference(&x->ref)) < 0) {
		x->source = x->what = NULL;
		return err_set(reterr, -ENOMEM, "cache import: out of memory");
	}
	if (!(x->info = calloc(1, sizeof(*x->info))))
		return err_set(reterr, -ENOMEM, "cache import: out of memory");
	if (opts) {
		x->progress = opts->progress;
		x->progress_userdata = opts->progress_userdata;
	}
	remote_options ro;
	push_remote_options(opts, &ro);
	return remote_client_new(x->ref.registry, &ro, &x->client, reterr);
}

/* Manifest errors that mean "there is no usable cache there" rather than "cannot ask". */
static bool manifest_miss(int r)
{
	return r == -ENOENT || r == CAIRN_EDIGEST || r == -EFBIG;
}

int cairn_cache_import(cairn_cache *c, const char *remote, const cairn_remote_options *opts,
                       cairn_cache_import_info **ret, cairn_error **reterr)
{
	int r = cache_enter(c, !c || !remote, "cache import", reterr);
	if (r < 0)
		return r;
	struct import x = {.c = c};
	cachecfg_init(&x.cfg, "");
	_cleanup_(remote_manifest_freep) remote_manifest *m = NULL;
	static const char *const accept[] = {REMOTE_MT_OCI_MANIFEST, NULL};
	cairn_error *e = NULL;
	digest cfg_digest;
	uint64_t cfg_size = 0;
	r = import_open(&x, remote, opts, reterr);
	if (r >= 0) {
		r = remote_manifest_get(x.client, x.ref.repo, remote_ref_reference(&x.ref), accept,
		                        &m, &e);
		if (r < 0 && manifest_miss(r))
			r = miss(&x, TAKE_PTR(e), "cache manifest '%s'", x.what);
		else if (r < 0 && reterr)
			*reterr = TAKE_PTR(e);
		cairn_error_free(e);
	}
	if (r >= 0 && m && !x.info->miss && !(x.info->manifest_digest = strdup(m->digest)))
		r = err_set(reterr, -ENOMEM, "cache import: out of memory");
	if (r >= 0 && m && !x.info->miss)
		r = read_manifest(&x, m, &cfg_digest, &cfg_size);
	if (r >= 0 && m && !x.info->miss) {
		x.cfg.what = x.what;
		read_config(&x, &cfg_digest, cfg_size);
	}
	if (r >= 0 && !x.info->miss)
		r = import_records(&x, reterr);
	if (r == -ENOMEM && reterr && !*reterr)
		r = err_set(reterr, -ENOMEM, "cache import: out of memory");
	if (r >= 0 && ret)
		*ret = TAKE_PTR(x.info);
	import_clear(&x);
	return r;
}
