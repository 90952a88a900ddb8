/* SPDX-License-Identifier: MIT */
/*
 * Layer blobs in the cache: BuildKit's TestSnapshotExtract, TestExtractOnMutable and TestSetBlob
 * (spec/buildkit-cache.md §13.3-13.5) with their counts (BLOBS(n) only where no gc is needed:
 * cairn deletes blobs with gc, which is another issue), the chain-id test vectors of §4, a
 * mismatched diff id, and a round trip new, commit, get_remote, get_by_blob in a fresh store,
 * extract. Every test runs on both drivers (overlay needs root).
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/internal.h"
#include "cairn/cache.h"
#include "cairn/lease.h"
#include "harness.h"
#include "layer/compress.h"
#include "layer/diff.h"
#include "snapshot/snapshotter.h"

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

#define BLOB_TEST(name)                                                                            \
	static void body_##name(struct env *e);                                                    \
	static void run_##name(const char *driver)                                                 \
	{                                                                                          \
		struct env e = {.driver = driver};                                                 \
		snprintf(e.root, sizeof(e.root), "%s/root", test_dir);                             \
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

/* ---- helpers ---- */

struct blob {
	digest digest, diff_id;
	int64_t size;
};

/* Writes to @fd a gzip layer of directory @dir, made here holding file @name with @content; its
 * digests and size into *@b. */
static void write_layer(int fd, const char *dir, const char *name, const char *content,
                        struct blob *b)
{
	char path[PATH_MAX + 64];
	ASSERT_OK(mkdir(dir, 0755));
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	test_write_file(path, content);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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
}

