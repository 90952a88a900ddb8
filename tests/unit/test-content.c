/* SPDX-License-Identifier: MIT */
/*
 * content: the blob store. Ports containerd's content testsuite (spec/containerd.md §9.3:
 * Writer, UpdateStatus, CommitExists, Resume, ResumeTruncate, SmallBlob, CommitErrorState),
 * plus digest validation, concurrent ingests across threads and processes, crash recovery,
 * walk, delete, verify and reconcile.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fs.h"
#include "content/content.h"
#include "harness.h"

#define EMPTY_DIGEST "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static content_store *open_store(void)
{
	if (mkdir("store", 0755) < 0 && errno != EEXIST)
		test_fail(__FILE__, __LINE__, "mkdir store: %m");
	_cleanup_close_ int fd = open("store", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	content_store *s = NULL;
	ASSERT_OK(content_store_open(fd, &s, ERR));
	return s;
}

/* Deterministic pseudo-random bytes (xorshift), distinct per @seed. */
static uint8_t *gen(size_t len, uint32_t seed)
{
	uint8_t *p = malloc(len ? len : 1);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
	return p;
}

static void digest_of(const void *buf, size_t len, digest *ret)
{
	digest_buffer(buf, len, ret);
}

/* Number of entries in directory @path (0 when missing). */
static int count_entries(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return 0;
	int n = 0;
	for (struct dirent *de; (de = readdir(d));)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void read_blob(content_store *s, const char *d, const void *want, size_t len)
{
	int fd = -1;
	uint64_t size = 0;
	ASSERT_OK(content_open(s, d, &fd, &size, ERR));
	ASSERT_EQ(size, len);
	uint8_t *buf = malloc(len + 1);
	ssize_t n = pread(fd, buf, len + 1, 0);
	ASSERT_EQ(n, (ssize_t)len);
	ASSERT_TRUE(memcmp(buf, want, len) == 0);
	free(buf);
	close(fd);
}

static void write_all(content_writer *w, const void *buf, size_t len)
{
	ASSERT_OK(content_writer_write(w, buf, len, ERR));
}

/* containerd: Writer. */
TEST(writer)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	ASSERT_TRUE(access("store/blobs/sha256", F_OK) == 0);
	ASSERT_TRUE(access("store/ingest", F_OK) == 0);
	ASSERT_TRUE(access("store/tmp", F_OK) == 0);
	_cleanup_free_ uint8_t *data = gen(70000, 1);
	digest want, got;
	digest_of(data, 70000, &want);

	content_writer *w = NULL;
	ASSERT_ERR(content_writer_open(s, "", 0, NULL, &w, ERR), -EINVAL);
	ASSERT_OK(content_writer_open(s, "myref", 0, NULL, &w, ERR));
	write_all(w, data, 1000);
	write_all(w, data + 1000, 69000);
	ASSERT_EQ(content_writer_offset(w), 70000);
	content_writer_digest(w, &got);
	ASSERT_STREQ(got.str, want.str);
	/* Invisible until committed. */
	content_blob_info info;
	ASSERT_ERR(content_info(s, want.str, &info, ERR), -ENOENT);
	ASSERT_EQ(content_writer_commit(w, 70000, want.str, &got, ERR), 1);
	ASSERT_STREQ(got.str, want.str);
	/* A committed writer answers queries but refuses more work. */
	ASSERT_ERR(content_writer_write(w, "x", 1, ERR), CAIRN_EPRECONDITION);
	ASSERT_ERR(content_writer_commit(w, 0, NULL, NULL, ERR), CAIRN_EPRECONDITION);
	ASSERT_ERRMSG("myref");
	ASSERT_OK(content_writer_close(w, ERR));

	read_blob(s, want.str, data, 70000);
	ASSERT_OK(content_info(s, want.str, &info, ERR));
	ASSERT_STREQ(info.digest, want.str);
	ASSERT_EQ(info.size, 70000);
	ASSERT_TRUE(info.created_ns > 0);
	struct stat st;
	char path[256];
	snprintf(path, sizeof(path), "store/blobs/sha256/%s", digest_hex(&want));
	ASSERT_OK(stat(path, &st));
	ASSERT_EQ(st.st_mode & 07777, 0444);
	/* The ingest is gone, and no longer visible as a status. */
	ASSERT_EQ(count_entries("store/ingest"), 0);
	content_ingest_status status;
	ASSERT_ERR(content_status(s, "myref", &status, ERR), -ENOENT);
	ASSERT_ERRMSG("ingest 'myref' not found");
	ASSERT_OK(content_verify(s, want.str, ERR));
}

/* containerd: UpdateStatus. */
TEST(update_status)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s, "status-ref", 100, NULL, &w, ERR));
	content_ingest_status a, b, d;
	content_writer_status(w, &a);
	ASSERT_STREQ(a.ref, "status-ref");
	ASSERT_EQ(a.offset, 0);
	ASSERT_EQ(a.total, 100);
	ASSERT_TRUE(a.started_ns > 0 && a.updated_ns >= a.started_ns);
	ASSERT_OK(content_status(s, "status-ref", &d, ERR));
	ASSERT_STREQ(d.ref, "status-ref");
	ASSERT_EQ(d.total, 100);
	ASSERT_EQ(d.started_ns, a.started_ns);

	usleep(2000);
	write_all(w, "0123456789", 10);
	content_writer_status(w, &b);
	ASSERT_EQ(b.offset, 10);
	ASSERT_EQ(b.started_ns, a.started_ns);
	ASSERT_TRUE(b.updated_ns > a.updated_ns);
	ASSERT_OK(content_writer_close(w, ERR));

	ASSERT_OK(content_status(s, "status-ref", &d, ERR));
	ASSERT_EQ(d.offset, 10);
	ASSERT_EQ(d.total, 100);
	ASSERT_EQ(d.started_ns, a.started_ns);
	ASSERT_TRUE(d.updated_ns >= b.updated_ns);

	/* The files on disk: decimal nanoseconds. */
	char key[80], path[256];
	digest k;
	digest_of("status-ref", 10, &k);
	snprintf(key, sizeof(key), "%s", digest_hex(&k));
	snprintf(path, sizeof(path), "store/ingest/%s/startedat", key);
	FILE *f = fopen(path, "re");
	ASSERT_TRUE(f != NULL);
	long long started = 0;
	ASSERT_EQ(fscanf(f, "%lld", &started), 1);
	fclose(f);
	ASSERT_EQ(started, a.started_ns);
	snprintf(path, sizeof(path), "store/ingest/%s/ref", key);
	ASSERT_TRUE(access(path, F_OK) == 0);
}

