/* SPDX-License-Identifier: MIT */
/*
 * Export: a record and its ancestors as an OCI image layout or a docker archive.
 *
 * The chain's blobs come from cairn_ref_get_remote() (made where missing). The config is the
 * imported image's when the record is the top of an image import (its non-rootfs fields kept),
 * with rootfs.diff_ids and history made to match the chain; when the chain is exactly the
 * imported image's, its config and manifest bytes are written unchanged, so an import followed
 * by an export gives the same digests. Output is deterministic: JSON is written compact with
 * sorted keys (or as it came), tar members in a fixed order with fixed owners and times.
 * A layout's index.json is written last, by an atomic rename; an archive is written beside its
 * name and renamed into place.
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>

#include "base/fs.h"
#include "base/log.h"
#include "cache/internal.h"
#include "content/content.h"
#include "image/image.h"
#include "layer/compress.h"

#define CHUNK (1u << 20)

/* A layer as written: from the store blob (OCI) or an uncompressed tar (docker archive). */
struct out_layer {
	cairn_blob *blob;
	struct image_desc d; /* what the manifest says (media type borrowed from static text) */
	int fd;              /* docker archive: the plain tar's bytes */
	char *source;        /* image_build() with lazy_ok: where a lazy blob is, else NULL */
};

struct exp {
	cairn_cache *c;
	const cairn_image_export_options *o;
	const char *ref, *output;
	char *id, *src_manifest;
	cairn_ref **refs; /* base first */
	size_t n;
	struct out_layer *layers;
	/* the imported image, when the record is one's top */
	char *base_manifest, *base_config;
	size_t base_manifest_len, base_config_len;
	struct image_manifest bm;
	struct image_config bc;
	bool have_base;
	/* what is written */
	char *config, *manifest;
	size_t config_len, manifest_len;
	digest config_digest, manifest_digest;
	const char *config_mt;
	const char *manifest_mt; /* the media type of what is written */
	uint64_t total, done;
	bool lazy_ok; /* lazy blobs stay where they are (image_build() for push) */
};

static void exp_clear(struct exp *x)
{
	for (size_t i = 0; x->refs && i < x->n; i++)
		cairn_ref_free(x->refs[i]);
	for (size_t i = 0; x->layers && i < x->n; i++) {
		cairn_blob_free(x->layers[i].blob);
		safe_close(x->layers[i].fd);
		free(x->layers[i].source);
	}
	free(x->refs);
	free(x->layers);
	free(x->id);
	free(x->src_manifest);
	free(x->base_manifest);
	free(x->base_config);
	image_manifest_clear(&x->bm);
	image_config_clear(&x->bc);
	free(x->config);
	free(x->manifest);
}

static void progress(struct exp *x, uint64_t n)
{
	x->done += n;
	if (x->o->progress)
		x->o->progress(x->done, x->total, x->o->userdata);
}

/* ---- the chain ---- */

static int load_chain(struct exp *x, cairn_error **reterr)
{
	int r = cairn_cache_resolve_image(x->c, x->ref, &x->id, &x->src_manifest, reterr);
	if (r < 0)
		return r;
	cairn_ref *top = NULL;
	if ((r = cairn_cache_get(x->c, x->id, CAIRN_CACHE_GET_NO_UPDATE_LAST_USED, &top, reterr)) <
	    0)
		return err_prefix(reterr, "export '%s'", x->ref);
	size_t cap = 8;
	x->refs = calloc(cap, sizeof(*x->refs));
	if (!x->refs) {
		cairn_ref_free(top);
		return err_set(reterr, -ENOMEM, "export '%s': out of memory", x->ref);
	}
	x->refs[x->n++] = top;
	for (;;) {
		cairn_ref *parent = NULL;
		if ((r = cairn_ref_parent(x->refs[x->n - 1], &parent, reterr)) < 0)
			return err_prefix(reterr, "export '%s'", x->ref);
		if (!parent)
			break;
		if (x->n == IMAGE_LAYERS_MAX) {
			cairn_ref_free(parent);
			return err_set(reterr, -E2BIG, "export '%s': more than %u layers", x->ref,
			               IMAGE_LAYERS_MAX);
		}
		if (x->n == cap) {
			cairn_ref **nr = realloc(x->refs, 2 * cap * sizeof(*nr));
			if (!nr) {
				cairn_ref_free(parent);
				return err_set(reterr, -ENOMEM, "export '%s': out of memory",
				               x->ref);
			}
			x->refs = nr;
			cap *= 2;
		}
		x->refs[x->n++] = parent;
	}
	for (size_t i = 0; i < x->n / 2; i++) {
		cairn_ref *t = x->refs[i];
		x->refs[i] = x->refs[x->n - 1 - i];
		x->refs[x->n - 1 - i] = t;
	}
	x->layers = calloc(x->n, sizeof(*x->layers));
	if (!x->layers)
		return err_set(reterr, -ENOMEM, "export '%s': out of memory", x->ref);
	for (size_t i = 0; i < x->n; i++) {
		x->layers[i].fd = -EBADF;
		r = image_layer_blob(x->refs[i], x->o->compression, x->o->source_date_epoch,
		                     x->lazy_ok, &x->layers[i].blob, &x->layers[i].source, reterr);
		if (r < 0)
			return err_prefix(reterr, "export '%s': layer of record '%s'", x->ref,
			                  cairn_ref_id(x->refs[i]));
		x->total += (uint64_t)x->layers[i].blob->size;
	}
	return 0;
}

