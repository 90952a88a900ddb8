/* SPDX-License-Identifier: MIT */
/*
 * base: errors, digests, the confined filesystem helpers (with openat2 and through the fallback
 * walk), and single-flight (BuildKit's flightcontrol tests, ported).
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/digest.h"
#include "base/flight.h"
#include "base/fs.h"
#include "harness.h"

#define SHA256_EMPTY "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA256_ABC   "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA256_A     "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"

/* ---- error ---- */

TEST(error_prefix_keeps_message)
{
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	ASSERT_ERR(err_set(&e, -ENOENT, "open '%s'", "blobs/x"), -ENOENT);
	ASSERT_ERR(err_prefix(&e, "import '%s'", "img.tar"), -ENOENT);
	ASSERT_STREQ(cairn_error_message(e), "import 'img.tar': open 'blobs/x'");
	ASSERT_ERR(err_prefix(&e, "pull"), -ENOENT);
	ASSERT_STREQ(cairn_error_message(e), "pull: import 'img.tar': open 'blobs/x'");
	ASSERT_EQ(cairn_error_code(e), -ENOENT);

	/* No error to prefix: -EIO, and nothing is created. */
	cairn_error *none = NULL;
	ASSERT_ERR(err_prefix(&none, "ctx"), -EIO);
	ASSERT_TRUE(none == NULL);
	ASSERT_ERR(err_prefix(NULL, "ctx"), -EIO);
}

TEST(error_first_not_overwritten)
{
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	ASSERT_ERR(err_set(&e, -EINVAL, "first %d", 1), -EINVAL);
	/* The second failure still returns its own code, but the stored error stays the first. */
	ASSERT_ERR(err_set(&e, -ENOENT, "second"), -ENOENT);
	ASSERT_ERR(err_errno(&e, -EIO, "third"), -EIO);
	ASSERT_EQ(cairn_error_code(e), -EINVAL);
	ASSERT_STREQ(cairn_error_message(e), "first 1");
	/* A NULL reterr is fine and still returns the code. */
	ASSERT_ERR(err_set(NULL, -EBUSY, "x"), -EBUSY);
	ASSERT_ERR(err_errno(NULL, CAIRN_ECORRUPT, "x"), CAIRN_ECORRUPT);
	ASSERT_EQ(cairn_error_code(NULL), 0);
	ASSERT_STREQ(cairn_error_message(NULL), "");
	ASSERT_TRUE(cairn_error_free(NULL) == NULL);
}

TEST(error_errno_appends_strerror)
{
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	ASSERT_ERR(err_errno(&e, -ENOENT, "open '%s'", "a"), -ENOENT);
	ASSERT_STREQ(cairn_error_message(e), "open 'a': No such file or directory");
	cairn_error *d = NULL;
	ASSERT_ERR(err_errno(&d, CAIRN_EDIGEST, "verify '%s'", "b"), CAIRN_EDIGEST);
	char want[256];
	snprintf(want, sizeof(want), "verify 'b': %s", cairn_strerror(CAIRN_EDIGEST));
	ASSERT_STREQ(cairn_error_message(d), want);
	d = cairn_error_free(d);
}

TEST(error_strerror)
{
	static const int domain[] = {CAIRN_EDIGEST, CAIRN_ECORRUPT, CAIRN_EPRECONDITION,
	                             CAIRN_ELOCKED, CAIRN_ESCHEMA};
	for (size_t i = 0; i < ELEMENTSOF(domain); i++) {
		const char *s = cairn_strerror(domain[i]);
		ASSERT_TRUE(s && *s);
		ASSERT_TRUE(strstr(s, "Unknown") == NULL);
		/* Distinct names for distinct codes. */
		for (size_t j = 0; j < i; j++)
			ASSERT_TRUE(strcmp(s, cairn_strerror(domain[j])) != 0);
		/* Above every errno. */
		ASSERT_TRUE(domain[i] < -4095);
	}
	ASSERT_STREQ(cairn_strerror(-ENOENT), "No such file or directory");
	ASSERT_STREQ(cairn_strerror(-EEXIST), strerror(EEXIST));
	ASSERT_STREQ(cairn_strerror(-ECANCELED), strerror(ECANCELED));
	ASSERT_STREQ(cairn_strerror(-5000), "Unknown error -5000");
	ASSERT_STREQ(cairn_strerror(7), "Unknown error 7");
	ASSERT_STREQ(cairn_strerror(0), "Unknown error 0");
}

/* ---- digest ---- */

TEST(digest_parse_valid)
{
	digest d;
	ASSERT_OK(digest_parse(SHA256_EMPTY, &d, ERR));
	ASSERT_STREQ(d.str, SHA256_EMPTY);
	ASSERT_STREQ(digest_hex(&d), SHA256_EMPTY + 7);
	ASSERT_EQ(d.raw[0], 0xe3);
	ASSERT_EQ(d.raw[1], 0xb0);
	ASSERT_EQ(d.raw[31], 0x55);
	ASSERT_TRUE(digest_valid(SHA256_EMPTY));
	digest back;
	digest_from_raw(d.raw, &back);
	ASSERT_STREQ(back.str, SHA256_EMPTY);
	ASSERT_TRUE(memcmp(back.raw, d.raw, 32) == 0);
}

static void expect_bad_digest(const char *s, const char *why)
{
	digest d;
	memset(&d, 0xa5, sizeof(d));
	digest before = d;
	ASSERT_FALSE(digest_valid(s));
	ASSERT_ERR(digest_parse(s, &d, ERR), CAIRN_EDIGEST);
	ASSERT_EQ(cairn_error_code(test_err), CAIRN_EDIGEST);
	/* *ret is untouched on failure. */
	ASSERT_TRUE(memcmp(&d, &before, sizeof(d)) == 0);
	char quoted[128];
	snprintf(quoted, sizeof(quoted), "'%.80s", s);
	ASSERT_ERRMSG(quoted);
	if (why)
		ASSERT_ERRMSG(why);
}

