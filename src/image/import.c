/* SPDX-License-Identifier: MIT */
/*
 * Import: an OCI image layout or a docker archive into the content store and the cache.
 *
 * Two phases. The plan reads and checks everything that can be checked without copying layer
 * bytes: oci-layout, the index chain, the manifest, the config, the diff id count, every layer's
 * presence and size. Only then does the import create anything: blobs (streamed into the
 * content store through an ingest, verified on commit), the manifest's gc labels, the records
 * (get_by_blob, parent first), the extraction when asked, the tag. A failure in the second
 * phase undoes what this call created: the records it made (children first) and the blobs that
 * were new. Fault points follow each durable step for the crash tests.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "base/fault.h"
#include "base/log.h"
#include "cache/internal.h"
#include "cairn/content.h"
#include "content/content.h"
#include "image/image.h"
#include "image/source.h"
#include "layer/compress.h"

#define INDEX_DEPTH_MAX 8
#define COPY_CHUNK      (1u << 20)

struct layer_in {
	char *member;        /* its file in the source */
	struct image_desc d; /* media type and size; the digest when @known */
	bool known;          /* the digest is known before copying */
	bool sized;          /* a manifest gave its size (docker archives do not) */
	bool is_new;         /* this import added the blob */
	digest diff_id;
};

struct plan {
	image_source *src;
	const char *what; /* the source path, for messages */
	char *own_name;   /* the image's own name (ref name, RepoTags[0]) */
	bool synth;       /* a docker legacy archive: the manifest is cairn's */
	char *manifest;   /* its bytes (after the copy phase for @synth) */
	size_t manifest_len;
	digest manifest_digest;
	char *config;
	size_t config_len;
	digest config_digest;
	char *config_mt;
	struct image_config cfg;
	struct layer_in *layers;
	size_t n;
	const char *os, *arch, *variant; /* the platform wanted */
	char platform_buf[128];
	uint64_t total, done;
};

static void plan_clear(struct plan *p)
{
	for (size_t i = 0; p->layers && i < p->n; i++) {
		free(p->layers[i].member);
		image_desc_clear(&p->layers[i].d);
	}
	free(p->layers);
	free(p->own_name);
	free(p->manifest);
	free(p->config);
	free(p->config_mt);
	image_config_clear(&p->cfg);
	image_source_free(p->src);
	*p = (struct plan){0};
}

static char *blob_path(const digest *d)
{
	char *s = NULL;
	return asprintf(&s, "blobs/sha256/%s", digest_hex(d)) < 0 ? NULL : s;
}

/*
 * Reads blob @d of the source (a document of at most @max bytes) and checks it against its
 * descriptor: size (before reading when the descriptor already says too much) and digest.
 */
static int read_blob(struct plan *p, const struct image_desc *d, size_t max, char **ret,
                     size_t *ret_len, cairn_error **reterr)
{
	_cleanup_free_ char *name = blob_path(&d->digest);
	if (!name)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	if (d->size > (int64_t)max)
		return err_set(reterr, -EFBIG,
		               "'%s/%s' is too large: its descriptor says %" PRId64
		               " bytes (at most %zu)",
		               p->what, name, d->size, max);
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r = image_source_read(p->src, name, max, &buf, &len, reterr);
	if (r < 0)
		return r;
	if ((int64_t)len != d->size)
		return err_set(reterr, CAIRN_ECORRUPT,
		               "'%s/%s': size mismatch: the descriptor says %" PRId64
		               " bytes, the file has %zu",
		               p->what, name, d->size, len);
	digest got;
	digest_buffer(buf, len, &got);
	if (memcmp(got.raw, d->digest.raw, sizeof(got.raw)) != 0)
		return err_set(reterr, CAIRN_EDIGEST,
		               "'%s/%s': digest mismatch: the content hashes to '%s'", p->what,
		               name, got.str);
	*ret = TAKE_PTR(buf);
	*ret_len = len;
	return 0;
}

/* ---- choosing the image ---- */

static bool name_matches(const char *have, const char *want)
{
	if (!have)
		return false;
	if (strcmp(have, want) == 0)
		return true;
	/* "busybox:latest" names "docker.io/library/busybox:latest" too. */
	static const char *const prefixes[] = {"docker.io/library/", "docker.io/"};
	for (size_t i = 0; i < ELEMENTSOF(prefixes); i++) {
		size_t n = strlen(prefixes[i]);
		if (strncmp(have, prefixes[i], n) == 0 && strcmp(have + n, want) == 0)
			return true;
	}
	return false;
}

static bool desc_named(const struct image_desc *d, const char *name)
{
	return name_matches(d->ref_name, name) || name_matches(d->image_name, name);
}

