/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define MAX_TESTS 512

static struct test_case tests[MAX_TESTS];
static size_t n_tests;
char test_dir[4096];
cairn_error *test_err;

void test_register(const char *name, void (*fn)(void))
{
	if (n_tests == MAX_TESTS) {
		fprintf(stderr, "too many tests\n");
		abort();
	}
	tests[n_tests++] = (struct test_case){name, fn};
}

cairn_error **test_reterr(void)
{
	test_err = cairn_error_free(test_err);
	return &test_err;
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stdout, "# %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fprintf(stdout, "\n");
	fflush(stdout);
	_exit(1);
}

void test_skip(const char *why)
{
	fprintf(stdout, "# SKIP %s\n", why);
	fflush(stdout);
	_exit(77);
}

void test_write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "we");
	if (!f)
		test_fail(__FILE__, __LINE__, "fopen '%s': %m", path);
	fputs(content, f);
	if (fclose(f) != 0)
		test_fail(__FILE__, __LINE__, "write '%s': %m", path);
}

int test_sh(const char *fmt, ...)
{
	char *cmd = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0)
		cmd = NULL;
	va_end(ap);
	if (!cmd)
		return -1;
	fflush(stdout);
	int st = system(cmd);
	free(cmd);
	return st < 0 ? -1 : (WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static int run_one(const struct test_case *t, char *skip_reason, size_t len)
{
	char tmpl[] = "/tmp/cairn-test-XXXXXX";
	const char *base = getenv("CAIRN_TEST_TMPDIR");
	if (base)
		snprintf(test_dir, sizeof(test_dir), "%s/cairn-test-XXXXXX", base);
	else
		snprintf(test_dir, sizeof(test_dir), "%s", tmpl);
	if (!mkdtemp(test_dir)) {
		snprintf(skip_reason, len, "mkdtemp: %m");
		return 1;
	}
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return 1;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		if (chdir(test_dir) < 0)
			_exit(1);
		dup2(pipefd[1], STDOUT_FILENO);
		t->fn();
		fflush(stdout);
		_exit(0);
	}
	close(pipefd[1]);
	/* Relay the child's diagnostics; remember a skip reason. */
	FILE *in = fdopen(pipefd[0], "r");
	char line[4096];
	skip_reason[0] = 0;
	while (in && fgets(line, sizeof(line), in)) {
		if (strncmp(line, "# SKIP ", 7) == 0) {
			snprintf(skip_reason, len, "%.*s", (int)(len - 1), line + 7);
			skip_reason[strcspn(skip_reason, "\n")] = 0;
		} else {
			fputs(line, stdout);
		}
	}
	if (in)
		fclose(in);
	int st = 0;
	waitpid(pid, &st, 0);
	if (!getenv("CAIRN_TEST_KEEP"))
		test_sh("umount -R -l '%s'/* >/dev/null 2>&1; rm -rf '%s'", test_dir, test_dir);
	if (WIFSIGNALED(st)) {
		printf("# killed by signal %d\n", WTERMSIG(st));
		return 1;
	}
	return WEXITSTATUS(st);
}

int main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : getenv("CAIRN_TEST_ONLY");
	size_t planned = 0;
	for (size_t i = 0; i < n_tests; i++)
		if (!only || strcmp(only, tests[i].name) == 0)
			planned++;
	printf("1..%zu\n", planned);
	int failed = 0;
	size_t n = 0;
	for (size_t i = 0; i < n_tests; i++) {
		if (only && strcmp(only, tests[i].name) != 0)
			continue;
		char reason[512];
		int rc = run_one(&tests[i], reason, sizeof(reason));
		n++;
		if (rc == 0)
			printf("ok %zu - %s\n", n, tests[i].name);
		else if (rc == 77)
			printf("ok %zu - %s # SKIP %s\n", n, tests[i].name, reason);
		else {
			printf("not ok %zu - %s\n", n, tests[i].name);
			failed++;
		}
		fflush(stdout);
	}
	return failed ? 1 : 0;
}