TEST(digest_parse_rejects)
{
	const char *hex = SHA256_EMPTY + 7;
	char buf[512];

	expect_bad_digest("sha256:../x", "expected sha256:");
	expect_bad_digest("sha256:../../../../etc/passwd", NULL);
	expect_bad_digest("", "missing algorithm");
	expect_bad_digest("sha256:", NULL);
	expect_bad_digest(hex, "missing algorithm");
	/* Wrong length, both ways. */
	snprintf(buf, sizeof(buf), "sha256:%.63s", hex);
	expect_bad_digest(buf, NULL);
	snprintf(buf, sizeof(buf), "sha256:%s0", hex);
	expect_bad_digest(buf, NULL);
	/* Upper case hex, and an upper case algorithm. */
	snprintf(buf, sizeof(buf), "sha256:E3%s", hex + 2);
	expect_bad_digest(buf, NULL);
	snprintf(buf, sizeof(buf), "SHA256:%s", hex);
	expect_bad_digest(buf, NULL);
	/* Path characters inside otherwise well-sized hex. */
	snprintf(buf, sizeof(buf), "sha256:%.31s/%.32s", hex, hex + 32);
	expect_bad_digest(buf, NULL);
	/* Known but unsupported algorithms. */
	snprintf(buf, sizeof(buf), "sha512:%s%s", hex, hex);
	expect_bad_digest(buf, "only sha256 is supported");
	snprintf(buf, sizeof(buf), "sha384:%.96s",
	         "0123456789abcdef0123456789abcdef0123456789abcdef"
	         "0123456789abcdef0123456789abcdef0123456789abcdef");
	expect_bad_digest(buf, "only sha256 is supported");
	expect_bad_digest("md5:d41d8cd98f00b204e9800998ecf8427e", NULL);
	/* An embedded NUL cuts the string short: wrong length. */
	snprintf(buf, sizeof(buf), "%s", SHA256_EMPTY);
	buf[40] = '\0';
	expect_bad_digest(buf, NULL);
	/* Surrounding space. */
	snprintf(buf, sizeof(buf), " %s", SHA256_EMPTY);
	expect_bad_digest(buf, NULL);
	snprintf(buf, sizeof(buf), "%s\n", SHA256_EMPTY);
	expect_bad_digest(buf, NULL);

	/* A long input is quoted truncated to 80 bytes, marked with "...". */
	memset(buf, 'x', 300);
	buf[300] = '\0';
	digest d;
	ASSERT_ERR(digest_parse(buf, &d, ERR), CAIRN_EDIGEST);
	ASSERT_ERRMSG("...'");
	ASSERT_TRUE(strlen(cairn_error_message(test_err)) < 200);

	ASSERT_ERR(digest_parse(NULL, &d, ERR), CAIRN_EDIGEST);
	ASSERT_FALSE(digest_valid(NULL));
}

