/* SPDX-License-Identifier: MIT */
/*
 * One HTTP exchange with a registry, with auth, retries and hostile-reply checks. The curl easy
 * handle is reset before every request (curl keeps its live connections across a reset, so
 * keep-alive survives) and every option is set afresh, so no state leaks between requests.
 */
#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "base/log.h"
#include "config.h"
#include "internal.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

char *sanitize(const char *s, size_t max, char *buf)
{
	size_t i = 0;
	for (; s && s[i] && i < max; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	buf[i] = 0;
	return buf;
}

static void apply_defaults(remote_options *o)
{
	if (!o->max_attempts)
		o->max_attempts = 5;
	if (!o->backoff_ms)
		o->backoff_ms = 250;
	if (!o->total_timeout_s)
		o->total_timeout_s = 120;
	if (!o->connect_timeout_s)
		o->connect_timeout_s = 15;
	if (!o->stall_timeout_s)
		o->stall_timeout_s = 60;
	if (!o->chunk_size)
		o->chunk_size = 32u * 1024 * 1024;
}

int remote_client_new(const char *registry, const remote_options *opts, remote_client **ret,
                      cairn_error **reterr)
{
	remote_ref probe;
	char tmp[REMOTE_HOST_MAX + 16];
	if (!registry || strlen(registry) > REMOTE_HOST_MAX)
		return err_set(reterr, -EINVAL, "registry name missing or too long");
	/* Validate the host with the reference grammar: "<host>/x" must parse to it. */
	snprintf(tmp, sizeof(tmp), "%s/x", registry);
	if (remote_ref_parse(tmp, &probe, NULL) < 0 || strcmp(probe.registry, registry) != 0)
		if (strcmp(registry, REMOTE_DOCKER_HUB) != 0)
			return err_set(reterr, -EINVAL, "invalid registry name '%.300s'", registry);
	pthread_once(&curl_once, curl_init);
	if (curl_init_result != CURLE_OK)
		return err_set(reterr, -EIO, "registry '%s': curl_global_init failed: %s", registry,
		               curl_easy_strerror(curl_init_result));
	_cleanup_(remote_client_freep) remote_client *c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", registry);
	if (opts)
		c->opts = *opts;
	c->opts.creds = NULL;
	apply_defaults(&c->opts);
	const char *host =
		strcmp(registry, REMOTE_DOCKER_HUB) == 0 ? REMOTE_DOCKER_HUB_HOST : registry;
	c->registry = strdup(registry);
	if (!c->registry ||
	    asprintf(&c->base, "%s://%s", c->opts.insecure ? "http" : "https", host) < 0) {
		c->base = NULL;
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", registry);
	}
	c->curl = curl_easy_init();
	if (!c->curl)
		return err_set(reterr, -ENOMEM, "registry '%s': curl_easy_init failed", registry);
	int r = auth_load_creds(c, opts ? opts->creds : NULL, reterr);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

remote_client *remote_client_free(remote_client *c)
{
	if (!c)
		return NULL;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	if (c->pass)
		explicit_bzero(c->pass, strlen(c->pass));
	if (c->token)
		explicit_bzero(c->token, strlen(c->token));
	free(c->registry);
	free(c->base);
	free(c->user);
	free(c->pass);
	free(c->realm);
	free(c->service);
	free(c->token);
	free(c->token_scope);
	free(c);
	return NULL;
}

const char *remote_client_registry(const remote_client *c)
{
	return c->registry;
}

char *url_for(remote_client *c, const char *repo, const char *kind, const char *ref)
{
	char *u = NULL;
	if (asprintf(&u, "%s/v2/%s/%s/%s", c->base, repo, kind, ref) < 0)
		return NULL;
	return u;
}

char *scope_for(const char *repo, bool push)
{
	char *s = NULL;
	if (asprintf(&s, "repository:%s:%s", repo, push ? "pull,push" : "pull") < 0)
		return NULL;
	return s;
}

void http_resp_reset(struct http_resp *r)
{
	free(r->body);
	*r = (struct http_resp){.content_length = -1};
}

/* State of one attempt, shared by the curl callbacks. */
struct xfer {
	remote_client *c;
	struct http_req *req;
	struct http_resp *resp;
	cairn_error *err; /* a sink's or source's error */
	int read_error;
	uint64_t sent;
};

static bool is_2xx(long s)
{
	return s >= 200 && s < 300;
}

static void set_header(struct http_resp *r, char *dst, size_t size, const char *name, const char *v,
                       size_t len)
{
	if (len >= size) {
		r->bad_header = name;
		return;
	}
	memcpy(dst, v, len);
	dst[len] = 0;
}

/* Of several challenges, keep Bearer over Basic over anything else. */
static int auth_rank(const char *v, size_t len)
{
	if (len >= 7 && strncasecmp(v, "Bearer ", 7) == 0)
		return 3;
	if (len >= 5 && strncasecmp(v, "Basic", 5) == 0)
		return 2;
	return len ? 1 : 0;
}

/* Record one header line; a status line starts a new response (redirects, 100 Continue). */
static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	struct http_resp *r = x->resp;
	size_t len = size * n;
	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		free(r->body);
		*r = (struct http_resp){.content_length = -1};
		const char *sp = memchr(buf, ' ', len);
		r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		return len;
	}
	const char *colon = memchr(buf, ':', len);
	if (!colon)
		return len;
	size_t nlen = (size_t)(colon - buf);
	const char *v = colon + 1, *end = buf + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && isspace((unsigned char)end[-1]))
		end--;
	size_t vlen = (size_t)(end - v);
