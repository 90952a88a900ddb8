/* SPDX-License-Identifier: MIT */
/*
 * Pull: an image of a registry into the cache as lazy records. Two phases, as an image import:
 * the plan reads and checks the manifest (through an index to the platform wanted) and the
 * config (digest and size verified, one diff id per layer, every descriptor checked by the
 * image module's parsers); only then are the manifest and config stored, the records made
 * (cairn_cache_get_by_blob() with the source "[http://]REGISTRY/REPO", parent first) and the top
 * one tagged with the manifest. No layer byte moves: blobs come when a record is extracted,
 * through the fetcher of cairn_remote_attach(). A failure in the second phase undoes what this
 * call created.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cache/internal.h"
#include "cairn/content.h"
#include "cairn/remote.h"
#include "content/content.h"
#include "image/image.h"
#include "image/spec.h"
#include "lazy.h"
#include "registry.h"

#define INDEX_DEPTH_MAX 8

struct pull {
	remote_ref ref;
	char name[REMOTE_HOST_MAX + REMOTE_REPO_MAX + DIGEST_STR_LEN + 8]; /* for messages */
	char source[REMOTE_HOST_MAX + REMOTE_REPO_MAX + 16];
	remote_client *client;
	char os[64], arch[64], variant[64];
	remote_manifest *manifest;
	struct image_manifest m;
	char *config;
	size_t config_len;
	struct image_config cfg;
};

static void pull_clear(struct pull *p)
{
	remote_client_free(p->client);
	remote_manifest_free(p->manifest);
	image_manifest_clear(&p->m);
	free(p->config);
	image_config_clear(&p->cfg);
}

static int parse_platform(struct pull *p, const char *s, cairn_error **reterr)
{
	if (!s)
		s = "linux/amd64";
	const char *a = strchr(s, '/');
	const char *v = a ? strchr(a + 1, '/') : NULL;
	size_t lo = a ? (size_t)(a - s) : 0;
	size_t la = a ? (v ? (size_t)(v - a - 1) : strlen(a + 1)) : 0;
	size_t lv = v ? strlen(v + 1) : 0;
	if (!a || !lo || !la || (v && (!lv || strchr(v + 1, '/'))) || lo >= sizeof(p->os) ||
	    la >= sizeof(p->arch) || lv >= sizeof(p->variant))
		return err_set(reterr, -EINVAL,
		               "bad platform '%.128s': use OS/ARCH or OS/ARCH/VARIANT", s);
	snprintf(p->os, sizeof(p->os), "%.*s", (int)lo, s);
	snprintf(p->arch, sizeof(p->arch), "%.*s", (int)la, a + 1);
	snprintf(p->variant, sizeof(p->variant), "%s", v ? v + 1 : "");
	return 0;
}

/* The entry of index @x for the platform wanted. -ENOENT listing the platforms there are. */
static int pick(struct pull *p, const struct image_index *x, const char *what, size_t *ret,
                cairn_error **reterr)
{
	const char *variant = p->variant[0] ? p->variant : NULL;
	for (size_t i = 0; i < x->n; i++)
		if (image_kind_of(x->manifests[i].media_type) != IMAGE_KIND_OTHER &&
		    image_platform_match(&x->manifests[i], p->os, p->arch, variant)) {
			*ret = i;
			return 0;
		}
	char list[512] = "";
	size_t used = 0;
	for (size_t i = 0; i < x->n && used < sizeof(list); i++) {
		const struct image_desc *d = &x->manifests[i];
		int w = snprintf(list + used, sizeof(list) - used, "%s%s/%s%s%s", i ? ", " : "",
		                 d->os ? d->os : "?", d->arch ? d->arch : "?",
		                 d->variant ? "/" : "", d->variant ? d->variant : "");
		used += w > 0 ? (size_t)w : 0;
	}
	return err_set(reterr, -ENOENT, "%s: no image for platform %s/%s%s%s; there are: %s", what,
	               p->os, p->arch, variant ? "/" : "", variant ? variant : "",
	               *list ? list : "none");
}

