/* SPDX-License-Identifier: MIT */
/*
 * A small test harness. Each test file defines TEST(name) functions; main() (harness.c) runs
 * each in a forked child inside a fresh temporary directory (its path in test_dir, also the
 * cwd), and prints TAP. A test fails on the first failed ASSERT_*; it skips by calling
 * test_skip("why"), which exits 77. A child that crashes counts as failed.
 */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

struct test_case {
	const char *name;
	void (*fn)(void);
};

void test_register(const char *name, void (*fn)(void));
_Noreturn void test_fail(const char *file, int line, const char *fmt, ...) _printf_(3, 4);
_Noreturn void test_skip(const char *why);
extern char test_dir[];
/* The error most recent ASSERT_OK-style calls may have filled in; reset by each ASSERT. */
extern cairn_error *test_err;

#define TEST(name)                                                                                 \
	static void test_##name(void);                                                             \
	__attribute__((constructor)) static void register_##name(void)                             \
	{                                                                                          \
		test_register(#name, test_##name);                                                 \
	}                                                                                          \
	static void test_##name(void)

/* &test_err after clearing it, for passing as the reterr of the call under test. */
cairn_error **test_reterr(void);
#define ERR test_reterr()

#define ASSERT_OK(expr)                                                                            \
	do {                                                                                       \
		long long _r = (long long)(expr);                                                  \
		if (_r < 0)                                                                        \
			test_fail(__FILE__, __LINE__, "%s = %lld (%s): %s", #expr, _r,             \
			          cairn_strerror((int)_r), cairn_error_message(test_err));         \
	} while (0)

#define ASSERT_ERR(expr, code)                                                                     \
	do {                                                                                       \
		long long _r = (long long)(expr);                                                  \
		if (_r != (code))                                                                  \
			test_fail(__FILE__, __LINE__, "%s = %lld (%s), expected %s (%d): %s",      \
			          #expr, _r, cairn_strerror((int)_r), #code, (int)(code),          \
			          cairn_error_message(test_err));                                  \
	} while (0)

#define ASSERT_TRUE(expr)                                                                          \
	do {                                                                                       \
		if (!(expr))                                                                       \
			test_fail(__FILE__, __LINE__, "expected true: %s", #expr);                 \
	} while (0)
#define ASSERT_FALSE(expr) ASSERT_TRUE(!(expr))

#define ASSERT_EQ(a, b)                                                                            \
	do {                                                                                       \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		if (_a != _b)                                                                      \
			test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, _a, _b);   \
	} while (0)

#define ASSERT_STREQ(a, b)                                                                         \
	do {                                                                                       \
		const char *_a = (a), *_b = (b);                                                   \
		if (!_a || !_b || strcmp(_a, _b) != 0)                                             \
			test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,        \
			          _a ? _a : "(null)", _b ? _b : "(null)");                         \
	} while (0)

/* The error message of the last call contains @needle. */
#define ASSERT_ERRMSG(needle)                                                                      \
	do {                                                                                       \
		if (!strstr(cairn_error_message(test_err), (needle)))                              \
			test_fail(__FILE__, __LINE__, "error message \"%s\" lacks \"%s\"",         \
			          cairn_error_message(test_err), (needle));                        \
	} while (0)

/* Write @content to @path (relative to cwd) or fail the test. */
void test_write_file(const char *path, const char *content);
/* Run a shell command; returns its exit status (or -1). */
int test_sh(const char *fmt, ...) _printf_(1, 2);
