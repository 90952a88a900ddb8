/* SPDX-License-Identifier: MIT */
/*
 * Single-flight: concurrent callers of one key share one execution of the work and all receive
 * its result. The work runs on a thread of its own, so a caller that gives up (its cancel flag
 * goes true) returns -ECANCELED at once while the others keep waiting; the work itself is told to
 * stop (its own cancel flag) only when every caller has given up. Results are not cached: a call
 * that starts after the previous execution finished runs the work again.
 */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include "error.h"

typedef struct flight_group flight_group;

/*
 * The work: returns >= 0 and sets *@ret_value, or a negative code with *@reterr set.
 * @cancelled turns true when every caller has given up; the work should then return early.
 */
typedef int (*flight_fn)(void *userdata, const atomic_bool *cancelled, int64_t *ret_value,
                         cairn_error **reterr);

/* flight_group_new() - NULL on OOM. flight_group_free(): waits for running work; NULL-safe. */
flight_group *flight_group_new(void);
flight_group *flight_group_free(flight_group *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(flight_group *, flight_group_free)

/*
 * flight_do() - run @fn(@userdata) for @key, or join the execution already running for @key.
 * @userdata must stay valid until the work ends even if this caller gives up: callers that can
 * give up pass data the work owns or that outlives the group. @cancel (may be NULL) is polled
 * while waiting. Returns the work's return code with *@ret_value (may be NULL) and a copy of
 * its error; -ECANCELED when @cancel went true first; -ENOMEM.
 * Locking: takes the group's mutex briefly; never held while the work runs.
 */
int flight_do(flight_group *g, const char *key, flight_fn fn, void *userdata,
              const atomic_bool *cancel, int64_t *ret_value, cairn_error **reterr);
