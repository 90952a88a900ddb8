/* SPDX-License-Identifier: MIT */
/* The store handle's insides, for the modules above it (cache, image, the public wrappers). */
#pragma once

#include "cairn/content.h"
#include "cairn/snapshot.h"
#include "cairn/store.h"
#include "content/content.h"
#include "meta/meta.h"
#include "snapshot/snapshotter.h"
#include "base/digest.h"

struct cairn_store {
	char *root;
	int rootfd; /* O_DIRECTORY fd of root; every path below goes through fs_* with it */
	int lockfd; /* ROOT/LOCK, flocked shared or exclusive */
	unsigned flags;
	meta_db *db;
	content_store *content;
	snapshotter *snap;
};

/* store_tmpdir_clean() - empty ROOT/tmp (the open-time reconcile step, also used by gc). */
int store_tmpdir_clean(cairn_store *store, cairn_error **reterr);

DEFINE_TRIVIAL_CLEANUP_FUNC(cairn_store *, cairn_store_close)
