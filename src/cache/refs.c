/* SPDX-License-Identifier: MIT */
/* Refs: release, clone, parent, commit, finalize, policy; and removing records. */
#include <string.h>

#include "base/fault.h"
#include "base/log.h"
#include "internal.h"

/* ---- removal ---- */

int cache_remove_view(cairn_cache *c, const char *key, cairn_error **reterr)
{
	int r = snap_remove(c->snap, key, reterr);
	if (r < 0 && r != -ENOENT)
		return err_prefix(reterr, "remove view");
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if ((r = meta_tx_begin(c->db, &tx, true, reterr)) < 0 ||
	    (r = meta_temp_lease_remove(&tx, key, reterr)) < 0)
		return r;
	return meta_tx_commit(&tx, reterr);
}

void cache_untombstone(cairn_cache *c, char *const *ids, size_t n)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if (meta_tx_begin(c->db, &tx, true, NULL) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		meta_record_set_deleted(&tx, ids[i], false, NULL);
	meta_tx_commit(&tx, NULL);
}

struct unused_guard {
	const char *driver, *id;
};

/* Whether snapshot @key may go with record @g->id (see remove_snapshot()): the record is still
 * tombstoned (or its row is gone already), and no live record uses the snapshot. */
static int snapshot_unused(meta_tx *tx, const char *key, void *userdata, cairn_error **reterr)
{
	const struct unused_guard *g = userdata;
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	int r = meta_record_get(tx, g->id, &row, reterr);
	if (r < 0)
		return r;
	if (r > 0 && !row.deleted)
		return 0; /* untombstoned meanwhile (a removal elsewhere that gave up): it stays */
	r = meta_record_snapshot_users(tx, g->driver, key, g->id, reterr);
	return r < 0 ? r : r == 0;
}

/*
 * Removes the snapshot of tombstoned record @id unless another live record holds it. Records
 * with one chain id share one snapshot, and another process may insert one (get_by_blob) at any
 * moment: the check that nobody else uses the snapshot runs inside the transaction that removes
 * it, so a record inserted before sees it kept and one inserted after finds it gone (and extracts
 * it again), never a snapshot that vanishes under a record that counted on it.
 */
static int remove_snapshot(cairn_cache *c, const char *id, cairn_error **reterr)
{
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	if (r < 0 || (r = meta_record_get(&tx, id, &row, reterr)) <= 0)
		return r;
	meta_tx_end(&tx);
	if (!row.snapshot || !row.extracted)
		return 0;
	_cleanup_(cairn_error_freep) cairn_error *err = NULL;
	struct unused_guard g = {c->driver, id};
	r = snap_remove_if(c->snap, row.snapshot, snapshot_unused, &g, &err);
	if (r == CAIRN_EPRECONDITION)
		return err_set(reterr, -EBUSY, "record '%s' is in use: %s", id,
		               cairn_error_message(err));
	if (r < 0 && r != -ENOENT)
		return err_set(reterr, r, "remove record '%s': %s", id, cairn_error_message(err));
	return 0;
}

int cache_delete_rows(cairn_cache *c, char *const *ids, size_t n, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, true, reterr);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		if ((r = meta_record_delete(&tx, ids[i], reterr)) < 0)
			return err_prefix(reterr, "remove record");
	if ((r = meta_tx_commit(&tx, reterr)) < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		log_debug("removed record '%s'", ids[i]);
	return 0;
}

int cache_remove_snapshots(cairn_cache *c, char *const *ids, size_t n, cairn_error **reterr)
{
	for (size_t i = 0; i < n; i++) {
		int r = remove_snapshot(c, ids[i], reterr);
		if (r < 0) {
			/* Something took the data (a view or a child made elsewhere): the records
			 * whose snapshots went go too, the others stay. */
			cache_delete_rows(c, ids, i, NULL);
			cache_untombstone(c, ids + i, n - i);
			return r;
		}
		fault_point("remove.snapshot-removed");
	}
	return 0;
}

