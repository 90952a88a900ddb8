/* SPDX-License-Identifier: MIT */
/*
 * Snapshotters: containerd's snapshotter testsuite (spec/containerd.md §4.2, all 21 checks) run
 * on both drivers, overlay's own tests (§3.9), deep chains, the read-only conversion table,
 * mount-spec JSON, filters, the native copy, usage, crash safety at injected points, and bad
 * input. Needs root for mounts (skips otherwise).
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "meta/snapshots.h"
#include "snapshot/copy.h"
#include "snapshot/filter.h"
#include "snapshot/snapshotter.h"

#define GC_ROOT "containerd.io/gc.root"

/* ---- environment: a store root with a database and a snapshotter ---- */

struct env {
	const char *driver;
	char root[PATH_MAX + 256];
	char work[PATH_MAX + 256];
	int rootfd;
	meta_db *db;
	snapshotter *s;
	char gc_root[64]; /* the suite's start time, the gc.root label of everything */
	struct snap_label labels[1];
};

static void env_open_at(struct env *e, const char *driver, const char *root)
{
	e->driver = driver;
	snprintf(e->root, sizeof(e->root), "%s", root);
	snprintf(e->work, sizeof(e->work), "%s/work", test_dir);
	ASSERT_TRUE(test_sh("mkdir -p '%s' '%s'", e->root, e->work) == 0);
	e->rootfd = open(e->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_TRUE(e->rootfd >= 0);
	char db[PATH_MAX + 16];
	snprintf(db, sizeof(db), "%s/meta.db", e->root);
	ASSERT_OK(meta_open(db, &e->db, ERR));
	int r = snap_open(e->rootfd, e->db, driver, &e->s, ERR);
	if (r == -EOPNOTSUPP)
		test_skip(cairn_error_message(test_err));
	ASSERT_OK(r);
	if (!e->gc_root[0]) {
		time_t t = time(NULL);
		strftime(e->gc_root, sizeof(e->gc_root), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	}
	e->labels[0] = (struct snap_label){GC_ROOT, e->gc_root};
}

static void env_open(struct env *e, const char *driver)
{
	char root[PATH_MAX];
	snprintf(root, sizeof(root), "%s/root", test_dir);
	env_open_at(e, driver, root);
}

static void env_close(struct env *e)
{
	e->s = snap_close(e->s);
	e->db = meta_close(e->db);
	close(e->rootfd);
}

static void env_reopen(struct env *e)
{
	char root[PATH_MAX];
	snprintf(root, sizeof(root), "%s", e->root);
	env_close(e);
	env_open_at(e, e->driver, root);
}

static void require_root(void)
{
	if (geteuid() != 0)
		test_skip("needs root for mounts");
}

/* Each suite check runs once per driver, with the umask cleared as containerd's suite does. */
#define SNAP_TEST(name)                                                                            \
	static void body_##name(struct env *e);                                                    \
	TEST(name##_overlay)                                                                       \
	{                                                                                          \
		struct env e = {0};                                                                \
		require_root();                                                                    \
		umask(0);                                                                          \
		env_open(&e, "overlay");                                                           \
		body_##name(&e);                                                                   \
		env_close(&e);                                                                     \
	}                                                                                          \
	TEST(name##_native)                                                                        \
	{                                                                                          \
		struct env e = {0};                                                                \
		require_root();                                                                    \
		umask(0);                                                                          \
		env_open(&e, "native");                                                            \
		body_##name(&e);                                                                   \
		env_close(&e);                                                                     \
	}                                                                                          \
	static void body_##name(struct env *e)

/* "<work>/<name>" in a static ring of buffers (enough for one statement's arguments). */
static const char *wpath(struct env *e, const char *name)
{
	static char ring[8][2 * PATH_MAX];
	static int next;
	char *p = ring[next++ % 8];
	snprintf(p, 2 * PATH_MAX, "%s/%s", e->work, name);
	return p;
}

/* ---- appliers (containerd's fstest) ---- */

enum aop { A_END, A_FILE, A_DIR, A_RMALL, A_RENAME, A_CHOWN, A_CHMOD, A_SYMLINK, A_LINK, A_SOCK };

struct applier {
	enum aop op;
	const char *a, *b;
	unsigned mode;
	int uid, gid;
};

#define AFILE(n, c, m)                                                                             \
	{                                                                                          \
		A_FILE, n, c, m, 0, 0                                                              \
	}
#define ADIR(n, m)                                                                                 \
	{                                                                                          \
		A_DIR, n, NULL, m, 0, 0                                                            \
	}
#define ARMALL(n)                                                                                  \
	{                                                                                          \
		A_RMALL, n, NULL, 0, 0, 0                                                          \
	}
#define ARENAME(a, b)                                                                              \
	{                                                                                          \
		A_RENAME, a, b, 0, 0, 0                                                            \
	}
#define ACHOWN(n, u, g)                                                                            \
	{                                                                                          \
		A_CHOWN, n, NULL, 0, u, g                                                          \
	}
#define ACHMOD(n, m)                                                                               \
	{                                                                                          \
		A_CHMOD, n, NULL, m, 0, 0                                                          \
	}
#define ASYMLINK(t, n)                                                                             \
	{                                                                                          \
		A_SYMLINK, t, n, 0, 0, 0                                                           \
	}
#define ALINK(a, b)                                                                                \
	{                                                                                          \
		A_LINK, a, b, 0, 0, 0                                                              \
	}
#define ASOCK(n, m)                                                                                \
	{                                                                                          \
		A_SOCK, n, NULL, m, 0, 0                                                           \
	}
#define AEND                                                                                       \
	{                                                                                          \
		A_END, NULL, NULL, 0, 0, 0                                                         \
	}

static void apply_one(const char *dir, const struct applier *a)
{
	char p[PATH_MAX], q[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", dir, a->a);
	if (a->b)
		snprintf(q, sizeof(q), "%s/%s", dir, a->b);
	switch (a->op) {
	case A_FILE: {
		int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, a->mode);
		if (fd < 0)
			test_fail(__FILE__, __LINE__, "create '%s': %m", p);
		ASSERT_EQ(write(fd, a->b, strlen(a->b)), (ssize_t)strlen(a->b));
		close(fd);
		ASSERT_EQ(chmod(p, a->mode), 0);
		break;
	}
	case A_DIR:
		ASSERT_EQ(test_sh("mkdir -p '%s'", p), 0);
		ASSERT_EQ(chmod(p, a->mode), 0);
		break;
	case A_RMALL:
		ASSERT_EQ(test_sh("rm -rf '%s'", p), 0);
		break;
	case A_RENAME:
		if (rename(p, q) < 0)
			test_fail(__FILE__, __LINE__, "rename '%s' '%s': %m", p, q);
		break;
	case A_CHOWN:
		ASSERT_EQ(chown(p, a->uid, a->gid), 0);
		break;
	case A_CHMOD:
		ASSERT_EQ(chmod(p, a->mode), 0);
		break;
	case A_SYMLINK:
		ASSERT_EQ(symlink(a->a, q), 0);
		break;
	case A_LINK:
		if (link(p, q) < 0)
			test_fail(__FILE__, __LINE__, "link '%s' '%s': %m", p, q);
		break;
	case A_SOCK:
		ASSERT_EQ(mknod(p, S_IFSOCK | a->mode, 0), 0);
		break;
	case A_END:
		break;
	}
}

static void apply(const char *dir, const struct applier *a)
{
	for (; a->op != A_END; a++)
		apply_one(dir, a);
}

/* ---- directory equality (continuity's CheckDirectoryEqual) ---- */

struct entry {
	char *path;
	struct stat st;
};

struct tree {
	struct entry *e;
	size_t n, cap;
};

static void tree_walk(struct tree *t, const char *root, const char *rel)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s%s%s", root, *rel ? "/" : "", rel);
	DIR *d = opendir(dir);
	if (!d)
		test_fail(__FILE__, __LINE__, "opendir '%s': %m", dir);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char p[PATH_MAX], full[PATH_MAX + 8];
		snprintf(p, sizeof(p), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
		snprintf(full, sizeof(full), "%s/%s", root, p);
		if (t->n == t->cap) {
			t->cap = t->cap ? t->cap * 2 : 64;
			t->e = realloc(t->e, t->cap * sizeof(*t->e));
		}
		struct entry *en = &t->e[t->n++];
		en->path = strdup(p);
		ASSERT_EQ(lstat(full, &en->st), 0);
		if (S_ISDIR(en->st.st_mode))
			tree_walk(t, root, p);
	}
	closedir(d);
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

static uint64_t file_hash(const char *path)
{
	uint64_t h = 1469598103934665603ULL;
	FILE *f = fopen(path, "re");
	if (!f)
		test_fail(__FILE__, __LINE__, "open '%s': %m", path);
	int c;
	while ((c = fgetc(f)) != EOF)
		h = (h ^ (uint64_t)c) * 1099511628211ULL;
	fclose(f);
	return h;
}

/* One line per entry: everything the comparison looks at. */
static char *describe(const char *root, const struct tree *t, size_t i)
{
	const struct entry *en = &t->e[i];
	char full[PATH_MAX + 8], extra[PATH_MAX + 64] = "";
	snprintf(full, sizeof(full), "%s/%s", root, en->path);
	mode_t m = en->st.st_mode;
	if (S_ISREG(m)) {
		const char *leader = en->path;
		for (size_t j = 0; en->st.st_nlink > 1 && j < t->n; j++)
			if (t->e[j].st.st_ino == en->st.st_ino && S_ISREG(t->e[j].st.st_mode)) {
				leader = t->e[j].path;
				break;
			}
		snprintf(extra, sizeof(extra), "size=%lld hash=%016" PRIx64 " link=%s",
		         (long long)en->st.st_size, file_hash(full), leader);
	} else if (S_ISLNK(m)) {
		char target[PATH_MAX] = "";
		ssize_t n = readlink(full, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = 0;
		snprintf(extra, sizeof(extra), "-> %s", target);
	} else if (S_ISCHR(m) || S_ISBLK(m)) {
		snprintf(extra, sizeof(extra), "dev=%u:%u", major(en->st.st_rdev),
		         minor(en->st.st_rdev));
	}
	char *s = NULL;
	ASSERT_TRUE(asprintf(&s, "%s mode=%o uid=%u gid=%u %s", en->path, (unsigned)m,
	                     en->st.st_uid, en->st.st_gid, extra) > 0);
	return s;
}

static void tree_free(struct tree *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->e[i].path);
	free(t->e);
}

#define ASSERT_DIR_EQUAL(a, b) assert_dir_equal(__FILE__, __LINE__, a, b)
static void assert_dir_equal(const char *file, int line, const char *a, const char *b)
{
	struct tree ta = {0}, tb = {0};
	tree_walk(&ta, a, "");
	tree_walk(&tb, b, "");
	if (ta.n)
		qsort(ta.e, ta.n, sizeof(*ta.e), cmp_entry);
	if (tb.n)
		qsort(tb.e, tb.n, sizeof(*tb.e), cmp_entry);
	for (size_t i = 0; i < ta.n || i < tb.n; i++) {
		char *da = i < ta.n ? describe(a, &ta, i) : strdup("(nothing)");
		char *db = i < tb.n ? describe(b, &tb, i) : strdup("(nothing)");
		if (strcmp(da, db) != 0)
			test_fail(file, line, "'%s' and '%s' differ:\n#   %s\n#   %s", a, b, da,
			          db);
		free(da);
		free(db);
	}
	tree_free(&ta);
	tree_free(&tb);
}

/* ---- mounting helpers ---- */

static void mount_on(struct snap_mount *m, size_t n, const char *dir)
{
	ASSERT_EQ(test_sh("mkdir -p '%s'", dir), 0);
	ASSERT_OK(snap_mount_all(m, n, dir, ERR));
}

static void mount_key(struct env *e, const char *key, const char *dir)
{
	struct snap_mount *m = NULL;
	size_t n = 0;
	ASSERT_OK(snap_mounts(e->s, key, &m, &n, ERR));
	ASSERT_TRUE(n >= 1);
	mount_on(m, n, dir);
	snap_mounts_free(m, n);
}

static void unmount(const char *dir)
{
	ASSERT_OK(snap_unmount(dir, ERR));
}

static void prepare(struct env *e, const char *key, const char *parent)
{
	ASSERT_OK(snap_prepare(e->s, key, parent, e->labels, 1, NULL, NULL, ERR));
}

static void view(struct env *e, const char *key, const char *parent)
{
	ASSERT_OK(snap_view(e->s, key, parent, e->labels, 1, NULL, NULL, ERR));
}

static void commit(struct env *e, const char *name, const char *key)
{
	ASSERT_OK(snap_commit(e->s, name, key, e->labels, 1, ERR));
}

static void remove_key(struct env *e, const char *key)
{
	ASSERT_OK(snap_remove(e->s, key, ERR));
}

static snap_info *stat_key(struct env *e, const char *key)
{
	snap_info *i = NULL;
	ASSERT_OK(snap_stat(e->s, key, &i, ERR));
	ASSERT_STREQ(i->name, key);
	return i;
}

static void expect_info(struct env *e, const char *key, snap_kind kind, const char *parent)
{
	snap_info *i = stat_key(e, key);
	ASSERT_EQ(i->kind, kind);
	ASSERT_STREQ(i->parent, parent);
	snap_info_free(i);
}

static bool info_equal(const snap_info *a, const snap_info *b)
{
	if (a->kind != b->kind || strcmp(a->name, b->name) || strcmp(a->parent, b->parent) ||
	    a->created_ns != b->created_ns || a->updated_ns != b->updated_ns ||
	    a->n_labels != b->n_labels)
		return false;
	for (size_t i = 0; i < a->n_labels; i++)
		if (strcmp(a->labels[i].key, b->labels[i].key) ||
		    strcmp(a->labels[i].value, b->labels[i].value))
			return false;
	return true;
}

static int counter;

/* createSnapshot: Prepare, mount, apply, unmount, Commit under a fresh name (returned). */
static char *create_snapshot(struct env *e, const char *parent, const struct applier *a)
{
	char key[64], name[64], *mnt = NULL;
	int n = ++counter;
	snprintf(key, sizeof(key), "%d-prepare", n);
	snprintf(name, sizeof(name), "layer-%d", n);
	prepare(e, key, parent);
	ASSERT_TRUE(asprintf(&mnt, "%s/mnt-%d", e->work, n) > 0);
	mount_key(e, key, mnt);
	apply(mnt, a);
	unmount(mnt);
	commit(e, name, key);
	free(mnt);
	return strdup(name);
}

/* checkSnapshot: a view of @name mounted equals @flat. */
static void check_snapshot(struct env *e, const char *name, const char *flat)
{
	char key[128];
	snprintf(key, sizeof(key), "%s-view", name);
	view(e, key, name);
	const char *mnt = wpath(e, "check-view");
	mount_key(e, key, mnt);
	ASSERT_DIR_EQUAL(mnt, flat);
	unmount(mnt);
	remove_key(e, key);
}

static void check_snapshots(struct env *e, const struct applier *const *layers, size_t n)
{
	char *prev = NULL;
	char flat[PATH_MAX];
	snprintf(flat, sizeof(flat), "%s/flat-%d", e->work, ++counter);
	ASSERT_EQ(test_sh("mkdir -p '%s'", flat), 0);
	for (size_t i = 0; i < n; i++) {
		char *name = create_snapshot(e, prev, layers[i]);
		apply(flat, layers[i]);
		check_snapshot(e, name, flat);
		free(prev);
		prev = name;
	}
	free(prev);
}

/* ==== containerd's testsuite, §4.2 ==== */

static const struct applier basic_initial[] = {
	AFILE("foo", "foo\n", 0777), ADIR("a", 0755), ADIR("a/b", 0755), ADIR("a/b/c", 0755), AEND,
};
static const struct applier basic_diff[] = {
	AFILE("bar", "bar\n", 0777),
	AFILE("foo", "bar\n", 0777),
	ARMALL("a/b"),
	AEND,
};

struct collect {
	struct env *e;
	snap_info *infos[64];
	size_t n;
};

static int collect_info(const snap_info *i, void *userdata)
{
	struct collect *c = userdata;
	snap_info *copy = NULL;
	ASSERT_OK(snap_stat(c->e->s, i->name, &copy, ERR)); /* reentrant, and equal */
	ASSERT_TRUE(info_equal(copy, i));
	c->infos[c->n++] = copy;
	return 0;
}

SNAP_TEST(basic)
{
	const char *preparing = wpath(e, "preparing"), *committed = wpath(e, "committed");
	const char *nextlayer = wpath(e, "nextlayer"), *next = wpath(e, "committed-next");
	const char *mnt = wpath(e, "mnt"), *flat = wpath(e, "flat");
	struct snap_mount *m = NULL;
	size_t n = 0;
	ASSERT_OK(snap_prepare(e->s, preparing, NULL, e->labels, 1, &m, &n, ERR));
	ASSERT_TRUE(n >= 1);
	mount_on(m, n, mnt);
	m = snap_mounts_free(m, n);
	apply(mnt, basic_initial);
	unmount(mnt);
	commit(e, committed, preparing);
	expect_info(e, committed, SNAP_KIND_COMMITTED, "");
	ASSERT_ERR(snap_stat(e->s, preparing, NULL, ERR), -ENOENT);

	ASSERT_EQ(test_sh("mkdir -p '%s'", flat), 0);
	apply(flat, basic_initial);
	prepare(e, nextlayer, committed);
	mount_key(e, nextlayer, mnt);
	ASSERT_DIR_EQUAL(mnt, flat);
	apply(mnt, basic_diff);
	apply(flat, basic_diff);
	unmount(mnt);
	expect_info(e, nextlayer, SNAP_KIND_ACTIVE, committed);
	commit(e, next, nextlayer);
	expect_info(e, next, SNAP_KIND_COMMITTED, committed);
	ASSERT_ERR(snap_stat(e->s, nextlayer, NULL, ERR), -ENOENT);

	struct collect c = {.e = e};
	ASSERT_OK(snap_walk(e->s, NULL, 0, collect_info, &c, ERR));
	ASSERT_EQ(c.n, 2);
	for (size_t i = 0; i < c.n; i++) {
		snap_info *st = stat_key(e, c.infos[i]->name);
		ASSERT_TRUE(info_equal(st, c.infos[i]));
		ASSERT_STREQ(snap_info_label(st, GC_ROOT), e->gc_root);
		snap_info_free(st);
		snap_info_free(c.infos[i]);
	}

	const char *nn = wpath(e, "nextnextlayer");
	view(e, nn, next);
	mount_key(e, nn, mnt);
	ASSERT_DIR_EQUAL(mnt, flat);
	unmount(mnt);
	remove_key(e, nn);
	ASSERT_ERR(snap_remove(e->s, committed, ERR), CAIRN_EPRECONDITION);
	ASSERT_ERRMSG("remove");
	remove_key(e, next);
	remove_key(e, committed);
}

SNAP_TEST(stat_active)
{
	const char *key = wpath(e, "preparing"), *mnt = wpath(e, "mnt");
	prepare(e, key, NULL);
	mount_key(e, key, mnt);
	apply(mnt, (const struct applier[]){AFILE("foo", "foo\n", 0777), AEND});
	snap_info *i = stat_key(e, key);
	ASSERT_EQ(i->kind, SNAP_KIND_ACTIVE);
	ASSERT_STREQ(i->parent, "");
	snap_info_free(i);
	unmount(mnt);
}

SNAP_TEST(stat_committed)
{
	const char *key = wpath(e, "preparing"), *mnt = wpath(e, "mnt");
	const char *name = wpath(e, "committed");
	prepare(e, key, NULL);
	mount_key(e, key, mnt);
	apply(mnt, (const struct applier[]){AFILE("foo", "foo\n", 0777), AEND});
	commit(e, name, key); /* still mounted */
	expect_info(e, name, SNAP_KIND_COMMITTED, "");
	unmount(mnt);
}

SNAP_TEST(transitivity)
{
	const char *mnt = wpath(e, "mnt");
	prepare(e, "prepare-a", NULL);
	mount_key(e, "prepare-a", mnt);
	apply(mnt, (const struct applier[]){AFILE("foo", "foo\n", 0777), AEND});
	unmount(mnt);
	commit(e, "snapA", "prepare-a");
	prepare(e, "prepare-b", "snapA");
	mount_key(e, "prepare-b", mnt);
	apply(mnt, (const struct applier[]){AFILE("foo", "foo bar\n", 0777), AEND});
	unmount(mnt);
	commit(e, "snapB", "prepare-b");
	expect_info(e, "snapA", SNAP_KIND_COMMITTED, "");
	snap_info *b = stat_key(e, "snapB");
	ASSERT_STREQ(b->parent, "snapA");
	expect_info(e, b->parent, SNAP_KIND_COMMITTED, "");
	snap_info_free(b);
}

SNAP_TEST(prepare_view_failing)
{
	prepare(e, "prepare-a", NULL);
	commit(e, "snapA", "prepare-a");
	prepare(e, "newlayer", "snapA");
	ASSERT_ERR(snap_view(e->s, "newlayer", "snapA", NULL, 0, NULL, NULL, ERR), -EEXIST);
	ASSERT_ERRMSG("'newlayer'");
	prepare(e, "prepLayer", "snapA");
	ASSERT_ERR(snap_prepare(e->s, "prepLayer", "snapA", NULL, 0, NULL, NULL, ERR), -EEXIST);
	view(e, "viewLayer", "snapA");
	ASSERT_ERR(snap_view(e->s, "viewLayer", "snapA", NULL, 0, NULL, NULL, ERR), -EEXIST);
}

static void check_label_set(struct env *e, const char *key, const char *const *kv, size_t n)
{
	snap_info *i = stat_key(e, key);
	ASSERT_EQ(i->n_labels, n);
	for (size_t j = 0; j < n; j++)
		ASSERT_STREQ(snap_info_label(i, kv[2 * j]), kv[2 * j + 1]);
	snap_info_free(i);
}

SNAP_TEST(update)
{
	int64_t t1 = meta_now_ns();
	prepare(e, "c1-a", NULL);
	commit(e, "c1", "c1-a");
	prepare(e, "c2-a", "c1");
	commit(e, "c2", "c2-a");
	prepare(e, "a1", "c2");
	prepare(e, "a2", NULL);
	view(e, "v1", "c2");
	view(e, "v2", NULL);
	int64_t t2 = meta_now_ns();
	static const struct {
		const char *name, *parent;
		snap_kind kind;
	} base[] = {
		{"c1", "", SNAP_KIND_COMMITTED}, {"c2", "c1", SNAP_KIND_COMMITTED},
		{"a1", "c2", SNAP_KIND_ACTIVE},  {"a2", "", SNAP_KIND_ACTIVE},
		{"v1", "c2", SNAP_KIND_VIEW},    {"v2", "", SNAP_KIND_VIEW},
	};
	for (size_t k = 0; k < ELEMENTSOF(base); k++) {
		snap_info *i = stat_key(e, base[k].name);
		ASSERT_TRUE(i->created_ns >= t1 && i->created_ns <= t2);
		ASSERT_EQ(i->created_ns, i->updated_ns);
		ASSERT_EQ(i->kind, base[k].kind);
		ASSERT_STREQ(i->parent, base[k].parent);

		int64_t u1 = meta_now_ns();
		struct snap_label l4[] = {
			{"l1", "v1"}, {"l2", "v2"}, {"l3", "v3"}, {GC_ROOT, e->gc_root}};
		snap_info in = {.name = i->name,
		                .parent = "doesnotexist",
		                .labels = l4,
		                .n_labels = 4,
		                .kind = SNAP_KIND_VIEW};
		snap_info *out = NULL;
		ASSERT_OK(snap_update(e->s, &in, NULL, 0, &out, ERR));
		int64_t u2 = meta_now_ns();
		ASSERT_EQ(out->created_ns, i->created_ns);
		ASSERT_TRUE(out->updated_ns >= u1 && out->updated_ns <= u2);
		ASSERT_EQ(out->kind, base[k].kind);
		ASSERT_STREQ(out->parent, base[k].parent);
		ASSERT_STREQ(out->name, base[k].name);
		snap_info_free(out);
		const char *want4[] = {"l1", "v1", "l2", "v2", "l3", "v3", GC_ROOT, e->gc_root};
		check_label_set(e, base[k].name, want4, 4);

		struct snap_label upd[] = {{"l1", "updated"}, {"l4", "v4"}};
		in.labels = upd;
		in.n_labels = 2;
		const char *fp[] = {"labels.l1", "labels.l2"};
		ASSERT_OK(snap_update(e->s, &in, fp, 2, NULL, ERR));
		const char *want3[] = {"l1", "updated", "l3", "v3", GC_ROOT, e->gc_root};
		check_label_set(e, base[k].name, want3, 3);

		struct snap_label rep[] = {{"l4", "v4"}, {GC_ROOT, e->gc_root}};
		in.labels = rep;
		const char *fl[] = {"labels"};
		ASSERT_OK(snap_update(e->s, &in, fl, 1, NULL, ERR));
		const char *want2[] = {"l4", "v4", GC_ROOT, e->gc_root};
		check_label_set(e, base[k].name, want2, 2);

		const char *fparent[] = {"parent"};
		ASSERT_ERR(snap_update(e->s, &in, fparent, 1, NULL, ERR), -EINVAL);
		ASSERT_ERRMSG("parent");
		snap_info_free(i);
	}
}

SNAP_TEST(remove)
{
	prepare(e, "committed-a", NULL);
	commit(e, "committed-1", "committed-a");
	prepare(e, "reuse-1", "committed-1");
	remove_key(e, "reuse-1");
	view(e, "reuse-1", "committed-1");
	remove_key(e, "reuse-1");
	prepare(e, "reuse-1", NULL);
	remove_key(e, "committed-1");
	commit(e, "committed-1", "reuse-1");
}

struct names {
	char buf[1024];
};

static int collect_name(const snap_info *i, void *userdata)
{
	struct names *n = userdata;
	if (n->buf[0])
		strcat(n->buf, ",");
	strcat(n->buf, i->name);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names @filters select, sorted, comma-joined. */
static void expect_walk(struct env *e, const char *const *filters, size_t n, const char *want)
{
	struct names got = {""};
	ASSERT_OK(snap_walk(e->s, filters, n, collect_name, &got, ERR));
	char *parts[32], *save = NULL;
	size_t k = 0;
	for (char *t = strtok_r(got.buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
		parts[k++] = t;
	qsort(parts, k, sizeof(*parts), cmp_str);
	char sorted[1024] = "";
	for (size_t i = 0; i < k; i++) {
		if (i)
			strcat(sorted, ",");
		strcat(sorted, parts[i]);
	}
	if (strcmp(sorted, want) != 0)
		test_fail(__FILE__, __LINE__, "walk '%s': got '%s', want '%s'", n ? filters[0] : "",
		          sorted, want);
}

SNAP_TEST(walk)
{
	struct snap_label gc[] = {{GC_ROOT, "check-walk"}};
	struct snap_label l1[] = {{GC_ROOT, "check-walk"}, {"l", "1"}};
	struct snap_label l2[] = {{GC_ROOT, "check-walk"}, {"l", "2"}};
	struct snap_label l3[] = {{GC_ROOT, "check-walk"}, {"l", "3"}};
	ASSERT_OK(snap_prepare(e->s, "a-np", NULL, gc, 1, NULL, NULL, ERR));
	ASSERT_OK(snap_prepare(e->s, "p-tmp", NULL, gc, 1, NULL, NULL, ERR));
	ASSERT_OK(snap_commit(e->s, "p", "p-tmp", gc, 1, ERR));
	ASSERT_OK(snap_prepare(e->s, "a", "p", gc, 1, NULL, NULL, ERR));
	ASSERT_OK(snap_view(e->s, "v", "p", gc, 1, NULL, NULL, ERR));
	ASSERT_OK(snap_prepare(e->s, "p-wl-tmp", NULL, gc, 1, NULL, NULL, ERR));
	ASSERT_OK(snap_commit(e->s, "p-wl", "p-wl-tmp", l1, 2, ERR));
	ASSERT_OK(snap_prepare(e->s, "a-wl", "p-wl", l2, 2, NULL, NULL, ERR));
	ASSERT_OK(snap_view(e->s, "v-wl", "p-wl", l3, 2, NULL, NULL, ERR));
	ASSERT_OK(snap_prepare(e->s, "a-np-wl", NULL, l2, 2, NULL, NULL, ERR));

#define GCF "labels.\"containerd.io/gc.root\"==check-walk"
	const char *all[] = {GCF};
	expect_walk(e, all, 1, "a,a-np,a-np-wl,a-wl,p,p-wl,v,v-wl");
	const char *active[] = {GCF ",kind==active"};
	expect_walk(e, active, 1, "a,a-np,a-np-wl,a-wl");
	const char *views[] = {GCF ",kind==view"};
	expect_walk(e, views, 1, "v,v-wl");
	const char *committed[] = {GCF ",kind==committed"};
	expect_walk(e, committed, 1, "p,p-wl");
	const char *either[] = {"name==p", "name==a-np-wl"};
	expect_walk(e, either, 2, "a-np-wl,p");
	const char *named[] = {"name==a-wl,labels.l"};
	expect_walk(e, named, 1, "a-wl");
	const char *parent[] = {"parent==p"};
	expect_walk(e, parent, 1, "a,v");
	const char *has_parent[] = {"parent!=\"\"," GCF};
	expect_walk(e, has_parent, 1, "a,a-wl,v,v-wl");
	const char *labelled[] = {"labels.l"};
	expect_walk(e, labelled, 1, "a-np-wl,a-wl,p-wl,v-wl");
	const char *l_two[] = {"labels.l==2"};
	expect_walk(e, l_two, 1, "a-np-wl,a-wl");
	const char *regex[] = {"name~=/^a-.*wl$/"};
	expect_walk(e, regex, 1, "a-np-wl,a-wl");
	const char *bad[] = {"name=="};
	expect_walk(e, bad, 1, "");
	const char *broken[] = {"name==a,"};
	ASSERT_ERR(snap_walk(e->s, broken, 1, collect_name, &(struct names){""}, ERR), -EINVAL);
	ASSERT_ERRMSG("name==a,");
#undef GCF
}

SNAP_TEST(layer_file_update)
{
	static const struct applier l1[] = {
		ADIR("etc", 0700),
		AFILE("etc/hosts", "mydomain 10.0.0.1", 0644),
		AFILE("etc/profile", "PATH=/usr/bin", 0644),
		AEND,
	};
	static const struct applier l2[] = {
		AFILE("etc/hosts", "mydomain 10.0.0.2", 0644),
		AFILE("etc/profile", "PATH=/usr/bin", 0666),
		ADIR("root", 0700),
		AFILE("root/.bashrc", "PATH=/usr/sbin:/usr/bin", 0644),
		AEND,
	};
	const struct applier *layers[] = {l1, l2};
	for (int i = 0; i < 5; i++) {
		check_snapshots(e, layers, 2);
		/* to the next second boundary: timestamp truncation bugs show there */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		usleep((useconds_t)((1000000000L - ts.tv_nsec) / 1000 + 1));
	}
}

SNAP_TEST(remove_directory_in_lower_layer)
{
	static const struct applier l1[] = {ADIR("lib", 0700), AFILE("lib/hidden", "", 0644), AEND};
	static const struct applier l2[] = {ARMALL("lib"), ADIR("lib", 0700),
	                                    AFILE("lib/not-hidden", "", 0644), AEND};
	static const struct applier l3[] = {AFILE("lib/newfile", "", 0644), AEND};
	const struct applier *layers[] = {l1, l2, l3};
	check_snapshots(e, layers, 3);
}

SNAP_TEST(chown)
{
	static const struct applier l1[] = {ADIR("opt", 0755), ADIR("opt/a", 0755),
	                                    ADIR("opt/a/b", 0700),
	                                    AFILE("opt/a/b/file.txt", "hello", 0644), AEND};
	static const struct applier l2[] = {ACHOWN("opt", 1, 1), ACHOWN("opt/a", 1, 1),
	                                    ACHOWN("opt/a/b", 1, 1),
	                                    ACHOWN("opt/a/b/file.txt", 1, 1), AEND};
	const struct applier *layers[] = {l1, l2};
	check_snapshots(e, layers, 2);
}

SNAP_TEST(directory_permission_on_commit)
{
	static const struct applier l1[] = {
		ADIR("dir1", 0700),
		ADIR("dir2", 0700),
		ADIR("dir3", 0700),
		ADIR("dir4", 0700),
		AFILE("dir4/f1", "", 0644),
		ADIR("dir5", 0700),
		AFILE("dir5/f1", "", 0644),
		ACHOWN("dir1", 1, 1),
		ACHOWN("dir2", 1, 1),
		ACHOWN("dir3", 1, 1),
		ACHOWN("dir5", 1, 1),
		ACHOWN("dir5/f1", 1, 1),
		AEND,
	};
	static const struct applier l2[] = {ACHOWN("dir2", 0, 0), ARMALL("dir3"),
	                                    ACHOWN("dir4", 1, 1), ACHOWN("dir4/f1", 1, 1), AEND};
	static const struct applier l3[] = {ADIR("dir3", 0700),   ACHOWN("dir3", 1, 1),
	                                    ARMALL("dir5"),       ADIR("dir5", 0700),
	                                    ACHOWN("dir5", 1, 1), AEND};
	const struct applier *layers[] = {l1, l2, l3};
	check_snapshots(e, layers, 3);
}

SNAP_TEST(remove_intermediate_snapshot)
{
	prepare(e, "base-a", NULL);
	commit(e, "base", "base-a");
	prepare(e, "intermediate-a", "base");
	commit(e, "intermediate", "intermediate-a");
	prepare(e, "top", "intermediate");
	ASSERT_ERR(snap_remove(e->s, "intermediate", ERR), CAIRN_EPRECONDITION);
	ASSERT_ERRMSG("remove");
	ASSERT_ERRMSG("'intermediate'");
	remove_key(e, "top");
	remove_key(e, "intermediate");
	remove_key(e, "base");
}

SNAP_TEST(deleted_files_in_child_snapshot)
{
	static const struct applier l1[] = {AFILE("foo", "foo\n", 0777),
	                                    AFILE("foobar", "foobar\n", 0777), AEND};
	static const struct applier l2[] = {ARMALL("foobar"), AEND};
	static const struct applier l3[] = {AEND};
	const struct applier *layers[] = {l1, l2, l3};
	check_snapshots(e, layers, 3);
}

SNAP_TEST(move_file_from_lower_layer)
{
	static const struct applier l1[] = {ADIR("dir1", 0700), AFILE("dir1/f1", "Hello", 0644),
	                                    ADIR("dir2", 0700), AFILE("dir2/f2", "...", 0644),
	                                    AEND};
	static const struct applier l2[] = {ADIR("dir3", 0700), AFILE("dir3/f1", "Hello", 0644),
	                                    ARMALL("dir1"),     ALINK("dir2/f2", "dir3/f2"),
	                                    ARMALL("dir2/f2"),  AEND};
	const struct applier *layers[] = {l1, l2};
	check_snapshots(e, layers, 2);
}

SNAP_TEST(view_readonly)
{
	const char *mnt = wpath(e, "mnt");
	prepare(e, "prepare-a", NULL);
	commit(e, "committed", "prepare-a");
	view(e, "view", "committed");
	mount_key(e, "view", mnt);
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/newfile", mnt);
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	int err = errno;
	if (fd >= 0)
		close(fd);
	ASSERT_TRUE(fd < 0);
	ASSERT_EQ(err, EROFS);
	unmount(mnt);
	remove_key(e, "view");
	remove_key(e, "committed");
}

static int stat_in_walk(const snap_info *i, void *userdata)
{
	struct env *e = userdata;
	if (strncmp(i->name, "stat-in-walk-", 13) != 0)
		return 0;
	snap_info *st = stat_key(e, i->name);
	ASSERT_TRUE(info_equal(st, i));
	snap_info_free(st);
	return 0;
}

SNAP_TEST(stat_in_walk)
{
	prepare(e, "stat-in-walk-c1-a", NULL);
	commit(e, "stat-in-walk-c1", "stat-in-walk-c1-a");
	prepare(e, "stat-in-walk-c2-a", "stat-in-walk-c1");
	commit(e, "stat-in-walk-c2", "stat-in-walk-c2-a");
	prepare(e, "stat-in-walk-a1", "stat-in-walk-c2");
	view(e, "stat-in-walk-v1", "stat-in-walk-c2");
	ASSERT_OK(snap_walk(e->s, NULL, 0, stat_in_walk, e, ERR));
}

static int stop_walk(const snap_info *i, void *userdata)
{
	return -ECANCELED;
}

SNAP_TEST(close_twice)
{
	prepare(e, "a", NULL);
	commit(e, "b", "a");
	remove_key(e, "b");
	ASSERT_ERR(snap_walk(e->s, NULL, 0, stop_walk, NULL, ERR), 0);
	/* C has no second close of one pointer; closing returns NULL and closing NULL succeeds. */
	e->s = snap_close(e->s);
	ASSERT_TRUE(snap_close(e->s) == NULL);
	env_reopen(e);
}

SNAP_TEST(root_permission)
{
	const char *mnt = wpath(e, "mnt");
	prepare(e, "preparing", NULL);
	mount_key(e, "preparing", mnt);
	struct stat st;
	ASSERT_EQ(stat(mnt, &st), 0);
	ASSERT_EQ(st.st_mode & 0777, 0755);
	unmount(mnt);
}

SNAP_TEST(rename)
{
	static const struct applier l1[] = {ADIR("dir1", 0700), ADIR("somefiles", 0700),
	                                    AFILE("somefiles/f1", "was here", 0644),
	                                    AFILE("somefiles/f2", "nothing interesting", 0644),
	                                    AEND};
	static const struct applier dir_rename[] = {ARENAME("dir1", "dir2"), AEND};
	static const struct applier l2[] = {AFILE("somefiles/f1-overwrite", "new content 1", 0644),
	                                    ARENAME("somefiles/f1-overwrite", "somefiles/f1"),
	                                    ARENAME("somefiles/f2", "somefiles/f3"), AEND};
	/* Renaming a lower directory needs redirect_dir on overlay (containerd skips it too). */
	bool overlay = strcmp(snap_driver_name(e->s), "overlay") == 0;
	const struct applier *layers[] = {l1, overlay ? l2 : dir_rename, l2};
	check_snapshots(e, layers, overlay ? 2 : 3);
}

static void layer_n(int i, struct applier *a, char (*names)[64])
{
	snprintf(names[0], 64, "%d WAS HERE!\n", i);
	snprintf(names[1], 64, "addhere/file-%d", i);
	snprintf(names[2], 64, "onlyme/file-%d", i);
	struct applier l[] = {AFILE("overwriteme", names[0], 0644),
	                      AFILE(names[1], "", 0755),
	                      ARMALL("onlyme"),
	                      ADIR("onlyme", 0755),
	                      AFILE(names[2], "", 0755),
	                      AEND};
	memcpy(a, l, sizeof(l));
}

SNAP_TEST(layers_128_mount)
{
	static const struct applier base[] = {
		AFILE("bottom", "way at the bottom\n", 0777),
		AFILE("overwriteme", "FIRST!\n", 0777),
		ADIR("addhere", 0755),
		ADIR("onlyme", 0755),
		AFILE("onlyme/bottom", "bye!\n", 0777),
		AEND,
	};
	const char *flat = wpath(e, "flat"), *mnt = wpath(e, "mnt");
	ASSERT_EQ(test_sh("mkdir -p '%s'", flat), 0);
	char parent[64] = "", key[64], name[64];
	for (int i = 0; i < 128; i++) {
		struct applier l[6];
		char names[3][64];
		layer_n(i, l, names);
		snprintf(key, sizeof(key), "layer-%d-prepare", i);
		snprintf(name, sizeof(name), "layer-%d", i);
		prepare(e, key, parent[0] ? parent : NULL);
		mount_key(e, key, mnt);
		ASSERT_DIR_EQUAL(mnt, flat);
		apply(mnt, i ? l : base);
		apply(flat, i ? l : base);
		ASSERT_DIR_EQUAL(mnt, flat);
		unmount(mnt);
		commit(e, name, key);
		snprintf(parent, sizeof(parent), "%s", name);
	}
	view(e, "last-view", parent);
	mount_key(e, "last-view", mnt);
	ASSERT_DIR_EQUAL(mnt, flat);
	unmount(mnt);
}

/* ==== overlay only (§3.9) ==== */

static void open_overlay(struct env *e)
{
	require_root();
	env_open(e, "overlay");
}

static bool index_supported(void)
{
	return access("/sys/module/overlay/parameters/index", F_OK) == 0;
}

TEST(overlay_mounts_bind)
{
	struct env e = {0};
	open_overlay(&e);
	struct snap_mount *m = NULL;
	size_t n = 0;
	ASSERT_OK(snap_prepare(e.s, wpath(&e, "test"), NULL, NULL, 0, &m, &n, ERR));
	ASSERT_EQ(n, 1);
	ASSERT_STREQ(m[0].type, "bind");
	char want[PATH_MAX + 32];
	snprintf(want, sizeof(want), "%s/snapshots/1/fs", e.root);
	ASSERT_STREQ(m[0].source, want);
	ASSERT_EQ(m[0].n_options, 2);
	ASSERT_STREQ(m[0].options[0], "rw");
	ASSERT_STREQ(m[0].options[1], "rbind");
	/* Commit after writing straight into the bind source. */
	char f[PATH_MAX + 40];
	snprintf(f, sizeof(f), "%s/foo", want);
	test_write_file(f, "hi");
	ASSERT_OK(snap_commit(e.s, "base", wpath(&e, "test"), NULL, 0, ERR));
	snap_mounts_free(m, n);
	env_close(&e);
}

TEST(overlay_mount_and_read)
{
	struct env e = {0};
	open_overlay(&e);
	char *fs = NULL;
	ASSERT_OK(snap_prepare(e.s, "base-a", NULL, NULL, 0, NULL, NULL, ERR));
	int fd = snap_open_fs(e.s, "base-a", &fs, ERR);
	ASSERT_OK(fd);
	close(fd);
	char f[PATH_MAX + 40];
	snprintf(f, sizeof(f), "%s/foo", fs);
	test_write_file(f, "hi");
	ASSERT_OK(snap_commit(e.s, "base", "base-a", NULL, 0, ERR));
	struct snap_mount *m = NULL;
	size_t n = 0;
	ASSERT_OK(snap_prepare(e.s, wpath(&e, "layer2"), "base", NULL, 0, &m, &n, ERR));
	ASSERT_EQ(n, 1);
	ASSERT_STREQ(m[0].type, "overlay");
	ASSERT_STREQ(m[0].source, "overlay");
	size_t k = 0;
	if (index_supported())
		ASSERT_STREQ(m[0].options[k++], "index=off");
	char want[3][PATH_MAX + 48];
	snprintf(want[0], sizeof(want[0]), "workdir=%s/snapshots/2/work", e.root);
	snprintf(want[1], sizeof(want[1]), "upperdir=%s/snapshots/2/fs", e.root);
	snprintf(want[2], sizeof(want[2]), "lowerdir=%s", fs);
	ASSERT_EQ(m[0].n_options, k + 3);
	for (size_t j = 0; j < 3; j++)
		ASSERT_STREQ(m[0].options[k + j], want[j]);
	const char *mnt = wpath(&e, "mnt");
	mount_on(m, n, mnt);
	char *content = NULL;
	snprintf(f, sizeof(f), "%s/foo", mnt);
	FILE *fp = fopen(f, "re");
	ASSERT_TRUE(fp && fscanf(fp, "%ms", &content) == 1);
	fclose(fp);
	ASSERT_STREQ(content, "hi");
	free(content);
	unmount(mnt);
	snap_mounts_free(m, n);
	free(fs);
	env_close(&e);
}

TEST(overlay_view_volatile)
{
	struct env e = {0};
	open_overlay(&e);
	const char *vol[] = {"volatile"};
	ASSERT_OK(snap_set_mount_options(e.s, vol, 1, ERR));
	prepare(&e, "base-a", NULL);
	commit(&e, "base", "base-a");
	struct snap_mount *m = NULL;
	size_t n = 0;
	ASSERT_OK(snap_view(e.s, "view1", "base", NULL, 0, &m, &n, ERR));
	ASSERT_EQ(n, 1);
	ASSERT_STREQ(m[0].type, "bind");
	char want[PATH_MAX + 48];
	snprintf(want, sizeof(want), "%s/snapshots/1/fs", e.root);
	ASSERT_STREQ(m[0].source, want);
	ASSERT_STREQ(m[0].options[0], "ro");
	ASSERT_STREQ(m[0].options[1], "rbind");
	m = snap_mounts_free(m, n);
	prepare(&e, "top-a", "base");
	commit(&e, "top", "top-a");
	ASSERT_OK(snap_view(e.s, "view2", "top", NULL, 0, &m, &n, ERR));
	ASSERT_STREQ(m[0].type, "overlay");
	ASSERT_EQ(m[0].n_options, 3 - !index_supported());
	ASSERT_STREQ(m[0].options[0], "volatile");
	snprintf(want, sizeof(want), "lowerdir=%s/snapshots/3/fs:%s/snapshots/1/fs", e.root,
	         e.root);
	ASSERT_STREQ(m[0].options[m[0].n_options - 1], want);
	snap_mounts_free(m, n);
	env_close(&e);
}

TEST(overlay_probe_remembered)
{
	struct env e = {0};
	open_overlay(&e);
	meta_tx tx = {0};
	char *v = NULL;
	ASSERT_OK(meta_tx_begin(e.db, &tx, false, ERR));
	sqlite3_stmt *st = meta_prepare(&tx, "SELECT value FROM store_info WHERE key = ?", ERR);
	sqlite3_bind_text(st, 1, "overlay.probe", -1, SQLITE_STATIC);
	ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
	v = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	meta_tx_end(&tx);
	ASSERT_STREQ(v, "ok");
	free(v);
	/* auto picks overlay here */
	env_close(&e);
	e = (struct env){0};
	char root[PATH_MAX];
	snprintf(root, sizeof(root), "%s/root", test_dir);
	env_open_at(&e, NULL, root);
	ASSERT_STREQ(snap_driver_name(e.s), "overlay");
	env_close(&e);
}

/* Writes file f<i> straight into each layer: a deep chain without mounting every step. */
static char *deep_chain(struct env *e, int depth)
{
	char key[32], name[32], prev[32] = "";
	for (int i = 0; i < depth; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(name, sizeof(name), "n%d", i);
		prepare(e, key, prev[0] ? prev : NULL);
		int fd = snap_open_fs(e->s, key, NULL, ERR);
		ASSERT_OK(fd);
		char f[32];
		snprintf(f, sizeof(f), "f%d", i);
		int ffd = openat(fd, f, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		ASSERT_TRUE(ffd >= 0);
		close(ffd);
		close(fd);
		commit(e, name, key);
		snprintf(prev, sizeof(prev), "%s", name);
	}
	return strdup(prev);
}

static void check_deep_mount(struct env *e, const char *key, int depth)
{
	const char *mnt = wpath(e, "deep");
	mount_key(e, key, mnt);
	for (int i = 0; i < depth; i++) {
		char f[PATH_MAX + 32];
		snprintf(f, sizeof(f), "%s/f%d", mnt, i);
		ASSERT_EQ(access(f, F_OK), 0);
	}
	unmount(mnt);
}

static void deep_chain_test(bool legacy)
{
	require_root();
	/* A long store path: 200 lowerdirs of ~300 bytes each, far past one page. */
	char root[PATH_MAX];
	int n = snprintf(root, sizeof(root), "%s/", test_dir);
	for (int i = 0; i < 4; i++)
		n += snprintf(root + n, sizeof(root) - (size_t)n, "%s%.60s", i ? "/" : "",
		              "a-rather-long-directory-name-to-make-each-lowerdir-option-big");
	struct env e = {0};
	env_open_at(&e, "overlay", root);
	snap_mount_no_fsconfig = legacy;
	char *top = deep_chain(&e, 200);
	struct snap_mount *m = NULL;
	size_t nm = 0;
	ASSERT_OK(snap_view(e.s, "deep-view", top, NULL, 0, &m, &nm, ERR));
	size_t len = 0;
	for (size_t i = 0; i < m[0].n_options; i++)
		len += strlen(m[0].options[i]) + 1;
	ASSERT_TRUE(len > 4 * 4096);
	snap_mounts_free(m, nm);
	check_deep_mount(&e, "deep-view", 200);
	prepare(&e, "deep-active", top);
	check_deep_mount(&e, "deep-active", 200);
	free(top);
	env_close(&e);
}

TEST(overlay_deep_chain_fsconfig)
{
	deep_chain_test(false);
}

TEST(overlay_deep_chain_relative)
{
	deep_chain_test(true);
}

/* ==== mount specs: read-only conversion, JSON ==== */

static void set_mount(struct snap_mount *m, const char *type, const char *source,
                      const char *const *opts)
{
	ASSERT_OK(snap_mount_set(m, type, source, opts));
}

static void expect_options(const struct snap_mount *m, const char *const *want)
{
	size_t n = 0;
	while (want[n])
		n++;
	ASSERT_EQ(m->n_options, n);
	for (size_t i = 0; i < n; i++)
		ASSERT_STREQ(m->options[i], want[i]);
}

TEST(readonly_conversion)
{
	static const struct {
		const char *type;
		const char *in[6];
		const char *out[6];
	} table[] = {
		{"overlay",
	         {"index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2", NULL},
	         {"index=off", "lowerdir=/u:/l1:/l2", NULL}},
		{"bind", {"rbind", "rw", NULL}, {"rbind", "ro", NULL}},
		{"bind", {"rw", "rbind", NULL}, {"rbind", "ro", NULL}},
		{"bind", {"ro", "rbind", NULL}, {"ro", "rbind", "ro", NULL}},
		{"bind", {NULL}, {"ro", NULL}},
		{"overlay", {"lowerdir=/a:/b", NULL}, {"lowerdir=/a:/b", NULL}},
		{"overlay", {"upperdir=/u", "workdir=/w", "userxattr", NULL}, {"userxattr", NULL}},
		{"overlay",
	         {"volatile", "upperdir=/u", "lowerdir=/a", "workdir=/w", "index=off", NULL},
	         {"volatile", "lowerdir=/u:/a", "index=off", NULL}},
		{"tmpfs", {"rw", "size=10m", "rw", NULL}, {"size=10m", "ro", NULL}},
	};
	struct snap_mount in[ELEMENTSOF(table)];
	for (size_t i = 0; i < ELEMENTSOF(table); i++)
		set_mount(&in[i], table[i].type, "src", table[i].in);
	struct snap_mount *heap = NULL, *ro = NULL;
	ASSERT_OK(snap_mounts_copy(in, ELEMENTSOF(table), &heap, ERR));
	ASSERT_OK(snap_mounts_readonly(heap, ELEMENTSOF(table), &ro, ERR));
	for (size_t i = 0; i < ELEMENTSOF(table); i++) {
		expect_options(&ro[i], table[i].out);
		expect_options(&heap[i], table[i].in); /* the input is untouched */
		ASSERT_STREQ(ro[i].type, table[i].type);
		ASSERT_STREQ(ro[i].source, "src");
		free(in[i].type);
		free(in[i].source);
		for (size_t j = 0; j < in[i].n_options; j++)
			free(in[i].options[j]);
		free(in[i].options);
	}
	snap_mounts_free(heap, ELEMENTSOF(table));
	snap_mounts_free(ro, ELEMENTSOF(table));
}

TEST(mounts_json)
{
	struct snap_mount *m = calloc(2, sizeof(*m));
	const char *o1[] = {"rw", "rbind", NULL};
	const char *o2[] = {"lowerdir=/a \"b\"\\c", "x\ty", NULL};
	set_mount(&m[0], "bind", "/s", o1);
	set_mount(&m[1], "overlay", "overlay", o2);
	char *json = NULL;
	ASSERT_OK(snap_mounts_json(m, 2, &json, ERR));
	ASSERT_STREQ(json, "[{\"type\":\"bind\",\"source\":\"/s\",\"options\":[\"rw\",\"rbind\"]},"
	                   "{\"type\":\"overlay\",\"source\":\"overlay\",\"options\":"
	                   "[\"lowerdir=/a \\\"b\\\"\\\\c\",\"x\\u0009y\"]}]");
	free(json);
	ASSERT_OK(snap_mounts_json(m, 0, &json, ERR));
	ASSERT_STREQ(json, "[]");
	free(json);
	snap_mounts_free(m, 2);
}

/* ==== filters ==== */

static const char *kv_field(const char *const *path, size_t n, void *userdata)
{
	const char *const *kv = userdata;
	char key[256] = "";
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(key, ".");
		strcat(key, path[i]);
	}
	for (size_t i = 0; kv[i]; i += 2)
		if (strcmp(kv[i], key) == 0)
			return kv[i + 1];
	return NULL;
}

static bool matches(const char *filter, const char *const *kv)
{
	snap_filter *f = NULL;
	ASSERT_OK(snap_filter_parse(&filter, 1, &f, ERR));
	bool r = snap_filter_match(f, kv_field, (void *)kv);
	snap_filter_free(f);
	return r;
}

TEST(filters)
{
	const char *kv[] = {"name", "a b", "labels.x.y", "1", "labels.q", "say \"hi\"", NULL};
	ASSERT_TRUE(matches("", kv));
	ASSERT_TRUE(matches("name==\"a b\"", kv));
	ASSERT_FALSE(matches("name==a", kv));
	ASSERT_TRUE(matches("labels.\"x.y\"==1", kv));
	ASSERT_TRUE(matches("labels.x.y", kv));
	ASSERT_TRUE(matches("labels.q==\"say \\\"hi\\\"\"", kv));
	ASSERT_TRUE(matches("missing!=x", kv));
	ASSERT_FALSE(matches("missing", kv));
	ASSERT_TRUE(matches("name~=|^a |", kv));
	ASSERT_TRUE(matches("name~=/a\\/?/", kv));
	ASSERT_TRUE(matches("  name ~= \"^a\" , labels.q  ", kv));
	ASSERT_TRUE(matches("name==\"\\x61\\u0020b\"", kv));
	const char *bad[] = {"==a",       "name==a,",      "name=a",   "labels.\"open",
	                     "name~=/[/", "name==\"\\q\"", "name==a b"};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		snap_filter *f = NULL;
		ASSERT_ERR(snap_filter_parse(&bad[i], 1, &f, ERR), -EINVAL);
		ASSERT_ERRMSG(bad[i]);
	}
}

/* ==== the native copy ==== */

TEST(native_copy_keeps_everything)
{
	require_root();
	ASSERT_EQ(test_sh("mkdir -p src dst && cd src && printf hello > file && ln file hard && "
	                  "ln -s file sym && ln -s /nowhere dangling && mkfifo fifo && "
	                  "mknod chr c 1 3 && mknod blk b 7 0 && mkdir -p d/e && "
	                  "printf x > d/e/deep && ln d/e/deep d/deeplink && "
	                  "chmod 4755 file && mkdir sticky && chmod 1777 sticky && "
	                  "mkdir sgid && chmod 2750 sgid && chown 1234:5678 d/e/deep && "
	                  "chown -h 42:43 sym && touch -d '2001-02-03 04:05:06.123456789' d/e && "
	                  "touch -h -d '2002-02-03 04:05:06' sym && "
	                  "setfattr -n user.color -v blue file 2>/dev/null; "
	                  "truncate -s 64M sparse && printf data | dd of=sparse bs=1 seek=33554432 "
	                  "conv=notrunc status=none"),
	          0);
	int s = open("src", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_EQ(mknodat(s, "sock", S_IFSOCK | 0640, 0), 0);
	int d = open("dst", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_OK(snap_copy_tree(s, d, "src", ERR));
	char a[PATH_MAX + 8], b[PATH_MAX + 8];
	snprintf(a, sizeof(a), "%s/src", test_dir);
	snprintf(b, sizeof(b), "%s/dst", test_dir);
	ASSERT_DIR_EQUAL(a, b);
	struct stat sa, sb;
	ASSERT_EQ(lstat("src/d/e", &sa), 0);
	ASSERT_EQ(lstat("dst/d/e", &sb), 0);
	ASSERT_EQ(sa.st_mtim.tv_sec, sb.st_mtim.tv_sec);
	ASSERT_EQ(sa.st_mtim.tv_nsec, sb.st_mtim.tv_nsec);
	ASSERT_EQ(lstat("src/sym", &sa), 0);
	ASSERT_EQ(lstat("dst/sym", &sb), 0);
	ASSERT_EQ(sa.st_mtim.tv_sec, sb.st_mtim.tv_sec);
	ASSERT_EQ(lstat("dst/sparse", &sb), 0);
	ASSERT_EQ(sb.st_size, 64 << 20);
	ASSERT_TRUE(sb.st_blocks * 512 < (1 << 20)); /* the holes stayed holes */
	ASSERT_EQ(lstat("dst/file", &sb), 0);
	ASSERT_EQ(sb.st_mode & 07777, 04755);
	char v[16] = "";
	if (getxattr("src/file", "user.color", v, sizeof(v)) > 0) {
		memset(v, 0, sizeof(v));
		ASSERT_EQ(getxattr("dst/file", "user.color", v, sizeof(v)), 4);
		ASSERT_STREQ(v, "blue");
	}
	close(s);
	close(d);
}

TEST(native_prepare_copies_parent)
{
	require_root();
	struct env e = {0};
	umask(0);
	env_open(&e, "native");
	prepare(&e, "base-a", NULL);
	char *fs = NULL;
	close(snap_open_fs(e.s, "base-a", &fs, ERR));
	ASSERT_EQ(test_sh("cd '%s' && printf a > f && ln f g && mkfifo p && chmod 2755 . && "
	                  "mkdir d && chown 7:8 d",
	                  fs),
	          0);
	commit(&e, "base", "base-a");
	prepare(&e, "child", "base");
	char *child = NULL;
	close(snap_open_fs(e.s, "child", &child, ERR));
	ASSERT_DIR_EQUAL(fs, child);
	struct stat st;
	ASSERT_EQ(stat(child, &st), 0);
	ASSERT_EQ(st.st_mode & 07777, 02755);
	free(fs);
	free(child);
	env_close(&e);
}

/* ==== usage ==== */

SNAP_TEST(usage)
{
	prepare(e, "u-a", NULL);
	char *fs = NULL;
	close(snap_open_fs(e->s, "u-a", &fs, ERR));
	ASSERT_EQ(test_sh("cd '%s' && dd if=/dev/zero of=big bs=1M count=2 status=none && "
	                  "ln big big2 && mkdir d && : > d/empty",
	                  fs),
	          0);
	struct snap_usage u;
	ASSERT_OK(snap_usage(e->s, "u-a", &u, ERR));
	ASSERT_TRUE(u.size >= 2 << 20 && u.size < 3 << 20); /* the hardlink once */
	ASSERT_EQ(u.inodes, 4);                             /* root, big, d, d/empty */
	commit(e, "u", "u-a");
	struct snap_usage c;
	ASSERT_OK(snap_usage(e->s, "u", &c, ERR));
	ASSERT_EQ(c.size, u.size);
	ASSERT_EQ(c.inodes, u.inodes);
	ASSERT_OK(snap_usage(e->s, "u", &c, ERR)); /* now recorded */
	ASSERT_EQ(c.size, u.size);
	view(e, "u-view", "u");
	ASSERT_OK(snap_usage(e->s, "u-view", &c, ERR));
	ASSERT_EQ(c.size, 0);
	ASSERT_EQ(c.inodes, 0);
	ASSERT_ERR(snap_usage(e->s, "nope", &c, ERR), -ENOENT);
	ASSERT_ERRMSG("'nope'");
	free(fs);
}

/* ==== bad input: the right class, the key in the message, nothing changed ==== */

static int row_line(const struct meta_snapshot *row, void *userdata)
{
	char *state = userdata;
	char line[512];
	snprintf(line, sizeof(line), "%" PRId64 " %s %s %d %s %" PRId64 "\n", row->id,
	         row->snapshotter, row->name, row->kind, row->parent_name ? row->parent_name : "-",
	         row->updated_at);
	strcat(state, line);
	return 0;
}

/* Every row and every entry of snapshots/, as text. */
static char *store_state(struct env *e)
{
	char *state = calloc(1, 65536);
	meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(e->db, &tx, false, ERR));
	ASSERT_OK(meta_snapshot_list(&tx, NULL, row_line, state, ERR));
	meta_tx_end(&tx);
	char dir[PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/snapshots", e->root);
	struct tree t = {0};
	tree_walk(&t, dir, "");
	if (t.n)
		qsort(t.e, t.n, sizeof(*t.e), cmp_entry);
	for (size_t i = 0; i < t.n; i++) {
		strcat(state, t.e[i].path);
		strcat(state, "\n");
	}
	tree_free(&t);
	return state;
}

#define ASSERT_UNCHANGED(e, before)                                                                \
	do {                                                                                       \
		char *_now = store_state(e);                                                       \
		ASSERT_STREQ(_now, before);                                                        \
		free(_now);                                                                        \
	} while (0)

SNAP_TEST(bad_input)
{
	prepare(e, "base-a", NULL);
	commit(e, "base", "base-a");
	prepare(e, "child", "base");
	view(e, "v", "base");
	prepare(e, "loose", NULL);
	char *before = store_state(e);
	struct snap_mount *m = NULL;
	size_t n = 0;

	ASSERT_ERR(snap_stat(e->s, "unknown-key", NULL, ERR), -ENOENT);
	ASSERT_ERRMSG("'unknown-key'");
	ASSERT_ERR(snap_remove(e->s, "unknown-key", ERR), -ENOENT);
	ASSERT_ERRMSG("remove");
	ASSERT_ERRMSG("'unknown-key'");
	ASSERT_ERR(snap_mounts(e->s, "unknown-key", &m, &n, ERR), -ENOENT);
	ASSERT_ERRMSG("'unknown-key'");
	ASSERT_ERR(snap_commit(e->s, "x", "unknown-key", NULL, 0, ERR), -ENOENT);
	ASSERT_ERRMSG("'unknown-key'");
	ASSERT_ERR(snap_update(e->s, &(snap_info){.name = "unknown-key"}, NULL, 0, NULL, ERR),
	           -ENOENT);
	ASSERT_ERRMSG("'unknown-key'");
	ASSERT_ERR(snap_prepare(e->s, "k", "unknown-parent", NULL, 0, NULL, NULL, ERR), -ENOENT);
	ASSERT_ERRMSG("'unknown-parent'");

	ASSERT_ERR(snap_remove(e->s, "base", ERR), CAIRN_EPRECONDITION);
	ASSERT_ERRMSG("remove snapshot 'base'");
	ASSERT_ERR(snap_commit(e->s, "base", "child", NULL, 0, ERR), -EEXIST);
	ASSERT_ERRMSG("'base'");
	ASSERT_ERR(snap_commit(e->s, "again", "base", NULL, 0, ERR), CAIRN_EPRECONDITION);
	ASSERT_ERRMSG("'base'");
	ASSERT_ERR(snap_commit(e->s, "vv", "v", NULL, 0, ERR), CAIRN_EPRECONDITION);
	ASSERT_ERRMSG("'v'");
	ASSERT_ERR(snap_prepare(e->s, "k", "child", NULL, 0, NULL, NULL, ERR), -EINVAL);
	ASSERT_ERRMSG("'child'");
	ASSERT_ERR(snap_view(e->s, "k", "v", NULL, 0, NULL, NULL, ERR), -EINVAL);
	ASSERT_ERRMSG("'v'");
	ASSERT_ERR(snap_prepare(e->s, "child", "base", NULL, 0, NULL, NULL, ERR), -EEXIST);
	ASSERT_ERRMSG("'child'");
	ASSERT_ERR(snap_prepare(e->s, "base", NULL, NULL, 0, NULL, NULL, ERR), -EEXIST);
	ASSERT_ERR(snap_mounts(e->s, "base", &m, &n, ERR), CAIRN_EPRECONDITION);
	ASSERT_ERRMSG("'base'");
	ASSERT_ERR(snap_prepare(e->s, "", NULL, NULL, 0, NULL, NULL, ERR), -EINVAL);
	char *huge = malloc(SNAP_KEY_MAX + 2);
	memset(huge, 'k', SNAP_KEY_MAX + 1);
	huge[SNAP_KEY_MAX + 1] = 0;
	ASSERT_ERR(snap_prepare(e->s, huge, NULL, NULL, 0, NULL, NULL, ERR), -EINVAL);
	free(huge);
	struct snap_label bad_label[] = {{"", "x"}};
	ASSERT_ERR(snap_prepare(e->s, "k", NULL, bad_label, 1, NULL, NULL, ERR), -EINVAL);
	ASSERT_ERRMSG("'k'");
	ASSERT_UNCHANGED(e, before);

	/* Committing twice: the second finds the key gone; the name is taken. */
	commit(e, "loose-c", "loose");
	ASSERT_ERR(snap_commit(e->s, "loose-c", "loose", NULL, 0, ERR), -EEXIST);
	ASSERT_ERRMSG("'loose-c'");
	ASSERT_ERR(snap_commit(e->s, "loose-c2", "loose", NULL, 0, ERR), -ENOENT);
	ASSERT_ERRMSG("'loose'");
	/* Keys that look like paths are fine: they never become paths. */
	prepare(e, "../../etc/passwd", NULL);
	prepare(e, "/abs/key", NULL);
	free(before);
}

/* ==== crash safety ==== */

struct dirs {
	int n_numeric, n_other;
	char other[256];
};

/* Every row has snapshots/<id>/fs; every entry of snapshots/ is the id of a row. */
static void assert_consistent(struct env *e)
{
	char state[65536] = "";
	meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(e->db, &tx, false, ERR));
	ASSERT_OK(meta_snapshot_list(&tx, NULL, row_line, state, ERR));
	meta_tx_end(&tx);
	char dir[PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/snapshots", e->root);
	DIR *d = opendir(dir);
	ASSERT_TRUE(d != NULL);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *end = NULL;
		long id = strtol(de->d_name, &end, 10);
		if (*end || id <= 0)
			test_fail(__FILE__, __LINE__, "left over in snapshots/: '%s'", de->d_name);
		char needle[32];
		snprintf(needle, sizeof(needle), "%ld ", id);
		bool found = strncmp(state, needle, strlen(needle)) == 0;
		snprintf(needle, sizeof(needle), "\n%ld ", id);
		found = found || strstr(state, needle);
		if (!found)
			test_fail(__FILE__, __LINE__, "orphan directory snapshots/%ld", id);
	}
	closedir(d);
	for (char *line = state; *line; line = strchr(line, '\n') + 1) {
		char p[PATH_MAX + 64];
		snprintf(p, sizeof(p), "%s/%ld/fs", dir, strtol(line, NULL, 10));
		if (access(p, F_OK) != 0)
			test_fail(__FILE__, __LINE__, "row without directory: %.*s",
			          (int)strcspn(line, "\n"), line);
	}
}

typedef void (*crash_op)(struct env *e);

/* Runs @op in a child that dies at @point, then reopens (reconciling) in this process. */
static void crash_at(struct env *e, const char *point, crash_op op)
{
	char root[PATH_MAX];
	snprintf(root, sizeof(root), "%s", e->root);
	const char *driver = e->driver;
	env_close(e);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		struct env c = {0};
		setenv("CAIRN_FAULT", point, 1);
		env_open_at(&c, driver, root);
		op(&c);
		_exit(3); /* the fault point was not reached */
	}
	int st = 0;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
		test_fail(__FILE__, __LINE__, "child did not die at '%s' (status %d)", point, st);
	*e = (struct env){0};
	env_open_at(e, driver, root);
	assert_consistent(e);
}

static void op_prepare(struct env *e)
{
	prepare(e, "new", "base");
}

static void op_commit(struct env *e)
{
	commit(e, "done", "active");
}

static void op_remove(struct env *e)
{
	remove_key(e, "gone");
}

static bool exists_key(struct env *e, const char *key)
{
	int r = snap_stat(e->s, key, NULL, ERR);
	ASSERT_TRUE(r == 0 || r == -ENOENT);
	return r == 0;
}

SNAP_TEST(crash_prepare)
{
	prepare(e, "base-a", NULL);
	char *fs = NULL;
	close(snap_open_fs(e->s, "base-a", &fs, ERR));
	ASSERT_EQ(test_sh("cd '%s' && printf data > f && mkdir -p d/e", fs), 0);
	commit(e, "base", "base-a");
	free(fs);
	static const char *const lost[] = {"snapshot.prepare.staged",
	                                   "snapshot.prepare.after-rename"};
	for (size_t i = 0; i < ELEMENTSOF(lost); i++) {
		crash_at(e, lost[i], op_prepare);
		ASSERT_FALSE(exists_key(e, "new"));
	}
	crash_at(e, "snapshot.prepare.after-commit", op_prepare);
	ASSERT_TRUE(exists_key(e, "new"));
	const char *mnt = wpath(e, "mnt");
	mount_key(e, "new", mnt);
	ASSERT_EQ(test_sh("test \"$(cat '%s/f')\" = data", mnt), 0);
	unmount(mnt);
	/* ids of rolled-back transactions are handed out again: prepare still works */
	prepare(e, "after", "base");
	assert_consistent(e);
}

SNAP_TEST(crash_commit)
{
	prepare(e, "active", NULL);
	crash_at(e, "snapshot.commit.before-commit", op_commit);
	expect_info(e, "active", SNAP_KIND_ACTIVE, "");
	ASSERT_FALSE(exists_key(e, "done"));
	crash_at(e, "snapshot.commit.after-commit", op_commit);
	ASSERT_FALSE(exists_key(e, "active"));
	expect_info(e, "done", SNAP_KIND_COMMITTED, "");
}

SNAP_TEST(crash_remove)
{
	prepare(e, "gone-a", NULL);
	commit(e, "gone", "gone-a");
	crash_at(e, "snapshot.remove.after-rename", op_remove);
	ASSERT_TRUE(exists_key(e, "gone")); /* the directory came back */
	crash_at(e, "snapshot.remove.after-commit", op_remove);
	ASSERT_FALSE(exists_key(e, "gone"));
	prepare(e, "gone", NULL); /* reusable */
}

SNAP_TEST(reconcile_drops_broken_rows)
{
	prepare(e, "a-a", NULL);
	commit(e, "a", "a-a");
	prepare(e, "b-a", "a");
	commit(e, "b", "b-a");
	prepare(e, "c", "b");
	prepare(e, "other", NULL);
	/* lose the middle layer's directory by hand */
	ASSERT_EQ(test_sh("rm -rf '%s/snapshots/2' && mkdir '%s/snapshots/99' '%s/snapshots/rm-77' "
	                  "'%s/snapshots/new-zzzz'",
	                  e->root, e->root, e->root, e->root),
	          0);
	env_reopen(e);
	assert_consistent(e);
	ASSERT_TRUE(exists_key(e, "a"));
	ASSERT_FALSE(exists_key(e, "b"));
	ASSERT_FALSE(exists_key(e, "c"));
	ASSERT_TRUE(exists_key(e, "other"));
	ASSERT_EQ(snap_reconcile(e->s, ERR), 0);
}

/* Several processes at once, each reconciling at open while the others prepare and remove. */
SNAP_TEST(concurrent_processes)
{
	prepare(e, "base-a", NULL);
	char *fs = NULL;
	close(snap_open_fs(e->s, "base-a", &fs, ERR));
	ASSERT_EQ(test_sh("cd '%s' && mkdir -p a/b && printf x > a/b/f", fs), 0);
	free(fs);
	commit(e, "base", "base-a");
	char root[PATH_MAX + 256];
	snprintf(root, sizeof(root), "%s", e->root);
	const char *driver = e->driver;
	env_close(e);
	pid_t pids[4];
	for (int p = 0; p < 4; p++) {
		fflush(stdout);
		pids[p] = fork();
		if (pids[p] == 0) {
			for (int i = 0; i < 10; i++) {
				struct env c = {0};
				char key[64];
				env_open_at(&c, driver, root);
				snprintf(key, sizeof(key), "p%d-%d", p, i);
				prepare(&c, key, "base");
				if (i % 2)
					remove_key(&c, key);
				env_close(&c);
			}
			_exit(0);
		}
	}
	for (int p = 0; p < 4; p++) {
		int st = 0;
		ASSERT_EQ(waitpid(pids[p], &st, 0), pids[p]);
		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	*e = (struct env){0};
	env_open_at(e, driver, root);
	assert_consistent(e);
	const char *actives[] = {"kind==active"};
	struct names got = {""};
	ASSERT_OK(snap_walk(e->s, actives, 1, collect_name, &got, ERR));
	int n = 0;
	for (char *c = got.buf; *c; c++)
		n += *c == ',';
	ASSERT_EQ(n + 1, 4 * 5);
}

/* ==== the commit benchmark (CAIRN_BENCH=1) ==== */

static double commit_ms(struct env *e, const char *key, int files)
{
	prepare(e, key, NULL);
	int fd = snap_open_fs(e->s, key, NULL, ERR);
	ASSERT_OK(fd);
	for (int i = 0; i < files; i++) {
		char name[32];
		snprintf(name, sizeof(name), "f%d", i);
		int f = openat(fd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		ASSERT_TRUE(f >= 0);
		close(f);
	}
	close(fd);
	char name[64];
	snprintf(name, sizeof(name), "%s-c", key);
	/* The database's fsync makes ext4 commit its whole journal, the 100k new inodes included:
	 * flush them first so that the figure is the commit's own. */
	sync();
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	commit(e, name, key);
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
}

TEST(bench_overlay_commit)
{
	if (!getenv("CAIRN_BENCH"))
		test_skip("set CAIRN_BENCH=1");
	struct env e = {0};
	open_overlay(&e);
	double one = commit_ms(&e, "one", 1);
	double many = commit_ms(&e, "many", 100000);
	printf("# overlay commit: 1 file %.3f ms, 100000 files %.3f ms\n", one, many);
	ASSERT_TRUE(many < 10.0);
	env_close(&e);
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

TEST(bench_native_prepare)
{
	if (!getenv("CAIRN_BENCH"))
		test_skip("set CAIRN_BENCH=1");
	require_root();
	struct env e = {0};
	env_open(&e, "native");
	prepare(&e, "big-a", NULL);
	char *fs = NULL;
	close(snap_open_fs(e.s, "big-a", &fs, ERR));
	ASSERT_EQ(test_sh("cd '%s' && for i in $(seq 256); do head -c 4M /dev/urandom > f$i; done",
	                  fs),
	          0);
	commit(&e, "big", "big-a");
	sync();
	double a = now_ms();
	prepare(&e, "copy", "big");
	double b = now_ms();
	ASSERT_EQ(test_sh("cp -a '%s' '%s/cp-a'", fs, test_dir), 0);
	double c = now_ms();
	printf("# native prepare of 1 GiB (256 x 4 MiB): %.0f ms (%.0f MiB/s); cp -a: %.0f ms\n",
	       b - a, 1024 / ((b - a) / 1e3), c - b);
	free(fs);
	env_close(&e);
}