/* The blob of @ref's record when it is lazy (recorded, not in the content store, its source and
 * size labelled): 1 and *@ret, *@ret_source; 0 when it is not. */
static int lazy_blob(cairn_ref *ref, cairn_blob **ret, char **ret_source, cairn_error **reterr)
{
	cairn_cache *c = ref->cache;
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	int r = cache_load_once(c, ref->id, &row, reterr);
	if (r < 0 || !row.blob || !row.diff_id || !row.media_type)
		return r < 0 ? r : 0;
	if ((r = content_exists(c->store->content, row.blob, reterr)) != 0)
		return r < 0 ? r : 0;
	struct {
		char *source;
		int64_t size;
	} l = {0};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if ((r = meta_tx_begin(c->db, &tx, false, reterr)) < 0)
		return r;
	r = cache_lazy_labels(&tx, row.blob, &l.source, &l.size, reterr);
	cairn_blob *b = r >= 0 && l.source && l.size > 0 ? calloc(1, sizeof(*b)) : NULL;
	if (!b) {
		free(l.source);
		return r < 0 ? r : l.source && l.size > 0 ? -ENOMEM : 0;
	}
	b->digest = TAKE_PTR(row.blob);
	b->diff_id = TAKE_PTR(row.diff_id);
	b->media_type = TAKE_PTR(row.media_type);
	b->size = l.size;
	*ret = b;
	*ret_source = l.source;
	return 1;
}

int image_layer_blob(cairn_ref *ref, const char *compression, int64_t source_date_epoch,
                     bool lazy_ok, cairn_blob **ret, char **ret_source, cairn_error **reterr)
{
	*ret_source = NULL;
	int r = lazy_ok ? lazy_blob(ref, ret, ret_source, reterr) : 0;
	if (r == -ENOMEM && reterr && !*reterr)
		r = err_set(reterr, -ENOMEM, "record '%s': out of memory", cairn_ref_id(ref));
	if (r != 0)
		return r < 0 ? r : 0;
	return cairn_ref_get_remote(ref, compression, source_date_epoch, ret, reterr);
}

/* Blob @dg of the store (at most @max bytes) into *@ret. */
static int read_store_blob(cairn_cache *c, const digest *dg, size_t max, char **ret,
                           size_t *ret_len, cairn_error **reterr)
{
	_cleanup_close_ int fd = -EBADF;
	uint64_t size = 0;
	int r = content_open(c->store->content, dg->str, &fd, &size, reterr);
	if (r < 0)
		return r;
	if (size > max)
		return err_set(reterr, -EFBIG, "blob '%s' is too large: %" PRIu64 " bytes", dg->str,
		               size);
	char *buf = malloc(size + 1);
	if (!buf)
		return err_set(reterr, -ENOMEM, "read blob '%s': out of memory", dg->str);
	size_t done = 0;
	while (done < size) {
		ssize_t n = pread(fd, buf + done, size - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return n < 0 ? err_errno(reterr, -errno, "read blob '%s'", dg->str)
			             : err_set(reterr, -EIO, "read blob '%s': short read", dg->str);
		}
		done += (size_t)n;
	}
	buf[size] = '\0';
	*ret = buf;
	*ret_len = size;
	return 0;
}

/* The image manifest a tag of the nearest record of the chain names (a record built on an
 * imported image inherits its config), into @x->src_manifest; none is fine. */
static void find_base_manifest(struct exp *x)
{
	for (size_t i = x->n; i-- > 0 && !x->src_manifest;) {
		cairn_record_info *info = NULL;
		if (cairn_ref_info(x->refs[i], &info, NULL) < 0)
			continue;
		for (size_t t = 0; t < info->n_tags && !x->src_manifest; t++) {
			char *id = NULL;
			if (cairn_cache_resolve_image(x->c, info->tags[t], &id, &x->src_manifest,
			                              NULL) == 0)
				free(id);
		}
		cairn_record_infos_free(info, 1);
	}
}

/* The imported image the record (or its nearest tagged ancestor) is the top of, if any (best
 * effort: without it, a fresh config is made). */
static int load_base(struct exp *x, cairn_error **reterr)
{
	if (!x->src_manifest)
		find_base_manifest(x);
	if (!x->src_manifest)
		return 0;
	digest md;
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	int r = digest_parse(x->src_manifest, &md, &e);
	if (r >= 0)
		r = read_store_blob(x->c, &md, IMAGE_JSON_MAX, &x->base_manifest,
		                    &x->base_manifest_len, &e);
	if (r >= 0)
		r = image_manifest_parse(x->base_manifest, x->base_manifest_len, x->src_manifest,
		                         &x->bm, &e);
	if (r >= 0)
		r = read_store_blob(x->c, &x->bm.config.digest, IMAGE_CONFIG_MAX, &x->base_config,
		                    &x->base_config_len, &e);
	if (r >= 0)
		r = image_config_parse(x->base_config, x->base_config_len, x->bm.config.digest.str,
		                       &x->bc, &e);
	if (r < 0) {
		log_debug("export '%s': not reusing image %s: %s", x->ref, x->src_manifest,
		          cairn_error_message(e));
		return 0;
	}
	x->have_base = true;
	return 0;
}

/* ---- config and manifest ---- */

