/* SPDX-License-Identifier: MIT */
/*
 * Leases, gc and fsck (src/lease): what gc keeps (everything reachable from records, tags,
 * mounts and live leases), what it removes (orphans, old ingests, tmp/, dead leases), that a dry
 * run removes nothing and reports the same, and that fsck finds and repairs damage. Records,
 * tags and mounts are written straight into the database, so these tests do not depend on the
 * cache manager; snapshots use the native driver.
 */
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cairn/content.h"
#include "cairn/lease.h"
#include "harness.h"
#include "lease/lease.h"
#include "meta/labels.h"
#include "meta/leases.h"
#include "meta/records.h"
#include "meta/snapshots.h"
#include "store/store.h"

/* ---- helpers ---- */

static cairn_store *open_store(unsigned flags)
{
	cairn_store_options o = {
		.version = CAIRN_STORE_OPTIONS_VERSION, .flags = flags, .snapshotter = "native"};
	cairn_store *s = NULL;
	ASSERT_OK(cairn_store_open("store", &o, &s, ERR));
	return s;
}

/* Committed snapshot @name on @parent (NULL: none). */
static void committed(cairn_store *s, const char *name, const char *parent)
{
	char key[256];
	snprintf(key, sizeof(key), "%s-active", name);
	ASSERT_OK(snap_prepare(s->snap, key, parent, NULL, 0, NULL, NULL, ERR));
	ASSERT_OK(snap_commit(s->snap, name, key, NULL, 0, ERR));
}

static bool snap_exists(cairn_store *s, const char *name)
{
	return snap_stat(s->snap, name, NULL, NULL) == 0;
}

/* A blob holding @text; its digest into @ret. */
static void blob(cairn_store *s, const char *text, char ret[static 80])
{
	digest d;
	ASSERT_OK(content_add_buffer(s->content, text, strlen(text), NULL, &d, ERR));
	snprintf(ret, 80, "%s", d.str);
}

static bool blob_exists(cairn_store *s, const char *dgst)
{
	return content_exists(s->content, dgst, NULL) == 1;
}

static void record(cairn_store *s, const char *id, const char *snapshot, const char *dgst,
                   const char *parent, bool deleted)
{
	struct meta_record r = {
		.id = (char *)id,
		.snapshotter = (char *)"native",
		.kind = META_RECORD_IMMUTABLE,
		.parent = (char *)parent,
		.snapshot = (char *)snapshot,
		.description = (char *)"",
		.record_type = (char *)"",
		.layer_type = (char *)"",
		.deleted = deleted,
		.extracted = true,
		.created_at = meta_now_ns(),
		.blob = (char *)dgst,
	};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(s->db, &tx, true, ERR));
	ASSERT_OK(meta_record_insert(&tx, &r, ERR));
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

static void tag(cairn_store *s, const char *name, const char *target)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(s->db, &tx, true, ERR));
	ASSERT_OK(meta_tag_set(&tx, name, target, NULL, ERR));
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

static void mount_row(cairn_store *s, const char *target, const char *rec, const char *view)
{
	struct meta_mount m = {(char *)target, (char *)rec, (char *)view, true, meta_now_ns()};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(s->db, &tx, true, ERR));
	ASSERT_OK(meta_mount_insert(&tx, &m, ERR));
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

static void lease(cairn_store *s, const char *id, unsigned flags, int64_t expire_ns,
                  const char *type, const char *res)
{
	cairn_lease_options o = {.version = CAIRN_LEASE_OPTIONS_VERSION,
	                         .flags = flags,
	                         .id = id,
	                         .expire_ns = expire_ns};
	ASSERT_OK(cairn_lease_create(s, &o, NULL, ERR));
	if (type)
		ASSERT_OK(cairn_lease_add_resource(s, id, type, res, ERR));
}

/* A process lease of a process that has exited. */
static void dead_process_lease(cairn_store *s, const char *id, const char *type, const char *res)
{
	pid_t pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0)
		_exit(0);
	int64_t start = lease_proc_start(pid);
	ASSERT_EQ(waitpid(pid, NULL, 0), pid);
	struct meta_lease l = {(char *)id, meta_now_ns(), 0, pid, start > 0 ? start : 12345};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(s->db, &tx, true, ERR));
	ASSERT_OK(meta_lease_insert(&tx, &l, ERR));
	ASSERT_OK(meta_lease_resource_add(&tx, id, type, res, ERR));
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

static void ingest(cairn_store *s, const char *ref, bool old)
{
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s->content, ref, 0, NULL, &w, ERR));
	ASSERT_OK(content_writer_write(w, "partial", 7, ERR));
	ASSERT_OK(content_writer_close(w, ERR));
	if (old)
		ASSERT_EQ(
			test_sh("cd store/ingest && for d in *; do grep -qx '%s' $d/ref || "
		                "continue; echo 1000 > $d/updatedat; touch -d 2000-01-01 $d/data; "
		                "done",
		                ref),
			0);
}

