/* SPDX-License-Identifier: MIT */
/*
 * Authentication: the WWW-Authenticate challenge (RFC 7235 auth-params), Docker's token flow
 * (GET realm?service=S&scope=A&scope=B, optionally with basic credentials, answering
 * {"token": ...} or {"access_token": ...}), basic auth, and credentials from --creds or the
 * docker config file.
 */
#include <ctype.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "base/log.h"
#include "internal.h"

#define CONFIG_MAX (4u * 1024 * 1024)

/* Read an auth-param value at *@p: a quoted-string (with \ escapes) or a token. */
static bool param_value(const char **p, char *out, size_t size)
{
	const char *s = *p;
	size_t n = 0;
	if (*s == '"') {
		for (s++; *s && *s != '"'; s++) {
			if (*s == '\\' && s[1])
				s++;
			if (n + 1 >= size)
				return false;
			out[n++] = *s;
		}
		if (*s != '"')
			return false;
		s++;
	} else {
		for (; *s && *s != ',' && *s != ' ' && *s != '\t'; s++) {
			if (n + 1 >= size)
				return false;
			out[n++] = *s;
		}
	}
	out[n] = 0;
	*p = s;
	return true;
}

bool auth_parse_challenge(const char *h, struct challenge *ch)
{
	*ch = (struct challenge){0};
	while (*h == ' ')
		h++;
	if (strncasecmp(h, "Basic", 5) == 0 && (!h[5] || h[5] == ' ')) {
		ch->kind = AUTH_BASIC;
		return true;
	}
	if (strncasecmp(h, "Bearer", 6) != 0 || h[6] != ' ')
		return false;
	ch->kind = AUTH_BEARER;
	for (const char *p = h + 7; *p;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		const char *eq = strchr(p, '=');
		if (!*p || !eq)
			break;
		char name[32], val[2048];
		size_t nlen = (size_t)(eq - p);
		if (nlen == 0 || nlen >= sizeof(name))
			return false;
		memcpy(name, p, nlen);
		name[nlen] = 0;
		p = eq + 1;
		if (!param_value(&p, val, sizeof(val)))
			return false;
		if (strcasecmp(name, "realm") == 0)
			snprintf(ch->realm, sizeof(ch->realm), "%s", val);
		else if (strcasecmp(name, "service") == 0 && strlen(val) < sizeof(ch->service))
			snprintf(ch->service, sizeof(ch->service), "%s", val);
	}
	return ch->realm[0] != 0;
}

static bool token_valid(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > HTTP_TOKEN_MAX)
		return false;
	for (; *t; t++)
		if (*t <= 0x20 || *t >= 0x7f)
			return false;
	return true;
}

/* Append "&name=<escaped value>" to *@url. */
static int append_param(CURL *h, char **url, const char *name, const char *value)
{
	char *esc = curl_easy_escape(h, value, 0);
	char *n = NULL;
	if (!esc)
		return -ENOMEM;
	int k = asprintf(&n, "%s%s%s=%s", *url, strchr(*url, '?') ? "&" : "?", name, esc);
	curl_free(esc);
	if (k < 0)
		return -ENOMEM;
	free(*url);
	*url = n;
	return 0;
}

static int token_url(remote_client *c, const char *scope, char **ret)
{
	_cleanup_free_ char *url = strdup(c->realm);
	if (!url)
		return -ENOMEM;
	if (c->service && c->service[0] && append_param(c->curl, &url, "service", c->service) < 0)
		return -ENOMEM;
	_cleanup_free_ char *copy = scope ? strdup(scope) : NULL;
	char *save = NULL;
	for (char *s = copy ? strtok_r(copy, " ", &save) : NULL; s; s = strtok_r(NULL, " ", &save))
		if (append_param(c->curl, &url, "scope", s) < 0)
			return -ENOMEM;
	*ret = TAKE_PTR(url);
	return 0;
}

static int parse_token(remote_client *c, const struct http_resp *resp, const char *what, char **ret,
                       cairn_error **reterr)
{
	json_error_t jerr;
	json_t *root = json_loadb(resp->body ? resp->body : "", resp->len, 0, &jerr);
	const char *t = json_string_value(json_object_get(root, "token"));
	if (!t || !*t)
		t = json_string_value(json_object_get(root, "access_token"));
	if (!root || !t || !token_valid(t)) {
		json_decref(root);
		char ct[101];
		return err_set(reterr, -EPROTO,
		               "registry '%s': %s: token server '%s' sent %s (Content-Type '%s')",
		               c->registry, what, c->realm,
		               root ? "no usable token" : "an HTML/non-JSON reply",
		               sanitize(resp->content_type, 100, ct));
	}
	*ret = strdup(t);
	json_decref(root);
	return *ret ? 0 : -ENOMEM;
}