/* Stores a gzip layer holding file @name with @content (as BuildKit's mapToBlob) into *@b. */
static void make_blob(struct env *e, const char *name, const char *content, struct blob *b)
{
	static int n;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/src-%d", test_dir, n++);
	int fd = open(test_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	write_layer(fd, dir, name, content, b);
	ASSERT_EQ(lseek(fd, 0, SEEK_SET), 0);
	ASSERT_TRUE(content_add_fd(e->store->content, fd, b->digest.str, NULL, NULL, ERR) >= 0);
	close(fd);
}

static cairn_descriptor desc_of(const struct blob *b)
{
	return (cairn_descriptor){.digest = b->digest.str,
	                          .size = b->size,
	                          .media_type = "application/vnd.oci.image.layer.v1.tar+gzip",
	                          .diff_id = b->diff_id.str};
}

static cairn_ref *by_blob(struct env *e, const struct blob *b, cairn_ref *parent)
{
	cairn_descriptor d = desc_of(b);
	cairn_ref *ref = NULL;
	ASSERT_OK(cairn_cache_get_by_blob(e->c, &d, parent, &ref, ERR));
	return ref;
}

static cairn_ref *new_ref(struct env *e, cairn_ref *parent)
{
	cairn_ref *ref = NULL;
	ASSERT_OK(cairn_cache_new(e->c, parent, NULL, &ref, ERR));
	return ref;
}

static cairn_ref *commit(cairn_ref *m)
{
	cairn_ref *ref = NULL;
	ASSERT_OK(cairn_ref_commit(m, &ref, ERR));
	return ref;
}

static cairn_record_info *info_of(cairn_ref *ref)
{
	cairn_record_info *i = NULL;
	ASSERT_OK(cairn_ref_info(ref, &i, ERR));
	return i;
}

static bool extracted(cairn_ref *ref)
{
	cairn_record_info *i = info_of(ref);
	bool x = i->extracted;
	cairn_record_infos_free(i, 1);
	return x;
}

static int64_t size_of(cairn_ref *ref)
{
	int64_t s = -1;
	ASSERT_OK(cairn_ref_size(ref, &s, ERR));
	return s;
}

#define DU(e, a, b) check_du(e, a, b, __LINE__)
static void check_du(struct env *e, size_t in_use, size_t unused, int line)
{
	cairn_record_info *infos = NULL;
	size_t n = 0, used = 0;
	ASSERT_OK(cairn_cache_disk_usage(e->c, NULL, 0, &infos, &n, ERR));
	for (size_t i = 0; i < n; i++)
		used += infos[i].in_use;
	if (used != in_use || n - used != unused)
		test_fail(__FILE__, line, "DU(%zu, %zu) expected, got DU(%zu, %zu)", in_use, unused,
		          used, n - used);
	cairn_record_infos_free(infos, n);
}

static int prune(struct env *e)
{
	cairn_prune_options o = {.version = CAIRN_PRUNE_OPTIONS_VERSION};
	int r = cairn_cache_prune(e->c, &o, ERR);
	ASSERT_OK(r);
	return r;
}

static int count_fn(const snap_info *info, void *userdata)
{
	(*(int *)userdata)++;
	return 0;
}

static int snap_count(struct env *e)
{
	int n = 0;
	ASSERT_OK(snap_walk(e->store->snap, NULL, 0, count_fn, &n, ERR));
	return n;
}

static int blob_fn(const content_blob_info *info, void *userdata)
{
	(*(int *)userdata)++;
	return 0;
}

static int blob_count(struct env *e)
{
	int n = 0;
	ASSERT_OK(content_walk(e->store->content, blob_fn, &n, ERR));
	return n;
}

static void hash2(const char *a, const char *b, digest *ret)
{
	char buf[300];
	snprintf(buf, sizeof(buf), "%s %s", a, b);
	digest_buffer(buf, strlen(buf), ret);
}

/* ---- §13.3 TestSnapshotExtract ---- */

BLOB_TEST(snapshot_extract)
{
	struct blob b1, b2;
	make_blob(e, "foo", "bar", &b1);
	cairn_ref *r1 = by_blob(e, &b1, NULL);
	ASSERT_FALSE(extracted(r1));
	make_blob(e, "foo", "bar123", &b2);
	cairn_ref *r2 = by_blob(e, &b2, r1);
	ASSERT_EQ(size_of(r2), b2.size);
	ASSERT_FALSE(extracted(r2));
	ASSERT_EQ(snap_count(e), 0);
	ASSERT_EQ(blob_count(e), 2);

	ASSERT_OK(cairn_ref_extract(r2, NULL, NULL, ERR));
	ASSERT_TRUE(extracted(r1));
	ASSERT_TRUE(extracted(r2));
	ASSERT_EQ(snap_count(e), 2);

	ASSERT_EQ(prune(e), 0);
	DU(e, 2, 0);
	ASSERT_EQ(snap_count(e), 2);
	ASSERT_EQ(blob_count(e), 2);

	char id[CACHE_ID_MAX + 1];
	snprintf(id, sizeof(id), "%s", cairn_ref_id(r1));
	cairn_ref_free(r1);
	prune(e);
	DU(e, 2, 0);
	ASSERT_EQ(snap_count(e), 2);

	ASSERT_OK(cairn_cache_get(e->c, id, 0, &r1, ERR));
	DU(e, 2, 0);
	cairn_ref_free(r2);
	DU(e, 1, 1);

	ASSERT_EQ(prune(e), 1);
	DU(e, 1, 0);
	ASSERT_EQ(snap_count(e), 1);

	cairn_ref_free(r1);
	ASSERT_EQ(prune(e), 1);
	DU(e, 0, 0);
	ASSERT_EQ(snap_count(e), 0);
}

/* ---- §13.4 TestExtractOnMutable ---- */

BLOB_TEST(extract_on_mutable)
{
	cairn_ref *a = new_ref(e, NULL);
	cairn_ref *s = commit(a);
	struct blob b1, b2;
	make_blob(e, "foo", "bar", &b1);
	make_blob(e, "foo2", "1", &b2);

	cairn_descriptor d2 = desc_of(&b2);
	cairn_ref *r2 = NULL;
	ASSERT_ERR(cairn_cache_get_by_blob(e->c, &d2, s, &r2, ERR), -EINVAL);
	ASSERT_ERRMSG("non-addressable parent");

	cairn_descriptor d1 = desc_of(&b1);
	ASSERT_OK(cairn_ref_set_blob(s, &d1, ERR));
	r2 = by_blob(e, &b2, s);
	cairn_ref_free(s);

	ASSERT_FALSE(extracted(r2));
	ASSERT_EQ(size_of(r2), b2.size);
	ASSERT_EQ(snap_count(e), 1);
	ASSERT_EQ(blob_count(e), 2);

	ASSERT_OK(cairn_ref_extract(r2, NULL, NULL, ERR));
	ASSERT_TRUE(extracted(r2));
	cairn_ref *sp = NULL;
	ASSERT_OK(cairn_ref_parent(r2, &sp, ERR));
	ASSERT_TRUE(extracted(sp));
	cairn_ref_free(sp);

	ASSERT_EQ(prune(e), 0);
	DU(e, 2, 0);
	ASSERT_EQ(snap_count(e), 2);

	cairn_ref_free(r2);
	DU(e, 0, 2);
	ASSERT_EQ(prune(e), 2);
	DU(e, 0, 0);
	ASSERT_EQ(snap_count(e), 0);
}

/* ---- §13.5 TestSetBlob ---- */

BLOB_TEST(set_blob)
{
	cairn_ref *s = commit(new_ref(e, NULL));
	cairn_record_info *i = info_of(s);
	ASSERT_TRUE(!i->diff_id && !i->blob && !i->chain_id && !i->blob_chain_id);
	ASSERT_TRUE(i->extracted);
	cairn_record_infos_free(i, 1);

	struct blob b1;
	make_blob(e, "foo", "bar", &b1);
	digest nx, nx2;
	digest_buffer("foobar", 6, &nx);
	digest_buffer("foobar2", 7, &nx2);
	cairn_descriptor bad = {.digest = nx.str, .diff_id = nx2.str};
	ASSERT_ERR(cairn_ref_set_blob(s, &bad, ERR), -ENOENT);
	ASSERT_ERRMSG(nx.str);

	cairn_descriptor d1 = desc_of(&b1);
	ASSERT_OK(cairn_ref_set_blob(s, &d1, ERR));
	cairn_record_info *i1 = info_of(s);
	ASSERT_STREQ(i1->diff_id, b1.diff_id.str);
	ASSERT_STREQ(i1->blob, b1.digest.str);
	ASSERT_STREQ(i1->media_type, d1.media_type);
	ASSERT_STREQ(i1->chain_id, b1.diff_id.str);
	digest t;
	hash2(b1.digest.str, b1.diff_id.str, &t);
	ASSERT_STREQ(i1->blob_chain_id, t.str);
	ASSERT_STREQ(i1->snapshot_id, cairn_ref_id(s));
	ASSERT_TRUE(i1->extracted);

	cairn_ref *s2 = commit(new_ref(e, s));
	struct blob b2;
	make_blob(e, "foo2", "bar2", &b2);
	cairn_descriptor d2 = desc_of(&b2);
	ASSERT_OK(cairn_ref_set_blob(s2, &d2, ERR));
	cairn_record_info *i2 = info_of(s2);
	ASSERT_STREQ(i2->diff_id, b2.diff_id.str);
	ASSERT_STREQ(i2->blob, b2.digest.str);
	digest want, tt;
	hash2(i1->chain_id, i2->diff_id, &want);
	ASSERT_STREQ(i2->chain_id, want.str);
	hash2(b2.digest.str, i2->diff_id, &tt);
	hash2(i1->blob_chain_id, tt.str, &want);
	ASSERT_STREQ(i2->blob_chain_id, want.str);
	ASSERT_STREQ(i2->snapshot_id, cairn_ref_id(s2));
	ASSERT_TRUE(i2->extracted);

	struct blob b3;
	make_blob(e, "foo3", "bar3", &b3);
	cairn_ref *s3 = by_blob(e, &b3, s);
	cairn_record_info *i3 = info_of(s3);
	ASSERT_STREQ(i3->diff_id, b3.diff_id.str);
	ASSERT_STREQ(i3->blob, b3.digest.str);
	hash2(i1->chain_id, i3->diff_id, &want);
	ASSERT_STREQ(i3->chain_id, want.str);
	hash2(b3.digest.str, i3->diff_id, &tt);
	hash2(i1->blob_chain_id, tt.str, &want);
	ASSERT_STREQ(i3->blob_chain_id, want.str);
	ASSERT_STREQ(i3->snapshot_id, i3->chain_id);
	ASSERT_FALSE(i3->extracted);

	cairn_ref *s4 = by_blob(e, &b2, s);
	ASSERT_STREQ(cairn_ref_id(s4), cairn_ref_id(s2));

	struct blob b5;
	make_blob(e, "foo5", "bar5", &b5);
	b5.diff_id = b2.diff_id; /* a blob claiming S2's content */
	cairn_ref *s5 = by_blob(e, &b5, s);
	cairn_record_info *i5 = info_of(s5);
	ASSERT_TRUE(strcmp(cairn_ref_id(s5), cairn_ref_id(s2)) != 0);
	ASSERT_STREQ(i5->snapshot_id, i2->snapshot_id);
	ASSERT_STREQ(i5->diff_id, i2->diff_id);
	ASSERT_STREQ(i5->blob, b5.digest.str);
	ASSERT_STREQ(i5->chain_id, i2->chain_id);
	ASSERT_TRUE(strcmp(i5->blob_chain_id, i2->blob_chain_id) != 0);
	hash2(b5.digest.str, i2->diff_id, &tt);
	hash2(i1->blob_chain_id, tt.str, &want);
	ASSERT_STREQ(i5->blob_chain_id, want.str);

	struct blob b6;
	make_blob(e, "foo6", "bar6", &b6);
	cairn_ref *s6 = by_blob(e, &b6, s3);
	cairn_record_info *i6 = info_of(s6);
	ASSERT_STREQ(i6->diff_id, b6.diff_id.str);
	ASSERT_STREQ(i6->blob, b6.digest.str);
	hash2(i3->chain_id, i6->diff_id, &want);
	ASSERT_STREQ(i6->chain_id, want.str);
	hash2(b6.digest.str, i6->diff_id, &tt);
	hash2(i3->blob_chain_id, tt.str, &want);
	ASSERT_STREQ(i6->blob_chain_id, want.str);
	ASSERT_STREQ(i6->snapshot_id, i6->chain_id);
	ASSERT_FALSE(i6->extracted);

	digest ne;
	digest_buffer("notexist", 8, &ne);
	cairn_descriptor dn = {.digest = ne.str, .diff_id = ne.str};
	cairn_ref *sn = NULL;
	ASSERT_ERR(cairn_cache_get_by_blob(e->c, &dn, s3, &sn, ERR), -ENOENT);
	ASSERT_ERRMSG(ne.str);

	cairn_record_infos_free(i1, 1);
	cairn_record_infos_free(i2, 1);
	cairn_record_infos_free(i3, 1);
	cairn_record_infos_free(i5, 1);
	cairn_record_infos_free(i6, 1);
	cairn_ref *refs[] = {s, s2, s3, s4, s5, s6};
	for (size_t k = 0; k < ELEMENTSOF(refs); k++)
		cairn_ref_free(refs[k]);
}

/* ---- §4 test vectors ---- */

TEST(chain_id_vectors)
{
	digest d0, b0, d1, b1, x, t1;
	digest_buffer("layer0-uncompressed", 19, &d0);
	digest_buffer("layer0-gzip", 11, &b0);
	digest_buffer("layer1-uncompressed", 19, &d1);
	digest_buffer("layer1-gzip", 11, &b1);
	hash2(b0.str, d0.str, &x);
	ASSERT_STREQ(x.str,
	             "sha256:23c4ed39d4259e7f501728a26008c44e967b1e679d7ce295b532ab33d016f0b8");
	hash2(d0.str, d1.str, &t1);
	ASSERT_STREQ(t1.str,
	             "sha256:446cabba00df1fe6d8865577a7d3085f99aecdeb2f5b05fec9ec734c7f2e1bfc");
	hash2(b1.str, d1.str, &t1);
	ASSERT_STREQ(t1.str,
	             "sha256:912bef247d6c43f06ec0f35a7597a0903be5f7de6919a93211a9b3e048bd5c5d");
	digest bc;
	hash2(x.str, t1.str, &bc);
	ASSERT_STREQ(bc.str,
	             "sha256:0acbb1bb1df1832b2f3e60dbb758f2728ec2e95783b7ff3be32bbd70ef751ab4");
}

/* ---- bad input ---- */

BLOB_TEST(diff_id_mismatch)
{
	struct blob b1, b2;
	make_blob(e, "foo", "bar", &b1);
	make_blob(e, "other", "x", &b2);
	b1.diff_id = b2.diff_id; /* a lie */
	cairn_ref *r = by_blob(e, &b1, NULL);
	ASSERT_ERR(cairn_ref_extract(r, NULL, NULL, ERR), CAIRN_EDIGEST);
	ASSERT_ERRMSG(b2.diff_id.str);
	ASSERT_ERRMSG(b1.digest.str);
	ASSERT_FALSE(extracted(r));
	ASSERT_EQ(snap_count(e), 0);
	/* Mounting extracts first, and fails the same way. */
	cairn_mount *m = NULL;
	size_t n = 0;
	ASSERT_ERR(cairn_ref_mount(r, true, &m, &n, ERR), CAIRN_EDIGEST);
	ASSERT_EQ(snap_count(e), 0);
	cairn_ref_free(r);
}

BLOB_TEST(diff_id_computed)
{
	struct blob b1;
	make_blob(e, "foo", "bar", &b1);
	cairn_descriptor d = {.digest = b1.digest.str}; /* no diff id, no media type */
	cairn_ref *r = NULL;
	ASSERT_OK(cairn_cache_get_by_blob(e->c, &d, NULL, &r, ERR));
	cairn_record_info *i = info_of(r);
	ASSERT_STREQ(i->diff_id, b1.diff_id.str);
	ASSERT_STREQ(i->media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
	ASSERT_FALSE(i->extracted);
	cairn_record_infos_free(i, 1);
	/* A child made on it extracts it. */
	cairn_ref *m = new_ref(e, r);
	ASSERT_TRUE(extracted(r));
	cairn_ref_free(m);
	cairn_ref_free(r);
}

/* ---- round trip ---- */

static void write_at(int dfd, const char *name, const char *content)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
}

/* A listing of the tree at @path (types, modes, link targets, file hashes) into @out. */
static void listing(const char *path, const char *out)
{
	ASSERT_OK(test_sh("cd '%s' && { find . -type d -printf '%%p d %%m\\n'; "
	                  "find . ! -type d -printf '%%p %%y %%m %%s %%l %%U:%%G\\n'; "
	                  "find . -type f -exec sha256sum {} +; } | sort > '%s'",
	                  path, out));
}

BLOB_TEST(round_trip)
{
	/* Two layers: a base, then a change, a deletion and an addition. */
	cairn_ref *m = new_ref(e, NULL);
	int dfd = snap_open_fs(e->store->snap, cairn_ref_id(m), NULL, ERR);
	ASSERT_OK(dfd);
	write_at(dfd, "a", "one");
	ASSERT_OK(mkdirat(dfd, "d", 0750));
	write_at(dfd, "d/b", "two");
	ASSERT_OK(symlinkat("d/b", dfd, "link"));
	close(dfd);
	cairn_ref *l1 = commit(m);
	m = new_ref(e, l1);
	dfd = snap_open_fs(e->store->snap, cairn_ref_id(m), NULL, ERR);
	ASSERT_OK(dfd);
	write_at(dfd, "a", "changed");
	write_at(dfd, "c", "three");
	close(dfd);
	/* A deletion: through a mount on overlay (a whiteout), directly on native. */
	if (strcmp(e->driver, "native") == 0) {
		dfd = snap_open_fs(e->store->snap, cairn_ref_id(m), NULL, ERR);
		ASSERT_OK(unlinkat(dfd, "d/b", 0));
		close(dfd);
	} else {
		char target[PATH_MAX];
		snprintf(target, sizeof(target), "%s/mnt", test_dir);
		ASSERT_OK(mkdir(target, 0755));
		ASSERT_OK(cairn_ref_mount_at(m, target, false, ERR));
		ASSERT_OK(test_sh("rm '%s/d/b'", target));
		ASSERT_OK(cairn_cache_unmount(e->c, target, ERR));
	}
	cairn_ref *l2 = commit(m);

	cairn_blob *blob = NULL;
	ASSERT_OK(cairn_ref_get_remote(l2, "gzip", 0, &blob, ERR));
	cairn_record_info *i1 = info_of(l1), *i2 = info_of(l2);
	ASSERT_TRUE(i1->blob && i2->blob);
	ASSERT_STREQ(i2->blob, blob->digest);
	ASSERT_STREQ(i2->diff_id, blob->diff_id);
	/* get_remote again: nothing new. */
	cairn_blob *again = NULL;
	ASSERT_OK(cairn_ref_get_remote(l2, "zstd", -1, &again, ERR));
	ASSERT_STREQ(again->digest, blob->digest);
	cairn_blob_free(again);

	/* A fresh store takes the two blobs in. */
	struct env f = {.driver = e->driver};
	snprintf(f.root, sizeof(f.root), "%s/fresh", test_dir);
	env_open(&f);
	const char *digests[] = {i1->blob, i2->blob};
	for (size_t k = 0; k < 2; k++) {
		int fd = -1;
		ASSERT_OK(content_open(e->store->content, digests[k], &fd, NULL, ERR));
		ASSERT_TRUE(content_add_fd(f.store->content, fd, digests[k], NULL, NULL, ERR) >= 0);
		close(fd);
	}
	cairn_descriptor d1 = {.digest = i1->blob, .diff_id = i1->diff_id};
	cairn_descriptor d2 = {.digest = i2->blob}; /* diff id computed */
	cairn_ref *f1 = NULL, *f2 = NULL;
	ASSERT_OK(cairn_cache_get_by_blob(f.c, &d1, NULL, &f1, ERR));
	ASSERT_OK(cairn_cache_get_by_blob(f.c, &d2, f1, &f2, ERR));
	cairn_record_info *j2 = info_of(f2);
	ASSERT_STREQ(j2->chain_id, i2->chain_id);
	ASSERT_STREQ(j2->blob_chain_id, i2->blob_chain_id);
	cairn_record_infos_free(j2, 1);

	ASSERT_OK(cairn_ref_extract(f2, NULL, NULL, ERR));
	ASSERT_TRUE(extracted(f1) && extracted(f2));

	/* The same trees: each layer's own directory, and its diff id when diffed again. */
	cairn_ref *pairs[2][2] = {{l1, f1}, {l2, f2}};
	for (size_t k = 0; k < 2; k++) {
		cairn_record_info *a = info_of(pairs[k][0]), *b = info_of(pairs[k][1]);
		char *pa = NULL, *pb = NULL, la[PATH_MAX], lb[PATH_MAX];
		int fa = snap_open_fs(e->store->snap, a->snapshot_id, &pa, ERR);
		int fb = snap_open_fs(f.store->snap, b->snapshot_id, &pb, ERR);
		ASSERT_TRUE(fa >= 0 && fb >= 0);
		close(fa);
		close(fb);
		snprintf(la, sizeof(la), "%s/list-a-%zu", test_dir, k);
		snprintf(lb, sizeof(lb), "%s/list-b-%zu", test_dir, k);
		listing(pa, la);
		listing(pb, lb);
		ASSERT_OK(test_sh("diff '%s' '%s' >&2", la, lb));
		free(pa);
		free(pb);
		int fd = open(test_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		ASSERT_TRUE(fd >= 0);
		cairn_blob *re = NULL;
		ASSERT_OK(cairn_ref_diff(pairs[k][1], "gzip", 0, fd, &re, ERR));
		ASSERT_STREQ(re->diff_id, a->diff_id);
		ASSERT_STREQ(re->digest, a->blob);
		cairn_blob_free(re);
		close(fd);
		cairn_record_infos_free(a, 1);
		cairn_record_infos_free(b, 1);
	}
	cairn_ref_free(f2);
	cairn_ref_free(f1);
	env_close(&f);
	cairn_record_infos_free(i1, 1);
	cairn_record_infos_free(i2, 1);
	cairn_blob_free(blob);
	cairn_ref_free(l2);
	cairn_ref_free(l1);
}

/* ---- progress ---- */

struct progress {
	uint64_t done, total;
	unsigned calls;
};

static void progress_fn(uint64_t done, uint64_t total, void *userdata)
{
	struct progress *p = userdata;
	if (done < p->done)
		p->done = UINT64_MAX; /* went backwards */
	else
		p->done = done;
	p->total = total;
	p->calls++;
}

BLOB_TEST(extract_progress)
{
	struct blob b1, b2;
	make_blob(e, "foo", "bar", &b1);
	make_blob(e, "foo2", "bar2", &b2);
	cairn_ref *r1 = by_blob(e, &b1, NULL);
	cairn_ref *r2 = by_blob(e, &b2, r1);
	struct progress p = {0};
	ASSERT_OK(cairn_ref_extract(r2, progress_fn, &p, ERR));
	ASSERT_TRUE(p.calls >= 2);
	ASSERT_EQ(p.total, (uint64_t)(b1.size + b2.size));
	ASSERT_EQ(p.done, p.total);
	/* Extracted already: no work, no report. */
	p = (struct progress){0};
	ASSERT_OK(cairn_ref_extract(r2, progress_fn, &p, ERR));
	ASSERT_EQ(p.calls, 0u);
	cairn_ref_free(r2);
	cairn_ref_free(r1);
}

/* ---- imports racing prune and gc in another process ---- */

/* A gzip layer with file @name holding @content, written to @path; its digests into *@b. */
static void layer_file(const char *path, const char *name, const char *content, struct blob *b)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s.d", path);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	write_layer(fd, dir, name, content, b);
	close(fd);
}

/* One import as a process does it: add the blobs, make the chain (sharing its first two layers
 * with the other variant), extract the top. 0, or -1 with the error printed. */
static int import_once(struct env *e, char paths[4][PATH_MAX], struct blob *b, int variant)
{
	cairn_ref *refs[3] = {NULL, NULL, NULL};
	cairn_error *err = NULL;
	int r = 0;
	for (int k = 0; k < 4 && r >= 0; k++) {
		int fd = open(paths[k], O_RDONLY | O_CLOEXEC);
		r = fd < 0 ? -errno
		           : content_add_fd(e->store->content, fd, b[k].digest.str, NULL, NULL,
		                            &err);
		if (fd >= 0)
			close(fd);
	}
	int order[3] = {0, 1, variant ? 3 : 2};
	for (int k = 0; k < 3 && r >= 0; k++) {
		cairn_descriptor d = desc_of(&b[order[k]]);
		r = cairn_cache_get_by_blob(e->c, &d, k ? refs[k - 1] : NULL, &refs[k], &err);
	}
	if (r >= 0)
		r = cairn_ref_extract(refs[2], NULL, NULL, &err);
	for (int k = 0; k < 3; k++)
		cairn_ref_free(refs[k]);
	if (r < 0)
		fprintf(stderr, "# import failed: %s\n", cairn_error_message(err));
	cairn_error_free(err);
	return r < 0 ? -1 : 0;
}

/*
 * One process imports chains sharing parents, again and again, while this one runs prune --all
 * and gc: no import fails (not found or otherwise), and neither does prune or gc. The importer
 * pauses a moment between its opens so that gc (which needs the store to itself) gets in.
 * CAIRN_RACE_SECONDS sets the duration (default 3 per driver); CAIRN_RACE_NO_GC=1 leaves gc out.
 * What it found: the open-time flock upgrade dropping the shared lock (store.c), the open-time
 * repair failing on a tombstone another process had just finished (repair.c), and prune
 * removing a snapshot that a record inserted meanwhile had adopted (the users check now runs in
 * the removing transaction, refs.c).
 */
BLOB_TEST(import_races_prune_and_gc)
{
	const char *secs_env = getenv("CAIRN_RACE_SECONDS");
	int secs = secs_env ? atoi(secs_env) : 3;
	char paths[4][PATH_MAX];
	struct blob b[4];
	for (int k = 0; k < 4; k++) {
		char content[32];
		snprintf(paths[k], sizeof(paths[k]), "%s/layer-%d.tar.gz", test_dir, k);
		snprintf(content, sizeof(content), "layer %d\n", k);
		layer_file(paths[k], "f", content, &b[k]);
	}
	env_close(e);
	time_t end = time(NULL) + secs;
	pid_t child = fork();
	ASSERT_TRUE(child >= 0);
	if (child == 0) {
		int n = 0;
		for (; time(NULL) < end; n++) {
			struct env ce = *e;
			env_open(&ce);
			if (import_once(&ce, paths, b, n % 2) < 0)
				_exit(1);
			env_close(&ce);
			usleep(1000);
		}
		fprintf(stderr, "# importer: %d imports\n", n);
		_exit(n > 0 ? 0 : 2);
	}
	int prunes = 0, gcs = 0;
	while (time(NULL) < end) {
		env_open(e);
		cairn_prune_options o = {.version = CAIRN_PRUNE_OPTIONS_VERSION,
		                         .flags = CAIRN_PRUNE_ALL};
		ASSERT_OK(cairn_cache_prune(e->c, &o, ERR));
		prunes++;
		env_close(e);
		cairn_store_options x = {.version = CAIRN_STORE_OPTIONS_VERSION,
		                         .flags = CAIRN_STORE_EXCLUSIVE | CAIRN_STORE_NOWAIT,
		                         .snapshotter = e->driver};
		cairn_store *gs = NULL;
		/* A few tries: the store is free only while the importer is between opens. */
		for (int t = 0; t < 20 && !getenv("CAIRN_RACE_NO_GC"); t++) {
			if (cairn_store_open(e->root, &x, &gs, NULL) == 0) {
				ASSERT_OK(cairn_gc(gs, 0, NULL, ERR));
				gcs++;
				cairn_store_close(gs);
				break;
			}
			usleep(500);
		}
	}
	int status = 0;
	ASSERT_EQ(waitpid(child, &status, 0), child);
	printf("# race: %d prunes, %d gcs while importing\n", prunes, gcs);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	env_open(e);
}

/* ---- unsynced extracts (src/cache/unsynced.c) ---- */

#define BOOT_A "aaaaaaaa-0000-4000-8000-00000000000a"
#define BOOT_B "bbbbbbbb-0000-4000-8000-00000000000b"

/* Reopens @e as a process of boot @boot would. */
static void reboot(struct env *e, const char *boot)
{
	env_close(e);
	setenv("CAIRN_BOOT_ID", boot, 1);
	env_open(e);
}

/* The marks of @e's driver: of boot @boot, and of other boots. */
static void marks(struct env *e, const char *boot, int64_t *ret_this, int64_t *ret_other)
{
	meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(e->store->db, &tx, false, ERR));
	ASSERT_OK(meta_unsynced_count(&tx, e->driver, boot, INT64_MAX, ret_other, ret_this, ERR));
	meta_tx_end(&tx);
}

