/* SPDX-License-Identifier: MIT */
/*
 * Blobs: HEAD, streamed and resumable GET, uploads (cross-repository mount, monolithic PUT,
 * chunked PATCH), and a fetch straight into a content store ingest.
 */
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "internal.h"

#define EMPTY_SHA256 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static int check_args(remote_client *c, const char *repo, const char *dg, cairn_error **reterr)
{
	char tmp[301];
	if (!c || !repo || !dg)
		return err_set(reterr, -EINVAL, "registry client: missing argument");
	if (!remote_repo_valid(repo))
		return err_set(reterr, -EINVAL, "registry '%s': invalid repository name '%s'",
		               c->registry, sanitize(repo, 300, tmp));
	if (!digest_valid(dg))
		return err_set(reterr, CAIRN_EDIGEST, "registry '%s': invalid blob digest '%s'",
		               c->registry, sanitize(dg, 100, tmp));
	return 0;
}

static char *blob_what(const char *repo, const char *dg)
{
	char *w = NULL;
	if (asprintf(&w, "blob '%s' in '%s'", dg, repo) < 0)
		return NULL;
	return w;
}

/* The reply's Docker-Content-Digest, when there is one, must name @dg. */
static int check_digest_header(remote_client *c, const char *what, const struct http_resp *resp,
                               const char *dg, cairn_error **reterr)
{
	char tmp[129];
	if (!resp->docker_digest[0] || strcmp(resp->docker_digest, dg) == 0)
		return 0;
	return err_set(reterr, CAIRN_EDIGEST,
	               "registry '%s': %s: the registry answered with Docker-Content-Digest '%s'",
	               c->registry, what, sanitize(resp->docker_digest, 128, tmp));
}

static int blob_head(remote_client *c, const char *repo, const char *dg, const char *scope,
                     const char *what, uint64_t *ret_size, cairn_error **reterr)
{
	_cleanup_free_ char *url = url_for(c, repo, "blobs", dg);
	if (!url)
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	struct http_req q = {
		.method = "HEAD", .url = url, .what = what, .scope = scope, .follow = true};
	struct http_resp resp = {0};
	int r = http_send(c, &q, &resp, reterr);
	if (r >= 0 && resp.status == 404)
		r = 0;
	else if (r >= 0 && resp.status != 200)
		r = http_status_error(c, &q, &resp, reterr);
	else if (r >= 0 && (r = check_digest_header(c, what, &resp, dg, reterr)) >= 0) {
		if (resp.content_length < 0)
			r = err_set(reterr, -EPROTO,
			            "registry '%s': %s: HEAD without Content-Length", c->registry,
			            what);
		else {
			if (ret_size)
				*ret_size = (uint64_t)resp.content_length;
			r = 1;
		}
	}
	http_resp_reset(&resp);
	return r;
}

int remote_blob_exists(remote_client *c, const char *repo, const char *dgst, uint64_t *ret_size,
                       cairn_error **reterr)
{
	int r = check_args(c, repo, dgst, reterr);
	if (r < 0)
		return r;
	_cleanup_free_ char *what = blob_what(repo, dgst);
	_cleanup_free_ char *scope = scope_for(repo, false);
	if (!what || !scope)
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	return blob_head(c, repo, dgst, scope, what, ret_size, reterr);
}

/* The state of one download across its attempts. */
struct get_state {
	remote_client *c;
	const char *what;
	struct http_resp *resp;
	uint64_t pos;   /* absolute offset of the next byte wanted */
	uint64_t limit; /* no byte at or past this offset (0: none) */
	uint64_t skip;  /* bytes of this reply to drop (a 200 to a Range request) */
	bool first;     /* no byte of this attempt's reply seen yet */
	hasher *h;      /* NULL when the download starts past 0 */
	remote_write_fn fn;
	void *ud;
	char range[64];
};

static int get_before(void *ud, struct http_req *q, cairn_error **reterr)
{
	struct get_state *g = ud;
	g->first = true;
	g->skip = 0;
	q->range = NULL;
	if (g->pos > 0) {
		snprintf(g->range, sizeof(g->range), "bytes=%" PRIu64 "-", g->pos);
		q->range = g->range;
	}
	return 0;
}

