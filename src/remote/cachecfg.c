/* SPDX-License-Identifier: MIT */
/* The cache config (see cachecfg.h): written and read one JSON line per record. */
#include <inttypes.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "cachecfg.h"
#include "image/image.h"
#include "layer/compress.h"

#define HEADER_TAG     "cache"
#define HEADER_VERSION 1
/* Sizes are JSON integers; beyond 2^53 readers in other languages lose precision. */
#define SIZE_MAX_JSON (1ll << 53)

void cachecfg_init(struct cachecfg *cfg, const char *what)
{
	*cfg = (struct cachecfg){.what = what};
}

static void record_clear(struct cachecfg_record *r)
{
	free(r->media_type);
	free(r->description);
	for (size_t i = 0; i < r->n_tags; i++)
		free(r->tags[i]);
	free(r->tags);
	*r = (struct cachecfg_record){0};
}

void cachecfg_clear(struct cachecfg *cfg)
{
	for (size_t i = 0; i < cfg->n; i++)
		record_clear(&cfg->recs[i]);
	free(cfg->recs);
	free(cfg->line);
	*cfg = (struct cachecfg){0};
}

/* H(a, b) of spec §4: sha256 of "a b" (the same as src/cache computes). */
static void chain_hash(const char *a, const char *b, digest *ret)
{
	char buf[2 * (DIGEST_STR_LEN + 1) + 1];
	int n = snprintf(buf, sizeof(buf), "%s %s", a, b);
	digest_buffer(buf, n > 0 && (size_t)n < sizeof(buf) ? (size_t)n : strlen(buf), ret);
}

void cachecfg_chain(const char *parent_chain, const char *parent_blob_chain, const digest *diff_id,
                    const digest *blob, digest *ret_chain, digest *ret_blob_chain)
{
	digest t;
	chain_hash(blob->str, diff_id->str, &t);
	if (parent_chain && parent_blob_chain) {
		chain_hash(parent_chain, diff_id->str, ret_chain);
		chain_hash(parent_blob_chain, t.str, ret_blob_chain);
	} else {
		*ret_chain = *diff_id;
		*ret_blob_chain = t;
	}
}

static int grow(struct cachecfg *cfg, cairn_error **reterr)
{
	if (cfg->n < cfg->cap)
		return 0;
	size_t cap = cfg->cap ? 2 * cfg->cap : 16;
	struct cachecfg_record *nr = realloc(cfg->recs, cap * sizeof(*nr));
	if (!nr)
		return err_set(reterr, -ENOMEM, "cache config '%s': out of memory", cfg->what);
	cfg->recs = nr;
	cfg->cap = cap;
	return 0;
}

int cachecfg_add(struct cachecfg *cfg, const struct cachecfg_record *r, cairn_error **reterr)
{
	if (r->parent < -1 || r->parent >= (int64_t)cfg->n)
		return err_set(reterr, -EINVAL, "cache config: parent %" PRId64 " of record %zu",
		               r->parent, cfg->n);
	int rc = grow(cfg, reterr);
	if (rc < 0)
		return rc;
	struct cachecfg_record c = *r;
	c.media_type = strdup(r->media_type);
	c.description = strdup(r->description ? r->description : "");
	c.tags = calloc(r->n_tags ? r->n_tags : 1, sizeof(char *));
	bool ok = c.media_type && c.description && c.tags;
	for (size_t i = 0; ok && i < r->n_tags; i++)
		ok = (c.tags[i] = strdup(r->tags[i])) != NULL;
	if (!ok) {
		c.n_tags = r->n_tags;
		record_clear(&c);
		return err_set(reterr, -ENOMEM, "cache config: out of memory");
	}
	cfg->recs[cfg->n++] = c;
	return 0;
}

/* ---- writing ---- */

