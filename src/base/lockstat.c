/* SPDX-License-Identifier: MIT */
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "lockstat.h"

static atomic_int enabled = -1; /* -1: not decided yet */
static _Atomic int64_t max_ns[LOCKSTAT_N];
static _Atomic uint64_t count[LOCKSTAT_N];

bool lockstat_enabled(void)
{
	int on = atomic_load_explicit(&enabled, memory_order_relaxed);
	if (on < 0) {
		on = getenv("CAIRN_LOCKSTAT") != NULL;
		atomic_store_explicit(&enabled, on, memory_order_relaxed);
	}
	return on;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t lockstat_start(void)
{
	return lockstat_enabled() ? now_ns() : 0;
}

void lockstat_end(lockstat_kind kind, int64_t start)
{
	if (!start || kind >= LOCKSTAT_N)
		return;
	int64_t held = now_ns() - start;
	atomic_fetch_add_explicit(&count[kind], 1, memory_order_relaxed);
	int64_t cur = atomic_load_explicit(&max_ns[kind], memory_order_relaxed);
	while (held > cur &&
	       !atomic_compare_exchange_weak_explicit(&max_ns[kind], &cur, held,
	                                              memory_order_relaxed, memory_order_relaxed))
		;
}

int64_t lockstat_max_ns(lockstat_kind kind)
{
	return kind < LOCKSTAT_N ? atomic_load(&max_ns[kind]) : 0;
}

uint64_t lockstat_count(lockstat_kind kind)
{
	return kind < LOCKSTAT_N ? atomic_load(&count[kind]) : 0;
}

void lockstat_reset(void)
{
	for (int k = 0; k < LOCKSTAT_N; k++) {
		atomic_store(&max_ns[k], 0);
		atomic_store(&count[k], 0);
	}
}

const char *lockstat_name(lockstat_kind kind)
{
	static const char *const names[LOCKSTAT_N] = {"db-write", "manager", "db-checkpoint"};
	return kind < LOCKSTAT_N ? names[kind] : "?";
}