#define IS(h) (nlen == strlen(h) && strncasecmp(buf, h, nlen) == 0)
	if (IS("content-type"))
		set_header(r, r->content_type, sizeof(r->content_type), "Content-Type", v, vlen);
	else if (IS("docker-content-digest"))
		set_header(r, r->docker_digest, sizeof(r->docker_digest), "Docker-Content-Digest",
		           v, vlen);
	else if (IS("location"))
		set_header(r, r->location, sizeof(r->location), "Location", v, vlen);
	else if (IS("range"))
		set_header(r, r->range, sizeof(r->range), "Range", v, vlen);
	else if (IS("content-range"))
		set_header(r, r->content_range, sizeof(r->content_range), "Content-Range", v, vlen);
	else if (IS("retry-after"))
		set_header(r, r->retry_after, sizeof(r->retry_after), "Retry-After", v, vlen);
	else if (IS("www-authenticate") &&
	         auth_rank(v, vlen) > auth_rank(r->www_auth, strlen(r->www_auth)))
		set_header(r, r->www_auth, sizeof(r->www_auth), "WWW-Authenticate", v, vlen);
	else if (IS("content-length")) {
		char tmp[32];
		char *e = NULL;
		snprintf(tmp, sizeof(tmp), "%.*s", (int)(vlen < 31 ? vlen : 31), v);
		errno = 0;
		unsigned long long cl = strtoull(tmp, &e, 10);
		if (vlen == 0 || vlen > 19 || *e || errno || !isdigit((unsigned char)tmp[0]))
			r->bad_header = "Content-Length";
		else
			r->content_length = (int64_t)cl;
	}
#undef IS
	/* An announced 2xx body over its cap is refused before a byte of it is read. */
	if (is_2xx(r->status) && !x->req->sink && x->req->max_body && r->content_length >= 0 &&
	    (uint64_t)r->content_length > x->req->max_body) {
		r->too_big = true;
		return 0;
	}
	return r->bad_header ? 0 : len;
}

static int buffer_append(struct http_resp *r, const char *buf, size_t len, size_t max)
{
	if (r->len + len > max)
		return -EFBIG;
	char *nb = realloc(r->body, r->len + len + 1);
	if (!nb)
		return -ENOMEM;
	memcpy(nb + r->len, buf, len);
	r->body = nb;
	r->len += len;
	r->body[r->len] = 0;
	return 0;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	struct http_resp *r = x->resp;
	size_t len = size * n;
	if (r->status >= 300 && r->status < 400)
		return len;
	if (!is_2xx(r->status)) {
		/* An error body: keep its head, drop the rest. */
		size_t room = HTTP_ERROR_BODY_MAX - r->len;
		if (room)
			(void)buffer_append(r, buf, len < room ? len : room, HTTP_ERROR_BODY_MAX);
		return len;
	}
	if (x->req->sink) {
		int k = x->req->sink(x->req->sink_ud, buf, len, &x->err);
		if (k < 0) {
			r->sink_error = k;
			return 0;
		}
		r->received += len;
		return len;
	}
	int k = buffer_append(r, buf, len, x->req->max_body ? x->req->max_body : SIZE_MAX / 2);
	if (k == -EFBIG)
		r->too_big = true;
	else if (k < 0)
		r->sink_error = k;
	if (k == 0)
		r->received += len;
	return k < 0 ? 0 : len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	struct http_req *q = x->req;
	uint64_t left = q->body_len - x->sent;
	size_t want = size * n;
	if (left == 0)
		return 0;
	if (want > left)
		want = (size_t)left;
	ssize_t k = q->read(q->read_ud, buf, want, q->body_off + x->sent, &x->err);
	if (k < 0) {
		x->read_error = (int)k;
		return CURL_READFUNC_ABORT;
	}
	if (k == 0) {
		x->read_error = -EPROTO;
		err_set(&x->err, -EPROTO, "the source ended %" PRIu64 " bytes short", left);
		return CURL_READFUNC_ABORT;
	}
	x->sent += (uint64_t)k;
	return (size_t)k;
}