static json_t *record_json(const struct cachecfg_record *r)
{
	json_t *tags = json_array();
	for (size_t i = 0; tags && i < r->n_tags; i++)
		if (json_array_append_new(tags, json_string(r->tags[i])) < 0) {
			json_decref(tags);
			return NULL;
		}
	if (!tags)
		return NULL;
	return json_pack("{ss ss ss sI ss ss ss sI sI so}", "blob", r->blob.str, "blob_chain_id",
	                 r->blob_chain_id.str, "chain_id", r->chain_id.str, "created",
	                 (json_int_t)r->created, "description", r->description, "diff_id",
	                 r->diff_id.str, "mediaType", r->media_type, "parent",
	                 (json_int_t)r->parent, "size", (json_int_t)r->size, "tags", tags);
}

struct strbuf {
	char *p;
	size_t len, cap;
};

static int append_json(struct strbuf *b, json_t *doc)
{
	char *s = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(doc);
	if (!s)
		return -ENOMEM;
	size_t n = strlen(s);
	if (b->len + n + 2 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (b->len + n + 2 > cap)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			free(s);
			return -ENOMEM;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len++] = '\n';
	b->p[b->len] = '\0';
	free(s);
	return 0;
}

int cachecfg_dump(const struct cachecfg *cfg, char **ret, size_t *ret_len, cairn_error **reterr)
{
	struct strbuf b = {0};
	int r = append_json(&b, json_pack("{ss sI si}", "cairn", HEADER_TAG, "records",
	                                  (json_int_t)cfg->n, "version", HEADER_VERSION));
	for (size_t i = 0; r >= 0 && i < cfg->n; i++)
		r = append_json(&b, record_json(&cfg->recs[i]));
	if (r < 0) {
		free(b.p);
		return err_set(reterr, -ENOMEM, "cache config: out of memory");
	}
	*ret = b.p;
	*ret_len = b.len;
	return 0;
}

/* ---- reading ---- */

static int bad(struct cachecfg *cfg, cairn_error **reterr, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int bad(struct cachecfg *cfg, cairn_error **reterr, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(reterr, code, "cache config '%s': line %zu: %s", cfg->what, cfg->lineno,
	               msg);
}

static int get_digest(struct cachecfg *cfg, json_t *o, const char *key, digest *ret,
                      cairn_error **reterr)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v))
		return bad(cfg, reterr, CAIRN_ECORRUPT, "'%s' is missing or not a string", key);
	if (digest_parse(json_string_value(v), ret, NULL) < 0)
		return bad(cfg, reterr, CAIRN_EDIGEST, "'%s' is not a sha256 digest", key);
	return 0;
}

static int get_int(struct cachecfg *cfg, json_t *o, const char *key, int64_t min, int64_t max,
                   int64_t *ret, cairn_error **reterr)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v))
		return bad(cfg, reterr, CAIRN_ECORRUPT, "'%s' is missing or not an integer", key);
	json_int_t i = json_integer_value(v);
	if (i < min || i > max)
		return bad(cfg, reterr, CAIRN_ECORRUPT, "'%s' %" PRId64 " is out of range", key,
		           (int64_t)i);
	*ret = (int64_t)i;
	return 0;
}

static int get_string(struct cachecfg *cfg, json_t *o, const char *key, char **ret,
                      cairn_error **reterr)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v))
		return bad(cfg, reterr, CAIRN_ECORRUPT, "'%s' is missing or not a string", key);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return bad(cfg, reterr, CAIRN_ECORRUPT, "'%s' holds a NUL byte", key);
	if (!(*ret = strdup(json_string_value(v))))
		return err_set(reterr, -ENOMEM, "cache config: out of memory");
	return 0;
}