static bool ingest_exists(cairn_store *s, const char *ref)
{
	content_ingest_status st;
	return content_status(s->content, ref, &st, NULL) == 0;
}

static size_t n_leases(cairn_store *s)
{
	cairn_lease_info *infos = NULL;
	size_t n = 0;
	ASSERT_OK(cairn_lease_list(s, &infos, &n, ERR));
	cairn_lease_infos_free(infos, n);
	return n;
}

/* ---- leases ---- */

TEST(lease_create_list_delete)
{
	cairn_store *s = open_store(0);
	const char *keys[] = {"a", "b"}, *values[] = {"1", "2"};
	cairn_lease_options o = {.version = CAIRN_LEASE_OPTIONS_VERSION,
	                         .flags = CAIRN_LEASE_PROCESS,
	                         .expire_ns = 3600LL * 1000000000,
	                         .n_labels = 2,
	                         .label_keys = keys,
	                         .label_values = values};
	char *id = NULL;
	ASSERT_OK(cairn_lease_create(s, &o, &id, ERR));
	ASSERT_TRUE(id && *id);
	ASSERT_OK(cairn_lease_add_resource(s, id, "record", "r1", ERR));
	ASSERT_OK(cairn_lease_add_resource(s, id, "record", "r1", ERR)); /* idempotent */
	ASSERT_ERR(cairn_lease_add_resource(s, id, "blob", "nope", ERR), CAIRN_EDIGEST);
	ASSERT_ERR(cairn_lease_add_resource(s, id, "tape", "x", ERR), -EINVAL);
	ASSERT_ERRMSG("'tape'");
	ASSERT_ERR(cairn_lease_add_resource(s, "missing", "record", "r1", ERR), -ENOENT);
	o.id = id;
	ASSERT_ERR(cairn_lease_create(s, &o, NULL, ERR), -EEXIST);
	ASSERT_ERRMSG(id);

	cairn_lease_info *infos = NULL;
	size_t n = 0;
	ASSERT_OK(cairn_lease_list(s, &infos, &n, ERR));
	ASSERT_EQ(n, 1);
	ASSERT_STREQ(infos[0].id, id);
	ASSERT_EQ(infos[0].pid, getpid());
	ASSERT_TRUE(infos[0].live);
	ASSERT_TRUE(infos[0].expires_ns > infos[0].created_ns);
	ASSERT_EQ(infos[0].n_labels, 2);
	ASSERT_STREQ(infos[0].label_values[1], "2");
	ASSERT_EQ(infos[0].n_resources, 1);
	ASSERT_STREQ(infos[0].resources[0].type, "record");
	cairn_lease_infos_free(infos, n);

	ASSERT_OK(cairn_lease_delete(s, id, ERR));
	ASSERT_ERR(cairn_lease_delete(s, id, ERR), -ENOENT);
	ASSERT_ERRMSG(id);
	ASSERT_EQ(n_leases(s), 0);
	free(id);
	cairn_store_close(s);
}

struct problems {
	char text[4096];
	size_t n, repaired;
};

static int collect(const cairn_fsck_problem *p, void *userdata)
{
	struct problems *ps = userdata;
	size_t len = strlen(ps->text);
	snprintf(ps->text + len, sizeof(ps->text) - len, "%s|%s|%d\n", p->kind, p->message,
	         p->repaired);
	ps->n++;
	ps->repaired += p->repaired;
	return 0;
}

/* ---- gc ---- */

TEST(gc_needs_exclusive_store)
{
	cairn_store *s = open_store(0);
	ASSERT_ERR(cairn_gc(s, 0, NULL, ERR), -EINVAL);
	ASSERT_ERRMSG("CAIRN_STORE_EXCLUSIVE");
	ASSERT_ERR(cairn_gc(s, 1u << 7, NULL, ERR), -EINVAL);
	ASSERT_ERR(cairn_fsck(s, CAIRN_FSCK_REPAIR, NULL, NULL, NULL, ERR), -EINVAL);
	cairn_store_close(s);
}

struct world {
	char b_rec[80], b_parent[80], b_tagged[80], b_leased[80], b_live_proc[80];
	char b_orphan[80], b_expired[80], b_dead[80], b_tomb[80];
};

