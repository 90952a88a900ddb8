/* SPDX-License-Identifier: MIT */
/* Shared public definitions: logging and library version. */
#ifndef CAIRN_COMMON_H
#define CAIRN_COMMON_H

#include "cairn/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
	CAIRN_LOG_ERROR = 3,
	CAIRN_LOG_WARNING = 4,
	CAIRN_LOG_INFO = 6,
	CAIRN_LOG_DEBUG = 7,
} cairn_log_level;

/* A log sink: @level, the message (no trailing newline, borrowed for the call), @userdata. */
typedef void (*cairn_log_fn)(cairn_log_level level, const char *message, void *userdata);

/*
 * cairn_log_set() - install @fn (NULL: silent, the default) for every store of the process.
 * The library logs only at CAIRN_LOG_DEBUG; failures travel in cairn_error, never in logs.
 * Locking: takes a process-wide lock; @fn may be called from any thread, concurrently.
 */
CAIRN_PUBLIC void cairn_log_set(cairn_log_fn fn, void *userdata);

/* cairn_version() - the library version string, static. */
CAIRN_PUBLIC const char *cairn_version(void);

#ifdef __cplusplus
}
#endif
#endif