static int get_tags(struct cachecfg *cfg, json_t *o, struct cachecfg_record *rec,
                    cairn_error **reterr)
{
	json_t *a = json_object_get(o, "tags");
	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > CACHECFG_TAGS_MAX)
		return bad(cfg, reterr, CAIRN_ECORRUPT,
		           "'tags' is not an array of at most %u names", CACHECFG_TAGS_MAX);
	size_t n = json_array_size(a);
	if (!(rec->tags = calloc(n ? n : 1, sizeof(char *))))
		return err_set(reterr, -ENOMEM, "cache config: out of memory");
	for (size_t i = 0; i < n; i++) {
		json_t *t = json_array_get(a, i);
		if (!json_is_string(t) || strlen(json_string_value(t)) != json_string_length(t) ||
		    !image_tag_valid(json_string_value(t)))
			return bad(cfg, reterr, CAIRN_ECORRUPT, "tags[%zu] is not a valid tag", i);
		if (!(rec->tags[i] = strdup(json_string_value(t))))
			return err_set(reterr, -ENOMEM, "cache config: out of memory");
		rec->n_tags = i + 1;
	}
	return 0;
}

/* The fields of one record line into @rec, checked against the records before it. */
static int record_fields(struct cachecfg *cfg, json_t *o, struct cachecfg_record *rec,
                         cairn_error **reterr)
{
	int r;
	layer_compression comp;
	if ((r = get_digest(cfg, o, "blob", &rec->blob, reterr)) < 0 ||
	    (r = get_digest(cfg, o, "diff_id", &rec->diff_id, reterr)) < 0 ||
	    (r = get_digest(cfg, o, "chain_id", &rec->chain_id, reterr)) < 0 ||
	    (r = get_digest(cfg, o, "blob_chain_id", &rec->blob_chain_id, reterr)) < 0 ||
	    (r = get_int(cfg, o, "size", 1, SIZE_MAX_JSON, &rec->size, reterr)) < 0 ||
	    (r = get_int(cfg, o, "parent", -1, (int64_t)cfg->n - 1, &rec->parent, reterr)) < 0 ||
	    (r = get_int(cfg, o, "created", 0, INT64_MAX, &rec->created, reterr)) < 0 ||
	    (r = get_string(cfg, o, "mediaType", &rec->media_type, reterr)) < 0 ||
	    (r = get_string(cfg, o, "description", &rec->description, reterr)) < 0 ||
	    (r = get_tags(cfg, o, rec, reterr)) < 0)
		return r;
	if (layer_media_type_parse(rec->media_type, &comp, NULL) < 0)
		return bad(cfg, reterr, CAIRN_ECORRUPT, "media type '%.100s' is not a layer type",
		           rec->media_type);
	const struct cachecfg_record *p = rec->parent >= 0 ? &cfg->recs[rec->parent] : NULL;
	digest chain, blob_chain;
	cachecfg_chain(p ? p->chain_id.str : NULL, p ? p->blob_chain_id.str : NULL, &rec->diff_id,
	               &rec->blob, &chain, &blob_chain);
	if (strcmp(chain.str, rec->chain_id.str) != 0 ||
	    strcmp(blob_chain.str, rec->blob_chain_id.str) != 0)
		return bad(cfg, reterr, CAIRN_EDIGEST,
		           "the chain ids of blob '%s' are not those its parent and diff id give",
		           rec->blob.str);
	return 0;
}

static int parse_header(struct cachecfg *cfg, json_t *o, cairn_error **reterr)
{
	json_t *tag = json_object_get(o, "cairn");
	if (!json_is_string(tag) || strcmp(json_string_value(tag), HEADER_TAG) != 0)
		return bad(cfg, reterr, CAIRN_ECORRUPT, "not a cairn cache config header");
	int64_t version, n;
	int r = get_int(cfg, o, "version", 0, INT32_MAX, &version, reterr);
	if (r < 0)
		return r;
	if (version != HEADER_VERSION)
		return bad(cfg, reterr, CAIRN_ECORRUPT, "version %" PRId64 " is not supported (%d)",
		           version, HEADER_VERSION);
	if ((r = get_int(cfg, o, "records", 0, INT64_MAX, &n, reterr)) < 0)
		return r;
	if (n > (int64_t)CACHECFG_RECORDS_MAX)
		return bad(cfg, reterr, -EFBIG, "%" PRId64 " records: more than %u", n,
		           CACHECFG_RECORDS_MAX);
	cfg->expect = (size_t)n;
	cfg->have_header = true;
	return 0;
}

