/* SPDX-License-Identifier: MIT */
/*
 * The cache manager: BuildKit's TestManager, TestPrune and TestLazyCommit with their exact
 * counts (spec/buildkit-cache.md §13.2, §13.6, §13.7), the §13.11 extras that need no blobs,
 * crash repair, persistent mounts, names, sizes, bad input, and a stress test of 8 threads
 * (CAIRN_STRESS_SECONDS, default 3). Every test runs on both drivers. Needs root for mounts
 * (the tests that mount skip otherwise).
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/lockstat.h"
#include "cache/internal.h"
#include "cairn/cache.h"
#include "cairn/content.h"
#include "cairn/lease.h"
#include "harness.h"
#include "meta/records.h"
#include "meta/snapshots.h"
#include "snapshot/snapshotter.h"

/* ---- environment ---- */

struct env {
	const char *driver;
	char root[PATH_MAX];
	cairn_store *store;
	cairn_cache *c;
};

static void env_open(struct env *e)
{
	cairn_store_options opts = {.version = CAIRN_STORE_OPTIONS_VERSION,
	                            .snapshotter = e->driver};
	int r = cairn_store_open(e->root, &opts, &e->store, ERR);
	if (r == -EOPNOTSUPP)
		test_skip(cairn_error_message(test_err));
	ASSERT_OK(r);
	ASSERT_OK(cairn_cache_open(e->store, &e->c, ERR));
}

static void env_close(struct env *e)
{
	e->c = cairn_cache_close(e->c);
	e->store = cairn_store_close(e->store);
}

static void env_reopen(struct env *e)
{
	env_close(e);
	env_open(e);
}

static bool is_root(void)
{
	return geteuid() == 0;
}

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
/* The harness ends a test with _exit(), which skips LeakSanitizer: check here instead. */
static void leak_check(void)
{
	if (__lsan_do_recoverable_leak_check())
		test_fail(__FILE__, __LINE__, "memory leaked (see above)");
}
#else
static void leak_check(void)
{
}
#endif

