/* SPDX-License-Identifier: MIT */
/*
 * cachecfg: the cache config of cache manifests (src/remote/cachecfg.h). Round trips, streaming
 * in pieces of every size, and hostile input: wrong digests and chain ids, cycles and parents out
 * of range, counts that lie, huge counts, lines over the cap, JSON that is not JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "remote/cachecfg.h"

#define GZIP_MT "application/vnd.oci.image.layer.v1.tar+gzip"

/* A record @i on @parent of @cfg with made-up blob and diff id and the right chain ids. */
static void add_rec(struct cachecfg *cfg, int64_t parent, const char *desc, const char *tag)
{
	char seed[64];
	struct cachecfg_record r = {.size = 100 + (int64_t)cfg->n,
	                            .media_type = GZIP_MT,
	                            .parent = parent,
	                            .description = (char *)desc,
	                            .created = 1700000000000000000 + (int64_t)cfg->n};
	snprintf(seed, sizeof(seed), "blob %zu", cfg->n);
	digest_buffer(seed, strlen(seed), &r.blob);
	snprintf(seed, sizeof(seed), "diff %zu", cfg->n);
	digest_buffer(seed, strlen(seed), &r.diff_id);
	const struct cachecfg_record *p = parent >= 0 ? &cfg->recs[parent] : NULL;
	cachecfg_chain(p ? p->chain_id.str : NULL, p ? p->blob_chain_id.str : NULL, &r.diff_id,
	               &r.blob, &r.chain_id, &r.blob_chain_id);
	char *tags[1] = {(char *)tag};
	r.tags = tag ? tags : NULL;
	r.n_tags = tag ? 1 : 0;
	ASSERT_OK(cachecfg_add(cfg, &r, ERR));
}

/* A config of three records (0 <- 1 <- 2, and 3 on 0) dumped into *@ret. */
static char *sample(size_t *ret_len)
{
	struct cachecfg cfg;
	cachecfg_init(&cfg, "sample");
	add_rec(&cfg, -1, "base", NULL);
	add_rec(&cfg, 0, "mid \"quoted\"\nnewline", "mid");
	add_rec(&cfg, 1, "", "top");
	add_rec(&cfg, 0, "other", "other:1");
	char *buf = NULL;
	ASSERT_OK(cachecfg_dump(&cfg, &buf, ret_len, ERR));
	cachecfg_clear(&cfg);
	return buf;
}

TEST(cachecfg_round_trip)
{
	size_t len = 0;
	char *buf = sample(&len);
	struct cachecfg cfg;
	ASSERT_OK(cachecfg_parse(&cfg, "t", buf, len, ERR));
	ASSERT_EQ(cfg.n, 4);
	ASSERT_EQ(cfg.recs[1].parent, 0);
	ASSERT_EQ(cfg.recs[3].parent, 0);
	ASSERT_STREQ(cfg.recs[1].description, "mid \"quoted\"\nnewline");
	ASSERT_STREQ(cfg.recs[3].tags[0], "other:1");
	ASSERT_EQ(cfg.recs[2].created, 1700000000000000002);
	/* the same bytes again */
	char *again = NULL;
	size_t alen = 0;
	ASSERT_OK(cachecfg_dump(&cfg, &again, &alen, ERR));
	ASSERT_EQ(alen, len);
	ASSERT_TRUE(memcmp(again, buf, len) == 0);
	free(again);
	cachecfg_clear(&cfg);
	/* fed in pieces of every size from 1 byte up: the same result */
	for (size_t step = 1; step < 64; step += 7) {
		cachecfg_init(&cfg, "pieces");
		for (size_t off = 0; off < len; off += step)
			ASSERT_OK(cachecfg_feed(&cfg, buf + off,
			                        off + step > len ? len - off : step, ERR));
		ASSERT_OK(cachecfg_finish(&cfg, ERR));
		ASSERT_EQ(cfg.n, 4);
		cachecfg_clear(&cfg);
	}
	free(buf);
}

