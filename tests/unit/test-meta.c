/* SPDX-License-Identifier: MIT */
/* meta: the SQLite store. Ports BuildKit's metadata store tests (spec/buildkit-cache.md §13.8)
 * onto the items tables, plus schema, transaction and corruption checks. */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"
#include "meta/items.h"
#include "meta/labels.h"
#include "meta/meta.h"

struct idlist {
	char ids[8][32];
	int n;
};

static int collect(const char *id, void *userdata)
{
	struct idlist *l = userdata;
	if (l->n < 8)
		snprintf(l->ids[l->n++], sizeof(l->ids[0]), "%s", id);
	return 0;
}

static meta_db *open_db(void)
{
	meta_db *db = NULL;
	ASSERT_OK(meta_open("meta.db", &db, ERR));
	return db;
}

static void set_value(meta_db *db, const char *id, const char *key, const char *value,
                      const char *idx)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(db, &tx, true, ERR));
	ASSERT_OK(meta_item_set(&tx, id, key, value, idx, ERR));
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

TEST(get_set_search)
{
	_cleanup_(meta_closep) meta_db *db = open_db();
	{
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		ASSERT_OK(meta_tx_begin(db, &tx, false, ERR));
		ASSERT_EQ(meta_item_exists(&tx, "foo", ERR), 0);
		char *v = (char *)1;
		ASSERT_EQ(meta_item_get(&tx, "foo", "bar", &v, ERR), 0);
		ASSERT_TRUE(v == NULL);
	}
	set_value(db, "foo", "bar", "\"foobar\"", NULL);
	db = meta_close(db);
	db = open_db();
	{
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		ASSERT_OK(meta_tx_begin(db, &tx, false, ERR));
		ASSERT_EQ(meta_item_exists(&tx, "foo", ERR), 1);
		_cleanup_free_ char *v = NULL;
		ASSERT_EQ(meta_item_get(&tx, "foo", "bar", &v, ERR), 1);
		ASSERT_STREQ(v, "\"foobar\"");
		ASSERT_EQ(meta_item_exists(&tx, "foo2", ERR), 0);
	}
	set_value(db, "foo2", "bar2", "\"foobar2\"", NULL);
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(db, &tx, true, ERR));
	struct idlist all = {0};
	ASSERT_OK(meta_item_all(&tx, collect, &all, ERR));
	ASSERT_EQ(all.n, 2);
	ASSERT_STREQ(all.ids[0], "foo");
	ASSERT_STREQ(all.ids[1], "foo2");
	ASSERT_OK(meta_item_clear(&tx, "foo", ERR));
	all.n = 0;
	ASSERT_OK(meta_item_all(&tx, collect, &all, ERR));
	ASSERT_EQ(all.n, 1);
	ASSERT_STREQ(all.ids[0], "foo2");
	ASSERT_EQ(meta_item_exists(&tx, "foo", ERR), 0);
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

TEST(indexes)
{
	_cleanup_(meta_closep) meta_db *db = open_db();
	set_value(db, "foo1", "bar", "\"v1\"", "tag:baz");
	set_value(db, "foo2", "bar", "\"v2\"", "tag:bax");
	set_value(db, "foo3", "bar", "\"v3\"", "tag:baz");
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(db, &tx, true, ERR));
	struct idlist l = {0};
	ASSERT_OK(meta_item_search(&tx, "tag:baz", collect, &l, ERR));
	ASSERT_EQ(l.n, 2);
	ASSERT_STREQ(l.ids[0], "foo1");
	ASSERT_STREQ(l.ids[1], "foo3");
	l.n = 0;
	ASSERT_OK(meta_item_search(&tx, "tag:bax", collect, &l, ERR));
	ASSERT_EQ(l.n, 1);
	ASSERT_STREQ(l.ids[0], "foo2");
	ASSERT_OK(meta_item_clear(&tx, "foo1", ERR));
	l.n = 0;
	ASSERT_OK(meta_item_search(&tx, "tag:baz", collect, &l, ERR));
	ASSERT_EQ(l.n, 1);
	ASSERT_STREQ(l.ids[0], "foo3");
	/* The exact-match rule: a prefix of an index finds nothing. */
	l.n = 0;
	ASSERT_OK(meta_item_search(&tx, "tag:ba", collect, &l, ERR));
	ASSERT_EQ(l.n, 0);
	/* Unlike upstream, re-indexing a key drops the old index entry. */
	ASSERT_OK(meta_item_set(&tx, "foo3", "bar", "\"v3\"", "tag:new", ERR));
	ASSERT_OK(meta_item_search(&tx, "tag:baz", collect, &l, ERR));
	ASSERT_EQ(l.n, 0);
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

