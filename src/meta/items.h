/* SPDX-License-Identifier: MIT */
/*
 * Items: BuildKit's metadata store (spec/buildkit-cache.md §2) as three tables. An item is an id
 * with string-keyed JSON values, each optionally carrying an index string for search, and opaque
 * external data. Unlike the original, overwriting a value with a different index replaces the
 * old index entry (they are one row). All functions run inside the caller's transaction.
 */
#pragma once

#include <stddef.h>

#include "meta.h"

/* Called once per item id (or key/value pair); a negative return stops the walk and is returned. */
typedef int (*meta_item_fn)(const char *id, void *userdata);
typedef int (*meta_value_fn)(const char *key, const char *value, const char *idx, void *userdata);

/* meta_item_exists() - 1 if item @id has a row, 0 if not, negative on error. */
int meta_item_exists(meta_tx *tx, const char *id, cairn_error **reterr);

/* meta_item_get() - 1 and *@ret_value (caller frees) if @key is set on @id; 0 and NULL if not. */
int meta_item_get(meta_tx *tx, const char *id, const char *key, char **ret_value,
                  cairn_error **reterr);

/*
 * meta_item_set() - set @key of item @id (created if missing) to the JSON text @value with
 * optional search index @idx. @value NULL removes the key and its index entry. Write tx only.
 */
int meta_item_set(meta_tx *tx, const char *id, const char *key, const char *value, const char *idx,
                  cairn_error **reterr);

/* meta_item_values() - every value of @id in key order. */
int meta_item_values(meta_tx *tx, const char *id, meta_value_fn fn, void *userdata,
                     cairn_error **reterr);

/* meta_item_all() - every item id in byte order. */
int meta_item_all(meta_tx *tx, meta_item_fn fn, void *userdata, cairn_error **reterr);

/* meta_item_search() - ids of items holding a value indexed exactly @idx, in id order. */
int meta_item_search(meta_tx *tx, const char *idx, meta_item_fn fn, void *userdata,
                     cairn_error **reterr);

/* meta_item_clear() - delete item @id with its values, index entries and external data; a
 * missing id is success. */
int meta_item_clear(meta_tx *tx, const char *id, cairn_error **reterr);

/* meta_item_set_external() - store @len bytes under @key of @id (item created if missing). */
int meta_item_set_external(meta_tx *tx, const char *id, const char *key, const void *data,
                           size_t len, cairn_error **reterr);

/* meta_item_get_external() - the bytes (caller frees; NUL-terminated for convenience) and length;
 * -ENOENT "external data 'KEY' of item 'ID' not found" when missing. */
int meta_item_get_external(meta_tx *tx, const char *id, const char *key, void **ret_data,
                           size_t *ret_len, cairn_error **reterr);
