/* SPDX-License-Identifier: MIT */
/*
 * The native driver (spec/containerd.md §6): snapshots/<id>/fs is the whole tree of the snapshot,
 * made by copying the parent's (reflinks where the filesystem can). Mounts are binds.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "copy.h"
#include "internal.h"

static int native_prepare(snapshotter *s, int stagefd, const struct snap_ref *ref,
                          cairn_error **reterr)
{
	if (mkdirat(stagefd, "fs", 0755) < 0)
		return err_errno(reterr, -errno, "mkdir 'fs'");
	_cleanup_close_ int fsfd = openat(stagefd, "fs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fsfd < 0 || fchmod(fsfd, 0755) < 0)
		return err_errno(reterr, -errno, "open 'fs'");
	/* A view of a parent binds the parent itself: nothing to copy. */
	if (ref->n_parents == 0 || ref->kind == SNAP_KIND_VIEW)
		return 0;
	char path[48];
	snprintf(path, sizeof(path), "%" PRId64 "/fs", ref->parents[0]);
	_cleanup_close_ int pfd =
		openat(s->snapfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0)
		return err_errno(reterr, -errno, "open parent layer 'snapshots/%s'", path);
	char what[64];
	snprintf(what, sizeof(what), "snapshots/%s", path);
	return snap_copy_tree(pfd, fsfd, what, reterr);
}

static int native_mounts(snapshotter *s, const struct snap_ref *ref, struct snap_mount **ret,
                         size_t *ret_n, cairn_error **reterr)
{
	bool view = ref->kind == SNAP_KIND_VIEW;
	int64_t id = view && ref->n_parents ? ref->parents[0] : ref->id;
	_cleanup_free_ char *source = NULL;
	const char *const opts[] = {"rbind", view ? "ro" : "rw", NULL};
	struct snap_mount *m = calloc(1, sizeof(*m));
	if (!m || snap_fs_path(s, id, "fs", &source) < 0 ||
	    snap_mount_set(m, "bind", source, opts) < 0) {
		free(m);
		return err_set(reterr, -ENOMEM, "mounts of snapshot %" PRId64 ": out of memory",
		               ref->id);
	}
	*ret = m;
	*ret_n = 1;
	return 0;
}

const struct snap_ops snap_native_ops = {
	.version = SNAP_OPS_VERSION,
	.name = "native",
	.prepare = native_prepare,
	.mounts = native_mounts,
};