struct list_state {
	char refs[8][64];
	uint64_t offsets[8];
	int n;
};

static int collect_ingest(const content_ingest_status *st, void *userdata)
{
	struct list_state *l = userdata;
	if (l->n < 8) {
		snprintf(l->refs[l->n], sizeof(l->refs[0]), "%.63s", st->ref);
		l->offsets[l->n++] = st->offset;
	}
	return 0;
}

TEST(list_ingests)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s, "one", 0, NULL, &w, ERR));
	write_all(w, "abc", 3);
	ASSERT_OK(content_writer_close(w, ERR));
	ASSERT_OK(content_writer_open(s, "two", 0, NULL, &w, ERR));
	write_all(w, "abcdef", 6);
	/* Held by a writer: still listed. */
	struct list_state l = {0};
	ASSERT_OK(content_list_ingests(s, collect_ingest, &l, ERR));
	ASSERT_EQ(l.n, 2);
	ASSERT_EQ(l.offsets[0] + l.offsets[1], 9);
	ASSERT_TRUE((strcmp(l.refs[0], "one") == 0 && strcmp(l.refs[1], "two") == 0) ||
	            (strcmp(l.refs[0], "two") == 0 && strcmp(l.refs[1], "one") == 0));
	ASSERT_EQ(content_writer_commit(w, 6, NULL, NULL, ERR), 1);
	w = content_writer_free(w);
	l.n = 0;
	ASSERT_OK(content_list_ingests(s, collect_ingest, &l, ERR));
	ASSERT_EQ(l.n, 1);
	ASSERT_STREQ(l.refs[0], "one");
}

/* containerd: CommitExists. */
TEST(commit_exists)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	const char *text = "content that exists";
	size_t len = strlen(text);
	digest d;
	ASSERT_EQ(content_add_buffer(s, text, len, NULL, &d, ERR), 1);

	/* Writing it again without an expected digest: commit reports "was there" (0). */
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s, "again", 0, NULL, &w, ERR));
	write_all(w, text, len);
	ASSERT_EQ(content_writer_commit(w, len, NULL, NULL, ERR), 0);
	w = content_writer_free(w);
	ASSERT_EQ(count_entries("store/ingest"), 0);
	/* ... and with the expected digest at commit. */
	ASSERT_OK(content_writer_open(s, "again", 0, NULL, &w, ERR));
	ASSERT_EQ(content_writer_offset(w), 0);
	write_all(w, text, len);
	ASSERT_EQ(content_writer_commit(w, len, d.str, NULL, ERR), 0);
	w = content_writer_free(w);
	/* An expected digest that exists: the writer is refused and nothing is left behind. */
	ASSERT_ERR(content_writer_open(s, "again", len, d.str, &w, ERR), -EEXIST);
	ASSERT_ERRMSG(d.str);
	ASSERT_EQ(count_entries("store/ingest"), 0);
	ASSERT_EQ(count_entries("store/blobs/sha256"), 1);
	/* add: present already is 0. */
	ASSERT_EQ(content_add_buffer(s, text, len, NULL, NULL, ERR), 0);
	ASSERT_EQ(content_add_buffer(s, text, len, d.str, NULL, ERR), 0);
}

/* containerd: Resume (and resume across store handles). */
TEST(resume)
{
	_cleanup_free_ uint8_t *data = gen(300000, 2);
	digest want, half;
	digest_of(data, 300000, &want);
	digest_of(data, 123457, &half);
	{
		_cleanup_(content_store_freep) content_store *s = open_store();
		content_writer *w = NULL;
		ASSERT_OK(content_writer_open(s, "resume", 300000, want.str, &w, ERR));
		write_all(w, data, 123457);
		ASSERT_OK(content_writer_close(w, ERR));
	}
	_cleanup_(content_store_freep) content_store *s = open_store();
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s, "resume", 300000, want.str, &w, ERR));
	ASSERT_EQ(content_writer_offset(w), 123457);
	digest got;
	content_writer_digest(w, &got);
	ASSERT_STREQ(got.str, half.str);
	write_all(w, data + 123457, 300000 - 123457);
	/* Commit with neither size nor digest: the writer's expectations apply. */
	ASSERT_EQ(content_writer_commit(w, 0, NULL, &got, ERR), 1);
	ASSERT_STREQ(got.str, want.str);
	w = content_writer_free(w);
	read_blob(s, want.str, data, 300000);
}

