/* SPDX-License-Identifier: MIT */
/* Leases (include/cairn/lease.h) and the gc and fsck of the store: the internal helpers. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "meta/leases.h"

/* The resource types a lease may hold. */
#define LEASE_BLOB     "blob"
#define LEASE_RECORD   "record"
#define LEASE_SNAPSHOT "snapshots/" /* followed by the snapshotter: "snapshots/overlay" */

/* An ingest that no writer has touched for this long is abandoned: gc removes it, fsck reports
 * it (and --repair removes it). Younger ones stay to be resumed. */
#define LEASE_INGEST_MAX_AGE_NS (24LL * 3600 * 1000000000)

/* lease_proc_start() - the start time of @pid (clock ticks after boot, /proc/PID/stat field 22),
 * or -1 when there is no such process. */
int64_t lease_proc_start(int64_t pid);

/* lease_live() - whether @l still holds its resources at @now (ns): not expired, and, for a
 * process lease, its process still running (same pid, same start time). */
bool lease_live(const struct meta_lease *l, int64_t now);