/* curl rewinds the body when it resends on a fresh connection (a kept-alive one that died). */
static int on_seek(void *ud, curl_off_t offset, int origin)
{
	struct xfer *x = ud;
	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > x->req->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	x->sent = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* Whether @url is on the registry itself (credentials go nowhere else). */
static bool on_registry(remote_client *c, const char *url)
{
	size_t n = strlen(c->base);
	return strncmp(url, c->base, n) == 0 && (url[n] == '/' || url[n] == '?' || !url[n]);
}

static int setup(remote_client *c, struct http_req *q, struct xfer *x, struct curl_slist **hdrs)
{
	CURL *h = c->curl;
	curl_easy_reset(h);
	const char *protos = c->opts.insecure ? "http,https" : "https";
	curl_easy_setopt(h, CURLOPT_URL, q->url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, protos);
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, protos);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "cairn/" CAIRN_VERSION);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)c->opts.connect_timeout_s);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)c->opts.stall_timeout_s);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	if (q->follow) {
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
	}
	if (strcmp(q->method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	else if (strcmp(q->method, "GET") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
	if (q->has_body) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_len);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, x);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, x);
	}
	struct curl_slist *l = curl_slist_append(NULL, "Expect:");
	char line[HTTP_TOKEN_MAX + 64];
#define ADD(...)                                                                                   \
	do {                                                                                       \
		snprintf(line, sizeof(line), __VA_ARGS__);                                         \
		struct curl_slist *nl = l ? curl_slist_append(l, line) : NULL;                     \
		if (!nl)                                                                           \
			goto oom;                                                                  \
		l = nl;                                                                            \
	} while (0)
	if (q->accept)
		ADD("Accept: %s", q->accept);
	if (q->content_type)
		ADD("Content-Type: %s", q->content_type);
	if (q->range)
		ADD("%s: %s", q->has_body ? "Content-Range" : "Range", q->range);
	bool creds_here = q->no_auth || on_registry(c, q->url);
	if (!q->no_auth && creds_here && c->auth == AUTH_BEARER && c->token)
		ADD("Authorization: Bearer %s", c->token);
#undef ADD
	if (creds_here && c->user && (q->no_auth || c->auth == AUTH_BASIC)) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(h, CURLOPT_USERNAME, c->user);
		curl_easy_setopt(h, CURLOPT_PASSWORD, c->pass);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
	*hdrs = l;
	return 0;
oom:
	curl_slist_free_all(l);
	return -ENOMEM;
}