/* Builds a store holding one of everything gc must keep and one of everything it must remove. */
static void build_world(cairn_store *s, struct world *w)
{
	/* Kept: a record (and its parent record, snapshot chain and blobs). */
	committed(s, "base", NULL);
	committed(s, "mid", "base");
	committed(s, "top", "mid");
	blob(s, "record blob", w->b_rec);
	blob(s, "parent blob", w->b_parent);
	record(s, "root", "base", NULL, NULL, false);
	record(s, "parent", "mid", w->b_parent, "root", false);
	record(s, "child", "top", w->b_rec, "parent", false);
	/* Kept: a tagged record (a tombstone, so only the tag holds it). */
	committed(s, "tagged-snap", NULL);
	blob(s, "tagged blob", w->b_tagged);
	record(s, "tagged", "tagged-snap", w->b_tagged, NULL, true);
	tag(s, "mytag", "tagged");
	/* Kept: a mounted record and its view. */
	committed(s, "mounted-snap", NULL);
	ASSERT_OK(snap_view(s->snap, "mount-view", "mounted-snap", NULL, 0, NULL, NULL, ERR));
	record(s, "mounted", "mounted-snap", NULL, NULL, true);
	mount_row(s, "/mnt/x", "mounted", "mount-view");
	/* Kept: what live leases hold. */
	blob(s, "leased blob", w->b_leased);
	lease(s, "hold-blob", 0, 0, "blob", w->b_leased);
	committed(s, "leased-snap", NULL);
	lease(s, "hold-snap", 0, 0, "snapshots/native", "leased-snap");
	committed(s, "leased-rec-snap", NULL);
	record(s, "leased-rec", "leased-rec-snap", NULL, NULL, true);
	lease(s, "hold-rec", 0, 3600LL * 1000000000, "record", "leased-rec");
	blob(s, "live process blob", w->b_live_proc);
	lease(s, "live-proc", CAIRN_LEASE_PROCESS, 0, "blob", w->b_live_proc);
	ingest(s, "fresh-ingest", false);

	/* Removed: orphans (a child on its parent), a tombstone's data, expired and dead leases
	 * and what only they held, an old ingest, tmp/. */
	committed(s, "orphan", NULL);
	ASSERT_OK(snap_prepare(s->snap, "orphan-child", "orphan", NULL, 0, NULL, NULL, ERR));
	test_write_file("store/snapshots/x", ""); /* not a snapshot dir: ignored */
	unlink("store/snapshots/x");
	blob(s, "orphan blob", w->b_orphan);
	committed(s, "tomb-snap", NULL);
	blob(s, "tomb blob", w->b_tomb);
	record(s, "tomb", "tomb-snap", w->b_tomb, NULL, true);
	blob(s, "expired blob", w->b_expired);
	lease(s, "expired", 0, 1, "blob", w->b_expired);
	blob(s, "dead blob", w->b_dead);
	dead_process_lease(s, "dead-proc", "blob", w->b_dead);
	ingest(s, "old-ingest", true);
	test_write_file("store/tmp/junk", "junk");
	ASSERT_EQ(mkdir("store/tmp/dir", 0700), 0);
	test_write_file("store/tmp/dir/f", "more junk");
}

static void assert_kept(cairn_store *s, const struct world *w)
{
	const char *snaps[] = {"base",         "mid",        "top",         "tagged-snap",
	                       "mounted-snap", "mount-view", "leased-snap", "leased-rec-snap"};
	for (size_t i = 0; i < ELEMENTSOF(snaps); i++)
		if (!snap_exists(s, snaps[i]))
			test_fail(__FILE__, __LINE__, "snapshot '%s' was removed", snaps[i]);
	ASSERT_TRUE(blob_exists(s, w->b_rec));
	ASSERT_TRUE(blob_exists(s, w->b_parent));
	ASSERT_TRUE(blob_exists(s, w->b_tagged));
	ASSERT_TRUE(blob_exists(s, w->b_leased));
	ASSERT_TRUE(blob_exists(s, w->b_live_proc));
	ASSERT_TRUE(ingest_exists(s, "fresh-ingest"));
}

