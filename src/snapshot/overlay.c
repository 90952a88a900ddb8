/* SPDX-License-Identifier: MIT */
/*
 * The overlay driver (spec/containerd.md §3): snapshots/<id>/fs is a layer (the upper directory
 * while active), snapshots/<id>/work the workdir of an active snapshot. Commit touches no file.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "internal.h"
#include "meta/labels.h"

#define PROBE_KEY "overlay.probe"

struct overlay_state {
	bool index_off; /* the module knows `index`: turn it off (containerd's default) */
	bool userxattr;
};

static int probe_mkdirs(int dfd, cairn_error **reterr)
{
	static const char *const dirs[] = {"l1", "l2", "u", "w", "m"};
	for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
		if (mkdirat(dfd, dirs[i], 0700) < 0)
			return err_errno(reterr, -errno, "overlay probe: mkdir '%s'", dirs[i]);
	return 0;
}

int snap_overlay_probe(snapshotter *s, bool userxattr, cairn_error **reterr)
{
	struct snap_stage st = {.fd = -EBADF};
	int r = snap_stage_new(s, &st, reterr);
	if (r < 0)
		return r;
	_cleanup_free_ char *base = NULL, *m = NULL, *data = NULL;
	r = probe_mkdirs(st.fd, reterr);
	if (r >= 0 && (asprintf(&base, "%s/snapshots/%s", s->root, st.name) < 0 ||
	               asprintf(&m, "%s/m", base) < 0 ||
	               asprintf(&data, "lowerdir=%s/l2:%s/l1,upperdir=%s/u,workdir=%s/w%s", base,
	                        base, base, base, userxattr ? ",userxattr" : "") < 0))
		r = err_set(reterr, -ENOMEM, "overlay probe: out of memory");
	if (r >= 0) {
		if (mount("overlay", m, "overlay", 0, data) < 0)
			r = err_errno(reterr, -errno, "mount overlay in '%s/snapshots'", s->root);
		else if (umount2(m, UMOUNT_NOFOLLOW) < 0)
			r = err_errno(reterr, -errno, "unmount overlay probe '%s'", m);
	}
	snap_stage_discard(s, &st);
	return r;
}

/* Inside a user namespace the kernel wants userxattr; elsewhere it is never used. */
static int probe(snapshotter *s, struct overlay_state *os, cairn_error **reterr)
{
	bool userns = fs_in_userns();
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	int r = snap_overlay_probe(s, userns, &e);
	if (r < 0 && userns) {
		e = cairn_error_free(e);
		r = snap_overlay_probe(s, false, &e);
		userns = false;
	}
	if (r < 0)
		return err_set(reterr, r, "%s", cairn_error_message(e));
	os->userxattr = userns;
	return 0;
}

static int remembered(snapshotter *s, meta_db *db, char **ret, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(db, &tx, false, reterr);
	if (r < 0)
		return r;
	return meta_info_get(&tx, PROBE_KEY, ret, reterr);
}

static int remember(meta_db *db, const char *value, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(db, &tx, true, reterr);
	if (r >= 0)
		r = meta_info_set(&tx, PROBE_KEY, value, reterr);
	if (r >= 0)
		r = meta_tx_commit(&tx, reterr);
	return r;
}

/* Probe once per store; a lack of privilege says nothing about the store, so it is not kept. */
static int probe_and_remember(snapshotter *s, meta_db *db, struct overlay_state *os,
                              cairn_error **reterr)
{
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	int r = probe(s, os, &e);
	if (r == -EPERM || r == -EACCES)
		return err_set(reterr, -EOPNOTSUPP, "overlay unavailable: %s",
		               cairn_error_message(e));
	if (r < 0 && r != -EINVAL && r != -ENODEV && r != -EOPNOTSUPP && r != -ENOTSUP)
		return err_set(reterr, r, "%s", cairn_error_message(e));
	_cleanup_free_ char *value = NULL;
	if (asprintf(&value, r < 0 ? "unsupported: %s" : "ok%s",
	             r < 0           ? cairn_error_message(e)
	             : os->userxattr ? " userxattr"
	                             : "") < 0)
		return err_set(reterr, -ENOMEM, "overlay probe: out of memory");
	int w = remember(db, value, reterr);
	if (w < 0)
		return w;
	if (r < 0)
		return err_set(reterr, -EOPNOTSUPP, "overlay does not work on '%s': %s", s->root,
		               cairn_error_message(e));
	return 0;
}

static int overlay_init(snapshotter *s, meta_db *db, void **ret_state, cairn_error **reterr)
{
	if (strpbrk(s->root, ":,\\"))
		return err_set(reterr, -EOPNOTSUPP,
		               "overlay cannot use store '%s': its path holds ':', ',' or '\\'",
		               s->root);
	_cleanup_free_ struct overlay_state *os = calloc(1, sizeof(*os));
	_cleanup_free_ char *known = NULL;
	if (!os)
		return err_set(reterr, -ENOMEM, "overlay: out of memory");
	int r = remembered(s, db, &known, reterr);
	if (r < 0)
		return r;
	if (r == 0)
		r = probe_and_remember(s, db, os, reterr);
	else if (strncmp(known, "ok", 2) == 0)
		os->userxattr = strstr(known, "userxattr") != NULL;
	else
		r = err_set(reterr, -EOPNOTSUPP, "overlay does not work on '%s' (%s)", s->root,
		            known);
	if (r < 0)
		return r;
	/* After the probe: the module (and its sysfs parameters) may load on the first mount. */
	os->index_off = access("/sys/module/overlay/parameters/index", F_OK) == 0;
	*ret_state = TAKE_PTR(os);
	return 0;
}

