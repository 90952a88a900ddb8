/* SPDX-License-Identifier: MIT */
/*
 * Lazy blobs in the cache: records made from a descriptor with a source while the content store
 * lacks the blob, and the fetcher that brings the blobs when a chain is extracted or handed out.
 * The fetcher here copies from a directory of the test (REMOTE/<hex>) and counts its calls. Every
 * test runs on both drivers (overlay needs root).
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/internal.h"
#include "cairn/cache.h"
#include "cairn/lease.h"
#include "cairn/remote.h"
#include "harness.h"
#include "layer/compress.h"
#include "layer/diff.h"
#include "meta/labels.h"
#include "remote/cachecfg.h"
#include "remote/lazy.h"
#include "snapshot/snapshotter.h"

#define GZIP_MT "application/vnd.oci.image.layer.v1.tar+gzip"

struct env {
	const char *driver;
	char root[PATH_MAX];
	char remote[PATH_MAX];
	cairn_store *store;
	cairn_cache *c;
};

/* The fake fetcher: blobs are files REMOTE/<hex>. */
struct fake {
	struct env *e;
	atomic_int calls, inflight, max_inflight, freed;
	int delay_ms;
	const char *fail_digest; /* this one fails with -EIO */
	pthread_mutex_t mu;
	char sources[8][128]; /* the sources asked for, first 8 */
	int n_sources;
};

static int fake_fetch(void *userdata, const char *source, const char *dgst, int64_t size,
                      cairn_progress_fn fn, void *fn_userdata, cairn_error **reterr)
{
	struct fake *f = userdata;
	atomic_fetch_add(&f->calls, 1);
	int now = atomic_fetch_add(&f->inflight, 1) + 1;
	for (int m = atomic_load(&f->max_inflight);
	     now > m && !atomic_compare_exchange_weak(&f->max_inflight, &m, now);)
		;
	pthread_mutex_lock(&f->mu);
	if (f->n_sources < 8)
		snprintf(f->sources[f->n_sources++], sizeof(f->sources[0]), "%s", source);
	pthread_mutex_unlock(&f->mu);
	if (f->delay_ms)
		usleep((useconds_t)f->delay_ms * 1000);
	int r = 0;
	if (f->fail_digest && strcmp(f->fail_digest, dgst) == 0) {
		r = err_set(reterr, -EIO, "fake registry '%s': blob '%s': broken", source, dgst);
	} else {
		char path[PATH_MAX + 80];
		snprintf(path, sizeof(path), "%s/%s", f->e->remote, dgst + strlen("sha256:"));
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			r = err_errno(reterr, -errno, "fake: open '%s'", path);
		else
			r = content_add_fd(f->e->store->content, fd, dgst, NULL, NULL, reterr);
		if (fd >= 0)
			close(fd);
		if (r >= 0 && fn)
			fn((uint64_t)size, (uint64_t)size, fn_userdata);
	}
	atomic_fetch_sub(&f->inflight, 1);
	return r < 0 ? r : 0;
}

static void fake_free(void *userdata)
{
	struct fake *f = userdata;
	atomic_fetch_add(&f->freed, 1);
}

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

static void attach(struct env *e, struct fake *f)
{
	f->e = e;
	pthread_mutex_init(&f->mu, NULL);
	cairn_cache_set_fetcher(e->c, fake_fetch, f, fake_free);
}