/* containerd: ResumeTruncate. */
TEST(resume_truncate)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	_cleanup_free_ uint8_t *data = gen(50000, 3);
	digest want;
	digest_of(data, 50000, &want);
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s, "trunc", 0, NULL, &w, ERR));
	write_all(w, "garbage garbage", 15);
	ASSERT_OK(content_writer_close(w, ERR));
	ASSERT_OK(content_writer_open(s, "trunc", 50000, want.str, &w, ERR));
	ASSERT_EQ(content_writer_offset(w), 15);
	ASSERT_ERR(content_writer_truncate(w, 5, ERR), -EINVAL);
	ASSERT_OK(content_writer_truncate(w, 0, ERR));
	ASSERT_EQ(content_writer_offset(w), 0);
	write_all(w, data, 50000);
	ASSERT_EQ(content_writer_commit(w, 50000, want.str, NULL, ERR), 1);
	w = content_writer_free(w);
	read_blob(s, want.str, data, 50000);
}

/* A different expected total discards the old bytes; an unknown one keeps them. */
TEST(resume_total)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s, "tot", 10, NULL, &w, ERR));
	write_all(w, "abc", 3);
	ASSERT_OK(content_writer_close(w, ERR));
	ASSERT_OK(content_writer_open(s, "tot", 0, NULL, &w, ERR));
	ASSERT_EQ(content_writer_offset(w), 3);
	content_ingest_status st;
	content_writer_status(w, &st);
	ASSERT_EQ(st.total, 10);
	ASSERT_OK(content_writer_close(w, ERR));
	ASSERT_OK(content_writer_open(s, "tot", 10, NULL, &w, ERR));
	ASSERT_EQ(content_writer_offset(w), 3);
	ASSERT_OK(content_writer_close(w, ERR));
	ASSERT_OK(content_writer_open(s, "tot", 20, NULL, &w, ERR));
	ASSERT_EQ(content_writer_offset(w), 0);
	ASSERT_OK(content_writer_close(w, ERR));
	ASSERT_OK(content_status(s, "tot", &st, ERR));
	ASSERT_EQ(st.total, 20);
	ASSERT_EQ(st.offset, 0);
}

/* containerd: SmallBlob (and the empty blob). */
TEST(small_blob)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	digest one, got;
	digest_of("\x5a", 1, &one);
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s, "small", 1, one.str, &w, ERR));
	write_all(w, "\x5a", 1);
	ASSERT_EQ(content_writer_commit(w, 1, one.str, &got, ERR), 1);
	w = content_writer_free(w);
	read_blob(s, one.str, "\x5a", 1);

	ASSERT_OK(content_writer_open(s, "empty", 0, EMPTY_DIGEST, &w, ERR));
	ASSERT_EQ(content_writer_commit(w, 0, EMPTY_DIGEST, &got, ERR), 1);
	w = content_writer_free(w);
	ASSERT_STREQ(got.str, EMPTY_DIGEST);
	read_blob(s, EMPTY_DIGEST, "", 0);
	ASSERT_EQ(content_add_buffer(s, NULL, 0, NULL, &got, ERR), 0);
	ASSERT_STREQ(got.str, EMPTY_DIGEST);
}

/* containerd: CommitErrorState. */
TEST(commit_error_state)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	const char *good = "the right content", *bad = "the wrong content!";
	digest want, wrong;
	digest_of(good, strlen(good), &want);
	digest_of(bad, strlen(bad), &wrong);

	content_writer *w = NULL, *w2 = NULL;
	ASSERT_OK(content_writer_open(s, "err-ref", 0, NULL, &w, ERR));
	/* Locked: a second writer in the same process (another open file description). */
	ASSERT_ERR(content_writer_open(s, "err-ref", 0, NULL, &w2, ERR), CAIRN_ELOCKED);
	ASSERT_ERRMSG("ingest 'err-ref' is locked");
	ASSERT_ERR(content_abort(s, "err-ref", ERR), CAIRN_ELOCKED);
	write_all(w, bad, strlen(bad));

	/* Wrong size: refused, the lock is released, the bytes stay for a resume. */
	ASSERT_ERR(content_writer_commit(w, strlen(good), want.str, NULL, ERR),
	           CAIRN_EPRECONDITION);
	ASSERT_ERRMSG("expected size 17, got 18");
	ASSERT_ERRMSG("err-ref");
	w = content_writer_free(w);
	ASSERT_EQ(count_entries("store/blobs/sha256"), 0);
	ASSERT_OK(content_writer_open(s, "err-ref", 0, NULL, &w, ERR));
	ASSERT_EQ(content_writer_offset(w), strlen(bad));

	/* Wrong digest: names both digests; nothing committed; resumable. */
	ASSERT_ERR(content_writer_commit(w, 0, want.str, NULL, ERR), CAIRN_EDIGEST);
	ASSERT_ERRMSG(want.str);
	ASSERT_ERRMSG(wrong.str);
	w = content_writer_free(w);
	ASSERT_EQ(count_entries("store/blobs/sha256"), 0);
	ASSERT_OK(content_writer_open(s, "err-ref", 0, NULL, &w, ERR));
	ASSERT_EQ(content_writer_offset(w), strlen(bad));
	digest got;
	content_writer_digest(w, &got);
	ASSERT_STREQ(got.str, wrong.str);

	/* Fix it up and commit. */
	ASSERT_OK(content_writer_truncate(w, 0, ERR));
	write_all(w, good, strlen(good));
	ASSERT_EQ(content_writer_commit(w, strlen(good), want.str, NULL, ERR), 1);
	w = content_writer_free(w);

	/* After "exists" the ref is free and a fresh writer starts empty. */
	ASSERT_OK(content_writer_open(s, "err-ref", 0, NULL, &w, ERR));
	write_all(w, good, strlen(good));
	ASSERT_EQ(content_writer_commit(w, 0, want.str, NULL, ERR), 0);
	w = content_writer_free(w);
	ASSERT_OK(content_writer_open(s, "err-ref", 0, NULL, &w, ERR));
	ASSERT_EQ(content_writer_offset(w), 0);
	w = content_writer_free(w);
}

