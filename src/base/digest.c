/* SPDX-License-Identifier: MIT */
#include <openssl/evp.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"

struct hasher {
	EVP_MD_CTX *ctx;
	uint64_t total;
};

static const char hexchars[] = "0123456789abcdef";

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int parse(const char *s, digest *ret)
{
	if (strncmp(s, "sha256:", 7) != 0)
		return -1;
	const char *hex = s + 7;
	uint8_t raw[32];
	for (size_t i = 0; i < 32; i++) {
		int hi = hexval(hex[2 * i]), lo = hi < 0 ? -1 : hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		raw[i] = (uint8_t)(hi << 4 | lo);
	}
	if (hex[DIGEST_HEX_LEN] != '\0')
		return -1;
	if (ret)
		digest_from_raw(raw, ret);
	return 0;
}

bool digest_valid(const char *s)
{
	return s && parse(s, NULL) == 0;
}

int digest_parse(const char *s, digest *ret, cairn_error **reterr)
{
	if (!s)
		return err_set(reterr, CAIRN_EDIGEST, "invalid digest: none given");
	if (parse(s, ret) == 0)
		return 0;
	const char *why = "expected sha256:<64 lowercase hex digits>";
	if (strncmp(s, "sha384:", 7) == 0 || strncmp(s, "sha512:", 7) == 0)
		why = "only sha256 is supported";
	else if (!strchr(s, ':'))
		why = "missing algorithm";
	return err_set(reterr, CAIRN_EDIGEST, "invalid digest '%.80s%s': %s", s,
	               strlen(s) > 80 ? "..." : "", why);
}

void digest_from_raw(const uint8_t raw[32], digest *ret)
{
	memcpy(ret->raw, raw, 32);
	memcpy(ret->str, "sha256:", 7);
	for (size_t i = 0; i < 32; i++) {
		ret->str[7 + 2 * i] = hexchars[raw[i] >> 4];
		ret->str[7 + 2 * i + 1] = hexchars[raw[i] & 15];
	}
	ret->str[DIGEST_STR_LEN] = '\0';
}

hasher *hasher_new(void)
{
	hasher *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
		return hasher_free(h);
	return h;
}

hasher *hasher_free(hasher *h)
{
	if (h) {
		EVP_MD_CTX_free(h->ctx);
		free(h);
	}
	return NULL;
}

void hasher_update(hasher *h, const void *buf, size_t len)
{
	EVP_DigestUpdate(h->ctx, buf, len);
	h->total += len;
}

void hasher_reset(hasher *h)
{
	EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
	h->total = 0;
}

uint64_t hasher_total(const hasher *h)
{
	return h->total;
}

void hasher_peek(const hasher *h, digest *ret)
{
	uint8_t raw[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	EVP_MD_CTX *copy = EVP_MD_CTX_new();
	/* Finalising a copy keeps @h open for more data (resumable ingests need that). */
	if (copy && EVP_MD_CTX_copy_ex(copy, h->ctx) == 1 &&
	    EVP_DigestFinal_ex(copy, raw, &len) == 1)
		digest_from_raw(raw, ret);
	else
		memset(ret, 0, sizeof(*ret));
	EVP_MD_CTX_free(copy);
}

void digest_buffer(const void *buf, size_t len, digest *ret)
{
	uint8_t raw[32];
	EVP_Digest(buf, len, raw, NULL, EVP_sha256(), NULL);
	digest_from_raw(raw, ret);
}

int digest_fd(int fd, const char *what, digest *ret, uint64_t *ret_size, cairn_error **reterr)
{
	_cleanup_(hasher_freep) hasher *h = hasher_new();
	if (!h)
		return err_set(reterr, -ENOMEM, "hash '%s': out of memory", what);
	static __thread uint8_t buf[1 << 17];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_errno(reterr, -errno, "read '%s'", what);
		if (n == 0)
			break;
		hasher_update(h, buf, (size_t)n);
	}
	hasher_peek(h, ret);
	if (ret_size)
		*ret_size = hasher_total(h);
	return 0;
}