/* GETs the manifest the reference names, following indexes to the platform wanted. */
static int get_manifest(struct pull *p, cairn_error **reterr)
{
	char reference[DIGEST_STR_LEN + REMOTE_TAG_MAX + 1];
	snprintf(reference, sizeof(reference), "%s", remote_ref_reference(&p->ref));
	int64_t want_size = -1;
	for (int depth = 0;; depth++) {
		char what[sizeof(p->name) + 300];
		snprintf(what, sizeof(what), "registry '%s': manifest '%s' of '%s'",
		         p->ref.registry, reference, p->ref.repo);
		p->manifest = remote_manifest_free(p->manifest);
		int r = remote_manifest_get(p->client, p->ref.repo, reference, NULL, &p->manifest,
		                            reterr);
		if (r < 0)
			return r;
		if (want_size >= 0 && (int64_t)p->manifest->len != want_size)
			return err_set(reterr, CAIRN_ECORRUPT,
			               "%s: %zu bytes, the index says %" PRId64, what,
			               p->manifest->len, want_size);
		image_kind k = image_kind_of(p->manifest->media_type);
		if (k == IMAGE_KIND_MANIFEST)
			return image_manifest_parse(p->manifest->body, p->manifest->len, what,
			                            &p->m, reterr);
		if (k != IMAGE_KIND_INDEX)
			return err_set(reterr, -EOPNOTSUPP,
			               "%s: media type '%.128s' is neither a manifest nor an index",
			               what, p->manifest->media_type);
		if (depth >= INDEX_DEPTH_MAX)
			return err_set(reterr, CAIRN_ECORRUPT,
			               "%s: indexes nested more than %d deep", what,
			               INDEX_DEPTH_MAX);
		_cleanup_(image_index_clear) struct image_index x = {0};
		size_t i = 0;
		if ((r = image_index_parse(p->manifest->body, p->manifest->len, what, &x, reterr)) <
		            0 ||
		    (r = pick(p, &x, what, &i, reterr)) < 0)
			return r;
		snprintf(reference, sizeof(reference), "%s", x.manifests[i].digest.str);
		want_size = x.manifests[i].size;
	}
}

struct membuf {
	char *buf;
	size_t len, cap;
};

static int mem_write(void *userdata, const void *buf, size_t len, cairn_error **reterr)
{
	struct membuf *m = userdata;
	if (m->len + len > m->cap)
		return err_set(reterr, -EFBIG, "more bytes than the descriptor says");
	memcpy(m->buf + m->len, buf, len);
	m->len += len;
	return 0;
}

/* GETs the config (digest and size verified by the client) and checks it against the layers. */
static int get_config(struct pull *p, cairn_error **reterr)
{
	const struct image_desc *d = &p->m.config;
	char what[sizeof(p->name) + 300];
	snprintf(what, sizeof(what), "registry '%s': config '%s' of '%s'", p->ref.registry,
	         d->digest.str, p->ref.repo);
	if (d->size <= 0 || d->size > (int64_t)IMAGE_CONFIG_MAX)
		return err_set(reterr, d->size <= 0 ? CAIRN_ECORRUPT : -EFBIG,
		               "%s: size %" PRId64 " (1 to %u bytes)", what, d->size,
		               IMAGE_CONFIG_MAX);
	struct membuf m = {.buf = malloc((size_t)d->size + 1), .cap = (size_t)d->size};
	if (!m.buf)
		return err_set(reterr, -ENOMEM, "%s: out of memory", what);
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	int r = remote_blob_get(p->client, p->ref.repo, d->digest.str, (uint64_t)d->size,
	                        (uint64_t)d->size, 0, mem_write, &m, &e);
	/* A manifest naming a config the registry lacks is a broken image, not a missing one. */
	if (r < 0)
		r = err_set(reterr, r == -ENOENT ? CAIRN_ECORRUPT : r, "%s%s",
		            cairn_error_message(e),
		            r == -ENOENT ? " (the image's config is missing)" : "");
	if (r >= 0 && m.len != (size_t)d->size)
		r = err_set(reterr, CAIRN_ECORRUPT, "%s: %zu bytes, the manifest says %" PRId64,
		            what, m.len, d->size);
	if (r < 0) {
		free(m.buf);
		return r;
	}
	m.buf[m.len] = '\0';
	p->config = m.buf;
	p->config_len = m.len;
	if ((r = image_config_parse(p->config, p->config_len, what, &p->cfg, reterr)) < 0)
		return r;
	if (p->cfg.n_diff_ids != p->m.n_layers)
		return err_set(reterr, CAIRN_ECORRUPT,
		               "%s: rootfs.diff_ids has %zu entries but the manifest '%s' has %zu "
		               "layers",
		               what, p->cfg.n_diff_ids, p->manifest->digest, p->m.n_layers);
	if (p->m.n_layers == 0)
		return err_set(reterr, CAIRN_ECORRUPT, "%s: the image has no layers", what);
	for (size_t i = 0; i < p->m.n_layers; i++)
		if (p->m.layers[i].size <= 0)
			return err_set(reterr, CAIRN_ECORRUPT,
			               "registry '%s': manifest '%s' of '%s': layer %zu ('%s') has "
			               "size %" PRId64,
			               p->ref.registry, p->manifest->digest, p->ref.repo, i,
			               p->m.layers[i].digest.str, p->m.layers[i].size);
	return 0;
}