static void rfc3339(int64_t secs, char *buf, size_t len)
{
	time_t t = (time_t)secs;
	struct tm tm;
	if (!gmtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "1970-01-01T00:00:00Z");
}

static const char *host_arch(void)
{
	static struct utsname u;
	if (uname(&u) < 0)
		return "amd64";
	if (strcmp(u.machine, "x86_64") == 0)
		return "amd64";
	if (strcmp(u.machine, "aarch64") == 0)
		return "arm64";
	return u.machine;
}

static bool base_diff_ids_match(const struct exp *x)
{
	if (!x->have_base || x->bc.n_diff_ids != x->n)
		return false;
	for (size_t i = 0; i < x->n; i++)
		if (strcmp(x->bc.diff_ids[i].str, x->layers[i].blob->diff_id) != 0)
			return false;
	return true;
}

/* The creation time for the config: the epoch given, else the base's, else the top record's. */
static int created_time(struct exp *x, char *buf, size_t len, cairn_error **reterr)
{
	if (x->o->source_date_epoch >= 0) {
		rfc3339(x->o->source_date_epoch, buf, len);
		return 0;
	}
	json_t *c = x->have_base ? json_object_get(x->bc.doc, "created") : NULL;
	if (json_is_string(c)) {
		snprintf(buf, len, "%s", json_string_value(c));
		return 0;
	}
	cairn_record_info *info = NULL;
	int r = cairn_ref_info(x->refs[x->n - 1], &info, reterr);
	if (r < 0)
		return r;
	rfc3339(info->created_at / 1000000000, buf, len);
	cairn_record_infos_free(info, 1);
	return 0;
}

static int build_config(struct exp *x, cairn_error **reterr)
{
	if (base_diff_ids_match(x) && x->o->source_date_epoch < 0) {
		x->config = TAKE_PTR(x->base_config);
		x->config_len = x->base_config_len;
		x->config_digest = x->bm.config.digest;
		x->config_mt = x->bm.config.media_type;
		return 0;
	}
	char created[64];
	int r = created_time(x, created, sizeof(created), reterr);
	if (r < 0)
		return r;
	json_t *doc = x->have_base ? json_deep_copy(x->bc.doc) : json_object();
	json_t *ids = json_array(), *hist = json_array(), *rootfs = json_object();
	bool ok = doc && ids && hist && rootfs;
	if (ok && !x->have_base)
		ok = json_object_set_new(doc, "architecture", json_string(host_arch())) == 0 &&
		     json_object_set_new(doc, "os", json_string("linux")) == 0 &&
		     json_object_set_new(doc, "config", json_object()) == 0;
	for (size_t i = 0; ok && i < x->n; i++)
		ok = json_array_append_new(ids, json_string(x->layers[i].blob->diff_id)) == 0 &&
		     json_array_append_new(hist, json_pack("{ss ss}", "created", created,
		                                           "created_by", "cairn export")) == 0;
	ok = ok && json_object_set_new(rootfs, "type", json_string("layers")) == 0 &&
	     json_object_set(rootfs, "diff_ids", ids) == 0 &&
	     json_object_set(doc, "rootfs", rootfs) == 0 &&
	     json_object_set(doc, "history", hist) == 0 &&
	     json_object_set_new(doc, "created", json_string(created)) == 0;
	x->config = ok ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(ids);
	json_decref(hist);
	json_decref(rootfs);
	json_decref(doc);
	if (!x->config)
		return err_set(reterr, -ENOMEM, "export '%s': out of memory", x->ref);
	x->config_len = strlen(x->config);
	digest_buffer(x->config, x->config_len, &x->config_digest);
	x->config_mt = MT_OCI_CONFIG;
	return 0;
}

static int build_manifest(struct exp *x, cairn_error **reterr)
{
	bool same = x->have_base && x->o->format == CAIRN_IMAGE_FORMAT_OCI &&
	            x->bm.n_layers == x->n && x->config_mt == x->bm.config.media_type;
	for (size_t i = 0; same && i < x->n; i++)
		same = strcmp(x->bm.layers[i].digest.str, x->layers[i].blob->digest) == 0;
	if (same) {
		x->manifest = TAKE_PTR(x->base_manifest);
		x->manifest_len = x->base_manifest_len;
		digest_parse(x->src_manifest, &x->manifest_digest, NULL);
		/* A Docker schema 2 manifest stays one: the index says so. */
		x->manifest_mt = x->bm.media_type ? x->bm.media_type : MT_OCI_MANIFEST;
		return 0;
	}
	struct image_desc *ds = calloc(x->n + 1, sizeof(*ds));
	if (!ds)
		return err_set(reterr, -ENOMEM, "export '%s': out of memory", x->ref);
	for (size_t i = 0; i < x->n; i++)
		ds[i] = x->layers[i].d;
	x->manifest_mt = MT_OCI_MANIFEST;
	int r = image_manifest_build(x->config_mt, &x->config_digest, (int64_t)x->config_len, ds,
	                             x->n, &x->manifest, &x->manifest_len, reterr);
	free(ds);
	if (r >= 0)
		digest_buffer(x->manifest, x->manifest_len, &x->manifest_digest);
	return r;
}

/* ---- layers for a docker archive: plain tars ---- */

/* Makes layer @l's plain tar: the blob itself when it is one, else inflated into a temporary
 * file beside the output; checked against the diff id either way. */