static void age_marks(struct env *e)
{
	meta_tx tx = {0};
	ASSERT_OK(meta_tx_begin(e->store->db, &tx, true, ERR));
	ASSERT_OK(meta_exec(&tx, "UPDATE unsynced SET at = 0", ERR));
	ASSERT_OK(meta_tx_commit(&tx, ERR));
}

/* The path of @ref's own layer directory (caller frees). */
static char *layer_path(struct env *e, cairn_ref *ref)
{
	cairn_record_info *i = info_of(ref);
	char *path = NULL;
	int fd = snap_open_fs(e->store->snap, i->snapshot_id, &path, ERR);
	ASSERT_OK(fd);
	close(fd);
	cairn_record_infos_free(i, 1);
	return path;
}

BLOB_TEST(unsynced_extract_recovers_after_reboot)
{
	bool overlay = strcmp(e->driver, "overlay") == 0;
	reboot(e, BOOT_A);
	struct blob b1, b2;
	make_blob(e, "a", "one", &b1);
	make_blob(e, "b", "two", &b2);
	cairn_ref *r1 = by_blob(e, &b1, NULL), *r2 = by_blob(e, &b2, r1);
	ASSERT_OK(cairn_ref_extract(r2, NULL, NULL, ERR));
	int64_t mine = 0, other = 0;
	marks(e, BOOT_A, &mine, &other);
	/* Overlay commits both layers unsynced; native syncs each (nothing marked). */
	ASSERT_EQ(mine, overlay ? 2 : 0);
	ASSERT_EQ(other, 0);
	char *p1 = layer_path(e, r1), *p2 = layer_path(e, r2), l1[PATH_MAX], l2[PATH_MAX];
	snprintf(l1, sizeof(l1), "%s/list-1", test_dir);
	snprintf(l2, sizeof(l2), "%s/list-2", test_dir);
	listing(p1, l1);
	listing(p2, l2);
	cairn_ref_free(r2);
	cairn_ref_free(r1);

	/* The same boot trusts fresh marks: a reopen keeps them and touches nothing. */
	reboot(e, BOOT_A);
	marks(e, BOOT_A, &mine, &other);
	ASSERT_EQ(mine, overlay ? 2 : 0);

	/* Power lost before the kernel wrote the lower layer back: its file is torn and a stray
	 * file appeared. The first open of the next boot extracts both layers again. */
	ASSERT_OK(test_sh("printf 'o' > '%s/a' && echo junk > '%s/stray'", p1, p1));
	reboot(e, BOOT_B);
	marks(e, BOOT_B, &mine, &other);
	ASSERT_EQ(mine + other, 0);
	char m1[PATH_MAX];
	snprintf(m1, sizeof(m1), "%s/list-1b", test_dir);
	listing(p1, m1);
	if (overlay) {
		ASSERT_OK(test_sh("diff '%s' '%s' >&2", l1, m1));
	} else {
		/* Native synced before its commit: nothing is redone, the damage done here stays.
		 */
		ASSERT_TRUE(test_sh("diff '%s' '%s' >/dev/null", l1, m1) != 0);
	}
	ASSERT_OK(test_sh("cd '%s' && test \"$(cat b)\" = two", p2));
	r1 = by_blob(e, &b1, NULL);
	r2 = by_blob(e, &b2, r1);
	ASSERT_TRUE(extracted(r1) && extracted(r2));
	cairn_ref_free(r2);
	cairn_ref_free(r1);
	free(p1);
	free(p2);
	unsetenv("CAIRN_BOOT_ID");
}