TEST(digest_vectors)
{
	digest d;
	digest_buffer("", 0, &d);
	ASSERT_STREQ(d.str, SHA256_EMPTY);
	digest_buffer("abc", 3, &d);
	ASSERT_STREQ(d.str, SHA256_ABC);
	/* FIPS 180-2 two-block vector. */
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	digest_buffer(m, strlen(m), &d);
	ASSERT_STREQ(d.str,
	             "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

	_cleanup_(hasher_freep) hasher *h = hasher_new();
	ASSERT_TRUE(h != NULL);
	hasher_peek(h, &d);
	ASSERT_STREQ(d.str, SHA256_EMPTY);
	ASSERT_EQ(hasher_total(h), 0);
	hasher_update(h, "abc", 3);
	hasher_peek(h, &d);
	ASSERT_STREQ(d.str, SHA256_ABC);
	ASSERT_EQ(hasher_total(h), 3);
	hasher_reset(h);
	ASSERT_EQ(hasher_total(h), 0);
	hasher_peek(h, &d);
	ASSERT_STREQ(d.str, SHA256_EMPTY);
}

static uint8_t *pattern(size_t len)
{
	uint8_t *p = malloc(len);
	ASSERT_TRUE(p != NULL);
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
	return p;
}

TEST(digest_streaming)
{
	const size_t len = (1 << 20) + 12345;
	_cleanup_free_ uint8_t *data = pattern(len);
	digest one;
	digest_buffer(data, len, &one);

	static const size_t chunks[] = {1, 7, 63, 64, 65, 4096, 65537, 1 << 20};
	for (size_t c = 0; c < ELEMENTSOF(chunks); c++) {
		_cleanup_(hasher_freep) hasher *h = hasher_new();
		ASSERT_TRUE(h != NULL);
		for (size_t off = 0; off < len; off += chunks[c]) {
			size_t n = len - off < chunks[c] ? len - off : chunks[c];
			hasher_update(h, data + off, n);
		}
		digest d;
		hasher_peek(h, &d);
		ASSERT_STREQ(d.str, one.str);
		ASSERT_EQ(hasher_total(h), len);
	}
	/* A zero-length update changes nothing. */
	_cleanup_(hasher_freep) hasher *h = hasher_new();
	hasher_update(h, data, 0);
	digest d;
	hasher_peek(h, &d);
	ASSERT_STREQ(d.str, SHA256_EMPTY);
}

TEST(digest_peek_then_continue)
{
	_cleanup_(hasher_freep) hasher *h = hasher_new();
	ASSERT_TRUE(h != NULL);
	digest d;
	hasher_update(h, "a", 1);
	hasher_peek(h, &d);
	ASSERT_STREQ(d.str, SHA256_A);
	/* Peeking twice gives the same answer and does not finalise the stream. */
	hasher_peek(h, &d);
	ASSERT_STREQ(d.str, SHA256_A);
	hasher_update(h, "bc", 2);
	hasher_peek(h, &d);
	ASSERT_STREQ(d.str, SHA256_ABC);
	ASSERT_EQ(hasher_total(h), 3);

	/* Peek in the middle of a large stream. */
	const size_t len = 300000;
	_cleanup_free_ uint8_t *data = pattern(len);
	digest whole, half, half_peeked;
	digest_buffer(data, len, &whole);
	digest_buffer(data, len / 3, &half);
	hasher_reset(h);
	hasher_update(h, data, len / 3);
	hasher_peek(h, &half_peeked);
	ASSERT_STREQ(half_peeked.str, half.str);
	hasher_update(h, data + len / 3, len - len / 3);
	hasher_peek(h, &d);
	ASSERT_STREQ(d.str, whole.str);
}

TEST(digest_fd)
{
	const size_t len = 400000; /* larger than digest_fd's read buffer */
	_cleanup_free_ uint8_t *data = pattern(len);
	_cleanup_close_ int fd = open("blob", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(fs_write_all(fd, data, len));
	ASSERT_EQ(lseek(fd, 0, SEEK_SET), 0);
	digest d, want;
	uint64_t size = 0;
	ASSERT_OK(digest_fd(fd, "blob", &d, &size, ERR));
	digest_buffer(data, len, &want);
	ASSERT_STREQ(d.str, want.str);
	ASSERT_EQ(size, len);

	/* From the current offset, and ret_size may be NULL. */
	ASSERT_EQ(lseek(fd, 1000, SEEK_SET), 1000);
	ASSERT_OK(digest_fd(fd, "blob", &d, NULL, ERR));
	digest_buffer(data + 1000, len - 1000, &want);
	ASSERT_STREQ(d.str, want.str);

	/* At EOF: the empty digest. */
	ASSERT_OK(digest_fd(fd, "blob", &d, &size, ERR));
	ASSERT_STREQ(d.str, SHA256_EMPTY);
	ASSERT_EQ(size, 0);

	/* A read error carries errno and names the object. */
	_cleanup_close_ int dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_ERR(digest_fd(dfd, "the-dir", &d, NULL, ERR), -EISDIR);
	ASSERT_ERRMSG("read 'the-dir'");
	_cleanup_close_ int wfd = open("blob", O_WRONLY | O_CLOEXEC);
	ASSERT_ERR(digest_fd(wfd, "wo", &d, NULL, ERR), -EBADF);
	ASSERT_ERRMSG("'wo'");
}

/* ---- fs helpers ---- */

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static int count_entries(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void read_fd_str(int fd, char *buf, size_t len)
{
	ssize_t n = read(fd, buf, len - 1);
	ASSERT_TRUE(n >= 0);
	buf[n] = '\0';
}

static bool have_openat2(void)
{
#ifdef SYS_openat2
	struct {
		uint64_t flags, mode, resolve;
	} how = {.flags = O_RDONLY | O_CLOEXEC};
	long fd = syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof(how));
	if (fd >= 0)
		close((int)fd);
	return fd >= 0 || errno != ENOSYS;
#else
	return false;
#endif
}

/*
 * A root with escaping symlinks, and a sibling "outside" the symlinks aim at:
 *   root/evil  -> /etc          root/evil2 -> ../../..
 *   root/esc   -> ../outside    root/abs   -> <test_dir>/outside
 *   root/dir/link -> ../../outside
 *   outside/secret ("SECRET")
 */
static int make_root(void)
{
	char abs_target[4200];
	ASSERT_EQ(mkdir("root", 0755), 0);
	ASSERT_EQ(mkdir("outside", 0755), 0);
	ASSERT_EQ(mkdir("root/dir", 0755), 0);
	test_write_file("outside/secret", "SECRET");
	ASSERT_EQ(symlink("/etc", "root/evil"), 0);
	ASSERT_EQ(symlink("../../..", "root/evil2"), 0);
	ASSERT_EQ(symlink("../outside", "root/esc"), 0);
	snprintf(abs_target, sizeof(abs_target), "%s/outside", test_dir);
	ASSERT_EQ(symlink(abs_target, "root/abs"), 0);
	ASSERT_EQ(symlink("../../outside", "root/dir/link"), 0);
	int fd = fs_open_dir("root", ERR);
	ASSERT_OK(fd);
	return fd;
}

static void outside_untouched(void)
{
	ASSERT_EQ(count_entries("outside"), 1);
	_cleanup_close_ int fd = open("outside/secret", O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	char buf[64];
	read_fd_str(fd, buf, sizeof(buf));
	ASSERT_STREQ(buf, "SECRET");
}

/* Set the resolver for this test; skip the openat2 variant on kernels without it. */
static void use_fallback(bool fallback)
{
	if (!fallback && !have_openat2())
		test_skip("kernel has no openat2");
	fs_force_fallback(fallback);
}

/*
 * The expected code where a symlink escapes: openat2 resolves it inside the root (where the
 * target usually does not exist: @in_root), the fallback refuses symlinks (-ELOOP).
 */
#define ESC(fallback, in_root) ((fallback) ? -ELOOP : (in_root))

static void confined_open(bool fallback)
{
	use_fallback(fallback);
	_cleanup_close_ int root = make_root();

	/* Through an absolute symlink into /etc, and by "..": never the host's /etc/passwd. */
	ASSERT_ERR(fs_openat(root, "evil/passwd", O_RDONLY, 0, ERR), ESC(fallback, -ENOENT));
	ASSERT_ERRMSG("open 'evil/passwd'");
	ASSERT_ERR(fs_openat(root, "../../etc/passwd", O_RDONLY, 0, ERR), -ENOENT);
	ASSERT_ERR(fs_openat(root, "/etc/passwd", O_RDONLY, 0, ERR), -ENOENT);
	ASSERT_ERR(fs_openat(root, "evil2/outside/secret", O_RDONLY, 0, ERR),
	           ESC(fallback, -ENOENT));
	ASSERT_ERR(fs_openat(root, "esc/secret", O_RDONLY, 0, ERR), ESC(fallback, -ENOENT));
	ASSERT_ERR(fs_openat(root, "abs/secret", O_RDONLY, 0, ERR), ESC(fallback, -ENOENT));
	ASSERT_ERR(fs_openat(root, "dir/link/secret", O_RDONLY, 0, ERR), ESC(fallback, -ENOENT));
	ASSERT_ERR(fs_openat(root, "dir/../../outside/secret", O_RDONLY, 0, ERR), -ENOENT);

	/* The symlink as the last component: followed inside the root, or refused. */
	ASSERT_ERR(fs_openat(root, "esc", O_RDONLY | O_DIRECTORY, 0, ERR), ESC(fallback, -ENOENT));
	ASSERT_ERR(fs_openat(root, "esc", O_PATH, 0, ERR), ESC(fallback, -ENOENT));
	ASSERT_ERR(fs_openat(root, "dir/link", O_PATH | O_DIRECTORY, 0, ERR),
	           ESC(fallback, -ENOENT));
	/* With O_NOFOLLOW|O_PATH the link itself opens, in both modes. */
	{
		_cleanup_close_ int fd = fs_openat(root, "esc", O_PATH | O_NOFOLLOW, 0, ERR);
		ASSERT_OK(fd);
		struct stat st;
		ASSERT_EQ(fstat(fd, &st), 0);
		ASSERT_TRUE(S_ISLNK(st.st_mode));
	}
	ASSERT_ERR(fs_openat(root, "esc", O_RDONLY | O_NOFOLLOW, 0, ERR), -ELOOP);

	/* Create the in-root targets: openat2 now finds those, never the real ones. */
	ASSERT_EQ(mkdir("root/etc", 0755), 0);
	test_write_file("root/etc/passwd", "inside");
	ASSERT_EQ(mkdir("root/outside", 0755), 0);
	test_write_file("root/outside/secret", "in-root");
	static const char *const to_passwd[] = {"evil/passwd", "../../etc/passwd", "/etc/passwd",
	                                        "evil2/etc/passwd"};
	for (size_t i = 0; i < ELEMENTSOF(to_passwd); i++) {
		bool via_link = strncmp(to_passwd[i], "evil", 4) == 0;
		_cleanup_close_ int fd = fs_openat(root, to_passwd[i], O_RDONLY, 0, ERR);
		if (fallback && via_link) {
			ASSERT_ERR(fd, -ELOOP);
			continue;
		}
		ASSERT_OK(fd);
		char buf[64];
		read_fd_str(fd, buf, sizeof(buf));
		ASSERT_STREQ(buf, "inside");
	}
	static const char *const to_secret[] = {"esc/secret", "dir/link/secret",
	                                        "evil2/outside/secret", "../outside/secret"};
	for (size_t i = 0; i < ELEMENTSOF(to_secret); i++) {
		bool via_link = strncmp(to_secret[i], "..", 2) != 0;
		_cleanup_close_ int fd = fs_openat(root, to_secret[i], O_RDONLY, 0, ERR);
		if (fallback && via_link) {
			ASSERT_ERR(fd, -ELOOP);
			continue;
		}
		ASSERT_OK(fd);
		char buf[64];
		read_fd_str(fd, buf, sizeof(buf));
		ASSERT_STREQ(buf, "in-root");
	}
	/* The absolute link names <test_dir>/outside, which is not inside the root. */
	ASSERT_ERR(fs_openat(root, "abs/secret", O_RDONLY, 0, ERR), ESC(fallback, -ENOENT));
	/* Creating through a symlink lands inside the root, or nowhere. */
	{
		_cleanup_close_ int fd =
			fs_openat(root, "esc/new", O_WRONLY | O_CREAT | O_EXCL, 0644, ERR);
		if (fallback)
			ASSERT_ERR(fd, -ELOOP);
		else
			ASSERT_TRUE(fd >= 0 && exists("root/outside/new"));
	}
	outside_untouched();
}

TEST(fs_confined_open)
{
	confined_open(false);
}

TEST(fs_confined_open_fallback)
{
	confined_open(true);
}

static void confined_mkdir(bool fallback)
{
	use_fallback(fallback);
	_cleanup_close_ int root = make_root();
	char name[64], host[128];
	snprintf(name, sizeof(name), "evil/cairn-test-%d", (int)getpid());
	snprintf(host, sizeof(host), "/etc/cairn-test-%d", (int)getpid());

	/* The in-root targets do not exist: openat2 says ENOENT, the fallback ELOOP. */
	ASSERT_ERR(fs_mkdir_p(root, name, 0755, ERR), ESC(fallback, -ENOENT));
	ASSERT_FALSE(exists(host));
	ASSERT_ERR(fs_mkdir_p(root, "esc/new/deep", 0755, ERR), ESC(fallback, -ENOENT));
	ASSERT_ERR(fs_mkdir_p(root, "abs/new", 0755, ERR), ESC(fallback, -ENOENT));
	ASSERT_ERR(fs_mkdir_p(root, "dir/link/new", 0755, ERR), ESC(fallback, -ENOENT));
	ASSERT_ERR(fs_mkdir_p(root, "esc", 0755, ERR), ESC(fallback, -ENOENT));
	outside_untouched();

	/* With root/outside present, openat2 creates there; the outside stays as it was. */
	ASSERT_EQ(mkdir("root/outside", 0755), 0);
	ASSERT_ERR(fs_mkdir_p(root, "esc/new/deep", 0755, ERR), ESC(fallback, 0));
	ASSERT_ERR(fs_mkdir_p(root, "dir/link/new2", 0755, ERR), ESC(fallback, 0));
	ASSERT_ERR(fs_mkdir_p(root, "evil2/outside/new3", 0755, ERR), ESC(fallback, 0));
	/* ".." cannot climb out either. */
	ASSERT_OK(fs_mkdir_p(root, "../../outside/up", 0755, ERR));
	ASSERT_TRUE(exists("root/outside/up"));
	if (!fallback) {
		ASSERT_TRUE(exists("root/outside/new/deep"));
		ASSERT_TRUE(exists("root/outside/new2"));
		ASSERT_TRUE(exists("root/outside/new3"));
	}
	outside_untouched();
	ASSERT_FALSE(exists(host));
}

TEST(fs_confined_mkdir_p)
{
	confined_mkdir(false);
}

TEST(fs_confined_mkdir_p_fallback)
{
	confined_mkdir(true);
}

static void confined_rm(bool fallback)
{
	use_fallback(fallback);
	_cleanup_close_ int root = make_root();

	/* Through the symlink: the in-root target is missing, so nothing is removed anywhere. */
	int r = fs_rm_rf(root, "esc/secret", ERR);
	ASSERT_TRUE(r == 0 || (fallback && r == -ELOOP));
	r = fs_rm_rf(root, "dir/link/secret", ERR);
	ASSERT_TRUE(r == 0 || (fallback && r == -ELOOP));
	outside_untouched();

	/* The symlink itself goes, with or without a trailing slash; its target stays. */
	ASSERT_OK(fs_rm_rf(root, "esc", ERR));
	ASSERT_FALSE(exists("root/esc"));
	ASSERT_OK(fs_rm_rf(root, "abs/", ERR));
	ASSERT_FALSE(exists("root/abs"));
	ASSERT_OK(fs_rm_rf(root, "evil2", ERR));
	ASSERT_FALSE(exists("root/evil2"));
	outside_untouched();

	/* A tree holding a link to the outside: the tree and link go, the outside stays. */
	ASSERT_OK(fs_mkdir_p(root, "dir/a/b", 0755, ERR));
	test_write_file("root/dir/a/b/f", "x");
	ASSERT_EQ(symlink("../../../../outside", "root/dir/a/b/up"), 0);
	ASSERT_OK(fs_rm_rf(root, "dir", ERR));
	ASSERT_FALSE(exists("root/dir"));
	ASSERT_TRUE(exists("root/evil"));
	ASSERT_TRUE(exists("/etc/passwd"));
	outside_untouched();

	/* The write helpers stay inside too. */
	r = fs_write_atomic(root, "evil2/outside/secret", "pwned", 5, 0644, ERR);
	ASSERT_TRUE(r == -ENOENT || (fallback && r == -ELOOP));
	outside_untouched();
	char *buf = NULL;
	r = fs_read_file(root, "evil/passwd", 4096, &buf, NULL, ERR);
	ASSERT_TRUE(r == -ENOENT || (fallback && r == -ELOOP));
	ASSERT_TRUE(buf == NULL);
}

TEST(fs_confined_rm_rf)
{
	confined_rm(false);
}

TEST(fs_confined_rm_rf_fallback)
{
	confined_rm(true);
}

static void mkdir_p_basic(bool fallback)
{
	use_fallback(fallback);
	_cleanup_close_ int root = make_root();
	ASSERT_OK(fs_mkdir_p(root, "a/b/c", 0750, ERR));
	struct stat st;
	ASSERT_EQ(stat("root/a/b/c", &st), 0);
	ASSERT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_OK(fs_mkdir_p(root, "a/b/c", 0750, ERR)); /* existing is fine */
	ASSERT_OK(fs_mkdir_p(root, "a//b/./d/", 0755, ERR));
	ASSERT_TRUE(exists("root/a/b/d"));
	ASSERT_OK(fs_mkdir_p(root, "/x/y", 0755, ERR));
	ASSERT_TRUE(exists("root/x/y"));
	ASSERT_OK(fs_mkdir_p(root, "x/../z", 0755, ERR));
	ASSERT_TRUE(exists("root/z"));
	ASSERT_OK(fs_mkdir_p(root, "", 0755, ERR));

	/* A file in the way: -ENOTDIR, at the end or in the middle. */
	test_write_file("root/a/file", "x");
	ASSERT_ERR(fs_mkdir_p(root, "a/file", 0755, ERR), -ENOTDIR);
	ASSERT_ERRMSG("'a/file'");
	ASSERT_ERR(fs_mkdir_p(root, "a/file/sub", 0755, ERR), -ENOTDIR);
	ASSERT_FALSE(exists("root/a/file/sub"));
}

TEST(fs_mkdir_p)
{
	mkdir_p_basic(false);
}

TEST(fs_mkdir_p_fallback)
{
	mkdir_p_basic(true);
}

TEST(fs_openat_modes)
{
	_cleanup_close_ int root = make_root();
	/* A directory open with a non-zero mode (callers pass one out of habit). */
	_cleanup_close_ int d = fs_openat(root, "dir", O_RDONLY | O_DIRECTORY, 0755, ERR);
	ASSERT_OK(d);
	_cleanup_close_ int self = fs_openat(root, "", O_RDONLY | O_DIRECTORY, 0, ERR);
	ASSERT_OK(self);
	struct stat a, b;
	ASSERT_EQ(fstat(self, &a), 0);
	ASSERT_EQ(fstat(root, &b), 0);
	ASSERT_EQ(a.st_ino, b.st_ino);
	/* Flags are honoured: O_EXCL, and the fd is close-on-exec. */
	_cleanup_close_ int f = fs_openat(root, "new", O_WRONLY | O_CREAT | O_EXCL, 0600, ERR);
	ASSERT_OK(f);
	ASSERT_TRUE(fcntl(f, F_GETFD) & FD_CLOEXEC);
	ASSERT_ERR(fs_openat(root, "new", O_WRONLY | O_CREAT | O_EXCL, 0600, ERR), -EEXIST);
	ASSERT_ERRMSG("open 'new'");
	/* O_TMPFILE gets its mode. */
	_cleanup_close_ int t = fs_openat(root, "dir", O_TMPFILE | O_RDWR, 0640, ERR);
	if (t != -EOPNOTSUPP && t != -EISDIR) {
		ASSERT_OK(t);
		struct stat st;
		ASSERT_EQ(fstat(t, &st), 0);
		ASSERT_EQ(st.st_mode & 0777, 0640);
	}

	const char *name = NULL;
	_cleanup_close_ int p = fs_open_parent(root, "dir/sub/leaf", &name, ERR);
	ASSERT_ERR(p, -ENOENT);
	ASSERT_ERRMSG("'dir/sub/leaf'");
	_cleanup_close_ int p2 = fs_open_parent(root, "dir/leaf//", &name, ERR);
	ASSERT_OK(p2);
	ASSERT_TRUE(strncmp(name, "leaf", 4) == 0);
	ASSERT_ERR(fs_open_parent(root, "", &name, ERR), -EINVAL);
	ASSERT_ERR(fs_open_parent(root, "//", &name, ERR), -EINVAL);
	ASSERT_OK(fs_fsync_path(root, "", ERR));
	ASSERT_OK(fs_fsync_path(root, "dir", ERR));
	ASSERT_ERR(fs_fsync_path(root, "nope", ERR), -ENOENT);
	ASSERT_ERR(fs_open_dir("no-such-dir", ERR), -ENOENT);
	ASSERT_ERRMSG("open 'no-such-dir'");
}

TEST(fs_rm_rf)
{
	_cleanup_close_ int root = make_root();
	/* Missing paths, and missing parents, are success. */
	ASSERT_OK(fs_rm_rf(root, "missing", ERR));
	ASSERT_OK(fs_rm_rf(root, "missing/deeper/still", ERR));

	/* Never the root or a parent. */
	static const char *const refuse[] = {"..", ".", "dir/..", "dir/.", "../..", "", "/", "//"};
	for (size_t i = 0; i < ELEMENTSOF(refuse); i++)
		ASSERT_ERR(fs_rm_rf(root, refuse[i], ERR), -EINVAL);
	ASSERT_TRUE(exists("root/dir"));
	ASSERT_TRUE(exists("root/evil"));

	/* A deep tree with files, symlinks, a fifo and a read-only directory. */
	ASSERT_OK(fs_mkdir_p(root, "t/a/b/c/d", 0755, ERR));
	test_write_file("root/t/a/f1", "1");
	test_write_file("root/t/a/b/c/d/f2", "2");
	ASSERT_EQ(symlink("/", "root/t/a/b/root"), 0);
	ASSERT_EQ(mkfifo("root/t/a/fifo", 0600), 0);
	ASSERT_OK(fs_mkdir_p(root, "t/ro/x", 0755, ERR));
	ASSERT_EQ(chmod("root/t/ro", 0555), 0);
	ASSERT_OK(fs_rm_rf(root, "t", ERR));
	ASSERT_FALSE(exists("root/t"));
	ASSERT_OK(fs_rm_rf(root, "t", ERR));

	/* A plain file. */
	test_write_file("root/file", "x");
	ASSERT_OK(fs_rm_rf(root, "file", ERR));
	ASSERT_FALSE(exists("root/file"));
	/* fs_rm_rf_children empties but keeps the directory and its fd. */
	ASSERT_OK(fs_mkdir_p(root, "k/a/b", 0755, ERR));
	test_write_file("root/k/f", "x");
	_cleanup_close_ int k = fs_openat(root, "k", O_RDONLY | O_DIRECTORY, 0, ERR);
	ASSERT_OK(k);
	ASSERT_OK(fs_rm_rf_children(k, "k", ERR));
	ASSERT_EQ(count_entries("root/k"), 0);
	ASSERT_TRUE(fcntl(k, F_GETFD) >= 0);
	outside_untouched();
}

static void bind_or_skip(const char *src, const char *dst)
{
	if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
		test_skip("cannot bind mount (needs CAP_SYS_ADMIN)");
}

TEST(fs_rm_rf_stops_at_mounts)
{
	_cleanup_close_ int root = make_root();
	ASSERT_OK(fs_mkdir_p(root, "t/mnt", 0755, ERR));
	test_write_file("root/t/f", "x");
	/* A bind mount of the same filesystem: st_dev alone cannot see it. */
	bind_or_skip("outside", "root/t/mnt");
	ASSERT_ERR(fs_rm_rf(root, "t", ERR), -EBUSY);
	ASSERT_ERRMSG("'t/mnt'");
	umount2("root/t/mnt", MNT_DETACH);
	outside_untouched();
	ASSERT_OK(fs_rm_rf(root, "t", ERR));
	ASSERT_FALSE(exists("root/t"));
	outside_untouched();
}

TEST(fs_write_atomic)
{
	_cleanup_close_ int root = make_root();
	ASSERT_OK(fs_write_atomic(root, "dir/state", "one", 3, 0640, ERR));
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	ASSERT_OK(fs_read_file(root, "dir/state", 100, &buf, &len, ERR));
	ASSERT_STREQ(buf, "one");
	ASSERT_EQ(len, 3);
	buf = (free(buf), NULL);

	ASSERT_OK(fs_write_atomic(root, "dir/state", "second", 6, 0600, ERR));
	ASSERT_OK(fs_read_file(root, "dir/state", 100, &buf, &len, ERR));
	ASSERT_STREQ(buf, "second");
	struct stat st;
	ASSERT_EQ(stat("root/dir/state", &st), 0);
	ASSERT_EQ(st.st_mode & 0777, 0600);
	buf = (free(buf), NULL);

	/* Shorter content replaces, it does not overlay. */
	ASSERT_OK(fs_write_atomic(root, "dir/state", "", 0, 0600, ERR));
	ASSERT_OK(fs_read_file(root, "dir/state", 100, &buf, &len, ERR));
	ASSERT_EQ(len, 0);
	/* No temporary files left behind: dir holds link and state only. */
	ASSERT_EQ(count_entries("root/dir"), 2);

	/* Replacing a symlink replaces the link, not its target. */
	ASSERT_OK(fs_write_atomic(root, "dir/link", "new", 3, 0644, ERR));
	ASSERT_EQ(lstat("root/dir/link", &st), 0);
	ASSERT_TRUE(S_ISREG(st.st_mode));
	outside_untouched();

	ASSERT_ERR(fs_write_atomic(root, "nodir/state", "x", 1, 0644, ERR), -ENOENT);
	ASSERT_ERRMSG("'nodir/state'");
	ASSERT_ERR(fs_write_atomic(root, "dir/..", "x", 1, 0644, ERR), -EINVAL);
	ASSERT_ERR(fs_write_atomic(root, "", "x", 1, 0644, ERR), -EINVAL);
	ASSERT_EQ(count_entries("root/dir"), 2);
}

TEST(fs_read_file_limits)
{
	_cleanup_close_ int root = make_root();
	char *buf = NULL;
	size_t len = 99;
	test_write_file("root/ten", "0123456789");
	/* Exactly @max bytes fits; one more does not. */
	ASSERT_OK(fs_read_file(root, "ten", 10, &buf, &len, ERR));
	ASSERT_STREQ(buf, "0123456789");
	ASSERT_EQ(len, 10);
	buf = (free(buf), NULL);
	ASSERT_ERR(fs_read_file(root, "ten", 9, &buf, &len, ERR), -EFBIG);
	ASSERT_ERRMSG("read 'ten'");
	ASSERT_TRUE(buf == NULL);
	ASSERT_ERR(fs_read_file(root, "ten", 0, &buf, NULL, ERR), -EFBIG);

	/* An empty file fits in any max, 0 included. */
	test_write_file("root/empty", "");
	ASSERT_OK(fs_read_file(root, "empty", 0, &buf, &len, ERR));
	ASSERT_EQ(len, 0);
	ASSERT_STREQ(buf, "");
	buf = (free(buf), NULL);

	/* Larger than the initial buffer, with and without room; sizes at the growth steps. */
	static const size_t sizes[] = {4095, 4096, 4097, 8192, 100000};
	for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
		size_t n = sizes[i];
		_cleanup_free_ uint8_t *data = pattern(n);
		for (size_t j = 0; j < n; j++)
			data[j] = (uint8_t)('a' + data[j] % 26);
		ASSERT_OK(fs_write_atomic(root, "big", data, n, 0644, ERR));
		ASSERT_OK(fs_read_file(root, "big", n, &buf, &len, ERR));
		ASSERT_EQ(len, n);
		ASSERT_EQ(buf[n], '\0');
		ASSERT_TRUE(memcmp(buf, data, n) == 0);
		buf = (free(buf), NULL);
		ASSERT_OK(fs_read_file(root, "big", SIZE_MAX, &buf, &len, ERR));
		ASSERT_EQ(len, n);
		buf = (free(buf), NULL);
		ASSERT_ERR(fs_read_file(root, "big", n - 1, &buf, &len, ERR), -EFBIG);
	}
	ASSERT_ERR(fs_read_file(root, "missing", 10, &buf, &len, ERR), -ENOENT);
	ASSERT_ERRMSG("'missing'");
	/* A symlink as the last component is not followed. */
	ASSERT_ERR(fs_read_file(root, "dir/link", 10, &buf, &len, ERR), -ELOOP);
}

TEST(fs_name_valid)
{
	char long_ok[256], long_bad[257];
	memset(long_ok, 'a', 255);
	long_ok[255] = '\0';
	memset(long_bad, 'a', 256);
	long_bad[256] = '\0';
	static const struct {
		const char *name;
		bool valid;
	} table[] = {
		{"a", true},    {"abc.def", true}, {"...", true}, {".hidden", true}, {"..a", true},
		{"a b", true},  {"", false},       {".", false},  {"..", false},     {"/", false},
		{"a/b", false}, {"/a", false},     {"a/", false}, {"./a", false},
	};
	for (size_t i = 0; i < ELEMENTSOF(table); i++)
		if (fs_name_valid(table[i].name) != table[i].valid)
			test_fail(__FILE__, __LINE__, "fs_name_valid(\"%s\") != %d", table[i].name,
			          table[i].valid);
	ASSERT_TRUE(fs_name_valid(long_ok));
	ASSERT_FALSE(fs_name_valid(long_bad));
	ASSERT_FALSE(fs_name_valid(NULL));
}

static void write_mib(const char *path)
{
	const size_t len = 1 << 20;
	_cleanup_free_ uint8_t *data = pattern(len);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(fs_write_all(fd, data, len));
	ASSERT_EQ(fsync(fd), 0);
}

TEST(fs_usage_hardlinks)
{
	ASSERT_EQ(mkdir("one", 0755), 0);
	ASSERT_EQ(mkdir("two", 0755), 0);
	write_mib("one/f");
	write_mib("two/f");
	ASSERT_EQ(link("two/f", "two/g"), 0);
	uint64_t b1 = 0, i1 = 0, b2 = 0, i2 = 0;
	_cleanup_close_ int d1 = fs_open_dir("one", ERR);
	_cleanup_close_ int d2 = fs_open_dir("two", ERR);
	ASSERT_OK(d1);
	ASSERT_OK(d2);
	ASSERT_OK(fs_usage_fd(d1, "one", &b1, &i1, ERR));
	ASSERT_OK(fs_usage_fd(d2, "two", &b2, &i2, ERR));
	ASSERT_TRUE(b1 >= (1 << 20));
	ASSERT_TRUE(b1 < 2 * (1 << 20));
	ASSERT_EQ(i1, 2); /* the directory and the file */
	ASSERT_EQ(b2, b1);
	ASSERT_EQ(i2, i1);

	/* A second, distinct file is counted. */
	write_mib("two/h");
	ASSERT_OK(fs_usage_fd(d2, "two", &b2, &i2, ERR));
	ASSERT_TRUE(b2 >= b1 + (1 << 20));
	ASSERT_EQ(i2, 3);

	/* A nested directory and a symlink (counted as itself, not its target). */
	ASSERT_EQ(mkdir("two/sub", 0755), 0);
	ASSERT_EQ(link("two/h", "two/sub/h2"), 0);
	ASSERT_EQ(symlink("/usr", "two/sub/l"), 0);
	uint64_t b3 = 0, i3 = 0;
	ASSERT_OK(fs_usage_fd(d2, "two", &b3, &i3, ERR));
	ASSERT_EQ(i3, 5);
	ASSERT_TRUE(b3 < b2 + 64 * 1024);
}

TEST(fs_usage_stops_at_mounts)
{
	ASSERT_EQ(mkdir("tree", 0755), 0);
	ASSERT_EQ(mkdir("tree/mnt", 0755), 0);
	ASSERT_EQ(mkdir("big", 0755), 0);
	write_mib("big/f");
	_cleanup_close_ int d = fs_open_dir("tree", ERR);
	uint64_t before = 0, inodes_before = 0, after = 0, inodes_after = 0;
	ASSERT_OK(fs_usage_fd(d, "tree", &before, &inodes_before, ERR));
	bind_or_skip("big", "tree/mnt");
	ASSERT_OK(fs_usage_fd(d, "tree", &after, &inodes_after, ERR));
	umount2("tree/mnt", MNT_DETACH);
	ASSERT_TRUE(after < before + (1 << 20));
	ASSERT_TRUE(inodes_after <= inodes_before);
}

/* ---- flight ---- */

struct work {
	atomic_int *counter;
	int sleep_ms;
	int64_t value;
	int rc; /* < 0: fail with this code and message */
	const char *msg;
	bool ignore_cancel;
	atomic_bool saw_cancel; /* set when the work stopped early on its cancelled flag */
	atomic_bool finished;
};

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* BuildKit's testFunc: count the call, then wait @sleep_ms unless cancelled first. */
static int work_fn(void *userdata, const atomic_bool *cancelled, int64_t *ret_value,
                   cairn_error **reterr)
{
	struct work *w = userdata;
	atomic_fetch_add(w->counter, 1);
	int64_t end = now_ms() + w->sleep_ms;
	while (now_ms() < end) {
		if (!w->ignore_cancel && atomic_load(cancelled)) {
			atomic_store(&w->saw_cancel, true);
			atomic_store(&w->finished, true);
			return err_set(reterr, -ECANCELED, "work cancelled");
		}
		sleep_ms(1);
	}
	atomic_store(&w->finished, true);
	if (w->rc < 0)
		return err_set(reterr, w->rc, "%s", w->msg);
	*ret_value = w->value;
	return 0;
}

struct caller {
	flight_group *g;
	const char *key;
	struct work *w;
	atomic_bool cancel;
	int cancel_after_ms; /* 0: never */
	int rc;
	int64_t value;
	int64_t elapsed_ms;
	char msg[256];
	pthread_t thread, timer;
};

static void *caller_main(void *arg)
{
	struct caller *c = arg;
	cairn_error *err = NULL;
	int64_t start = now_ms();
	c->value = -1;
	c->rc = flight_do(c->g, c->key, work_fn, c->w, &c->cancel, &c->value, &err);
	c->elapsed_ms = now_ms() - start;
	snprintf(c->msg, sizeof(c->msg), "%s", cairn_error_message(err));
	if ((c->rc < 0) != (err != NULL))
		c->rc = -EPROTO; /* an error code must come with an error object, and only then */
	cairn_error_free(err);
	return NULL;
}

static void *timer_main(void *arg)
{
	struct caller *c = arg;
	sleep_ms(c->cancel_after_ms);
	atomic_store(&c->cancel, true);
	return NULL;
}

static void run_callers(struct caller *cs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		atomic_init(&cs[i].cancel, false);
		ASSERT_EQ(pthread_create(&cs[i].thread, NULL, caller_main, &cs[i]), 0);
		if (cs[i].cancel_after_ms > 0)
			ASSERT_EQ(pthread_create(&cs[i].timer, NULL, timer_main, &cs[i]), 0);
	}
	for (size_t i = 0; i < n; i++) {
		pthread_join(cs[i].thread, NULL);
		if (cs[i].cancel_after_ms > 0)
			pthread_join(cs[i].timer, NULL);
	}
}

static int64_t do_once(flight_group *g, const char *key, struct work *w)
{
	int64_t v = -1;
	ASSERT_OK(flight_do(g, key, work_fn, w, NULL, &v, ERR));
	return v;
}

TEST(flight_no_cancel)
{
	_cleanup_(flight_group_freep) flight_group *g = flight_group_new();
	ASSERT_TRUE(g != NULL);
	atomic_int counter = 0;
	struct work w = {.counter = &counter, .sleep_ms = 100, .value = 42};
	struct caller cs[2] = {{.g = g, .key = "foo", .w = &w}, {.g = g, .key = "foo", .w = &w}};
	run_callers(cs, 2);
	for (size_t i = 0; i < 2; i++) {
		ASSERT_OK(cs[i].rc);
		ASSERT_EQ(cs[i].value, 42);
	}
	ASSERT_EQ(atomic_load(&counter), 1);
}

TEST(flight_cancel_one)
{
	_cleanup_(flight_group_freep) flight_group *g = flight_group_new();
	atomic_int counter = 0;
	struct work w = {.counter = &counter, .sleep_ms = 100, .value = 42};
	struct caller cs[2] = {{.g = g, .key = "foo", .w = &w, .cancel_after_ms = 30},
	                       {.g = g, .key = "foo", .w = &w}};
	run_callers(cs, 2);
	ASSERT_ERR(cs[0].rc, -ECANCELED);
	ASSERT_TRUE(strstr(cs[0].msg, "cancelled") != NULL);
	ASSERT_EQ(cs[0].value, -1); /* ret_value untouched */
	/* The cancelled caller returns at once, not when the work ends. */
	ASSERT_TRUE(cs[0].elapsed_ms < 90);
	ASSERT_OK(cs[1].rc);
	ASSERT_EQ(cs[1].value, 42);
	/* The work was not told to stop: one caller still wanted it. */
	ASSERT_FALSE(atomic_load(&w.saw_cancel));
	ASSERT_EQ(atomic_load(&counter), 1);
}

TEST(flight_cancel_both)
{
	_cleanup_(flight_group_freep) flight_group *g = flight_group_new();
	atomic_int counter = 0;
	struct work w = {.counter = &counter, .sleep_ms = 200, .value = 42};
	struct caller cs[2] = {{.g = g, .key = "foo", .w = &w, .cancel_after_ms = 20},
	                       {.g = g, .key = "foo", .w = &w, .cancel_after_ms = 50}};
	run_callers(cs, 2);
	for (size_t i = 0; i < 2; i++) {
		ASSERT_ERR(cs[i].rc, -ECANCELED);
		ASSERT_TRUE(cs[i].elapsed_ms < 150);
	}
	ASSERT_EQ(atomic_load(&counter), 1);
	/* Every caller gave up, so the work was told to stop, and it did, early. */
	for (int i = 0; i < 1000 && !atomic_load(&w.finished); i++)
		sleep_ms(1);
	ASSERT_TRUE(atomic_load(&w.saw_cancel));

	/* No caching: each later call runs the work again. */
	struct work w2 = {.counter = &counter, .sleep_ms = 10, .value = 43};
	struct work w1 = {.counter = &counter, .sleep_ms = 10, .value = 42};
	ASSERT_EQ(do_once(g, "foo", &w1), 42);
	ASSERT_EQ(do_once(g, "foo", &w2), 43);
	ASSERT_EQ(do_once(g, "abc", &w1), 42);
	ASSERT_EQ(atomic_load(&counter), 4);
}

TEST(flight_error_reaches_every_waiter)
{
	_cleanup_(flight_group_freep) flight_group *g = flight_group_new();
	atomic_int counter = 0;
	struct work w = {.counter = &counter, .sleep_ms = 150, .rc = -EIO, .msg = "disk on fire"};
	struct caller cs[4];
	for (size_t i = 0; i < ELEMENTSOF(cs); i++)
		cs[i] = (struct caller){.g = g, .key = "k", .w = &w};
	run_callers(cs, ELEMENTSOF(cs));
	for (size_t i = 0; i < ELEMENTSOF(cs); i++) {
		ASSERT_ERR(cs[i].rc, -EIO);
		ASSERT_STREQ(cs[i].msg, "disk on fire");
		ASSERT_EQ(cs[i].value, -1);
	}
	ASSERT_EQ(atomic_load(&counter), 1);

	/* A single caller too, through the same path. */
	struct work w2 = {.counter = &counter, .rc = CAIRN_ECORRUPT, .msg = "bad blob 'x'"};
	int64_t v = -1;
	ASSERT_ERR(flight_do(g, "k", work_fn, &w2, NULL, &v, ERR), CAIRN_ECORRUPT);
	ASSERT_ERRMSG("bad blob 'x'");
	ASSERT_EQ(v, -1);
}

TEST(flight_distinct_keys_run_apart)
{
	_cleanup_(flight_group_freep) flight_group *g = flight_group_new();
	atomic_int counter = 0;
	struct work wa = {.counter = &counter, .sleep_ms = 100, .value = 1};
	struct work wb = {.counter = &counter, .sleep_ms = 100, .value = 2};
	struct caller cs[3] = {{.g = g, .key = "a", .w = &wa},
	                       {.g = g, .key = "b", .w = &wb},
	                       {.g = g, .key = "a", .w = &wa}};
	run_callers(cs, 3);
	ASSERT_EQ(cs[0].value, 1);
	ASSERT_EQ(cs[1].value, 2);
	ASSERT_EQ(cs[2].value, 1);
	ASSERT_EQ(atomic_load(&counter), 2);
	/* Both ran at once, not one after the other. */
	ASSERT_TRUE(cs[1].elapsed_ms < 190);
}

TEST(flight_precancelled_and_free_waits)
{
	flight_group *g = flight_group_new();
	atomic_int counter = 0;
	struct work w = {.counter = &counter, .sleep_ms = 50, .value = 1};
	/* Already cancelled: returns -ECANCELED without starting work. */
	atomic_bool yes = true;
	int64_t v = -1;
	ASSERT_ERR(flight_do(g, "k", work_fn, &w, &yes, &v, ERR), -ECANCELED);
	sleep_ms(20); /* time enough for a wrongly started worker to count itself */
	ASSERT_EQ(atomic_load(&counter), 0);

	/* Work abandoned by its only caller keeps running until it notices; free waits for it. */
	struct work slow = {
		.counter = &counter, .sleep_ms = 100, .value = 1, .ignore_cancel = true};
	struct caller c = {.g = g, .key = "k", .w = &slow, .cancel_after_ms = 10};
	run_callers(&c, 1);
	ASSERT_ERR(c.rc, -ECANCELED);
	g = flight_group_free(g);
	ASSERT_TRUE(atomic_load(&slow.finished));
	ASSERT_TRUE(g == NULL);
	ASSERT_TRUE(flight_group_free(NULL) == NULL);
}
