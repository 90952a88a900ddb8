/* SPDX-License-Identifier: MIT */
/* Internal side of cairn_error: raising and prefixing. */
#pragma once

#include <stdarg.h>

#include "cairn/error.h"
#include "cleanup.h"

struct cairn_error {
	int code;
	char *message;
};

/*
 * err_set() - store a new error in *@reterr (when @reterr is non-NULL and *@reterr is NULL; a
 * first error is never overwritten) with the formatted message. Returns @code, so a failure site
 * reads `return err_set(reterr, -EINVAL, "bad key '%s'", key);`. On OOM the message is a static
 * fallback; the code is kept.
 */
int err_set(cairn_error **reterr, int code, const char *fmt, ...) _printf_(3, 4);

/* err_errno() - as err_set(), appending ": <strerror(code)>" to the message. */
int err_errno(cairn_error **reterr, int code, const char *fmt, ...) _printf_(3, 4);

/*
 * err_prefix() - prepend "<formatted>: " to the message of *@reterr (if any). Returns the error's
 * code, or -EIO if there was none, so callers write `return err_prefix(reterr, "import '%s'", p);`.
 * Use only after a call that failed.
 */
int err_prefix(cairn_error **reterr, const char *fmt, ...) _printf_(2, 3);

/* err_free() - NULL-safe free, usable as a cleanup: `_cleanup_(cairn_error_freep)`. */
static inline void cairn_error_freep(cairn_error **e)
{
	cairn_error_free(*e);
}
