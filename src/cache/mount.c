/* SPDX-License-Identifier: MIT */
/* Mounting refs: mount specs, shared read-only views, and persistent mounts. */
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "internal.h"
#include "snapshot/mount.h"

/* The mounts of active snapshot @key, converted to read-only when @readonly. */
static int active_mounts(cairn_cache *c, const char *key, bool readonly, struct snap_mount **ret,
                         size_t *ret_n, cairn_error **reterr)
{
	struct snap_mount *m = NULL;
	size_t n = 0;
	int r = snap_mounts(c->snap, key, &m, &n, reterr);
	if (r < 0)
		return r;
	if (!readonly) {
		*ret = m;
		*ret_n = n;
		return 0;
	}
	r = snap_mounts_readonly(m, n, ret, reterr);
	snap_mounts_free(m, n);
	if (r < 0)
		return r;
	*ret_n = n;
	return 0;
}

/* A view of @snapshot named @key, held by a temporary lease of this process. */
static int make_view(cairn_cache *c, const char *key, const char *snapshot, struct snap_mount **ret,
                     size_t *ret_n, cairn_error **reterr)
{
	char type[64];
	snprintf(type, sizeof(type), "snapshots/%s", c->driver);
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, true, reterr);
	if (r < 0 ||
	    (r = meta_temp_lease_add(&tx, key, type, key, c->pid, c->pid_start, reterr)) < 0 ||
	    (r = meta_tx_commit(&tx, reterr)) < 0)
		return r;
	/* The lease first, then the view: a crash in between leaves a lease whose view is missing,
	 * which the next open clears. */
	r = snap_view(c->snap, key, snapshot, NULL, 0, ret, ret_n, reterr);
	if (r < 0) {
		cache_remove_view(c, key, NULL);
		return r;
	}
	return 0;
}

/* How a record is presented: mounts, or (persistent mounts) the snapshot to make a view of. */
struct plan {
	struct snap_mount *m;
	size_t n;
	char *view_snapshot;
};

/*
 * Fills @p for record @e: the mounts of a mutable or of a lazy immutable read-only; for any other
 * immutable (finalized first) the entry's shared view, or with @own_view only the snapshot that a
 * view of the caller's own must show. The record lock held.
 */

static int plan_mounts(cairn_cache *c, struct entry *e, bool readonly, bool own_view,
                       struct plan *p, cairn_error **reterr)
{
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	int r = cache_load_once(c, e->id, &row, reterr);
	if (r < 0)
		return r;
	if (!row.extracted)
		return err_set(reterr, -EINVAL, "record '%s' is not extracted", e->id);
	if (row.kind == META_RECORD_MUTABLE)
		return active_mounts(c, row.snapshot, readonly, &p->m, &p->n, reterr);
	if (row.equal_mutable && readonly)
		/* Reading a lazy immutable needs no commit: its mutable's data, read-only. */
		return active_mounts(c, row.equal_mutable, true, &p->m, &p->n, reterr);
	if ((r = cache_finalize_locked(c, e->id, reterr)) < 0)
		return r;
	meta_record_clear(&row);
	if ((r = cache_load_once(c, e->id, &row, reterr)) < 0)
		return r;
	if (own_view) {
		p->view_snapshot = TAKE_PTR(row.snapshot);
		return 0;
	}
	if (!e->view) {
		char key[CAIRN_RECORD_ID_LEN + 8] = "view-";
		cache_new_id(key + 5);
		if ((r = make_view(c, key, row.snapshot, &e->view_mounts, &e->n_view_mounts,
		                   reterr)) < 0)
			return r;
		if (!(e->view = strdup(key))) {
			cache_remove_view(c, key, NULL);
			snap_mounts_free(TAKE_PTR(e->view_mounts), e->n_view_mounts);
			e->n_view_mounts = 0;
			return err_set(reterr, -ENOMEM, "view of record '%s': out of memory",
			               e->id);
		}
	}
	r = snap_mounts_copy(e->view_mounts, e->n_view_mounts, &p->m, reterr);
	p->n = e->n_view_mounts;
	return r;
}