/* Parse "bytes A-B/T" (T may be '*'); *@ret_total is 0 for '*'. */
static bool parse_content_range(const char *s, uint64_t *a, uint64_t *b, uint64_t *ret_total)
{
	char star = 0;
	if (sscanf(s, "bytes %" SCNu64 "-%" SCNu64 "/%" SCNu64, a, b, ret_total) == 3)
		return *a <= *b;
	*ret_total = 0;
	return sscanf(s, "bytes %" SCNu64 "-%" SCNu64 "/%c", a, b, &star) == 3 && star == '*' &&
	       *a <= *b;
}

static int get_first(struct get_state *g, cairn_error **reterr)
{
	char tmp[129];
	uint64_t a, b, t;
	g->first = false;
	if (g->resp->status == 200) {
		if (g->pos > 0)
			log_debug("registry '%s': %s: Range ignored, skipping %" PRIu64 " bytes",
			          g->c->registry, g->what, g->pos);
		g->skip = g->pos;
		return 0;
	}
	if (g->resp->status != 206)
		return err_set(reterr, -EPROTO, "registry '%s': %s: unexpected status %ld",
		               g->c->registry, g->what, g->resp->status);
	if (!parse_content_range(g->resp->content_range, &a, &b, &t) || a != g->pos ||
	    (g->limit && (b >= g->limit || (t && t != g->limit))))
		return err_set(reterr, -EPROTO,
		               "registry '%s': %s: asked for bytes from %" PRIu64
		               ", got Content-Range '%s'",
		               g->c->registry, g->what, g->pos,
		               sanitize(g->resp->content_range, 128, tmp));
	return 0;
}

static int get_sink(void *ud, const void *buf, size_t len, cairn_error **reterr)
{
	struct get_state *g = ud;
	const uint8_t *p = buf;
	if (g->first) {
		int r = get_first(g, reterr);
		if (r < 0)
			return r;
	}
	if (g->skip) {
		size_t k = len < g->skip ? len : (size_t)g->skip;
		g->skip -= k;
		p += k;
		len -= k;
	}
	if (len == 0)
		return 0;
	if (g->limit && g->pos + len > g->limit)
		return err_set(reterr, -EPROTO, "sent more than the %" PRIu64 " bytes expected",
		               g->limit);
	if (g->h)
		hasher_update(g->h, p, len);
	int r = g->fn(g->ud, p, len, reterr);
	if (r < 0)
		return r;
	g->pos += len;
	return 0;
}

static int get_finish(struct get_state *g, const char *dg, uint64_t size, cairn_error **reterr)
{
	if (size && g->pos != size)
		return err_set(reterr, -EPROTO,
		               "registry '%s': %s: the reply ended after %" PRIu64 " of %" PRIu64
		               " bytes",
		               g->c->registry, g->what, g->pos, size);
	if (!g->h)
		return 0;
	digest got;
	hasher_peek(g->h, &got);
	if (strcmp(got.str, dg) != 0)
		return err_set(reterr, CAIRN_EDIGEST,
		               "registry '%s': %s: the bytes received hash to '%s'", g->c->registry,
		               g->what, got.str);
	return 0;
}