TEST(gc_dry_run_then_gc)
{
	cairn_store *s = open_store(CAIRN_STORE_EXCLUSIVE);
	struct world w;
	build_world(s, &w);
	ASSERT_EQ(n_leases(s), 6);

	cairn_gc_report dry, real;
	ASSERT_OK(cairn_gc(s, CAIRN_GC_DRY_RUN, &dry, ERR));
	ASSERT_EQ(dry.snapshots, 3); /* orphan, orphan-child, tomb-snap */
	ASSERT_EQ(dry.blobs, 4);     /* orphan, tomb, expired, dead */
	ASSERT_EQ(dry.ingests, 1);
	ASSERT_EQ(dry.leases, 2);
	ASSERT_EQ(dry.tmp_entries, 2);
	ASSERT_TRUE(dry.bytes > 0);
	ASSERT_EQ(dry.skipped, 0);
	/* Nothing moved. */
	assert_kept(s, &w);
	ASSERT_TRUE(snap_exists(s, "orphan-child"));
	ASSERT_TRUE(blob_exists(s, w.b_orphan));
	ASSERT_TRUE(ingest_exists(s, "old-ingest"));
	ASSERT_EQ(access("store/tmp/junk", F_OK), 0);
	ASSERT_EQ(n_leases(s), 6);

	ASSERT_OK(cairn_gc(s, 0, &real, ERR));
	ASSERT_EQ(real.snapshots, dry.snapshots);
	ASSERT_EQ(real.blobs, dry.blobs);
	ASSERT_EQ(real.ingests, dry.ingests);
	ASSERT_EQ(real.leases, dry.leases);
	ASSERT_EQ(real.tmp_entries, dry.tmp_entries);
	ASSERT_EQ(real.bytes, dry.bytes);
	ASSERT_EQ(real.skipped, 0);
	assert_kept(s, &w);
	ASSERT_FALSE(snap_exists(s, "orphan"));
	ASSERT_FALSE(snap_exists(s, "orphan-child"));
	ASSERT_FALSE(snap_exists(s, "tomb-snap"));
	ASSERT_FALSE(blob_exists(s, w.b_orphan));
	ASSERT_FALSE(blob_exists(s, w.b_tomb));
	ASSERT_FALSE(blob_exists(s, w.b_expired));
	ASSERT_FALSE(blob_exists(s, w.b_dead));
	ASSERT_FALSE(ingest_exists(s, "old-ingest"));
	ASSERT_TRUE(access("store/tmp/junk", F_OK) < 0);
	ASSERT_TRUE(access("store/tmp/dir", F_OK) < 0);
	ASSERT_EQ(n_leases(s), 4);

	/* A second gc finds nothing, and gc made no damage: fsck only sees that the tag and the
	 * mount of this test point at tombstones. */
	ASSERT_OK(cairn_gc(s, 0, &real, ERR));
	ASSERT_EQ(real.snapshots + real.blobs + real.ingests + real.leases + real.tmp_entries, 0);
	size_t problems = 99;
	struct problems ps = {0};
	ASSERT_OK(cairn_fsck(s, 0, collect, &ps, &problems, ERR));
	if (problems != 2 || !strstr(ps.text, "tag 'mytag'") || !strstr(ps.text, "'/mnt/x'"))
		test_fail(__FILE__, __LINE__, "fsck after gc: %s", ps.text);
	cairn_store_close(s);
}

TEST(gc_after_lease_delete_collects)
{
	cairn_store *s = open_store(CAIRN_STORE_EXCLUSIVE);
	char b[80];
	blob(s, "held", b);
	lease(s, "l", 0, 0, "blob", b);
	cairn_gc_report rep;
	ASSERT_OK(cairn_gc(s, 0, &rep, ERR));
	ASSERT_TRUE(blob_exists(s, b));
	ASSERT_OK(cairn_lease_delete(s, "l", ERR));
	ASSERT_OK(cairn_gc(s, 0, &rep, ERR));
	ASSERT_EQ(rep.blobs, 1);
	ASSERT_EQ(rep.blob_bytes, 4);
	ASSERT_FALSE(blob_exists(s, b));
	cairn_store_close(s);
}

/* containerd's gc labels: a gc.root blob is a root, and a marked blob keeps what its
 * gc.ref.content* labels name (to any depth) and the snapshots its gc.ref.snapshot.<driver>
 * labels name; keys that only look alike, and values that are not digests, hold nothing. */