TEST(malformed_digests)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	/* Bait: files a path built from a bad digest could reach. */
	test_write_file("store/blobs/x", "bait");
	test_write_file("store/blobs/sha256/ABC", "bait");
	const char *bad[] = {
		"sha256:../x",
		"sha256:../../store/blobs/x",
		"sha256:abc",
		"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
		"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
		"sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
		"sha512:"
		"cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85"
		"f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"",
		"sha256:",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		int fd = -1;
		content_blob_info info;
		content_writer *w = NULL;
		ASSERT_ERR(content_open(s, bad[i], &fd, NULL, ERR), CAIRN_EDIGEST);
		ASSERT_ERR(content_info(s, bad[i], &info, ERR), CAIRN_EDIGEST);
		ASSERT_ERR(content_exists(s, bad[i], ERR), CAIRN_EDIGEST);
		ASSERT_ERR(content_delete(s, bad[i], ERR), CAIRN_EDIGEST);
		ASSERT_ERR(content_verify(s, bad[i], ERR), CAIRN_EDIGEST);
		ASSERT_ERR(content_writer_open(s, "r", 0, bad[i], &w, ERR), CAIRN_EDIGEST);
		ASSERT_ERR(content_add_buffer(s, "x", 1, bad[i], NULL, ERR), CAIRN_EDIGEST);
		ASSERT_OK(content_writer_open(s, "r", 0, NULL, &w, ERR));
		write_all(w, "x", 1);
		ASSERT_ERR(content_writer_commit(w, 0, bad[i], NULL, ERR), CAIRN_EDIGEST);
		w = content_writer_free(w);
		ASSERT_OK(content_abort(s, "r", ERR));
	}
	ASSERT_ERR(content_open(s, "sha256:../x", &(int){0}, NULL, ERR), CAIRN_EDIGEST);
	ASSERT_ERRMSG("sha256:../x");
	ASSERT_ERR(content_open(s, "sha512:00", &(int){0}, NULL, ERR), CAIRN_EDIGEST);
	ASSERT_ERRMSG("only sha256");
	/* Nothing was touched. */
	ASSERT_TRUE(access("store/blobs/x", F_OK) == 0);
	ASSERT_TRUE(access("store/blobs/sha256/ABC", F_OK) == 0);
	ASSERT_EQ(count_entries("store/blobs/sha256"), 1);
	ASSERT_EQ(count_entries("store/blobs"), 2);
	ASSERT_EQ(count_entries("store/ingest"), 0);
}

TEST(missing_blob)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	int fd = -1;
	content_blob_info info;
	ASSERT_ERR(content_open(s, EMPTY_DIGEST, &fd, NULL, ERR), -ENOENT);
	ASSERT_ERRMSG("blob '" EMPTY_DIGEST "' not found");
	ASSERT_ERR(content_info(s, EMPTY_DIGEST, &info, ERR), -ENOENT);
	ASSERT_ERR(content_delete(s, EMPTY_DIGEST, ERR), -ENOENT);
	ASSERT_ERRMSG(EMPTY_DIGEST);
	ASSERT_ERR(content_verify(s, EMPTY_DIGEST, ERR), -ENOENT);
	ASSERT_EQ(content_exists(s, EMPTY_DIGEST, ERR), 0);
	content_ingest_status st;
	ASSERT_ERR(content_status(s, "nope", &st, ERR), -ENOENT);
	ASSERT_ERR(content_abort(s, "nope", ERR), -ENOENT);
	ASSERT_ERRMSG("ingest 'nope' not found");
	/* A symlink or a FIFO where a blob should be is not content. */
	char path[256];
	snprintf(path, sizeof(path), "store/blobs/sha256/%s", EMPTY_DIGEST + 7);
	ASSERT_OK(mkfifo(path, 0644));
	ASSERT_ERR(content_open(s, EMPTY_DIGEST, &fd, NULL, ERR), CAIRN_ECORRUPT);
	unlink(path);
	ASSERT_OK(symlink("/etc/passwd", path));
	ASSERT_TRUE(content_open(s, EMPTY_DIGEST, &fd, NULL, ERR) < 0);
}

struct walk_state {
	char digests[8][DIGEST_STR_LEN + 1];
	uint64_t sizes[8];
	int n;
	content_store *del; /* delete each blob as it is visited */
};

static int collect_blob(const content_blob_info *info, void *userdata)
{
	struct walk_state *ws = userdata;
	if (ws->n < 8) {
		memcpy(ws->digests[ws->n], info->digest, sizeof(ws->digests[0]));
		ws->sizes[ws->n++] = info->size;
	}
	if (ws->del)
		return content_delete(ws->del, info->digest, NULL);
	return 0;
}

static int stop_walk(const content_blob_info *info, void *userdata)
{
	return -ECANCELED;
}