/* "a, b, c" of the names (or platforms) of @x's entries into @buf. */
static const char *list_entries(const struct image_index *x, bool platforms, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < x->n && used + 1 < len; i++) {
		const struct image_desc *d = &x->manifests[i];
		int w;
		if (platforms)
			w = snprintf(buf + used, len - used, "%s%s/%s%s%s", i ? ", " : "",
			             d->os ? d->os : "?", d->arch ? d->arch : "?",
			             d->variant ? "/" : "", d->variant ? d->variant : "");
		else
			w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
			             d->ref_name ? d->ref_name
			                         : (d->image_name ? d->image_name : "(unnamed)"));
		if (w < 0)
			break;
		used += (size_t)w;
	}
	if (used >= len && len > 4)
		strcpy(buf + len - 4, "...");
	return buf[0] ? buf : "none";
}

/* The entry of @x for the wanted platform: the only entry, or the one that matches. */
static int pick_platform(struct plan *p, const struct image_index *x, const char *what, size_t *ret,
                         cairn_error **reterr)
{
	size_t found = SIZE_MAX;
	for (size_t i = 0; i < x->n && found == SIZE_MAX; i++)
		if (image_platform_match(&x->manifests[i], p->os, p->arch, p->variant))
			found = i;
	/* An unnamed platform only when the variant was left open: the first match is the
	 * preferred one, as the spec orders entries. */
	if (found == SIZE_MAX && x->n == 1 && !x->manifests[0].os)
		found = 0;
	if (found == SIZE_MAX) {
		char list[512];
		return err_set(reterr, -ENOENT,
		               "'%s': no image for platform %s/%s%s%s; there are: %s", what, p->os,
		               p->arch, p->variant ? "/" : "", p->variant ? p->variant : "",
		               list_entries(x, true, list, sizeof(list)));
	}
	*ret = found;
	return 0;
}

/* The index entry @name (NULL: the only one, the one @tag names, or by platform). */
static int pick_top(struct plan *p, const struct image_index *x, const char *name, const char *tag,
                    size_t *ret, cairn_error **reterr)
{
	char list[512];
	char what[4200];
	snprintf(what, sizeof(what), "%s/index.json", p->what);
	if (x->n == 0)
		return err_set(reterr, CAIRN_ECORRUPT, "'%s': no images in it", what);
	const char *want = name ? name : tag;
	size_t hit = SIZE_MAX, hits = 0;
	for (size_t i = 0; want && i < x->n; i++)
		if (desc_named(&x->manifests[i], want)) {
			hit = hits ? hit : i;
			hits++;
		}
	if (name && hits == 0)
		return err_set(reterr, -ENOENT, "'%s': no image named '%s'; there are: %s", what,
		               name, list_entries(x, false, list, sizeof(list)));
	if (hits == 0)
		want = NULL; /* a --tag that names no entry only names the import */
	if (hits == 1 || (hits == 0 && x->n == 1)) {
		*ret = hits ? hit : 0;
		return 0;
	}
	/* Several entries of one name, or several unnamed: a multi-platform set. */
	bool platforms = true;
	for (size_t i = 0; i < x->n; i++)
		if ((!want || desc_named(&x->manifests[i], want)) && !x->manifests[i].os)
			platforms = false;
	if (!platforms)
		return err_set(reterr, -EINVAL, "'%s' holds several images (%s): name one", what,
		               list_entries(x, false, list, sizeof(list)));
	for (size_t i = 0; i < x->n; i++)
		if ((!want || desc_named(&x->manifests[i], want)) &&
		    image_platform_match(&x->manifests[i], p->os, p->arch, p->variant)) {
			*ret = i;
			return 0;
		}
	return err_set(reterr, -ENOENT, "'%s': no image for platform %s/%s; there are: %s", what,
	               p->os, p->arch, list_entries(x, true, list, sizeof(list)));
}

