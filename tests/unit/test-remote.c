/* SPDX-License-Identifier: MIT */
/*
 * remote: the registry client. Two kinds of peer:
 *  - a real registry (Debian's docker-registry) started per test on a free loopback port with a
 *    temporary storage directory, killed by PID at the end and tied to the test process with
 *    PR_SET_PDEATHSIG; when it is missing or does not start, those tests skip with the reason;
 *  - a small in-test HTTP server (a forked process on a loopback socket) that misbehaves on
 *    purpose: wrong bytes, dropped connections, HTML error pages, oversized manifests, 503s, a
 *    bearer token realm. It logs every request to fake.log for the assertions.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cairn/common.h"
#include "content/content.h"
#include "harness.h"
#include "remote/internal.h"

#define BLOB_LEN (1024 * 1024 + 17)

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

static int listen_loopback(int *ret_port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int one = 1;
	ASSERT_TRUE(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ASSERT_TRUE(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	ASSERT_TRUE(listen(fd, 16) == 0);
	ASSERT_TRUE(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	*ret_port = ntohs(a.sin_port);
	return fd;
}

/* A port nobody listens on right now. */
static int free_port(void)
{
	int port = 0;
	close(listen_loopback(&port));
	return port;
}

static bool port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Fork a child that dies with this process; returns 0 in the child. */
static pid_t fork_tied(void)
{
	pid_t parent = getpid();
	fflush(stdout);
	pid_t pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
	}
	return pid;
}