TEST(gc_follows_containerd_labels)
{
	cairn_store *s = open_store(CAIRN_STORE_EXCLUSIVE);
	char index[80], manifest[80], config[80], layer[80], lookalike[80], bad[80], loose[80];
	blob(s, "index", index);
	blob(s, "manifest", manifest);
	blob(s, "config", config);
	blob(s, "layer", layer);
	blob(s, "named by a key that only looks alike", lookalike);
	blob(s, "labelled but unreachable", bad);
	blob(s, "nothing", loose);
	committed(s, "labelled-snap", NULL);
	committed(s, "unlabelled-snap", NULL);
	ASSERT_OK(cairn_content_label_set(s, index, "containerd.io/gc.root", "2026-12-05", ERR));
	ASSERT_OK(cairn_content_label_set(s, index, "containerd.io/gc.ref.content.m/0", manifest,
	                                  ERR));
	ASSERT_OK(
		cairn_content_label_set(s, index, "containerd.io/gc.ref.contentx", lookalike, ERR));
	ASSERT_OK(cairn_content_label_set(s, index, "containerd.io/gc.ref.content.bad",
	                                  "sha256:../../x", ERR));
	ASSERT_OK(cairn_content_label_set(s, manifest, "containerd.io/gc.ref.content.config",
	                                  config, ERR));
	ASSERT_OK(cairn_content_label_set(s, config, "containerd.io/gc.ref.content", layer, ERR));
	ASSERT_OK(cairn_content_label_set(s, config, "containerd.io/gc.ref.snapshot.native/x",
	                                  "labelled-snap", ERR));
	ASSERT_OK(cairn_content_label_set(s, bad, "containerd.io/gc.ref.content", loose, ERR));

	cairn_gc_report rep;
	ASSERT_OK(cairn_gc(s, 0, &rep, ERR));
	ASSERT_EQ(rep.blobs, 3);
	ASSERT_EQ(rep.snapshots, 1);
	ASSERT_TRUE(blob_exists(s, index));
	ASSERT_TRUE(blob_exists(s, manifest));
	ASSERT_TRUE(blob_exists(s, config));
	ASSERT_TRUE(blob_exists(s, layer));
	ASSERT_TRUE(snap_exists(s, "labelled-snap"));
	ASSERT_FALSE(blob_exists(s, lookalike));
	ASSERT_FALSE(blob_exists(s, bad));
	ASSERT_FALSE(blob_exists(s, loose));
	ASSERT_FALSE(snap_exists(s, "unlabelled-snap"));

	/* Dropping the root label frees the whole chain. */
	ASSERT_OK(cairn_content_label_set(s, index, "containerd.io/gc.root", NULL, ERR));
	ASSERT_OK(cairn_gc(s, 0, &rep, ERR));
	ASSERT_EQ(rep.blobs, 4);
	ASSERT_EQ(rep.snapshots, 1);
	ASSERT_FALSE(blob_exists(s, config));
	cairn_store_close(s);
}

/* A tag that names an image manifest keeps that manifest and what its labels name; untagging
 * lets gc take them, while the record's own blob stays with the record. */
TEST(gc_keeps_tagged_image_manifest)
{
	cairn_store *s = open_store(CAIRN_STORE_EXCLUSIVE);
	char manifest[80], config[80], layer[80];
	blob(s, "manifest", manifest);
	blob(s, "config", config);
	blob(s, "layer", layer);
	committed(s, "img-snap", NULL);
	record(s, "img", "img-snap", layer, NULL, false);
	ASSERT_OK(cairn_content_label_set(s, manifest, "containerd.io/gc.ref.content.config",
	                                  config, ERR));
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(s->db, &tx, true, ERR));
	ASSERT_OK(meta_tag_set(&tx, "app:1", "img", manifest, ERR));
	ASSERT_OK(meta_tx_commit(&tx, ERR));
	meta_tx_end(&tx);

	cairn_gc_report rep;
	ASSERT_OK(cairn_gc(s, 0, &rep, ERR));
	ASSERT_EQ(rep.blobs, 0);

	ASSERT_OK(meta_tx_begin(s->db, &tx, true, ERR));
	char *target = NULL, *m = NULL;
	ASSERT_EQ(meta_tag_get(&tx, "app:1", &target, &m, ERR), 1);
	ASSERT_STREQ(target, "img");
	ASSERT_STREQ(m, manifest);
	free(target);
	free(m);
	ASSERT_OK(meta_tag_remove(&tx, "app:1", ERR));
	ASSERT_OK(meta_tx_commit(&tx, ERR));
	meta_tx_end(&tx);
	ASSERT_OK(cairn_gc(s, 0, &rep, ERR));
	ASSERT_EQ(rep.blobs, 2);
	ASSERT_FALSE(blob_exists(s, manifest));
	ASSERT_FALSE(blob_exists(s, config));
	ASSERT_TRUE(blob_exists(s, layer));
	cairn_store_close(s);
}

/* ---- fsck ---- */

static int64_t snap_id(cairn_store *s, const char *name)
{
	struct meta_snapshot row = {0};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(s->db, &tx, false, ERR));
	ASSERT_EQ(meta_snapshot_get(&tx, "native", name, &row, ERR), 1);
	int64_t id = row.id;
	meta_snapshot_clear(&row);
	return id;
}

#define ASSERT_HAS(text, needle)                                                                   \
	do {                                                                                       \
		if (!strstr((text), (needle)))                                                     \
			test_fail(__FILE__, __LINE__, "\"%s\" lacks \"%s\"", (text), (needle));    \
	} while (0)