/* Follows index entries from @top down to a manifest, into @p->manifest. */
static int resolve_manifest(struct plan *p, struct image_desc *top, cairn_error **reterr)
{
	struct image_desc cur = {0};
	cur.digest = top->digest;
	cur.size = top->size;
	_cleanup_free_ char *mt = strdup(top->media_type);
	if (!mt)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	cur.media_type = mt;
	for (int depth = 0;; depth++) {
		image_kind k = image_kind_of(cur.media_type);
		_cleanup_free_ char *name = blob_path(&cur.digest);
		if (!name)
			return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
		if (k == IMAGE_KIND_MANIFEST)
			break;
		if (k != IMAGE_KIND_INDEX)
			return err_set(reterr, -EOPNOTSUPP,
			               "'%s/%s': media type '%.128s' is neither a manifest nor an "
			               "index",
			               p->what, name, cur.media_type);
		if (depth >= INDEX_DEPTH_MAX)
			return err_set(reterr, CAIRN_ECORRUPT,
			               "'%s/%s': indexes nested more than %d deep", p->what, name,
			               INDEX_DEPTH_MAX);
		_cleanup_free_ char *buf = NULL;
		size_t len = 0;
		int r = read_blob(p, &cur, IMAGE_JSON_MAX, &buf, &len, reterr);
		if (r < 0)
			return r;
		char what[4200];
		snprintf(what, sizeof(what), "%s/%s", p->what, name);
		_cleanup_(image_index_clear) struct image_index x = {0};
		size_t i = 0;
		if ((r = image_index_parse(buf, len, what, &x, reterr)) < 0 ||
		    (r = pick_platform(p, &x, what, &i, reterr)) < 0)
			return r;
		/* @x goes at the end of this round: keep what the next one needs. */
		free(mt);
		if (!(mt = strdup(x.manifests[i].media_type)))
			return err_set(reterr, -ENOMEM, "'%s': out of memory", what);
		cur.media_type = mt;
		cur.digest = x.manifests[i].digest;
		cur.size = x.manifests[i].size;
	}
	p->manifest_digest = cur.digest;
	return read_blob(p, &cur, IMAGE_JSON_MAX, &p->manifest, &p->manifest_len, reterr);
}

/* The config and the layers of manifest @m into the plan; checks the counts and sizes. */
static int plan_from_manifest(struct plan *p, struct image_manifest *m, cairn_error **reterr)
{
	_cleanup_free_ char *cname = blob_path(&m->config.digest);
	if (!cname)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	char what[4200];
	snprintf(what, sizeof(what), "%s/%s", p->what, cname);
	int r = read_blob(p, &m->config, IMAGE_CONFIG_MAX, &p->config, &p->config_len, reterr);
	if (r < 0 || (r = image_config_parse(p->config, p->config_len, what, &p->cfg, reterr)) < 0)
		return r;
	p->config_digest = m->config.digest;
	free(p->config_mt);
	if (!(p->config_mt = strdup(m->config.media_type)))
		return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	if (p->cfg.n_diff_ids != m->n_layers)
		return err_set(
			reterr, CAIRN_ECORRUPT,
			"'%s': rootfs.diff_ids has %zu entries but the manifest '%s' has %zu "
			"layers",
			what, p->cfg.n_diff_ids, p->manifest_digest.str, m->n_layers);
	p->layers = calloc(m->n_layers + 1, sizeof(*p->layers));
	if (!p->layers)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	for (size_t i = 0; i < m->n_layers; i++, p->n++) {
		struct layer_in *l = &p->layers[i];
		l->d = m->layers[i];
		m->layers[i] = (struct image_desc){0};
		l->known = l->sized = true;
		l->diff_id = p->cfg.diff_ids[i];
		if (!(l->member = blob_path(&l->d.digest)))
			return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	}
	return 0;
}

/* Checks that every layer is there with the size its descriptor gives. */
static int check_layers(struct plan *p, cairn_error **reterr)
{
	for (size_t i = 0; i < p->n; i++) {
		struct layer_in *l = &p->layers[i];
		struct image_range rg = {.fd = -EBADF};
		int r = image_source_range(p->src, l->member, &rg, reterr);
		if (r < 0)
			return r;
		uint64_t size = rg.size;
		image_range_close(&rg);
		if (l->sized && (uint64_t)l->d.size != size)
			return err_set(reterr, CAIRN_ECORRUPT,
			               "'%s/%s': size mismatch: the manifest says %" PRId64
			               " bytes, the file has %" PRIu64,
			               p->what, l->member, l->d.size, size);
		l->d.size = (int64_t)size;
		p->total += size;
	}
	return 0;
}