int cache_remove_records(cairn_cache *c, char *const *ids, size_t n, cairn_error **reterr)
{
	int r = cache_remove_snapshots(c, ids, n, reterr);
	return r < 0 ? r : cache_delete_rows(c, ids, n, reterr);
}

/* ---- deferred work ---- */

static int work_tombstone(cairn_cache *c, meta_tx *tx, struct cache_work *w, const char *id,
                          cairn_error **reterr)
{
	int r = meta_record_set_deleted(tx, id, true, reterr);
	if (r < 0)
		return r;
	struct entry *e = entry_acquire(c, id, false, NULL);
	char *copy = strdup(id);
	if (!e || !copy) {
		free(copy);
		entry_put(c, e);
		return err_set(reterr, -ENOMEM, "remove record '%s': out of memory", id);
	}
	e->pins++;
	w->remove[w->n_remove++] = copy;
	w->unpin[w->n_unpin++] = e;
	return 0;
}

void cache_detach_view(struct entry *e, struct cache_work *w)
{
	if (!e->view)
		return;
	/* The last ref went: so does the view, once the manager lock is dropped. The entry stays
	 * pinned until then, so that nothing removes the record under its view. */
	w->view = TAKE_PTR(e->view);
	w->view_mounts = TAKE_PTR(e->view_mounts);
	w->n_view_mounts = e->n_view_mounts;
	e->n_view_mounts = 0;
	e->pins++;
	w->unpin[w->n_unpin++] = e;
}

int cache_unheld_locked(cairn_cache *c, meta_tx *tx, const struct meta_record *row,
                        struct cache_work *w, cairn_error **reterr)
{
	_cleanup_free_ char *target = NULL;
	int r = cache_first_mount(tx, row->id, &target, reterr);
	if (r != 0)
		return r < 0 ? r : 0; /* a persistent mount still holds it */
	if (row->kind == META_RECORD_MUTABLE) {
		if (row->retain)
			return meta_record_bump_gen(tx, row->id, reterr);
		return work_tombstone(c, tx, w, row->id, reterr);
	}
	if (!row->equal_mutable)
		return 0;
	/* A lazy pair with nothing held: it goes unless either half retains (spec §6.9). */
	_cleanup_(meta_record_clear) struct meta_record m = {0};
	if ((r = meta_record_get(tx, row->equal_mutable, &m, reterr)) < 0)
		return r;
	if (row->retain || (r > 0 && m.retain))
		return 0;
	if ((r = work_tombstone(c, tx, w, row->id, reterr)) < 0)
		return r;
	return work_tombstone(c, tx, w, row->equal_mutable, reterr);
}

int cache_work_run(cairn_cache *c, struct cache_work *w, cairn_error **reterr)
{
	int ret = 0, r;
	if (w->view && (r = cache_remove_view(c, w->view, reterr)) < 0)
		ret = r;
	if (w->n_remove && (r = cache_remove_records(c, w->remove, w->n_remove, reterr)) < 0 &&
	    ret == 0)
		ret = r;
	free(w->view);
	snap_mounts_free(w->view_mounts, w->n_view_mounts);
	for (size_t i = 0; i < w->n_remove; i++)
		free(w->remove[i]);
	if (w->n_unpin) {
		cache_lock(c);
		for (size_t i = 0; i < w->n_unpin; i++) {
			w->unpin[i]->pins--;
			entry_put(c, w->unpin[i]);
		}
		cache_unlock(c);
	}
	*w = (struct cache_work){0};
	return ret;
}

/* ---- release and free ---- */

