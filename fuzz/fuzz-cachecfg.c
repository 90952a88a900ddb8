/* SPDX-License-Identifier: MIT */
/*
 * The cache config a registry hands cache import (src/remote/cachecfg.h): parsed whole and fed
 * in pieces (the split point taken from the input), both must agree; what parses must dump
 * back to bytes that parse to the same records.
 */
#include <stdlib.h>
#include <string.h>

#include "remote/cachecfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_same(const struct cachecfg *a, const struct cachecfg *b)
{
	if (a->n != b->n)
		__builtin_trap();
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->recs[i].blob_chain_id.str, b->recs[i].blob_chain_id.str) != 0 ||
		    a->recs[i].parent != b->recs[i].parent || a->recs[i].parent >= (int64_t)i ||
		    strcmp(a->recs[i].description, b->recs[i].description) != 0 ||
		    a->recs[i].n_tags != b->recs[i].n_tags)
			__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cachecfg whole, pieces;
	cairn_error *e = NULL;
	int r1 = cachecfg_parse(&whole, "fuzz", data, size, &e);
	if (r1 < 0 && (!e || !cairn_error_message(e)[0]))
		__builtin_trap();
	cairn_error_free(e);
	e = NULL;
	size_t cut = size ? data[0] % (size + 1) : 0;
	cachecfg_init(&pieces, "fuzz");
	int r2 = cachecfg_feed(&pieces, data, cut, NULL);
	if (r2 >= 0)
		r2 = cachecfg_feed(&pieces, data + cut, size - cut, NULL);
	if (r2 >= 0)
		r2 = cachecfg_finish(&pieces, NULL);
	if ((r1 < 0) != (r2 < 0))
		__builtin_trap();
	if (r1 >= 0) {
		check_same(&whole, &pieces);
		char *buf = NULL;
		size_t len = 0;
		struct cachecfg again;
		if (cachecfg_dump(&whole, &buf, &len, NULL) < 0 ||
		    cachecfg_parse(&again, "again", buf, len, NULL) < 0)
			__builtin_trap();
		check_same(&whole, &again);
		cachecfg_clear(&again);
		free(buf);
	}
	cachecfg_clear(&whole);
	cachecfg_clear(&pieces);
	return 0;
}
