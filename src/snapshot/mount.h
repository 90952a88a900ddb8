/* SPDX-License-Identifier: MIT */
/*
 * Mount specs (containerd's {type, source, options[]}, spec/containerd.md §0.5 and §5): building,
 * copying, the read-only conversion of BuildKit (spec/buildkit-cache.md §8), JSON rendering, and
 * applying a list of them to a target directory.
 *
 * An array of mounts is owned by whoever received it through a `**ret`; free it with
 * snap_mounts_free(). Nothing here keeps state; every function is thread-safe, except that
 * mounting is a process-wide effect on the mount namespace.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

struct snap_mount {
	char *type;     /* "bind", "overlay", or a filesystem type */
	char *source;   /* a path for bind, "overlay" for overlay */
	char **options; /* fstab-style words, in order */
	size_t n_options;
};

/* snap_mounts_free() - free @n mounts at @m and the array; NULL-safe; returns NULL. */
struct snap_mount *snap_mounts_free(struct snap_mount *m, size_t n);

/*
 * snap_mount_set() - fill @m (which must be zeroed or freed) with copies of @type, @source and the
 * NULL-terminated list @options. -ENOMEM leaves @m zeroed.
 */
int snap_mount_set(struct snap_mount *m, const char *type, const char *source,
                   const char *const *options);

/* snap_mount_add_option() - append a copy of the formatted option to @m. -ENOMEM on failure. */
int snap_mount_add_option(struct snap_mount *m, const char *fmt, ...) _printf_(2, 3);

/* snap_mounts_copy() - deep copy of @n mounts into *@ret (caller frees). -ENOMEM. */
int snap_mounts_copy(const struct snap_mount *m, size_t n, struct snap_mount **ret,
                     cairn_error **reterr);

/*
 * snap_mounts_readonly() - BuildKit's read-only conversion, into new arrays (@m is not touched):
 * overlay mounts lose every `workdir=` and `upperdir=` option and, when there was an upperdir,
 * each `lowerdir=L` becomes `lowerdir=<upper>:L` (nothing else is added); any other type loses
 * every `rw` and gets `ro` appended. *@ret has @n entries; caller frees. -ENOMEM.
 */
int snap_mounts_readonly(const struct snap_mount *m, size_t n, struct snap_mount **ret,
                         cairn_error **reterr);

/*
 * snap_mounts_json() - render as `[{"type":"..","source":"..","options":[".."]}]` (no spaces,
 * JSON string escaping, bytes >= 0x80 passed through as they are) into *@ret (caller frees).
 */
int snap_mounts_json(const struct snap_mount *m, size_t n, char **ret, cairn_error **reterr);

/*
 * snap_mount_all() - apply @n mounts in order onto the directory @target (an ordinary path).
 * Option words map to mount flags as in containerd (ro/rw, bind, rbind, nosuid, nodev, noexec,
 * sync, dirsync, noatime, relatime, strictatime, ... and their opposites); the rest is filesystem
 * data. A read-only bind is remounted read-only keeping the flags the kernel locks on it.
 * Overlay mounts whose data does not fit a page (deep chains, long paths) go through the new
 * mount API, one `lowerdir+` per layer; where that is missing, lowerdirs are shortened relative
 * to their common parent directory and mounted from a thread chdir'ed there. No rollback of the
 * earlier mounts when a later one fails (as containerd).
 * Errors: the errno of mount(2) or fsconfig naming @target and the mount type (fsconfig's own
 * message is included when the kernel gives one); -EINVAL for an empty option list of overlay.
 */
int snap_mount_all(const struct snap_mount *m, size_t n, const char *target, cairn_error **reterr);

/*
 * snap_unmount() - unmount everything stacked on @target (repeats until nothing is mounted
 * there), retrying a busy mount 50 times 50 ms apart; never follows a symlink at @target. A
 * target with nothing mounted, or a missing one, is success. Errors: -EBUSY and others naming
 * @target.
 */
int snap_unmount(const char *target, cairn_error **reterr);

/* For tests: when true, snap_mount_all() acts as if the new mount API were missing. */
extern bool snap_mount_no_fsconfig;
