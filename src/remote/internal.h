/* SPDX-License-Identifier: MIT */
/* Shared between the files of src/remote/: the client, one HTTP exchange, auth. */
#pragma once

#include <curl/curl.h>

#include "registry.h"

/* Caps on what a registry may send where we buffer it. */
#define HTTP_ERROR_BODY_MAX (64u * 1024)
#define HTTP_TOKEN_BODY_MAX (1u * 1024 * 1024)
#define HTTP_LOCATION_MAX   8192
#define HTTP_AUTH_HDR_MAX   8192
#define HTTP_TOKEN_MAX      (64u * 1024)

enum auth_kind { AUTH_NONE, AUTH_BASIC, AUTH_BEARER };

struct remote_client {
	char *registry; /* as given */
	char *base;     /* "https://host[:port]" */
	char *user, *pass;
	remote_options opts; /* defaults applied */
	CURL *curl;
	enum auth_kind auth;
	char *realm, *service; /* the last Bearer challenge */
	char *token, *token_scope;
	char errbuf[CURL_ERROR_SIZE];
};

/* A request. Strings are borrowed for the call. */
struct http_req {
	const char *method; /* GET, HEAD, PUT, POST, PATCH, DELETE */
	const char *url;    /* absolute */
	const char *what;   /* the object, for messages: "blob 'sha256:..' in 'repo'" */
	const char *scope;  /* token scopes, space-separated; NULL: none */
	const char *accept; /* Accept header value, or NULL */
	const char *content_type;
	const char *range; /* "bytes=N-" for GET, "A-B" (Content-Range) for PATCH; or NULL */
	bool follow;       /* follow redirects (GET and HEAD only) */
	bool no_auth;      /* the token request itself: only basic credentials, no challenges */
	bool once;         /* no retries (uploads resume through the session status instead) */
	/* Request body: @body_len bytes read with @read from offset @body_off. */
	remote_read_fn read;
	void *read_ud;
	uint64_t body_off, body_len;
	bool has_body;
	/* Response body for 2xx: streamed to @sink when set, else buffered up to @max_body (over
	 * it: -EFBIG). */
	remote_write_fn sink;
	void *sink_ud;
	size_t max_body;
	/* Called before every attempt (retries, re-auth) to adjust the request, e.g. Range. */
	int (*before)(void *ud, struct http_req *req, cairn_error **reterr);
	void *before_ud;
};

struct http_resp {
	long status;
	char *body; /* buffered body (2xx without sink, or an error body up to 64 KiB), NUL-ended */
	size_t len;
	int64_t content_length; /* -1 when absent */
	char content_type[256];
	char docker_digest[128];
	char location[HTTP_LOCATION_MAX];
	char range[128];
	char content_range[128];
	char www_auth[HTTP_AUTH_HDR_MAX];
	char retry_after[32];
	const char *bad_header; /* a header that was over its buffer */
	bool too_big;           /* the 2xx body was over max_body */
	int sink_error;         /* the sink's negative return, 0 when none */
	uint64_t received;      /* 2xx body bytes passed on in this attempt */
};

void http_resp_reset(struct http_resp *r);

/*
 * http_send() - perform @req with authentication (a 401 is answered once per call: a Bearer
 * challenge gets a token for @req->scope, a Basic one uses the credentials), retries with
 * backoff on 5xx, 429 and dropped connections, and redirects when @req->follow. Returns 0 with
 * *@resp filled, whatever the final status; negative for a transport failure after the retries,
 * a sink or source error, an over-cap body, a bad header, a failed token request.
 * *@resp is reset first and must be freed with http_resp_reset() in every case.
 */
int http_send(remote_client *c, struct http_req *req, struct http_resp *resp, cairn_error **reterr);

/*
 * http_status_error() - turn a non-success reply into an error naming the registry and
 * @req->what: -ENOENT for 404, -EACCES for 401/403, CAIRN_EDIGEST for a DIGEST_INVALID error
 * code, -EPROTO for 416, -EIO otherwise; the detail is the distribution error JSON when the
 * body is JSON, else "HTML/non-JSON reply".
 */
int http_status_error(remote_client *c, const struct http_req *req, const struct http_resp *resp,
                      cairn_error **reterr);

/* http_error_detail() - a printable summary of an error body (never NULL; the caller frees). */
char *http_error_detail(const struct http_resp *resp, const char **ret_code);

/* http_resolve() - resolve @location against @base, allowing only https (and http when the
 * client is insecure), and append "&@query" (URL-encoded value) when @query is non-NULL.
 * *@ret is the caller's. Errors: -EPROTO naming the registry and @what. */
int http_resolve(remote_client *c, const char *base, const char *location, const char *query,
                 const char *what, char **ret, cairn_error **reterr);

/* http_backoff() - sleep before retry number @n (1-based) of the client's schedule. */
void http_backoff(remote_client *c, unsigned n);

/* sanitize() - copy at most @max bytes of @s into @buf (size @max + 1), with control bytes and
 * non-ASCII replaced by '?'. Returns @buf. */
char *sanitize(const char *s, size_t max, char *buf);

/* A parsed WWW-Authenticate challenge. */
struct challenge {
	enum auth_kind kind;
	char realm[2048];
	char service[512];
};

/* auth_parse_challenge() - parse the first challenge of @h when it is Basic, or Bearer with a
 * realm (quoted-string values with \ escapes, or tokens); false for anything else, or values
 * over their buffers. */
bool auth_parse_challenge(const char *h, struct challenge *ch);

/* auth_challenge() - react to a 401 carrying @www_auth for @req: get a token (Bearer) or turn
 * on basic credentials. Errors: -EACCES when there are no usable credentials or the token
 * server refuses; -EPROTO for a malformed challenge or token reply. */
int auth_challenge(remote_client *c, const struct http_req *req, const char *www_auth,
                   cairn_error **reterr);

/* auth_ensure() - before a request with @scope: fetch a token for it when a Bearer challenge is
 * known and the cached token has another scope. */
int auth_ensure(remote_client *c, const struct http_req *req, cairn_error **reterr);

/* auth_load_creds() - fill c->user/c->pass from @creds or the docker config. */
int auth_load_creds(remote_client *c, const char *creds, cairn_error **reterr);

/* The scope strings for @repo: pull or pull,push. *@ret is the caller's. */
char *scope_for(const char *repo, bool push);

/* url_for() - "<base>/v2/<repo>/<kind>/<ref>" (kind "blobs", "manifests", "blobs/uploads"). */
char *url_for(remote_client *c, const char *repo, const char *kind, const char *ref);
