/* SPDX-License-Identifier: MIT */
/* The public snapshot and mount API over the store's snapshotter. */
#include <stddef.h>
#include <string.h>
#include <sys/mount.h>

#include "snapshot/mount.h"
#include "snapshot/snapshotter.h"
#include "store.h"

/* cairn_mount is struct snap_mount under its public name: same members, same layout. */
_Static_assert(sizeof(cairn_mount) == sizeof(struct snap_mount), "mount layout");
_Static_assert(offsetof(cairn_mount, type) == offsetof(struct snap_mount, type), "mount layout");
_Static_assert(offsetof(cairn_mount, source) == offsetof(struct snap_mount, source),
               "mount layout");
_Static_assert(offsetof(cairn_mount, options) == offsetof(struct snap_mount, options),
               "mount layout");
_Static_assert(offsetof(cairn_mount, n_options) == offsetof(struct snap_mount, n_options),
               "mount layout");

cairn_mount *cairn_mounts_free(cairn_mount *m, size_t n)
{
	snap_mounts_free((struct snap_mount *)m, n);
	return NULL;
}

int cairn_mounts_readonly(const cairn_mount *m, size_t n, cairn_mount **ret, cairn_error **reterr)
{
	if (!ret || (n && !m))
		return err_set(reterr, -EINVAL, "read-only mounts: invalid arguments");
	return snap_mounts_readonly((const struct snap_mount *)m, n, (struct snap_mount **)ret,
	                            reterr);
}

int cairn_mount_apply(const cairn_mount *m, size_t n, const char *target, cairn_error **reterr)
{
	if (!target || (n && !m))
		return err_set(reterr, -EINVAL, "mount: invalid arguments");
	return snap_mount_all((const struct snap_mount *)m, n, target, reterr);
}

int cairn_unmount(const char *target, cairn_error **reterr)
{
	if (!target)
		return err_set(reterr, -EINVAL, "unmount: no target given");
	/* The first unmount tells "not mounted" apart; snap_unmount then peels what is stacked. */
	if (umount2(target, UMOUNT_NOFOLLOW) < 0) {
		if (errno == EINVAL)
			return err_set(reterr, -EINVAL, "unmount '%s': not a mount point", target);
		return err_errno(reterr, -errno, "unmount '%s'", target);
	}
	return snap_unmount(target, reterr);
}

const char *cairn_snapshotter_name(cairn_store *store)
{
	return snap_driver_name(store->snap);
}

static int check(cairn_store *store, const char *key, const char *what, cairn_error **reterr)
{
	if (!store || !key)
		return err_set(reterr, -EINVAL, "%s: invalid arguments", what);
	return 0;
}

int cairn_snapshot_prepare(cairn_store *store, const char *key, const char *parent,
                           cairn_mount **ret_mounts, size_t *ret_n, cairn_error **reterr)
{
	int r = check(store, key, "prepare snapshot", reterr);
	if (r < 0)
		return r;
	return snap_prepare(store->snap, key, parent, NULL, 0, (struct snap_mount **)ret_mounts,
	                    ret_n, reterr);
}

int cairn_snapshot_view(cairn_store *store, const char *key, const char *parent,
                        cairn_mount **ret_mounts, size_t *ret_n, cairn_error **reterr)
{
	int r = check(store, key, "view snapshot", reterr);
	if (r < 0)
		return r;
	return snap_view(store->snap, key, parent, NULL, 0, (struct snap_mount **)ret_mounts, ret_n,
	                 reterr);
}

int cairn_snapshot_commit(cairn_store *store, const char *name, const char *key,
                          cairn_error **reterr)
{
	int r = check(store, key, "commit snapshot", reterr);
	if (r < 0 || (r = check(store, name, "commit snapshot", reterr)) < 0)
		return r;
	return snap_commit(store->snap, name, key, NULL, 0, reterr);
}

int cairn_snapshot_remove(cairn_store *store, const char *key, cairn_error **reterr)
{
	int r = check(store, key, "remove snapshot", reterr);
	return r < 0 ? r : snap_remove(store->snap, key, reterr);
}

int cairn_snapshot_mounts(cairn_store *store, const char *key, cairn_mount **ret, size_t *ret_n,
                          cairn_error **reterr)
{
	int r = check(store, key, "snapshot mounts", reterr);
	if (r < 0)
		return r;
	return snap_mounts(store->snap, key, (struct snap_mount **)ret, ret_n, reterr);
}

int cairn_snapshot_usage(cairn_store *store, const char *key, int64_t *ret_size,
                         int64_t *ret_inodes, cairn_error **reterr)
{
	int r = check(store, key, "snapshot usage", reterr);
	if (r < 0)
		return r;
	struct snap_usage u;
	r = snap_usage(store->snap, key, &u, reterr);
	if (r < 0)
		return r;
	if (ret_size)
		*ret_size = u.size;
	if (ret_inodes)
		*ret_inodes = u.inodes;
	return 0;
}

struct walk_ctx {
	cairn_snapshot_walk_fn fn;
	void *userdata;
};

/* Presents a snap_info as the public struct; the label arrays live for the call only. */
static int walk_one(const snap_info *i, void *userdata)
{
	struct walk_ctx *ctx = userdata;
	_cleanup_free_ const char **keys = calloc(i->n_labels + 1, sizeof(*keys));
	_cleanup_free_ const char **values = calloc(i->n_labels + 1, sizeof(*values));
	if (!keys || !values)
		return -ENOMEM;
	for (size_t k = 0; k < i->n_labels; k++) {
		keys[k] = i->labels[k].key;
		values[k] = i->labels[k].value;
	}
	cairn_snapshot_info info = {
		.kind = (cairn_snapshot_kind)i->kind,
		.name = i->name,
		.parent = i->parent,
		.created_ns = i->created_ns,
		.updated_ns = i->updated_ns,
		.n_labels = i->n_labels,
		.label_keys = keys,
		.label_values = values,
	};
	return ctx->fn(&info, ctx->userdata);
}

int cairn_snapshot_walk(cairn_store *store, const char *const *filters, size_t n_filters,
                        cairn_snapshot_walk_fn fn, void *userdata, cairn_error **reterr)
{
	if (!store || !fn)
		return err_set(reterr, -EINVAL, "walk snapshots: invalid arguments");
	struct walk_ctx ctx = {fn, userdata};
	return snap_walk(store->snap, filters, n_filters, walk_one, &ctx, reterr);
}

int cairn_snapshot_stat(cairn_store *store, const char *key, cairn_snapshot_walk_fn fn,
                        void *userdata, cairn_error **reterr)
{
	int r = check(store, key, "stat snapshot", reterr);
	if (r < 0)
		return r;
	_cleanup_(snap_info_freep) snap_info *info = NULL;
	r = snap_stat(store->snap, key, &info, reterr);
	if (r < 0)
		return r;
	struct walk_ctx ctx = {fn, userdata};
	r = walk_one(info, &ctx);
	return r < 0 ? err_set(reterr, r, "stat snapshot '%s'", key) : 0;
}