TEST(cachecfg_empty_config)
{
	struct cachecfg cfg;
	cachecfg_init(&cfg, "empty");
	char *buf = NULL;
	size_t len = 0;
	ASSERT_OK(cachecfg_dump(&cfg, &buf, &len, ERR));
	ASSERT_OK(cachecfg_parse(&cfg, "t", buf, len, ERR));
	ASSERT_EQ(cfg.n, 0);
	cachecfg_clear(&cfg);
	free(buf);
}

/* Replace the first @from in a copy of the sample with @to, then parse: must fail with @code and
 * a message holding @needle. */
static void expect_bad(const char *from, const char *to, int code, const char *needle)
{
	size_t len = 0;
	char *buf = sample(&len);
	char *at = strstr(buf, from);
	ASSERT_TRUE(at != NULL);
	size_t fl = strlen(from), tl = strlen(to);
	char *nb = malloc(len - fl + tl + 1);
	memcpy(nb, buf, (size_t)(at - buf));
	memcpy(nb + (at - buf), to, tl);
	memcpy(nb + (at - buf) + tl, at + fl, len - (size_t)(at - buf) - fl + 1);
	struct cachecfg cfg;
	ASSERT_ERR(cachecfg_parse(&cfg, "hostile", nb, len - fl + tl, ERR), code);
	ASSERT_ERRMSG("hostile");
	ASSERT_ERRMSG(needle);
	cachecfg_clear(&cfg);
	free(nb);
	free(buf);
}

TEST(cachecfg_hostile_parents)
{
	/* a cycle needs a parent at or after the record: refused as out of range */
	expect_bad("\"parent\":0,\"size\":101", "\"parent\":2,\"size\":101", CAIRN_ECORRUPT,
	           "'parent' 2 is out of range");
	expect_bad("\"parent\":0,\"size\":101", "\"parent\":1,\"size\":101", CAIRN_ECORRUPT,
	           "out of range");
	expect_bad("\"parent\":-1", "\"parent\":-2", CAIRN_ECORRUPT, "out of range");
	expect_bad("\"parent\":-1", "\"parent\":99999999999", CAIRN_ECORRUPT, "out of range");
	expect_bad("\"parent\":-1", "\"parent\":\"0\"", CAIRN_ECORRUPT, "not an integer");
	/* a parent that exists but is not the one the chain ids were made on */
	expect_bad("\"parent\":1,", "\"parent\":0,", CAIRN_EDIGEST, "chain ids");
}

TEST(cachecfg_hostile_digests)
{
	expect_bad("\"blob\":\"sha256:", "\"blob\":\"sha256:../", CAIRN_EDIGEST, "'blob'");
	expect_bad("\"diff_id\":\"sha256:", "\"diff_id\":\"md5:", CAIRN_EDIGEST, "'diff_id'");
	/* a well-formed but wrong chain id */
	expect_bad("\"chain_id\":\"sha256:", "\"chain_id\":\"sha256:0", CAIRN_EDIGEST, "");
	expect_bad("\"blob_chain_id\":\"sha256:", "\"blob_chain_id\":\"sha256:00", CAIRN_EDIGEST,
	           "");
}

TEST(cachecfg_hostile_fields)
{
	expect_bad("\"size\":100", "\"size\":0", CAIRN_ECORRUPT, "'size'");
	expect_bad("\"size\":100", "\"size\":-5", CAIRN_ECORRUPT, "'size'");
	expect_bad("\"size\":100", "\"size\":1.5", CAIRN_ECORRUPT, "'size'");
	expect_bad(GZIP_MT, "application/vnd.oci.image.layer.v1.tar+encrypted", CAIRN_ECORRUPT,
	           "not a layer type");
	expect_bad("\"tags\":[\"mid\"]", "\"tags\":[\"-bad\"]", CAIRN_ECORRUPT, "tags[0]");
	expect_bad("\"tags\":[\"mid\"]", "\"tags\":\"mid\"", CAIRN_ECORRUPT, "'tags'");
	expect_bad("\"description\":\"base\"", "\"description\":\"a\\u0000b\"", CAIRN_ECORRUPT,
	           "NUL");
	expect_bad("\"description\":\"base\"", "\"description\":7", CAIRN_ECORRUPT,
	           "'description'");
	/* duplicate keys */
	expect_bad("\"size\":100,", "\"size\":100,\"size\":100,", CAIRN_ECORRUPT, "not a JSON");
	expect_bad("{\"blob\"", "[{\"blob\"", CAIRN_ECORRUPT, "not a JSON object");
}

