/* SPDX-License-Identifier: MIT */
/*
 * Image import and export: OCI layouts and docker archives made here (layers as tars written
 * with libarchive), the good cases (import twice creates nothing, shared base layers share
 * records, nested and multi-platform indexes, export then import, determinism, both docker
 * archive forms) and every bad input of the issue, each checked to name the file and the
 * problem and to leave no new records and no new blobs behind. The store uses the native
 * snapshotter so that extracted trees can be read through a bind mount spec's source.
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/digest.h"
#include "cairn/cairn.h"
#include "harness.h"

struct env {
	char root[PATH_MAX];
	cairn_store *store;
	cairn_cache *c;
};

static void env_open(struct env *e)
{
	snprintf(e->root, sizeof(e->root), "%s/root", test_dir);
	cairn_store_options opts = {.version = CAIRN_STORE_OPTIONS_VERSION,
	                            .snapshotter = "native"};
	ASSERT_OK(cairn_store_open(e->root, &opts, &e->store, ERR));
	ASSERT_OK(cairn_cache_open(e->store, &e->c, ERR));
}

static void env_close(struct env *e)
{
	e->c = cairn_cache_close(e->c);
	e->store = cairn_store_close(e->store);
}

static size_t n_records(struct env *e)
{
	cairn_record_info *infos = NULL;
	size_t n = 0;
	ASSERT_OK(cairn_cache_list(e->c, &infos, &n, ERR));
	cairn_record_infos_free(infos, n);
	return n;
}

static int count_blob(const cairn_content_info *info, void *userdata)
{
	(*(size_t *)userdata)++;
	return 0;
}

static size_t n_blobs(struct env *e)
{
	size_t n = 0;
	ASSERT_OK(cairn_content_walk(e->store, count_blob, &n, ERR));
	return n;
}

/* ---- building layers and layouts ---- */

/* A tar (in memory) holding file @name with @content; gzip when @gz. */
static char *make_tar(const char *name, const char *content, bool gz, size_t *ret_len)
{
	size_t cap = 1 << 16, used = 0;
	char *buf = malloc(cap);
	struct archive *a = archive_write_new();
	ASSERT_TRUE(buf && a);
	archive_write_set_format_pax_restricted(a);
	if (gz)
		archive_write_add_filter_gzip(a);
	ASSERT_EQ(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
	struct archive_entry *ae = archive_entry_new();
	archive_entry_set_pathname(ae, name);
	archive_entry_set_filetype(ae, AE_IFREG);
	archive_entry_set_perm(ae, 0644);
	archive_entry_set_size(ae, (la_int64_t)strlen(content));
	ASSERT_EQ(archive_write_header(a, ae), ARCHIVE_OK);
	ASSERT_EQ(archive_write_data(a, content, strlen(content)), (la_ssize_t)strlen(content));
	archive_entry_free(ae);
	ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	*ret_len = used;
	return buf;
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

/* Writes @len bytes as blob of layout @dir; *@ret its digest. */
static void put_blob(const char *dir, const void *buf, size_t len, digest *ret)
{
	char path[PATH_MAX];
	digest_buffer(buf, len, ret);
	snprintf(path, sizeof(path), "%s/blobs/sha256", dir);
	test_sh("mkdir -p '%s'", path);
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, digest_hex(ret));
	write_bytes(path, buf, len);
}

static void put_json(const char *dir, json_t *doc, digest *ret, size_t *ret_len)
{
	char *s = json_dumps(doc, JSON_COMPACT);
	ASSERT_TRUE(s != NULL);
	put_blob(dir, s, strlen(s), ret);
	if (ret_len)
		*ret_len = strlen(s);
	free(s);
	json_decref(doc);
}

struct layer {
	digest blob, diff_id;
	size_t size;
};

/* A gzip layer holding @name = @content in layout @dir. */
static struct layer add_layer(const char *dir, const char *name, const char *content)
{
	struct layer l;
	size_t plain_len = 0, gz_len = 0;
	char *plain = make_tar(name, content, false, &plain_len);
	char *gz = make_tar(name, content, true, &gz_len);
	digest_buffer(plain, plain_len, &l.diff_id);
	put_blob(dir, gz, gz_len, &l.blob);
	l.size = gz_len;
	free(plain);
	free(gz);
	return l;
}

struct built {
	digest manifest, config;
	size_t manifest_len;
};

/* Config and manifest of @n layers (diff ids @n_diff of them) in layout @dir. */
static struct built add_image(const char *dir, const struct layer *ls, size_t n, size_t n_diff,
                              const char *arch)
{
	struct built b;
	json_t *ids = json_array(), *layers = json_array();
	for (size_t i = 0; i < n_diff; i++)
		json_array_append_new(ids, json_string(ls[i].diff_id.str));
	for (size_t i = 0; i < n; i++)
		json_array_append_new(
			layers, json_pack("{ss ss sI}", "mediaType",
		                          "application/vnd.oci.image.layer.v1.tar+gzip", "digest",
		                          ls[i].blob.str, "size", (json_int_t)ls[i].size));
	size_t clen = 0;
	put_json(dir,
	         json_pack("{ss ss s{ss so} s{s[s]}}", "architecture", arch, "os", "linux",
	                   "rootfs", "type", "layers", "diff_ids", ids, "config", "Env",
	                   "PATH=/usr/bin"),
	         &b.config, &clen);
	put_json(dir,
	         json_pack("{si ss s{ss ss sI} so}", "schemaVersion", 2, "mediaType",
	                   "application/vnd.oci.image.manifest.v1+json", "config", "mediaType",
	                   "application/vnd.oci.image.config.v1+json", "digest", b.config.str,
	                   "size", (json_int_t)clen, "layers", layers),
	         &b.manifest, &b.manifest_len);
	return b;
}

static json_t *mdesc(const char *mt, const digest *d, size_t size, const char *name)
{
	json_t *o = json_pack("{ss ss sI}", "mediaType", mt, "digest", d->str, "size",
	                      (json_int_t)size);
	if (name)
		json_object_set_new(o, "annotations",
		                    json_pack("{ss}", "org.opencontainers.image.ref.name", name));
	return o;
}

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX    "application/vnd.oci.image.index.v1+json"

static void write_index(const char *dir, json_t *manifests)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/oci-layout", dir);
	test_write_file(path, "{\"imageLayoutVersion\":\"1.0.0\"}");
	json_t *doc = json_pack("{si ss so}", "schemaVersion", 2, "mediaType", MT_INDEX,
	                        "manifests", manifests);
	char *s = json_dumps(doc, JSON_COMPACT);
	snprintf(path, sizeof(path), "%s/index.json", dir);
	test_write_file(path, s);
	free(s);
	json_decref(doc);
}

