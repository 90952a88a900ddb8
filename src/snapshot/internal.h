/* SPDX-License-Identifier: MIT */
/* Shared by the files of src/snapshot: the snapshotter object and staging directories. */
#pragma once

#include "meta/snapshots.h"
#include "snapshotter.h"

struct snapshotter {
	const struct snap_ops *ops;
	meta_db *db;          /* borrowed */
	int rootfd;           /* borrowed: the store root */
	int snapfd;           /* owned: ROOT/snapshots */
	char *root;           /* absolute path of the store root, as the kernel names it */
	void *state;          /* the driver's, from ops->init */
	char **mount_options; /* user options for overlay mounts */
	size_t n_mount_options;
};

/* A directory being built: snapshots/new-XXXXXX, flock'ed (LOCK_EX) through @fd while it lives,
 * so that a reconcile elsewhere knows its builder is alive. */
struct snap_stage {
	char name[32];
	int fd;
};

/* snap_stage_new() - create and lock a fresh staging directory. */
int snap_stage_new(snapshotter *s, struct snap_stage *st, cairn_error **reterr);

/* snap_stage_discard() - delete the staging directory (if @st->name is still set) and close its
 * fd, dropping the lock. Safe on a zeroed stage with fd -EBADF. */
void snap_stage_discard(snapshotter *s, struct snap_stage *st);

/* snap_id_name() - the decimal directory name of @id into @buf (at least 24 bytes). */
const char *snap_id_name(int64_t id, char *buf, size_t len);
