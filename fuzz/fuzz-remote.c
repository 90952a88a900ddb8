/* SPDX-License-Identifier: MIT */
/*
 * What a registry or a user hands the registry client as text: references, WWW-Authenticate
 * challenges, distribution error bodies.
 */
#include <string.h>

#include "remote/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_ref(const char *s)
{
	remote_ref r;
	cairn_error *e = NULL;
	if (remote_ref_parse(s, &r, &e) == 0) {
		/* What parses is valid by the same grammar, and NUL-terminated in its buffers. */
		if (!remote_repo_valid(r.repo) || (r.tag[0] && !remote_tag_valid(r.tag)) ||
		    (r.digest[0] && !digest_valid(r.digest)) || !r.registry[0] || e)
			__builtin_trap();
	} else if (!e || cairn_error_message(e)[0] == 0) {
		__builtin_trap();
	}
	cairn_error_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = strndup((const char *)data, size);
	if (!s)
		return 0;
	check_ref(s);
	struct challenge ch;
	if (auth_parse_challenge(s, &ch) && ch.kind == AUTH_BEARER &&
	    strnlen(ch.realm, sizeof(ch.realm)) == sizeof(ch.realm))
		__builtin_trap();
	struct http_resp resp = {.status = 404, .body = s, .len = strlen(s)};
	const char *code = NULL;
	char *detail = http_error_detail(&resp, &code);
	if (detail)
		for (const char *p = detail; *p; p++)
			if (*p < 0x20 || *p == 0x7f)
				__builtin_trap(); /* a reply's control bytes never reach a message
				                   */
	free(detail);
	free(s);
	return 0;
}