static int plan_oci(struct plan *p, const char *name, const char *tag, cairn_error **reterr)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	char what[4200];
	snprintf(what, sizeof(what), "%s/oci-layout", p->what);
	int r = image_source_read(p->src, "oci-layout", 4096, &buf, &len, reterr);
	if (r < 0 || (r = image_layout_parse(buf, len, what, reterr)) < 0)
		return r;
	free(buf);
	buf = NULL;
	snprintf(what, sizeof(what), "%s/index.json", p->what);
	_cleanup_(image_index_clear) struct image_index x = {0};
	size_t top = 0;
	if ((r = image_source_read(p->src, "index.json", IMAGE_JSON_MAX, &buf, &len, reterr)) < 0 ||
	    (r = image_index_parse(buf, len, what, &x, reterr)) < 0 ||
	    (r = pick_top(p, &x, name, tag, &top, reterr)) < 0)
		return r;
	/* Docker 25 archives name the image in io.containerd.image.name ("docker.io/library/
	 * busybox:latest") and put only the tag in the ref name: the full name is the better tag.
	 */
	const char *own = x.manifests[top].ref_name;
	const char *full = x.manifests[top].image_name;
	if (full && strncmp(full, "docker.io/library/", 18) == 0)
		own = full + 18;
	else if (full)
		own = full;
	if (own && !(p->own_name = strdup(own)))
		return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	if ((r = resolve_manifest(p, &x.manifests[top], reterr)) < 0)
		return r;
	_cleanup_free_ char *mname = blob_path(&p->manifest_digest);
	snprintf(what, sizeof(what), "%s/%s", p->what, mname ? mname : "manifest");
	_cleanup_(image_manifest_clear) struct image_manifest m = {0};
	if ((r = image_manifest_parse(p->manifest, p->manifest_len, what, &m, reterr)) < 0 ||
	    (r = plan_from_manifest(p, &m, reterr)) < 0)
		return r;
	return check_layers(p, reterr);
}

/* ---- docker save's manifest.json ---- */

static bool docker_named(const struct docker_image *im, const char *name)
{
	for (size_t i = 0; i < im->n_repo_tags; i++) {
		if (name_matches(im->repo_tags[i], name))
			return true;
		/* "busybox" names "busybox:latest". */
		size_t n = strlen(name);
		if (!strchr(name, ':') && strncmp(im->repo_tags[i], name, n) == 0 &&
		    strcmp(im->repo_tags[i] + n, ":latest") == 0)
			return true;
	}
	return false;
}

static int pick_docker(struct plan *p, const struct docker_manifest *dm, const char *name,
                       const char *tag, size_t *ret, cairn_error **reterr)
{
	const char *want = name ? name : tag;
	for (size_t i = 0; want && i < dm->n; i++)
		if (docker_named(&dm->images[i], want)) {
			*ret = i;
			return 0;
		}
	if (!name && dm->n == 1) {
		*ret = 0;
		return 0;
	}
	char list[512] = "";
	size_t used = 0;
	for (size_t i = 0; i < dm->n && used < sizeof(list); i++)
		for (size_t j = 0; j < dm->images[i].n_repo_tags && used < sizeof(list); j++) {
			int w = snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "",
			                 dm->images[i].repo_tags[j]);
			used += w > 0 ? (size_t)w : 0;
		}
	if (name)
		return err_set(reterr, -ENOENT,
		               "'%s/manifest.json': no image named '%s'; there are: %s", p->what,
		               name, *list ? list : "none");
	return err_set(reterr, -EINVAL, "'%s/manifest.json' holds %zu images (%s): name one",
	               p->what, dm->n, *list ? list : "untagged");
}

/* The hex of a path "blobs/sha256/<hex>" or "<hex>.json" into *@ret; false when it is neither. */
static bool digest_of_path(const char *path, digest *ret)
{
	char buf[DIGEST_STR_LEN + 1];
	const char *b = strncmp(path, "blobs/sha256/", 13) == 0 ? path + 13 : NULL;
	if (b && strlen(b) == DIGEST_HEX_LEN) {
		snprintf(buf, sizeof(buf), "sha256:%s", b);
		return digest_parse(buf, ret, NULL) == 0;
	}
	if (strlen(path) == DIGEST_HEX_LEN + 5 && strcmp(path + DIGEST_HEX_LEN, ".json") == 0) {
		snprintf(buf, sizeof(buf), "sha256:%.64s", path);
		return digest_parse(buf, ret, NULL) == 0;
	}
	return false;
}

static int docker_layer(struct plan *p, const char *path, size_t i, cairn_error **reterr)
{
	struct layer_in *l = &p->layers[i];
	if (!(l->member = strdup(path)))
		return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	l->diff_id = p->cfg.diff_ids[i];
	struct image_range rg = {.fd = -EBADF};
	int r = image_source_range(p->src, path, &rg, reterr);
	if (r < 0)
		return r;
	uint8_t head[16] = {0};
	ssize_t n = rg.size ? pread(rg.fd, head, sizeof(head), (off_t)rg.offset) : 0;
	image_range_close(&rg);
	if (n < 0)
		return err_errno(reterr, -errno, "read '%s/%s'", p->what, path);
	layer_compression comp = layer_compression_detect(head, (size_t)n);
	if (!(l->d.media_type = strdup(layer_media_type(comp))))
		return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	/* A plain tar's digest is its diff id; a blobs/ path names its digest. */
	l->known = true;
	if (!digest_of_path(path, &l->d.digest)) {
		l->d.digest = l->diff_id;
		l->known = comp == LAYER_COMPRESSION_NONE;
	}
	return 0;
}