static int plain_layer(struct exp *x, struct out_layer *l, int tmpdir, cairn_error **reterr)
{
	_cleanup_close_ int in = -EBADF;
	int r = content_open(x->c->store->content, l->blob->digest, &in, NULL, reterr);
	if (r < 0)
		return r;
	uint8_t head[16];
	ssize_t hn = pread(in, head, sizeof(head), 0);
	if (hn < 0)
		return err_errno(reterr, -errno, "read blob '%s'", l->blob->digest);
	digest got;
	uint64_t size = 0;
	if (layer_compression_detect(head, (size_t)hn) == LAYER_COMPRESSION_NONE) {
		if ((r = digest_parse(l->blob->digest, &got, reterr)) < 0)
			return r;
		struct stat st;
		if (fstat(in, &st) < 0)
			return err_errno(reterr, -errno, "stat blob '%s'", l->blob->digest);
		size = (uint64_t)st.st_size;
		l->fd = TAKE_FD(in);
	} else {
		_cleanup_close_ int out = openat(tmpdir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (out < 0)
			return err_errno(reterr, -errno, "export: temporary file beside '%s'",
			                 x->output);
		struct layer_reader_opts ro = {.what = l->blob->digest};
		_cleanup_(layer_reader_freep) layer_reader *rd = NULL;
		if ((r = layer_reader_new(in, &ro, &rd, reterr)) < 0)
			return r;
		for (;;) {
			const void *buf;
			ssize_t n = layer_reader_read(rd, &buf, reterr);
			if (n < 0)
				return (int)n;
			if (n == 0)
				break;
			if ((r = fs_write_all(out, buf, (size_t)n)) < 0)
				return err_errno(reterr, r, "export: write a temporary file");
		}
		layer_reader_digests(rd, &got, NULL);
		size = layer_reader_size(rd);
		l->fd = TAKE_FD(out);
	}
	if (strcmp(got.str, l->blob->diff_id) != 0)
		return err_set(reterr, CAIRN_EDIGEST,
		               "blob '%s': its tar hashes to '%s', not its diff id '%s'",
		               l->blob->digest, got.str, l->blob->diff_id);
	l->d.digest = got;
	l->d.size = (int64_t)size;
	l->d.media_type = (char *)layer_media_type(LAYER_COMPRESSION_NONE);
	return 0;
}

/* ---- OCI layout output ---- */

/* Copies @size bytes of @in (from @off) to @out: copy_file_range where it works, else read and
 * write. */
static int copy_range(struct exp *x, int in, uint64_t off, uint64_t size, int out, const char *what,
                      cairn_error **reterr)
{
	uint64_t done = 0;
	bool cfr = true;
	_cleanup_free_ uint8_t *buf = NULL;
	while (done < size) {
		size_t want = size - done < CHUNK ? (size_t)(size - done) : CHUNK;
		ssize_t n = -1;
		if (cfr) {
			loff_t io = (loff_t)(off + done);
			n = copy_file_range(in, &io, out, NULL, want, 0);
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
			              errno == EOPNOTSUPP)) {
				cfr = false;
				continue;
			}
		} else {
			if (!buf && !(buf = malloc(CHUNK)))
				return err_set(reterr, -ENOMEM, "write '%s': out of memory", what);
			n = pread(in, buf, want, (off_t)(off + done));
			if (n > 0) {
				int r = fs_write_all(out, buf, (size_t)n);
				if (r < 0)
					return err_errno(reterr, r, "write '%s'", what);
			}
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_errno(reterr, -errno, "write '%s'", what);
		if (n == 0)
			return err_set(reterr, -EIO, "write '%s': source ended early", what);
		done += (uint64_t)n;
		progress(x, (uint64_t)n);
	}
	return 0;
}

/* Whether @name below @dfd is a regular file of @size bytes. */
static bool have_file(int dfd, const char *name, uint64_t size)
{
	struct stat st;
	return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	       (uint64_t)st.st_size == size;
}

/* Writes layer @l's blob into blobs/sha256 (@bdfd) unless it is there. */
static int write_layer_blob(struct exp *x, int bdfd, struct out_layer *l, cairn_error **reterr)
{
	const char *hex = l->blob->digest + 7;
	if (have_file(bdfd, hex, (uint64_t)l->blob->size)) {
		progress(x, (uint64_t)l->blob->size);
		return 0;
	}
	_cleanup_close_ int in = -EBADF;
	int r = content_open(x->c->store->content, l->blob->digest, &in, NULL, reterr);
	if (r < 0)
		return r;
	char tmp[128], what[4300];
	snprintf(tmp, sizeof(tmp), ".tmp-%d-%.16s", (int)getpid(), hex);
	snprintf(what, sizeof(what), "%s/blobs/sha256/%s", x->output, hex);
	_cleanup_close_ int out =
		openat(bdfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (out < 0)
		return err_errno(reterr, -errno, "create '%s'", what);
	r = copy_range(x, in, 0, (uint64_t)l->blob->size, out, what, reterr);
	if (r >= 0 && fsync(out) < 0)
		r = err_errno(reterr, -errno, "fsync '%s'", what);
	if (r >= 0 && renameat(bdfd, tmp, bdfd, hex) < 0)
		r = err_errno(reterr, -errno, "rename into '%s'", what);
	if (r < 0)
		(void)unlinkat(bdfd, tmp, 0);
	return r;
}

static int write_doc_blob(struct exp *x, int dfd, const digest *d, const char *buf, size_t len,
                          cairn_error **reterr)
{
	char name[128];
	snprintf(name, sizeof(name), "blobs/sha256/%s", digest_hex(d));
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_size == len)
		return 0;
	int r = fs_write_atomic(dfd, name, buf, len, 0644, reterr);
	return r < 0 ? err_prefix(reterr, "export to '%s'", x->output) : 0;
}