TEST(walk_and_delete)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	digest d[3];
	const char *texts[] = {"alpha", "beta blob", "gamma ray"};
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(content_add_buffer(s, texts[i], strlen(texts[i]), NULL, &d[i], ERR), 1);
	/* Not blobs: an ingest, junk names, a directory, another algorithm. */
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s, "pending", 0, NULL, &w, ERR));
	write_all(w, "pending", 7);
	ASSERT_OK(content_writer_close(w, ERR));
	test_write_file("store/blobs/sha256/.tmp-123", "junk");
	test_write_file(
		"store/blobs/sha256/E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B"
		"7852B855",
		"junk");
	ASSERT_OK(mkdir("store/blobs/sha256/"
	                "0000000000000000000000000000000000000000000000000000000000000000",
	                0755));
	ASSERT_OK(mkdir("store/blobs/sha512", 0755));

	struct walk_state ws = {0};
	ASSERT_OK(content_walk(s, collect_blob, &ws, ERR));
	ASSERT_EQ(ws.n, 3);
	/* In digest order, each committed blob once. */
	for (int i = 0; i < ws.n; i++) {
		if (i > 0)
			ASSERT_TRUE(strcmp(ws.digests[i - 1], ws.digests[i]) < 0);
		bool found = false;
		for (int j = 0; j < 3; j++)
			if (strcmp(ws.digests[i], d[j].str) == 0) {
				found = true;
				ASSERT_EQ(ws.sizes[i], strlen(texts[j]));
			}
		ASSERT_TRUE(found);
	}
	ASSERT_ERR(content_walk(s, stop_walk, NULL, ERR), -ECANCELED);

	ASSERT_OK(content_delete(s, d[1].str, ERR));
	ASSERT_ERR(content_delete(s, d[1].str, ERR), -ENOENT);
	int fd = -1;
	ASSERT_ERR(content_open(s, d[1].str, &fd, NULL, ERR), -ENOENT);
	ws = (struct walk_state){0};
	ASSERT_OK(content_walk(s, collect_blob, &ws, ERR));
	ASSERT_EQ(ws.n, 2);

	/* The callback may delete what it visits. */
	ws = (struct walk_state){.del = s};
	ASSERT_OK(content_walk(s, collect_blob, &ws, ERR));
	ASSERT_EQ(ws.n, 2);
	ws = (struct walk_state){0};
	ASSERT_OK(content_walk(s, collect_blob, &ws, ERR));
	ASSERT_EQ(ws.n, 0);
}

TEST(delete_keeps_open_readers)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	digest d;
	ASSERT_EQ(content_add_buffer(s, "still here", 10, NULL, &d, ERR), 1);
	int fd = -1;
	ASSERT_OK(content_open(s, d.str, &fd, NULL, ERR));
	ASSERT_OK(content_delete(s, d.str, ERR));
	char buf[16];
	ASSERT_EQ(pread(fd, buf, sizeof(buf), 0), 10);
	ASSERT_TRUE(memcmp(buf, "still here", 10) == 0);
	ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ASSERT_FALSE(fcntl(fd, F_GETFL) & O_NONBLOCK);
	close(fd);
}

TEST(verify_corrupt)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	digest d, bad;
	ASSERT_EQ(content_add_buffer(s, "pristine", 8, NULL, &d, ERR), 1);
	ASSERT_OK(content_verify(s, d.str, ERR));
	char path[256];
	snprintf(path, sizeof(path), "store/blobs/sha256/%s", digest_hex(&d));
	ASSERT_OK(chmod(path, 0644));
	test_write_file(path, "tampered");
	digest_of("tampered", 8, &bad);
	ASSERT_ERR(content_verify(s, d.str, ERR), CAIRN_EDIGEST);
	ASSERT_ERRMSG(d.str);
	ASSERT_ERRMSG(bad.str);
}

TEST(digest_mismatch_leaves_blobs_empty)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	digest other;
	digest_of("other", 5, &other);
	digest got;
	ASSERT_ERR(content_add_buffer(s, "mine", 4, other.str, &got, ERR), CAIRN_EDIGEST);
	ASSERT_ERRMSG(other.str);
	ASSERT_EQ(count_entries("store/blobs/sha256"), 0);
	/* add's private ingest is aborted. */
	ASSERT_EQ(count_entries("store/ingest"), 0);

	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s, "mm", 0, other.str, &w, ERR));
	write_all(w, "mine", 4);
	ASSERT_ERR(content_writer_commit(w, 0, NULL, NULL, ERR), CAIRN_EDIGEST);
	w = content_writer_free(w);
	ASSERT_EQ(count_entries("store/blobs/sha256"), 0);
	ASSERT_EQ(count_entries("store/ingest"), 1);
}

TEST(add_fd)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	_cleanup_free_ uint8_t *data = gen(400000, 4);
	digest want, got;
	digest_of(data, 400000, &want);
	_cleanup_close_ int fd = open("input", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(fs_write_all(fd, data, 400000));
	ASSERT_OK(lseek(fd, 0, SEEK_SET));
	uint64_t size = 0;
	ASSERT_EQ(content_add_fd(s, fd, NULL, &got, &size, ERR), 1);
	ASSERT_STREQ(got.str, want.str);
	ASSERT_EQ(size, 400000);
	ASSERT_OK(lseek(fd, 0, SEEK_SET));
	ASSERT_EQ(content_add_fd(s, fd, want.str, &got, &size, ERR), 0);
	ASSERT_EQ(size, 400000);
	/* Expected and present: nothing is read (a read here would fail with EAGAIN). */
	int p[2];
	ASSERT_OK(pipe2(p, O_CLOEXEC | O_NONBLOCK));
	size = 0;
	ASSERT_EQ(content_add_fd(s, p[0], want.str, &got, &size, ERR), 0);
	ASSERT_EQ(size, 400000);
	/* Not present: the read error is reported and the ingest aborted. */
	digest_of("x", 1, &want);
	ASSERT_ERR(content_add_fd(s, p[0], want.str, &got, &size, ERR), -EAGAIN);
	ASSERT_ERR(content_add_fd(s, -1, NULL, &got, &size, ERR), -EBADF);
	close(p[0]);
	close(p[1]);
	ASSERT_EQ(count_entries("store/ingest"), 0);
	ASSERT_EQ(count_entries("store/blobs/sha256"), 1);
}