BLOB_TEST(unsynced_marks_settle_in_the_same_boot)
{
	reboot(e, BOOT_A);
	struct blob b1;
	make_blob(e, "a", "one", &b1);
	cairn_ref *r1 = by_blob(e, &b1, NULL);
	ASSERT_OK(cairn_ref_extract(r1, NULL, NULL, ERR));
	cairn_ref_free(r1);
	int64_t mine = 0, other = 0;
	marks(e, BOOT_A, &mine, &other);
	ASSERT_EQ(mine, strcmp(e->driver, "overlay") == 0 ? 1 : 0);
	/* Once CACHE_UNSYNCED_SETTLE_NS old, the next open syncs and forgets them. */
	age_marks(e);
	reboot(e, BOOT_A);
	marks(e, BOOT_A, &mine, &other);
	ASSERT_EQ(mine + other, 0);
	r1 = by_blob(e, &b1, NULL);
	ASSERT_TRUE(extracted(r1));
	cairn_ref_free(r1);
	unsetenv("CAIRN_BOOT_ID");
}

BLOB_TEST(unsynced_without_blob_goes_back_to_lazy)
{
	if (strcmp(e->driver, "overlay") != 0)
		test_skip("only overlay defers the sync");
	reboot(e, BOOT_A);
	struct blob b1;
	make_blob(e, "a", "one", &b1);
	cairn_ref *r1 = by_blob(e, &b1, NULL);
	ASSERT_OK(cairn_ref_extract(r1, NULL, NULL, ERR));
	char *p1 = layer_path(e, r1), *id = strdup(cairn_ref_id(r1));
	cairn_ref_free(r1);
	/* The blob is lost too (say, deleted by hand): the snapshot cannot be made again. */
	ASSERT_OK(content_delete(e->store->content, b1.digest.str, ERR));
	int n0 = snap_count(e);
	reboot(e, BOOT_B);
	int64_t mine = 0, other = 0;
	marks(e, BOOT_B, &mine, &other);
	ASSERT_EQ(mine + other, 0);
	/* The snapshot went, the record is lazy again, and extracting it says what is missing. */
	ASSERT_EQ(snap_count(e), n0 - 1);
	ASSERT_TRUE(access(p1, F_OK) != 0);
	ASSERT_OK(cairn_cache_get(e->c, id, 0, &r1, ERR));
	ASSERT_FALSE(extracted(r1));
	ASSERT_TRUE(cairn_ref_extract(r1, NULL, NULL, ERR) < 0);
	ASSERT_ERRMSG(b1.digest.str);
	cairn_ref_free(r1);
	free(p1);
	free(id);
	unsetenv("CAIRN_BOOT_ID");
}