/* Each test runs once per driver. */
#define CACHE_TEST(name)                                                                           \
	static void body_##name(struct env *e);                                                    \
	static void run_##name(const char *driver)                                                 \
	{                                                                                          \
		struct env e = {.driver = driver};                                                 \
		snprintf(e.root, sizeof(e.root), "%s/root", test_dir);                             \
		env_open(&e);                                                                      \
		body_##name(&e);                                                                   \
		env_close(&e);                                                                     \
		leak_check();                                                                      \
	}                                                                                          \
	TEST(name##_overlay)                                                                       \
	{                                                                                          \
		if (!is_root())                                                                    \
			test_skip("overlay needs root");                                           \
		run_##name("overlay");                                                             \
	}                                                                                          \
	TEST(name##_native)                                                                        \
	{                                                                                          \
		run_##name("native");                                                              \
	}                                                                                          \
	static void body_##name(struct env *e)

/* ---- helpers ---- */

static cairn_ref *new_ref(struct env *e, cairn_ref *parent, bool retain)
{
	cairn_new_options o = {.version = CAIRN_NEW_OPTIONS_VERSION,
	                       .policy = retain ? CAIRN_CACHE_POLICY_RETAIN
	                                        : CAIRN_CACHE_POLICY_DEFAULT};
	cairn_ref *ref = NULL;
	ASSERT_OK(cairn_cache_new(e->c, parent, &o, &ref, ERR));
	ASSERT_TRUE(cairn_ref_is_mutable(ref));
	ASSERT_EQ(strlen(cairn_ref_id(ref)), CAIRN_RECORD_ID_LEN);
	return ref;
}

static cairn_ref *commit(cairn_ref *m)
{
	cairn_ref *ref = NULL;
	ASSERT_OK(cairn_ref_commit(m, &ref, ERR));
	ASSERT_FALSE(cairn_ref_is_mutable(ref));
	return ref;
}

static cairn_ref *get(struct env *e, const char *id)
{
	cairn_ref *ref = NULL;
	ASSERT_OK(cairn_cache_get(e->c, id, 0, &ref, ERR));
	return ref;
}

static cairn_ref *get_mutable(struct env *e, const char *id)
{
	cairn_ref *ref = NULL;
	ASSERT_OK(cairn_cache_get_mutable(e->c, id, &ref, ERR));
	return ref;
}

static void release(cairn_ref *ref)
{
	ASSERT_OK(cairn_ref_release(ref, ERR));
}

/* A copy of @ref's id (the ref may be freed afterwards). */
static char *id_of(cairn_ref *ref)
{
	char *s = strdup(cairn_ref_id(ref));
	ASSERT_TRUE(s);
	return s;
}

/* DU(a, b): disk usage has exactly @in_use rows in use and @unused rows not. */
#define DU(e, a, b) check_du(e, a, b, __LINE__)
static void check_du(struct env *e, size_t in_use, size_t unused, int line)
{
	cairn_record_info *infos = NULL;
	size_t n = 0, used = 0;
	ASSERT_OK(cairn_cache_disk_usage(e->c, NULL, 0, &infos, &n, ERR));
	for (size_t i = 0; i < n; i++) {
		used += infos[i].in_use;
		if (infos[i].size < 0)
			test_fail(__FILE__, line, "row '%s' has no size", infos[i].id);
	}
	if (used != in_use || n - used != unused)
		test_fail(__FILE__, line, "DU(%zu, %zu) expected, got DU(%zu, %zu)", in_use, unused,
		          used, n - used);
	cairn_record_infos_free(infos, n);
}

static int prune(struct env *e, unsigned flags)
{
	cairn_prune_options o = {.version = CAIRN_PRUNE_OPTIONS_VERSION, .flags = flags};
	int r = cairn_cache_prune(e->c, &o, ERR);
	ASSERT_OK(r);
	return r;
}

static int count_fn(const snap_info *info, void *userdata)
{
	(*(int *)userdata)++;
	return 0;
}

/* The number of snapshots of the store (active, committed and views). */
static int snap_count(struct env *e)
{
	int n = 0;
	ASSERT_OK(snap_walk(e->store->snap, NULL, 0, count_fn, &n, ERR));
	return n;
}

/* The number of record rows (tombstones included) of the store. */
static int count_row(const struct meta_record *r, void *userdata)
{
	(*(int *)userdata)++;
	return 0;
}

static int row_count(struct env *e)
{
	int n = 0;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(e->store->db, &tx, false, ERR));
	ASSERT_OK(meta_record_list(&tx, e->driver, count_row, &n, ERR));
	return n;
}

static cairn_record_info *info(struct env *e, const char *id)
{
	cairn_record_info *i = NULL;
	ASSERT_OK(cairn_cache_info(e->c, id, &i, ERR));
	return i;
}

/* Writes @size bytes to @name in the own layer of snapshot @key. */
static void write_in(struct env *e, const char *key, const char *name, size_t size)
{
	int dfd = snap_open_fs(e->store->snap, key, NULL, ERR);
	ASSERT_OK(dfd);
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_TRUE(fd >= 0);
	char buf[4096];
	memset(buf, 'x', sizeof(buf));
	for (size_t done = 0; done < size;) {
		size_t n = size - done < sizeof(buf) ? size - done : sizeof(buf);
		ASSERT_EQ(write(fd, buf, n), (ssize_t)n);
		done += n;
	}
	ASSERT_OK(fsync(fd));
	close(fd);
	close(dfd);
}

/* ---- BuildKit's tests ---- */

/* §13.2 TestManager */
CACHE_TEST(manager)
{
	cairn_ref *ref = NULL;
	ASSERT_ERR(cairn_cache_get(e->c, "foobar", 0, &ref, ERR), -ENOENT);
	ASSERT_ERRMSG("record 'foobar' not found");
	DU(e, 0, 0);

	cairn_ref *a = new_ref(e, NULL, true);
	if (is_root()) {
		cairn_mount *m = NULL;
		size_t n = 0;
		char target[PATH_MAX];
		snprintf(target, sizeof(target), "%s/mnt", test_dir);
		ASSERT_OK(mkdir(target, 0755));
		ASSERT_OK(cairn_ref_mount(a, false, &m, &n, ERR));
		ASSERT_OK(cairn_mount_apply(m, n, target, ERR));
		struct stat st;
		ASSERT_OK(stat(target, &st));
		ASSERT_TRUE(S_ISDIR(st.st_mode));
		ASSERT_OK(cairn_unmount(target, ERR));
		cairn_mounts_free(m, n);
	}
	_cleanup_free_ char *aid = id_of(a);
	ASSERT_ERR(cairn_cache_get_mutable(e->c, aid, &ref, ERR), CAIRN_ELOCKED);
	DU(e, 1, 0);

	cairn_ref *s = commit(a);
	DU(e, 1, 0);
	ASSERT_ERR(cairn_cache_get_mutable(e->c, aid, &ref, ERR), CAIRN_ELOCKED);

	release(s);
	DU(e, 0, 1);

	cairn_ref *a2 = get_mutable(e, aid);
	DU(e, 1, 0);

	cairn_ref *s1 = commit(a2);
	DU(e, 1, 0);
	ASSERT_OK(cairn_ref_finalize(s1, ERR));
	release(s1);

	ASSERT_ERR(cairn_cache_get_mutable(e->c, aid, &ref, ERR), -ENOENT);
	_cleanup_free_ char *sid = id_of(s1);
	ASSERT_ERR(cairn_cache_get_mutable(e->c, sid, &ref, ERR), -EINVAL);

	cairn_ref *s2 = get(e, sid), *s3 = get(e, sid);
	DU(e, 1, 0);
	release(s2);

	cairn_ref *a3 = new_ref(e, s3, true);
	DU(e, 2, 0);
	cairn_ref *s4 = commit(a3);
	release(s3);
	DU(e, 2, 0);

	release(s4);
	DU(e, 0, 2);

	ASSERT_EQ(prune(e, 0), 2);
	DU(e, 0, 0);

	cairn_ref *refs[] = {a, s, a2, s1, s2, s3, a3, s4};
	for (size_t i = 0; i < ELEMENTSOF(refs); i++)
		cairn_ref_free(refs[i]);
	e->c = cairn_cache_close(e->c);
	ASSERT_EQ(snap_count(e), 0);
}

/* §13.6 TestPrune */
CACHE_TEST(prune)
{
	cairn_ref *a = new_ref(e, NULL, false);
	cairn_ref *s = commit(a);
	cairn_ref *a2 = new_ref(e, s, true);
	cairn_ref *s2 = commit(a2);
	DU(e, 2, 0);
	ASSERT_EQ(snap_count(e), 2);

	ASSERT_EQ(prune(e, 0), 0);
	DU(e, 2, 0);
	ASSERT_EQ(snap_count(e), 2);

	release(s2);
	DU(e, 1, 1);
	ASSERT_EQ(prune(e, 0), 1);
	DU(e, 1, 0);
	ASSERT_EQ(snap_count(e), 1);

	release(s);
	cairn_ref *a3 = new_ref(e, s, true); /* only the id of the released s is used */
	cairn_ref *s3 = commit(a3);
	release(s); /* again: harmless */
	DU(e, 2, 0);

	ASSERT_EQ(prune(e, 0), 0);
	DU(e, 2, 0);

	release(s3);
	DU(e, 0, 2);
	ASSERT_EQ(prune(e, 0), 2);
	DU(e, 0, 0);
	ASSERT_EQ(snap_count(e), 0);

	cairn_ref *refs[] = {a, s, a2, s2, a3, s3};
	for (size_t i = 0; i < ELEMENTSOF(refs); i++)
		cairn_ref_free(refs[i]);
}

/* §13.7 TestLazyCommit */
CACHE_TEST(lazy_commit)
{
	cairn_ref *ref = NULL;
	cairn_ref *a = new_ref(e, NULL, true);
	_cleanup_free_ char *aid = id_of(a);
	cairn_ref *s = commit(a);
	_cleanup_free_ char *sid = id_of(s);
	ASSERT_ERR(cairn_cache_get_mutable(e->c, aid, &ref, ERR), CAIRN_ELOCKED);

	cairn_ref *s2 = get(e, sid);
	ASSERT_STREQ(cairn_ref_id(s2), sid);
	release(s);
	release(s2);

	cairn_ref *s3 = get(e, sid);
	ASSERT_STREQ(cairn_ref_id(s3), sid);
	ASSERT_ERR(cairn_cache_get_mutable(e->c, aid, &ref, ERR), CAIRN_ELOCKED);

	release(s3);
	cairn_ref *a2 = get_mutable(e, aid);
	ASSERT_STREQ(cairn_ref_id(a2), aid);
	ASSERT_ERR(cairn_cache_get(e->c, sid, 0, &ref, ERR), -ENOENT);

	cairn_ref *s4 = commit(a2);
	_cleanup_free_ char *s4id = id_of(s4);
	ASSERT_OK(cairn_ref_finalize(s4, ERR));
	release(s4);
	ASSERT_ERR(cairn_cache_get_mutable(e->c, aid, &ref, ERR), -ENOENT);
	cairn_ref *s5 = get(e, s4id);
	release(s5);
	cairn_ref *refs[] = {a, s, s2, s3, a2, s4, s5};
	for (size_t i = 0; i < ELEMENTSOF(refs); i++)
		cairn_ref_free(refs[i]);

	/* Restart: a lazy commit survives a close and reopen. */
	cairn_ref *b = new_ref(e, NULL, true);
	_cleanup_free_ char *bid = id_of(b);
	cairn_ref *t = commit(b);
	_cleanup_free_ char *tid = id_of(t);
	env_reopen(e);
	cairn_ref_free(b);
	cairn_ref_free(t);

	cairn_ref *t2 = get(e, tid);
	release(t2);
	cairn_ref *b2 = get_mutable(e, bid);
	ASSERT_ERR(cairn_cache_get(e->c, tid, 0, &ref, ERR), -ENOENT);

	cairn_ref *t3 = commit(b2);
	_cleanup_free_ char *t3id = id_of(t3);
	env_reopen(e);
	cairn_ref_free(b2);
	cairn_ref_free(t3);

	cairn_ref *t4 = get(e, t3id);
	ASSERT_OK(cairn_ref_finalize(t4, ERR));
	release(t4);
	ASSERT_ERR(cairn_cache_get_mutable(e->c, bid, &ref, ERR), -ENOENT);
	cairn_ref_free(t2);
	cairn_ref_free(t4);
}

/* ---- §13.11 extras without blobs ---- */

/* Crash between tombstone and removal: the next open finishes the removal. */
CACHE_TEST(tombstone_reopen)
{
	cairn_ref *a = new_ref(e, NULL, true);
	cairn_ref *s = commit(a);
	ASSERT_OK(cairn_ref_finalize(s, ERR));
	_cleanup_free_ char *sid = id_of(s);
	cairn_ref_free(s);
	cairn_ref_free(a);
	ASSERT_EQ(snap_count(e), 1);
	{
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		ASSERT_OK(meta_tx_begin(e->store->db, &tx, true, ERR));
		ASSERT_OK(meta_record_set_deleted(&tx, sid, true, ERR));
		ASSERT_OK(meta_tx_commit(&tx, ERR));
	}
	/* A tombstone is invisible at once. */
	cairn_ref *ref = NULL;
	ASSERT_ERR(cairn_cache_get(e->c, sid, 0, &ref, ERR), -ENOENT);
	DU(e, 0, 0);
	env_reopen(e);
	ASSERT_ERR(cairn_cache_get(e->c, sid, 0, &ref, ERR), -ENOENT);
	ASSERT_EQ(snap_count(e), 0);
	ASSERT_EQ(row_count(e), 0);
}

/* Start-up with a lazy pair whose mutable lost its snapshot: both are cleared. */
CACHE_TEST(reopen_missing_equal_mutable)
{
	cairn_ref *a = new_ref(e, NULL, true);
	_cleanup_free_ char *aid = id_of(a);
	cairn_ref *s = commit(a);
	_cleanup_free_ char *sid = id_of(s);
	cairn_ref *keep = new_ref(e, NULL, true);
	_cleanup_free_ char *kid = id_of(keep);
	release(keep);
	e->c = cairn_cache_close(e->c);
	cairn_ref_free(a);
	cairn_ref_free(s);
	cairn_ref_free(keep);
	ASSERT_OK(snap_remove(e->store->snap, aid, ERR));
	ASSERT_OK(cairn_cache_open(e->store, &e->c, ERR));
	cairn_ref *ref = NULL;
	ASSERT_ERR(cairn_cache_get(e->c, sid, 0, &ref, ERR), -ENOENT);
	ASSERT_ERR(cairn_cache_get_mutable(e->c, aid, &ref, ERR), -ENOENT);
	ASSERT_EQ(row_count(e), 1);
	cairn_ref *k = get_mutable(e, kid);
	cairn_ref_free(k);
}

/* A finalize interrupted between the snapshot commit and the rows is completed on open. */
CACHE_TEST(reopen_interrupted_finalize)
{
	cairn_ref *a = new_ref(e, NULL, true);
	_cleanup_free_ char *aid = id_of(a);
	write_in(e, aid, "f", 100);
	cairn_ref *s = commit(a);
	_cleanup_free_ char *sid = id_of(s);
	e->c = cairn_cache_close(e->c);
	cairn_ref_free(a);
	cairn_ref_free(s);
	ASSERT_OK(snap_commit(e->store->snap, sid, aid, NULL, 0, ERR));
	ASSERT_OK(cairn_cache_open(e->store, &e->c, ERR));
	cairn_ref *ref = NULL;
	ASSERT_ERR(cairn_cache_get_mutable(e->c, aid, &ref, ERR), -ENOENT);
	cairn_ref *s2 = get(e, sid);
	cairn_record_info *i = info(e, sid);
	ASSERT_TRUE(i->equal_mutable == NULL);
	ASSERT_STREQ(i->snapshot_id, sid);
	cairn_record_infos_free(i, 1);
	ASSERT_EQ(row_count(e), 1);
	cairn_ref_free(s2);
}

/* A record whose snapshot is gone is dropped with its descendants. */
CACHE_TEST(reopen_missing_snapshot_drops_subtree)
{
	cairn_ref *a = new_ref(e, NULL, false);
	cairn_ref *s = commit(a);
	_cleanup_free_ char *sid = id_of(s);
	cairn_ref *b = new_ref(e, s, true);
	cairn_ref *t = commit(b);
	ASSERT_OK(cairn_ref_finalize(t, ERR));
	cairn_ref *c2 = new_ref(e, t, true);
	cairn_ref *other = new_ref(e, NULL, true);
	cairn_ref *refs[] = {a, s, b, t, c2, other};
	e->c = cairn_cache_close(e->c);
	for (size_t i = 0; i < ELEMENTSOF(refs); i++)
		cairn_ref_free(refs[i]);
	ASSERT_EQ(row_count(e), 4);
	/* Make s's data vanish the way a lost directory does: reconcile drops the rows. */
	char path[PATH_MAX];
	int64_t snapid = 0;
	{
		struct meta_snapshot ms;
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		ASSERT_OK(meta_tx_begin(e->store->db, &tx, false, ERR));
		ASSERT_EQ(meta_snapshot_get(&tx, e->driver, sid, &ms, ERR), 1);
		snapid = ms.id;
		meta_snapshot_clear(&ms);
	}
	snprintf(path, sizeof(path), "%s/snapshots/%lld/fs", e->root, (long long)snapid);
	ASSERT_EQ(test_sh("rm -rf '%s'", path), 0);
	ASSERT_OK(snap_reconcile(e->store->snap, ERR));
	ASSERT_OK(cairn_cache_open(e->store, &e->c, ERR));
	ASSERT_EQ(row_count(e), 1);
	DU(e, 0, 1);
}

/* cairn does not commit a mutable implicitly on get (BuildKit did: spec §12 quirk 10). */
CACHE_TEST(get_mutable_id)
{
	cairn_ref *a = new_ref(e, NULL, true);
	_cleanup_free_ char *aid = id_of(a);
	cairn_ref *ref = NULL;
	ASSERT_ERR(cairn_cache_get(e->c, aid, 0, &ref, ERR), CAIRN_ELOCKED);
	release(a);
	ASSERT_ERR(cairn_cache_get(e->c, aid, 0, &ref, ERR), -EINVAL);
	ASSERT_ERRMSG("not committed");
	ASSERT_EQ(row_count(e), 1);
	DU(e, 0, 1);
	ASSERT_EQ(row_count(e), 1);
	/* With a committed partner, get returns the partner. */
	cairn_ref *a2 = get_mutable(e, aid);
	cairn_ref *s = commit(a2);
	release(s);
	cairn_ref *s2 = get(e, aid);
	ASSERT_STREQ(cairn_ref_id(s2), cairn_ref_id(s));
	/* ANY_KIND gives the mutable itself (taking its data back from the unheld partner). */
	release(s2);
	ASSERT_OK(cairn_cache_get(e->c, aid, CAIRN_CACHE_GET_ANY_KIND, &ref, ERR));
	ASSERT_TRUE(cairn_ref_is_mutable(ref));
	cairn_ref *refs[] = {a, a2, s, s2, ref};
	for (size_t i = 0; i < ELEMENTSOF(refs); i++)
		cairn_ref_free(refs[i]);
}

/* Retain on the immutable half keeps a default mutable alive; without it both go. */
CACHE_TEST(retain_immutable_half)
{
	cairn_ref *a = new_ref(e, NULL, false);
	cairn_ref *s = commit(a);
	_cleanup_free_ char *sid = id_of(s);
	ASSERT_OK(cairn_ref_set_cache_policy(s, CAIRN_CACHE_POLICY_RETAIN, ERR));
	release(s);
	DU(e, 0, 1);
	cairn_ref *s2 = get(e, sid);
	ASSERT_OK(cairn_ref_set_cache_policy(s2, CAIRN_CACHE_POLICY_DEFAULT, ERR));
	release(s2);
	DU(e, 0, 0);
	ASSERT_EQ(row_count(e), 0);
	ASSERT_EQ(snap_count(e), 0);
	cairn_ref_free(a);
	cairn_ref_free(s);
	cairn_ref_free(s2);
	/* A default mutable released before commit goes too. */
	cairn_ref *b = new_ref(e, NULL, false);
	release(b);
	cairn_ref_free(b);
	ASSERT_EQ(row_count(e), 0);
	ASSERT_EQ(snap_count(e), 0);
}

/* Filters of disk usage and prune (containerd syntax, every field; spec §5.10). */
CACHE_TEST(filters)
{
	cairn_new_options o = {.version = CAIRN_NEW_OPTIONS_VERSION,
	                       .policy = CAIRN_CACHE_POLICY_RETAIN,
	                       .description = "build step one",
	                       .record_type = "exec.cachemount"};
	cairn_ref *a = NULL;
	ASSERT_OK(cairn_cache_new(e->c, NULL, &o, &a, ERR));
	cairn_ref *b = new_ref(e, NULL, true);
	cairn_ref *s = commit(b);
	ASSERT_OK(cairn_ref_finalize(s, ERR));
	release(a);
	cairn_record_info *infos = NULL;
	size_t n = 0;
	const char *f1[] = {"type==exec.cachemount"};
	ASSERT_OK(cairn_cache_disk_usage(e->c, f1, 1, &infos, &n, ERR));
	ASSERT_EQ(n, 1);
	ASSERT_STREQ(infos[0].id, cairn_ref_id(a));
	ASSERT_STREQ(infos[0].description, "build step one");
	cairn_record_infos_free(infos, n);
	const char *f2[] = {"mutable"};
	ASSERT_OK(cairn_cache_disk_usage(e->c, f2, 1, &infos, &n, ERR));
	ASSERT_EQ(n, 1);
	cairn_record_infos_free(infos, n);
	const char *f3[] = {"immutable,inuse"};
	ASSERT_OK(cairn_cache_disk_usage(e->c, f3, 1, &infos, &n, ERR));
	ASSERT_EQ(n, 1);
	ASSERT_STREQ(infos[0].id, cairn_ref_id(s));
	cairn_record_infos_free(infos, n);
	char re[64];
	snprintf(re, sizeof(re), "id~=^%.6s", cairn_ref_id(s));
	const char *f4[] = {re, "description==\"build step one\""};
	ASSERT_OK(cairn_cache_disk_usage(e->c, f4, 2, &infos, &n, ERR));
	ASSERT_EQ(n, 2);
	cairn_record_infos_free(infos, n);
	const char *f5[] = {"private", "shared"};
	ASSERT_OK(cairn_cache_disk_usage(e->c, f5, 2, &infos, &n, ERR));
	ASSERT_EQ(n, 2);
	cairn_record_infos_free(infos, n);
	const char *bad[] = {"id==\"unterminated"};
	ASSERT_ERR(cairn_cache_disk_usage(e->c, bad, 1, &infos, &n, ERR), -EINVAL);

	/* Prune with a filter takes only what matches, parent/description/inuse included. */
	cairn_prune_options po = {.version = CAIRN_PRUNE_OPTIONS_VERSION,
	                          .filters = (const char *[]){"description~=step"},
	                          .n_filters = 1};
	ASSERT_EQ(cairn_cache_prune(e->c, &po, ERR), 1);
	DU(e, 1, 0);
	release(s);
	po.filters = (const char *[]){"inuse"};
	ASSERT_EQ(cairn_cache_prune(e->c, &po, ERR), 0);
	DU(e, 0, 1);
	cairn_ref_free(a);
	cairn_ref_free(b);
	cairn_ref_free(s);
}

/* ---- refs ---- */

/* A use is counted once per last triggering release; clone and NO_UPDATE do not count. */
CACHE_TEST(usage_count)
{
	cairn_ref *a = new_ref(e, NULL, true);
	cairn_ref *s = commit(a);
	ASSERT_OK(cairn_ref_finalize(s, ERR));
	_cleanup_free_ char *sid = id_of(s);
	cairn_record_info *i = info(e, sid);
	ASSERT_EQ(i->usage_count, 0);
	ASSERT_EQ(i->last_used, 0);
	ASSERT_TRUE(i->created_at > 0);
	cairn_record_infos_free(i, 1);

	cairn_ref *c1 = NULL;
	ASSERT_OK(cairn_ref_clone(s, &c1, ERR));
	release(s);
	release(s); /* twice: no second use */
	i = info(e, sid);
	ASSERT_EQ(i->usage_count, 1);
	ASSERT_TRUE(i->last_used >= i->created_at);
	cairn_record_infos_free(i, 1);
	release(c1); /* a clone triggers nothing */
	cairn_ref *n1 = NULL;
	ASSERT_OK(cairn_cache_get(e->c, sid, CAIRN_CACHE_GET_NO_UPDATE_LAST_USED, &n1, ERR));
	release(n1);
	cairn_ref *g1 = get(e, sid), *g2 = get(e, sid);
	release(g1);
	release(g2);
	i = info(e, sid);
	ASSERT_EQ(i->usage_count, 2);
	cairn_record_infos_free(i, 1);
	cairn_ref *refs[] = {a, s, c1, n1, g1, g2};
	for (size_t k = 0; k < ELEMENTSOF(refs); k++)
		cairn_ref_free(refs[k]);
}

/* Refs in the wrong state are refused, naming the ref; nothing changes. */
CACHE_TEST(bad_state)
{
	cairn_ref *a = new_ref(e, NULL, true);
	cairn_ref *s = commit(a);
	cairn_ref *ref = NULL;
	cairn_mount *m = NULL;
	size_t n = 0;
	ASSERT_ERR(cairn_ref_commit(a, &ref, ERR), -EINVAL);
	ASSERT_ERRMSG("was committed");
	ASSERT_ERRMSG(cairn_ref_id(a));
	ASSERT_ERR(cairn_ref_mount(a, false, &m, &n, ERR), -EINVAL);
	ASSERT_ERR(cairn_ref_commit(s, &ref, ERR), -EINVAL);
	ASSERT_ERR(cairn_ref_clone(a, &ref, ERR), -EINVAL);
	release(a); /* harmless */
	release(s);
	ASSERT_ERR(cairn_ref_mount(s, true, &m, &n, ERR), -EINVAL);
	ASSERT_ERRMSG("was released");
	ASSERT_ERR(cairn_ref_finalize(s, ERR), -EINVAL);
	int64_t size;
	ASSERT_ERR(cairn_ref_size(s, &size, ERR), -EINVAL);
	cairn_new_options bad = {.version = 99};
	ASSERT_ERR(cairn_cache_new(e->c, NULL, &bad, &ref, ERR), -EINVAL);
	ASSERT_ERR(cairn_cache_get(e->c, cairn_ref_id(s), 1u << 7, &ref, ERR), -EINVAL);
	ASSERT_ERR(cairn_cache_get(e->c, "../../etc", 0, &ref, ERR), -ENOENT);
	/* A mutable parent is refused. */
	cairn_ref *b = new_ref(e, NULL, true);
	ASSERT_ERR(cairn_cache_new(e->c, b, NULL, &ref, ERR), -EINVAL);
	ASSERT_ERRMSG("mutable");
	cairn_ref_free(a);
	cairn_ref_free(s);
	cairn_ref_free(b);
	/* After close, refs are inert but can be freed. */
	cairn_ref *c1 = new_ref(e, NULL, true);
	e->c = cairn_cache_close(e->c);
	ASSERT_ERR(cairn_ref_size(c1, &size, ERR), -EBADF);
	cairn_ref_free(c1);
	ASSERT_OK(cairn_cache_open(e->store, &e->c, ERR));
}

CACHE_TEST(parent_and_info)
{
	cairn_new_options o = {.version = CAIRN_NEW_OPTIONS_VERSION, .description = "base"};
	cairn_ref *a = NULL;
	ASSERT_OK(cairn_cache_new(e->c, NULL, &o, &a, ERR));
	cairn_ref *s = commit(a);
	cairn_ref *p = NULL;
	ASSERT_OK(cairn_ref_parent(s, &p, ERR));
	ASSERT_TRUE(p == NULL);
	cairn_record_info *i = NULL;
	ASSERT_OK(cairn_ref_info(s, &i, ERR));
	ASSERT_FALSE(i->is_mutable);
	ASSERT_TRUE(i->in_use);
	ASSERT_STREQ(i->description, "base");
	ASSERT_STREQ(i->record_type, "regular");
	ASSERT_STREQ(i->equal_mutable, cairn_ref_id(a));
	ASSERT_STREQ(i->snapshot_id, cairn_ref_id(a));
	ASSERT_TRUE(i->extracted);
	ASSERT_TRUE(!i->blob && !i->diff_id && !i->chain_id && !i->blob_chain_id && !i->media_type);
	ASSERT_EQ(i->size, -1);
	cairn_record_infos_free(i, 1);
	i = info(e, cairn_ref_id(a));
	ASSERT_TRUE(i->is_mutable);
	ASSERT_TRUE(i->in_use); /* through its held partner */
	ASSERT_STREQ(i->equal_immutable, cairn_ref_id(s));
	cairn_record_infos_free(i, 1);

	cairn_ref *b = new_ref(e, s, false);
	ASSERT_OK(cairn_ref_set_record_type(b, "internal", ERR));
	cairn_ref *t = commit(b);
	ASSERT_OK(cairn_ref_parent(t, &p, ERR));
	ASSERT_STREQ(cairn_ref_id(p), cairn_ref_id(s));
	i = info(e, cairn_ref_id(t));
	ASSERT_STREQ(i->parent, cairn_ref_id(s));
	ASSERT_STREQ(i->description, "");
	ASSERT_STREQ(i->record_type, "regular"); /* not copied by commit (as BuildKit) */
	cairn_record_infos_free(i, 1);
	i = info(e, cairn_ref_id(s));
	ASSERT_TRUE(i->equal_mutable == NULL); /* finalized by being a parent */
	ASSERT_STREQ(i->snapshot_id, cairn_ref_id(s));
	cairn_record_infos_free(i, 1);
	cairn_record_info *all = NULL;
	size_t n = 0;
	ASSERT_OK(cairn_cache_list(e->c, &all, &n, ERR));
	ASSERT_EQ(n, 3); /* s, b, t */
	cairn_record_infos_free(all, n);
	cairn_ref *refs[] = {a, s, p, b, t};
	for (size_t k = 0; k < ELEMENTSOF(refs); k++)
		cairn_ref_free(refs[k]);
}

/* Sizes: computed lazily, stored, and recomputed when the content changed. */
CACHE_TEST(size)
{
	cairn_ref *a = new_ref(e, NULL, true);
	_cleanup_free_ char *aid = id_of(a);
	write_in(e, aid, "small", 10000);
	int64_t s1 = 0, s2 = 0;
	ASSERT_OK(cairn_ref_size(a, &s1, ERR));
	ASSERT_TRUE(s1 >= 10000);
	release(a);
	cairn_record_info *i = info(e, aid);
	ASSERT_EQ(i->size, -1);
	cairn_record_infos_free(i, 1);
	DU(e, 0, 1);
	i = info(e, aid);
	ASSERT_TRUE(i->size >= 10000 && i->size < 1000000);
	int64_t by_id = 0;
	ASSERT_OK(cairn_cache_size(e->c, aid, &by_id, ERR));
	ASSERT_EQ(by_id, i->size);
	cairn_record_infos_free(i, 1);
	ASSERT_ERR(cairn_cache_size(e->c, "nosuch", &by_id, ERR), -ENOENT);

	cairn_ref *a2 = get_mutable(e, aid);
	write_in(e, aid, "big", 2000000);
	ASSERT_OK(cairn_ref_size(a2, &s2, ERR));
	ASSERT_TRUE(s2 >= 2000000);
	cairn_ref *s = commit(a2);
	int64_t s3 = 0;
	ASSERT_OK(cairn_ref_size(s, &s3, ERR));
	ASSERT_TRUE(s3 >= 2000000);
	ASSERT_OK(cairn_ref_finalize(s, ERR));
	ASSERT_OK(cairn_ref_size(s, &s3, ERR));
	ASSERT_TRUE(s3 >= 2000000);
	i = info(e, cairn_ref_id(s));
	ASSERT_EQ(i->size, s3);
	cairn_record_infos_free(i, 1);
	cairn_ref_free(a);
	cairn_ref_free(a2);
	cairn_ref_free(s);
}

/* Concurrent size calls share one computation and agree. */
struct size_thread {
	cairn_ref *ref;
	int64_t size;
	int r;
};

static void *size_thread_fn(void *arg)
{
	struct size_thread *t = arg;
	cairn_error *err = NULL;
	t->r = cairn_ref_size(t->ref, &t->size, &err);
	cairn_error_free(err);
	return NULL;
}

CACHE_TEST(size_concurrent)
{
	cairn_ref *a = new_ref(e, NULL, true);
	for (int k = 0; k < 50; k++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", k);
		write_in(e, cairn_ref_id(a), name, 5000);
	}
	cairn_ref *s = commit(a);
	ASSERT_OK(cairn_ref_finalize(s, ERR));
	struct size_thread t[6];
	pthread_t th[6];
	for (int k = 0; k < 6; k++) {
		t[k] = (struct size_thread){0};
		ASSERT_OK(cairn_ref_clone(s, &t[k].ref, ERR));
		ASSERT_EQ(pthread_create(&th[k], NULL, size_thread_fn, &t[k]), 0);
	}
	for (int k = 0; k < 6; k++) {
		pthread_join(th[k], NULL);
		ASSERT_OK(t[k].r);
		ASSERT_EQ(t[k].size, t[0].size);
		cairn_ref_free(t[k].ref);
	}
	ASSERT_TRUE(t[0].size >= 250000);
	cairn_ref_free(a);
	cairn_ref_free(s);
}

/* Mounts of an immutable share one view, dropped with the last ref. */
CACHE_TEST(view_shared)
{
	cairn_ref *a = new_ref(e, NULL, true);
	write_in(e, cairn_ref_id(a), "hello", 5);
	cairn_ref *s = commit(a);
	cairn_mount *m1 = NULL, *m2 = NULL, *m3 = NULL;
	size_t n1 = 0, n2 = 0, n3 = 0;
	/* Read-only on a lazy immutable: the mutable's data, no finalize, no view. */
	ASSERT_OK(cairn_ref_mount(s, true, &m1, &n1, ERR));
	ASSERT_EQ(snap_count(e), 1);
	cairn_record_info *i = info(e, cairn_ref_id(s));
	ASSERT_TRUE(i->equal_mutable != NULL);
	cairn_record_infos_free(i, 1);
	for (size_t k = 0; k < n1; k++)
		for (size_t o = 0; o < m1[k].n_options; o++) {
			ASSERT_TRUE(strncmp(m1[k].options[o], "upperdir=", 9) != 0);
			ASSERT_TRUE(strcmp(m1[k].options[o], "rw") != 0);
		}
	cairn_mounts_free(m1, n1);

	cairn_ref *s2 = NULL;
	ASSERT_OK(cairn_ref_clone(s, &s2, ERR));
	ASSERT_OK(cairn_ref_mount(s, false, &m1, &n1, ERR)); /* finalizes, makes the view */
	ASSERT_OK(cairn_ref_mount(s2, true, &m2, &n2, ERR));
	ASSERT_EQ(snap_count(e), 2);
	ASSERT_EQ(n1, n2);
	ASSERT_STREQ(m1[0].source, m2[0].source);
	if (is_root()) {
		char target[PATH_MAX], file[PATH_MAX + 16];
		snprintf(target, sizeof(target), "%s/v", test_dir);
		snprintf(file, sizeof(file), "%s/hello", target);
		ASSERT_OK(mkdir(target, 0755));
		ASSERT_OK(cairn_mount_apply(m2, n2, target, ERR));
		ASSERT_OK(access(file, R_OK));
		ASSERT_OK(cairn_unmount(target, ERR));
	}
	release(s);
	ASSERT_EQ(snap_count(e), 2);
	ASSERT_OK(cairn_ref_mount(s2, true, &m3, &n3, ERR));
	ASSERT_STREQ(m3[0].source, m2[0].source);
	release(s2);
	ASSERT_EQ(snap_count(e), 1); /* the view went with the last ref */
	cairn_mounts_free(m1, n1);
	cairn_mounts_free(m2, n2);
	cairn_mounts_free(m3, n3);
	cairn_ref_free(a);
	cairn_ref_free(s);
	cairn_ref_free(s2);
}

/* Closing the manager drops the views of refs still alive, and nothing else. */
CACHE_TEST(close_drops_views)
{
	cairn_ref *a = new_ref(e, NULL, true);
	cairn_ref *s = commit(a);
	cairn_mount *m = NULL;
	size_t n = 0;
	ASSERT_OK(cairn_ref_mount(s, true, &m, &n, ERR));
	cairn_mounts_free(m, n);
	ASSERT_OK(cairn_ref_finalize(s, ERR));
	ASSERT_OK(cairn_ref_mount(s, true, &m, &n, ERR));
	cairn_mounts_free(m, n);
	ASSERT_EQ(snap_count(e), 2);
	e->c = cairn_cache_close(e->c);
	ASSERT_EQ(snap_count(e), 1);
	cairn_ref_free(a);
	cairn_ref_free(s);
	ASSERT_OK(cairn_cache_open(e->store, &e->c, ERR));
	ASSERT_EQ(row_count(e), 1);
	DU(e, 0, 1);
}

/* The view of a process that died is cleared by the next open; a live one's is kept. */
CACHE_TEST(dead_process_view)
{
	cairn_ref *a = new_ref(e, NULL, true);
	cairn_ref *s = commit(a);
	ASSERT_OK(cairn_ref_finalize(s, ERR));
	_cleanup_free_ char *sid = id_of(s);
	char type[64];
	snprintf(type, sizeof(type), "snapshots/%s", e->driver);
	pid_t child = fork();
	ASSERT_TRUE(child >= 0);
	if (child == 0)
		_exit(0);
	ASSERT_EQ(waitpid(child, NULL, 0), child);
	{
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		ASSERT_OK(meta_tx_begin(e->store->db, &tx, true, ERR));
		ASSERT_OK(meta_temp_lease_add(&tx, "view-dead", type, "view-dead", child, 1, ERR));
		ASSERT_OK(meta_temp_lease_add(&tx, "view-live", type, "view-live", e->c->pid,
		                              e->c->pid_start, ERR));
		ASSERT_OK(meta_tx_commit(&tx, ERR));
	}
	ASSERT_OK(snap_view(e->store->snap, "view-dead", sid, NULL, 0, NULL, NULL, ERR));
	ASSERT_OK(snap_view(e->store->snap, "view-live", sid, NULL, 0, NULL, NULL, ERR));
	ASSERT_EQ(snap_count(e), 3);
	cairn_ref_free(a);
	cairn_ref_free(s);
	env_reopen(e);
	ASSERT_EQ(snap_count(e), 2);
	snap_info *si = NULL;
	ASSERT_ERR(snap_stat(e->store->snap, "view-dead", &si, ERR), -ENOENT);
	ASSERT_OK(snap_stat(e->store->snap, "view-live", &si, ERR));
	snap_info_free(si);
}

/* ---- process leases: what another live process holds ---- */

/* The child of process_lease: holds an immutable ref on @base and a mutable on top, writes the
 * mutable's id to @fd, and waits to be killed. Exits 1 on failure. */
static void hold_in_child(const char *root, const char *driver, const char *base, int fd)
{
	cairn_store_options o = {.version = CAIRN_STORE_OPTIONS_VERSION, .snapshotter = driver};
	cairn_store *s = NULL;
	cairn_cache *c = NULL;
	cairn_ref *b = NULL, *m = NULL;
	if (cairn_store_open(root, &o, &s, NULL) < 0 || cairn_cache_open(s, &c, NULL) < 0 ||
	    cairn_cache_get(c, base, 0, &b, NULL) < 0 || cairn_cache_new(c, b, NULL, &m, NULL) < 0)
		_exit(1);
	char buf[CACHE_ID_MAX + 2];
	int n = snprintf(buf, sizeof(buf), "%s\n", cairn_ref_id(m));
	if (write(fd, buf, (size_t)n) != n)
		_exit(1);
	for (;;)
		pause();
}

/* Another process's refs (an immutable and a mutable it made) survive prune --all here and keep
 * gc out; once it is killed, gc deletes its lease and prune removes what it held. */
CACHE_TEST(process_lease)
{
	cairn_ref *a = new_ref(e, NULL, true);
	cairn_ref *b = commit(a);
	ASSERT_OK(cairn_ref_finalize(b, ERR));
	_cleanup_free_ char *bid = id_of(b);
	cairn_ref_free(a);
	cairn_ref_free(b);
	cairn_ref *u = new_ref(e, NULL, true); /* unheld: prune takes it */
	cairn_ref_free(u);
	int p[2];
	ASSERT_OK(pipe(p) < 0 ? -errno : 0);
	pid_t child = fork();
	ASSERT_TRUE(child >= 0);
	if (child == 0) {
		close(p[0]);
		hold_in_child(e->root, e->driver, bid, p[1]);
	}
	close(p[1]);
	char mid[CACHE_ID_MAX + 2] = "";
	ssize_t n = read(p[0], mid, sizeof(mid) - 1);
	close(p[0]);
	ASSERT_TRUE(n > 1);
	mid[n - 1] = '\0';
	ASSERT_EQ(prune(e, CAIRN_PRUNE_ALL), 1);
	ASSERT_EQ(row_count(e), 2);
	DU(e, 2, 0);
	ASSERT_ERR(cairn_cache_remove(e->c, mid, ERR), -EBUSY);
	ASSERT_ERRMSG("another process holds it");
	cairn_ref *r = NULL;
	ASSERT_ERR(cairn_cache_get_mutable(e->c, mid, &r, ERR), CAIRN_ELOCKED);
	ASSERT_ERRMSG("another process holds it");
	/* gc needs the store to itself: the live holder keeps it out. */
	cairn_store_options x = {.version = CAIRN_STORE_OPTIONS_VERSION,
	                         .flags = CAIRN_STORE_EXCLUSIVE | CAIRN_STORE_NOWAIT,
	                         .snapshotter = e->driver};
	cairn_store *gs = NULL;
	env_close(e);
	ASSERT_ERR(cairn_store_open(e->root, &x, &gs, ERR), CAIRN_ELOCKED);
	kill(child, SIGKILL);
	ASSERT_EQ(waitpid(child, NULL, 0), child);
	ASSERT_OK(cairn_store_open(e->root, &x, &gs, ERR));
	cairn_gc_report rep;
	ASSERT_OK(cairn_gc(gs, 0, &rep, ERR));
	ASSERT_EQ(rep.leases, 1);
	cairn_lease_info *infos = NULL;
	size_t ni = 0;
	ASSERT_OK(cairn_lease_list(gs, &infos, &ni, ERR));
	ASSERT_EQ(ni, 0);
	cairn_lease_infos_free(infos, ni);
	gs = cairn_store_close(gs);
	env_open(e);
	ASSERT_EQ(row_count(e), 2);
	ASSERT_EQ(prune(e, CAIRN_PRUNE_ALL), 2);
	ASSERT_EQ(row_count(e), 0);
}

/* A process that dies holding refs does not need gc first: its lease is dead, prune goes on. */
CACHE_TEST(process_lease_dead_holder)
{
	cairn_ref *a = new_ref(e, NULL, true);
	cairn_ref *b = commit(a);
	ASSERT_OK(cairn_ref_finalize(b, ERR));
	_cleanup_free_ char *bid = id_of(b);
	cairn_ref_free(a);
	cairn_ref_free(b);
	int p[2];
	ASSERT_OK(pipe(p) < 0 ? -errno : 0);
	pid_t child = fork();
	ASSERT_TRUE(child >= 0);
	if (child == 0) {
		close(p[0]);
		hold_in_child(e->root, e->driver, bid, p[1]);
	}
	close(p[1]);
	char mid[CACHE_ID_MAX + 2] = "";
	ASSERT_TRUE(read(p[0], mid, sizeof(mid) - 1) > 1);
	close(p[0]);
	ASSERT_EQ(prune(e, CAIRN_PRUNE_ALL), 0);
	kill(child, SIGKILL);
	ASSERT_EQ(waitpid(child, NULL, 0), child);
	DU(e, 0, 2);
	ASSERT_EQ(prune(e, CAIRN_PRUNE_ALL), 2);
	ASSERT_EQ(row_count(e), 0);
}

/* ---- persistent mounts ---- */

static int count_mounts(const cairn_mount_info *m, void *userdata)
{
	(*(int *)userdata)++;
	return 0;
}

CACHE_TEST(mount_at)
{
	if (!is_root())
		test_skip("needs root for mounts");
	char t1[PATH_MAX], t2[PATH_MAX], file[PATH_MAX + 16];
	snprintf(t1, sizeof(t1), "%s/t1", test_dir);
	snprintf(t2, sizeof(t2), "%s/t2", test_dir);
	ASSERT_OK(mkdir(t1, 0755));
	ASSERT_OK(mkdir(t2, 0755));

	/* An immutable: a view of its own, held by the mount. */
	cairn_ref *a = new_ref(e, NULL, true);
	write_in(e, cairn_ref_id(a), "hello", 5);
	cairn_ref *s = commit(a);
	_cleanup_free_ char *sid = id_of(s);
	ASSERT_OK(cairn_ref_mount_at(s, t1, false, ERR));
	snprintf(file, sizeof(file), "%s/hello", t1);
	ASSERT_OK(access(file, R_OK));
	ASSERT_ERR(cairn_ref_mount_at(s, t1, true, ERR), -EBUSY);
	ASSERT_ERRMSG(sid);
	release(s);
	DU(e, 1, 0);
	ASSERT_EQ(prune(e, 0), 0);
	ASSERT_ERR(cairn_cache_remove(e->c, sid, ERR), -EBUSY);
	ASSERT_ERRMSG("mounted at");
	int n = 0;
	ASSERT_OK(cairn_cache_mounts(e->c, sid, count_mounts, &n, ERR));
	ASSERT_EQ(n, 1);
	/* Another process (a reopened store) sees the mount and the hold. */
	env_reopen(e);
	DU(e, 1, 0);
	ASSERT_OK(cairn_cache_unmount(e->c, t1, ERR));
	ASSERT_ERR(access(file, R_OK), -1);
	ASSERT_ERR(cairn_cache_unmount(e->c, t1, ERR), -ENOENT);
	DU(e, 0, 1);

	/* A default mutable mounted read-write: held until umount, then gone. */
	cairn_ref *b = new_ref(e, NULL, false);
	_cleanup_free_ char *bid = id_of(b);
	ASSERT_OK(cairn_ref_mount_at(b, t2, false, ERR));
	snprintf(file, sizeof(file), "%s/new", t2);
	test_write_file(file, "data");
	release(b);
	cairn_ref *ref = NULL;
	ASSERT_ERR(cairn_cache_get_mutable(e->c, bid, &ref, ERR), CAIRN_ELOCKED);
	ASSERT_ERRMSG(t2);
	DU(e, 1, 1);
	ASSERT_OK(cairn_cache_unmount(e->c, t2, ERR));
	ASSERT_ERR(cairn_cache_get_mutable(e->c, bid, &ref, ERR), -ENOENT);
	DU(e, 0, 1);
	cairn_ref_free(a);
	cairn_ref_free(s);
	cairn_ref_free(b);
}

/* ---- names and removal ---- */

CACHE_TEST(resolve_and_tags)
{
	cairn_ref *refs[40] = {0};
	size_t n = 0;
	char *out = NULL;
	/* Make records until two ids share their first character, for an ambiguous prefix. */
	char prefix[2] = "";
	while (!prefix[0] && n < ELEMENTSOF(refs)) {
		cairn_ref *m = new_ref(e, NULL, true);
		refs[n++] = commit(m);
		cairn_ref_free(m);
		for (size_t k = 0; k + 1 < n && !prefix[0]; k++)
			if (cairn_ref_id(refs[k])[0] == cairn_ref_id(refs[n - 1])[0])
				prefix[0] = cairn_ref_id(refs[k])[0];
	}
	ASSERT_TRUE(prefix[0]);
	const char *id = cairn_ref_id(refs[0]);
	ASSERT_OK(cairn_cache_resolve(e->c, id, &out, ERR));
	ASSERT_STREQ(out, id);
	free(out);
	ASSERT_ERR(cairn_cache_resolve(e->c, prefix, &out, ERR), -ENOTUNIQ);
	ASSERT_ERRMSG("ambiguous");
	char unique[CAIRN_RECORD_ID_LEN + 1];
	snprintf(unique, sizeof(unique), "%.20s", id);
	ASSERT_OK(cairn_cache_resolve(e->c, unique, &out, ERR));
	ASSERT_STREQ(out, id);
	free(out);
	ASSERT_ERR(cairn_cache_resolve(e->c, "nosuchthing", &out, ERR), -ENOENT);
	ASSERT_ERRMSG("'nosuchthing'");

	ASSERT_OK(cairn_cache_tag(e->c, id, "app:v1", ERR));
	ASSERT_OK(cairn_cache_resolve(e->c, "app:v1", &out, ERR));
	ASSERT_STREQ(out, id);
	free(out);
	ASSERT_ERR(cairn_cache_tag(e->c, id, "-bad", ERR), -EINVAL);
	ASSERT_ERR(cairn_cache_tag(e->c, id, "a b", ERR), -EINVAL);
	ASSERT_ERR(cairn_cache_tag(e->c, id, cairn_ref_id(refs[1]), ERR), -EINVAL);
	ASSERT_ERR(cairn_cache_tag(e->c, "nosuch", "x", ERR), -ENOENT);

	/* An image tag names its manifest blob, which must be in the store. */
	char *m = NULL, *mid = NULL;
	ASSERT_OK(cairn_cache_resolve_image(e->c, "app:v1", &mid, &m, ERR));
	ASSERT_STREQ(mid, id);
	ASSERT_TRUE(m == NULL);
	free(mid);
	const char *absent =
		"sha256:0000000000000000000000000000000000000000000000000000000000000000";
	ASSERT_ERR(cairn_cache_tag_image(e->c, id, "img", absent, ERR), -ENOENT);
	ASSERT_ERRMSG(absent);
	ASSERT_ERR(cairn_cache_tag_image(e->c, id, "img", "sha256:../../x", ERR), CAIRN_EDIGEST);
	test_write_file("manifest.json", "{}");
	int mfd = open("manifest.json", O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(mfd >= 0);
	cairn_content_info ci;
	ASSERT_OK(cairn_content_add_fd(e->store, mfd, NULL, &ci, ERR));
	close(mfd);
	const char *manifest = ci.digest;
	ASSERT_OK(cairn_cache_tag_image(e->c, id, "img", manifest, ERR));
	ASSERT_OK(cairn_cache_resolve_image(e->c, "img", &mid, &m, ERR));
	ASSERT_STREQ(mid, id);
	ASSERT_STREQ(m, manifest);
	free(mid);
	free(m);
	ASSERT_OK(cairn_cache_untag(e->c, "img", ERR));
	cairn_record_info *i = info(e, id);
	ASSERT_EQ(i->n_tags, 1);
	ASSERT_STREQ(i->tags[0], "app:v1");
	ASSERT_TRUE(i->shared);
	cairn_record_infos_free(i, 1);

	/* A tagged record is shared: a plain prune keeps it, --all takes it (and the tag). */
	for (size_t k = 0; k < n; k++)
		release(refs[k]);
	ASSERT_EQ(prune(e, 0), (int)n - 1);
	DU(e, 0, 1);
	ASSERT_EQ(prune(e, CAIRN_PRUNE_ALL), 1);
	ASSERT_ERR(cairn_cache_resolve(e->c, "app:v1", &out, ERR), -ENOENT);
	ASSERT_ERR(cairn_cache_untag(e->c, "app:v1", ERR), -ENOENT);
	for (size_t k = 0; k < n; k++)
		cairn_ref_free(refs[k]);
}

CACHE_TEST(remove)
{
	cairn_ref *a = new_ref(e, NULL, true);
	cairn_ref *s = commit(a);
	cairn_ref *b = new_ref(e, s, true);
	_cleanup_free_ char *sid = id_of(s);
	_cleanup_free_ char *bid = id_of(b);
	ASSERT_ERR(cairn_cache_remove(e->c, sid, ERR), -EBUSY);
	ASSERT_ERRMSG("has children");
	ASSERT_ERRMSG(bid);
	ASSERT_ERR(cairn_cache_remove(e->c, bid, ERR), -EBUSY);
	ASSERT_ERRMSG("1 ref open");
	release(b);
	ASSERT_OK(cairn_cache_remove(e->c, bid, ERR));
	ASSERT_ERR(cairn_cache_remove(e->c, bid, ERR), -ENOENT);
	release(s);
	ASSERT_OK(cairn_cache_remove(e->c, sid, ERR));
	ASSERT_EQ(row_count(e), 0);
	ASSERT_EQ(snap_count(e), 0);

	/* Removing a mutable takes its unheld lazy immutable; removing that one alone keeps the
	 * mutable. */
	cairn_ref *c1 = new_ref(e, NULL, true);
	_cleanup_free_ char *cid = id_of(c1);
	cairn_ref *t = commit(c1);
	_cleanup_free_ char *tid = id_of(t);
	ASSERT_ERR(cairn_cache_remove(e->c, cid, ERR), -EBUSY);
	release(t);
	ASSERT_OK(cairn_cache_remove(e->c, tid, ERR));
	ASSERT_EQ(row_count(e), 1);
	cairn_ref *c2 = get_mutable(e, cid);
	cairn_ref *t2 = commit(c2);
	release(t2);
	ASSERT_OK(cairn_cache_remove(e->c, cid, ERR));
	ASSERT_EQ(row_count(e), 0);
	ASSERT_EQ(snap_count(e), 0);
	cairn_ref *refs[] = {a, s, b, c1, t, c2, t2};
	for (size_t k = 0; k < ELEMENTSOF(refs); k++)
		cairn_ref_free(refs[k]);
}

/* Record types internal and frontend survive a plain prune. */
CACHE_TEST(prune_types)
{
	cairn_new_options o = {.version = CAIRN_NEW_OPTIONS_VERSION,
	                       .policy = CAIRN_CACHE_POLICY_RETAIN,
	                       .record_type = "internal"};
	cairn_ref *a = NULL, *b = NULL;
	ASSERT_OK(cairn_cache_new(e->c, NULL, &o, &a, ERR));
	o.record_type = "frontend";
	ASSERT_OK(cairn_cache_new(e->c, NULL, &o, &b, ERR));
	release(a);
	release(b);
	ASSERT_EQ(prune(e, 0), 0);
	DU(e, 0, 2);
	ASSERT_EQ(prune(e, CAIRN_PRUNE_ALL), 2);
	DU(e, 0, 0);
	cairn_ref_free(a);
	cairn_ref_free(b);
}

/* A prune report carries every field, and a negative callback stops prune. */
static int report_fn(const cairn_record_info *i, void *userdata)
{
	int *n = userdata;
	ASSERT_TRUE(i->id && i->record_type && i->description && i->size >= 0 && !i->in_use);
	return ++*n == 1 ? 0 : -ECANCELED;
}

CACHE_TEST(prune_reports)
{
	for (int k = 0; k < 3; k++) {
		cairn_ref *m = new_ref(e, NULL, true);
		release(m);
		cairn_ref_free(m);
	}
	int n = 0;
	cairn_prune_options o = {
		.version = CAIRN_PRUNE_OPTIONS_VERSION, .fn = report_fn, .userdata = &n};
	ASSERT_ERR(cairn_cache_prune(e->c, &o, ERR), -ECANCELED);
	ASSERT_EQ(n, 2);
	/* The three went in one batch: stopping keeps only batches not begun. */
	DU(e, 0, 0);
}

/* ---- prune policies: keep_duration, keep_bytes, dry run ---- */

/* A released retained mutable; its id is the caller's. */
static char *unused_record(struct env *e)
{
	cairn_ref *m = new_ref(e, NULL, true);
	char *id = id_of(m);
	release(m);
	cairn_ref_free(m);
	return id;
}

/* Records @uses more uses of @id at @when and a size of @size bytes. */
static void set_use(struct env *e, const char *id, int64_t when, int uses, int64_t size)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	ASSERT_OK(meta_tx_begin(e->store->db, &tx, true, ERR));
	for (int k = 0; k < uses; k++)
		ASSERT_OK(meta_record_add_use(&tx, id, when, ERR));
	ASSERT_EQ(meta_record_get(&tx, id, &row, ERR), 1);
	ASSERT_EQ(meta_record_set_size(&tx, id, row.gen, size, ERR), 1);
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

struct pruned {
	char ids[8][CAIRN_RECORD_ID_LEN + 1];
	int64_t sizes[8];
	int n;
};

static int pruned_fn(const cairn_record_info *i, void *userdata)
{
	struct pruned *p = userdata;
	ASSERT_TRUE(p->n < 8);
	snprintf(p->ids[p->n], sizeof(p->ids[0]), "%s", i->id);
	p->sizes[p->n++] = i->size;
	return 0;
}

static int prune_keep(struct env *e, unsigned flags, int64_t keep_ns, int64_t keep_bytes,
                      struct pruned *p)
{
	*p = (struct pruned){0};
	cairn_prune_options o = {.version = CAIRN_PRUNE_OPTIONS_VERSION,
	                         .flags = flags,
	                         .fn = pruned_fn,
	                         .userdata = p,
	                         .keep_duration_ns = keep_ns,
	                         .keep_bytes = keep_bytes};
	int r = cairn_cache_prune(e->c, &o, ERR);
	ASSERT_OK(r);
	ASSERT_EQ(r, p->n);
	return r;
}

#define DAY_NS (86400 * (int64_t)1000000000)

/* Records used within keep_duration stay; never-used ones count from their creation. */
CACHE_TEST(prune_keep_duration)
{
	_cleanup_free_ char *old = unused_record(e), *recent = unused_record(e);
	set_use(e, old, meta_now_ns() - 10 * DAY_NS, 1, 100);
	set_use(e, recent, meta_now_ns() - DAY_NS / 2, 1, 100);
	struct pruned p;
	ASSERT_EQ(prune_keep(e, 0, DAY_NS, 0, &p), 1);
	ASSERT_STREQ(p.ids[0], old);
	DU(e, 0, 1);
	ASSERT_EQ(prune_keep(e, 0, DAY_NS / 4, 0, &p), 1);
	ASSERT_STREQ(p.ids[0], recent);
	DU(e, 0, 0);
	/* The version 1 struct still works and knows no keep fields. */
	cairn_prune_options v1 = {.version = 1};
	ASSERT_EQ(cairn_cache_prune(e->c, &v1, ERR), 0);
	cairn_prune_options bad = {.version = 3};
	ASSERT_ERR(cairn_cache_prune(e->c, &bad, ERR), -EINVAL);
}

/* keep_bytes: oldest use first, only until the total is at or under the cap; a dry run
 * reports the same set and removes nothing. */
CACHE_TEST(prune_keep_bytes)
{
	int64_t t = meta_now_ns() - DAY_NS;
	_cleanup_free_ char *a = unused_record(e), *b = unused_record(e), *c = unused_record(e);
	set_use(e, a, t, 1, 1000);
	set_use(e, b, t + 3000, 1, 1000);
	set_use(e, c, t + 2000, 1, 1000);
	struct pruned p, dry;
	ASSERT_EQ(prune_keep(e, 0, 0, 3000, &p), 0); /* at the cap already */
	ASSERT_EQ(prune_keep(e, CAIRN_PRUNE_DRY_RUN, 0, 1500, &dry), 2);
	DU(e, 0, 3);
	ASSERT_EQ(prune_keep(e, 0, 0, 1500, &p), 2);
	ASSERT_STREQ(p.ids[0], a);
	ASSERT_STREQ(p.ids[1], c);
	ASSERT_EQ(p.sizes[0], 1000);
	for (int k = 0; k < 2; k++) {
		ASSERT_STREQ(dry.ids[k], p.ids[k]);
		ASSERT_EQ(dry.sizes[k], p.sizes[k]);
	}
	DU(e, 0, 1);
	cairn_record_info *left = info(e, b);
	cairn_record_infos_free(left, 1);
}

/* Equal last use: the lowest usage count goes first. */
CACHE_TEST(prune_keep_bytes_ties)
{
	int64_t t = meta_now_ns() - DAY_NS;
	_cleanup_free_ char *a = unused_record(e), *b = unused_record(e), *c = unused_record(e);
	set_use(e, a, t, 3, 1000);
	set_use(e, b, t, 1, 1000);
	set_use(e, c, t, 2, 1000);
	struct pruned p;
	ASSERT_EQ(prune_keep(e, 0, 0, 2000, &p), 1);
	ASSERT_STREQ(p.ids[0], b);
	ASSERT_EQ(prune_keep(e, 0, 0, 1000, &p), 1);
	ASSERT_STREQ(p.ids[0], c);
	DU(e, 0, 1);
}

/* A dry run sees the parents a real prune would free, and removes nothing. */
CACHE_TEST(prune_dry_run_chain)
{
	cairn_ref *a = new_ref(e, NULL, true);
	cairn_ref *s = commit(a);
	cairn_ref *a2 = new_ref(e, s, true);
	release(s);
	release(a2);
	struct pruned dry, p;
	ASSERT_EQ(prune_keep(e, CAIRN_PRUNE_DRY_RUN, 0, 0, &dry), 2);
	DU(e, 0, 2);
	ASSERT_EQ(prune_keep(e, 0, 0, 0, &p), 2);
	ASSERT_STREQ(dry.ids[0], p.ids[0]);
	ASSERT_STREQ(dry.ids[1], p.ids[1]);
	DU(e, 0, 0);
	cairn_ref_free(a);
	cairn_ref_free(s);
	cairn_ref_free(a2);
}

/* ---- stress ---- */

struct stress {
	struct env *e;
	cairn_ref *bases[3];
	atomic_bool stop;
	atomic_long ops;
	pthread_mutex_t ids_lock;
	char ids[64][CAIRN_RECORD_ID_LEN + 1];
	unsigned next_id;
};

/* Fails the test for anything but the expected races. */
static void stress_check(int r, cairn_error *err, const char *what)
{
	if (r >= 0 || r == -ENOENT || r == CAIRN_ELOCKED || r == -EBUSY)
		return;
	fprintf(stdout, "# stress: %s: %d (%s): %s\n", what, r, cairn_strerror(r),
	        cairn_error_message(err));
	fflush(stdout);
	_exit(1);
}

#define STRESS(call, what)                                                                         \
	({                                                                                         \
		cairn_error *_err = NULL;                                                          \
		int _r = (call);                                                                   \
		stress_check(_r, _err, what);                                                      \
		cairn_error_free(_err);                                                            \
		_r;                                                                                \
	})

static void stress_remember(struct stress *st, const char *id)
{
	pthread_mutex_lock(&st->ids_lock);
	snprintf(st->ids[st->next_id++ % 64], CAIRN_RECORD_ID_LEN + 1, "%s", id);
	pthread_mutex_unlock(&st->ids_lock);
}

static void stress_round(struct stress *st, unsigned *seed)
{
	cairn_cache *c = st->e->c;
	cairn_ref *parent = rand_r(seed) % 4 ? st->bases[rand_r(seed) % 3] : NULL;
	cairn_new_options o = {.version = CAIRN_NEW_OPTIONS_VERSION,
	                       .policy = rand_r(seed) % 2 ? CAIRN_CACHE_POLICY_RETAIN
	                                                  : CAIRN_CACHE_POLICY_DEFAULT};
	cairn_ref *m = NULL, *s = NULL, *g = NULL, *p = NULL;
	cairn_mount *mounts = NULL;
	size_t n = 0;
	if (STRESS(cairn_cache_new(c, parent, &o, &m, &_err), "new") < 0)
		return;
	if (rand_r(seed) % 2 && STRESS(cairn_ref_mount(m, false, &mounts, &n, &_err), "mount") >= 0)
		cairn_mounts_free(mounts, n);
	if (STRESS(cairn_ref_commit(m, &s, &_err), "commit") >= 0) {
		stress_remember(st, cairn_ref_id(s));
		STRESS(cairn_cache_get(c, cairn_ref_id(s), 0, &g, &_err), "get");
		bool ro = rand_r(seed) % 2;
		if (STRESS(cairn_ref_mount(s, ro, &mounts, &n, &_err), "mount immutable") >= 0)
			cairn_mounts_free(mounts, n);
		if (rand_r(seed) % 3 == 0)
			STRESS(cairn_ref_finalize(s, &_err), "finalize");
		int64_t size;
		STRESS(cairn_ref_size(s, &size, &_err), "size");
		if (rand_r(seed) % 3 == 0 && g)
			STRESS(cairn_ref_parent(g, &p, &_err), "parent");
	}
	/* Someone else's record, maybe gone by now. */
	char other[CAIRN_RECORD_ID_LEN + 1];
	pthread_mutex_lock(&st->ids_lock);
	snprintf(other, sizeof(other), "%s", st->ids[rand_r(seed) % 64]);
	pthread_mutex_unlock(&st->ids_lock);
	cairn_ref *o2 = NULL;
	if (other[0] && STRESS(cairn_cache_get(c, other, 0, &o2, &_err), "get other") >= 0 &&
	    rand_r(seed) % 2 &&
	    STRESS(cairn_ref_mount(o2, true, &mounts, &n, &_err), "mount other") >= 0)
		cairn_mounts_free(mounts, n);
	cairn_ref *refs[] = {o2, p, g, s, m};
	for (size_t k = 0; k < ELEMENTSOF(refs); k++) {
		if (refs[k])
			STRESS(cairn_ref_release(refs[k], &_err), "release");
		cairn_ref_free(refs[k]);
	}
	if (rand_r(seed) % 8 == 0)
		STRESS(cairn_cache_prune(c, NULL, &_err), "prune");
	if (rand_r(seed) % 8 == 0) {
		cairn_record_info *infos = NULL;
		size_t ni = 0;
		if (STRESS(cairn_cache_disk_usage(c, NULL, 0, &infos, &ni, &_err), "du") >= 0)
			cairn_record_infos_free(infos, ni);
	}
	st->ops++;
}

static void *stress_thread(void *arg)
{
	struct stress *st = arg;
	unsigned seed = (unsigned)(uintptr_t)pthread_self() ^ (unsigned)time(NULL);
	while (!st->stop)
		stress_round(st, &seed);
	return NULL;
}

CACHE_TEST(stress)
{
	const char *env_s = getenv("CAIRN_STRESS_SECONDS");
	int seconds = env_s ? atoi(env_s) : 3;
	if (seconds <= 0)
		seconds = 3;
	alarm((unsigned)seconds + 240); /* a deadlock fails the test instead of hanging it */
	struct stress st = {.e = e};
	pthread_mutex_init(&st.ids_lock, NULL);
	for (int k = 0; k < 3; k++) {
		cairn_ref *m = new_ref(e, NULL, true);
		write_in(e, cairn_ref_id(m), "base", 1000);
		st.bases[k] = commit(m);
		ASSERT_OK(cairn_ref_finalize(st.bases[k], ERR));
		cairn_ref_free(m);
	}
	pthread_t th[8];
	for (int k = 0; k < 8; k++)
		ASSERT_EQ(pthread_create(&th[k], NULL, stress_thread, &st), 0);
	sleep((unsigned)seconds);
	st.stop = true;
	for (int k = 0; k < 8; k++)
		pthread_join(th[k], NULL);
	printf("# stress: %ld rounds in %d s on %s\n", (long)st.ops, seconds, e->driver);
	ASSERT_TRUE(st.ops > 0);

	/* Consistent at the end: the bases are the only records in use, nothing else is. */
	cairn_record_info *infos = NULL;
	size_t n = 0;
	ASSERT_OK(cairn_cache_disk_usage(e->c, NULL, 0, &infos, &n, ERR));
	size_t used = 0;
	for (size_t k = 0; k < n; k++) {
		ASSERT_TRUE(infos[k].size >= 0);
		used += infos[k].in_use;
	}
	ASSERT_EQ(used, 3);
	cairn_record_infos_free(infos, n);
	for (int k = 0; k < 3; k++)
		cairn_ref_free(st.bases[k]);
	prune(e, CAIRN_PRUNE_ALL);
	DU(e, 0, 0);
	ASSERT_EQ(row_count(e), 0);
	ASSERT_EQ(snap_count(e), 0);
	/* And a reopen finds nothing to repair. */
	env_reopen(e);
	ASSERT_EQ(snap_count(e), 0);
	alarm(0);
}

/* ==== the issue 7 benchmark (CAIRN_BENCH=1; bench/cache.sh runs it) ==== */

static double ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static void fake_digest(char ret[80], const char *what, int i)
{
	digest d;
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "%s-%d", what, i);
	digest_buffer(buf, (size_t)n, &d);
	snprintf(ret, 80, "%s", d.str);
}

/*
 * @n records as chains of @depth written straight into the database in one transaction: lazy
 * (blob only) immutables with recorded sizes (4096 + i), as an image import leaves them; the
 * first @extracted records get real (empty) committed snapshots, so that prune removes
 * directories too. Their ids go to @ret_ids when not NULL (record i is a child of i - 1 unless
 * i % @depth is 0).
 */
static void bench_fill(struct env *e, int n, int depth, int extracted,
                       char (*ret_ids)[CAIRN_RECORD_ID_LEN + 1])
{
	char blob[80];
	digest bd;
	ASSERT_OK(content_add_buffer(e->store->content, "layer", 5, NULL, &bd, ERR));
	snprintf(blob, sizeof(blob), "%s", bd.str);
	char prev[CAIRN_RECORD_ID_LEN + 1] = "", prev_snap[80] = "";
	for (int i = 0; i < extracted; i++) {
		char key[96], snap[80];
		fake_digest(snap, "chain", i);
		snprintf(key, sizeof(key), "%s-active", snap);
		ASSERT_OK(snap_prepare(e->store->snap, key, i % depth ? prev_snap : NULL, NULL, 0,
		                       NULL, NULL, ERR));
		ASSERT_OK(snap_commit(e->store->snap, snap, key, NULL, 0, ERR));
		snprintf(prev_snap, sizeof(prev_snap), "%s", snap);
	}
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(e->store->db, &tx, true, ERR));
	for (int i = 0; i < n; i++) {
		char id[CAIRN_RECORD_ID_LEN + 1], chain[80], bchain[80], diff[80];
		cache_new_id(id);
		fake_digest(chain, "chain", i);
		fake_digest(bchain, "blobchain", i);
		fake_digest(diff, "diff", i);
		struct meta_record rec = {
			.id = id,
			.snapshotter = (char *)e->driver,
			.kind = META_RECORD_IMMUTABLE,
			.parent = i % depth ? prev : NULL,
			.snapshot = chain,
			.extracted = i < extracted,
			.created_at = meta_now_ns() - (int64_t)(n - i) * 1000000000LL,
			.blob = blob,
			.diff_id = diff,
			.media_type = "application/vnd.oci.image.layer.v1.tar+gzip",
			.chain_id = chain,
			.blob_chain_id = bchain,
		};
		ASSERT_OK(meta_record_insert(&tx, &rec, ERR));
		ASSERT_TRUE(meta_record_set_size(&tx, id, 0, 4096 + i, ERR) == 1);
		snprintf(prev, sizeof(prev), "%s", id);
		if (ret_ids)
			memcpy(ret_ids[i], id, sizeof(id));
	}
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

/* ---- prune in batches, du totals, and an open after a prune batch (issue 7's fast paths) ---- */

#define BATCH_RECORDS 1200

struct batch_pruned {
	int n;
	char (*kept)[CAIRN_RECORD_ID_LEN + 1]; /* ids that must not be reported */
	size_t n_kept;
};

static int batch_pruned_fn(const cairn_record_info *i, void *userdata)
{
	struct batch_pruned *p = userdata;
	for (size_t k = 0; k < p->n_kept; k++)
		ASSERT_TRUE(strcmp(i->id, p->kept[k]) != 0);
	ASSERT_TRUE(i->size >= 4096);
	p->n++;
	return 0;
}

/*
 * 1,200 records in chains of 3, the first 4 chains extracted: du's total is the sum of the
 * recorded sizes; prune takes them in several batches (lazy victims deleted in the batch's
 * transaction, extracted ones tombstoned, then their snapshots and rows removed) and removes
 * exactly the victims: not chain 0 (a ref holds its leaf) nor chain 1 (its leaf is tagged).
 */
CACHE_TEST(prune_batches)
{
	static char ids[BATCH_RECORDS][CAIRN_RECORD_ID_LEN + 1];
	bench_fill(e, BATCH_RECORDS, 3, 12, ids);
	ASSERT_EQ(snap_count(e), 12);
	cairn_record_info *infos = NULL;
	size_t ni = 0;
	ASSERT_OK(cairn_cache_disk_usage(e->c, NULL, 0, &infos, &ni, ERR));
	ASSERT_EQ(ni, (size_t)BATCH_RECORDS);
	int64_t sum = 0, want = 0;
	for (size_t i = 0; i < ni; i++) {
		ASSERT_TRUE(infos[i].id && infos[i].snapshot_id && infos[i].blob);
		ASSERT_STREQ(infos[i].record_type, "regular");
		sum += infos[i].size;
		want += 4096 + (int64_t)i;
	}
	ASSERT_EQ(sum, want);
	cairn_record_infos_free(infos, ni);

	cairn_ref *held = get(e, ids[2]);
	ASSERT_OK(cairn_cache_tag(e->c, ids[5], "keep", ERR));
	struct batch_pruned p = {.kept = ids, .n_kept = 6};
	cairn_prune_options o = {
		.version = CAIRN_PRUNE_OPTIONS_VERSION, .fn = batch_pruned_fn, .userdata = &p};
	ASSERT_EQ(cairn_cache_prune(e->c, &o, ERR), BATCH_RECORDS - 6);
	ASSERT_EQ(p.n, BATCH_RECORDS - 6);
	ASSERT_EQ(row_count(e), 6);
	for (int k = 0; k < 6; k++)
		cairn_record_infos_free(info(e, ids[k]), 1);
	ASSERT_EQ(snap_count(e), 6);

	release(held);
	cairn_ref_free(held);
	p = (struct batch_pruned){0};
	o.flags = CAIRN_PRUNE_ALL;
	ASSERT_EQ(cairn_cache_prune(e->c, &o, ERR), 6);
	ASSERT_EQ(p.n, 6);
	ASSERT_EQ(row_count(e), 0);
	ASSERT_EQ(snap_count(e), 0);
}

/* An extracted immutable with no blob whose snapshot is gone (broken), and a lazy child. */
static void broken_with_lazy_child(struct env *e, char pid[CAIRN_RECORD_ID_LEN + 1],
                                   char cid[CAIRN_RECORD_ID_LEN + 1])
{
	char snap[80], blob[80];
	fake_digest(snap, "gone", 0);
	fake_digest(blob, "blob", 0);
	cache_new_id(pid);
	cache_new_id(cid);
	struct meta_record parent = {.id = pid,
	                             .snapshotter = (char *)e->driver,
	                             .kind = META_RECORD_IMMUTABLE,
	                             .snapshot = snap,
	                             .extracted = true,
	                             .created_at = meta_now_ns()};
	struct meta_record child = parent;
	child.id = cid;
	child.parent = pid;
	child.extracted = false;
	child.blob = blob;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(e->store->db, &tx, true, ERR));
	ASSERT_OK(meta_record_insert(&tx, &parent, ERR));
	ASSERT_OK(meta_record_insert(&tx, &child, ERR));
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

/*
 * A prune killed after a batch's transaction (CAIRN_FAULT=prune.tombstoned) leaves its extracted
 * victims tombstoned and its lazy victims gone; the next open removes the tombstoned records
 * with their snapshots and nothing else. The open reads only rows that may own files, unless a
 * broken one makes it read all (its lazy descendants go with it).
 */
CACHE_TEST(reopen_finishes_prune_batch)
{
	char ids[30][CAIRN_RECORD_ID_LEN + 1];
	bench_fill(e, 30, 3, 6, ids);
	ASSERT_EQ(snap_count(e), 6);
	{
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		ASSERT_OK(meta_tx_begin(e->store->db, &tx, true, ERR));
		ASSERT_OK(meta_record_set_deleted(&tx, ids[2], true, ERR));
		ASSERT_OK(meta_record_set_deleted(&tx, ids[1], true, ERR));
		ASSERT_OK(meta_record_delete(&tx, ids[11], ERR));
		ASSERT_OK(meta_tx_commit(&tx, ERR));
	}
	env_reopen(e);
	ASSERT_EQ(row_count(e), 27);
	ASSERT_EQ(snap_count(e), 4);
	cairn_ref *ref = NULL;
	ASSERT_ERR(cairn_cache_get(e->c, ids[1], 0, &ref, ERR), -ENOENT);
	ASSERT_ERR(cairn_cache_get(e->c, ids[2], 0, &ref, ERR), -ENOENT);
	for (int k = 3; k < 30; k++)
		if (k != 11)
			cairn_record_infos_free(info(e, ids[k]), 1);

	char pid[CAIRN_RECORD_ID_LEN + 1], cid[CAIRN_RECORD_ID_LEN + 1];
	broken_with_lazy_child(e, pid, cid);
	ASSERT_EQ(row_count(e), 29);
	env_reopen(e);
	ASSERT_EQ(row_count(e), 27);
	ASSERT_ERR(cairn_cache_get(e->c, pid, 0, &ref, ERR), -ENOENT);
	ASSERT_ERR(cairn_cache_get(e->c, cid, 0, &ref, ERR), -ENOENT);
	ASSERT_EQ(snap_count(e), 4);
}

static int bench_env_int(const char *name, int def)
{
	const char *v = getenv(name);
	return v && *v ? atoi(v) : def;
}

/*
 * Opening a store of N records, du over them, and prune --all of them, with the longest hold of
 * each lock while pruning. Knobs: CAIRN_BENCH_RECORDS (10000), CAIRN_BENCH_DEPTH (5),
 * CAIRN_BENCH_EXTRACTED (0: records with snapshot directories, the first ones).
 */
TEST(bench_cache)
{
	if (!getenv("CAIRN_BENCH"))
		test_skip("set CAIRN_BENCH=1");
	setenv("CAIRN_LOCKSTAT", "1", 1);
	int n = bench_env_int("CAIRN_BENCH_RECORDS", 10000);
	int depth = bench_env_int("CAIRN_BENCH_DEPTH", 5);
	int extracted = bench_env_int("CAIRN_BENCH_EXTRACTED", 0);
	struct env env = {.driver = "overlay"};
	struct env *e = &env;
	snprintf(e->root, sizeof(e->root), "%s/root", test_dir);
	env_open(e);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	bench_fill(e, n, depth, extracted, NULL);
	printf("# bench: %d records (chains of %d, %d extracted) made in %.0f ms\n", n, depth,
	       extracted, ms_since(&t0));
	for (int k = 0; k < bench_env_int("CAIRN_BENCH_OPENS", 3); k++) {
		env_close(e);
		cairn_store_options o = {.version = CAIRN_STORE_OPTIONS_VERSION,
		                         .snapshotter = e->driver};
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ASSERT_OK(cairn_store_open(e->root, &o, &e->store, ERR));
		double store_ms = ms_since(&t0);
		ASSERT_OK(cairn_cache_open(e->store, &e->c, ERR));
		printf("# bench: open store + cache: %.1f ms (store %.1f ms)\n", ms_since(&t0),
		       store_ms);
	}
	for (int k = 0; k < 3; k++) {
		cairn_record_info *infos = NULL;
		size_t ni = 0;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ASSERT_OK(cairn_cache_disk_usage(e->c, NULL, 0, &infos, &ni, ERR));
		double du_ms = ms_since(&t0);
		cairn_store_usage su;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ASSERT_OK(cairn_store_disk_usage(e->store, &su, ERR));
		printf("# bench: du of %zu records: %.1f ms, + the root walk: %.1f ms\n", ni, du_ms,
		       ms_since(&t0));
		ASSERT_EQ(ni, (size_t)n);
		cairn_record_infos_free(infos, ni);
	}
	if (!bench_env_int("CAIRN_BENCH_PRUNE", 1)) {
		env_close(e);
		return;
	}
	lockstat_reset();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_EQ(prune(e, CAIRN_PRUNE_ALL), n);
	double prune_ms = ms_since(&t0);
	printf("# bench: prune --all of %d records: %.0f ms; longest holds: db-write %.1f ms "
	       "(%llu transactions), manager %.1f ms (%llu); checkpoints (no write lock) %.1f ms "
	       "(%llu)\n",
	       n, prune_ms, (double)lockstat_max_ns(LOCKSTAT_DB_WRITE) / 1e6,
	       (unsigned long long)lockstat_count(LOCKSTAT_DB_WRITE),
	       (double)lockstat_max_ns(LOCKSTAT_MANAGER) / 1e6,
	       (unsigned long long)lockstat_count(LOCKSTAT_MANAGER),
	       (double)lockstat_max_ns(LOCKSTAT_DB_CHECKPOINT) / 1e6,
	       (unsigned long long)lockstat_count(LOCKSTAT_DB_CHECKPOINT));
	ASSERT_EQ(row_count(e), 0);
	ASSERT_EQ(snap_count(e), 0);
	env_close(e);
}