int remote_blob_get(remote_client *c, const char *repo, const char *dgst, uint64_t size,
                    uint64_t max_size, uint64_t offset, remote_write_fn fn, void *userdata,
                    cairn_error **reterr)
{
	int r = check_args(c, repo, dgst, reterr);
	if (r < 0)
		return r;
	_cleanup_free_ char *what = blob_what(repo, dgst);
	_cleanup_free_ char *scope = scope_for(repo, false);
	_cleanup_free_ char *url = url_for(c, repo, "blobs", dgst);
	_cleanup_(hasher_freep) hasher *h = offset == 0 ? hasher_new() : NULL;
	if (!what || !scope || !url || (offset == 0 && !h))
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	if (size && offset > size)
		return err_set(reterr, -EINVAL,
		               "registry '%s': %s: offset %" PRIu64 " past its end", c->registry,
		               what, offset);
	if (size && offset == size)
		return 0;
	struct http_resp resp = {0};
	struct get_state g = {.c = c,
	                      .what = what,
	                      .resp = &resp,
	                      .pos = offset,
	                      .limit = size ? size : max_size,
	                      .h = h,
	                      .fn = fn,
	                      .ud = userdata};
	struct http_req q = {.method = "GET",
	                     .url = url,
	                     .what = what,
	                     .scope = scope,
	                     .follow = true,
	                     .sink = get_sink,
	                     .sink_ud = &g,
	                     .before = get_before,
	                     .before_ud = &g};
	r = http_send(c, &q, &resp, reterr);
	if (r >= 0 && resp.status == 416 && size && g.pos == size)
		r = 0;
	else if (r >= 0 && resp.status != 200 && resp.status != 206)
		r = http_status_error(c, &q, &resp, reterr);
	else if (r >= 0 && g.first && resp.status == 206)
		r = get_first(&g, reterr); /* an empty 206 still has to name the right range */
	if (r >= 0)
		r = check_digest_header(c, what, &resp, dgst, reterr);
	http_resp_reset(&resp);
	if (r < 0)
		return r;
	return get_finish(&g, dgst, size, reterr);
}

struct ingest_sink {
	content_writer *w;
	uint64_t done, size;
	void (*progress)(uint64_t done, uint64_t total, void *userdata);
	void *userdata;
};

static int write_ingest(void *ud, const void *buf, size_t len, cairn_error **reterr)
{
	struct ingest_sink *k = ud;
	int r = content_writer_write(k->w, buf, len, reterr);
	k->done += len;
	if (r >= 0 && k->progress)
		k->progress(k->done, k->size, k->userdata);
	return r;
}

/* A failure that says the bytes (not the connection) are bad: throw the ingest away. */
static bool bad_content(int r)
{
	return r == CAIRN_EDIGEST || r == -EPROTO || r == -ENOENT || r == CAIRN_EPRECONDITION ||
	       r == CAIRN_ECORRUPT || r == -EFBIG;
}

int remote_blob_fetch_to_store(remote_client *c, content_store *cs, const char *repo,
                               const char *dgst, uint64_t size, cairn_error **reterr)
{
	return remote_blob_fetch_progress(c, cs, repo, dgst, size, NULL, NULL, reterr);
}

int remote_blob_fetch_progress(remote_client *c, content_store *cs, const char *repo,
                               const char *dgst, uint64_t size,
                               void (*progress)(uint64_t done, uint64_t total, void *userdata),
                               void *userdata, cairn_error **reterr)
{
	int r = check_args(c, repo, dgst, reterr);
	if (r < 0)
		return r;
	char ref[16 + DIGEST_STR_LEN];
	snprintf(ref, sizeof(ref), "remote-%s", dgst);
	r = content_exists(cs, dgst, reterr);
	if (r != 0)
		return r < 0 ? r : 0;
	content_writer *w = NULL;
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	r = content_writer_open(cs, ref, size, dgst, &w, &e);
	if (r == -EEXIST)
		return 0;
	if (r < 0) {
		if (reterr && !*reterr)
			*reterr = TAKE_PTR(e);
		return err_prefix(reterr, "registry '%s': blob '%s' in '%s'", c->registry, dgst,
		                  repo);
	}
	uint64_t off = content_writer_offset(w);
	if (off)
		log_debug("registry '%s': blob '%s': resuming at %" PRIu64, c->registry, dgst, off);
	struct ingest_sink sink = {w, off, size, progress, userdata};
	r = remote_blob_get(c, repo, dgst, size, 0, off, write_ingest, &sink, &e);
	if (r >= 0) {
		r = content_writer_commit(w, size, dgst, NULL, &e);
		if (r < 0)
			err_prefix(&e, "registry '%s': blob '%s' in '%s'", c->registry, dgst, repo);
	}
	if (r < 0 && bad_content(r)) {
		content_writer_free(w);
		(void)content_abort(cs, ref, NULL);
	} else {
		content_writer_close(w, NULL);
	}
	if (r < 0 && reterr && !*reterr)
		*reterr = TAKE_PTR(e);
	return r < 0 ? r : 1;
}