static int parse_record(struct cachecfg *cfg, json_t *o, cairn_error **reterr)
{
	int r = grow(cfg, reterr);
	if (r < 0)
		return r;
	struct cachecfg_record rec = {0};
	if ((r = record_fields(cfg, o, &rec, reterr)) < 0) {
		record_clear(&rec);
		return r;
	}
	cfg->recs[cfg->n++] = rec;
	return 0;
}

static int parse_line(struct cachecfg *cfg, const char *buf, size_t len, cairn_error **reterr)
{
	cfg->lineno++;
	if (cfg->have_header && cfg->n >= cfg->expect)
		return bad(cfg, reterr, CAIRN_ECORRUPT, "more records than the %zu the header says",
		           cfg->expect);
	json_error_t je;
	json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	int r;
	if (!json_is_object(o))
		r = bad(cfg, reterr, CAIRN_ECORRUPT, "not a JSON object%s%s", o ? "" : ": ",
		        o ? "" : je.text);
	else if (!cfg->have_header)
		r = parse_header(cfg, o, reterr);
	else
		r = parse_record(cfg, o, reterr);
	json_decref(o);
	return r;
}

int cachecfg_feed(struct cachecfg *cfg, const void *buf, size_t len, cairn_error **reterr)
{
	const char *p = buf, *end = p + len;
	if (len > CACHECFG_MAX - cfg->total)
		return err_set(reterr, -EFBIG, "cache config '%s' is larger than %llu bytes",
		               cfg->what, (unsigned long long)CACHECFG_MAX);
	cfg->total += len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (cfg->line_len + n > CACHECFG_LINE_MAX)
			return bad(cfg, reterr, -EFBIG, "longer than %u bytes", CACHECFG_LINE_MAX);
		if (cfg->line_len + n + 1 > cfg->line_cap) {
			size_t cap = cfg->line_cap ? cfg->line_cap : 4096;
			while (cap < cfg->line_len + n + 1)
				cap *= 2;
			char *nb = realloc(cfg->line, cap);
			if (!nb)
				return err_set(reterr, -ENOMEM, "cache config: out of memory");
			cfg->line = nb;
			cfg->line_cap = cap;
		}
		memcpy(cfg->line + cfg->line_len, p, n);
		cfg->line_len += n;
		p += n;
		if (!nl)
			break;
		p++;
		int r = parse_line(cfg, cfg->line, cfg->line_len, reterr);
		cfg->line_len = 0;
		if (r < 0)
			return r;
	}
	return 0;
}

int cachecfg_finish(struct cachecfg *cfg, cairn_error **reterr)
{
	cfg->lineno++;
	if (cfg->line_len)
		return bad(cfg, reterr, CAIRN_ECORRUPT, "the last line does not end in a newline");
	if (!cfg->have_header)
		return bad(cfg, reterr, CAIRN_ECORRUPT, "empty: no header");
	if (cfg->n != cfg->expect)
		return bad(cfg, reterr, CAIRN_ECORRUPT, "%zu records where the header says %zu",
		           cfg->n, cfg->expect);
	free(cfg->line);
	cfg->line = NULL;
	cfg->line_cap = 0;
	return 0;
}

int cachecfg_parse(struct cachecfg *cfg, const char *what, const void *buf, size_t len,
                   cairn_error **reterr)
{
	cachecfg_init(cfg, what);
	int r = cachecfg_feed(cfg, buf, len, reterr);
	return r < 0 ? r : cachecfg_finish(cfg, reterr);
}