static int plan_docker(struct plan *p, const char *name, const char *tag, cairn_error **reterr)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	char what[4200];
	snprintf(what, sizeof(what), "%s/manifest.json", p->what);
	_cleanup_(docker_manifest_clear) struct docker_manifest dm = {0};
	size_t sel = 0;
	int r = image_source_read(p->src, "manifest.json", IMAGE_JSON_MAX, &buf, &len, reterr);
	if (r < 0 || (r = docker_manifest_parse(buf, len, what, &dm, reterr)) < 0 ||
	    (r = pick_docker(p, &dm, name, tag, &sel, reterr)) < 0)
		return r;
	struct docker_image *im = &dm.images[sel];
	const char *own = im->n_repo_tags ? im->repo_tags[0] : NULL;
	if (own && strncmp(own, "docker.io/library/", 18) == 0)
		own += 18; /* as docker itself shows it */
	if (own && !(p->own_name = strdup(own)))
		return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	snprintf(what, sizeof(what), "%s/%s", p->what, im->config);
	if ((r = image_source_read(p->src, im->config, IMAGE_CONFIG_MAX, &p->config, &p->config_len,
	                           reterr)) < 0)
		return r;
	digest_buffer(p->config, p->config_len, &p->config_digest);
	digest named;
	if (digest_of_path(im->config, &named) &&
	    memcmp(named.raw, p->config_digest.raw, sizeof(named.raw)) != 0)
		return err_set(reterr, CAIRN_EDIGEST,
		               "'%s': digest mismatch: the content hashes to '%s'", what,
		               p->config_digest.str);
	if ((r = image_config_parse(p->config, p->config_len, what, &p->cfg, reterr)) < 0)
		return r;
	if (p->cfg.n_diff_ids != im->n_layers)
		return err_set(reterr, CAIRN_ECORRUPT,
		               "'%s': rootfs.diff_ids has %zu entries but manifest.json lists %zu "
		               "layers",
		               what, p->cfg.n_diff_ids, im->n_layers);
	if (!(p->config_mt = strdup(MT_OCI_CONFIG)) ||
	    !(p->layers = calloc(im->n_layers + 1, sizeof(*p->layers))))
		return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	for (size_t i = 0; i < im->n_layers; i++, p->n++)
		if ((r = docker_layer(p, im->layers[i], i, reterr)) < 0)
			return r;
	p->synth = true;
	return check_layers(p, reterr);
}

/* ---- the copy phase ---- */

static void ingest_ref(char *buf, size_t size, const digest *d)
{
	static atomic_uint counter;
	uint32_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = 0;
	/* The "cairn-add-" prefix lets reconcile reap it should this process die. */
	snprintf(buf, size, "cairn-add-image-%d-%u-%08" PRIx32 "-%.16s", (int)getpid(),
	         atomic_fetch_add(&counter, 1), rnd, d ? digest_hex(d) : "unknown");
}

/*
 * Streams layer @l from the source into the content store: verified against its digest (when
 * known) and size on commit. Sets @l->d.digest and @l->is_new.
 */
static int copy_layer(struct plan *p, content_store *cs, struct layer_in *l,
                      const cairn_image_import_options *o, cairn_error **reterr)
{
	struct image_range rg = {.fd = -EBADF};
	int r = image_source_range(p->src, l->member, &rg, reterr);
	if (r < 0)
		return r;
	char ref[128];
	ingest_ref(ref, sizeof(ref), l->known ? &l->d.digest : NULL);
	_cleanup_(content_writer_freep) content_writer *w = NULL;
	cairn_error *e = NULL;
	r = content_writer_open(cs, ref, rg.size, l->known ? l->d.digest.str : NULL, &w, &e);
	if (r == -EEXIST) {
		/* Already in the store: not copied again. */
		cairn_error_free(e);
		image_range_close(&rg);
		p->done += (uint64_t)l->d.size;
		return 0;
	}
	if (r < 0) {
		err_set(reterr, r, "%s", cairn_error_message(e));
		cairn_error_free(e);
	}
	_cleanup_free_ uint8_t *buf = r < 0 ? NULL : malloc(COPY_CHUNK);
	if (r >= 0 && !buf)
		r = err_set(reterr, -ENOMEM, "copy '%s/%s': out of memory", p->what, l->member);
	for (uint64_t off = 0; r >= 0 && off < rg.size;) {
		size_t want = rg.size - off < COPY_CHUNK ? (size_t)(rg.size - off) : COPY_CHUNK;
		ssize_t n = pread(rg.fd, buf, want, (off_t)(rg.offset + off));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? err_errno(reterr, -errno, "read '%s/%s'", p->what, l->member)
			          : err_set(reterr, CAIRN_ECORRUPT, "'%s/%s': truncated", p->what,
			                    l->member);
			break;
		}
		r = content_writer_write(w, buf, (size_t)n, reterr);
		off += (uint64_t)n;
		p->done += (uint64_t)n;
		if (o && o->progress)
			o->progress(p->done, p->total, o->userdata);
	}
	image_range_close(&rg);
	digest got;
	if (r >= 0)
		r = content_writer_commit(w, (uint64_t)l->d.size, l->known ? l->d.digest.str : NULL,
		                          &got, reterr);
	w = content_writer_free(w);
	if (r < 0) {
		(void)content_abort(cs, ref, NULL);
		return err_prefix(reterr, "'%s/%s'", p->what, l->member);
	}
	l->d.digest = got;
	l->is_new = r > 0;
	return 0;
}

