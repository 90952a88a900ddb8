/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "base/digest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = strndup((const char *)data, size);
	if (!s)
		return 0;
	digest d;
	cairn_error *e = NULL;
	if (digest_parse(s, &d, &e) == 0) {
		/* A digest that parses formats back to exactly its input. */
		if (strcmp(d.str, s) != 0 || !digest_valid(s))
			__builtin_trap();
	} else if (!e || cairn_error_code(e) != CAIRN_EDIGEST || digest_valid(s)) {
		__builtin_trap();
	}
	cairn_error_free(e);
	free(s);
	return 0;
}