TEST(external_data)
{
	_cleanup_(meta_closep) meta_db *db = open_db();
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(db, &tx, true, ERR));
	ASSERT_OK(meta_item_set_external(&tx, "foo", "ext1", "data", 4, ERR));
	_cleanup_free_ void *data = NULL;
	size_t len = 0;
	ASSERT_OK(meta_item_get_external(&tx, "foo", "ext1", &data, &len, ERR));
	ASSERT_EQ(len, 4);
	ASSERT_TRUE(memcmp(data, "data", 4) == 0);
	void *none = NULL;
	ASSERT_ERR(meta_item_get_external(&tx, "bar", "ext1", &none, &len, ERR), -ENOENT);
	ASSERT_ERRMSG("ext1");
	ASSERT_OK(meta_item_clear(&tx, "foo", ERR));
	ASSERT_ERR(meta_item_get_external(&tx, "foo", "ext1", &none, &len, ERR), -ENOENT);
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

TEST(value_removal)
{
	_cleanup_(meta_closep) meta_db *db = open_db();
	set_value(db, "r", "k", "1", "idx:a");
	set_value(db, "r", "k", NULL, NULL);
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(db, &tx, false, ERR));
	char *v = NULL;
	ASSERT_EQ(meta_item_get(&tx, "r", "k", &v, ERR), 0);
	struct idlist l = {0};
	ASSERT_OK(meta_item_search(&tx, "idx:a", collect, &l, ERR));
	ASSERT_EQ(l.n, 0);
}

TEST(rollback_guard)
{
	_cleanup_(meta_closep) meta_db *db = open_db();
	{
		/* Leaving scope without commit rolls back. */
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		ASSERT_OK(meta_tx_begin(db, &tx, true, ERR));
		ASSERT_OK(meta_tag_set(&tx, "t", "rec", NULL, ERR));
	}
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(db, &tx, true, ERR));
	char *target = NULL;
	ASSERT_EQ(meta_tag_get(&tx, "t", &target, NULL, ERR), 0);
	ASSERT_ERR(meta_tag_remove(&tx, "t", ERR), -ENOENT);
	ASSERT_ERRMSG("'t'");
}

TEST(schema_and_pragmas)
{
	_cleanup_(meta_closep) meta_db *db = open_db();
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(db, &tx, false, ERR));
	sqlite3_stmt *st = meta_prepare(&tx, "PRAGMA user_version", ERR);
	ASSERT_TRUE(st && sqlite3_step(st) == SQLITE_ROW);
	ASSERT_EQ(sqlite3_column_int(st, 0), META_SCHEMA_VERSION);
	st = meta_prepare(&tx, "PRAGMA journal_mode", ERR);
	ASSERT_TRUE(st && sqlite3_step(st) == SQLITE_ROW);
	ASSERT_STREQ((const char *)sqlite3_column_text(st, 0), "wal");
	st = meta_prepare(&tx, "PRAGMA foreign_keys", ERR);
	ASSERT_TRUE(st && sqlite3_step(st) == SQLITE_ROW);
	ASSERT_EQ(sqlite3_column_int(st, 0), 1);
	meta_tx_end(&tx);
	struct stat s;
	ASSERT_OK(stat("meta.db", &s));
	ASSERT_EQ(s.st_mode & 0777, 0600);
}

TEST(newer_schema_refused)
{
	meta_db *db = open_db();
	{
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		ASSERT_OK(meta_tx_begin(db, &tx, true, ERR));
		ASSERT_OK(meta_exec(&tx, "PRAGMA user_version = 99", ERR));
		ASSERT_OK(meta_tx_commit(&tx, ERR));
	}
	meta_close(db);
	ASSERT_ERR(meta_open("meta.db", &db, ERR), CAIRN_ESCHEMA);
	ASSERT_ERRMSG("meta.db");
}

TEST(corrupt_database_named_not_recreated)
{
	test_write_file("meta.db", "this is not a sqlite database, just some bytes that are long "
	                           "enough to look like a header, and then some more bytes too.\n");
	meta_db *db = NULL;
	ASSERT_ERR(meta_open("meta.db", &db, ERR), CAIRN_ECORRUPT);
	ASSERT_ERRMSG("meta.db");
	/* The file is left as it was. */
	_cleanup_fclose_ FILE *f = fopen("meta.db", "re");
	char buf[16] = {0};
	ASSERT_TRUE(f && fread(buf, 1, 7, f) == 7);
	ASSERT_STREQ(buf, "this is");
}