/* The directory @output, made when missing; an existing one must be a layout or empty. */
static int open_layout(struct exp *x, bool *ret_has_layout, cairn_error **reterr)
{
	if (mkdir(x->output, 0755) < 0 && errno != EEXIST)
		return err_errno(reterr, -errno, "create '%s'", x->output);
	int dfd = fs_open_dir(x->output, reterr);
	if (dfd < 0)
		return dfd;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	char what[4200];
	snprintf(what, sizeof(what), "%s/oci-layout", x->output);
	int r = fs_read_file(dfd, "oci-layout", 4096, &buf, &len, NULL);
	if (r >= 0) {
		if ((r = image_layout_parse(buf, len, what, reterr)) < 0) {
			safe_close(dfd);
			return r;
		}
		*ret_has_layout = true;
		return dfd;
	}
	DIR *d = NULL;
	if ((r = fs_opendir_fd(dfd, x->output, &d, reterr)) < 0) {
		safe_close(dfd);
		return r;
	}
	errno = 0;
	bool empty = fs_readdir(d) == NULL && errno == 0;
	closedir(d);
	if (!empty) {
		safe_close(dfd);
		return err_set(reterr, -EEXIST,
		               "'%s' exists and is neither an OCI image layout nor empty",
		               x->output);
	}
	*ret_has_layout = false;
	return dfd;
}

static json_t *manifest_desc(struct exp *x, const char *tag)
{
	return json_pack("{ss ss sI s{ss}}", "mediaType", x->manifest_mt, "digest",
	                 x->manifest_digest.str, "size", (json_int_t)x->manifest_len, "annotations",
	                 ANNOT_REF_NAME, tag);
}

/* index.json: the existing one without entries named @tag, plus ours. */
static int write_index(struct exp *x, int dfd, bool existing, const char *tag, cairn_error **reterr)
{
	char what[4200];
	snprintf(what, sizeof(what), "%s/index.json", x->output);
	json_t *doc = NULL;
	if (existing) {
		_cleanup_free_ char *buf = NULL;
		size_t len = 0;
		struct image_index check = {0};
		cairn_error *e = NULL;
		int r = fs_read_file(dfd, "index.json", IMAGE_JSON_MAX, &buf, &len, &e);
		if (r < 0 && r != -ENOENT)
			r = err_set(reterr, r, "export to '%s': %s", x->output,
			            cairn_error_message(e));
		cairn_error_free(e);
		if (r < 0 && r != -ENOENT)
			return r;
		if (r >= 0) {
			/* Checked as an import would, then edited as plain JSON (unknown
			 * fields kept). */
			if ((r = image_index_parse(buf, len, what, &check, reterr)) < 0)
				return r;
			image_index_clear(&check);
			doc = json_loadb(buf, len, 0, NULL);
		}
	}
	if (!doc)
		doc = json_pack("{si ss s[]}", "schemaVersion", 2, "mediaType", MT_OCI_INDEX,
		                "manifests");
	json_t *ms = doc ? json_object_get(doc, "manifests") : NULL;
	if (!ms) {
		json_decref(doc);
		return err_set(reterr, -ENOMEM, "export '%s': out of memory", x->ref);
	}
	for (size_t i = json_array_size(ms); i-- > 0;) {
		json_t *an = json_object_get(json_array_get(ms, i), "annotations");
		json_t *rn = json_object_get(an, ANNOT_REF_NAME);
		if (json_is_string(rn) && strcmp(json_string_value(rn), tag) == 0)
			json_array_remove(ms, i);
	}
	char *s = json_array_append_new(ms, manifest_desc(x, tag)) == 0
	                  ? json_dumps(doc, JSON_COMPACT)
	                  : NULL;
	json_decref(doc);
	if (!s)
		return err_set(reterr, -ENOMEM, "export '%s': out of memory", x->ref);
	int r = fs_write_atomic(dfd, "index.json", s, strlen(s), 0644, reterr);
	free(s);
	return r < 0 ? err_prefix(reterr, "export to '%s'", x->output) : 0;
}

static const char layout_json[] = "{\"imageLayoutVersion\":\"1.0.0\"}";

static int write_oci(struct exp *x, const char *tag, cairn_error **reterr)
{
	bool existing = false;
	_cleanup_close_ int dfd = open_layout(x, &existing, reterr);
	if (dfd < 0)
		return dfd;
	int r = fs_mkdir_p(dfd, "blobs/sha256", 0755, reterr);
	if (r < 0)
		return err_prefix(reterr, "export to '%s'", x->output);
	_cleanup_close_ int bdfd =
		fs_openat(dfd, "blobs/sha256", O_RDONLY | O_DIRECTORY, 0, reterr);
	if (bdfd < 0)
		return err_prefix(reterr, "export to '%s'", x->output);
	for (size_t i = 0; i < x->n; i++)
		if ((r = write_layer_blob(x, bdfd, &x->layers[i], reterr)) < 0)
			return r;
	if ((r = fs_fsync_path(bdfd, "", reterr)) < 0 ||
	    (r = write_doc_blob(x, dfd, &x->config_digest, x->config, x->config_len, reterr)) < 0 ||
	    (r = write_doc_blob(x, dfd, &x->manifest_digest, x->manifest, x->manifest_len,
	                        reterr)) < 0)
		return r;
	if (!existing && (r = fs_write_atomic(dfd, "oci-layout", layout_json, strlen(layout_json),
	                                      0644, reterr)) < 0)
		return err_prefix(reterr, "export to '%s'", x->output);
	return write_index(x, dfd, existing, tag, reterr);
}

