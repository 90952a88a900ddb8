/* SPDX-License-Identifier: MIT */
/* Manifests: GET (capped, verified, JSON-checked) and PUT. */
#include <string.h>

#include <jansson.h>

#include "internal.h"

static const char *const default_accept[] = {REMOTE_MT_OCI_MANIFEST, REMOTE_MT_OCI_INDEX,
                                             REMOTE_MT_DOCKER_MANIFEST, REMOTE_MT_DOCKER_LIST,
                                             NULL};

remote_manifest *remote_manifest_free(remote_manifest *m)
{
	if (m) {
		free(m->body);
		free(m);
	}
	return NULL;
}

/* A media type: type "/" subtype, token characters only (no parameters, no CR/LF). */
static bool media_type_valid(const char *s)
{
	size_t n = strlen(s);
	const char *slash = strchr(s, '/');
	if (n == 0 || n >= sizeof(((remote_manifest *)0)->media_type) || !slash || slash == s ||
	    !slash[1] || strchr(slash + 1, '/'))
		return false;
	for (; *s; s++)
		if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') &&
		    !(*s >= '0' && *s <= '9') && !strchr("/.+-_", *s))
			return false;
	return true;
}

static int check_ref(remote_client *c, const char *repo, const char *reference,
                     cairn_error **reterr)
{
	char tmp[301];
	if (!c || !repo || !reference)
		return err_set(reterr, -EINVAL, "registry client: missing argument");
	if (!remote_repo_valid(repo))
		return err_set(reterr, -EINVAL, "registry '%s': invalid repository name '%s'",
		               c->registry, sanitize(repo, 300, tmp));
	if (strchr(reference, ':') ? !digest_valid(reference) : !remote_tag_valid(reference))
		return err_set(reterr, -EINVAL,
		               "registry '%s': invalid tag or digest '%s' for repository '%s'",
		               c->registry, sanitize(reference, 300, tmp), repo);
	return 0;
}

static char *join_accept(const char *const *accept)
{
	size_t n = 1;
	for (const char *const *a = accept; *a; a++)
		n += strlen(*a) + 2;
	char *s = calloc(1, n);
	for (const char *const *a = accept; s && *a; a++) {
		if (!media_type_valid(*a)) {
			free(s);
			return NULL;
		}
		if (a != accept)
			strcat(s, ", ");
		strcat(s, *a);
	}
	return s;
}

/* The body must be a JSON object; the media type comes from Content-Type or the body. */
static int check_body(remote_client *c, const char *what, const struct http_resp *resp,
                      remote_manifest *m, cairn_error **reterr)
{
	char ct[256], tmp[101], tmp2[101];
	snprintf(ct, sizeof(ct), "%.*s", (int)strcspn(resp->content_type, "; "),
	         resp->content_type);
	json_error_t jerr;
	json_t *root = json_loadb(m->body, m->len, 0, &jerr);
	if (!json_is_object(root)) {
		json_decref(root);
		return err_set(reterr, -EPROTO,
		               "registry '%s': %s: HTML/non-JSON reply (status %ld, Content-Type "
		               "'%s')%s",
		               c->registry, what, resp->status, sanitize(ct, 100, tmp),
		               root ? ": not a JSON object" : "");
	}
	const char *mt = ct;
	const char *body_mt = json_string_value(json_object_get(root, "mediaType"));
	bool generic =
		!ct[0] || strcmp(ct, "application/json") == 0 || strcmp(ct, "text/plain") == 0;
	if (generic && body_mt)
		mt = body_mt;
	else if (body_mt && strcmp(body_mt, ct) != 0) {
		/* One document read as two types is how manifest confusion attacks start. */
		int r = err_set(reterr, -EPROTO,
		                "registry '%s': %s: Content-Type '%s' but the manifest says "
		                "mediaType '%s'",
		                c->registry, what, sanitize(ct, 100, tmp),
		                sanitize(body_mt, 100, tmp2));
		json_decref(root);
		return r;
	}
	if (mt[0] && !media_type_valid(mt)) {
		json_decref(root);
		return err_set(reterr, -EPROTO, "registry '%s': %s: invalid media type '%s'",
		               c->registry, what, sanitize(mt, 100, tmp));
	}
	snprintf(m->media_type, sizeof(m->media_type), "%s", mt);
	json_decref(root);
	return 0;
}

static int check_manifest_digest(remote_client *c, const char *what, const char *reference,
                                 const struct http_resp *resp, remote_manifest *m,
                                 cairn_error **reterr)
{
	digest d;
	char tmp[129];
	digest_buffer(m->body, m->len, &d);
	strcpy(m->digest, d.str);
	if (strchr(reference, ':') && strcmp(reference, d.str) != 0)
		return err_set(reterr, CAIRN_EDIGEST,
		               "registry '%s': %s: the manifest received hashes to '%s'",
		               c->registry, what, d.str);
	if (strncmp(resp->docker_digest, "sha256:", 7) == 0 &&
	    strcmp(resp->docker_digest, d.str) != 0)
		return err_set(reterr, CAIRN_EDIGEST,
		               "registry '%s': %s: Docker-Content-Digest '%s' but the manifest "
		               "received hashes to '%s'",
		               c->registry, what, sanitize(resp->docker_digest, 128, tmp), d.str);
	return 0;
}