/* What this import created, to undo on failure. */
struct undo {
	char **records; /* ids, in creation order */
	size_t n_records;
	char **blobs;
	size_t n_blobs;
};

static int undo_push(char ***v, size_t *n, const char *s)
{
	char **nv = realloc(*v, (*n + 1) * sizeof(char *));
	if (!nv)
		return -ENOMEM;
	*v = nv;
	if (!(nv[*n] = strdup(s)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

static void undo_clear(struct undo *u)
{
	for (size_t i = 0; i < u->n_records; i++)
		free(u->records[i]);
	for (size_t i = 0; i < u->n_blobs; i++)
		free(u->blobs[i]);
	free(u->records);
	free(u->blobs);
	*u = (struct undo){0};
}

static void undo_run(cairn_cache *c, struct undo *u)
{
	for (size_t i = u->n_records; i-- > 0;) {
		cairn_error *e = NULL;
		if (cairn_cache_remove(c, u->records[i], &e) < 0)
			log_debug("import: undo: %s", cairn_error_message(e));
		cairn_error_free(e);
	}
	for (size_t i = 0; i < u->n_blobs; i++) {
		cairn_error *e = NULL;
		if (cairn_content_delete(c->store, u->blobs[i], &e) < 0)
			log_debug("import: undo: %s", cairn_error_message(e));
		cairn_error_free(e);
	}
}

static int add_doc(struct plan *p, content_store *cs, const char *buf, size_t len, const digest *d,
                   struct undo *u, const char *kind, cairn_error **reterr)
{
	int r = content_add_buffer(cs, buf, len, d->str, NULL, reterr);
	if (r < 0)
		return err_prefix(reterr, "'%s': store the %s", p->what, kind);
	if (r > 0 && undo_push(&u->blobs, &u->n_blobs, d->str) < 0)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	return 0;
}

static int copy_blobs(struct plan *p, cairn_cache *c, struct undo *u,
                      const cairn_image_import_options *o, cairn_error **reterr)
{
	content_store *cs = c->store->content;
	for (size_t i = 0; i < p->n; i++) {
		int r = copy_layer(p, cs, &p->layers[i], o, reterr);
		if (r < 0)
			return r;
		if (p->layers[i].is_new &&
		    undo_push(&u->blobs, &u->n_blobs, p->layers[i].d.digest.str) < 0)
			return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	}
	if (p->synth) {
		struct image_desc *ds = calloc(p->n + 1, sizeof(*ds));
		if (!ds)
			return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
		for (size_t i = 0; i < p->n; i++)
			ds[i] = p->layers[i].d;
		int r = image_manifest_build(p->config_mt, &p->config_digest,
		                             (int64_t)p->config_len, ds, p->n, &p->manifest,
		                             &p->manifest_len, reterr);
		free(ds);
		if (r < 0)
			return r;
		digest_buffer(p->manifest, p->manifest_len, &p->manifest_digest);
	}
	int r = add_doc(p, cs, p->config, p->config_len, &p->config_digest, u, "config", reterr);
	if (r >= 0)
		r = add_doc(p, cs, p->manifest, p->manifest_len, &p->manifest_digest, u, "manifest",
		            reterr);
	return r;
}

/* The gc labels of the manifest blob: its config and its layers. */
static int label_manifest(struct plan *p, cairn_cache *c, cairn_error **reterr)
{
	const char *m = p->manifest_digest.str;
	int r = cairn_content_label_set(c->store, m, LABEL_GC_CONFIG, p->config_digest.str, reterr);
	for (size_t i = 0; r >= 0 && i < p->n; i++) {
		char key[64];
		snprintf(key, sizeof(key), LABEL_GC_LAYER "%zu", i);
		r = cairn_content_label_set(c->store, m, key, p->layers[i].d.digest.str, reterr);
	}
	return r < 0 ? err_prefix(reterr, "'%s': label the manifest", p->what) : 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The ids of every record now, sorted, to tell which records an import made. */
static int record_ids(cairn_cache *c, char ***ret, size_t *ret_n, cairn_error **reterr)
{
	cairn_record_info *infos = NULL;
	size_t n = 0;
	int r = cairn_cache_list(c, &infos, &n, reterr);
	if (r < 0)
		return r;
	char **ids = calloc(n + 1, sizeof(char *));
	for (size_t i = 0; ids && i < n; i++)
		ids[i] = TAKE_PTR(infos[i].id);
	cairn_record_infos_free(infos, n);
	if (!ids)
		return err_set(reterr, -ENOMEM, "list records: out of memory");
	qsort(ids, n, sizeof(char *), cmp_str);
	*ret = ids;
	*ret_n = n;
	return 0;
}

static int make_records(struct plan *p, cairn_cache *c, struct undo *u, cairn_ref ***ret_refs,
                        cairn_error **reterr)
{
	char **before = NULL;
	size_t n_before = 0;
	int r = record_ids(c, &before, &n_before, reterr);
	if (r < 0)
		return r;
	cairn_ref **refs = calloc(p->n + 1, sizeof(*refs));
	if (!refs)
		r = err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	for (size_t i = 0; r >= 0 && i < p->n; i++) {
		struct layer_in *l = &p->layers[i];
		cairn_descriptor d = {.digest = l->d.digest.str,
		                      .size = l->d.size,
		                      .media_type = l->d.media_type,
		                      .diff_id = l->diff_id.str};
		r = cairn_cache_get_by_blob(c, &d, i ? refs[i - 1] : NULL, &refs[i], reterr);
		if (r < 0) {
			r = err_prefix(reterr, "'%s': layer %zu", p->what, i);
			break;
		}
		const char *id = cairn_ref_id(refs[i]);
		if (!bsearch(&id, before, n_before, sizeof(char *), cmp_str) &&
		    undo_push(&u->records, &u->n_records, id) < 0)
			r = err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
		fault_point("image.import.after-record");
	}
	for (size_t i = 0; i < n_before; i++)
		free(before[i]);
	free(before);
	*ret_refs = refs;
	return r;
}

static void refs_free(cairn_ref **refs, size_t n)
{
	for (size_t i = 0; refs && i < n; i++)
		cairn_ref_free(refs[i]);
	free(refs);
}

static int fill_info(struct plan *p, cairn_ref **refs, const char *tag, const struct undo *u,
                     cairn_image_info **ret, cairn_error **reterr)
{
	cairn_image_info *info = image_info_new(p->n);
	bool ok = info != NULL;
	for (size_t i = 0; ok && i < p->n; i++)
		ok = (info->layers[i] = strdup(cairn_ref_id(refs[i]))) &&
		     (info->blobs[i] = strdup(p->layers[i].d.digest.str)) &&
		     (info->diff_ids[i] = strdup(p->layers[i].diff_id.str));
	ok = ok && (info->id = p->n ? strdup(cairn_ref_id(refs[p->n - 1])) : NULL) &&
	     (info->manifest_digest = strdup(p->manifest_digest.str)) &&
	     (info->config_digest = strdup(p->config_digest.str)) &&
	     (!tag || (info->tag = strdup(tag)));
	if (!ok) {
		cairn_image_info_free(info);
		return err_set(reterr, -ENOMEM, "'%s': out of memory", p->what);
	}
	info->n_new_records = u->n_records;
	info->n_new_blobs = u->n_blobs;
	*ret = info;
	return 0;
}

/* The create phase: blobs, labels, records, extraction, tag. */
static int create(struct plan *p, cairn_cache *c, const char *tag, unsigned flags,
                  const cairn_image_import_options *o, cairn_image_info **ret, cairn_error **reterr)
{
	struct undo u = {0};
	cairn_ref **refs = NULL;
	int r = copy_blobs(p, c, &u, o, reterr);
	if (r >= 0) {
		fault_point("image.import.after-blobs");
		r = label_manifest(p, c, reterr);
	}
	if (r >= 0)
		r = make_records(p, c, &u, &refs, reterr);
	if (r >= 0 && (flags & CAIRN_IMAGE_IMPORT_EXTRACT) &&
	    (r = cairn_ref_extract(refs[p->n - 1], o ? o->progress : NULL, o ? o->userdata : NULL,
	                           reterr)) < 0)
		r = err_prefix(reterr, "'%s': extract", p->what);
	if (r >= 0 && tag) {
		r = cairn_cache_tag_image(c, cairn_ref_id(refs[p->n - 1]), tag,
		                          p->manifest_digest.str, reterr);
		if (r >= 0)
			fault_point("image.import.after-tag");
	}
	if (r >= 0 && ret)
		r = fill_info(p, refs, tag, &u, ret, reterr);
	refs_free(refs, p->n);
	if (r < 0)
		undo_run(c, &u);
	undo_clear(&u);
	return r;
}

static int parse_platform(struct plan *p, const char *s, cairn_error **reterr)
{
	if (!s)
		s = "linux/amd64";
	snprintf(p->platform_buf, sizeof(p->platform_buf), "%s", s);
	char *os = p->platform_buf, *arch = strchr(os, '/');
	char *variant = arch ? strchr(arch + 1, '/') : NULL;
	if (arch)
		*arch++ = '\0';
	if (variant)
		*variant++ = '\0';
	if (strlen(s) >= sizeof(p->platform_buf) || !arch || !*os || !*arch ||
	    (variant && (!*variant || strchr(variant, '/'))))
		return err_set(reterr, -EINVAL, "bad platform '%s': use OS/ARCH or OS/ARCH/VARIANT",
		               s);
	p->os = os;
	p->arch = arch;
	p->variant = variant;
	return 0;
}

/* Splits "PATH:NAME" when @source itself does not exist. */
static int split_source(const char *source, char **ret_path, char **ret_name, cairn_error **reterr)
{
	struct stat st;
	const char *colon = strrchr(source, ':');
	*ret_name = NULL;
	if (lstat(source, &st) == 0 || !colon || colon == source || !colon[1]) {
		*ret_path = strdup(source);
	} else {
		*ret_path = strndup(source, (size_t)(colon - source));
		*ret_name = strdup(colon + 1);
		if (!*ret_name) {
			free(*ret_path);
			*ret_path = NULL;
		}
	}
	return *ret_path ? 0 : err_set(reterr, -ENOMEM, "import '%s': out of memory", source);
}

int cairn_image_import(cairn_cache *c, const char *source, const cairn_image_import_options *opts,
                       cairn_image_info **ret, cairn_error **reterr)
{
	int r = cache_enter(c, !c || !source || !*source, "import image", reterr);
	if (r < 0)
		return r;
	cairn_image_import_options o = {.version = CAIRN_IMAGE_IMPORT_OPTIONS_VERSION};
	if (opts)
		o = *opts;
	if (o.version != CAIRN_IMAGE_IMPORT_OPTIONS_VERSION ||
	    (o.flags & ~CAIRN_IMAGE_IMPORT_FLAGS_ALL))
		return err_set(reterr, -EINVAL, "import '%s': unknown options version or flags",
		               source);
	_cleanup_free_ char *path = NULL, *split_name = NULL;
	if ((r = split_source(source, &path, &split_name, reterr)) < 0)
		return r;
	const char *name = o.name ? o.name : split_name;
	if (o.name && split_name) {
		/* An explicit name: the argument is a path as given. */
		free(path);
		if (!(path = strdup(source)))
			return err_set(reterr, -ENOMEM, "import '%s': out of memory", source);
	}
	if (o.tag && !image_tag_valid(o.tag))
		return err_set(reterr, -EINVAL,
		               "bad tag name '%.255s': use 1-255 of [A-Za-z0-9._:/@+-], not "
		               "starting with '-' or '.', and not shaped like a record id",
		               o.tag);
	_cleanup_(plan_clear) struct plan p = {0};
	if ((r = parse_platform(&p, o.platform, reterr)) < 0 ||
	    (r = image_source_open(path, &p.src, reterr)) < 0)
		return r;
	p.what = image_source_path(p.src);
	bool oci = !image_source_is_archive(p.src) || image_source_exists(p.src, "index.json") ||
	           !image_source_exists(p.src, "manifest.json");
	r = oci ? plan_oci(&p, name, o.tag, reterr) : plan_docker(&p, name, o.tag, reterr);
	if (r < 0)
		return r;
	if (p.n == 0)
		return err_set(reterr, CAIRN_ECORRUPT, "'%s': the image has no layers", p.what);
	const char *tag = o.tag ? o.tag : name ? name : p.own_name;
	if (tag && !image_tag_valid(tag)) {
		if (o.tag || name)
			return err_set(reterr, -EINVAL, "bad tag name '%.255s'", tag);
		tag = NULL; /* the image's own name will not do as a tag: left untagged */
	}
	log_debug("import '%s': manifest %s, %zu layers, tag '%s'", p.what,
	          p.synth ? "(made)" : p.manifest_digest.str, p.n, tag ? tag : "");
	return create(&p, c, tag, o.flags, &o, ret, reterr);
}