/* Transport failures worth another attempt: the connection dropped, stalled or was refused. */
static bool transient(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_FAIL_REWIND:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

static int transport_code(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_FAIL_REWIND:
		return -ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EPROTO;
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void http_backoff(remote_client *c, unsigned n)
{
	unsigned ms = c->opts.backoff_ms;
	while (--n && ms < 8000)
		ms *= 2;
	sleep_ms(ms > 8000 ? 8000 : ms);
}

/* The path part of @url, for messages ("GET /v2/x/blobs/..."). */
static const char *url_path(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? strchr(p + 3, '/') : NULL;
	return p ? p : url;
}

/* One attempt. Returns 0 (a reply of any status) or a negative code with x->cc set. */
static int attempt(remote_client *c, struct http_req *q, struct http_resp *resp, CURLcode *ret_cc,
                   cairn_error **reterr)
{
	struct xfer x = {.c = c, .req = q, .resp = resp};
	struct curl_slist *hdrs = NULL;
	http_resp_reset(resp);
	c->errbuf[0] = 0;
	if (setup(c, q, &x, &hdrs) < 0)
		return err_set(reterr, -ENOMEM, "registry '%s': %s: out of memory", c->registry,
		               q->what);
	CURLcode cc = curl_easy_perform(c->curl);
	curl_slist_free_all(hdrs);
	*ret_cc = cc;
	long conns = 0;
	curl_easy_getinfo(c->curl, CURLINFO_NUM_CONNECTS, &conns);
	log_debug("registry '%s': %s %s: status %ld, curl %d, %ld new connection(s)", c->registry,
	          q->method, url_path(q->url), resp->status, (int)cc, conns);
	char cm[256];
	if (x.err || x.read_error || resp->sink_error) {
		int code = x.read_error ? x.read_error : resp->sink_error;
		if (x.err && reterr && !*reterr) {
			*reterr = TAKE_PTR(x.err);
			return err_prefix(reterr, "registry '%s': %s", c->registry, q->what);
		}
		cairn_error_free(x.err);
		return err_set(reterr, code ? code : -EIO, "registry '%s': %s: %s", c->registry,
		               q->what, cairn_strerror(code ? code : -EIO));
	}
	if (resp->too_big)
		return err_set(reterr, -EFBIG,
		               "registry '%s': %s: reply larger than the %zu-byte limit",
		               c->registry, q->what, q->max_body);
	if (resp->bad_header)
		return err_set(reterr, -EPROTO,
		               "registry '%s': %s: malformed or oversized %s header", c->registry,
		               q->what, resp->bad_header);
	if (cc != CURLE_OK)
		return err_set(
			reterr, transport_code(cc), "registry '%s': %s: %s %s: %s", c->registry,
			q->what, q->method, url_path(q->url),
			sanitize(c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc), 200, cm));
	return 0;
}

static unsigned retry_after_ms(const struct http_resp *r, unsigned backoff)
{
	char *e = NULL;
	long s = r->retry_after[0] ? strtol(r->retry_after, &e, 10) : -1;
	if (s < 0 || (e && *e))
		return backoff;
	if (s > 10)
		s = 10;
	return (unsigned)s * 1000 > backoff ? (unsigned)s * 1000 : backoff;
}

/* Hand the last attempt's error on, saying how many attempts there were. */
static int finish(int r, cairn_error **e, unsigned n, cairn_error **reterr)
{
	if (r < 0 && *e && n > 1)
		return err_set(reterr, r, "%s (after %u attempts)", cairn_error_message(*e), n);
	if (r < 0 && *e && reterr && !*reterr)
		*reterr = TAKE_PTR(*e);
	return r;
}

int http_send(remote_client *c, struct http_req *q, struct http_resp *resp, cairn_error **reterr)
{
	double start = now_s();
	unsigned backoff = c->opts.backoff_ms;
	bool authed = false;
	int r = auth_ensure(c, q, reterr);
	if (r < 0)
		return r;
	for (unsigned n = 1;; n++) {
		_cleanup_(cairn_error_freep) cairn_error *e = NULL;
		CURLcode cc = CURLE_OK;
		if (q->before && (r = q->before(q->before_ud, q, reterr)) < 0)
			return r;
		r = attempt(c, q, resp, &cc, &e);
		bool retry = q->once ? false
		             : r < 0 ? transient(cc) && !resp->sink_error
		                     : resp->status >= 500 || resp->status == 429;
		if (r == 0 && resp->status == 401 && !q->no_auth && !authed && resp->www_auth[0]) {
			authed = true;
			r = auth_challenge(c, q, resp->www_auth, reterr);
			if (r < 0)
				return r;
			n--;
			continue;
		}
		unsigned wait = r == 0 ? retry_after_ms(resp, backoff) : backoff;
		if (!retry || n >= c->opts.max_attempts ||
		    now_s() - start + wait / 1000.0 > (double)c->opts.total_timeout_s)
			return finish(r, &e, n, reterr);
		log_debug("registry '%s': %s: attempt %u failed (%s), retrying in %u ms",
		          c->registry, q->what, n, r < 0 ? cairn_error_message(e) : "server error",
		          wait);
		sleep_ms(wait);
		backoff = backoff * 2 > 8000 ? 8000 : backoff * 2;
	}
}

char *http_error_detail(const struct http_resp *resp, const char **ret_code)
{
	char buf[1024], tmp[301], tmp2[65];
	size_t used = 0;
	buf[0] = 0;
	if (ret_code)
		*ret_code = NULL;
	if (!resp->body || resp->len == 0)
		return strdup("no details");
	json_error_t jerr;
	json_t *root = json_loadb(resp->body, resp->len, 0, &jerr);
	json_t *errs = root ? json_object_get(root, "errors") : NULL;
	if (!json_is_array(errs)) {
		json_decref(root);
		char *s = NULL;
		if (asprintf(&s, "HTML/non-JSON reply (Content-Type '%s')",
		             sanitize(resp->content_type, 100, tmp)) < 0)
			return NULL;
		return s;
	}
	size_t i;
	json_t *it;
	static __thread char code_buf[64];
	json_array_foreach(errs, i, it)
	{
		const char *code = json_string_value(json_object_get(it, "code"));
		const char *msg = json_string_value(json_object_get(it, "message"));
		if (i == 0 && code && ret_code) {
			sanitize(code, sizeof(code_buf) - 1, code_buf);
			*ret_code = code_buf;
		}
		if (used < sizeof(buf) - 1)
			used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s: %s",
			                         i ? "; " : "",
			                         sanitize(code ? code : "?", 64, tmp2),
			                         sanitize(msg ? msg : "", 300, tmp));
		if (used >= sizeof(buf) - 1 || i >= 4)
			break;
	}
	json_decref(root);
	return strdup(used ? buf : "empty error list");
}