/* ---- the create phase ---- */

struct undo {
	char **v;
	size_t n;
	char *blobs[2];
	size_t n_blobs;
};

static void undo_run(cairn_cache *c, struct undo *u, bool run)
{
	for (size_t i = u->n; i-- > 0;) {
		cairn_error *e = NULL;
		if (run && cairn_cache_remove(c, u->v[i], &e) < 0)
			log_debug("pull: undo: %s", cairn_error_message(e));
		cairn_error_free(e);
		free(u->v[i]);
	}
	for (size_t i = 0; i < u->n_blobs; i++) {
		cairn_error *e = NULL;
		if (run && cairn_content_delete(c->store, u->blobs[i], &e) < 0)
			log_debug("pull: undo: %s", cairn_error_message(e));
		cairn_error_free(e);
		free(u->blobs[i]);
	}
	free(u->v);
}

static int add_doc(cairn_cache *c, struct undo *u, const char *buf, size_t len, const char *dgst,
                   cairn_error **reterr)
{
	int r = content_add_buffer(c->store->content, buf, len, dgst, NULL, reterr);
	if (r > 0 && !(u->blobs[u->n_blobs++] = strdup(dgst)))
		return err_set(reterr, -ENOMEM, "out of memory");
	return r < 0 ? r : 0;
}

static int undo_push(struct undo *u, const char *id)
{
	char **nv = realloc(u->v, (u->n + 1) * sizeof(char *));
	if (!nv)
		return -ENOMEM;
	u->v = nv;
	if (!(nv[u->n] = strdup(id)))
		return -ENOMEM;
	u->n++;
	return 0;
}

/* Records that existed before (dedup hits) are not undone: @before is sorted by this. */
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int make_records(struct pull *p, cairn_cache *c, struct undo *u, cairn_ref **ret,
                        cairn_error **reterr)
{
	cairn_record_info *infos = NULL;
	size_t n_infos = 0;
	int r = cairn_cache_list(c, &infos, &n_infos, reterr);
	if (r < 0)
		return r;
	char **before = calloc(n_infos + 1, sizeof(char *));
	for (size_t i = 0; before && i < n_infos; i++)
		before[i] = infos[i].id;
	if (before)
		qsort(before, n_infos, sizeof(char *), cmp_str);
	cairn_ref *prev = NULL, *cur = NULL;
	for (size_t i = 0; before && r >= 0 && i < p->m.n_layers; i++) {
		const struct image_desc *l = &p->m.layers[i];
		cairn_descriptor d = {.digest = l->digest.str,
		                      .size = l->size,
		                      .media_type = l->media_type,
		                      .diff_id = p->cfg.diff_ids[i].str,
		                      .source = p->source};
		cur = NULL;
		r = cairn_cache_get_by_blob(c, &d, prev, &cur, reterr);
		if (r < 0) {
			err_prefix(reterr, "registry '%s': '%s': layer %zu", p->ref.registry,
			           p->ref.repo, i);
			break;
		}
		const char *id = cairn_ref_id(cur);
		if (!bsearch(&id, before, n_infos, sizeof(char *), cmp_str) && undo_push(u, id) < 0)
			r = err_set(reterr, -ENOMEM, "out of memory");
		cairn_ref_free(prev);
		prev = cur;
	}
	if (!before)
		r = err_set(reterr, -ENOMEM, "out of memory");
	free(before);
	cairn_record_infos_free(infos, n_infos);
	if (r < 0) {
		cairn_ref_free(prev);
		return r;
	}
	*ret = prev;
	return 0;
}