/* ---- docker archive output ---- */

struct tarw {
	struct archive *a;
	int64_t mtime;
	const char *what;
};

static int tar_fail(struct tarw *t, cairn_error **reterr)
{
	return err_set(reterr, -EIO, "write '%s': %s", t->what, archive_error_string(t->a));
}

static int tar_header(struct tarw *t, const char *name, bool dir, uint64_t size,
                      cairn_error **reterr)
{
	struct archive_entry *e = archive_entry_new();
	if (!e)
		return err_set(reterr, -ENOMEM, "write '%s': out of memory", t->what);
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, dir ? AE_IFDIR : AE_IFREG);
	archive_entry_set_perm(e, dir ? 0755 : 0644);
	archive_entry_set_size(e, dir ? 0 : (la_int64_t)size);
	archive_entry_set_mtime(e, t->mtime, 0);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	int k = archive_write_header(t->a, e);
	archive_entry_free(e);
	return k < ARCHIVE_WARN ? tar_fail(t, reterr) : 0;
}

static int tar_buffer(struct tarw *t, const char *name, const void *buf, size_t len,
                      cairn_error **reterr)
{
	int r = tar_header(t, name, false, len, reterr);
	if (r < 0)
		return r;
	if (len && archive_write_data(t->a, buf, len) != (la_ssize_t)len)
		return tar_fail(t, reterr);
	return 0;
}