static void overlay_free(void *state)
{
	free(state);
}

static int overlay_prepare(snapshotter *s, int stagefd, const struct snap_ref *ref,
                           cairn_error **reterr)
{
	if (mkdirat(stagefd, "fs", 0755) < 0)
		return err_errno(reterr, -errno, "mkdir 'fs'");
	_cleanup_close_ int fsfd = openat(stagefd, "fs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fsfd < 0 || fchmod(fsfd, 0755) < 0) /* whatever the umask */
		return err_errno(reterr, -errno, "open 'fs'");
	if (ref->kind == SNAP_KIND_ACTIVE && mkdirat(stagefd, "work", 0711) < 0)
		return err_errno(reterr, -errno, "mkdir 'work'");
	if (ref->n_parents == 0)
		return 0;
	/* The merged root takes its attributes from the upper dir: keep the parent's owner
	 * (not its mode: containerd leaves 0755). */
	char path[48];
	struct stat st;
	snprintf(path, sizeof(path), "%" PRId64 "/fs", ref->parents[0]);
	if (fstatat(s->snapfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return err_errno(reterr, -errno, "stat parent layer 'snapshots/%s'", path);
	if (fchown(fsfd, st.st_uid, st.st_gid) < 0)
		return err_errno(reterr, -errno, "chown 'fs'");
	return 0;
}

static int bind_mount(const char *source, bool ro, struct snap_mount **ret, size_t *ret_n)
{
	const char *const opts[] = {ro ? "ro" : "rw", "rbind", NULL};
	struct snap_mount *m = calloc(1, sizeof(*m));
	if (!m || snap_mount_set(m, "bind", source, opts) < 0) {
		free(m);
		return -ENOMEM;
	}
	*ret = m;
	*ret_n = 1;
	return 0;
}

static int add_lowerdir(snapshotter *s, struct snap_mount *m, const struct snap_ref *ref)
{
	size_t len = strlen("lowerdir=") + 1;
	for (size_t i = 0; i < ref->n_parents; i++)
		len += strlen(s->root) + 40;
	char *opt = malloc(len), *p = opt;
	if (!opt)
		return -ENOMEM;
	p += sprintf(p, "lowerdir=");
	for (size_t i = 0; i < ref->n_parents; i++)
		p += sprintf(p, "%s%s/snapshots/%" PRId64 "/fs", i ? ":" : "", s->root,
		             ref->parents[i]);
	int r = snap_mount_add_option(m, "%s", opt);
	free(opt);
	return r;
}

/* Options in the order of containerd's tests: user options, index=off, userxattr, then
 * workdir, upperdir (active only) and lowerdir, nearest parent first. */
static int overlay_options(snapshotter *s, struct snap_mount *m, const struct snap_ref *ref)
{
	const struct overlay_state *os = s->state;
	int r = 0;
	for (size_t i = 0; r >= 0 && i < s->n_mount_options; i++)
		r = snap_mount_add_option(m, "%s", s->mount_options[i]);
	if (r >= 0 && os->index_off)
		r = snap_mount_add_option(m, "index=off");
	if (r >= 0 && os->userxattr)
		r = snap_mount_add_option(m, "userxattr");
	if (r >= 0 && ref->kind == SNAP_KIND_ACTIVE) {
		r = snap_mount_add_option(m, "workdir=%s/snapshots/%" PRId64 "/work", s->root,
		                          ref->id);
		if (r >= 0)
			r = snap_mount_add_option(m, "upperdir=%s/snapshots/%" PRId64 "/fs",
			                          s->root, ref->id);
	}
	return r >= 0 ? add_lowerdir(s, m, ref) : r;
}

static int overlay_mounts(snapshotter *s, const struct snap_ref *ref, struct snap_mount **ret,
                          size_t *ret_n, cairn_error **reterr)
{
	bool view = ref->kind == SNAP_KIND_VIEW;
	_cleanup_free_ char *source = NULL;
	int r;
	if (ref->n_parents == 0 || (view && ref->n_parents == 1)) {
		/* Overlay cannot mount without a lower; a one-layer view is that layer, read-only.
		 */
		r = snap_fs_path(s, ref->n_parents ? ref->parents[0] : ref->id, "fs", &source);
		if (r >= 0)
			r = bind_mount(source, view, ret, ret_n);
	} else {
		struct snap_mount *m = calloc(1, sizeof(*m));
		r = m ? snap_mount_set(m, "overlay", "overlay", NULL) : -ENOMEM;
		if (r >= 0)
			r = overlay_options(s, m, ref);
		if (r < 0)
			snap_mounts_free(m, 1);
		else {
			*ret = m;
			*ret_n = 1;
		}
	}
	if (r < 0)
		return err_set(reterr, r, "overlay mounts of snapshot %" PRId64 ": out of memory",
		               ref->id);
	return 0;
}

const struct snap_ops snap_overlay_ops = {
	.version = SNAP_OPS_VERSION,
	.name = "overlay",
	.prepare = overlay_prepare,
	.mounts = overlay_mounts,
	.init = overlay_init,
	.free = overlay_free,
};