static void stop(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

static void debug_line(cairn_log_level level, const char *message, void *userdata)
{
	printf("# debug: %s\n", message);
}

/* The loopback peers must be reached directly, whatever the environment says. With
 * CAIRN_TEST_DEBUG set, the library's debug lines (retries, resumes) show as TAP comments. */
__attribute__((constructor)) static void no_proxy(void)
{
	if (getenv("CAIRN_TEST_DEBUG"))
		cairn_log_set(debug_line, NULL);
	const char *vars[] = {"http_proxy",  "https_proxy", "HTTP_PROXY",
	                      "HTTPS_PROXY", "all_proxy",   "ALL_PROXY"};
	for (size_t i = 0; i < ELEMENTSOF(vars); i++)
		unsetenv(vars[i]);
}

/* Show the last error message as a TAP comment: the messages are part of the contract. */
static void note(void)
{
	printf("# %s\n", cairn_error_message(test_err));
}

/* ---- the real registry ---- */

static pid_t registry_pid = -1;

/* Start docker-registry on a free port; with @htpasswd, basic auth for alice:wonder. */
static int start_registry(bool htpasswd)
{
	if (test_sh("command -v docker-registry >/dev/null 2>&1") != 0)
		test_skip("docker-registry is not installed (apt-get install docker-registry)");
	if (htpasswd && test_sh("command -v htpasswd >/dev/null 2>&1") != 0)
		test_skip("htpasswd is not installed (apt-get install apache2-utils)");
	if (htpasswd && test_sh("htpasswd -Bbn alice wonder > htpasswd 2>/dev/null") != 0)
		test_fail(__FILE__, __LINE__, "htpasswd -Bbn failed");
	int port = free_port();
	char cfg[2048];
	snprintf(cfg, sizeof(cfg),
	         "version: 0.1\n"
	         "log:\n  level: error\n  accesslog:\n    disabled: true\n"
	         "storage:\n  filesystem:\n    rootdirectory: %s/storage\n"
	         "  delete:\n    enabled: true\n"
	         "http:\n  addr: 127.0.0.1:%d\n"
	         "%s",
	         test_dir, port,
	         htpasswd ? "auth:\n  htpasswd:\n    realm: cairn-test\n    path: htpasswd\n" : "");
	test_write_file("config.yml", cfg);
	pid_t pid = fork_tied();
	if (pid == 0) {
		int log = open("registry.log", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		dup2(log, STDOUT_FILENO);
		dup2(log, STDERR_FILENO);
		execlp("docker-registry", "docker-registry", "serve", "config.yml", (char *)NULL);
		_exit(127);
	}
	registry_pid = pid;
	for (int i = 0; i < 300; i++) {
		if (port_open(port))
			return port;
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			test_sh("tail -5 registry.log | sed 's/^/# /'");
			registry_pid = -1;
			test_skip("docker-registry exited at start (see its log above)");
		}
		sleep_ms(50);
	}
	stop(pid);
	registry_pid = -1;
	test_skip("docker-registry did not listen within 15 s");
}

static void stop_registry(void)
{
	stop(registry_pid);
	registry_pid = -1;
}

static remote_client *client_for(int port, const char *creds, unsigned attempts)
{
	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", port);
	remote_options o = {.insecure = true,
	                    .creds = creds,
	                    .max_attempts = attempts,
	                    .backoff_ms = 10,
	                    .stall_timeout_s = 5};
	remote_client *c = NULL;
	ASSERT_OK(remote_client_new(host, &o, &c, ERR));
	return c;
}

struct membuf {
	uint8_t *p;
	size_t len;
};

static int collect(void *ud, const void *buf, size_t len, cairn_error **reterr)
{
	struct membuf *b = ud;
	b->p = realloc(b->p, b->len + len + 1);
	memcpy(b->p + b->len, buf, len);
	b->len += len;
	return 0;
}

static ssize_t mem_source(void *ud, void *buf, size_t len, uint64_t off, cairn_error **reterr)
{
	struct membuf *b = ud;
	if (off >= b->len)
		return 0;
	size_t n = b->len - off < len ? b->len - off : len;
	memcpy(buf, b->p + off, n);
	return (ssize_t)n;
}

/* Upload @len bytes of seed @seed to @repo; returns the digest. */
static digest push_blob(remote_client *c, const char *repo, size_t len, uint32_t seed, int expect)
{
	_cleanup_free_ uint8_t *data = gen(len, seed);
	digest d;
	digest_buffer(data, len, &d);
	struct membuf b = {data, len};
	int r = remote_blob_put(c, repo, d.str, len, mem_source, &b, NULL, ERR);
	if (r != expect)
		note();
	ASSERT_EQ(r, expect);
	return d;
}

static void expect_blob(remote_client *c, const char *repo, const digest *d, size_t len,
                        uint32_t seed)
{
	_cleanup_free_ uint8_t *want = gen(len, seed);
	struct membuf got = {0};
	uint64_t size = 0;
	ASSERT_EQ(remote_blob_exists(c, repo, d->str, &size, ERR), 1);
	ASSERT_EQ(size, len);
	ASSERT_OK(remote_blob_get(c, repo, d->str, len, 0, 0, collect, &got, ERR));
	ASSERT_EQ(got.len, len);
	ASSERT_TRUE(memcmp(got.p, want, len) == 0);
	free(got.p);
}

TEST(registry_ping)
{
	int port = start_registry(false);
	_cleanup_(remote_client_freep) remote_client *c = client_for(port, NULL, 0);
	ASSERT_OK(remote_ping(c, ERR));
	stop_registry();
}

TEST(registry_blob_monolithic)
{
	int port = start_registry(false);
	_cleanup_(remote_client_freep) remote_client *c = client_for(port, NULL, 0);
	digest d = push_blob(c, "cairn/one", 300 * 1024 + 5, 1, 1);
	expect_blob(c, "cairn/one", &d, 300 * 1024 + 5, 1);
	/* Present already: HEAD says so, nothing is sent. */
	push_blob(c, "cairn/one", 300 * 1024 + 5, 1, 0);
	/* Absent from another repository. */
	ASSERT_EQ(remote_blob_exists(c, "cairn/other", d.str, NULL, ERR), 0);
	/* The empty blob. */
	push_blob(c, "cairn/one", 0, 1, 1);
	stop_registry();
}

TEST(registry_blob_chunked_and_mount)
{
	int port = start_registry(false);
	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", port);
	remote_options o = {.insecure = true, .backoff_ms = 10, .chunk_size = 64 * 1024};
	_cleanup_(remote_client_freep) remote_client *c = NULL;
	ASSERT_OK(remote_client_new(host, &o, &c, ERR));
	size_t len = 200 * 1024 + 123; /* 4 chunks */
	digest d = push_blob(c, "cairn/chunked", len, 2, 1);
	expect_blob(c, "cairn/chunked", &d, len, 2);
	/* Cross-repository mount: no bytes travel, the blob appears in the other repository. */
	_cleanup_free_ uint8_t *data = gen(len, 2);
	struct membuf b = {data, len};
	ASSERT_EQ(remote_blob_put(c, "cairn/mounted", d.str, len, mem_source, &b, "cairn/chunked",
	                          ERR),
	          0);
	expect_blob(c, "cairn/mounted", &d, len, 2);
	stop_registry();
}

TEST(registry_upload_digest_mismatch)
{
	int port = start_registry(false);
	_cleanup_(remote_client_freep) remote_client *c = client_for(port, NULL, 0);
	_cleanup_free_ uint8_t *data = gen(4096, 3);
	digest other;
	digest_buffer("something else", 14, &other);
	struct membuf b = {data, 4096};
	ASSERT_ERR(remote_blob_put(c, "cairn/bad", other.str, 4096, mem_source, &b, NULL, ERR),
	           CAIRN_EDIGEST);
	note();
	ASSERT_ERRMSG("127.0.0.1:");
	ASSERT_ERRMSG(other.str);
	ASSERT_ERRMSG("cairn/bad");
	ASSERT_EQ(remote_blob_exists(c, "cairn/bad", other.str, NULL, ERR), 0);
	/* Chunked: the mismatch is found at the last chunk; nothing is committed. */
	remote_client *cc = client_for(port, NULL, 0);
	remote_client_free(cc);
	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", port);
	remote_options o = {.insecure = true, .chunk_size = 1000};
	ASSERT_OK(remote_client_new(host, &o, &cc, ERR));
	ASSERT_ERR(remote_blob_put(cc, "cairn/bad", other.str, 4096, mem_source, &b, NULL, ERR),
	           CAIRN_EDIGEST);
	note();
	ASSERT_EQ(remote_blob_exists(cc, "cairn/bad", other.str, NULL, ERR), 0);
	remote_client_free(cc);
	stop_registry();
}

static char *make_manifest(const char *mt, const char *config_mt, const char *layer_mt,
                           const digest *config, size_t config_len, const digest *layer,
                           size_t layer_len)
{
	char *s = NULL;
	ASSERT_TRUE(asprintf(&s,
	                     "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
	                     "\"%s\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":"
	                     "\"%s\",\"digest\":\"%s\",\"size\":%zu}]}",
	                     mt, config_mt, config->str, config_len, layer_mt, layer->str,
	                     layer_len) > 0);
	return s;
}

static void put_get_manifest(remote_client *c, const char *tag, const char *mt, const char *body)
{
	digest d;
	ASSERT_OK(remote_manifest_put(c, "cairn/img", tag, mt, body, strlen(body), &d, ERR));
	_cleanup_(remote_manifest_freep) remote_manifest *m = NULL;
	ASSERT_OK(remote_manifest_get(c, "cairn/img", tag, NULL, &m, ERR));
	ASSERT_STREQ(m->media_type, mt);
	ASSERT_STREQ(m->digest, d.str);
	ASSERT_EQ(m->len, strlen(body));
	ASSERT_TRUE(memcmp(m->body, body, m->len) == 0);
	remote_manifest_free(TAKE_PTR(m));
	ASSERT_OK(remote_manifest_get(c, "cairn/img", d.str, NULL, &m, ERR));
	ASSERT_STREQ(m->media_type, mt);
	ASSERT_STREQ(m->digest, d.str);
}

TEST(registry_manifest_put_get)
{
	int port = start_registry(false);
	_cleanup_(remote_client_freep) remote_client *c = client_for(port, NULL, 0);
	const char *config = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":"
			     "\"layers\",\"diff_ids\":[]}}";
	digest cd, ld;
	digest_buffer(config, strlen(config), &cd);
	struct membuf b = {(uint8_t *)config, strlen(config)};
	ASSERT_EQ(remote_blob_put(c, "cairn/img", cd.str, b.len, mem_source, &b, NULL, ERR), 1);
	ld = push_blob(c, "cairn/img", 5000, 9, 1);
	_cleanup_free_ char *oci =
		make_manifest(REMOTE_MT_OCI_MANIFEST, "application/vnd.oci.image.config.v1+json",
	                      "application/vnd.oci.image.layer.v1.tar+gzip", &cd, b.len, &ld, 5000);
	put_get_manifest(c, "v1", REMOTE_MT_OCI_MANIFEST, oci);
	_cleanup_free_ char *docker = make_manifest(
		REMOTE_MT_DOCKER_MANIFEST, "application/vnd.docker.container.image.v1+json",
		"application/vnd.docker.image.rootfs.diff.tar.gzip", &cd, b.len, &ld, 5000);
	put_get_manifest(c, "v2", REMOTE_MT_DOCKER_MANIFEST, docker);
	/* A manifest naming a blob the registry lacks is refused. */
	digest missing;
	digest_buffer("nope", 4, &missing);
	_cleanup_free_ char *dangling = make_manifest(
		REMOTE_MT_OCI_MANIFEST, "application/vnd.oci.image.config.v1+json",
		"application/vnd.oci.image.layer.v1.tar+gzip", &cd, b.len, &missing, 4);
	ASSERT_TRUE(remote_manifest_put(c, "cairn/img", "v3", REMOTE_MT_OCI_MANIFEST, dangling,
	                                strlen(dangling), NULL, ERR) < 0);
	ASSERT_ERRMSG("manifest 'v3' in 'cairn/img'");
	/* By digest, the body must hash to it. */
	ASSERT_ERR(remote_manifest_put(c, "cairn/img", missing.str, REMOTE_MT_OCI_MANIFEST, oci,
	                               strlen(oci), NULL, ERR),
	           CAIRN_EDIGEST);
	note();
	stop_registry();
}

TEST(registry_manifest_missing)
{
	int port = start_registry(false);
	_cleanup_(remote_client_freep) remote_client *c = client_for(port, NULL, 0);
	_cleanup_(remote_manifest_freep) remote_manifest *m = NULL;
	ASSERT_ERR(remote_manifest_get(c, "cairn/none", "nope", NULL, &m, ERR), -ENOENT);
	note();
	char host[64];
	snprintf(host, sizeof(host), "registry '127.0.0.1:%d'", port);
	ASSERT_ERRMSG(host);
	ASSERT_ERRMSG("manifest 'nope' in 'cairn/none'");
	ASSERT_ERRMSG("not found");
	ASSERT_TRUE(m == NULL);
	digest d;
	digest_buffer("x", 1, &d);
	struct membuf got = {0};
	ASSERT_ERR(remote_blob_get(c, "cairn/none", d.str, 1, 0, 0, collect, &got, ERR), -ENOENT);
	note();
	ASSERT_ERRMSG(d.str);
	ASSERT_EQ(got.len, 0);
	stop_registry();
}

TEST(registry_basic_auth)
{
	int port = start_registry(true);
	/* Right credentials. */
	_cleanup_(remote_client_freep) remote_client *c = client_for(port, "alice:wonder", 0);
	ASSERT_OK(remote_ping(c, ERR));
	digest d = push_blob(c, "cairn/auth", 1000, 4, 1);
	expect_blob(c, "cairn/auth", &d, 1000, 4);
	/* None. */
	remote_client *none = client_for(port, NULL, 0);
	ASSERT_ERR(remote_ping(none, ERR), -EACCES);
	note();
	ASSERT_ERRMSG("no credentials");
	ASSERT_ERR(remote_blob_exists(none, "cairn/auth", d.str, NULL, ERR), -EACCES);
	note();
	ASSERT_ERRMSG("cairn/auth");
	remote_client_free(none);
	/* Wrong ones. */
	remote_client *wrong = client_for(port, "alice:rabbit", 0);
	ASSERT_ERR(remote_ping(wrong, ERR), -EACCES);
	note();
	ASSERT_ERRMSG("status 401");
	remote_client_free(wrong);
	/* From a docker config file ($DOCKER_CONFIG), base64 "alice:wonder". */
	char cfg[256];
	snprintf(cfg, sizeof(cfg),
	         "{\"auths\":{\"https://127.0.0.1:%d\":{\"auth\":\"YWxpY2U6d29uZGVy\"}}}", port);
	ASSERT_TRUE(mkdir("dockercfg", 0700) == 0);
	test_write_file("dockercfg/config.json", cfg);
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/dockercfg", test_dir);
	setenv("DOCKER_CONFIG", dir, 1);
	remote_client *fromcfg = client_for(port, NULL, 0);
	ASSERT_OK(remote_ping(fromcfg, ERR));
	expect_blob(fromcfg, "cairn/auth", &d, 1000, 4);
	remote_client_free(fromcfg);
	/* A broken config file is an error naming it. */
	test_write_file("dockercfg/config.json", "{\"auths\": ");
	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", port);
	remote_options o = {.insecure = true};
	remote_client *x = NULL;
	ASSERT_ERR(remote_client_new(host, &o, &x, ERR), -EINVAL);
	note();
	ASSERT_ERRMSG("dockercfg/config.json");
	unsetenv("DOCKER_CONFIG");
	stop_registry();
}

static void send_all(int fd, const void *buf, size_t len);
static content_store *open_store(void);

/*
 * A TCP proxy in front of the registry that cuts one connection: after it sees @trigger in the
 * client's bytes, it forwards @budget more bytes in one direction (towards the registry when
 * @cut_upload, else towards the client) and then closes both ends. Only the first trigger in the
 * proxy's life fires (the file proxy.fired marks it). Every connection is relayed by its own
 * process; proxy.log records the cut and every Range header the client sent.
 */
static int connect_port(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		_exit(1);
	return fd;
}

static void proxy_log(const char *what)
{
	FILE *f = fopen("proxy.log", "ae");
	fprintf(f, "%s\n", what);
	fclose(f);
}

static void relay(int cfd, int upstream, const char *trigger, bool cut_upload, size_t budget)
{
	int ufd = connect_port(upstream);
	bool armed = false;
	proxy_log("connection");
	char buf[65536];
	struct pollfd pf[2] = {{.fd = cfd, .events = POLLIN}, {.fd = ufd, .events = POLLIN}};
	for (;;) {
		if (poll(pf, 2, -1) < 0)
			_exit(1);
		for (int i = 0; i < 2; i++) {
			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = recv(pf[i].fd, buf, sizeof(buf) - 1, 0);
			if (n <= 0)
				_exit(0);
			buf[n] = 0;
			size_t start = 0;
			if (i == 0 && memmem(buf, (size_t)n, "Range: bytes=", 13))
				proxy_log("client sent Range");
			if (i == 0 && !armed) {
				char *t = memmem(buf, (size_t)n, trigger, strlen(trigger));
				if (t &&
				    open("proxy.fired", O_CREAT | O_EXCL | O_CLOEXEC, 0644) >= 0) {
					armed = true;
					start = cut_upload ? (size_t)(t - buf) : (size_t)n;
				}
			}
			bool cut_here = armed && (i == 0) == cut_upload;
			size_t fwd = (size_t)n;
			if (cut_here && i == 0 && fwd - start > budget)
				fwd = start + budget;
			else if (cut_here && i == 1 && fwd > budget)
				fwd = budget;
			send_all(pf[!i].fd, buf, fwd);
			if (cut_here) {
				budget -= i == 0 ? fwd - start : fwd;
				if (fwd < (size_t)n || budget == 0) {
					proxy_log("cut");
					_exit(0);
				}
			}
		}
	}
}

static pid_t start_proxy(int upstream, const char *trigger, bool cut_upload, size_t budget,
                         int *ret_port)
{
	int lfd = listen_loopback(ret_port);
	pid_t pid = fork_tied();
	if (pid == 0) {
		signal(SIGCHLD, SIG_IGN);
		for (;;) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			if (fork_tied() == 0)
				relay(fd, upstream, trigger, cut_upload, budget);
			close(fd);
		}
	}
	close(lfd);
	return pid;
}