TEST(fsck_finds_and_repairs)
{
	cairn_store *s = open_store(CAIRN_STORE_EXCLUSIVE);
	char good[80], bad[80], b2[80];
	committed(s, "ok-snap", NULL);
	blob(s, "good blob", good);
	record(s, "ok", "ok-snap", good, NULL, false);
	size_t n = 99;
	ASSERT_OK(cairn_fsck(s, 0, NULL, NULL, &n, ERR));
	ASSERT_EQ(n, 0);

	/* A corrupt blob used by an extracted record. */
	committed(s, "c-snap", NULL);
	blob(s, "soon corrupt", bad);
	record(s, "uses-bad", "c-snap", bad, NULL, false);
	ASSERT_EQ(test_sh("f=store/blobs/sha256/%s; chmod u+w $f && printf X | dd of=$f bs=1 "
	                  "count=1 conv=notrunc 2>/dev/null",
	                  bad + 7),
	          0);
	/* A record whose snapshot directory is gone (its blob is fine). */
	committed(s, "gone-snap", NULL);
	blob(s, "gone blob", b2);
	record(s, "gone", "gone-snap", b2, NULL, false);
	ASSERT_EQ(test_sh("rm -rf store/snapshots/%lld", (long long)snap_id(s, "gone-snap")), 0);
	/* An orphan directory and a dangling tag. */
	ASSERT_EQ(test_sh("mkdir -p store/snapshots/9999/fs"), 0);
	tag(s, "dangling", "no-such-record");

	struct problems ps = {0};
	ASSERT_OK(cairn_fsck(s, 0, collect, &ps, &n, ERR));
	ASSERT_EQ(ps.repaired, 0);
	ASSERT_EQ(n, ps.n);
	ASSERT_HAS(ps.text, bad); /* the blob, by digest */
	ASSERT_HAS(ps.text, "snapshot 'gone-snap'");
	ASSERT_HAS(ps.text, "'snapshots/9999'");
	ASSERT_HAS(ps.text, "tag 'dangling'");
	ASSERT_HAS(ps.text, "record 'uses-bad'");
	ASSERT_TRUE(!strstr(ps.text, "wipe"));
	/* blob, snapshot row, orphan dir, uses-bad's blob, tag */
	if (n != 5)
		test_fail(__FILE__, __LINE__, "%zu problems: %s", n, ps.text);

	struct problems pr = {0};
	ASSERT_OK(cairn_fsck(s, CAIRN_FSCK_REPAIR, collect, &pr, &n, ERR));
	/* Only uses-bad's missing blob cannot be fixed here: it must be fetched again. */
	ASSERT_EQ(n, 1);
	ASSERT_HAS(pr.text, "record|record 'uses-bad': its blob");
	ASSERT_HAS(pr.text, "(tag removed)|1");
	ASSERT_HAS(pr.text, "record 'gone': snapshot 'gone-snap' (native) is missing (marked not");
	ASSERT_FALSE(blob_exists(s, bad));
	ASSERT_TRUE(access("store/snapshots/9999", F_OK) < 0);

	struct problems again = {0};
	ASSERT_OK(cairn_fsck(s, 0, collect, &again, &n, ERR));
	ASSERT_EQ(n, 1);
	ASSERT_HAS(again.text, "uses-bad");
	/* gone is now a lazy record: its snapshot comes back on the next extract. */
	struct meta_record r = {0};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(s->db, &tx, false, ERR));
	ASSERT_EQ(meta_record_get(&tx, "gone", &r, ERR), 1);
	ASSERT_FALSE(r.extracted);
	meta_record_clear(&r);
	meta_tx_end(&tx);
	cairn_store_close(s);
}

/* A tag whose image manifest blob went missing: reported, and the repair keeps the tag (and its
 * record) but drops the manifest from it. */
TEST(fsck_tag_manifest_missing)
{
	cairn_store *s = open_store(CAIRN_STORE_EXCLUSIVE);
	char manifest[80];
	blob(s, "manifest", manifest);
	committed(s, "img-snap", NULL);
	record(s, "img", "img-snap", NULL, NULL, false);
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(s->db, &tx, true, ERR));
	ASSERT_OK(meta_tag_set(&tx, "app:1", "img", manifest, ERR));
	ASSERT_OK(meta_tx_commit(&tx, ERR));
	meta_tx_end(&tx);
	size_t n = 99;
	ASSERT_OK(cairn_fsck(s, 0, NULL, NULL, &n, ERR));
	ASSERT_EQ(n, 0);

	char path[PATH_MAX];
	snprintf(path, sizeof(path), "store/blobs/sha256/%s", manifest + strlen("sha256:"));
	ASSERT_EQ(unlink(path), 0);
	struct problems ps = {0};
	ASSERT_OK(cairn_fsck(s, 0, collect, &ps, &n, ERR));
	ASSERT_EQ(n, 1);
	ASSERT_HAS(ps.text, "tag 'app:1' names image manifest blob sha256:");
	ASSERT_HAS(ps.text, "import the image again");
	struct problems pr = {0};
	ASSERT_OK(cairn_fsck(s, CAIRN_FSCK_REPAIR, collect, &pr, &n, ERR));
	ASSERT_EQ(pr.repaired, 1);
	ASSERT_OK(cairn_fsck(s, 0, NULL, NULL, &n, ERR));
	ASSERT_EQ(n, 0);
	char *target = NULL, *m = NULL;
	ASSERT_OK(meta_tx_begin(s->db, &tx, false, ERR));
	ASSERT_EQ(meta_tag_get(&tx, "app:1", &target, &m, ERR), 1);
	ASSERT_STREQ(target, "img");
	ASSERT_TRUE(m == NULL);
	free(target);
	meta_tx_end(&tx);
	cairn_store_close(s);
}