#define LAZY_TEST(name)                                                                            \
	static void body_##name(struct env *e);                                                    \
	static void run_##name(const char *driver)                                                 \
	{                                                                                          \
		struct env e = {.driver = driver};                                                 \
		snprintf(e.root, sizeof(e.root), "%s/root", test_dir);                             \
		snprintf(e.remote, sizeof(e.remote), "%s/remote", test_dir);                       \
		ASSERT_OK(mkdir(e.remote, 0755));                                                  \
		env_open(&e);                                                                      \
		body_##name(&e);                                                                   \
		env_close(&e);                                                                     \
	}                                                                                          \
	TEST(name##_overlay)                                                                       \
	{                                                                                          \
		if (geteuid() != 0)                                                                \
			test_skip("overlay needs root");                                           \
		run_##name("overlay");                                                             \
	}                                                                                          \
	TEST(name##_native)                                                                        \
	{                                                                                          \
		run_##name("native");                                                              \
	}                                                                                          \
	static void body_##name(struct env *e)

struct blob {
	digest digest, diff_id;
	int64_t size;
};

/* A gzip layer holding file @name with @content, written to REMOTE/<hex> (and to the content
 * store too when @local). */
static void make_blob(struct env *e, const char *name, const char *content, bool local,
                      struct blob *b)
{
	static int n;
	char dir[PATH_MAX], path[PATH_MAX + 64];
	snprintf(dir, sizeof(dir), "%s/src-%d", test_dir, n++);
	ASSERT_OK(mkdir(dir, 0755));
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	test_write_file(path, content);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int fd = open(test_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_TRUE(dfd >= 0 && fd >= 0);
	struct layer_writer_opts wo = {.compression = LAYER_COMPRESSION_GZIP,
	                               .level = LAYER_LEVEL_DEFAULT};
	layer_writer *w = NULL;
	ASSERT_OK(layer_writer_new(fd, &wo, &w, ERR));
	ASSERT_OK(layer_diff(-1, dfd, w, NULL, NULL, ERR));
	uint64_t size = 0;
	ASSERT_OK(layer_writer_finish(w, &b->diff_id, &b->digest, NULL, &size, ERR));
	layer_writer_free(w);
	b->size = (int64_t)size;
	close(dfd);
	snprintf(path, sizeof(path), "%s/%s", e->remote, b->digest.str + strlen("sha256:"));
	ASSERT_EQ(lseek(fd, 0, SEEK_SET), 0);
	int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_TRUE(out >= 0);
	char buf[65536];
	ssize_t k;
	while ((k = read(fd, buf, sizeof(buf))) > 0)
		ASSERT_EQ(write(out, buf, (size_t)k), k);
	close(out);
	if (local) {
		ASSERT_EQ(lseek(fd, 0, SEEK_SET), 0);
		ASSERT_OK(content_add_fd(e->store->content, fd, b->digest.str, NULL, NULL, ERR));
	}
	close(fd);
}

static cairn_descriptor lazy_desc(const struct blob *b, const char *source)
{
	return (cairn_descriptor){.digest = b->digest.str,
	                          .size = b->size,
	                          .media_type = GZIP_MT,
	                          .diff_id = b->diff_id.str,
	                          .source = source};
}

static cairn_ref *lazy(struct env *e, const struct blob *b, cairn_ref *parent)
{
	cairn_descriptor d = lazy_desc(b, "reg.example:5000/lib/app");
	cairn_ref *ref = NULL;
	ASSERT_OK(cairn_cache_get_by_blob(e->c, &d, parent, &ref, ERR));
	return ref;
}

/* A chain of @n layers, file "f<i>" holding "layer <i>"; @local_mask: which are local. */
static cairn_ref *chain(struct env *e, size_t n, unsigned local_mask, struct blob *b,
                        cairn_ref **refs)
{
	cairn_ref *top = NULL;
	for (size_t i = 0; i < n; i++) {
		char name[16], content[32];
		snprintf(name, sizeof(name), "f%zu", i);
		snprintf(content, sizeof(content), "layer %zu\n", i);
		make_blob(e, name, content, local_mask & (1u << i), &b[i]);
		top = lazy(e, &b[i], i ? refs[i - 1] : NULL);
		refs[i] = top;
	}
	return top;
}

static void free_refs(cairn_ref **refs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cairn_ref_free(refs[i]);
}

static bool extracted(cairn_ref *ref)
{
	cairn_record_info *i = NULL;
	ASSERT_OK(cairn_ref_info(ref, &i, ERR));
	bool x = i->extracted;
	cairn_record_infos_free(i, 1);
	return x;
}

static int count_fn(const snap_info *info, void *userdata)
{
	(void)info;
	(*(int *)userdata)++;
	return 0;
}

static int snap_count(struct env *e)
{
	int n = 0;
	ASSERT_OK(snap_walk(e->store->snap, NULL, 0, count_fn, &n, ERR));
	return n;
}

static int has_blob(struct env *e, const struct blob *b)
{
	return content_exists(e->store->content, b->digest.str, NULL);
}

static bool contains(const char *hay, const char *needle)
{
	return hay && needle && strstr(hay, needle);
}

/* The file @name of @ref's mounted tree (read-only view) holds @content. */
static void check_file(cairn_ref *ref, const char *name, const char *content)
{
	cairn_mount *m = NULL;
	size_t n = 0;
	ASSERT_OK(cairn_ref_mount(ref, true, &m, &n, ERR));
	ASSERT_TRUE(n == 1);
	char path[PATH_MAX];
	if (strcmp(m[0].type, "bind") == 0) {
		snprintf(path, sizeof(path), "%s/%s", m[0].source, name);
	} else {
		/* overlay: the file lives in one of the lower/upper dirs; find it in the options */
		path[0] = 0;
		for (size_t i = 0; i < m[0].n_options && !path[0]; i++) {
			const char *o = m[0].options[i];
			const char *dirs = strncmp(o, "lowerdir=", 9) == 0   ? o + 9
			                   : strncmp(o, "upperdir=", 9) == 0 ? o + 9
			                                                     : NULL;
			while (dirs && *dirs) {
				const char *end = strchr(dirs, ':');
				size_t len = end ? (size_t)(end - dirs) : strlen(dirs);
				snprintf(path, sizeof(path), "%.*s/%s", (int)len, dirs, name);
				if (access(path, F_OK) == 0)
					break;
				path[0] = 0;
				dirs = end ? end + 1 : NULL;
			}
		}
	}
	ASSERT_TRUE(path[0]);
	char got[256] = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_TRUE(read(fd, got, sizeof(got) - 1) >= 0);
	close(fd);
	ASSERT_STREQ(got, content);
	cairn_mounts_free(m, n);
}

/* ---- tests ---- */

/* Only the blobs the content store lacks are fetched, once, before anything is applied. */
LAZY_TEST(lazy_extract_fetches_missing)
{
	struct blob b[3];
	cairn_ref *refs[3];
	/* Layer 0 is local, 1 and 2 come from the source. */
	cairn_ref *top = chain(e, 3, 1u << 0, b, refs);
	ASSERT_FALSE(extracted(top));
	ASSERT_EQ(has_blob(e, &b[1]), 0);
	ASSERT_EQ(has_blob(e, &b[2]), 0);
	ASSERT_EQ(snap_count(e), 0);
	/* A lazy record counts no local bytes. */
	int64_t size = -1;
	ASSERT_OK(cairn_ref_size(top, &size, ERR));
	ASSERT_EQ(size, 0);
	cairn_record_info *info = NULL;
	ASSERT_OK(cairn_ref_info(top, &info, ERR));
	ASSERT_STREQ(info->blob, b[2].digest.str);
	ASSERT_STREQ(info->media_type, GZIP_MT);
	cairn_record_infos_free(info, 1);

	/* static: the cache frees it (fake_free) when closed, after the body returned */
	static struct fake f;
	f = (struct fake){0};
	attach(e, &f);
	ASSERT_OK(cairn_ref_extract(top, NULL, NULL, ERR));
	ASSERT_EQ(atomic_load(&f.calls), 2);
	for (int i = 0; i < f.n_sources; i++)
		ASSERT_STREQ(f.sources[i], "reg.example:5000/lib/app");
	ASSERT_TRUE(extracted(top) && extracted(refs[0]) && extracted(refs[1]));
	ASSERT_EQ(has_blob(e, &b[1]), 1);
	ASSERT_EQ(has_blob(e, &b[2]), 1);
	check_file(top, "f0", "layer 0\n");
	check_file(top, "f2", "layer 2\n");
	/* Again: nothing to fetch. */
	ASSERT_OK(cairn_ref_extract(top, NULL, NULL, ERR));
	ASSERT_EQ(atomic_load(&f.calls), 2);
	/* Now the record counts its snapshot and blob. */
	ASSERT_OK(cairn_ref_size(top, &size, ERR));
	ASSERT_TRUE(size >= b[2].size);
	free_refs(refs, 3);
	e->c = cairn_cache_close(e->c);
	ASSERT_EQ(atomic_load(&f.freed), 1);
	env_close(e);
	env_open(e);
}

/* Progress counts the fetched bytes, then the applied ones, to one total. */
struct prog {
	uint64_t last, total;
	int calls;
	bool backwards;
	pthread_mutex_t mu;
};

static void prog_fn(uint64_t done, uint64_t total, void *userdata)
{
	struct prog *p = userdata;
	pthread_mutex_lock(&p->mu);
	if (done < p->last || (p->total && total != p->total))
		p->backwards = true;
	p->last = done;
	p->total = total;
	p->calls++;
	pthread_mutex_unlock(&p->mu);
}

LAZY_TEST(lazy_extract_progress)
{
	struct blob b[2];
	cairn_ref *refs[2];
	cairn_ref *top = chain(e, 2, 0, b, refs);
	/* static: the cache frees it (fake_free) when closed, after the body returned */
	static struct fake f;
	f = (struct fake){0};
	attach(e, &f);
	struct prog p = {.mu = PTHREAD_MUTEX_INITIALIZER};
	ASSERT_OK(cairn_ref_extract(top, prog_fn, &p, ERR));
	ASSERT_FALSE(p.backwards);
	ASSERT_EQ(p.total, 2 * (uint64_t)(b[0].size + b[1].size));
	ASSERT_EQ(p.last, p.total);
	free_refs(refs, 2);
}

/* Several blobs at once, never more than the jobs asked for. */
LAZY_TEST(lazy_fetch_concurrent)
{
	struct blob b[6];
	cairn_ref *refs[6];
	cairn_ref *top = chain(e, 6, 0, b, refs);
	/* static: the cache frees it (fake_free) when closed, after the body returned */
	static struct fake f;
	f = (struct fake){.delay_ms = 100};
	attach(e, &f);
	cache_set_fetch_jobs(e->c, 3);
	ASSERT_OK(cairn_ref_extract(top, NULL, NULL, ERR));
	ASSERT_EQ(atomic_load(&f.calls), 6);
	ASSERT_TRUE(atomic_load(&f.max_inflight) >= 2);
	ASSERT_TRUE(atomic_load(&f.max_inflight) <= 3);
	check_file(top, "f5", "layer 5\n");
	free_refs(refs, 6);
}

/* Two threads extracting chains that share lazy blobs fetch each blob once. */
struct racer {
	cairn_ref *ref;
	int r;
};

static void *race_extract(void *userdata)
{
	struct racer *x = userdata;
	x->r = cairn_ref_extract(x->ref, NULL, NULL, NULL);
	return NULL;
}

LAZY_TEST(lazy_fetch_shared_once)
{
	struct blob b[3];
	cairn_ref *refs[3];
	cairn_ref *top = chain(e, 3, 0, b, refs);
	/* static: the cache frees it (fake_free) when closed, after the body returned */
	static struct fake f;
	f = (struct fake){.delay_ms = 200};
	attach(e, &f);
	cairn_ref *other = NULL;
	ASSERT_OK(cairn_ref_clone(top, &other, ERR));
	struct racer x[2] = {{top, 0}, {other, 0}};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(pthread_create(&t[i], NULL, race_extract, &x[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ASSERT_OK(x[0].r);
	ASSERT_OK(x[1].r);
	ASSERT_EQ(atomic_load(&f.calls), 3);
	cairn_ref_free(other);
	free_refs(refs, 3);
}

/* A failed fetch is the extract's error, names the record, blob and source, and nothing is
 * applied; the blobs that did arrive stay (they are the records'). */
LAZY_TEST(lazy_fetch_error)
{
	struct blob b[3];
	cairn_ref *refs[3];
	cairn_ref *top = chain(e, 3, 0, b, refs);
	/* static: the cache frees it (fake_free) when closed, after the body returned */
	static struct fake f;
	f = (struct fake){.fail_digest = b[1].digest.str};
	attach(e, &f);
	cache_set_fetch_jobs(e->c, 1);
	ASSERT_ERR(cairn_ref_extract(top, NULL, NULL, ERR), -EIO);
	const char *msg = cairn_error_message(test_err);
	ASSERT_TRUE(contains(msg, b[1].digest.str));
	ASSERT_TRUE(contains(msg, cairn_ref_id(refs[1])));
	ASSERT_TRUE(contains(msg, "reg.example:5000/lib/app"));
	ASSERT_TRUE(contains(msg, "broken"));
	ASSERT_EQ(snap_count(e), 0);
	for (int i = 0; i < 3; i++)
		ASSERT_FALSE(extracted(refs[i]));
	ASSERT_EQ(has_blob(e, &b[1]), 0);
	/* Mount and diff fail the same way. */
	cairn_mount *m = NULL;
	size_t n = 0;
	ASSERT_ERR(cairn_ref_mount(top, true, &m, &n, ERR), -EIO);
	/* Once the source works, the same extract succeeds. */
	f.fail_digest = NULL;
	ASSERT_OK(cairn_ref_extract(top, NULL, NULL, ERR));
	check_file(top, "f1", "layer 1\n");
	free_refs(refs, 3);
}

/* Without a fetcher a lazy blob is an error naming the record, the digest and the source. */
LAZY_TEST(lazy_no_fetcher)
{
	struct blob b[2];
	cairn_ref *refs[2];
	cairn_ref *top = chain(e, 2, 1u << 0, b, refs);
	ASSERT_ERR(cairn_ref_extract(top, NULL, NULL, ERR), -ENOENT);
	const char *msg = cairn_error_message(test_err);
	ASSERT_TRUE(contains(msg, cairn_ref_id(top)));
	ASSERT_TRUE(contains(msg, b[1].digest.str));
	ASSERT_TRUE(contains(msg, "reg.example:5000/lib/app"));
	ASSERT_TRUE(contains(msg, "no fetcher"));
	ASSERT_EQ(snap_count(e), 0);
	cairn_blob *out = NULL;
	ASSERT_ERR(cairn_ref_get_remote(top, NULL, -1, &out, ERR), -ENOENT);
	ASSERT_TRUE(contains(cairn_error_message(test_err), "no fetcher"));
	free_refs(refs, 2);
}

/* A lazy descriptor needs a diff id, a size and a media type; errors name the digest. */
LAZY_TEST(lazy_descriptor_checked)
{
	struct blob b;
	make_blob(e, "f", "x", false, &b);
	cairn_ref *ref = NULL;
	cairn_descriptor d = lazy_desc(&b, "reg/app");
	d.diff_id = NULL;
	ASSERT_ERR(cairn_cache_get_by_blob(e->c, &d, NULL, &ref, ERR), -EINVAL);
	ASSERT_TRUE(contains(cairn_error_message(test_err), b.digest.str));
	d = lazy_desc(&b, "reg/app");
	d.size = 0;
	ASSERT_ERR(cairn_cache_get_by_blob(e->c, &d, NULL, &ref, ERR), -EINVAL);
	d = lazy_desc(&b, "reg/app");
	d.media_type = NULL;
	ASSERT_ERR(cairn_cache_get_by_blob(e->c, &d, NULL, &ref, ERR), -EINVAL);
	d = lazy_desc(&b, "reg/app");
	d.media_type = "text/plain";
	ASSERT_TRUE(cairn_cache_get_by_blob(e->c, &d, NULL, &ref, ERR) < 0);
	d = lazy_desc(&b, "");
	ASSERT_ERR(cairn_cache_get_by_blob(e->c, &d, NULL, &ref, ERR), -EINVAL);
	d = lazy_desc(&b, "reg/a pp");
	ASSERT_ERR(cairn_cache_get_by_blob(e->c, &d, NULL, &ref, ERR), -EINVAL);
	/* Without a source the blob must be local, as before. */
	d = lazy_desc(&b, NULL);
	ASSERT_ERR(cairn_cache_get_by_blob(e->c, &d, NULL, &ref, ERR), -ENOENT);
	ASSERT_TRUE(ref == NULL);
	cairn_record_info *infos = NULL;
	size_t n = 0;
	ASSERT_OK(cairn_cache_list(e->c, &infos, &n, ERR));
	ASSERT_EQ(n, 0);
	cairn_record_infos_free(infos, n);
	/* A local blob with a source is an ordinary record (the source is kept, harmless). */
	struct blob l;
	make_blob(e, "g", "y", true, &l);
	d = lazy_desc(&l, "reg/app");
	ASSERT_OK(cairn_cache_get_by_blob(e->c, &d, NULL, &ref, ERR));
	ASSERT_OK(cairn_ref_extract(ref, NULL, NULL, ERR));
	cairn_ref_free(ref);
}

static int fsck_fn(const cairn_fsck_problem *p, void *userdata)
{
	(void)userdata;
	fprintf(stderr, "# fsck: %s\n", p->message);
	return 0;
}

static size_t fsck(struct env *e)
{
	size_t problems = 99;
	ASSERT_OK(cairn_fsck(e->store, 0, fsck_fn, NULL, &problems, ERR));
	return problems;
}

static void gc_report(struct env *e, unsigned flags, cairn_gc_report *rep);

static void gc(struct env *e)
{
	gc_report(e, 0, NULL);
}

/* fsck finds nothing wrong with lazy records; gc neither chokes on them nor deletes a fetched
 * blob while its record lives; prune removes them like others. */
LAZY_TEST(lazy_fsck_gc_prune)
{
	struct blob b[2];
	cairn_ref *refs[2];
	chain(e, 2, 0, b, refs);
	char ids[2][CACHE_ID_MAX + 1];
	for (int i = 0; i < 2; i++)
		snprintf(ids[i], sizeof(ids[i]), "%s", cairn_ref_id(refs[i]));
	ASSERT_OK(cairn_cache_tag(e->c, ids[1], "app", ERR));
	free_refs(refs, 2);
	ASSERT_EQ(fsck(e), 0);
	gc(e);
	ASSERT_EQ(fsck(e), 0);
	cairn_ref *top = NULL;
	ASSERT_OK(cairn_cache_get(e->c, ids[1], 0, &top, ERR));
	/* static: the cache frees it (fake_free) when closed, after the body returned */
	static struct fake f;
	f = (struct fake){0};
	attach(e, &f);
	ASSERT_OK(cairn_ref_extract(top, NULL, NULL, ERR));
	cairn_ref_free(top);
	gc(e);
	ASSERT_EQ(has_blob(e, &b[0]), 1);
	ASSERT_EQ(has_blob(e, &b[1]), 1);
	ASSERT_EQ(fsck(e), 0);
	/* Prune (all: the tag shares them) removes both; gc then takes the blobs. */
	ASSERT_OK(cairn_cache_untag(e->c, "app", ERR));
	cairn_prune_options o = {.version = CAIRN_PRUNE_OPTIONS_VERSION};
	ASSERT_EQ(cairn_cache_prune(e->c, &o, ERR), 2);
	gc(e);
	ASSERT_EQ(has_blob(e, &b[0]), 0);
	ASSERT_EQ(fsck(e), 0);
}

/* Prune removes records never fetched too. */
LAZY_TEST(lazy_prune_unfetched)
{
	struct blob b[2];
	cairn_ref *refs[2];
	chain(e, 2, 0, b, refs);
	free_refs(refs, 2);
	cairn_prune_options o = {.version = CAIRN_PRUNE_OPTIONS_VERSION};
	ASSERT_EQ(cairn_cache_prune(e->c, &o, ERR), 2);
	ASSERT_EQ(fsck(e), 0);
	gc(e);
}

/* The number of labels blob @b has (public API reads them whether or not the blob is there). */
static int label_count_fn(const char *key, const char *value, void *userdata)
{
	(void)key;
	(void)value;
	(*(int *)userdata)++;
	return 0;
}

static int labels_of(struct env *e, const struct blob *b)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int n = 0;
	ASSERT_OK(meta_tx_begin(e->store->db, &tx, false, ERR));
	ASSERT_OK(meta_content_labels(&tx, b->digest.str, label_count_fn, &n, ERR));
	return n;
}

/* gc with @flags on an exclusive store; its report into *@rep. */
static void gc_report(struct env *e, unsigned flags, cairn_gc_report *rep)
{
	env_close(e);
	cairn_store_options x = {.version = CAIRN_STORE_OPTIONS_VERSION,
	                         .flags = CAIRN_STORE_EXCLUSIVE,
	                         .snapshotter = e->driver};
	cairn_store *gs = NULL;
	ASSERT_OK(cairn_store_open(e->root, &x, &gs, ERR));
	ASSERT_OK(cairn_gc(gs, flags, rep, ERR));
	cairn_store_close(gs);
	env_open(e);
}

/* A lazy record pruned before its blob was fetched leaves its cairn.lazy.* labels; gc sweeps
 * them (a dry run only counts them), while a live lazy record's labels survive. */
LAZY_TEST(lazy_gc_sweeps_orphan_labels)
{
	struct blob b[2], keep[1];
	cairn_ref *refs[2], *krefs[1];
	chain(e, 2, 0, b, refs);
	make_blob(e, "kept", "kept\n", false, &keep[0]);
	krefs[0] = lazy(e, &keep[0], NULL);
	char kid[CACHE_ID_MAX + 1];
	snprintf(kid, sizeof(kid), "%s", cairn_ref_id(krefs[0]));
	ASSERT_OK(cairn_cache_tag(e->c, kid, "keep", ERR));
	free_refs(refs, 2);
	free_refs(krefs, 1);
	ASSERT_EQ(labels_of(e, &b[0]), 2);
	ASSERT_EQ(labels_of(e, &keep[0]), 2);
	cairn_prune_options o = {.version = CAIRN_PRUNE_OPTIONS_VERSION};
	ASSERT_EQ(cairn_cache_prune(e->c, &o, ERR), 2);
	ASSERT_EQ(labels_of(e, &b[0]), 2); /* what the prune leaves */
	cairn_gc_report rep = {0};
	gc_report(e, CAIRN_GC_DRY_RUN, &rep);
	ASSERT_EQ(rep.labels, 2);
	ASSERT_EQ(labels_of(e, &b[1]), 2);
	gc_report(e, 0, &rep);
	ASSERT_EQ(rep.labels, 2);
	ASSERT_EQ(labels_of(e, &b[0]), 0);
	ASSERT_EQ(labels_of(e, &b[1]), 0);
	ASSERT_EQ(labels_of(e, &keep[0]), 2);
	gc_report(e, 0, &rep);
	ASSERT_EQ(rep.labels, 0);
	ASSERT_EQ(fsck(e), 0);
	/* The live one still fetches from its source. */
	cairn_ref *top = NULL;
	ASSERT_OK(cairn_cache_get(e->c, kid, 0, &top, ERR));
	/* static: the cache frees it (fake_free) when closed, after the body returned */
	static struct fake f;
	f = (struct fake){0};
	attach(e, &f);
	ASSERT_OK(cairn_ref_extract(top, NULL, NULL, ERR));
	ASSERT_EQ(atomic_load(&f.calls), 1);
	cairn_ref_free(top);
}

/* The cache config of a long chain lists every record once, root first, each on the one
 * before it, with its own blob; built in one pass (a scan per record made this quadratic). */
LAZY_TEST(lazy_export_config_long_chain)
{
	enum { N = 300 };
	static struct blob b[N];
	cairn_ref *parent = NULL, *top = NULL;
	for (int i = 0; i < N; i++) {
		char seed[32];
		snprintf(seed, sizeof(seed), "blob %d", i);
		digest_buffer(seed, strlen(seed), &b[i].digest);
		snprintf(seed, sizeof(seed), "diff %d", i);
		digest_buffer(seed, strlen(seed), &b[i].diff_id);
		b[i].size = 100 + i;
		top = lazy(e, &b[i], parent);
		cairn_ref_free(parent);
		parent = top;
	}
	char id[CACHE_ID_MAX + 1];
	snprintf(id, sizeof(id), "%s", cairn_ref_id(top));
	cairn_ref_free(top);
	const char *refs[] = {id};
	char *buf = NULL;
	size_t len = 0;
	ASSERT_OK(cachecfg_export(e->c, refs, 1, "reg.example/lib/cache", NULL, &buf, &len, ERR));
	struct cachecfg cfg;
	ASSERT_OK(cachecfg_parse(&cfg, "long", buf, len, ERR));
	free(buf);
	ASSERT_EQ(cfg.n, N);
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(cfg.recs[i].parent, i - 1);
		ASSERT_STREQ(cfg.recs[i].blob.str, b[i].digest.str);
		ASSERT_STREQ(cfg.recs[i].diff_id.str, b[i].diff_id.str);
		ASSERT_EQ(cfg.recs[i].size, b[i].size);
	}
	cachecfg_clear(&cfg);
}

/* The source is in the database: a reopened store fetches from it. */
LAZY_TEST(lazy_source_survives_reopen)
{
	struct blob b[2];
	cairn_ref *refs[2];
	chain(e, 2, 0, b, refs);
	char id[CACHE_ID_MAX + 1];
	snprintf(id, sizeof(id), "%s", cairn_ref_id(refs[1]));
	free_refs(refs, 2);
	env_close(e);
	env_open(e);
	cairn_ref *top = NULL;
	ASSERT_OK(cairn_cache_get(e->c, id, 0, &top, ERR));
	ASSERT_FALSE(extracted(top));
	/* static: the cache frees it (fake_free) when closed, after the body returned */
	static struct fake f;
	f = (struct fake){0};
	attach(e, &f);
	ASSERT_OK(cairn_ref_extract(top, NULL, NULL, ERR));
	ASSERT_EQ(atomic_load(&f.calls), 2);
	ASSERT_STREQ(f.sources[0], "reg.example:5000/lib/app");
	check_file(top, "f1", "layer 1\n");
	cairn_ref_free(top);
}

/* get_remote hands out a lazy blob as it is (fetched, not extracted); diff extracts first. */
LAZY_TEST(lazy_get_remote_and_diff)
{
	struct blob b[2];
	cairn_ref *refs[2];
	cairn_ref *top = chain(e, 2, 0, b, refs);
	/* static: the cache frees it (fake_free) when closed, after the body returned */
	static struct fake f;
	f = (struct fake){0};
	attach(e, &f);
	cairn_blob *out = NULL;
	ASSERT_OK(cairn_ref_get_remote(top, NULL, -1, &out, ERR));
	ASSERT_STREQ(out->digest, b[1].digest.str);
	ASSERT_STREQ(out->diff_id, b[1].diff_id.str);
	ASSERT_EQ(out->size, b[1].size);
	cairn_blob_free(out);
	ASSERT_EQ(atomic_load(&f.calls), 2);
	ASSERT_FALSE(extracted(top));
	/* A lazy child of an extracted image: the same record comes back (blob chain id). */
	cairn_descriptor d = lazy_desc(&b[1], "reg.example:5000/lib/app");
	cairn_ref *again = NULL;
	ASSERT_OK(cairn_cache_get_by_blob(e->c, &d, refs[0], &again, ERR));
	ASSERT_STREQ(cairn_ref_id(again), cairn_ref_id(top));
	cairn_ref_free(again);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/diff.tar", test_dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(cairn_ref_diff(top, "none", -1, fd, &out, ERR));
	close(fd);
	ASSERT_TRUE(out->diff_id != NULL);
	cairn_blob_free(out);
	ASSERT_TRUE(extracted(top));
	free_refs(refs, 2);
}

/* The registry fetcher's sources: [http://|https://]REGISTRY/REPO, nothing else. */
TEST(remote_source_parse)
{
	struct remote_source s;
	ASSERT_OK(remote_source_parse("http://127.0.0.1:5000/lib/app", &s, ERR));
	ASSERT_STREQ(s.registry, "127.0.0.1:5000");
	ASSERT_STREQ(s.repo, "lib/app");
	ASSERT_TRUE(s.insecure);
	ASSERT_OK(remote_source_parse("ghcr.io/me/x", &s, ERR));
	ASSERT_STREQ(s.registry, "ghcr.io");
	ASSERT_STREQ(s.repo, "me/x");
	ASSERT_FALSE(s.insecure);
	ASSERT_OK(remote_source_parse("https://ghcr.io/me/x", &s, ERR));
	ASSERT_FALSE(s.insecure);
	static const char *const bad[] = {"",        "ghcr.io",    "ghcr.io/",  "/x",
	                                  "http://", "ghcr.io/Up", "ftp://h/x", "h/x/../y"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ASSERT_ERR(remote_source_parse(bad[i], &s, ERR), -EINVAL);
}

/* A cache with the registry fetcher attached and records whose source is a closed port: the
 * extract fails naming the registry and the blob; nothing is applied. */
TEST(remote_attach_unreachable)
{
	struct env e = {.driver = "native"};
	snprintf(e.root, sizeof(e.root), "%s/root", test_dir);
	snprintf(e.remote, sizeof(e.remote), "%s/remote", test_dir);
	ASSERT_OK(mkdir(e.remote, 0755));
	env_open(&e);
	struct blob b;
	make_blob(&e, "f", "x", false, &b);
	cairn_descriptor d = lazy_desc(&b, "http://127.0.0.1:1/lib/app");
	cairn_ref *ref = NULL;
	ASSERT_OK(cairn_cache_get_by_blob(e.c, &d, NULL, &ref, ERR));
	cairn_remote_options o = {.jobs = 2};
	ASSERT_OK(cairn_remote_attach(e.c, &o, ERR));
	ASSERT_OK(cairn_remote_attach(e.c, &o, ERR)); /* replaces the first: no leak */
	o.creds = "nocolon";
	ASSERT_ERR(cairn_remote_attach(e.c, &o, ERR), -EINVAL);
	ASSERT_TRUE(cairn_ref_extract(ref, NULL, NULL, ERR) < 0);
	const char *msg = cairn_error_message(test_err);
	ASSERT_TRUE(contains(msg, "127.0.0.1:1"));
	ASSERT_TRUE(contains(msg, b.digest.str));
	ASSERT_EQ(snap_count(&e), 0);
	cairn_ref_free(ref);
	env_close(&e);
}