static int proxy_count(const char *line)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "exit $(grep -c -x '%s' proxy.log)", line);
	return test_sh("%s", cmd);
}

TEST(registry_proxy_drops_download)
{
	int port = start_registry(false);
	_cleanup_(remote_client_freep) remote_client *c = client_for(port, NULL, 0);
	size_t len = 3 * 1024 * 1024 + 11;
	digest d = push_blob(c, "cairn/drop", len, 5, 1);
	int pport = 0;
	pid_t proxy = start_proxy(port, "GET /v2/cairn/drop/blobs/", false, 1024 * 1024, &pport);
	_cleanup_(remote_client_freep) remote_client *via = client_for(pport, NULL, 0);
	_cleanup_(content_store_freep) content_store *s = open_store();
	ASSERT_EQ(remote_blob_fetch_to_store(via, s, "cairn/drop", d.str, len, ERR), 1);
	ASSERT_OK(content_verify(s, d.str, ERR));
	ASSERT_EQ(proxy_count("cut"), 1);
	ASSERT_EQ(proxy_count("client sent Range"), 1);
	stop(proxy);
	stop_registry();
}

TEST(registry_keepalive)
{
	int port = start_registry(false);
	int pport = 0;
	pid_t proxy = start_proxy(port, "never sent", false, 0, &pport);
	_cleanup_(remote_client_freep) remote_client *c = client_for(pport, NULL, 0);
	ASSERT_OK(remote_ping(c, ERR));
	digest d = push_blob(c, "cairn/ka", 70000, 8, 1);
	for (int i = 0; i < 5; i++)
		expect_blob(c, "cairn/ka", &d, 70000, 8);
	/* One connection carried the ping, the upload and ten requests after it. */
	ASSERT_EQ(proxy_count("connection"), 1);
	stop(proxy);
	stop_registry();
}