/* Ingests no writer holds: a fresh resumable one is fine; one left longer than gc allows, and
 * one cut short (no ref file), are reported and removed by the repair. */
TEST(fsck_orphan_ingests)
{
	cairn_store *s = open_store(CAIRN_STORE_EXCLUSIVE);
	ingest(s, "resumable", false);
	size_t n = 99;
	ASSERT_OK(cairn_fsck(s, 0, NULL, NULL, &n, ERR));
	ASSERT_EQ(n, 0);
	ingest(s, "stale", true);
	char key[65];
	memset(key, 'a', 64);
	key[64] = '\0';
	ASSERT_EQ(test_sh("mkdir store/ingest/%s", key), 0);
	/* A writer at work is never reported. */
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s->content, "busy", 0, NULL, &w, ERR));
	ASSERT_EQ(test_sh("cd store/ingest && for d in *; do grep -qx busy $d/ref 2>/dev/null && "
	                  "echo 1000 > $d/updatedat && touch -d 2000-01-01 $d/data; done; true"),
	          0);

	struct problems ps = {0};
	ASSERT_OK(cairn_fsck(s, 0, collect, &ps, &n, ERR));
	if (n != 2)
		test_fail(__FILE__, __LINE__, "%zu problems: %s", n, ps.text);
	ASSERT_HAS(ps.text, "ingest|ingest 'stale' ('ingest/");
	ASSERT_HAS(ps.text, "has no writer and was last written");
	ASSERT_HAS(ps.text, "; --repair removes it|0");
	ASSERT_HAS(ps.text, key);
	ASSERT_HAS(ps.text, "has no ref or data file and no writer");
	ASSERT_TRUE(!strstr(ps.text, "busy") && !strstr(ps.text, "wipe"));

	struct problems pr = {0};
	ASSERT_OK(cairn_fsck(s, CAIRN_FSCK_REPAIR, collect, &pr, &n, ERR));
	ASSERT_EQ(n, 0);
	ASSERT_EQ(pr.repaired, 2);
	ASSERT_HAS(pr.text, "(removed)|1");
	ASSERT_FALSE(ingest_exists(s, "stale"));
	ASSERT_TRUE(ingest_exists(s, "resumable"));
	ASSERT_TRUE(ingest_exists(s, "busy"));
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "store/ingest/%s", key);
	ASSERT_TRUE(access(path, F_OK) < 0);
	/* Closed, the writer refreshed its time: resumable. */
	ASSERT_OK(content_writer_close(w, ERR));
	ASSERT_OK(cairn_fsck(s, 0, NULL, NULL, &n, ERR));
	ASSERT_EQ(n, 0);
	cairn_store_close(s);
}

/* Runs @sql on the store's database through a connection of its own, where foreign keys are
 * off (as in any tool that might damage it). */
static void raw_sql(const char *sql)
{
	sqlite3 *db = NULL;
	ASSERT_EQ(sqlite3_open("store/meta.db", &db), SQLITE_OK);
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		test_fail(__FILE__, __LINE__, "%s: %s", sql, msg);
	sqlite3_close(db);
}

/* Snapshot chains: a parent that is missing, one that is not committed, a loop, and a record
 * whose snapshot does not sit on its parent record's. The repair removes those snapshots (and
 * what sits on them) and marks their records for re-extraction from their blobs; a snapshot
 * that holds a record's only data stays, reported as not repaired. */