/* Get a token for @scope from the known realm. */
static int fetch_token(remote_client *c, const char *scope, const char *what, cairn_error **reterr)
{
	_cleanup_free_ char *url = NULL;
	if (token_url(c, scope, &url) < 0)
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	struct http_req q = {.method = "GET",
	                     .url = url,
	                     .what = what,
	                     .no_auth = true,
	                     .follow = true,
	                     .max_body = HTTP_TOKEN_BODY_MAX};
	struct http_resp resp = {0};
	int r = http_send(c, &q, &resp, reterr);
	if (r >= 0 && resp.status != 200) {
		char tmp[301];
		_cleanup_free_ char *detail = http_error_detail(&resp, NULL);
		r = err_set(reterr, resp.status == 401 || resp.status == 403 ? -EACCES : -EIO,
		            "registry '%s': %s: token server '%s' refused %s (status %ld): %s",
		            c->registry, what, sanitize(c->realm, 300, tmp),
		            c->user ? "the credentials" : "anonymous access", resp.status,
		            detail ? detail : "");
	}
	_cleanup_free_ char *tok = NULL;
	if (r >= 0)
		r = parse_token(c, &resp, what, &tok, reterr);
	http_resp_reset(&resp);
	if (r < 0)
		return r;
	_cleanup_free_ char *sc = strdup(scope ? scope : "");
	if (!sc)
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	free(c->token);
	free(c->token_scope);
	c->token = TAKE_PTR(tok);
	c->token_scope = TAKE_PTR(sc);
	return 0;
}

int auth_challenge(remote_client *c, const struct http_req *req, const char *www_auth,
                   cairn_error **reterr)
{
	struct challenge ch;
	char tmp[301];
	if (!auth_parse_challenge(www_auth, &ch))
		return err_set(reterr, -EPROTO, "registry '%s': %s: unusable WWW-Authenticate '%s'",
		               c->registry, req->what, sanitize(www_auth, 300, tmp));
	if (ch.kind == AUTH_BASIC) {
		if (!c->user)
			return err_set(reterr, -EACCES,
			               "registry '%s': %s: authentication required (basic) and no "
			               "credentials given (--creds or docker config)",
			               c->registry, req->what);
		if (c->auth == AUTH_BASIC)
			return 0; /* sent already: the caller sees the 401 */
		c->auth = AUTH_BASIC;
		return 0;
	}
	bool https = strncmp(ch.realm, "https://", 8) == 0;
	if (!https && !(c->opts.insecure && strncmp(ch.realm, "http://", 7) == 0))
		return err_set(reterr, -EPROTO,
		               "registry '%s': %s: token realm '%s' is not an https URL",
		               c->registry, req->what, sanitize(ch.realm, 300, tmp));
	char *realm = strdup(ch.realm), *service = strdup(ch.service);
	if (!realm || !service) {
		free(realm);
		free(service);
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	}
	free(c->realm);
	free(c->service);
	c->realm = realm;
	c->service = service;
	c->auth = AUTH_BEARER;
	return fetch_token(c, req->scope, req->what, reterr);
}

int auth_ensure(remote_client *c, const struct http_req *req, cairn_error **reterr)
{
	if (req->no_auth || c->auth != AUTH_BEARER || !c->realm)
		return 0;
	const char *want = req->scope ? req->scope : "";
	if (c->token && c->token_scope && strcmp(c->token_scope, want) == 0)
		return 0;
	return fetch_token(c, req->scope, req->what, reterr);
}