/* A child writes half a blob and dies without commit or close. */
TEST(crash_resume)
{
	_cleanup_free_ uint8_t *data = gen(1 << 20, 5);
	digest want;
	digest_of(data, 1 << 20, &want);
	_cleanup_(content_store_freep) content_store *s = open_store();
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		content_writer *w = NULL;
		if (content_writer_open(s, "crash", 1 << 20, want.str, &w, NULL) < 0 ||
		    content_writer_write(w, data, 1 << 19, NULL) < 0)
			_exit(1);
		_exit(0);
	}
	int st = 0;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ASSERT_EQ(count_entries("store/blobs/sha256"), 0);
	content_ingest_status status;
	ASSERT_OK(content_status(s, "crash", &status, ERR));
	ASSERT_EQ(status.offset, 1 << 19);
	ASSERT_EQ(status.total, 1 << 20);

	/* The dead writer's lock went with it. */
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s, "crash", 1 << 20, want.str, &w, ERR));
	ASSERT_EQ(content_writer_offset(w), 1 << 19);
	write_all(w, data + (1 << 19), 1 << 19);
	ASSERT_EQ(content_writer_commit(w, 0, NULL, NULL, ERR), 1);
	w = content_writer_free(w);
	read_blob(s, want.str, data, 1 << 20);
}

/* A crash between commit's chmod and rename leaves read-only data: resume still works. */
static void crash_after_chmod_body(void)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s, "ro", 0, NULL, &w, ERR));
	write_all(w, "abc", 3);
	ASSERT_OK(content_writer_close(w, ERR));
	digest k;
	digest_of("ro", 2, &k);
	char path[256];
	snprintf(path, sizeof(path), "store/ingest/%s/data", digest_hex(&k));
	ASSERT_OK(chmod(path, 0444));
	ASSERT_OK(content_writer_open(s, "ro", 0, NULL, &w, ERR));
	ASSERT_EQ(content_writer_offset(w), 3);
	write_all(w, "def", 3);
	digest d;
	ASSERT_EQ(content_writer_commit(w, 6, NULL, &d, ERR), 1);
	w = content_writer_free(w);
	read_blob(s, d.str, "abcdef", 6);
}

TEST(crash_after_chmod)
{
	if (geteuid() != 0) {
		crash_after_chmod_body();
		return;
	}
	/* Root ignores the mode: run as nobody, or the read-only data would prove nothing. */
	ASSERT_EQ(test_sh("chown -R 65534:65534 '%s'", test_dir), 0);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			_exit(77);
		crash_after_chmod_body();
		_exit(0);
	}
	int st = 0;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		test_skip("cannot drop privileges");
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* blobs/sha256 removed behind the store's back: commit recreates it. */
TEST(commit_recreates_blob_dir)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	ASSERT_EQ(test_sh("rm -rf store/blobs"), 0);
	struct walk_state ws = {0};
	ASSERT_OK(content_walk(s, collect_blob, &ws, ERR));
	ASSERT_EQ(ws.n, 0);
	digest d;
	ASSERT_EQ(content_add_buffer(s, "again", 5, NULL, &d, ERR), 1);
	read_blob(s, d.str, "again", 5);
}

/* ---- concurrency ---- */

#define CONC_SIZE  (4 << 20)
#define CONC_CHUNK (64 << 10)

struct ingest_job {
	content_store *s;
	const uint8_t *data;
	const char *expected; /* may be NULL */
	char ref[64];
	pthread_barrier_t *start;
	int result; /* commit's 1/0, 2 for -EEXIST at open, or a negative error */
	int locked; /* times CAIRN_ELOCKED was seen */
	char msg[256];
};

/* Open (retrying while locked), write in chunks, commit. */
static void ingest_job_run(struct ingest_job *j)
{
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	content_writer *w = NULL;
	int r;
	while ((r = content_writer_open(j->s, j->ref, CONC_SIZE, j->expected, &w, &e)) ==
	       CAIRN_ELOCKED) {
		j->locked++;
		e = cairn_error_free(e);
		usleep(1000);
	}
	if (r == -EEXIST && j->expected) {
		j->result = 2;
		return;
	}
	for (size_t off = content_writer_offset(w); r >= 0 && off < CONC_SIZE; off += CONC_CHUNK)
		r = content_writer_write(w, j->data + off, CONC_CHUNK, &e);
	if (r >= 0)
		r = content_writer_commit(w, CONC_SIZE, j->expected, NULL, &e);
	content_writer_free(w);
	j->result = r;
	if (r < 0)
		snprintf(j->msg, sizeof(j->msg), "%s", cairn_error_message(e));
}

static void *ingest_thread(void *arg)
{
	struct ingest_job *j = arg;
	if (j->start)
		pthread_barrier_wait(j->start);
	ingest_job_run(j);
	return NULL;
}

static void check_one_blob(content_store *s, const uint8_t *data)
{
	struct walk_state ws = {0};
	ASSERT_OK(content_walk(s, collect_blob, &ws, ERR));
	ASSERT_EQ(ws.n, 1);
	ASSERT_EQ(ws.sizes[0], CONC_SIZE);
	ASSERT_OK(content_verify(s, ws.digests[0], ERR));
	read_blob(s, ws.digests[0], data, CONC_SIZE);
	ASSERT_EQ(count_entries("store/ingest"), 0);
}