int http_status_error(remote_client *c, const struct http_req *req, const struct http_resp *resp,
                      cairn_error **reterr)
{
	const char *code = NULL;
	_cleanup_free_ char *detail = http_error_detail(resp, &code);
	long s = resp->status;
	int r = -EIO;
	const char *what = "failed";
	if (s == 404) {
		r = -ENOENT;
		what = "not found";
	} else if (s == 401) {
		r = -EACCES;
		what = "authentication required or refused";
	} else if (s == 403) {
		r = -EACCES;
		what = "access denied";
	} else if (s == 416) {
		r = -EPROTO;
		what = "range not satisfiable";
	} else if (s == 429 || s >= 500) {
		what = "server error, retries exhausted";
	} else if (s < 200 || s >= 300) {
		what = "request refused";
	} else {
		r = -EPROTO;
		what = "unexpected status";
	}
	if (code && strcmp(code, "DIGEST_INVALID") == 0)
		r = CAIRN_EDIGEST;
	else if (code &&
	         (strcmp(code, "BLOB_UNKNOWN") == 0 || strcmp(code, "MANIFEST_BLOB_UNKNOWN") == 0 ||
	          strcmp(code, "MANIFEST_UNKNOWN") == 0 || strcmp(code, "NAME_UNKNOWN") == 0))
		r = -ENOENT;
	if (!resp->body || !resp->len)
		return err_set(reterr, r, "registry '%s': %s: %s (status %ld)", c->registry,
		               req->what, what, s);
	return err_set(reterr, r, "registry '%s': %s: %s (status %ld): %s", c->registry, req->what,
	               what, s, detail ? detail : "out of memory");
}

int http_resolve(remote_client *c, const char *base, const char *location, const char *query,
                 const char *what, char **ret, cairn_error **reterr)
{
	char tmp[301];
	if (!location || !*location)
		return err_set(reterr, -EPROTO,
		               "registry '%s': %s: reply without a Location header", c->registry,
		               what);
	CURLU *u = curl_url();
	char *out = NULL, *scheme = NULL;
	int r = -EPROTO;
	if (!u || curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
	    curl_url_set(u, CURLUPART_URL, location, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
		goto out;
	if (strcmp(scheme, "https") != 0 && !(c->opts.insecure && strcmp(scheme, "http") == 0))
		goto out;
	if (query && curl_url_set(u, CURLUPART_QUERY, query, CURLU_APPENDQUERY | CURLU_URLENCODE) !=
	                     CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
		goto out;
	*ret = strdup(out);
	r = *ret ? 0 : -ENOMEM;
out:
	curl_free(scheme);
	curl_free(out);
	curl_url_cleanup(u);
	if (r < 0)
		return err_set(reterr, r, "registry '%s': %s: unusable Location '%s'", c->registry,
		               what, sanitize(location, 300, tmp));
	return 0;
}