/* The database side of releasing @ref's hold on @e (manager lock held). */
static int release_locked(cairn_cache *c, cairn_ref *ref, struct entry *e, struct cache_work *w,
                          cairn_error **reterr)
{
	bool use = ref->trigger && e->triggers == 0;
	bool pinned = e->pins > 0;
	if (e->handles == 0)
		cache_detach_view(e, w);
	if (!use && (e->handles > 0 || pinned))
		return 0;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	int r = meta_tx_begin(c->db, &tx, true, reterr);
	if (r < 0 || (r = meta_record_get(&tx, e->id, &row, reterr)) < 0)
		return r;
	if (r == 0 || row.deleted)
		return 0;
	int64_t now = meta_now_ns();
	/* A use of a lazy immutable is a use of its mutable too (BuildKit marks the mutable's
	 * handle triggering, and releases it). */
	if (use && ((r = meta_record_add_use(&tx, row.id, now, reterr)) < 0 ||
	            (row.equal_mutable &&
	             (r = meta_record_add_use(&tx, row.equal_mutable, now, reterr)) < 0)))
		return r;
	if (e->handles == 0 && !pinned && (r = cache_unheld_locked(c, &tx, &row, w, reterr)) < 0)
		return r;
	/* Nothing here holds it any more: other processes may prune it (a tombstone above is
	 * removed by this process's work anyway). */
	if (e->handles == 0 && !pinned && (r = cache_lease_drop(c, &tx, e, reterr)) < 0)
		return r;
	return meta_tx_commit(&tx, reterr);
}

int cairn_ref_release(cairn_ref *ref, cairn_error **reterr)
{
	if (!ref)
		return err_set(reterr, -EINVAL, "release: no ref given");
	cairn_cache *c = ref->cache;
	struct cache_work w = {0};
	int r = 0;
	cache_lock(c);
	struct entry *e = ref->e;
	if (ref->released || !e || c->closed) {
		ref->released = true;
		cache_unlock(c);
		return 0;
	}
	ref->released = true;
	ref->e = NULL;
	e->handles--;
	if (ref->trigger)
		e->triggers--;
	r = release_locked(c, ref, e, &w, reterr);
	entry_put(c, e);
	cache_unlock(c);
	int r2 = cache_work_run(c, &w, r < 0 ? NULL : reterr);
	if (r < 0 || r2 < 0)
		return err_prefix(reterr, "release '%s'", ref->id);
	return 0;
}

cairn_ref *cairn_ref_free(cairn_ref *ref)
{
	if (!ref)
		return NULL;
	cairn_ref_release(ref, NULL);
	cairn_cache *c = ref->cache;
	free(ref);
	cache_unref(c);
	return NULL;
}

const char *cairn_ref_id(const cairn_ref *ref)
{
	return ref ? ref->id : NULL;
}

bool cairn_ref_is_mutable(const cairn_ref *ref)
{
	return ref && ref->is_mutable;
}

/* ---- clone and parent ---- */

int cairn_ref_clone(cairn_ref *ref, cairn_ref **ret, cairn_error **reterr)
{
	int r = cache_ref_check(ref, "clone", reterr);
	if (r < 0)
		return r;
	if (!ret)
		return err_set(reterr, -EINVAL, "clone '%s': invalid arguments", ref->id);
	if (ref->is_mutable)
		return err_set(reterr, -EINVAL, "clone '%s': a mutable ref cannot be cloned",
		               ref->id);
	cache_lock(ref->cache);
	cairn_ref *clone = cache_ref_new(ref->cache, ref->e, false, false);
	cache_unlock(ref->cache);
	if (!clone)
		return err_set(reterr, -ENOMEM, "clone '%s': out of memory", ref->id);
	*ret = clone;
	return 0;
}