int cairn_ref_mount(cairn_ref *ref, bool readonly, cairn_mount **ret, size_t *ret_n,
                    cairn_error **reterr)
{
	int r = cache_ref_check(ref, "mount", reterr);
	if (r < 0 || (!ref->is_mutable &&
	              (r = cache_extract_id(ref->cache, ref->id, NULL, NULL, reterr)) < 0))
		return r;
	if (!ret || !ret_n)
		return err_set(reterr, -EINVAL, "mount '%s': invalid arguments", ref->id);
	struct plan p = {0};
	pthread_mutex_lock(&ref->e->lock->mu);
	r = plan_mounts(ref->cache, ref->e, readonly, false, &p, reterr);
	pthread_mutex_unlock(&ref->e->lock->mu);
	if (r < 0) {
		snap_mounts_free(p.m, p.n);
		return err_prefix(reterr, "mount '%s'", ref->id);
	}
	*ret = (cairn_mount *)p.m;
	*ret_n = p.n;
	return 0;
}

/* ---- persistent mounts ---- */

/* Records the mount of @ref at @target and makes its view; the record lock held. */
static int record_mount(cairn_ref *ref, const char *target, bool readonly, struct plan *p,
                        char **ret_view, cairn_error **reterr)
{
	cairn_cache *c = ref->cache;
	int r = plan_mounts(c, ref->e, readonly, true, p, reterr);
	if (r < 0)
		return r;
	char view[CAIRN_RECORD_ID_LEN + 8] = "mount-";
	if (p->view_snapshot)
		cache_new_id(view + 6);
	struct meta_mount m = {
		.target = (char *)target,
		.record = ref->id,
		.view = p->view_snapshot ? view : NULL,
		.readonly = readonly || p->view_snapshot,
		.created_at = meta_now_ns(),
	};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	struct meta_mount old = {0};
	if ((r = meta_tx_begin(c->db, &tx, true, reterr)) < 0 ||
	    (r = meta_mount_get(&tx, target, &old, reterr)) < 0)
		return r;
	if (r > 0) {
		r = err_set(reterr, -EBUSY, "'%s' is already a cairn mount of record '%s'", target,
		            old.record);
		meta_mount_clear(&old);
		return r;
	}
	/* The row first, then the view: the row holds the view from birth, and a crash leaves a
	 * row whose view is missing, which umount tolerates. */
	if ((r = meta_mount_insert(&tx, &m, reterr)) < 0 || (r = meta_tx_commit(&tx, reterr)) < 0)
		return r;
	if (p->view_snapshot) {
		r = snap_view(c->snap, view, p->view_snapshot, NULL, 0, &p->m, &p->n, reterr);
		if (r < 0 || !(*ret_view = strdup(view))) {
			snap_remove(c->snap, view, NULL);
			if (meta_tx_begin(c->db, &tx, true, NULL) >= 0 &&
			    meta_mount_delete(&tx, target, NULL) >= 0)
				meta_tx_commit(&tx, NULL);
			return r < 0 ? r : err_set(reterr, -ENOMEM, "mount: out of memory");
		}
	}
	return 0;
}

/* Undoes record_mount() after the mount itself failed. */
static void unrecord_mount(cairn_cache *c, const char *target, const char *view)
{
	if (view)
		snap_remove(c->snap, view, NULL);
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if (meta_tx_begin(c->db, &tx, true, NULL) >= 0 && meta_mount_delete(&tx, target, NULL) >= 0)
		meta_tx_commit(&tx, NULL);
}

int cairn_ref_mount_at(cairn_ref *ref, const char *target, bool readonly, cairn_error **reterr)
{
	int r = cache_ref_check(ref, "mount", reterr);
	if (r < 0 || (!ref->is_mutable &&
	              (r = cache_extract_id(ref->cache, ref->id, NULL, NULL, reterr)) < 0))
		return r;
	if (!target)
		return err_set(reterr, -EINVAL, "mount '%s': no target given", ref->id);
	char canon[PATH_MAX];
	struct stat st;
	if (!realpath(target, canon) || stat(canon, &st) < 0)
		return err_errno(reterr, -errno, "mount '%s' at '%s'", ref->id, target);
	if (!S_ISDIR(st.st_mode))
		return err_set(reterr, -ENOTDIR, "mount '%s' at '%s': not a directory", ref->id,
		               target);
	struct plan p = {0};
	_cleanup_free_ char *view = NULL;
	pthread_mutex_lock(&ref->e->lock->mu);
	r = record_mount(ref, canon, readonly, &p, &view, reterr);
	pthread_mutex_unlock(&ref->e->lock->mu);
	free(p.view_snapshot);
	if (r >= 0 && (r = snap_mount_all(p.m, p.n, canon, reterr)) < 0)
		unrecord_mount(ref->cache, canon, view);
	snap_mounts_free(p.m, p.n);
	if (r < 0)
		return err_prefix(reterr, "mount '%s'", ref->id);
	log_debug("mounted record '%s' at '%s'", ref->id, canon);
	return 0;
}

