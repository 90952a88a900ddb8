/* SPDX-License-Identifier: MIT */
/*
 * Worker threads that never take signals: the library's helper threads (inflate producer,
 * deflate workers, writeback flusher) start with every signal blocked, so signals stay with
 * the caller's threads and its handlers.
 */
#pragma once

#include <pthread.h>
#include <signal.h>

/*
 * thread_spawn() - pthread_create() of @fn(@arg) with all signals blocked in the new thread.
 * Returns 0, or the positive error number of pthread_create(). The caller joins *@ret.
 */
static inline int thread_spawn(pthread_t *ret, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int k = pthread_create(ret, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return k;
}
