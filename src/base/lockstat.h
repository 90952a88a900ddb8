/* SPDX-License-Identifier: MIT */
/*
 * Lock hold statistics for benchmarks (bench/cache.sh): how long each kind of lock was held at
 * most, and how often it was taken. Off unless the environment has CAIRN_LOCKSTAT set when the
 * first lock is taken; then each hold costs two clock_gettime calls. Thread-safe (atomics).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef enum lockstat_kind {
	LOCKSTAT_DB_WRITE, /* a SQLite write transaction: BEGIN IMMEDIATE to COMMIT or ROLLBACK */
	LOCKSTAT_MANAGER,  /* the cache manager's mutex */
	/* a WAL checkpoint after a commit (no write lock: the connection's mutex only) */
	LOCKSTAT_DB_CHECKPOINT,
	LOCKSTAT_N,
} lockstat_kind;

/* lockstat_enabled() - whether holds are measured. */
bool lockstat_enabled(void);

/* lockstat_start() - a start time for a hold (0 when off). */
int64_t lockstat_start(void);

/* lockstat_end() - a hold of @kind that began at @start ended now. */
void lockstat_end(lockstat_kind kind, int64_t start);

/* lockstat_max_ns() / lockstat_count() - the longest hold and the number of holds of @kind since
 * the last lockstat_reset(). */
int64_t lockstat_max_ns(lockstat_kind kind);
uint64_t lockstat_count(lockstat_kind kind);
void lockstat_reset(void);

/* lockstat_name() - "db-write", "manager", "db-checkpoint". */
const char *lockstat_name(lockstat_kind kind);
