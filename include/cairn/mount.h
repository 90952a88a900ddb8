/* SPDX-License-Identifier: MIT */
/*
 * Mount specs: containerd's {type, source, options[]}. A snapshot or a ref hands out an ordered
 * list; mounting applies them in order onto one target.
 */
#ifndef CAIRN_MOUNT_H
#define CAIRN_MOUNT_H

#include <stddef.h>

#include "cairn/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_mount {
	char *type;     /* "bind", "overlay" */
	char *source;   /* a path for bind, "overlay" for overlay */
	char **options; /* fstab-style words, in order */
	size_t n_options;
} cairn_mount;

/* cairn_mounts_free() - free @n mounts at @m and the array. NULL-safe; returns NULL. */
CAIRN_PUBLIC cairn_mount *cairn_mounts_free(cairn_mount *m, size_t n);

/*
 * cairn_mounts_readonly() - BuildKit's read-only conversion into a new array *@ret (caller frees
 * with cairn_mounts_free): for overlay, the upperdir goes in front of lowerdir and upperdir and
 * workdir are dropped; for any other type every "rw" is removed and "ro" appended.
 * Errors: -ENOMEM.
 */
CAIRN_PUBLIC int cairn_mounts_readonly(const cairn_mount *m, size_t n, cairn_mount **ret,
                                       cairn_error **reterr);

/*
 * cairn_mount_apply() - mount @n specs in order onto the existing directory @target (root only).
 * A lowerdir list longer than one option page goes through the new mount API. On failure
 * whatever was mounted is unmounted again.
 * Errors: -errno of mount(2) naming @target and the mount type; -ENOENT when @target is missing.
 */
CAIRN_PUBLIC int cairn_mount_apply(const cairn_mount *m, size_t n, const char *target,
                                   cairn_error **reterr);

/* cairn_unmount() - unmount everything stacked on @target. Errors: -EINVAL "'T' is not a mount
 * point"; -errno of umount2(2) naming @target. */
CAIRN_PUBLIC int cairn_unmount(const char *target, cairn_error **reterr);

#ifdef __cplusplus
}
#endif
#endif