static void upload_through_cut(const char *trigger, uint64_t chunk, size_t len, uint32_t seed)
{
	int port = start_registry(false);
	int pport = 0;
	pid_t proxy = start_proxy(port, trigger, true, 300 * 1024, &pport);
	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", pport);
	remote_options o = {.insecure = true, .backoff_ms = 10, .chunk_size = chunk};
	_cleanup_(remote_client_freep) remote_client *via = NULL;
	ASSERT_OK(remote_client_new(host, &o, &via, ERR));
	digest d = push_blob(via, "cairn/up", len, seed, 1);
	ASSERT_EQ(proxy_count("cut"), 1);
	_cleanup_(remote_client_freep) remote_client *c = client_for(port, NULL, 0);
	expect_blob(c, "cairn/up", &d, len, seed);
	stop(proxy);
	stop_registry();
}

TEST(registry_proxy_drops_chunked_upload)
{
	upload_through_cut("PATCH ", 512 * 1024, 2 * 1024 * 1024 + 3, 6);
}

TEST(registry_proxy_drops_monolithic_upload)
{
	upload_through_cut("PUT ", 4 * 1024 * 1024, 1024 * 1024 + 3, 7);
}

TEST(registry_unreachable)
{
	int port = free_port();
	_cleanup_(remote_client_freep) remote_client *c = client_for(port, NULL, 2);
	ASSERT_ERR(remote_ping(c, ERR), -ECONNREFUSED);
	note();
	char host[64];
	snprintf(host, sizeof(host), "registry '127.0.0.1:%d'", port);
	ASSERT_ERRMSG(host);
	ASSERT_ERRMSG("after 2 attempts");
	_cleanup_(remote_manifest_freep) remote_manifest *m = NULL;
	ASSERT_ERR(remote_manifest_get(c, "cairn/x", "latest", NULL, &m, ERR), -ECONNREFUSED);
	note();
	ASSERT_ERRMSG("manifest 'latest' in 'cairn/x'");
	/* A name that does not resolve. */
	remote_options o = {.max_attempts = 1};
	remote_client *n = NULL;
	ASSERT_OK(remote_client_new("no-such-host.invalid", &o, &n, ERR));
	ASSERT_ERR(remote_ping(n, ERR), -EHOSTUNREACH);
	note();
	ASSERT_ERRMSG("no-such-host.invalid");
	remote_client_free(n);
}

/* ---- the misbehaving server ---- */

static int fake_port;
static uint8_t *blob_data;
static digest blob_digest;
static int fake_count[16];

static void fake_log(const char *fmt, ...) _printf_(1, 2);
static void fake_log(const char *fmt, ...)
{
	FILE *f = fopen("fake.log", "ae");
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
		if (k <= 0)
			return;
		p += k;
		len -= (size_t)k;
	}
}

/* A reply head; @len < 0 leaves Content-Length out (close-delimited body). */
static void head(int fd, int status, const char *ctype, long long len, const char *extra)
{
	char h[4096];
	int n = snprintf(h, sizeof(h), "HTTP/1.1 %d X\r\nConnection: close\r\n", status);
	if (ctype)
		n += snprintf(h + n, sizeof(h) - n, "Content-Type: %s\r\n", ctype);
	if (len >= 0)
		n += snprintf(h + n, sizeof(h) - n, "Content-Length: %lld\r\n", len);
	n += snprintf(h + n, sizeof(h) - n, "%s\r\n", extra ? extra : "");
	send_all(fd, h, (size_t)n);
}

static void reply(int fd, bool is_head, int status, const char *ctype, const void *body, size_t len,
                  const char *extra)
{
	head(fd, status, ctype, (long long)len, extra);
	if (!is_head)
		send_all(fd, body, len);
}

/* Serve the test blob from @from (a Range start), or the whole with 200. */
static void serve_blob(int fd, bool is_head, long long from, size_t stop_at)
{
	char extra[256];
	if (from > 0) {
		snprintf(extra, sizeof(extra), "Content-Range: bytes %lld-%d/%d\r\n", from,
		         BLOB_LEN - 1, BLOB_LEN);
		head(fd, 206, "application/octet-stream", BLOB_LEN - from, extra);
	} else {
		head(fd, 200, "application/octet-stream", BLOB_LEN, NULL);
	}
	if (!is_head)
		send_all(fd, blob_data + from, (stop_at ? stop_at : BLOB_LEN) - (size_t)from);
}

static const char *json_404 =
	"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\"}]}";
static const char *html = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>";
static const char *small_manifest = "{\"schemaVersion\":2,\"mediaType\":"
				    "\"application/vnd.oci.image.manifest.v1+json\","
				    "\"config\":{},\"layers\":[]}";

static void serve_big_manifest(int fd, bool with_length)
{
	size_t len = 5u * 1024 * 1024;
	char *body = malloc(len);
	memset(body, ' ', len);
	body[0] = '{';
	body[len - 1] = '}';
	head(fd, 200, REMOTE_MT_OCI_MANIFEST, with_length ? (long long)len : -1, NULL);
	send_all(fd, body, len);
	free(body);
}

static bool bearer_ok(const char *auth)
{
	return strstr(auth, "Bearer secret-token") != NULL;
}

static void route_token(int fd, const char *path, const char *auth)
{
	/* base64("alice:wonder") */
	if (!strstr(auth, "Basic YWxpY2U6d29uZGVy")) {
		const char *e = "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"bad "
				"credentials\"}]}";
		reply(fd, false, 401, "application/json", e, strlen(e), NULL);
		return;
	}
	if (!strstr(path, "service=fake-registry") ||
	    !strstr(path, "scope=repository%3Aprivate%3Apull")) {
		reply(fd, false, 400, "text/plain", "bad scope", 9, NULL);
		return;
	}
	const char *t = "{\"token\":\"secret-token\",\"expires_in\":300}";
	reply(fd, false, 200, "application/json", t, strlen(t), NULL);
}