static int b64val(int ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Decode standard base64 (padding optional) into a new NUL-terminated string. */
static char *b64decode(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(n / 4 * 3 + 4);
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '=')
			break;
		int v = b64val((unsigned char)s[i]);
		if (v < 0) {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[o] = 0;
	if (memchr(out, 0, o)) {
		free(out);
		return NULL;
	}
	return out;
}

static int set_userpass(remote_client *c, const char *up, const char *from, cairn_error **reterr)
{
	const char *colon = strchr(up, ':');
	if (!colon || colon == up)
		return err_set(reterr, -EINVAL,
		               "registry '%s': credentials from %s are not USER:PASS", c->registry,
		               from);
	c->user = strndup(up, (size_t)(colon - up));
	c->pass = strdup(colon + 1);
	if (!c->user || !c->pass)
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	return 0;
}

/* Whether docker config key @key names @registry ("host", "https://host/v1/", ...). */
static bool key_matches(const char *key, const char *registry)
{
	const char *k = key;
	if (strncmp(k, "https://", 8) == 0)
		k += 8;
	else if (strncmp(k, "http://", 7) == 0)
		k += 7;
	size_t n = strcspn(k, "/");
	if (strlen(registry) == n && strncmp(k, registry, n) == 0)
		return true;
	if (strcmp(registry, REMOTE_DOCKER_HUB) == 0)
		return (n == 15 && strncmp(k, "index.docker.io", 15) == 0) ||
		       (n == 20 && strncmp(k, "registry-1.docker.io", 20) == 0);
	return false;
}

static int creds_from_entry(remote_client *c, json_t *e, const char *path, cairn_error **reterr)
{
	const char *auth = json_string_value(json_object_get(e, "auth"));
	if (auth && *auth) {
		_cleanup_free_ char *up = b64decode(auth);
		if (!up)
			return err_set(reterr, -EINVAL,
			               "docker config '%s': the auth of '%s' is not valid base64",
			               path, c->registry);
		int r = set_userpass(c, up, path, reterr);
		explicit_bzero(up, strlen(up));
		return r;
	}
	const char *u = json_string_value(json_object_get(e, "username"));
	const char *p = json_string_value(json_object_get(e, "password"));
	if (u && p && *u) {
		c->user = strdup(u);
		c->pass = strdup(p);
		if (!c->user || !c->pass)
			return err_set(reterr, -ENOMEM, "registry '%s': out of memory",
			               c->registry);
	}
	return 0;
}

/* Read all of @path (an ordinary path; at most CONFIG_MAX bytes, else -EFBIG). */
static int read_small(const char *path, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	_cleanup_free_ char *buf = malloc(CONFIG_MAX + 1);
	size_t n = 0;
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t k = read(fd, buf + n, CONFIG_MAX + 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		n += (size_t)k;
		if (n > CONFIG_MAX)
			return -EFBIG;
	}
	*ret = TAKE_PTR(buf);
	*ret_len = n;
	return 0;
}

static int creds_from_config(remote_client *c, cairn_error **reterr)
{
	_cleanup_free_ char *path = NULL;
	const char *dir = getenv("DOCKER_CONFIG"), *home = getenv("HOME");
	if (dir && *dir) {
		if (asprintf(&path, "%s/config.json", dir) < 0)
			path = NULL;
	} else if (home && *home) {
		if (asprintf(&path, "%s/.docker/config.json", home) < 0)
			path = NULL;
	} else {
		return 0;
	}
	if (!path)
		return err_set(reterr, -ENOMEM, "registry '%s': out of memory", c->registry);
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	int r = read_small(path, &data, &len);
	if (r == -ENOENT || r == -ENOTDIR)
		return 0;
	if (r < 0)
		return err_errno(reterr, r, "docker config '%s'", path);
	json_error_t jerr;
	json_t *root = json_loadb(data, len, 0, &jerr);
	if (!json_is_object(root)) {
		json_decref(root);
		return err_set(reterr, -EINVAL,
		               "docker config '%s': not a JSON object (line %d: %s)", path,
		               jerr.line, jerr.text);
	}
	json_t *auths = json_object_get(root, "auths");
	const char *key;
	json_t *val;
	r = 0;
	json_object_foreach(auths, key, val)
	{
		if (key_matches(key, c->registry)) {
			r = creds_from_entry(c, val, path, reterr);
			break;
		}
	}
	json_decref(root);
	if (r >= 0 && c->user)
		log_debug("registry '%s': credentials from '%s'", c->registry, path);
	return r;
}

int auth_load_creds(remote_client *c, const char *creds, cairn_error **reterr)
{
	if (creds)
		return set_userpass(c, creds, "--creds", reterr);
	return creds_from_config(c, reterr);
}