/* An upload: the caller's source, hashed as it goes out, checked before the last byte. */
struct put_state {
	remote_client *c;
	const char *repo;
	const char *what;
	const char *dgst;
	remote_read_fn fn;
	void *ud;
	hasher *h;
	uint64_t hashed; /* bytes [0, hashed) went through h */
	uint64_t size;
	bool verified;
};

static ssize_t put_read(void *ud, void *buf, size_t len, uint64_t off, cairn_error **reterr)
{
	struct put_state *p = ud;
	ssize_t k = p->fn(p->ud, buf, len, off, reterr);
	if (k <= 0)
		return k;
	if ((uint64_t)k > len)
		return err_set(reterr, -EINVAL, "the source returned more than it was asked for");
	uint64_t end = off + (uint64_t)k;
	if (off <= p->hashed && end > p->hashed) {
		hasher_update(p->h, (uint8_t *)buf + (p->hashed - off), (size_t)(end - p->hashed));
		p->hashed = end;
	}
	if (p->hashed == p->size && !p->verified) {
		digest got;
		hasher_peek(p->h, &got);
		if (strcmp(got.str, p->dgst) != 0)
			return err_set(reterr, CAIRN_EDIGEST,
			               "the content to upload hashes to '%s', upload cancelled",
			               got.str);
		p->verified = true;
	}
	return k;
}

static int post_session(remote_client *c, const char *repo, const char *dg, const char *from,
                        const char *scope, const char *what, char **ret_location,
                        cairn_error **reterr)
{
	_cleanup_free_ char *url = NULL;
	int k = from ? asprintf(&url, "%s/v2/%s/blobs/uploads/?mount=%s&from=%s", c->base, repo, dg,
	                        from)
	             : asprintf(&url, "%s/v2/%s/blobs/uploads/", c->base, repo);
	if (k < 0)
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	struct http_req q = {.method = "POST",
	                     .url = url,
	                     .what = what,
	                     .scope = scope,
	                     .has_body = true,
	                     .body_len = 0,
	                     .max_body = HTTP_ERROR_BODY_MAX};
	struct http_resp resp = {0};
	int r = http_send(c, &q, &resp, reterr);
	if (r >= 0 && resp.status == 201 && from)
		r = check_digest_header(c, what, &resp, dg, reterr); /* mounted: r = 0 */
	else if (r >= 0 && resp.status == 202)
		r = http_resolve(c, url, resp.location, NULL, what, ret_location, reterr) ?: 1;
	else if (r >= 0)
		r = http_status_error(c, &q, &resp, reterr);
	http_resp_reset(&resp);
	return r;
}

/* Send bytes [off, off+len) to the session at *@location; a PATCH chunk or the final PUT. */
static int put_bytes(struct put_state *p, const char *scope, char **location, uint64_t off,
                     uint64_t len, bool final, cairn_error **reterr)
{
	remote_client *c = p->c;
	_cleanup_free_ char *url = NULL;
	char range[64], query[16 + DIGEST_STR_LEN];
	snprintf(query, sizeof(query), "digest=%s", p->dgst);
	int r = final ? http_resolve(c, *location, *location, query, p->what, &url, reterr) : 0;
	if (r < 0)
		return r;
	snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, off, off + len - 1);
	struct http_req q = {.method = final ? "PUT" : "PATCH",
	                     .url = final ? url : *location,
	                     .what = p->what,
	                     .scope = scope,
	                     .once = true,
	                     .has_body = true,
	                     .content_type = "application/octet-stream",
	                     .read = put_read,
	                     .read_ud = p,
	                     .body_off = off,
	                     .body_len = len,
	                     .range = !final && len ? range : NULL,
	                     .max_body = HTTP_ERROR_BODY_MAX};
	struct http_resp resp = {0};
	r = http_send(c, &q, &resp, reterr);
	long want = final ? 201 : 202;
	if (r >= 0 && resp.status != want)
		r = http_status_error(c, &q, &resp, reterr);
	else if (r >= 0 && final)
		r = check_digest_header(c, p->what, &resp, p->dgst, reterr);
	else if (r >= 0 && !final) {
		char *next = NULL;
		char tmp[129];
		snprintf(range, sizeof(range), "0-%" PRIu64, off + len - 1);
		if (resp.range[0] && strcmp(resp.range, range) != 0)
			r = err_set(
				reterr, -EPROTO,
				"registry '%s': %s: after a chunk the upload has Range '%s', not "
				"'%s'",
				c->registry, p->what, sanitize(resp.range, 128, tmp), range);
		else if (resp.location[0] && (r = http_resolve(c, *location, resp.location, NULL,
		                                               p->what, &next, reterr)) >= 0) {
			free(*location);
			*location = next;
		}
	}
	http_resp_reset(&resp);
	return r;
}

