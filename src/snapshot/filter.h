/* SPDX-License-Identifier: MIT */
/*
 * containerd's filter language (spec/containerd.md §0.3), independent of what is filtered:
 * `selector (',' selector)*` with selector = fieldpath [op value], op one of == != ~=; commas AND
 * selectors, several filter strings OR. The caller supplies a field lookup. Nothing here is
 * specific to snapshots; content, lease and prune filters can use it too.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

typedef struct snap_filter snap_filter;

/*
 * Looks up a field: @path holds the @n components of the fieldpath ("labels", "a.b" for
 * `labels."a.b"`; an unquoted dotted remainder arrives as separate components). Returns the
 * value (borrowed until the next call) or NULL when the field is absent.
 */
typedef const char *(*snap_filter_field_fn)(const char *const *path, size_t n, void *userdata);

/*
 * snap_filter_parse() - parse @n filter strings into *@ret (caller frees). No strings, or an
 * empty one, matches everything. Errors: -EINVAL quoting the filter and the position for a
 * syntax error or a bad regular expression (POSIX extended syntax for ~=).
 */
int snap_filter_parse(const char *const *filters, size_t n, snap_filter **ret,
                      cairn_error **reterr);

/* snap_filter_match() - whether the object described by @field matches @f. */
bool snap_filter_match(const snap_filter *f, snap_filter_field_fn field, void *userdata);

/* snap_filter_free() - NULL-safe; returns NULL. */
snap_filter *snap_filter_free(snap_filter *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(snap_filter *, snap_filter_free)