TEST(fsck_snapshot_chains)
{
	cairn_store *s = open_store(CAIRN_STORE_EXCLUSIVE);
	char b1[80], b2[80], b3[80], b4[80], b5[80];
	committed(s, "base", NULL);
	committed(s, "mid", "base");
	blob(s, "base blob", b1);
	blob(s, "mid blob", b2);
	record(s, "r-base", "base", b1, NULL, false);
	record(s, "r-mid", "mid", b2, "r-base", false);
	/* Same chain id as r-mid, on its own copy of base's layers: not a problem. */
	size_t n = 99;
	ASSERT_OK(cairn_fsck(s, 0, NULL, NULL, &n, ERR));
	ASSERT_EQ(n, 0);

	/* r-wrong's parent is r-base, but its snapshot sits on nothing. */
	committed(s, "w-snap", NULL);
	blob(s, "wrong blob", b3);
	record(s, "r-wrong", "w-snap", b3, "r-base", false);
	/* on-act sits on an active snapshot; dangle on a snapshot that does not exist, and
	 * dangle-child on dangle. */
	ASSERT_OK(snap_prepare(s->snap, "act", NULL, NULL, 0, NULL, NULL, ERR));
	committed(s, "on-act", NULL);
	committed(s, "dangle", NULL);
	committed(s, "dangle-child", "dangle");
	blob(s, "dangle blob", b4);
	record(s, "r-dangle", "dangle-child", b4, NULL, false);
	/* loop1 and loop2 are each other's parent; r-loop's only data is loop1. */
	committed(s, "loop1", NULL);
	committed(s, "loop2", NULL);
	record(s, "r-loop", "loop1", NULL, NULL, false);
	blob(s, "unused", b5);
	raw_sql("UPDATE snapshots SET parent = (SELECT id FROM snapshots WHERE name = 'act') "
	        "WHERE name = 'on-act';"
	        "UPDATE snapshots SET parent = 999999 WHERE name = 'dangle';"
	        "UPDATE snapshots SET parent = (SELECT id FROM snapshots WHERE name = 'loop2') "
	        "WHERE name = 'loop1';"
	        "UPDATE snapshots SET parent = (SELECT id FROM snapshots WHERE name = 'loop1') "
	        "WHERE name = 'loop2';");

	struct problems ps = {0};
	ASSERT_OK(cairn_fsck(s, 0, collect, &ps, &n, ERR));
	ASSERT_HAS(ps.text,
	           "record|record 'r-wrong': its snapshot 'w-snap' sits on nothing, but its "
	           "parent record 'r-base' has snapshot 'base'; --repair removes the "
	           "snapshot|0");
	ASSERT_HAS(ps.text,
	           "snapshot 'on-act' (native): its parent 'act' is not committed (Active)");
	ASSERT_HAS(ps.text, "snapshot 'dangle' (native, id ");
	ASSERT_HAS(ps.text, "its parent snapshot (id 999999) does not exist");
	ASSERT_HAS(ps.text, "snapshot 'dangle-child' (native) sits on 'dangle', a broken snapshot");
	ASSERT_HAS(ps.text, "snapshot 'loop1' (native): its chain of parents loops back on itself");
	ASSERT_HAS(ps.text, "snapshot 'loop2' (native): its chain of parents loops back on itself");
	ASSERT_HAS(ps.text,
	           "record 'r-loop': its snapshot 'loop1' is on a broken chain and no blob "
	           "holds its data: remove the record (cairn rm r-loop)");
	ASSERT_TRUE(!strstr(ps.text, "wipe"));
	/* r-wrong, on-act, dangle, dangle-child, loop1, loop2, r-loop */
	if (n != 7)
		test_fail(__FILE__, __LINE__, "%zu problems: %s", n, ps.text);

	struct problems pr = {0};
	ASSERT_OK(cairn_fsck(s, CAIRN_FSCK_REPAIR, collect, &pr, &n, ERR));
	ASSERT_HAS(pr.text, "has snapshot 'base' (snapshot removed)|1");
	ASSERT_HAS(pr.text, "is not committed (Active) (snapshot removed)|1");
	ASSERT_HAS(pr.text, "loops back on itself (kept: a record's only data)|0");
	/* the records lost their snapshots: marked for re-extraction from their blobs */
	ASSERT_HAS(pr.text, "record 'r-wrong': snapshot 'w-snap' (native) is missing (marked not");
	ASSERT_HAS(pr.text,
	           "record 'r-dangle': snapshot 'dangle-child' (native) is missing (marked");
	ASSERT_FALSE(snap_exists(s, "w-snap"));
	ASSERT_FALSE(snap_exists(s, "on-act"));
	ASSERT_FALSE(snap_exists(s, "dangle"));
	ASSERT_FALSE(snap_exists(s, "dangle-child"));
	ASSERT_TRUE(snap_exists(s, "loop1") && snap_exists(s, "loop2"));
	ASSERT_TRUE(snap_exists(s, "act") && snap_exists(s, "mid") && snap_exists(s, "base"));
	/* What is left: the loop and the record that holds it, for the user to decide. */
	struct problems again = {0};
	ASSERT_OK(cairn_fsck(s, 0, collect, &again, &n, ERR));
	if (n != 3)
		test_fail(__FILE__, __LINE__, "%zu problems: %s", n, again.text);
	ASSERT_HAS(again.text, "cairn rm r-loop");
	cairn_store_close(s);
}