int remote_manifest_get(remote_client *c, const char *repo, const char *reference,
                        const char *const *accept, remote_manifest **ret, cairn_error **reterr)
{
	int r = check_ref(c, repo, reference, reterr);
	if (r < 0)
		return r;
	_cleanup_free_ char *what = NULL, *scope = scope_for(repo, false);
	_cleanup_free_ char *url = url_for(c, repo, "manifests", reference);
	_cleanup_free_ char *acc = join_accept(accept ? accept : default_accept);
	if (asprintf(&what, "manifest '%s' in '%s'", reference, repo) < 0)
		what = NULL;
	if (!what || !scope || !url)
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	if (!acc)
		return err_set(reterr, -EINVAL, "registry '%s': %s: invalid Accept media type",
		               c->registry, what);
	struct http_req q = {.method = "GET",
	                     .url = url,
	                     .what = what,
	                     .scope = scope,
	                     .accept = acc,
	                     .follow = true,
	                     .max_body = REMOTE_MANIFEST_MAX};
	struct http_resp resp = {0};
	r = http_send(c, &q, &resp, reterr);
	if (r >= 0 && resp.status != 200)
		r = http_status_error(c, &q, &resp, reterr);
	_cleanup_(remote_manifest_freep) remote_manifest *m = NULL;
	if (r >= 0 && !(m = calloc(1, sizeof(*m))))
		r = err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	if (r >= 0) {
		m->body = resp.body ? resp.body : strdup("");
		m->len = resp.len;
		resp.body = NULL;
		if (!m->body)
			r = err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	}
	if (r >= 0)
		r = check_body(c, what, &resp, m, reterr);
	if (r >= 0)
		r = check_manifest_digest(c, what, reference, &resp, m, reterr);
	http_resp_reset(&resp);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(m);
	return 0;
}

struct membuf {
	const void *p;
	size_t len;
};

static ssize_t mem_read(void *ud, void *buf, size_t len, uint64_t off, cairn_error **reterr)
{
	struct membuf *b = ud;
	if (off >= b->len)
		return 0;
	size_t n = b->len - (size_t)off < len ? b->len - (size_t)off : len;
	memcpy(buf, (const char *)b->p + off, n);
	return (ssize_t)n;
}

int remote_manifest_put(remote_client *c, const char *repo, const char *reference,
                        const char *media_type, const void *body, size_t len, digest *ret_digest,
                        cairn_error **reterr)
{
	int r = check_ref(c, repo, reference, reterr);
	if (r < 0)
		return r;
	_cleanup_free_ char *what = NULL, *scope = scope_for(repo, true);
	_cleanup_free_ char *url = url_for(c, repo, "manifests", reference);
	if (asprintf(&what, "manifest '%s' in '%s'", reference, repo) < 0)
		what = NULL;
	if (!what || !scope || !url)
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	if (!media_type || !media_type_valid(media_type))
		return err_set(reterr, -EINVAL, "registry '%s': %s: invalid media type",
		               c->registry, what);
	if (len > REMOTE_MANIFEST_MAX)
		return err_set(reterr, -EFBIG,
		               "registry '%s': %s: %zu bytes, over the %u-byte limit", c->registry,
		               what, len, REMOTE_MANIFEST_MAX);
	digest d;
	digest_buffer(body, len, &d);
	if (strchr(reference, ':') && strcmp(reference, d.str) != 0)
		return err_set(reterr, CAIRN_EDIGEST,
		               "registry '%s': %s: the manifest hashes to '%s'", c->registry, what,
		               d.str);
	struct membuf mb = {body, len};
	struct http_req q = {.method = "PUT",
	                     .url = url,
	                     .what = what,
	                     .scope = scope,
	                     .content_type = media_type,
	                     .has_body = true,
	                     .read = mem_read,
	                     .read_ud = &mb,
	                     .body_len = len,
	                     .max_body = HTTP_ERROR_BODY_MAX};
	struct http_resp resp = {0};
	r = http_send(c, &q, &resp, reterr);
	if (r >= 0 && resp.status != 201)
		r = http_status_error(c, &q, &resp, reterr);
	char tmp[129];
	if (r >= 0 && strncmp(resp.docker_digest, "sha256:", 7) == 0 &&
	    strcmp(resp.docker_digest, d.str) != 0)
		r = err_set(reterr, CAIRN_EDIGEST,
		            "registry '%s': %s: stored as '%s' but the manifest hashes to '%s'",
		            c->registry, what, sanitize(resp.docker_digest, 128, tmp), d.str);
	http_resp_reset(&resp);
	if (r >= 0 && ret_digest)
		*ret_digest = d;
	return r < 0 ? r : 0;
}

int remote_ping(remote_client *c, cairn_error **reterr)
{
	_cleanup_free_ char *url = NULL;
	if (asprintf(&url, "%s/v2/", c->base) < 0)
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	struct http_req q = {.method = "GET",
	                     .url = url,
	                     .what = "API version check (/v2/)",
	                     .max_body = HTTP_ERROR_BODY_MAX};
	struct http_resp resp = {0};
	int r = http_send(c, &q, &resp, reterr);
	if (r >= 0 && resp.status == 404)
		r = err_set(reterr, -EPROTO,
		            "registry '%s': %s: no registry API there (status 404, not a v2 "
		            "registry)",
		            c->registry, q.what);
	else if (r >= 0 && resp.status != 200)
		r = http_status_error(c, &q, &resp, reterr);
	http_resp_reset(&resp);
	return r < 0 ? r : 0;
}
