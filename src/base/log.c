/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdarg.h>

#include "config.h"
#include "log.h"

static pthread_rwlock_t log_lock = PTHREAD_RWLOCK_INITIALIZER;
static cairn_log_fn log_fn;
static void *log_userdata;

void cairn_log_set(cairn_log_fn fn, void *userdata)
{
	pthread_rwlock_wrlock(&log_lock);
	log_fn = fn;
	log_userdata = userdata;
	pthread_rwlock_unlock(&log_lock);
}

const char *cairn_version(void)
{
	return CAIRN_VERSION;
}

void log_debug(const char *fmt, ...)
{
	pthread_rwlock_rdlock(&log_lock);
	if (log_fn) {
		char *msg = NULL;
		va_list ap;
		va_start(ap, fmt);
		if (vasprintf(&msg, fmt, ap) >= 0)
			log_fn(CAIRN_LOG_DEBUG, msg, log_userdata);
		va_end(ap);
		free(msg);
	}
	pthread_rwlock_unlock(&log_lock);
}