static int tar_fd(struct exp *x, struct tarw *t, const char *name, int fd, uint64_t size,
                  cairn_error **reterr)
{
	int r = tar_header(t, name, false, size, reterr);
	if (r < 0)
		return r;
	_cleanup_free_ uint8_t *buf = malloc(CHUNK);
	if (!buf)
		return err_set(reterr, -ENOMEM, "write '%s': out of memory", t->what);
	for (uint64_t off = 0; off < size;) {
		size_t want = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
		ssize_t n = pread(fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? err_errno(reterr, -errno, "write '%s': read a layer",
			                         t->what)
			             : err_set(reterr, -EIO, "write '%s': a layer ended early",
			                       t->what);
		if (archive_write_data(t->a, buf, (size_t)n) != n)
			return tar_fail(t, reterr);
		off += (uint64_t)n;
		progress(x, (uint64_t)n);
	}
	return 0;
}

/* docker's manifest.json: RepoTags gets ":latest" when @tag names no tag of its own. */
static char *docker_manifest_json(struct exp *x, const char *tag)
{
	json_t *layers = json_array();
	for (size_t i = 0; layers && i < x->n; i++) {
		char p[128];
		snprintf(p, sizeof(p), "blobs/sha256/%s", digest_hex(&x->layers[i].d.digest));
		json_array_append_new(layers, json_string(p));
	}
	json_t *tags = json_array();
	if (tags && tag) {
		const char *slash = strrchr(tag, '/');
		bool has_tag = strchr(slash ? slash : tag, ':') != NULL;
		char *t = NULL;
		if (asprintf(&t, "%s%s", tag, has_tag ? "" : ":latest") >= 0) {
			json_array_append_new(tags, json_string(t));
			free(t);
		}
	}
	char cfg[128];
	snprintf(cfg, sizeof(cfg), "blobs/sha256/%s", digest_hex(&x->config_digest));
	json_t *doc = json_pack("[{ss so so}]", "Config", cfg, "RepoTags", tags, "Layers", layers);
	char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	return s;
}

static int tar_contents(struct exp *x, struct tarw *t, const char *tag, const char *ref_name,
                        cairn_error **reterr)
{
	int r;
	if ((r = tar_header(t, "blobs/", true, 0, reterr)) < 0 ||
	    (r = tar_header(t, "blobs/sha256/", true, 0, reterr)) < 0)
		return r;
	for (size_t i = 0; i < x->n; i++) {
		bool dup = false;
		for (size_t j = 0; j < i && !dup; j++)
			dup = strcmp(x->layers[j].d.digest.str, x->layers[i].d.digest.str) == 0;
		char name[128];
		snprintf(name, sizeof(name), "blobs/sha256/%s", digest_hex(&x->layers[i].d.digest));
		if (!dup && (r = tar_fd(x, t, name, x->layers[i].fd, (uint64_t)x->layers[i].d.size,
		                        reterr)) < 0)
			return r;
	}
	char name[128];
	snprintf(name, sizeof(name), "blobs/sha256/%s", digest_hex(&x->config_digest));
	if ((r = tar_buffer(t, name, x->config, x->config_len, reterr)) < 0)
		return r;
	snprintf(name, sizeof(name), "blobs/sha256/%s", digest_hex(&x->manifest_digest));
	if ((r = tar_buffer(t, name, x->manifest, x->manifest_len, reterr)) < 0)
		return r;
	json_t *idx = json_pack("{si ss s[o]}", "schemaVersion", 2, "mediaType", MT_OCI_INDEX,
	                        "manifests", manifest_desc(x, ref_name));
	_cleanup_free_ char *is = idx ? json_dumps(idx, JSON_COMPACT) : NULL;
	json_decref(idx);
	_cleanup_free_ char *ms = docker_manifest_json(x, tag);
	if (!is || !ms)
		return err_set(reterr, -ENOMEM, "write '%s': out of memory", t->what);
	if ((r = tar_buffer(t, "index.json", is, strlen(is), reterr)) < 0 ||
	    (r = tar_buffer(t, "manifest.json", ms, strlen(ms), reterr)) < 0 ||
	    (r = tar_buffer(t, "oci-layout", layout_json, strlen(layout_json), reterr)) < 0)
		return r;
	return 0;
}

/* Opens the directory of @path (for the temporary file and the rename); *@ret_base borrowed. */
static int open_out_dir(const char *path, const char **ret_base, cairn_error **reterr)
{
	const char *slash = strrchr(path, '/');
	*ret_base = slash ? slash + 1 : path;
	if (!**ret_base)
		return err_set(reterr, -EINVAL, "export: '%s' is not a file name", path);
	_cleanup_free_ char *dir = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup(".");
	if (!dir)
		return err_set(reterr, -ENOMEM, "export: out of memory");
	return fs_open_dir(dir, reterr);
}

static int write_docker(struct exp *x, const char *tag, const char *ref_name, cairn_error **reterr)
{
	const char *base = NULL;
	_cleanup_close_ int dfd = open_out_dir(x->output, &base, reterr);
	if (dfd < 0)
		return dfd;
	char tmp[300];
	snprintf(tmp, sizeof(tmp), ".%.200s.tmp-%d", base, (int)getpid());
	_cleanup_close_ int fd =
		openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_errno(reterr, -errno, "create a temporary file beside '%s'", x->output);
	struct tarw t = {.a = archive_write_new(),
	                 .mtime = x->o->source_date_epoch > 0 ? x->o->source_date_epoch : 0,
	                 .what = x->output};
	int r = 0;
	if (!t.a)
		r = err_set(reterr, -ENOMEM, "write '%s': out of memory", x->output);
	else if (archive_write_set_format_pax_restricted(t.a) != ARCHIVE_OK ||
	         archive_write_set_bytes_in_last_block(t.a, 1) != ARCHIVE_OK ||
	         archive_write_open_fd(t.a, fd) != ARCHIVE_OK)
		r = tar_fail(&t, reterr);
	if (r >= 0)
		r = tar_contents(x, &t, tag, ref_name, reterr);
	if (r >= 0 && archive_write_close(t.a) != ARCHIVE_OK)
		r = tar_fail(&t, reterr);
	if (t.a)
		archive_write_free(t.a);
	if (r >= 0 && fsync(fd) < 0)
		r = err_errno(reterr, -errno, "fsync '%s'", x->output);
	if (r >= 0 && renameat(dfd, tmp, dfd, base) < 0)
		r = err_errno(reterr, -errno, "rename into '%s'", x->output);
	if (r < 0)
		(void)unlinkat(dfd, tmp, 0);
	return r;
}

static int prepare_docker_layers(struct exp *x, cairn_error **reterr)
{
	const char *base = NULL;
	_cleanup_close_ int dfd = open_out_dir(x->output, &base, reterr);
	if (dfd < 0)
		return dfd;
	x->total = 0;
	for (size_t i = 0; i < x->n; i++) {
		int r = plain_layer(x, &x->layers[i], dfd, reterr);
		if (r < 0)
			return err_prefix(reterr, "export '%s'", x->ref);
		x->total += (uint64_t)x->layers[i].d.size;
	}
	return 0;
}

static int fill_info(struct exp *x, const char *tag, cairn_image_info **ret, cairn_error **reterr)
{
	cairn_image_info *info = image_info_new(x->n);
	bool ok = info && (info->id = strdup(x->id)) &&
	          (info->manifest_digest = strdup(x->manifest_digest.str)) &&
	          (info->config_digest = strdup(x->config_digest.str)) &&
	          (!tag || (info->tag = strdup(tag)));
	for (size_t i = 0; ok && i < x->n; i++)
		ok = (info->layers[i] = strdup(cairn_ref_id(x->refs[i]))) &&
		     (info->blobs[i] = strdup(x->layers[i].d.digest.str)) &&
		     (info->diff_ids[i] = strdup(x->layers[i].blob->diff_id));
	if (!ok) {
		cairn_image_info_free(info);
		return err_set(reterr, -ENOMEM, "export '%s': out of memory", x->ref);
	}
	*ret = info;
	return 0;
}

static bool ref_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 255)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("._:/@+-", *p)))
			return false;
	return true;
}

