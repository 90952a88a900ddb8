/* SPDX-License-Identifier: MIT */
/* Diagnostics: the library never prints; it hands debug lines to a callback (silent by default). */
#pragma once

#include "cairn/common.h"
#include "error.h"
#include "cleanup.h"

/* log_debug() - format and pass to the installed callback, if any. Thread-safe. */
void log_debug(const char *fmt, ...) _printf_(1, 2);
