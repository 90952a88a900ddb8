/* SPDX-License-Identifier: MIT */
/*
 * Lazy blobs from a registry (fetch.c, pull.c): the source string kept with a lazy record.
 * Internal to src/remote.
 */
#pragma once

#include <stdbool.h>

#include "registry.h"

/* A parsed source "[http://|https://]REGISTRY/REPO". Plain value. */
struct remote_source {
	char registry[REMOTE_HOST_MAX + 1];
	char repo[REMOTE_REPO_MAX + 1];
	bool insecure; /* "http://" */
};

/* remote_source_parse() - parse @source. Errors: -EINVAL quoting it. */
int remote_source_parse(const char *source, struct remote_source *ret, cairn_error **reterr);
