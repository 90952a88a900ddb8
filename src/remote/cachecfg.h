/* SPDX-License-Identifier: MIT */
/*
 * The cache config: the blob a cache manifest's `config` names (CAIRN_CACHE_CONFIG_MEDIA_TYPE),
 * describing records, parents first. JSON Lines, so that it is written and read one record at a
 * time whatever its size:
 *
 *   {"cairn":"cache","records":N,"version":1}
 *   {"blob":"sha256:..","blob_chain_id":"sha256:..","chain_id":"sha256:..","created":NS,
 *    "description":"..","diff_id":"sha256:..","mediaType":"..","parent":-1,"size":N,
 *    "tags":["..",..]}
 *   ... N record lines, each ending in '\n'
 *
 * Keys are sorted, JSON compact (no newline inside a line). `parent` is the index of an earlier
 * record or -1: a record can only name a parent before it, so there are no cycles. The chain ids
 * are what cairn_cache_get_by_blob() computes (spec §4) and are checked on reading.
 *
 * Reading treats the blob as hostile: the whole is capped at CACHECFG_MAX, a line at
 * CACHECFG_LINE_MAX, the record count at CACHECFG_RECORDS_MAX (and must match the header); JSON
 * is parsed one line at a time with duplicate keys rejected; every digest goes through
 * digest_parse(); sizes are positive; media types are layer types cairn knows; tags follow
 * cairn's tag rule. Memory: the parsed records (their strings), never the whole text.
 * Messages name @what and the line: "cache config 'R/REPO@sha256:..': line 3: parent 7 is not
 * an earlier record". Errors: CAIRN_ECORRUPT for any of that; CAIRN_EDIGEST for a malformed
 * digest or a chain id that does not match; -EFBIG over a cap; -ENOMEM.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/digest.h"
#include "base/error.h"

#define CACHECFG_MAX         (1ull << 30)
#define CACHECFG_LINE_MAX    (16u << 20)
#define CACHECFG_RECORDS_MAX (16u << 20)
#define CACHECFG_TAGS_MAX    1024

/* One record. Strings owned. */
struct cachecfg_record {
	digest chain_id, blob_chain_id, diff_id, blob;
	int64_t size;
	char *media_type;
	int64_t parent; /* index of an earlier record, or -1 */
	char *description;
	int64_t created; /* ns since the epoch */
	char **tags;
	size_t n_tags;
};

struct cachecfg {
	struct cachecfg_record *recs;
	size_t n, cap;
	/* reading state */
	size_t expect; /* from the header */
	bool have_header;
	char *line;
	size_t line_len, line_cap;
	uint64_t total;
	size_t lineno;
	const char *what; /* borrowed */
};

/* cachecfg_init() - an empty config; @what (borrowed) names it in messages. */
void cachecfg_init(struct cachecfg *cfg, const char *what);
/* cachecfg_clear() - free everything of @cfg (zeroed afterwards). */
void cachecfg_clear(struct cachecfg *cfg);

/* cachecfg_feed() - the next @len bytes of the blob; complete lines are parsed and checked. */
int cachecfg_feed(struct cachecfg *cfg, const void *buf, size_t len, cairn_error **reterr);
/* cachecfg_finish() - the blob ended: the last line must be complete, the count the header's. */
int cachecfg_finish(struct cachecfg *cfg, cairn_error **reterr);
/* cachecfg_parse() - init, feed @len bytes and finish. Clear *@cfg whatever it returns. */
int cachecfg_parse(struct cachecfg *cfg, const char *what, const void *buf, size_t len,
                   cairn_error **reterr);

/* cachecfg_chain() - the chain ids of a layer (@diff_id, @blob) on a parent with chain ids
 * @parent_chain, @parent_blob_chain (both NULL: a base layer), as spec §4 computes them. */
void cachecfg_chain(const char *parent_chain, const char *parent_blob_chain, const digest *diff_id,
                    const digest *blob, digest *ret_chain, digest *ret_blob_chain);

/*
 * cachecfg_add() - append a copy of @r to @cfg (strings copied; the parent must be -1 or an
 * earlier index). Errors: -EINVAL for a bad parent; -ENOMEM.
 */
int cachecfg_add(struct cachecfg *cfg, const struct cachecfg_record *r, cairn_error **reterr);

/* cachecfg_dump() - the blob of @cfg into *@ret (caller frees; NUL-terminated after *@ret_len
 * bytes). Errors: -ENOMEM. */
int cachecfg_dump(const struct cachecfg *cfg, char **ret, size_t *ret_len, cairn_error **reterr);

/*
 * cachecfg_export() - the cache config cairn_cache_export() would push for the chains of @refs
 * (ids, prefixes or tags), built without a registry: each chain root first, every record once,
 * parents before children; layer blobs a record lacks are made as the export makes them. *@ret
 * (caller frees, NUL-terminated after *@ret_len bytes). @remote only names the config in
 * messages. Errors: cairn_cache_export()'s, less the registry's. Locking: as cairn_cache_export().
 */
struct cairn_cache;
struct cairn_remote_options;
int cachecfg_export(struct cairn_cache *c, const char *const *refs, size_t n_refs,
                    const char *remote, const struct cairn_remote_options *opts, char **ret,
                    size_t *ret_len, cairn_error **reterr);