int cairn_ref_parent(cairn_ref *ref, cairn_ref **ret, cairn_error **reterr)
{
	int r = cache_ref_check(ref, "parent of", reterr);
	if (r < 0)
		return r;
	if (!ret)
		return err_set(reterr, -EINVAL, "parent of '%s': invalid arguments", ref->id);
	cairn_cache *c = ref->cache;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	_cleanup_(meta_record_clear) struct meta_record row = {0}, prow = {0};
	cache_lock(c);
	/* The parent is held by the child (it cannot be pruned), but a ref outlives that. */
	if ((r = meta_tx_begin(c->db, &tx, true, reterr)) >= 0 &&
	    (r = cache_load(c, &tx, ref->id, &row, reterr)) >= 0 && row.parent)
		r = cache_load(c, &tx, row.parent, &prow, reterr);
	cairn_ref *p = NULL;
	if (r >= 0 && row.parent) {
		struct entry *e = entry_acquire(c, prow.id, false, prow.equal_mutable);
		if (!e || !(p = cache_ref_new(c, e, false, true))) {
			entry_put(c, e);
			r = err_set(reterr, -ENOMEM, "parent of '%s': out of memory", ref->id);
		} else if ((r = cache_lease_hold(c, &tx, e, reterr)) < 0 ||
		           (r = meta_tx_commit(&tx, reterr)) < 0) {
			cache_ref_drop_locked(c, p);
			p = NULL;
		}
	}
	meta_tx_end(&tx);
	cache_unlock(c);
	if (r < 0)
		return r;
	*ret = p;
	return 0;
}

/* ---- finalize and commit ---- */

/* Whether snapshot @key exists as @kind. */
static bool snap_is(cairn_cache *c, const char *key, snap_kind kind)
{
	_cleanup_(snap_info_freep) snap_info *info = NULL;
	return snap_stat(c->snap, key, &info, NULL) == 0 && info->kind == kind;
}

int cache_finalize_locked(cairn_cache *c, const char *id, cairn_error **reterr)
{
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	if (r < 0 || (r = cache_load(c, &tx, id, &row, reterr)) < 0)
		return r;
	meta_tx_end(&tx);
	if (!row.equal_mutable)
		return 0;
	/* The snapshot first: the mutable's active snapshot becomes the immutable's committed one
	 * (O(1), same directory). A crash before the rows change is completed by the next open,
	 * which finds the immutable's snapshot committed and the mutable's gone. */
	_cleanup_(cairn_error_freep) cairn_error *err = NULL;
	r = snap_commit(c->snap, id, row.equal_mutable, NULL, 0, &err);
	/* A failure is fine when another process finished this commit: carry on with the rows. */
	if (r < 0 && !(snap_is(c, id, SNAP_KIND_COMMITTED) &&
	               !snap_is(c, row.equal_mutable, SNAP_KIND_ACTIVE)))
		return err_set(reterr, r, "finalize record '%s': %s", id, cairn_error_message(err));
	fault_point("commit.finalize-snapshot");
	if ((r = meta_tx_begin(c->db, &tx, true, reterr)) < 0 ||
	    (r = meta_record_finalize(&tx, id, reterr)) < 0 ||
	    (r = meta_record_delete(&tx, row.equal_mutable, reterr)) < 0 ||
	    (r = meta_tx_commit(&tx, reterr)) < 0)
		return err_prefix(reterr, "finalize record '%s'", id);
	log_debug("finalized record '%s' (mutable '%s' removed)", id, row.equal_mutable);
	fault_point("commit.finalized");
	return 0;
}

int cairn_ref_finalize(cairn_ref *ref, cairn_error **reterr)
{
	int r = cache_ref_check(ref, "finalize", reterr);
	if (r < 0)
		return r;
	if (ref->is_mutable)
		return err_set(reterr, -EINVAL, "finalize '%s': the ref is mutable (commit it)",
		               ref->id);
	pthread_mutex_lock(&ref->e->lock->mu);
	r = cache_finalize_locked(ref->cache, ref->id, reterr);
	pthread_mutex_unlock(&ref->e->lock->mu);
	return r;
}

