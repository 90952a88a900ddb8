/* SPDX-License-Identifier: MIT */
/*
 * Small tables: content labels, tags and store facts. All functions run inside the caller's
 * transaction (writes need a write tx).
 */
#pragma once

#include "meta.h"

/* A label pass: called per (key, value); a negative return stops the walk and is returned. */
typedef int (*meta_kv_fn)(const char *key, const char *value, void *userdata);

/* Label limits shared by every labelled object: key + value at most 4096 bytes, key non-empty. */
#define META_LABEL_MAX 4096

/* meta_label_check() - -EINVAL naming the key (truncated to 64 bytes) when it breaks the limits. */
int meta_label_check(const char *key, const char *value, cairn_error **reterr);

/* meta_content_label_set() - set (or with @value NULL or "", delete) label @key of blob @digest. */
int meta_content_label_set(meta_tx *tx, const char *digest, const char *key, const char *value,
                           cairn_error **reterr);
/* meta_content_labels() - every label of @digest in key order. */
int meta_content_labels(meta_tx *tx, const char *digest, meta_kv_fn fn, void *userdata,
                        cairn_error **reterr);
/* meta_content_labels_clear() - drop every label of @digest (when the blob is deleted). */
int meta_content_labels_clear(meta_tx *tx, const char *digest, cairn_error **reterr);

/* meta_content_label_digests() - (digest, number of labels as decimal text) of every blob that
 * has labels, in digest order: what gc checks for labels that outlived their blob. */
int meta_content_label_digests(meta_tx *tx, meta_kv_fn fn, void *userdata, cairn_error **reterr);

/* meta_content_labelled() - (digest, value) of every blob that has label @key, in digest order. */
int meta_content_labelled(meta_tx *tx, const char *key, meta_kv_fn fn, void *userdata,
                          cairn_error **reterr);
/* meta_content_labels_prefixed() - (digest, key, value) of every label whose key starts with
 * @prefix, in digest order. */
typedef int (*meta_label_fn)(const char *digest, const char *key, const char *value,
                             void *userdata);
int meta_content_labels_prefixed(meta_tx *tx, const char *prefix, meta_label_fn fn, void *userdata,
                                 cairn_error **reterr);

/* meta_tag_set() - point tag @name at @target (replacing an existing tag of that name), with
 * the digest of the image manifest it came from (@manifest, NULL for none). */
int meta_tag_set(meta_tx *tx, const char *name, const char *target, const char *manifest,
                 cairn_error **reterr);
/* meta_tag_get() - 1 and *@ret_target (caller frees) if @name exists, 0 and NULL if not; with
 * @ret_manifest non-NULL also the manifest digest (NULL when the tag has none; caller frees). */
int meta_tag_get(meta_tx *tx, const char *name, char **ret_target, char **ret_manifest,
                 cairn_error **reterr);
/* meta_tag_manifests() - (name, manifest digest) of every tag that has one, in name order. */
int meta_tag_manifests(meta_tx *tx, meta_kv_fn fn, void *userdata, cairn_error **reterr);
/* meta_tag_remove() - -ENOENT "tag 'NAME' not found" when missing. */
int meta_tag_remove(meta_tx *tx, const char *name, cairn_error **reterr);
/* meta_tags() - every (name, target) in name order. */
int meta_tags(meta_tx *tx, meta_kv_fn fn, void *userdata, cairn_error **reterr);

/* meta_info_get() / meta_info_set() - store facts (key -> text); get returns 1 found, 0 absent. */
int meta_info_get(meta_tx *tx, const char *key, char **ret_value, cairn_error **reterr);
int meta_info_set(meta_tx *tx, const char *key, const char *value, cairn_error **reterr);