static void route(int fd, const char *method, const char *path, long long range, const char *auth,
                  const char *crange)
{
	bool is_head = strcmp(method, "HEAD") == 0;
	char blob_path[256], extra[512];
	const char *repo = path + 4;
	snprintf(blob_path, sizeof(blob_path), "/blobs/%s", blob_digest.str);
	bool is_blob = strstr(path, blob_path) != NULL;
#define REPO(r) (strncmp(repo, r "/", strlen(r) + 1) == 0)
	if (strncmp(path, "/token", 6) == 0)
		return route_token(fd, path, auth);
	if (strncmp(path, "/upload/rejects?_state=x%3D1&digest=", 36) == 0) {
		const char *e = "{\"errors\":[{\"code\":\"DIGEST_INVALID\",\"message\":"
				"\"provided digest did not match uploaded content\"}]}";
		return reply(fd, is_head, 400, "application/json", e, strlen(e), NULL);
	}
	if (strcmp(path, "/v2/") == 0)
		return reply(fd, is_head, 200, "application/json", "{}", 2, NULL);
	if (REPO("private")) {
		if (!bearer_ok(auth)) {
			snprintf(extra, sizeof(extra),
			         "WWW-Authenticate: Negotiate\r\n"
			         "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\","
			         "service=\"fake-registry\",scope=\"repository:private:pull\"\r\n",
			         fake_port);
			const char *e = "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":"
					"\"authentication required\"}]}";
			return reply(fd, is_head, 401, "application/json", e, strlen(e), extra);
		}
		if (is_blob) {
			/* To storage elsewhere: the token must not follow. */
			snprintf(extra, sizeof(extra),
			         "Location: http://localhost:%d/v2/ok%s?from=private\r\n",
			         fake_port, blob_path);
			return reply(fd, is_head, 307, NULL, "", 0, extra);
		}
		return reply(fd, is_head, 200, REMOTE_MT_OCI_MANIFEST, small_manifest,
		             strlen(small_manifest), NULL);
	}
	if (is_blob && REPO("ok"))
		return serve_blob(fd, is_head, range, 0);
	if (is_blob && REPO("drop1"))
		return serve_blob(fd, is_head, range, fake_count[0]++ == 0 ? BLOB_LEN / 2 : 0);
	if (is_blob && REPO("dropall"))
		return serve_blob(fd, is_head, range, (size_t)range + 1000);
	if (is_blob && REPO("norange"))
		return serve_blob(fd, is_head, 0, fake_count[0]++ == 0 ? BLOB_LEN / 3 : 0);
	if (is_blob && REPO("wrong")) {
		_cleanup_free_ uint8_t *other = gen(BLOB_LEN, 99);
		return reply(fd, is_head, 200, "application/octet-stream", other, BLOB_LEN, NULL);
	}
	if (is_blob && REPO("long")) {
		head(fd, 200, "application/octet-stream", -1, NULL);
		send_all(fd, blob_data, BLOB_LEN);
		return send_all(fd, "extra", 5);
	}
	if (is_blob && REPO("e503")) {
		if (fake_count[0]++ == 0)
			return reply(fd, is_head, 503, "text/html", html, strlen(html), NULL);
		return serve_blob(fd, is_head, range, 0);
	}
	if (REPO("status") && strcmp(method, "POST") == 0)
		return reply(fd, is_head, 202, NULL, "", 0, "Location: /up/status\r\n");
	if (strcmp(path, "/up/status") == 0 && strcmp(method, "PATCH") == 0) {
		unsigned long long a = 0, b = 0;
		if (sscanf(crange, "%llu-%llu", &a, &b) != 2 || fake_count[1]++ == 1)
			return reply(fd, is_head, 500, "text/plain", "oops", 4, NULL);
		snprintf(extra, sizeof(extra), "Range: 0-%llu\r\nLocation: /up/status\r\n", b);
		return reply(fd, is_head, 202, NULL, "", 0, extra);
	}
	if (strcmp(path, "/up/status") == 0 && strcmp(method, "GET") == 0)
		return reply(fd, is_head, 204, NULL, "", 0, "Range: 0-65535\r\n");
	if (strncmp(path, "/up/status?digest=", 18) == 0) {
		snprintf(extra, sizeof(extra), "Docker-Content-Digest: %s\r\n", blob_digest.str);
		return reply(fd, is_head, 201, NULL, "", 0, extra);
	}
	if (REPO("rejects") && strcmp(method, "POST") == 0) {
		snprintf(extra, sizeof(extra), "Location: /upload/rejects?_state=x%%3D1\r\n");
		return reply(fd, is_head, 202, NULL, "", 0, extra);
	}
	if (is_blob && REPO("always503"))
		return reply(fd, is_head, 503, "text/html", html, strlen(html), NULL);
	if (is_blob && REPO("redir")) {
		snprintf(extra, sizeof(extra), "Location: http://127.0.0.1:%d/v2/ok%s\r\n",
		         fake_port, blob_path);
		return reply(fd, is_head, 307, NULL, "", 0, extra);
	}
	if (is_blob && REPO("evilredir"))
		return reply(fd, is_head, 302, NULL, "", 0, "Location: file:///etc/passwd\r\n");
	if (REPO("big"))
		return serve_big_manifest(fd, true);
	if (REPO("bigchunked"))
		return serve_big_manifest(fd, false);
	if (REPO("html"))
		return reply(fd, is_head, 200, "text/html", html, strlen(html), NULL);
	if (REPO("html404"))
		return reply(fd, is_head, 404, "text/html", html, strlen(html), NULL);
	if (REPO("confused"))
		return reply(fd, is_head, 200, REMOTE_MT_DOCKER_LIST, small_manifest,
		             strlen(small_manifest), NULL);
	if (REPO("baddigest")) {
		snprintf(extra, sizeof(extra), "Docker-Content-Digest: %s\r\n", blob_digest.str);
		return reply(fd, is_head, 200, REMOTE_MT_OCI_MANIFEST, small_manifest,
		             strlen(small_manifest), extra);
	}
	reply(fd, is_head, 404, "application/json", json_404, strlen(json_404), NULL);
#undef REPO
}

static void header_value(const char *req, const char *name, char *out, size_t size)
{
	out[0] = 0;
	const char *p = strcasestr(req, name);
	if (!p)
		return;
	p += strlen(name);
	size_t n = strcspn(p, "\r\n");
	snprintf(out, size, "%.*s", (int)(n < size - 1 ? n : size - 1), p);
}

