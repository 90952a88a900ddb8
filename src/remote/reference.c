/* SPDX-License-Identifier: MIT */
/* References: the grammar of distribution's reference package, written out by hand. */
#include <ctype.h>
#include <string.h>

#include "registry.h"

static bool alnum_lower(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

/* One path component of @len bytes at @p: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*. */
static bool component_valid(const char *p, size_t len)
{
	size_t i = 0;
	if (len == 0 || !alnum_lower(p[0]))
		return false;
	while (i < len) {
		while (i < len && alnum_lower(p[i]))
			i++;
		if (i == len)
			return true;
		size_t sep = i;
		if (p[i] == '.')
			i++;
		else if (p[i] == '_')
			i += (i + 1 < len && p[i + 1] == '_') ? 2 : 1;
		else if (p[i] == '-')
			while (i < len && p[i] == '-')
				i++;
		else
			return false;
		if (i == sep || i == len || !alnum_lower(p[i]))
			return false;
	}
	return true;
}

bool remote_repo_valid(const char *repo)
{
	size_t n = strlen(repo);
	if (n == 0 || n > REMOTE_REPO_MAX)
		return false;
	for (const char *p = repo;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (!component_valid(p, len))
			return false;
		if (!slash)
			return true;
		p = slash + 1;
	}
}

static bool word_char(char ch)
{
	return isascii((unsigned char)ch) && (isalnum((unsigned char)ch) || ch == '_');
}

bool remote_tag_valid(const char *tag)
{
	size_t n = strlen(tag);
	if (n == 0 || n > REMOTE_TAG_MAX || !word_char(tag[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!word_char(tag[i]) && tag[i] != '.' && tag[i] != '-')
			return false;
	return true;
}

/* A host label: [A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?. */
static bool label_valid(const char *p, size_t len)
{
	if (len == 0 || len > 63 || !isalnum((unsigned char)p[0]) ||
	    !isalnum((unsigned char)p[len - 1]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isascii((unsigned char)p[i]) || (!isalnum((unsigned char)p[i]) && p[i] != '-'))
			return false;
	return true;
}

/* host[:port], where host is dotted labels or a bracketed IPv6 address. */
static bool host_valid(const char *h, size_t len)
{
	if (len == 0 || len > REMOTE_HOST_MAX)
		return false;
	const char *end = h + len, *port = NULL;
	if (h[0] == '[') {
		const char *close = memchr(h, ']', len);
		if (!close || close == h + 1)
			return false;
		for (const char *p = h + 1; p < close; p++)
			if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
				return false;
		if (close + 1 != end && close[1] != ':')
			return false;
		port = close + 1 < end ? close + 1 : NULL;
	} else {
		const char *colon = memchr(h, ':', len);
		size_t hlen = colon ? (size_t)(colon - h) : len;
		for (const char *p = h; p < h + hlen;) {
			const char *dot = memchr(p, '.', (size_t)(h + hlen - p));
			size_t l = dot ? (size_t)(dot - p) : (size_t)(h + hlen - p);
			if (!label_valid(p, l))
				return false;
			p += l + (dot ? 1 : 0);
			if (dot && p == h + hlen)
				return false;
		}
		port = colon;
	}
	if (port) {
		size_t plen = (size_t)(end - port - 1);
		if (plen == 0 || plen > 5)
			return false;
		for (const char *p = port + 1; p < end; p++)
			if (!isdigit((unsigned char)*p))
				return false;
	}
	return true;
}

static bool looks_like_host(const char *p, size_t len)
{
	return memchr(p, '.', len) || memchr(p, ':', len) || memchr(p, '[', len) ||
	       (len == 9 && memcmp(p, "localhost", 9) == 0);
}

/* Split "NAME[:TAG]" at the tag colon (one after the last '/'). */
static int split_tag(const char *s, char *name, size_t name_max, char *tag, cairn_error **reterr)
{
	const char *slash = strrchr(s, '/');
	const char *colon = strrchr(slash ? slash : s, ':');
	size_t nlen = colon ? (size_t)(colon - s) : strlen(s);
	if (nlen > name_max)
		return err_set(reterr, -EINVAL, "reference '%.300s': name longer than %zu bytes", s,
		               name_max);
	memcpy(name, s, nlen);
	name[nlen] = 0;
	tag[0] = 0;
	if (colon) {
		if (!remote_tag_valid(colon + 1))
			return err_set(reterr, -EINVAL,
			               "reference '%.300s': invalid tag '%.200s' (want "
			               "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})",
			               s, colon + 1);
		strcpy(tag, colon + 1);
	}
	return 0;
}

static int split_registry(const char *ref, const char *name, remote_ref *r, cairn_error **reterr)
{
	const char *slash = strchr(name, '/');
	const char *repo = name;
	if (slash && looks_like_host(name, (size_t)(slash - name))) {
		size_t hlen = (size_t)(slash - name);
		if (!host_valid(name, hlen))
			return err_set(reterr, -EINVAL,
			               "reference '%.300s': invalid registry '%.*s'", ref,
			               (int)(hlen > 300 ? 300 : hlen), name);
		memcpy(r->registry, name, hlen);
		r->registry[hlen] = 0;
		repo = slash + 1;
	} else {
		strcpy(r->registry, REMOTE_DOCKER_HUB);
	}
	if (strcmp(r->registry, "index.docker.io") == 0)
		strcpy(r->registry, REMOTE_DOCKER_HUB);
	bool hub = strcmp(r->registry, REMOTE_DOCKER_HUB) == 0;
	int n = snprintf(r->repo, sizeof(r->repo), "%s%s",
	                 hub && !strchr(repo, '/') ? "library/" : "", repo);
	if (n < 0 || (size_t)n >= sizeof(r->repo) || !remote_repo_valid(r->repo))
		return err_set(
			reterr, -EINVAL,
			"reference '%.300s': invalid repository name '%.300s' (lowercase "
			"[a-z0-9] components joined by '.', '_', '__' or '-', split by '/', at "
			"most %d bytes)",
			ref, repo, REMOTE_REPO_MAX);
	return 0;
}

int remote_ref_parse(const char *s, remote_ref *ret, cairn_error **reterr)
{
	remote_ref r = {0};
	char name[REMOTE_HOST_MAX + REMOTE_REPO_MAX + 2];
	if (!s || !*s)
		return err_set(reterr, -EINVAL, "empty reference");
	size_t slen = strlen(s);
	if (slen > sizeof(name) + REMOTE_TAG_MAX + DIGEST_STR_LEN + 2)
		return err_set(reterr, -EINVAL, "reference '%.80s...': longer than %zu bytes", s,
		               sizeof(name) + REMOTE_TAG_MAX + DIGEST_STR_LEN + 2);
	_cleanup_free_ char *copy = strdup(s);
	if (!copy)
		return err_set(reterr, -ENOMEM, "reference: out of memory");
	char *at = strchr(copy, '@');
	if (at) {
		*at = 0;
		digest d;
		int k = digest_parse(at + 1, &d, reterr);
		if (k < 0)
			return err_prefix(reterr, "reference '%.300s'", s);
		strcpy(r.digest, d.str);
	}
	int k = split_tag(copy, name, sizeof(name) - 1, r.tag, reterr);
	if (k < 0)
		return k;
	k = split_registry(s, name, &r, reterr);
	if (k < 0)
		return k;
	*ret = r;
	return 0;
}

const char *remote_ref_reference(const remote_ref *r)
{
	if (r->digest[0])
		return r->digest;
	return r->tag[0] ? r->tag : "latest";
}
