/* SPDX-License-Identifier: MIT */
/* The schema: meta_migrations[v] moves a database from user_version v to v + 1. */
#pragma once

#include "meta.h"

extern const char *const meta_migrations[META_SCHEMA_VERSION];