/* The gc labels of the manifest blob: its config and its layers (kept while the tag lives). */
static int label_manifest(struct pull *p, cairn_cache *c, cairn_error **reterr)
{
	const char *m = p->manifest->digest;
	int r = cairn_content_label_set(c->store, m, LABEL_GC_CONFIG, p->m.config.digest.str,
	                                reterr);
	for (size_t i = 0; r >= 0 && i < p->m.n_layers; i++) {
		char key[64];
		snprintf(key, sizeof(key), LABEL_GC_LAYER "%zu", i);
		r = cairn_content_label_set(c->store, m, key, p->m.layers[i].digest.str, reterr);
	}
	return r;
}

static int create(struct pull *p, cairn_cache *c, const char *tag, cairn_ref **ret,
                  cairn_error **reterr)
{
	struct undo u = {0};
	cairn_ref *top = NULL;
	int r = add_doc(c, &u, p->config, p->config_len, p->m.config.digest.str, reterr);
	if (r >= 0)
		r = add_doc(c, &u, p->manifest->body, p->manifest->len, p->manifest->digest,
		            reterr);
	if (r >= 0)
		r = label_manifest(p, c, reterr);
	if (r >= 0)
		r = make_records(p, c, &u, &top, reterr);
	if (r >= 0 && tag)
		r = cairn_cache_tag_image(c, cairn_ref_id(top), tag, p->manifest->digest, reterr);
	if (r < 0) {
		cairn_ref_free(top);
		top = NULL;
	}
	undo_run(c, &u, r < 0);
	if (r < 0)
		return err_prefix(reterr, "pull '%s'", p->name);
	log_debug("pull '%s': manifest %s, %zu layers, record '%s'", p->name, p->manifest->digest,
	          p->m.n_layers, cairn_ref_id(top));
	*ret = top;
	return 0;
}

int cairn_pull(cairn_cache *c, const char *remote, const char *tag,
               const cairn_remote_options *opts, cairn_ref **ret, cairn_error **reterr)
{
	int r = cache_enter(c, !remote || !ret, "pull", reterr);
	if (r < 0)
		return r;
	_cleanup_(pull_clear) struct pull p = {0};
	if ((r = remote_ref_parse(remote, &p.ref, reterr)) < 0 ||
	    (r = parse_platform(&p, opts ? opts->platform : NULL, reterr)) < 0)
		return r;
	bool insecure = opts && opts->insecure;
	snprintf(p.name, sizeof(p.name), "%s/%s%s%s", p.ref.registry, p.ref.repo,
	         p.ref.digest[0] ? "@" : ":", remote_ref_reference(&p.ref));
	snprintf(p.source, sizeof(p.source), "%s%s/%s", insecure ? "http://" : "", p.ref.registry,
	         p.ref.repo);
	const char *own = tag ? tag : p.name;
	if (!image_tag_valid(own)) {
		if (tag)
			return err_set(
				reterr, -EINVAL,
				"bad tag name '%.255s': use 1-255 of [A-Za-z0-9._:/@+-], not "
				"starting with '-' or '.', and not shaped like a record id",
				tag);
		own = NULL;
	}
	remote_options ro = {.insecure = insecure, .creds = opts ? opts->creds : NULL};
	if ((r = remote_client_new(p.ref.registry, &ro, &p.client, reterr)) < 0 ||
	    (r = get_manifest(&p, reterr)) < 0 || (r = get_config(&p, reterr)) < 0)
		return r;
	return create(&p, c, own, ret, reterr);
}