/* One request per connection (Connection: close), so one process serves all in order. */
static void serve_one(int fd)
{
	char req[65536];
	size_t n = 0;
	while (n < sizeof(req) - 1) {
		ssize_t k = recv(fd, req + n, sizeof(req) - 1 - n, 0);
		if (k <= 0)
			return;
		n += (size_t)k;
		req[n] = 0;
		if (req[0] == 0x16) /* a TLS ClientHello: answer as a plain http server does */
			return reply(fd, false, 400, "text/plain", "not TLS", 7, NULL);
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	char method[16], path[4096], range[64], auth[512], clen[32], crange[64];
	if (sscanf(req, "%15s %4095s", method, path) != 2)
		return;
	header_value(req, "\r\nRange: bytes=", range, sizeof(range));
	header_value(req, "\r\nAuthorization: ", auth, sizeof(auth));
	header_value(req, "\r\nContent-Length: ", clen, sizeof(clen));
	header_value(req, "\r\nContent-Range: ", crange, sizeof(crange));
	fake_log("%s %s range=%s crange=%s auth=%s", method, path, range, crange,
	         auth[0] ? "yes" : "no");
	/* Drain a request body. */
	long long body = atoll(clen) - (long long)(n - (size_t)(strstr(req, "\r\n\r\n") + 4 - req));
	while (body > 0) {
		ssize_t k = recv(fd, req, sizeof(req), 0);
		if (k <= 0)
			return;
		body -= k;
	}
	route(fd, method, path, range[0] ? atoll(range) : 0, auth, crange);
}

static pid_t start_fake(void)
{
	blob_data = gen(BLOB_LEN, 7);
	digest_buffer(blob_data, BLOB_LEN, &blob_digest);
	int lfd = listen_loopback(&fake_port);
	pid_t pid = fork_tied();
	if (pid == 0) {
		for (;;) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			serve_one(fd);
			shutdown(fd, SHUT_WR);
			close(fd);
		}
	}
	close(lfd);
	return pid;
}

/* Lines of fake.log containing @needle. */
static int log_count(const char *needle)
{
	FILE *f = fopen("fake.log", "re");
	char line[8192];
	int n = 0;
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	if (f)
		fclose(f);
	return n;
}

static int fake_get(remote_client *c, const char *repo, struct membuf *got)
{
	return remote_blob_get(c, repo, blob_digest.str, BLOB_LEN, 0, 0, collect, got, ERR);
}

static void expect_fake_blob(const struct membuf *got)
{
	ASSERT_EQ(got->len, BLOB_LEN);
	ASSERT_TRUE(memcmp(got->p, blob_data, BLOB_LEN) == 0);
}

TEST(fake_blob_ok_and_redirect)
{
	pid_t pid = start_fake();
	_cleanup_(remote_client_freep) remote_client *c = client_for(fake_port, NULL, 0);
	struct membuf got = {0};
	ASSERT_OK(fake_get(c, "ok", &got));
	expect_fake_blob(&got);
	free(got.p);
	got = (struct membuf){0};
	ASSERT_OK(fake_get(c, "redir", &got));
	expect_fake_blob(&got);
	free(got.p);
	/* A redirect to file:// is not followed. */
	got = (struct membuf){0};
	ASSERT_ERR(fake_get(c, "evilredir", &got), -EPROTO);
	note();
	ASSERT_ERRMSG("evilredir");
	ASSERT_EQ(got.len, 0);
	stop(pid);
}

TEST(fake_drop_resumes_with_range)
{
	pid_t pid = start_fake();
	_cleanup_(remote_client_freep) remote_client *c = client_for(fake_port, NULL, 0);
	struct membuf got = {0};
	ASSERT_OK(fake_get(c, "drop1", &got));
	expect_fake_blob(&got);
	char want[64];
	snprintf(want, sizeof(want), "range=%d", BLOB_LEN / 2);
	ASSERT_EQ(log_count(want), 1);
	free(got.p);
	/* A server that ignores Range: the first bytes are skipped, not written twice. */
	got = (struct membuf){0};
	ASSERT_OK(fake_get(c, "norange", &got));
	expect_fake_blob(&got);
	free(got.p);
	stop(pid);
}