static void cancel_session(remote_client *c, const char *location, const char *what)
{
	struct http_req q = {
		.method = "DELETE", .url = location, .what = what, .max_body = HTTP_ERROR_BODY_MAX};
	struct http_resp resp = {0};
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	unsigned saved = c->opts.max_attempts;
	c->opts.max_attempts = 1;
	(void)http_send(c, &q, &resp, &e);
	c->opts.max_attempts = saved;
	http_resp_reset(&resp);
}

/* The session's status: the bytes the registry holds (GET on the session: 204 + Range). */
static int upload_status(struct put_state *p, const char *scope, char **location,
                         uint64_t *ret_have, cairn_error **reterr)
{
	struct http_req q = {.method = "GET",
	                     .url = *location,
	                     .what = p->what,
	                     .scope = scope,
	                     .max_body = HTTP_ERROR_BODY_MAX};
	struct http_resp resp = {0};
	uint64_t a = 0, b = 0;
	char *next = NULL;
	int r = http_send(p->c, &q, &resp, reterr);
	if (r >= 0 && resp.status != 204 && resp.status != 200)
		r = http_status_error(p->c, &q, &resp, reterr);
	else if (r >= 0 && !resp.range[0])
		*ret_have = 0;
	else if (r >= 0 && (sscanf(resp.range, "%" SCNu64 "-%" SCNu64, &a, &b) != 2 || a != 0))
		r = err_set(reterr, -EPROTO, "registry '%s': %s: upload status Range '%.60s'",
		            p->c->registry, p->what, resp.range);
	else if (r >= 0)
		*ret_have = b == 0 ? 0 : b + 1; /* "0-0" is what an empty session reports */
	if (r >= 0 && resp.location[0] &&
	    (r = http_resolve(p->c, *location, resp.location, NULL, p->what, &next, reterr)) >= 0) {
		free(*location);
		*location = next;
	}
	http_resp_reset(&resp);
	return r;
}

/* Failures an upload survives: transport, 5xx, a Range or session the registry lost
 * (BLOB_UPLOAD_INVALID / BLOB_UPLOAD_UNKNOWN are 404s). */
static bool resumable(int r)
{
	return r == -ENOENT || r == -ECONNRESET || r == -ETIMEDOUT || r == -ECONNREFUSED ||
	       r == -EPROTO || r == -EIO;
}

/* After a failed request: wait, ask the session where it stands, and go on from there. Returns
 * 1 when the blob turned out committed (the final PUT's reply was lost). */
static int resume_point(struct put_state *p, const char *scope, char **location, unsigned failures,
                        uint64_t *ret_off)
{
	uint64_t have = 0;
	http_backoff(p->c, failures);
	_cleanup_(cairn_error_freep) cairn_error *se = NULL;
	int r = upload_status(p, scope, location, &have, &se);
	if (r == -ENOENT) {
		/* No session: it may have been committed by a PUT whose reply was lost. */
		uint64_t size = 0;
		if (p->verified &&
		    blob_head(p->c, p->repo, p->dgst, scope, p->what, &size, NULL) == 1 &&
		    size == p->size)
			return 1;
	}
	if (r < 0 || have > p->hashed || have > p->size) {
		/* The session is gone or broken (docker's registry cancels a session whose
		 * stored size disagrees with its state after a cut PATCH): start a new one. */
		_cleanup_free_ char *next = NULL;
		_cleanup_(cairn_error_freep) cairn_error *e = NULL;
		log_debug("registry '%s': %s: upload session unusable (%s), starting over",
		          p->c->registry, p->what, r < 0 ? cairn_error_message(se) : "bad Range");
		if (post_session(p->c, p->repo, p->dgst, NULL, scope, p->what, &next, &e) != 1)
			return -EPROTO;
		free(*location);
		*location = TAKE_PTR(next);
		have = 0;
	}
	log_debug("registry '%s': %s: upload resumes at %" PRIu64, p->c->registry, p->what, have);
	*ret_off = have;
	return 0;
}