/* Open reads the header and schema only; the damage of a page elsewhere is meta_check()'s
 * (fsck's) to find, named by path. */
TEST(check_finds_damage_open_does_not_read)
{
	{
		_cleanup_(meta_closep) meta_db *db = open_db();
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		ASSERT_OK(meta_tx_begin(db, &tx, true, ERR));
		char value[400];
		memset(value, 'v', sizeof(value) - 1);
		value[sizeof(value) - 1] = 0;
		for (int i = 0; i < 300; i++) {
			char dgst[32];
			snprintf(dgst, sizeof(dgst), "sha256:%04d", i);
			ASSERT_OK(meta_content_label_set(&tx, dgst, "k", value, ERR));
		}
		ASSERT_OK(meta_tx_commit(&tx, ERR));
		ASSERT_OK(meta_check(db, ERR));
	}
	/* The last page (a leaf of content_labels) gets a page type that does not exist. */
	struct stat st;
	ASSERT_OK(stat("meta.db", &st) < 0 ? -errno : 0);
	ASSERT_TRUE(st.st_size > 16 * 4096);
	ASSERT_OK(test_sh("printf '\\377' | dd of=meta.db bs=1 seek=%lld conv=notrunc status=none",
	                  (long long)st.st_size - 4096));
	_cleanup_(meta_closep) meta_db *db = open_db();
	ASSERT_ERR(meta_check(db, ERR), CAIRN_ECORRUPT);
	ASSERT_ERRMSG("meta.db");
}

TEST(unwritable_location_named)
{
	if (geteuid() == 0)
		ASSERT_OK(test_sh("mkdir ro && mount -t tmpfs -o ro tmpfs ro"));
	else
		ASSERT_OK(test_sh("mkdir ro && chmod 0500 ro"));
	meta_db *db = NULL;
	int r = meta_open("ro/meta.db", &db, ERR);
	test_sh("umount ro 2>/dev/null");
	ASSERT_TRUE(r == -EROFS || r == -EACCES);
	ASSERT_ERRMSG("ro/meta.db");
}

TEST(labels_limits_and_tags)
{
	_cleanup_(meta_closep) meta_db *db = open_db();
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(db, &tx, true, ERR));
	char big[5000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	ASSERT_ERR(meta_content_label_set(&tx, "sha256:00", "k", big, ERR), -EINVAL);
	ASSERT_OK(meta_content_label_set(&tx, "sha256:00", "k", "v", ERR));
	ASSERT_OK(meta_content_label_set(&tx, "sha256:00", "k", "", ERR));
	ASSERT_OK(meta_tag_set(&tx, "app", "rec1", NULL, ERR));
	ASSERT_OK(meta_tag_set(&tx, "app", "rec2", NULL, ERR));
	_cleanup_free_ char *t = NULL;
	ASSERT_EQ(meta_tag_get(&tx, "app", &t, NULL, ERR), 1);
	ASSERT_STREQ(t, "rec2");
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

/* Two processes writing at once: SQLite serialises them; no write is lost. */
TEST(two_processes_write)
{
	meta_close(open_db());
	pid_t pids[2];
	for (int p = 0; p < 2; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			meta_db *db = NULL;
			if (meta_open("meta.db", &db, NULL) < 0)
				_exit(1);
			for (int i = 0; i < 50; i++) {
				char id[32];
				snprintf(id, sizeof(id), "p%d-%02d", p, i);
				meta_tx tx = {0};
				if (meta_tx_begin(db, &tx, true, NULL) < 0 ||
				    meta_item_set(&tx, id, "k", "1", NULL, NULL) < 0 ||
				    meta_tx_commit(&tx, NULL) < 0)
					_exit(2);
			}
			meta_close(db);
			_exit(0);
		}
	}
	for (int p = 0; p < 2; p++) {
		int st = 0;
		waitpid(pids[p], &st, 0);
		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	_cleanup_(meta_closep) meta_db *db = open_db();
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(db, &tx, false, ERR));
	sqlite3_stmt *st = meta_prepare(&tx, "SELECT count(*) FROM items", ERR);
	ASSERT_TRUE(st && sqlite3_step(st) == SQLITE_ROW);
	ASSERT_EQ(sqlite3_column_int(st, 0), 100);
}