static content_store *open_store(void)
{
	ASSERT_TRUE(mkdir("store", 0755) == 0 || errno == EEXIST);
	_cleanup_close_ int fd = open("store", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	content_store *s = NULL;
	ASSERT_OK(content_store_open(fd, &s, ERR));
	return s;
}

static int count_ingest(const content_ingest_status *st, void *ud)
{
	(*(int *)ud)++;
	return 0;
}

static int ingests(content_store *s)
{
	int n = 0;
	ASSERT_OK(content_list_ingests(s, count_ingest, &n, ERR));
	return n;
}

TEST(fake_fetch_to_store_resumes_across_calls)
{
	pid_t pid = start_fake();
	_cleanup_(content_store_freep) content_store *s = open_store();
	/* One attempt only: the drop fails the call, the ingest keeps the first half. */
	remote_client *one = client_for(fake_port, NULL, 1);
	ASSERT_ERR(remote_blob_fetch_to_store(one, s, "drop1", blob_digest.str, BLOB_LEN, ERR),
	           -ECONNRESET);
	note();
	ASSERT_ERRMSG(blob_digest.str);
	remote_client_free(one);
	ASSERT_EQ(ingests(s), 1);
	ASSERT_EQ(content_exists(s, blob_digest.str, ERR), 0);
	/* The next call resumes after those bytes with Range. */
	_cleanup_(remote_client_freep) remote_client *c = client_for(fake_port, NULL, 0);
	ASSERT_EQ(remote_blob_fetch_to_store(c, s, "drop1", blob_digest.str, BLOB_LEN, ERR), 1);
	char want[64];
	snprintf(want, sizeof(want), "range=%d", BLOB_LEN / 2);
	ASSERT_EQ(log_count(want), 1);
	ASSERT_OK(content_verify(s, blob_digest.str, ERR));
	ASSERT_EQ(ingests(s), 0);
	/* Present: nothing is fetched. */
	ASSERT_EQ(remote_blob_fetch_to_store(c, s, "drop1", blob_digest.str, BLOB_LEN, ERR), 0);
	/* A server that drops every reply after 1000 bytes still gets there within the attempts
	 * of one call, each resuming where the last stopped. */
	ASSERT_OK(content_delete(s, blob_digest.str, ERR));
	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", fake_port);
	remote_options o = {.insecure = true, .backoff_ms = 1, .max_attempts = 3};
	remote_client *few = NULL;
	ASSERT_OK(remote_client_new(host, &o, &few, ERR));
	ASSERT_ERR(remote_blob_fetch_to_store(few, s, "dropall", blob_digest.str, BLOB_LEN, ERR),
	           -ECONNRESET);
	note();
	ASSERT_ERRMSG("after 3 attempts");
	content_ingest_status st;
	char ref[128];
	snprintf(ref, sizeof(ref), "remote-%s", blob_digest.str);
	ASSERT_OK(content_status(s, ref, &st, ERR));
	ASSERT_EQ(st.offset, 3000);
	remote_client_free(few);
	stop(pid);
}

TEST(fake_wrong_bytes_detected)
{
	pid_t pid = start_fake();
	_cleanup_(remote_client_freep) remote_client *c = client_for(fake_port, NULL, 0);
	struct membuf got = {0};
	ASSERT_ERR(fake_get(c, "wrong", &got), CAIRN_EDIGEST);
	note();
	ASSERT_ERRMSG(blob_digest.str);
	ASSERT_ERRMSG("in 'wrong'");
	free(got.p);
	/* Into the store: nothing committed, no ingest left. */
	_cleanup_(content_store_freep) content_store *s = open_store();
	ASSERT_ERR(remote_blob_fetch_to_store(c, s, "wrong", blob_digest.str, BLOB_LEN, ERR),
	           CAIRN_EDIGEST);
	note();
	ASSERT_ERRMSG("registry '127.0.0.1:");
	ASSERT_EQ(content_exists(s, blob_digest.str, ERR), 0);
	ASSERT_EQ(ingests(s), 0);
	/* More bytes than the descriptor's size. */
	got = (struct membuf){0};
	ASSERT_ERR(fake_get(c, "long", &got), -EPROTO);
	note();
	ASSERT_ERRMSG("more than");
	ASSERT_ERR(remote_blob_fetch_to_store(c, s, "long", blob_digest.str, BLOB_LEN, ERR),
	           -EPROTO);
	note();
	ASSERT_EQ(ingests(s), 0);
	free(got.p);
	stop(pid);
}

TEST(fake_upload_rejected_by_registry)
{
	pid_t pid = start_fake();
	_cleanup_(remote_client_freep) remote_client *c = client_for(fake_port, NULL, 0);
	struct membuf b = {blob_data, BLOB_LEN};
	ASSERT_ERR(
		remote_blob_put(c, "rejects", blob_digest.str, BLOB_LEN, mem_source, &b, NULL, ERR),
		CAIRN_EDIGEST);
	note();
	ASSERT_ERRMSG("DIGEST_INVALID");
	ASSERT_ERRMSG("in 'rejects'");
	/* The session was created relative to the registry, the digest appended to its query,
	 * and cancelled after the failure. */
	ASSERT_EQ(log_count("HEAD /v2/rejects/blobs/"), 1);
	ASSERT_EQ(log_count("POST /v2/rejects/blobs/uploads/ "), 1);
	ASSERT_EQ(log_count("DELETE /upload/rejects?_state=x%3D1 "), 1);
	stop(pid);
}

TEST(fake_chunked_upload_resumes_from_status)
{
	pid_t pid = start_fake();
	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", fake_port);
	remote_options o = {.insecure = true, .backoff_ms = 1, .chunk_size = 64 * 1024};
	_cleanup_(remote_client_freep) remote_client *c = NULL;
	ASSERT_OK(remote_client_new(host, &o, &c, ERR));
	struct membuf b = {blob_data, BLOB_LEN};
	ASSERT_EQ(
		remote_blob_put(c, "status", blob_digest.str, BLOB_LEN, mem_source, &b, NULL, ERR),
		1);
	/* The second chunk failed; the session said it holds 64 KiB; the upload went on from
	 * there: 17 chunks, one of them twice, and the closing PUT. */
	ASSERT_EQ(log_count("GET /up/status "), 1);
	ASSERT_EQ(log_count("PATCH /up/status "), 18);
	ASSERT_EQ(log_count("crange=65536-131071 "), 2);
	ASSERT_EQ(log_count("PUT /up/status?digest="), 1);
	stop(pid);
}

TEST(fake_503_retried)
{
	pid_t pid = start_fake();
	_cleanup_(remote_client_freep) remote_client *c = client_for(fake_port, NULL, 0);
	struct membuf got = {0};
	ASSERT_OK(fake_get(c, "e503", &got));
	expect_fake_blob(&got);
	ASSERT_EQ(log_count("GET /v2/e503/"), 2);
	free(got.p);
	remote_client *few = client_for(fake_port, NULL, 3);
	got = (struct membuf){0};
	ASSERT_ERR(fake_get(few, "always503", &got), -EIO);
	note();
	ASSERT_ERRMSG("status 503");
	ASSERT_ERRMSG("HTML/non-JSON");
	ASSERT_ERRMSG("in 'always503'");
	ASSERT_EQ(log_count("GET /v2/always503/"), 3);
	remote_client_free(few);
	free(got.p);
	stop(pid);
}

TEST(fake_manifest_hostile)
{
	pid_t pid = start_fake();
	_cleanup_(remote_client_freep) remote_client *c = client_for(fake_port, NULL, 0);
	remote_manifest *m = NULL;
	ASSERT_ERR(remote_manifest_get(c, "big", "latest", NULL, &m, ERR), -EFBIG);
	note();
	ASSERT_ERRMSG("manifest 'latest' in 'big'");
	ASSERT_ERR(remote_manifest_get(c, "bigchunked", "latest", NULL, &m, ERR), -EFBIG);
	note();
	ASSERT_ERR(remote_manifest_get(c, "html", "latest", NULL, &m, ERR), -EPROTO);
	note();
	ASSERT_ERRMSG("HTML/non-JSON");
	ASSERT_ERRMSG("manifest 'latest' in 'html'");
	ASSERT_ERR(remote_manifest_get(c, "html404", "v1", NULL, &m, ERR), -ENOENT);
	note();
	ASSERT_ERRMSG("HTML/non-JSON");
	ASSERT_ERR(remote_manifest_get(c, "json404", "v1", NULL, &m, ERR), -ENOENT);
	note();
	ASSERT_ERRMSG("MANIFEST_UNKNOWN: manifest unknown");
	ASSERT_ERR(remote_manifest_get(c, "confused", "latest", NULL, &m, ERR), -EPROTO);
	note();
	ASSERT_ERRMSG("mediaType");
	ASSERT_ERR(remote_manifest_get(c, "baddigest", "latest", NULL, &m, ERR), CAIRN_EDIGEST);
	note();
	ASSERT_ERRMSG("Docker-Content-Digest");
	ASSERT_TRUE(m == NULL);
	stop(pid);
}

TEST(fake_bearer_token)
{
	pid_t pid = start_fake();
	_cleanup_(remote_client_freep) remote_client *c = client_for(fake_port, "alice:wonder", 0);
	_cleanup_(remote_manifest_freep) remote_manifest *m = NULL;
	ASSERT_OK(remote_manifest_get(c, "private", "latest", NULL, &m, ERR));
	ASSERT_STREQ(m->media_type, REMOTE_MT_OCI_MANIFEST);
	ASSERT_EQ(log_count("GET /token?"), 1);
	/* The token is reused. */
	remote_manifest_free(TAKE_PTR(m));
	ASSERT_OK(remote_manifest_get(c, "private", "latest", NULL, &m, ERR));
	ASSERT_EQ(log_count("GET /token?"), 1);
	/* By digest, verified. */
	digest d;
	digest_buffer(small_manifest, strlen(small_manifest), &d);
	remote_manifest_free(TAKE_PTR(m));
	ASSERT_OK(remote_manifest_get(c, "private", d.str, NULL, &m, ERR));
	ASSERT_STREQ(m->digest, d.str);
	remote_manifest_free(TAKE_PTR(m));
	ASSERT_ERR(remote_manifest_get(c, "private", blob_digest.str, NULL, &m, ERR),
	           CAIRN_EDIGEST);
	note();
	/* A blob redirected to another host: fetched, without the token. */
	struct membuf got = {0};
	ASSERT_OK(fake_get(c, "private", &got));
	expect_fake_blob(&got);
	free(got.p);
	ASSERT_EQ(log_count("?from=private range= crange= auth=no"), 1);
	ASSERT_EQ(log_count("GET /token?"), 1);
	/* Anonymous and wrong credentials: the token server refuses. */
	remote_client *anon = client_for(fake_port, NULL, 0);
	ASSERT_ERR(remote_manifest_get(anon, "private", "latest", NULL, &m, ERR), -EACCES);
	note();
	ASSERT_ERRMSG("refused anonymous access");
	ASSERT_ERRMSG("manifest 'latest' in 'private'");
	remote_client_free(anon);
	remote_client *wrong = client_for(fake_port, "alice:rabbit", 0);
	ASSERT_ERR(remote_manifest_get(wrong, "private", "latest", NULL, &m, ERR), -EACCES);
	note();
	ASSERT_ERRMSG("bad credentials");
	remote_client_free(wrong);
	stop(pid);
}

TEST(fake_tls_required)
{
	pid_t pid = start_fake();
	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", fake_port);
	remote_options o = {.max_attempts = 1};
	_cleanup_(remote_client_freep) remote_client *c = NULL;
	ASSERT_OK(remote_client_new(host, &o, &c, ERR));
	ASSERT_TRUE(remote_ping(c, ERR) < 0);
	ASSERT_ERRMSG(host);
	ASSERT_ERRMSG("API version check");
	ASSERT_EQ(log_count("GET /v2/ "), 0);
	stop(pid);
}

TEST(reference_parse)
{
	remote_ref r;
	ASSERT_OK(remote_ref_parse("busybox", &r, ERR));
	ASSERT_STREQ(r.registry, "docker.io");
	ASSERT_STREQ(r.repo, "library/busybox");
	ASSERT_STREQ(remote_ref_reference(&r), "latest");
	ASSERT_OK(remote_ref_parse("localhost:5000/a/b-c__d.e:v1.2", &r, ERR));
	ASSERT_STREQ(r.registry, "localhost:5000");
	ASSERT_STREQ(r.repo, "a/b-c__d.e");
	ASSERT_STREQ(r.tag, "v1.2");
	ASSERT_OK(remote_ref_parse("index.docker.io/user/app:1", &r, ERR));
	ASSERT_STREQ(r.registry, "docker.io");
	ASSERT_STREQ(r.repo, "user/app");
	const char *dg = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
	char s[256];
	snprintf(s, sizeof(s), "ghcr.io/o/r:t@%s", dg);
	ASSERT_OK(remote_ref_parse(s, &r, ERR));
	ASSERT_STREQ(r.registry, "ghcr.io");
	ASSERT_STREQ(r.tag, "t");
	ASSERT_STREQ(remote_ref_reference(&r), dg);
	ASSERT_OK(remote_ref_parse("[::1]:5000/x", &r, ERR));
	ASSERT_STREQ(r.registry, "[::1]:5000");
	const char *bad[] = {"",
	                     "UPPER/case",
	                     "a//b",
	                     "a/-b",
	                     "a/b-",
	                     "x:",
	                     "x:-tag",
	                     "reg.io/a/b:"
	                     "tag/x",
	                     "a..b",
	                     "a___b",
	                     "host:99999999/x",
	                     "x@sha256:abc",
	                     "-bad.io/x",
	                     "a/b:t t"};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		int k = remote_ref_parse(bad[i], &r, ERR);
		if (k >= 0)
			test_fail(__FILE__, __LINE__, "'%s' parsed", bad[i]);
	}
	char longtag[200];
	memset(longtag, 'a', sizeof(longtag));
	snprintf(longtag, sizeof(longtag), "x:%0129d", 0);
	ASSERT_ERR(remote_ref_parse(longtag, &r, ERR), -EINVAL);
	note();
	ASSERT_ERRMSG("invalid tag");
}