/* Inserts the lazy immutable of mutable @m and moves @ref's hold to it. Manager lock held. */
static int commit_locked(cairn_cache *c, cairn_ref *ref, cairn_ref **ret, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	_cleanup_(meta_record_clear) struct meta_record m = {0};
	int r = meta_tx_begin(c->db, &tx, true, reterr);
	if (r < 0 || (r = cache_load(c, &tx, ref->id, &m, reterr)) < 0)
		return r;
	_cleanup_free_ char *target = NULL;
	if ((r = cache_first_mount(&tx, ref->id, &target, reterr)) < 0)
		return r;
	if (r > 0)
		return err_set(reterr, -EBUSY, "record '%s' is mounted at '%s': unmount it first",
		               ref->id, target);
	if (m.equal_immutable)
		return err_set(reterr, -EINVAL, "record '%s' is committed already as '%s'", ref->id,
		               m.equal_immutable);
	char id[CAIRN_RECORD_ID_LEN + 1];
	cache_new_id(id);
	struct meta_record rec = {
		.id = id,
		.snapshotter = m.snapshotter,
		.kind = META_RECORD_IMMUTABLE,
		.parent = m.parent,
		.equal_mutable = m.id,
		.description = m.description,
		.extracted = true,
		.created_at = meta_now_ns(),
	};
	if ((r = meta_record_insert(&tx, &rec, reterr)) < 0)
		return r;
	struct entry *e = entry_acquire(c, id, false, ref->id);
	cairn_ref *iref = e ? cache_ref_new(c, e, false, true) : NULL;
	if (!iref) {
		entry_put(c, e);
		return err_set(reterr, -ENOMEM, "commit '%s': out of memory", ref->id);
	}
	if ((r = cache_lease_hold(c, &tx, e, reterr)) < 0 ||
	    (r = meta_tx_commit(&tx, reterr)) < 0) {
		cache_ref_drop_locked(c, iref);
		return r;
	}
	fault_point("commit.recorded");
	/* The mutable ref now belongs to the immutable (BuildKit's equalMutable): consumed. */
	struct entry *me = ref->e;
	me->handles--;
	if (ref->trigger)
		me->triggers--;
	ref->e = NULL;
	ref->consumed = true;
	entry_put(c, me);
	*ret = iref;
	return 0;
}

int cairn_ref_commit(cairn_ref *ref, cairn_ref **ret, cairn_error **reterr)
{
	int r = cache_ref_check(ref, "commit", reterr);
	if (r < 0)
		return r;
	if (!ret)
		return err_set(reterr, -EINVAL, "commit '%s': invalid arguments", ref->id);
	if (!ref->is_mutable)
		return err_set(reterr, -EINVAL, "commit '%s': the ref is immutable", ref->id);
	cache_lock(ref->cache);
	r = commit_locked(ref->cache, ref, ret, reterr);
	cache_unlock(ref->cache);
	return r;
}

/* ---- metadata ---- */

int cairn_ref_set_cache_policy(cairn_ref *ref, cairn_cache_policy policy, cairn_error **reterr)
{
	int r = cache_ref_check(ref, "set cache policy of", reterr);
	if (r < 0)
		return r;
	if (policy != CAIRN_CACHE_POLICY_DEFAULT && policy != CAIRN_CACHE_POLICY_RETAIN)
		return err_set(reterr, -EINVAL, "set cache policy of '%s': unknown policy %d",
		               ref->id, (int)policy);
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if ((r = meta_tx_begin(ref->cache->db, &tx, true, reterr)) < 0 ||
	    (r = meta_record_set_retain(&tx, ref->id, policy == CAIRN_CACHE_POLICY_RETAIN,
	                                reterr)) < 0)
		return r;
	return meta_tx_commit(&tx, reterr);
}

int cairn_ref_set_record_type(cairn_ref *ref, const char *type, cairn_error **reterr)
{
	int r = cache_ref_check(ref, "set record type of", reterr);
	if (r < 0)
		return r;
	if (type && strcmp(type, "regular") == 0)
		type = "";
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if ((r = meta_tx_begin(ref->cache->db, &tx, true, reterr)) < 0 ||
	    (r = meta_record_set_type(&tx, ref->id, type, reterr)) < 0)
		return r;
	return meta_tx_commit(&tx, reterr);
}