static void run_threads(bool same_ref, const char *expected)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	_cleanup_free_ uint8_t *data = gen(CONC_SIZE, 6);
	enum { N = 4 };
	struct ingest_job jobs[N];
	pthread_t th[N];
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, N);
	for (int i = 0; i < N; i++) {
		jobs[i] = (struct ingest_job){
			.s = s, .data = data, .expected = expected, .start = &start};
		snprintf(jobs[i].ref, sizeof(jobs[i].ref), same_ref ? "shared" : "ref-%d", i);
		ASSERT_OK(-pthread_create(&th[i], NULL, ingest_thread, &jobs[i]));
	}
	int created = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		if (jobs[i].result < 0)
			test_fail(__FILE__, __LINE__, "job %d: %d: %s", i, jobs[i].result,
			          jobs[i].msg);
		created += jobs[i].result == 1;
	}
	pthread_barrier_destroy(&start);
	ASSERT_EQ(created, 1);
	check_one_blob(s, data);
}

TEST(threads_different_refs)
{
	run_threads(false, NULL);
}

TEST(threads_same_ref)
{
	run_threads(true, NULL);
}

TEST(threads_same_ref_expected)
{
	_cleanup_free_ uint8_t *data = gen(CONC_SIZE, 6);
	digest d;
	digest_of(data, CONC_SIZE, &d);
	run_threads(true, d.str);
}

/* Deterministic contention: the second writer must see the lock, then "exists". */
TEST(threads_same_ref_waits)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	_cleanup_free_ uint8_t *data = gen(CONC_SIZE, 7);
	digest d;
	digest_of(data, CONC_SIZE, &d);
	content_writer *w = NULL;
	ASSERT_OK(content_writer_open(s, "shared", CONC_SIZE, d.str, &w, ERR));
	write_all(w, data, CONC_SIZE / 2);
	struct ingest_job j = {.s = s, .data = data, .expected = d.str};
	snprintf(j.ref, sizeof(j.ref), "shared");
	pthread_t th;
	ASSERT_OK(-pthread_create(&th, NULL, ingest_thread, &j));
	for (int i = 0; i < 5000 && __atomic_load_n(&j.locked, __ATOMIC_RELAXED) == 0; i++)
		usleep(1000);
	write_all(w, data + CONC_SIZE / 2, CONC_SIZE / 2);
	ASSERT_EQ(content_writer_commit(w, CONC_SIZE, d.str, NULL, ERR), 1);
	w = content_writer_free(w);
	pthread_join(th, NULL);
	ASSERT_TRUE(j.locked > 0);
	ASSERT_EQ(j.result, 2);
	check_one_blob(s, data);
}

static void run_processes(bool same_ref, bool with_expected)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	_cleanup_free_ uint8_t *data = gen(CONC_SIZE, 8);
	digest d;
	digest_of(data, CONC_SIZE, &d);
	enum { N = 4 };
	pid_t pids[N];
	int go[2];
	ASSERT_OK(pipe2(go, O_CLOEXEC));
	fflush(stdout);
	for (int i = 0; i < N; i++) {
		pids[i] = fork();
		ASSERT_TRUE(pids[i] >= 0);
		if (pids[i] > 0)
			continue;
		/* Each child opens its own store handle, as another process would. */
		content_store_free(s);
		s = open_store();
		close(go[1]);
		char c;
		if (read(go[0], &c, 1) != 0)
			_exit(9);
		struct ingest_job j = {
			.s = s, .data = data, .expected = with_expected ? d.str : NULL};
		snprintf(j.ref, sizeof(j.ref), same_ref ? "shared" : "ref-%d", i);
		ingest_job_run(&j);
		if (j.result < 0)
			printf("# child %d: %s\n", i, j.msg);
		fflush(stdout);
		_exit(j.result < 0 ? 10 : j.result);
	}
	close(go[0]);
	close(go[1]); /* EOF: everyone starts */
	int created = 0;
	for (int i = 0; i < N; i++) {
		int st = 0;
		ASSERT_EQ(waitpid(pids[i], &st, 0), pids[i]);
		ASSERT_TRUE(WIFEXITED(st));
		ASSERT_TRUE(WEXITSTATUS(st) <= 2);
		created += WEXITSTATUS(st) == 1;
	}
	ASSERT_EQ(created, 1);
	check_one_blob(s, data);
}

TEST(processes_different_refs)
{
	run_processes(false, false);
}

TEST(processes_same_ref)
{
	run_processes(true, false);
}

TEST(processes_same_ref_expected)
{
	run_processes(true, true);
}

/* Many rounds of open, commit, abort and close racing on one ref: the lock's re-check after a
 * removal must keep every writer on a live ingest directory. */
struct churn {
	content_store *s;
	int id;
	int errors;
	char msg[256];
};

static void *churn_thread(void *arg)
{
	struct churn *c = arg;
	for (int round = 0; round < 2000; round++) {
		_cleanup_(cairn_error_freep) cairn_error *e = NULL;
		content_writer *w = NULL;
		int r = content_writer_open(c->s, "churn", 0, NULL, &w, &e);
		if (r == CAIRN_ELOCKED)
			continue;
		char text[32];
		int len = snprintf(text, sizeof(text), "%d", round % 7);
		if (r >= 0)
			r = content_writer_write(w, text, (size_t)len, &e);
		if (r >= 0 && round % 3 == 0)
			r = content_writer_commit(w, 0, NULL, NULL, &e);
		if (r >= 0 && round % 3 == 1)
			r = content_writer_close(TAKE_PTR(w), &e);
		content_writer_free(w);
		if (r >= 0 && round % 3 == 2) {
			r = content_abort(c->s, "churn", &e);
			if (r == CAIRN_ELOCKED || r == -ENOENT)
				r = 0;
		}
		if (r < 0 && c->errors++ == 0)
			snprintf(c->msg, sizeof(c->msg), "%s", cairn_error_message(e));
	}
	return NULL;
}