static void creds_from(const char *registry, const char *config, const char *want_user,
                       const char *want_pass)
{
	ASSERT_TRUE(mkdir("cfg", 0700) == 0 || errno == EEXIST);
	test_write_file("cfg/config.json", config);
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/cfg", test_dir);
	setenv("DOCKER_CONFIG", dir, 1);
	remote_options o = {0};
	_cleanup_(remote_client_freep) remote_client *c = NULL;
	ASSERT_OK(remote_client_new(registry, &o, &c, ERR));
	if (!want_user) {
		ASSERT_TRUE(c->user == NULL);
	} else {
		ASSERT_STREQ(c->user, want_user);
		ASSERT_STREQ(c->pass, want_pass);
	}
	unsetenv("DOCKER_CONFIG");
}

TEST(docker_config_credentials)
{
	/* Docker Hub's historical key; "auth" is base64 of USER:PASS ("bob:pa:ss" here). */
	creds_from("docker.io",
	           "{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":"
	           "\"Ym9iOnBhOnNz\"}}}",
	           "bob", "pa:ss");
	creds_from("ghcr.io", "{\"auths\":{\"ghcr.io\":{\"username\":\"u\",\"password\":\"p\"}}}",
	           "u", "p");
	/* Credential helpers are not supported: such entries are skipped, access is anonymous. */
	creds_from("ghcr.io", "{\"credsStore\":\"desktop\",\"auths\":{\"ghcr.io\":{}}}", NULL,
	           NULL);
	creds_from("quay.io", "{\"auths\":{\"ghcr.io\":{\"auth\":\"Ym9iOnBhOnNz\"}}}", NULL, NULL);
	/* --creds wins over the file; a value without ':' is refused. */
	remote_options o = {.creds = "carol:x"};
	_cleanup_(remote_client_freep) remote_client *c = NULL;
	ASSERT_OK(remote_client_new("quay.io", &o, &c, ERR));
	ASSERT_STREQ(c->user, "carol");
	remote_client *bad = NULL;
	o.creds = "nocolon";
	ASSERT_ERR(remote_client_new("quay.io", &o, &bad, ERR), -EINVAL);
	note();
	ASSERT_ERRMSG("quay.io");
	/* Bad base64 is an error naming the file. */
	ASSERT_TRUE(mkdir("cfg2", 0700) == 0);
	test_write_file("cfg2/config.json", "{\"auths\":{\"quay.io\":{\"auth\":\"!!!\"}}}");
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/cfg2", test_dir);
	setenv("DOCKER_CONFIG", dir, 1);
	o.creds = NULL;
	ASSERT_ERR(remote_client_new("quay.io", &o, &bad, ERR), -EINVAL);
	note();
	ASSERT_ERRMSG("cfg2/config.json");
	/* Invalid registry names. */
	ASSERT_ERR(remote_client_new("bad host", &o, &bad, ERR), -EINVAL);
	ASSERT_ERR(remote_client_new("x.io/path", &o, &bad, ERR), -EINVAL);
}