static int upload(struct put_state *p, const char *scope, char **location, cairn_error **reterr)
{
	uint64_t chunk = p->c->opts.chunk_size, off = 0;
	unsigned failures = 0;
	for (;;) {
		_cleanup_(cairn_error_freep) cairn_error *e = NULL;
		bool mono = off == 0 && p->size <= chunk, final = mono || off == p->size;
		uint64_t n = mono                    ? p->size
		             : final                 ? 0
		             : p->size - off < chunk ? p->size - off
		                                     : chunk;
		int r = put_bytes(p, scope, location, off, n, final, &e);
		if (r >= 0 && final)
			return r;
		if (r >= 0) {
			off += n;
			continue;
		}
		int k = resumable(r) && ++failures < p->c->opts.max_attempts
		                ? resume_point(p, scope, location, failures, &off)
		                : -1;
		if (k == 1)
			return 1;
		if (k < 0) {
			if (reterr && !*reterr)
				*reterr = TAKE_PTR(e);
			return r;
		}
	}
}

int remote_blob_put(remote_client *c, const char *repo, const char *dgst, uint64_t size,
                    remote_read_fn fn, void *userdata, const char *from_repo, cairn_error **reterr)
{
	int r = check_args(c, repo, dgst, reterr);
	if (r < 0)
		return r;
	if (from_repo && (!remote_repo_valid(from_repo) || strcmp(from_repo, repo) == 0))
		from_repo = NULL;
	_cleanup_free_ char *what = blob_what(repo, dgst);
	_cleanup_free_ char *scope = NULL;
	_cleanup_(hasher_freep) hasher *h = hasher_new();
	if (!what || !h ||
	    (from_repo ? asprintf(&scope, "repository:%s:pull,push repository:%s:pull", repo,
	                          from_repo)
	               : asprintf(&scope, "repository:%s:pull,push", repo)) < 0)
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	if (size == 0 && strcmp(dgst, EMPTY_SHA256) != 0)
		return err_set(reterr, CAIRN_EDIGEST,
		               "registry '%s': %s: 0 bytes do not hash to it", c->registry, what);
	uint64_t have = 0;
	r = blob_head(c, repo, dgst, scope, what, &have, reterr);
	if (r < 0)
		return r;
	if (r == 1 && have == size)
		return 0;
	_cleanup_free_ char *location = NULL;
	r = post_session(c, repo, dgst, from_repo, scope, what, &location, reterr);
	if (r <= 0)
		return r;
	struct put_state p = {.c = c,
	                      .repo = repo,
	                      .what = what,
	                      .dgst = dgst,
	                      .fn = fn,
	                      .ud = userdata,
	                      .h = h,
	                      .size = size,
	                      .verified = size == 0};
	r = upload(&p, scope, &location, reterr);
	if (r < 0) {
		cancel_session(c, location, what);
		return r;
	}
	return 1;
}

static ssize_t fd_read(void *ud, void *buf, size_t len, uint64_t off, cairn_error **reterr)
{
	int fd = *(int *)ud;
	for (;;) {
		ssize_t k = pread(fd, buf, len, (off_t)off);
		if (k >= 0)
			return k;
		if (errno != EINTR)
			return err_errno(reterr, -errno, "read the blob to upload at %" PRIu64,
			                 off);
	}
}

int remote_blob_put_fd(remote_client *c, const char *repo, const char *dgst, uint64_t size, int fd,
                       const char *from_repo, cairn_error **reterr)
{
	return remote_blob_put(c, repo, dgst, size, fd_read, &fd, from_repo, reterr);
}