TEST(cachecfg_hostile_counts)
{
	expect_bad("\"records\":4", "\"records\":5", CAIRN_ECORRUPT, "where the header says 5");
	expect_bad("\"records\":4", "\"records\":3", CAIRN_ECORRUPT, "more records than");
	expect_bad("\"records\":4", "\"records\":99999999999999", -EFBIG, "records");
	expect_bad("\"records\":4", "\"records\":-1", CAIRN_ECORRUPT, "out of range");
	expect_bad("\"version\":1", "\"version\":2", CAIRN_ECORRUPT, "not supported");
	expect_bad("\"cairn\":\"cache\"", "\"cairn\":\"other\"", CAIRN_ECORRUPT, "header");
	struct cachecfg cfg;
	ASSERT_ERR(cachecfg_parse(&cfg, "empty", "", 0, ERR), CAIRN_ECORRUPT);
	ASSERT_ERRMSG("no header");
	cachecfg_clear(&cfg);
	/* a last line without its newline */
	size_t len = 0;
	char *buf = sample(&len);
	ASSERT_ERR(cachecfg_parse(&cfg, "cut", buf, len - 1, ERR), CAIRN_ECORRUPT);
	ASSERT_ERRMSG("newline");
	cachecfg_clear(&cfg);
	free(buf);
}

TEST(cachecfg_size_caps)
{
	/* one line over the cap is refused as it streams, before it is all held */
	struct cachecfg cfg;
	cachecfg_init(&cfg, "long");
	size_t chunk = 1 << 20;
	char *junk = malloc(chunk);
	memset(junk, 'x', chunk);
	int r = 0;
	size_t fed = 0;
	while (r >= 0 && fed <= CACHECFG_LINE_MAX) {
		r = cachecfg_feed(&cfg, junk, chunk, ERR);
		fed += chunk;
	}
	ASSERT_EQ(r, -EFBIG);
	ASSERT_ERRMSG("longer than");
	ASSERT_TRUE(cfg.line_cap <= 2 * (size_t)CACHECFG_LINE_MAX);
	cachecfg_clear(&cfg);
	free(junk);
	/* the whole blob over 1 GiB: refused by its count, not by memory */
	cachecfg_init(&cfg, "huge");
	cfg.total = CACHECFG_MAX - 10;
	ASSERT_ERR(cachecfg_feed(&cfg, "{}\n{}\n{}\n", 12, ERR), -EFBIG);
	ASSERT_ERRMSG("larger than");
	cachecfg_clear(&cfg);
}

TEST(cachecfg_many_records)
{
	/* 100k records: parsed one line at a time */
	struct cachecfg cfg;
	cachecfg_init(&cfg, "many");
	for (int i = 0; i < 100000; i++)
		add_rec(&cfg, i ? i - 1 : -1, "d", NULL);
	char *buf = NULL;
	size_t len = 0;
	ASSERT_OK(cachecfg_dump(&cfg, &buf, &len, ERR));
	cachecfg_clear(&cfg);
	ASSERT_TRUE(len > 16u << 20);
	ASSERT_OK(cachecfg_parse(&cfg, "many", buf, len, ERR));
	ASSERT_EQ(cfg.n, 100000);
	ASSERT_EQ(cfg.recs[99999].parent, 99998);
	cachecfg_clear(&cfg);
	free(buf);
}