/* The standard layout: image "two" of layers a (etc/a) and b (etc/b); *@ret what was made. */
static void std_layout(const char *dir, struct layer ls[2], struct built *ret)
{
	test_sh("mkdir -p '%s'", dir);
	ls[0] = add_layer(dir, "etc/a", "alpha\n");
	ls[1] = add_layer(dir, "etc/b", "beta\n");
	*ret = add_image(dir, ls, 2, 2, "amd64");
	write_index(dir,
	            json_pack("[o]", mdesc(MT_MANIFEST, &ret->manifest, ret->manifest_len, "two")));
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	char *buf = calloc(1, 1 << 16);
	size_t n = fread(buf, 1, (1 << 16) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* The content of @path in the extracted tree of record @id (native: a bind mount's source). */
static char *tree_file(struct env *e, const char *id, const char *path)
{
	cairn_ref *ref = NULL;
	ASSERT_OK(cairn_cache_get(e->c, id, 0, &ref, ERR));
	ASSERT_OK(cairn_ref_extract(ref, NULL, NULL, ERR));
	cairn_mount *m = NULL;
	size_t n = 0;
	ASSERT_OK(cairn_ref_mount(ref, true, &m, &n, ERR));
	ASSERT_STREQ(m[0].type, "bind");
	char full[PATH_MAX];
	snprintf(full, sizeof(full), "%s/%s", m[0].source, path);
	char *s = read_text(full);
	cairn_mounts_free(m, n);
	cairn_ref_free(ref);
	return s;
}

static cairn_image_info *import(struct env *e, const char *src, const char *platform,
                                unsigned flags)
{
	cairn_image_import_options o = {.version = CAIRN_IMAGE_IMPORT_OPTIONS_VERSION,
	                                .flags = flags,
	                                .platform = platform};
	cairn_image_info *info = NULL;
	ASSERT_OK(cairn_image_import(e->c, src, &o, &info, ERR));
	ASSERT_TRUE(test_err == NULL); /* success leaves no error behind */
	return info;
}

/* ---- good cases ---- */

TEST(import_layout)
{
	struct env e = {0};
	env_open(&e);
	struct layer ls[2];
	struct built b;
	std_layout("L", ls, &b);
	cairn_image_info *info = import(&e, "L:two", NULL, 0);
	ASSERT_EQ(info->n_layers, 2);
	ASSERT_STREQ(info->tag, "two");
	ASSERT_STREQ(info->manifest_digest, b.manifest.str);
	ASSERT_STREQ(info->config_digest, b.config.str);
	ASSERT_STREQ(info->blobs[0], ls[0].blob.str);
	ASSERT_STREQ(info->diff_ids[1], ls[1].diff_id.str);
	ASSERT_STREQ(info->id, info->layers[1]);
	ASSERT_EQ(info->n_new_records, 2);
	ASSERT_EQ(info->n_new_blobs, 4); /* two layers, the config, the manifest */
	ASSERT_EQ(n_records(&e), 2);
	/* The tag names the top record and the manifest; the manifest names what it needs. */
	char *id = NULL, *md = NULL;
	ASSERT_OK(cairn_cache_resolve_image(e.c, "two", &id, &md, ERR));
	ASSERT_STREQ(id, info->id);
	ASSERT_STREQ(md, b.manifest.str);
	free(id);
	free(md);
	cairn_record_info *ri = NULL;
	ASSERT_OK(cairn_cache_info(e.c, info->id, &ri, ERR));
	ASSERT_STREQ(ri->parent, info->layers[0]);
	ASSERT_FALSE(ri->extracted);
	cairn_record_infos_free(ri, 1);
	char *s = tree_file(&e, info->id, "etc/a");
	ASSERT_STREQ(s, "alpha\n");
	free(s);
	cairn_image_info_free(info);
	env_close(&e);
}

TEST(import_twice_creates_nothing)
{
	struct env e = {0};
	env_open(&e);
	struct layer ls[2];
	struct built b;
	std_layout("L", ls, &b);
	cairn_image_info *a = import(&e, "L", NULL, 0);
	size_t nr = n_records(&e), nb = n_blobs(&e);
	cairn_image_info *a2 = import(&e, "L", NULL, 0);
	ASSERT_STREQ(a->id, a2->id);
	ASSERT_STREQ(a2->tag, "two"); /* the only image's own name */
	ASSERT_EQ(a2->n_new_records, 0);
	ASSERT_EQ(a2->n_new_blobs, 0);
	ASSERT_EQ(n_records(&e), nr);
	ASSERT_EQ(n_blobs(&e), nb);
	cairn_image_info_free(a);
	cairn_image_info_free(a2);
	env_close(&e);
}

TEST(shared_base_layers_share_records)
{
	struct env e = {0};
	env_open(&e);
	test_sh("mkdir -p L");
	struct layer ls[3];
	ls[0] = add_layer("L", "base", "base\n");
	ls[1] = add_layer("L", "one", "1\n");
	ls[2] = add_layer("L", "two", "2\n");
	struct built b1 = add_image("L", ls, 2, 2, "amd64");
	struct layer l2[2] = {ls[0], ls[2]};
	struct built b2 = add_image("L", l2, 2, 2, "amd64");
	write_index("L", json_pack("[o o]", mdesc(MT_MANIFEST, &b1.manifest, b1.manifest_len, "i1"),
	                           mdesc(MT_MANIFEST, &b2.manifest, b2.manifest_len, "i2")));
	cairn_image_info *i1 = import(&e, "L:i1", NULL, 0);
	cairn_image_info *i2 = import(&e, "L:i2", NULL, 0);
	ASSERT_STREQ(i1->layers[0], i2->layers[0]);
	ASSERT_TRUE(strcmp(i1->id, i2->id) != 0);
	ASSERT_EQ(i2->n_new_records, 1);
	ASSERT_EQ(n_records(&e), 3);
	/* Several images and no name: an error naming them. */
	cairn_image_info *x = NULL;
	ASSERT_ERR(cairn_image_import(e.c, "L", NULL, &x, ERR), -EINVAL);
	ASSERT_ERRMSG("i1, i2");
	ASSERT_ERR(cairn_image_import(e.c, "L:nope", NULL, &x, ERR), -ENOENT);
	ASSERT_ERRMSG("no image named 'nope'");
	cairn_image_info_free(i1);
	cairn_image_info_free(i2);
	env_close(&e);
}

static json_t *pdesc(const struct built *b, const char *arch)
{
	json_t *o = mdesc(MT_MANIFEST, &b->manifest, b->manifest_len, NULL);
	json_object_set_new(o, "platform",
	                    json_pack("{ss ss}", "os", "linux", "architecture", arch));
	return o;
}

/* index.json -> an index blob (linux/arm64, linux/amd64) -> manifests. */
static void multi_layout(struct layer *ls)
{
	test_sh("mkdir -p L");
	ls[0] = add_layer("L", "arch", "amd64\n");
	ls[1] = add_layer("L", "arch", "arm64\n");
	struct built amd = add_image("L", &ls[0], 1, 1, "amd64");
	struct built arm = add_image("L", &ls[1], 1, 1, "arm64");
	digest idx;
	size_t idx_len = 0;
	put_json("L",
	         json_pack("{si ss s[o o]}", "schemaVersion", 2, "mediaType", MT_INDEX, "manifests",
	                   pdesc(&arm, "arm64"), pdesc(&amd, "amd64")),
	         &idx, &idx_len);
	write_index("L", json_pack("[o]", mdesc(MT_INDEX, &idx, idx_len, "multi")));
}

TEST(nested_multi_platform_index)
{
	struct env e = {0};
	env_open(&e);
	struct layer ls[2];
	multi_layout(ls);
	cairn_image_info *a = import(&e, "L:multi", NULL, 0);
	ASSERT_STREQ(a->blobs[0], ls[0].blob.str); /* linux/amd64 by default */
	ASSERT_STREQ(a->tag, "multi");
	cairn_image_info *b = import(&e, "L:multi", "linux/arm64", 0);
	ASSERT_STREQ(b->blobs[0], ls[1].blob.str);
	size_t nr = n_records(&e), nb = n_blobs(&e);
	cairn_image_info *x = NULL;
	cairn_image_import_options o = {.version = CAIRN_IMAGE_IMPORT_OPTIONS_VERSION,
	                                .platform = "linux/s390x"};
	ASSERT_ERR(cairn_image_import(e.c, "L:multi", &o, &x, ERR), -ENOENT);
	ASSERT_ERRMSG("linux/s390x");
	ASSERT_ERRMSG("linux/arm64, linux/amd64");
	o.platform = "linux";
	ASSERT_ERR(cairn_image_import(e.c, "L:multi", &o, &x, ERR), -EINVAL);
	ASSERT_ERRMSG("bad platform 'linux'");
	ASSERT_EQ(n_records(&e), nr);
	ASSERT_EQ(n_blobs(&e), nb);
	cairn_image_info_free(a);
	cairn_image_info_free(b);
	env_close(&e);
}

/* Two directory trees are equal file by file (names and bytes). */
static void assert_same_tree(const char *a, const char *b)
{
	ASSERT_EQ(test_sh("diff -r '%s' '%s' >/dev/null", a, b), 0);
}

TEST(export_then_import_same_chain)
{
	struct env e = {0};
	env_open(&e);
	struct layer ls[2];
	struct built b;
	std_layout("L", ls, &b);
	cairn_image_info *in = import(&e, "L", NULL, 0);
	cairn_image_export_options o = {.version = CAIRN_IMAGE_EXPORT_OPTIONS_VERSION,
	                                .tag = "v1",
	                                .source_date_epoch = -1};
	cairn_image_info *out = NULL;
	ASSERT_OK(cairn_image_export(e.c, "two", "OUT", &o, &out, ERR));
	/* The chain is the imported image's own: its manifest, unchanged. */
	ASSERT_STREQ(out->manifest_digest, b.manifest.str);
	ASSERT_STREQ(out->blobs[1], ls[1].blob.str);
	cairn_image_info_free(out);
	/* With an epoch, a new config; the same options give the same bytes. */
	o.source_date_epoch = 1700000000;
	ASSERT_OK(cairn_image_export(e.c, in->id, "E1", &o, &out, ERR));
	char *m1 = strdup(out->manifest_digest);
	cairn_image_info_free(out);
	ASSERT_OK(cairn_image_export(e.c, in->id, "E2", &o, &out, ERR));
	ASSERT_STREQ(out->manifest_digest, m1);
	cairn_image_info_free(out);
	assert_same_tree("E1", "E2");
	char *idx = read_text("E1/index.json");
	ASSERT_TRUE(strstr(idx, "\"org.opencontainers.image.ref.name\":\"v1\"") != NULL);
	ASSERT_TRUE(strstr(idx, m1) != NULL);
	free(idx);
	/* Export again into the layout under another tag: both entries; same tag: replaced. */
	o.tag = "v2";
	ASSERT_OK(cairn_image_export(e.c, in->id, "E1", &o, NULL, ERR));
	ASSERT_OK(cairn_image_export(e.c, in->id, "E1", &o, NULL, ERR));
	idx = read_text("E1/index.json");
	ASSERT_TRUE(strstr(idx, "\"v1\"") && strstr(idx, "\"v2\""));
	ASSERT_TRUE(strstr(strstr(idx, "\"v2\"") + 1, "\"v2\"") == NULL);
	free(idx);
	/* Into a fresh store: the same chain. */
	struct env f = {0};
	snprintf(f.root, sizeof(f.root), "%s/root2", test_dir);
	cairn_store_options so = {.version = CAIRN_STORE_OPTIONS_VERSION, .snapshotter = "native"};
	ASSERT_OK(cairn_store_open(f.root, &so, &f.store, ERR));
	ASSERT_OK(cairn_cache_open(f.store, &f.c, ERR));
	cairn_image_info *back = import(&f, "E1:v1", NULL, 0);
	ASSERT_EQ(back->n_layers, 2);
	ASSERT_STREQ(back->diff_ids[0], ls[0].diff_id.str);
	ASSERT_STREQ(back->diff_ids[1], ls[1].diff_id.str);
	ASSERT_STREQ(back->blobs[0], ls[0].blob.str);
	ASSERT_STREQ(back->manifest_digest, m1);
	char *s = tree_file(&f, back->id, "etc/b");
	ASSERT_STREQ(s, "beta\n");
	free(s);
	cairn_image_info_free(back);
	env_close(&f);
	free(m1);
	/* A directory that is not a layout is refused. */
	test_sh("mkdir -p junk && echo x > junk/x");
	ASSERT_ERR(cairn_image_export(e.c, in->id, "junk", &o, NULL, ERR), -EEXIST);
	ASSERT_ERRMSG("'junk'");
	cairn_image_info_free(in);
	env_close(&e);
}

TEST(export_new_record_makes_blobs)
{
	struct env e = {0};
	env_open(&e);
	cairn_ref *m = NULL, *imm = NULL;
	ASSERT_OK(cairn_cache_new(e.c, NULL, NULL, &m, ERR));
	cairn_mount *mm = NULL;
	size_t n = 0;
	ASSERT_OK(cairn_ref_mount(m, false, &mm, &n, ERR));
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/hello", mm[0].source);
	test_write_file(path, "world\n");
	cairn_mounts_free(mm, n);
	ASSERT_OK(cairn_ref_commit(m, &imm, ERR));
	cairn_image_export_options o = {.version = CAIRN_IMAGE_EXPORT_OPTIONS_VERSION,
	                                .compression = "zstd",
	                                .source_date_epoch = 0};
	cairn_image_info *out = NULL;
	ASSERT_OK(cairn_image_export(e.c, cairn_ref_id(imm), "OUT", &o, &out, ERR));
	ASSERT_STREQ(out->tag, "latest");
	char *idx = read_text("OUT/index.json");
	ASSERT_TRUE(strstr(idx, "\"latest\"") != NULL);
	free(idx);
	snprintf(path, sizeof(path), "OUT/blobs/sha256/%s", out->config_digest + 7);
	char *cfg = read_text(path);
	ASSERT_TRUE(strstr(cfg, out->diff_ids[0]) != NULL);
	ASSERT_TRUE(strstr(cfg, "\"created\":\"1970-01-01T00:00:00Z\"") != NULL);
	free(cfg);
	snprintf(path, sizeof(path), "OUT/blobs/sha256/%s", out->manifest_digest + 7);
	char *man = read_text(path);
	ASSERT_TRUE(strstr(man, "tar+zstd") != NULL);
	free(man);
	cairn_image_info_free(out);
	cairn_ref_free(imm);
	cairn_ref_free(m);
	env_close(&e);
}

/* ---- docker archives ---- */

struct member {
	const char *name;
	const char *data; /* NULL: a symlink to @link */
	size_t len;
	const char *link;
};

static void write_tar(const char *path, const struct member *ms, size_t n)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	ASSERT_EQ(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *ae = archive_entry_new();
		archive_entry_set_pathname(ae, ms[i].name);
		archive_entry_set_perm(ae, 0644);
		if (ms[i].data) {
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_size(ae, (la_int64_t)ms[i].len);
		} else {
			archive_entry_set_filetype(ae, AE_IFLNK);
			archive_entry_set_symlink(ae, ms[i].link);
		}
		ASSERT_EQ(archive_write_header(a, ae), ARCHIVE_OK);
		if (ms[i].data)
			ASSERT_EQ(archive_write_data(a, ms[i].data, ms[i].len),
			          (la_ssize_t)ms[i].len);
		archive_entry_free(ae);
	}
	ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

/* docker save's legacy form: manifest.json, <hex>.json, <id>/layer.tar (the second layer a
 * symlink to a third copy, as docker writes repeated layers), members in a shuffled order. */
static void legacy_archive(const char *path, size_t n_diff, struct layer *ret)
{
	size_t l1n = 0, l2n = 0;
	char *l1 = make_tar("etc/one", "one\n", false, &l1n);
	char *l2 = make_tar("etc/two", "two\n", false, &l2n);
	digest_buffer(l1, l1n, &ret[0].diff_id);
	digest_buffer(l2, l2n, &ret[1].diff_id);
	json_t *ids = json_array();
	for (size_t i = 0; i < n_diff; i++)
		json_array_append_new(ids, json_string(ret[i].diff_id.str));
	json_t *cfg = json_pack("{ss ss s{ss so}}", "architecture", "amd64", "os", "linux",
	                        "rootfs", "type", "layers", "diff_ids", ids);
	char *cs = json_dumps(cfg, JSON_COMPACT);
	json_decref(cfg);
	digest cd;
	digest_buffer(cs, strlen(cs), &cd);
	char cname[80];
	snprintf(cname, sizeof(cname), "%s.json", digest_hex(&cd));
	json_t *man = json_pack("[{ss s[s] s[ss]}]", "Config", cname, "RepoTags", "foo:latest",
	                        "Layers", "aaa/layer.tar", "bbb/layer.tar");
	char *ms = json_dumps(man, JSON_COMPACT);
	json_decref(man);
	struct member m[] = {
		{"bbb/layer.tar", NULL, 0, "../ccc/layer.tar"},
		{"aaa/layer.tar", l1, l1n, NULL},
		{"manifest.json", ms, strlen(ms), NULL},
		{cname, cs, strlen(cs), NULL},
		{"ccc/layer.tar", l2, l2n, NULL},
	};
	write_tar(path, m, ELEMENTSOF(m));
	free(l1);
	free(l2);
	free(cs);
	free(ms);
}

TEST(docker_archive_legacy)
{
	struct env e = {0};
	env_open(&e);
	struct layer ls[2];
	legacy_archive("img.tar", 2, ls);
	cairn_image_info *a = import(&e, "img.tar", NULL, CAIRN_IMAGE_IMPORT_EXTRACT);
	ASSERT_STREQ(a->tag, "foo:latest");
	ASSERT_EQ(a->n_layers, 2);
	/* Plain layers: the blob is the tar, its digest the diff id. */
	ASSERT_STREQ(a->blobs[1], ls[1].diff_id.str);
	char *s = tree_file(&e, a->id, "etc/two");
	ASSERT_STREQ(s, "two\n");
	free(s);
	/* --tag picks by RepoTags ("foo" is "foo:latest") and names the tag. */
	cairn_image_import_options o = {.version = CAIRN_IMAGE_IMPORT_OPTIONS_VERSION,
	                                .name = "foo"};
	cairn_image_info *b = NULL;
	ASSERT_OK(cairn_image_import(e.c, "img.tar", &o, &b, ERR));
	ASSERT_STREQ(b->id, a->id);
	ASSERT_EQ(b->n_new_records, 0);
	ASSERT_EQ(b->n_new_blobs, 0);
	cairn_image_info_free(b);
	o.name = "bar";
	ASSERT_ERR(cairn_image_import(e.c, "img.tar", &o, &b, ERR), -ENOENT);
	ASSERT_ERRMSG("foo:latest");
	cairn_image_info_free(a);
	env_close(&e);
}

TEST(docker_archive_export_import_deterministic)
{
	struct env e = {0};
	env_open(&e);
	struct layer ls[2];
	struct built b;
	std_layout("L", ls, &b);
	cairn_image_info *in = import(&e, "L", NULL, 0);
	cairn_image_export_options o = {.version = CAIRN_IMAGE_EXPORT_OPTIONS_VERSION,
	                                .format = CAIRN_IMAGE_FORMAT_DOCKER_ARCHIVE,
	                                .tag = "repo/x",
	                                .source_date_epoch = 5};
	ASSERT_OK(cairn_image_export(e.c, "two", "a.tar", &o, NULL, ERR));
	ASSERT_OK(cairn_image_export(e.c, "two", "b.tar", &o, NULL, ERR));
	ASSERT_EQ(test_sh("cmp -s a.tar b.tar"), 0);
	ASSERT_EQ(test_sh("tar -xOf a.tar manifest.json | grep -q '\"repo/x:latest\"'"), 0);
	/* Plain layers inside, named by their diff ids. */
	ASSERT_EQ(test_sh("tar -tf a.tar | grep -q 'blobs/sha256/%s'", digest_hex(&ls[0].diff_id)),
	          0);
	/* The Docker 25 form (OCI layout inside) and the legacy manifest.json alone both import. */
	struct env f = {0};
	snprintf(f.root, sizeof(f.root), "%s/root2", test_dir);
	cairn_store_options so = {.version = CAIRN_STORE_OPTIONS_VERSION, .snapshotter = "native"};
	ASSERT_OK(cairn_store_open(f.root, &so, &f.store, ERR));
	ASSERT_OK(cairn_cache_open(f.store, &f.c, ERR));
	cairn_image_info *back = import(&f, "a.tar", NULL, 0);
	ASSERT_STREQ(back->diff_ids[1], ls[1].diff_id.str);
	ASSERT_STREQ(back->blobs[1], ls[1].diff_id.str);
	ASSERT_STREQ(back->tag, "repo/x");
	test_sh("mkdir x && cd x && tar -xf ../a.tar && rm index.json oci-layout && "
	        "tar -cf ../legacy.tar *");
	cairn_image_info *leg = import(&f, "legacy.tar", NULL, 0);
	ASSERT_STREQ(leg->id, back->id);
	ASSERT_STREQ(leg->tag, "repo/x:latest");
	ASSERT_EQ(leg->n_new_records, 0);
	char *s = tree_file(&f, leg->id, "etc/a");
	ASSERT_STREQ(s, "alpha\n");
	free(s);
	cairn_image_info_free(back);
	cairn_image_info_free(leg);
	env_close(&f);
	cairn_image_info_free(in);
	env_close(&e);
}

/* ---- bad input ---- */

/* Imports @src expecting @code with @needle (and @needle2) in the message, then checks that
 * the store holds exactly what it held before. */
static void import_fails(struct env *e, const char *src, int code, const char *needle,
                         const char *needle2, unsigned flags)
{
	size_t nr = n_records(e), nb = n_blobs(e);
	cairn_image_import_options o = {.version = CAIRN_IMAGE_IMPORT_OPTIONS_VERSION,
	                                .flags = flags};
	cairn_image_info *info = NULL;
	ASSERT_ERR(cairn_image_import(e->c, src, &o, &info, ERR), code);
	ASSERT_ERRMSG(needle);
	if (needle2)
		ASSERT_ERRMSG(needle2);
	ASSERT_TRUE(info == NULL);
	ASSERT_EQ(n_records(e), nr);
	ASSERT_EQ(n_blobs(e), nb);
}

#define BAD_TEST(name)                                                                             \
	static void bad_##name(struct env *e, struct layer *ls, struct built *b);                  \
	TEST(bad_##name)                                                                           \
	{                                                                                          \
		struct env e = {0};                                                                \
		env_open(&e);                                                                      \
		struct layer ls[2];                                                                \
		struct built b;                                                                    \
		std_layout("L", ls, &b);                                                           \
		bad_##name(&e, ls, &b);                                                            \
		env_close(&e);                                                                     \
	}                                                                                          \
	static void bad_##name(struct env *e, struct layer *ls, struct built *b)

static char *blob_file(const char *dir, const digest *d)
{
	static char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, digest_hex(d));
	return path;
}

BAD_TEST(no_oci_layout)
{
	unlink("L/oci-layout");
	import_fails(e, "L", CAIRN_ECORRUPT, "L/oci-layout", "missing", 0);
}

BAD_TEST(layout_version)
{
	test_write_file("L/oci-layout", "{\"imageLayoutVersion\":\"2.0.0\"}");
	import_fails(e, "L", CAIRN_ECORRUPT, "L/oci-layout", "imageLayoutVersion '2.0.0'", 0);
	test_write_file("L/oci-layout", "nope");
	import_fails(e, "L", CAIRN_ECORRUPT, "L/oci-layout", "not valid JSON", 0);
}

BAD_TEST(index_not_json)
{
	test_write_file("L/index.json", "{\"schemaVersion\": 2, \"manifests\": [");
	import_fails(e, "L", CAIRN_ECORRUPT, "L/index.json", "not valid JSON", 0);
	test_write_file("L/index.json", "{\"schemaVersion\": 2, \"manifests\": {}}");
	import_fails(e, "L", CAIRN_ECORRUPT, "L/index.json", "manifests", 0);
}

BAD_TEST(missing_manifest)
{
	unlink(blob_file("L", &b->manifest));
	import_fails(e, "L", CAIRN_ECORRUPT, digest_hex(&b->manifest), "missing", 0);
}

BAD_TEST(missing_layer)
{
	unlink(blob_file("L", &ls[1].blob));
	import_fails(e, "L", CAIRN_ECORRUPT, digest_hex(&ls[1].blob), "missing", 0);
}

BAD_TEST(layer_digest_mismatch)
{
	/* The second layer's bytes change, its size stays: found while copying, after the first
	 * layer went in; both go again. */
	char *p = blob_file("L", &ls[1].blob);
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(pwrite(fd, "X", 1, 20), 1);
	close(fd);
	import_fails(e, "L", CAIRN_EDIGEST, digest_hex(&ls[1].blob), "L/blobs/sha256", 0);
}

BAD_TEST(layer_size_mismatch)
{
	test_sh("echo extra >> '%s'", blob_file("L", &ls[0].blob));
	import_fails(e, "L", CAIRN_ECORRUPT, digest_hex(&ls[0].blob), "size mismatch", 0);
}

BAD_TEST(manifest_digest_mismatch)
{
	test_sh("sed -i 's/schemaVersion\":2/schemaVersion\":3/' '%s'",
	        blob_file("L", &b->manifest));
	import_fails(e, "L", CAIRN_EDIGEST, digest_hex(&b->manifest), "digest mismatch", 0);
}

BAD_TEST(digest_traversal)
{
	test_write_file("L/index.json", "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":"
	                                "\"application/vnd.oci.image.manifest.v1+json\",\"digest\":"
	                                "\"sha256:../../x\",\"size\":10}]}");
	import_fails(e, "L", CAIRN_EDIGEST, "L/index.json", "sha256:../../x", 0);
}

BAD_TEST(diff_id_count)
{
	struct built b1 = add_image("L", ls, 2, 1, "amd64");
	write_index("L", json_pack("[o]", mdesc(MT_MANIFEST, &b1.manifest, b1.manifest_len, "x")));
	import_fails(e, "L", CAIRN_ECORRUPT, digest_hex(&b1.config), "rootfs.diff_ids has 1", 0);
}

BAD_TEST(config_not_json)
{
	digest cd;
	put_blob("L", "{nope", 5, &cd);
	json_t *m = json_pack("{si s{ss ss si} s[]}", "schemaVersion", 2, "config", "mediaType",
	                      "application/vnd.oci.image.config.v1+json", "digest", cd.str, "size",
	                      5, "layers");
	digest md;
	size_t ml = 0;
	put_json("L", m, &md, &ml);
	write_index("L", json_pack("[o]", mdesc(MT_MANIFEST, &md, ml, "x")));
	import_fails(e, "L", CAIRN_ECORRUPT, digest_hex(&cd), "not valid JSON", 0);
}

BAD_TEST(huge_manifest)
{
	/* A sparse 1 GB manifest: refused by its size, never read. */
	char *p = blob_file("L", &b->manifest);
	ASSERT_EQ(truncate(p, 1LL << 30), 0);
	import_fails(e, "L", -EFBIG, digest_hex(&b->manifest), "too large", 0);
	/* ... and when the descriptor says so too. */
	write_index("L", json_pack("[o]", mdesc(MT_MANIFEST, &b->manifest, 1u << 30, "two")));
	import_fails(e, "L", -EFBIG, digest_hex(&b->manifest), "1073741824", 0);
}

BAD_TEST(symlinked_blobs_stay_inside)
{
	/* blobs/ points at an absolute path outside the layout: resolved inside it, so the blobs
	 * there are not found. */
	test_sh("mv L/blobs outside && ln -s \"$PWD/outside\" L/blobs");
	import_fails(e, "L", CAIRN_ECORRUPT, digest_hex(&b->manifest), "missing", 0);
}

BAD_TEST(wrong_diff_id_on_extract)
{
	/* The config's diff id for layer 1 is another layer's: the records are made, extraction
	 * finds the mismatch, and everything made goes again. */
	struct layer wrong[2] = {ls[0], ls[1]};
	wrong[1].diff_id = ls[0].diff_id;
	struct built b1 = add_image("L", wrong, 2, 2, "amd64");
	write_index("L", json_pack("[o]", mdesc(MT_MANIFEST, &b1.manifest, b1.manifest_len, "x")));
	import_fails(e, "L", CAIRN_EDIGEST, "extract", digest_hex(&ls[0].diff_id),
	             CAIRN_IMAGE_IMPORT_EXTRACT);
}

BAD_TEST(not_found)
{
	import_fails(e, "nowhere", -ENOENT, "'nowhere' not found", NULL, 0);
	import_fails(e, "L:other", -ENOENT, "no image named 'other'", "two", 0);
}

TEST(bad_archives)
{
	struct env e = {0};
	env_open(&e);
	struct layer ls[2];
	legacy_archive("short.tar", 1, ls);
	import_fails(&e, "short.tar", CAIRN_ECORRUPT, "rootfs.diff_ids has 1", "short.tar", 0);
	test_sh("gzip -k short.tar");
	import_fails(&e, "short.tar.gz", CAIRN_ECORRUPT, "short.tar.gz", "compressed", 0);
	struct member m[] = {{"manifest.json", "[{]", 3, NULL}};
	write_tar("bad.tar", m, 1);
	import_fails(&e, "bad.tar", CAIRN_ECORRUPT, "bad.tar/manifest.json", "not valid JSON", 0);
	/* A layer that is missing from the archive. */
	legacy_archive("ok.tar", 2, ls);
	test_sh("mkdir x && cd x && tar -xf ../ok.tar && rm aaa/layer.tar && tar -cf ../miss.tar "
	        "*");
	import_fails(&e, "miss.tar", CAIRN_ECORRUPT, "miss.tar/aaa/layer.tar", "missing", 0);
	/* Legacy layers are checked against their diff ids while they are copied. */
	test_sh("cd x && tar -xf ../ok.tar && printf X | dd of=aaa/layer.tar bs=1 seek=600 "
	        "conv=notrunc 2>/dev/null && tar -cf ../flip.tar *");
	import_fails(&e, "flip.tar", CAIRN_EDIGEST, "flip.tar/aaa/layer.tar", ls[0].diff_id.str, 0);
	env_close(&e);
}

TEST(export_derived_keeps_image_config)
{
	struct env e = {0};
	env_open(&e);
	struct layer ls[2];
	struct built b;
	std_layout("L", ls, &b);
	cairn_image_info *in = import(&e, "L", NULL, CAIRN_IMAGE_IMPORT_EXTRACT);
	cairn_ref *base = NULL, *m = NULL, *top = NULL;
	ASSERT_OK(cairn_cache_get(e.c, in->id, 0, &base, ERR));
	ASSERT_OK(cairn_cache_new(e.c, base, NULL, &m, ERR));
	cairn_mount *mm = NULL;
	size_t n = 0;
	ASSERT_OK(cairn_ref_mount(m, false, &mm, &n, ERR));
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/etc/c", mm[0].source);
	test_write_file(path, "gamma\n");
	cairn_mounts_free(mm, n);
	ASSERT_OK(cairn_ref_commit(m, &top, ERR));
	cairn_image_export_options o = {.version = CAIRN_IMAGE_EXPORT_OPTIONS_VERSION,
	                                .source_date_epoch = 0};
	cairn_image_info *out = NULL;
	ASSERT_OK(cairn_image_export(e.c, cairn_ref_id(top), "OUT", &o, &out, ERR));
	ASSERT_EQ(out->n_layers, 3);
	ASSERT_STREQ(out->blobs[0], ls[0].blob.str);
	snprintf(path, sizeof(path), "OUT/blobs/sha256/%s", out->config_digest + 7);
	char *cfg = read_text(path);
	ASSERT_TRUE(strstr(cfg, "PATH=/usr/bin") != NULL); /* the image's Env */
	ASSERT_TRUE(strstr(cfg, out->diff_ids[2]) != NULL);
	free(cfg);
	cairn_image_info_free(out);
	cairn_ref_free(top);
	cairn_ref_free(m);
	cairn_ref_free(base);
	cairn_image_info_free(in);
	env_close(&e);
}

BAD_TEST(fifo_blob)
{
	/* A FIFO where a blob should be: refused without blocking on it. */
	char *p = blob_file("L", &ls[1].blob);
	ASSERT_EQ(unlink(p), 0);
	ASSERT_EQ(mkfifo(p, 0644), 0);
	import_fails(e, "L", CAIRN_ECORRUPT, digest_hex(&ls[1].blob), "not a regular file", 0);
}

TEST(bad_archive_links)
{
	struct env e = {0};
	env_open(&e);
	/* Layers that are symlinks in a loop, or point out of the archive. */
	struct member m[] = {
		{"manifest.json",
	         "[{\"Config\":\"c.json\",\"RepoTags\":null,\"Layers\":[\"a/layer.tar\"]}]", 0,
	         NULL},
		{"c.json", "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}", 0, NULL},
		{"a/layer.tar", NULL, 0, "../b/layer.tar"},
		{"b/layer.tar", NULL, 0, "../a/layer.tar"},
	};
	for (size_t i = 0; i < 2; i++)
		m[i].len = strlen(m[i].data);
	write_tar("loop.tar", m, ELEMENTSOF(m));
	import_fails(&e, "loop.tar", CAIRN_ECORRUPT, "rootfs.diff_ids has 0", "loop.tar", 0);
	m[1].data = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:"
		    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"]}}";
	m[1].len = strlen(m[1].data);
	write_tar("loop.tar", m, ELEMENTSOF(m));
	import_fails(&e, "loop.tar", CAIRN_ECORRUPT, "loop.tar/a/layer.tar", "missing", 0);
	m[3].link = "../../../../etc/passwd";
	write_tar("out.tar", m, ELEMENTSOF(m));
	import_fails(&e, "out.tar", CAIRN_ECORRUPT, "out.tar/a/layer.tar", "missing", 0);
	env_close(&e);
}