/* The chain, its blobs (plain tars for a docker archive), the config and the manifest. */
static int build(struct exp *x, cairn_error **reterr)
{
	int r = load_chain(x, reterr);
	if (r >= 0)
		r = load_base(x, reterr);
	for (size_t i = 0; r >= 0 && x->o->format == CAIRN_IMAGE_FORMAT_OCI && i < x->n; i++) {
		struct out_layer *l = &x->layers[i];
		l->d.media_type = l->blob->media_type;
		l->d.size = l->blob->size;
		r = digest_parse(l->blob->digest, &l->d.digest, reterr);
	}
	if (r >= 0 && x->o->format == CAIRN_IMAGE_FORMAT_DOCKER_ARCHIVE)
		r = prepare_docker_layers(x, reterr);
	if (r >= 0)
		r = build_config(x, reterr);
	if (r >= 0)
		r = build_manifest(x, reterr);
	return r;
}

void image_built_clear(struct image_built *b)
{
	for (size_t i = 0; b->blobs && i < b->n; i++)
		cairn_blob_free(b->blobs[i]);
	for (size_t i = 0; b->sources && i < b->n; i++)
		free(b->sources[i]);
	for (size_t i = 0; b->records && i < b->n; i++)
		free(b->records[i]);
	free(b->blobs);
	free(b->sources);
	free(b->records);
	free(b->id);
	free(b->config);
	free(b->manifest);
	free(b->config_mt);
	free(b->manifest_mt);
	*b = (struct image_built){0};
}

/* Moves what @x built into @b. */
static int take_built(struct exp *x, struct image_built *b, cairn_error **reterr)
{
	*b = (struct image_built){.n = x->n,
	                          .config_len = x->config_len,
	                          .manifest_len = x->manifest_len,
	                          .config_digest = x->config_digest,
	                          .manifest_digest = x->manifest_digest};
	b->blobs = calloc(x->n ? x->n : 1, sizeof(*b->blobs));
	b->sources = calloc(x->n ? x->n : 1, sizeof(*b->sources));
	b->records = calloc(x->n ? x->n : 1, sizeof(*b->records));
	b->config_mt = strdup(x->config_mt);
	b->manifest_mt = strdup(x->manifest_mt);
	bool ok = b->blobs && b->sources && b->records && b->config_mt && b->manifest_mt;
	for (size_t i = 0; ok && i < x->n; i++)
		ok = (b->records[i] = strdup(cairn_ref_id(x->refs[i]))) != NULL;
	if (!ok) {
		image_built_clear(b);
		return err_set(reterr, -ENOMEM, "image '%s': out of memory", x->ref);
	}
	for (size_t i = 0; i < x->n; i++) {
		b->blobs[i] = TAKE_PTR(x->layers[i].blob);
		b->sources[i] = TAKE_PTR(x->layers[i].source);
	}
	b->id = TAKE_PTR(x->id);
	b->config = TAKE_PTR(x->config);
	b->manifest = TAKE_PTR(x->manifest);
	return 0;
}

int image_build(cairn_cache *c, const char *ref, const char *compression, int64_t source_date_epoch,
                struct image_built *ret, cairn_error **reterr)
{
	cairn_image_export_options o = {.version = CAIRN_IMAGE_EXPORT_OPTIONS_VERSION,
	                                .format = CAIRN_IMAGE_FORMAT_OCI,
	                                .compression = compression,
	                                .source_date_epoch = source_date_epoch};
	layer_compression comp;
	int level, r = 0;
	if (compression && (r = layer_compression_parse(compression, &comp, &level, reterr)) < 0)
		return err_prefix(reterr, "image '%s'", ref);
	struct exp x = {.c = c, .o = &o, .ref = ref, .output = "", .lazy_ok = true};
	r = build(&x, reterr);
	if (r >= 0)
		r = take_built(&x, ret, reterr);
	exp_clear(&x);
	return r;
}

int cairn_image_export(cairn_cache *c, const char *ref, const char *output,
                       const cairn_image_export_options *opts, cairn_image_info **ret,
                       cairn_error **reterr)
{
	int r = cache_enter(c, !c || !ref || !output || !*output, "export image", reterr);
	if (r < 0)
		return r;
	cairn_image_export_options o = {.version = CAIRN_IMAGE_EXPORT_OPTIONS_VERSION,
	                                .source_date_epoch = -1};
	if (opts)
		o = *opts;
	layer_compression comp;
	int level;
	if (o.version != CAIRN_IMAGE_EXPORT_OPTIONS_VERSION ||
	    (o.format != CAIRN_IMAGE_FORMAT_OCI && o.format != CAIRN_IMAGE_FORMAT_DOCKER_ARCHIVE))
		return err_set(reterr, -EINVAL, "export '%s': unknown options version or format",
		               ref);
	if (o.compression &&
	    (r = layer_compression_parse(o.compression, &comp, &level, reterr)) < 0)
		return err_prefix(reterr, "export '%s'", ref);
	if (o.tag && !ref_name_valid(o.tag))
		return err_set(reterr, -EINVAL,
		               "export '%s': bad tag '%.255s': use 1-255 of [A-Za-z0-9._:/@+-]",
		               ref, o.tag);
	const char *ref_name = o.tag ? o.tag : "latest";
	struct exp x = {.c = c, .o = &o, .ref = ref, .output = output};
	r = build(&x, reterr);
	if (r >= 0)
		r = o.format == CAIRN_IMAGE_FORMAT_OCI ? write_oci(&x, ref_name, reterr)
		                                       : write_docker(&x, o.tag, ref_name, reterr);
	if (r >= 0 && ret)
		r = fill_info(&x, o.format == CAIRN_IMAGE_FORMAT_OCI ? ref_name : o.tag, ret,
		              reterr);
	exp_clear(&x);
	return r;
}