TEST(threads_churn)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	enum { N = 8 };
	struct churn c[N];
	pthread_t th[N];
	for (int i = 0; i < N; i++) {
		c[i] = (struct churn){.s = s, .id = i};
		ASSERT_OK(-pthread_create(&th[i], NULL, churn_thread, &c[i]));
	}
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		if (c[i].errors)
			test_fail(__FILE__, __LINE__, "thread %d: %d errors, first: %s", i,
			          c[i].errors, c[i].msg);
	}
	/* Every blob committed is whole and verified (resumed ingests append, so the contents
	 * vary; the walk keeps the first 8). */
	struct walk_state ws = {0};
	ASSERT_OK(content_walk(s, collect_blob, &ws, ERR));
	ASSERT_TRUE(ws.n >= 1);
	for (int i = 0; i < ws.n; i++)
		ASSERT_OK(content_verify(s, ws.digests[i], ERR));
	ASSERT_TRUE(count_entries("store/ingest") <= 1);
}

TEST(reconcile)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	digest good;
	ASSERT_EQ(content_add_buffer(s, "keep me", 7, NULL, &good, ERR), 1);
	content_writer *held = NULL, *w = NULL;
	ASSERT_OK(content_writer_open(s, "held", 0, NULL, &held, ERR));
	ASSERT_OK(content_writer_open(s, "closed", 0, NULL, &w, ERR));
	write_all(w, "abc", 3);
	ASSERT_OK(content_writer_close(w, ERR));
	/* Junk a crash or a foreign tool leaves. */
	test_write_file("store/blobs/sha256/.tmp-1234", "x");
	test_write_file("store/blobs/sha256/"
	                "ABCDEF0000000000000000000000000000000000000000000000000000000000",
	                "x");
	ASSERT_OK(mkdir("store/blobs/sha256/"
	                "1111111111111111111111111111111111111111111111111111111111111111",
	                0755));
	test_write_file("store/ingest/stray", "x");
	ASSERT_OK(mkdir("store/ingest/not-a-key", 0755));
	/* An ingest dir without ref: young ones may be a writer between mkdir and lock. */
	const char *old =
		"store/ingest/2222222222222222222222222222222222222222222222222222222222222222";
	const char *young =
		"store/ingest/3333333333333333333333333333333333333333333333333333333333333333";
	ASSERT_OK(mkdir(old, 0755));
	ASSERT_OK(mkdir(young, 0755));
	struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
	ASSERT_OK(utimensat(AT_FDCWD, old, ts, 0));
	/* A temp file of an interrupted atomic write inside a resumable ingest. */
	digest k;
	digest_of("closed", 6, &k);
	char path[256];
	snprintf(path, sizeof(path), "store/ingest/%s/.#updatedat.77.tmp", digest_hex(&k));
	test_write_file(path, "1");

	/* An add killed mid-stream: its unique ref is never resumed. */
	ASSERT_OK(content_writer_open(s, "cairn-add-1-2-3-4", 0, NULL, &w, ERR));
	write_all(w, "partial", 7);
	w = content_writer_free(w);

	ASSERT_EQ(content_reconcile(s, ERR), 8);
	ASSERT_EQ(count_entries("store/blobs/sha256"), 1);
	ASSERT_OK(content_verify(s, good.str, ERR));
	ASSERT_TRUE(access(path, F_OK) < 0);
	ASSERT_TRUE(access(young, F_OK) == 0);
	ASSERT_TRUE(access(old, F_OK) < 0);
	ASSERT_EQ(count_entries("store/ingest"), 3); /* held, closed, young */
	ASSERT_OK(content_writer_open(s, "closed", 0, NULL, &w, ERR));
	ASSERT_EQ(content_writer_offset(w), 3);
	w = content_writer_free(w);
	write_all(held, "z", 1);
	ASSERT_EQ(content_writer_commit(held, 1, NULL, NULL, ERR), 1);
	held = content_writer_free(held);
	ASSERT_EQ(content_reconcile(s, ERR), 0);
}

/* The same basics with the component-walk path resolution used without openat2. */
TEST(fallback_resolution)
{
	fs_force_fallback(true);
	_cleanup_(content_store_freep) content_store *s = open_store();
	digest d;
	ASSERT_EQ(content_add_buffer(s, "fallback", 8, NULL, &d, ERR), 1);
	read_blob(s, d.str, "fallback", 8);
	ASSERT_OK(content_verify(s, d.str, ERR));
	ASSERT_OK(content_delete(s, d.str, ERR));
	int fd = -1;
	ASSERT_ERR(content_open(s, "sha256:../x", &fd, NULL, ERR), CAIRN_EDIGEST);
}

TEST(ref_limits)
{
	_cleanup_(content_store_freep) content_store *s = open_store();
	content_writer *w = NULL;
	char ref[CONTENT_REF_MAX + 2];
	memset(ref, 'r', sizeof(ref) - 1);
	ref[sizeof(ref) - 1] = '\0';
	ASSERT_ERR(content_writer_open(s, ref, 0, NULL, &w, ERR), -EINVAL);
	ref[CONTENT_REF_MAX] = '\0';
	ASSERT_OK(content_writer_open(s, ref, 0, NULL, &w, ERR));
	w = content_writer_free(w);
	content_ingest_status st;
	ASSERT_OK(content_status(s, ref, &st, ERR));
	ASSERT_STREQ(st.ref, ref);
	/* Path characters in a ref are harmless: it is hashed into the directory name. */
	ASSERT_OK(content_writer_open(s, "../../etc/passwd", 0, NULL, &w, ERR));
	w = content_writer_free(w);
	ASSERT_EQ(count_entries("store/ingest"), 2);
	ASSERT_OK(content_abort(s, "../../etc/passwd", ERR));
	ASSERT_OK(content_abort(s, ref, ERR));
	ASSERT_EQ(count_entries("store/ingest"), 0);
}