/* Forgets mount @m and applies the policy to its record if nothing holds it any longer. */
static int forget_mount(cairn_cache *c, const struct meta_mount *m, struct cache_work *w,
                        cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	int r = meta_tx_begin(c->db, &tx, true, reterr);
	if (r < 0 || (r = meta_mount_delete(&tx, m->target, reterr)) < 0 ||
	    (r = meta_record_get(&tx, m->record, &row, reterr)) < 0)
		return r;
	if (r > 0 && !row.deleted) {
		if (row.kind == META_RECORD_MUTABLE && !m->readonly &&
		    (r = meta_record_bump_gen(&tx, row.id, reterr)) < 0)
			return r;
		if (!entry_busy(entry_find(c, row.id)) &&
		    (r = cache_unheld_locked(c, &tx, &row, w, reterr)) < 0)
			return r;
	}
	return meta_tx_commit(&tx, reterr);
}

int cairn_cache_unmount(cairn_cache *c, const char *target, cairn_error **reterr)
{
	int r = cache_enter(c, !c || !target, "unmount", reterr);
	if (r < 0)
		return r;
	char canon[PATH_MAX];
	struct meta_mount m = {0};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if ((r = meta_tx_begin(c->db, &tx, false, reterr)) < 0)
		return r;
	r = realpath(target, canon) ? meta_mount_get(&tx, canon, &m, reterr) : 0;
	if (r == 0 && (r = meta_mount_get(&tx, target, &m, reterr)) == 0)
		r = err_set(reterr, -ENOENT, "'%s' is not a cairn mount", target);
	meta_tx_end(&tx);
	if (r < 0)
		return r;
	if ((r = snap_unmount(m.target, reterr)) < 0 ||
	    (m.view && (r = snap_remove(c->snap, m.view, reterr)) < 0 && r != -ENOENT)) {
		meta_mount_clear(&m);
		return err_prefix(reterr, "unmount");
	}
	struct cache_work w = {0};
	cache_lock(c);
	r = forget_mount(c, &m, &w, reterr);
	cache_unlock(c);
	int r2 = cache_work_run(c, &w, r < 0 ? NULL : reterr);
	log_debug("unmounted record '%s' from '%s'", m.record, m.target);
	meta_mount_clear(&m);
	return r < 0 ? r : r2;
}

struct mount_list {
	struct meta_mount *v;
	size_t n;
};

static int collect_mount(const struct meta_mount *m, void *userdata)
{
	struct mount_list *acc = userdata;
	struct meta_mount *nv = realloc(acc->v, (acc->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	acc->v = nv;
	nv[acc->n] = (struct meta_mount){.target = strdup(m->target),
	                                 .record = strdup(m->record),
	                                 .view = m->view ? strdup(m->view) : NULL,
	                                 .readonly = m->readonly,
	                                 .created_at = m->created_at};
	acc->n++;
	if (!nv[acc->n - 1].target || !nv[acc->n - 1].record || (m->view && !nv[acc->n - 1].view))
		return -ENOMEM;
	return 0;
}

int cairn_cache_mounts(cairn_cache *c, const char *id, cairn_mount_info_fn fn, void *userdata,
                       cairn_error **reterr)
{
	int r = cache_enter(c, !c || !fn, "list mounts", reterr);
	if (r < 0)
		return r;
	struct mount_list acc = {0};
	/* Collected first: @fn runs with no transaction open, so it may call into the cache. */
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if ((r = meta_tx_begin(c->db, &tx, false, reterr)) >= 0) {
		r = meta_mount_list(&tx, id, collect_mount, &acc, reterr);
		if (r == -ENOMEM)
			r = err_set(reterr, r, "list mounts: out of memory");
	}
	meta_tx_end(&tx);
	for (size_t i = 0; i < acc.n; i++) {
		cairn_mount_info info = {.target = acc.v[i].target,
		                         .record = acc.v[i].record,
		                         .view = acc.v[i].view,
		                         .readonly = acc.v[i].readonly,
		                         .created_at = acc.v[i].created_at};
		if (r >= 0)
			r = fn(&info, userdata);
		meta_mount_clear(&acc.v[i]);
	}
	free(acc.v);
	return r < 0 ? r : 0;
}
