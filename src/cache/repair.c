/* SPDX-License-Identifier: MIT */
/*
 * The open-time repair (spec §5.1, and what BuildKit later learned): clear the temporary leases
 * of dead processes, finish removals a crash interrupted (tombstones), complete interrupted
 * finalizes, and drop records whose data is gone.
 *
 * Safe while other processes work: every multi-step change elsewhere is ordered so that what this
 * sees in between is either complete or recognisably unfinished. New makes the snapshot before
 * the row; finalize commits the snapshot before changing rows (here: an immutable whose mutable's
 * snapshot is gone while its own committed snapshot exists, completed the same way); removal
 * tombstones the rows first (here: finished the same way; both sides tolerate the other's work).
 */
#include <string.h>
#include <sys/types.h>

#include "base/log.h"
#include "internal.h"

/* ---- temporary leases ---- */

struct lease {
	char *id, *type, *res;
	int64_t pid, pid_start;
};

struct leases {
	struct lease *v;
	size_t n;
};

static int collect_lease(const char *id, int64_t pid, int64_t pid_start, const char *type,
                         const char *res, void *userdata)
{
	struct leases *l = userdata;
	struct lease *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	l->v = nv;
	nv[l->n] = (struct lease){strdup(id), type ? strdup(type) : NULL, res ? strdup(res) : NULL,
	                          pid, pid_start};
	l->n++;
	if (!nv[l->n - 1].id || (type && !nv[l->n - 1].type) || (res && !nv[l->n - 1].res))
		return -ENOMEM;
	return 0;
}

static void leases_free(struct leases *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].id);
		free(l->v[i].type);
		free(l->v[i].res);
	}
	free(l->v);
}

static int clear_dead_leases(cairn_cache *c, cairn_error **reterr)
{
	struct leases l = {0};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	if (r >= 0 && (r = meta_temp_leases(&tx, collect_lease, &l, reterr)) == -ENOMEM)
		r = err_set(reterr, r, "list temporary leases: out of memory");
	meta_tx_end(&tx);
	char type[64];
	snprintf(type, sizeof(type), "snapshots/%s", c->driver);
	for (size_t i = 0; r >= 0 && i < l.n; i++) {
		struct lease *x = &l.v[i];
		if (cache_proc_alive(x->pid, x->pid_start))
			continue;
		/* A view of another snapshotter is cleared when the store is opened with it. */
		if (x->type && strcmp(x->type, type) != 0)
			continue;
		if (x->res && (r = snap_remove(c->snap, x->res, NULL)) < 0 && r != -ENOENT) {
			log_debug("keep lease '%s': its view '%s' cannot be removed (%d)", x->id,
			          x->res, r);
			r = 0;
			continue;
		}
		if ((r = meta_tx_begin(c->db, &tx, true, reterr)) < 0 ||
		    (r = meta_temp_lease_remove(&tx, x->id, reterr)) < 0 ||
		    (r = meta_tx_commit(&tx, reterr)) < 0)
			break;
		log_debug("cleared the temporary lease '%s' of dead process %lld", x->id,
		          (long long)x->pid);
	}
	leases_free(&l);
	return r < 0 ? r : 0;
}

/* ---- records ---- */

struct snap_names {
	struct snap_name {
		char *name;
		snap_kind kind;
	} * v;
	size_t n;
};

static int collect_snapshot(const snap_info *info, void *userdata)
{
	struct snap_names *s = userdata;
	struct snap_name *nv = realloc(s->v, (s->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	s->v = nv;
	nv[s->n] = (struct snap_name){strdup(info->name), info->kind};
	return nv[s->n++].name ? 0 : -ENOMEM;
}

static int cmp_name(const void *key, const void *elem)
{
	return strcmp(key, ((const struct snap_name *)elem)->name);
}

/* Whether snapshot @key exists as @kind (the walk lists names in bytewise order). */
static bool has_snapshot(const struct snap_names *s, const char *key, snap_kind kind)
{
	const struct snap_name *x =
		key && s->n ? bsearch(key, s->v, s->n, sizeof(*s->v), cmp_name) : NULL;
	return x && x->kind == kind;
}

struct rows {
	struct meta_record *v;
	size_t n, cap;
};

static int collect_row(const struct meta_record *r, void *userdata)
{
	struct rows *rows = userdata;
	if (rows->n == rows->cap) {
		size_t cap = rows->cap ? rows->cap * 2 : 64;
		struct meta_record *nv = realloc(rows->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		rows->v = nv;
		rows->cap = cap;
	}
	struct meta_record *nv = rows->v;
	/* Only what the repair reads. */
	nv[rows->n] = (struct meta_record){
		.id = strdup(r->id),
		.kind = r->kind,
		.parent = r->parent ? strdup(r->parent) : NULL,
		.equal_mutable = r->equal_mutable ? strdup(r->equal_mutable) : NULL,
		.snapshot = r->snapshot ? strdup(r->snapshot) : NULL,
		.blob = r->blob ? strdup(r->blob) : NULL,
		.deleted = r->deleted,
		.extracted = r->extracted,
	};
	struct meta_record *x = &nv[rows->n++];
	if (!x->id || (r->parent && !x->parent) || (r->equal_mutable && !x->equal_mutable) ||
	    (r->snapshot && !x->snapshot) || (r->blob && !x->blob))
		return -ENOMEM;
	return 0;
}

static void rows_free(struct rows *rows)
{
	for (size_t i = 0; i < rows->n; i++)
		meta_record_clear(&rows->v[i]);
	free(rows->v);
	*rows = (struct rows){0};
}

/* Every row (@all), or only those that may own files or are tombstones: a lazy record has
 * nothing to check, and an open must not pay for reading 10,000 of them. */
static int load_rows(cairn_cache *c, struct rows *rows, bool all, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	if (r >= 0)
		r = all ? meta_record_list(&tx, c->driver, collect_row, rows, reterr)
		        : meta_record_list_unsettled(&tx, c->driver, collect_row, rows, reterr);
	if (r == -ENOMEM)
		r = err_set(reterr, r, "check records: out of memory");
	return r;
}

static int load_snapshots(cairn_cache *c, struct snap_names *snaps, cairn_error **reterr)
{
	int r = snap_walk(c->snap, NULL, 0, collect_snapshot, snaps, reterr);
	if (r == -ENOMEM)
		return err_set(reterr, r, "check records: out of memory");
	return r;
}

/* Completes the finalizes a crash interrupted. Returns how many. */
static int roll_forward(cairn_cache *c, const struct rows *rows, const struct snap_names *snaps,
                        cairn_error **reterr)
{
	int n = 0;
	for (size_t i = 0; i < rows->n; i++) {
		const struct meta_record *x = &rows->v[i];
		if (x->deleted || !x->equal_mutable ||
		    has_snapshot(snaps, x->equal_mutable, SNAP_KIND_ACTIVE) ||
		    !has_snapshot(snaps, x->id, SNAP_KIND_COMMITTED))
			continue;
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		_cleanup_(cairn_error_freep) cairn_error *err = NULL;
		int r;
		if ((r = meta_tx_begin(c->db, &tx, true, reterr)) < 0)
			return err_prefix(reterr, "complete the finalize of record '%s'", x->id);
		/* Gone since the rows were read: removed by another process, nothing to finish. */
		if ((r = meta_record_finalize(&tx, x->id, &err)) == -ENOENT)
			continue;
		if (r < 0)
			return err_set(reterr, r, "complete the finalize of record '%s': %s", x->id,
			               cairn_error_message(err));
		if ((r = meta_record_delete(&tx, x->equal_mutable, reterr)) < 0 ||
		    (r = meta_tx_commit(&tx, reterr)) < 0)
			return err_prefix(reterr, "complete the finalize of record '%s'", x->id);
		log_debug("completed the interrupted finalize of record '%s'", x->id);
		n++;
	}
	return n;
}

static int cmp_row_id(const void *key, const void *elem)
{
	return strcmp(key, ((const struct meta_record *)elem)->id);
}

/* The index of row @id (rows are in id order), or -1. */
static ssize_t find_row(const struct rows *rows, const char *id)
{
	if (!id || rows->n == 0)
		return -1;
	const struct meta_record *x = bsearch(id, rows->v, rows->n, sizeof(*rows->v), cmp_row_id);
	return x ? x - rows->v : -1;
}

/* Whether row @x has lost its data: 1 broken, 0 fine, 2 only its snapshot (a blob stays). */
static int check_row(const struct meta_record *x, const struct snap_names *snaps)
{
	if (x->kind == META_RECORD_MUTABLE)
		return !has_snapshot(snaps, x->snapshot, SNAP_KIND_ACTIVE);
	if (x->equal_mutable)
		return !has_snapshot(snaps, x->equal_mutable, SNAP_KIND_ACTIVE);
	if (!x->extracted || has_snapshot(snaps, x->snapshot, SNAP_KIND_COMMITTED))
		return 0;
	return x->blob ? 2 : 1;
}

/* Sets a flag of record @id with @set; 1 done, 0 when the row is gone (removed by another
 * process since it was read), a negative errno otherwise. */
static int set_flag_if_present(meta_tx *tx, const char *id,
                               int (*set)(meta_tx *, const char *, bool, cairn_error **),
                               bool value, cairn_error **reterr)
{
	_cleanup_(cairn_error_freep) cairn_error *err = NULL;
	int r = set(tx, id, value, &err);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return err_set(reterr, r, "%s", cairn_error_message(err));
	return 1;
}

struct doomed {
	size_t idx;
	size_t depth;
	bool lazy;
};

static int cmp_doomed(const void *a, const void *b)
{
	const struct doomed *x = a, *y = b;
	/* Deepest first (children before parents); a lazy immutable before its mutable. */
	if (x->depth != y->depth)
		return x->depth > y->depth ? -1 : 1;
	return (int)y->lazy - (int)x->lazy;
}

/*
 * Marks what must go: tombstones, and rows whose data is gone (broken) with everything that
 * depends on them: the descendants of a broken row, and the lazy immutable of a mutable that
 * goes. A record whose snapshot is gone but whose blob remains is kept, marked not extracted.
 */
static int mark_doomed(cairn_cache *c, const struct rows *rows, const struct snap_names *snaps,
                       bool *doomed, bool *broken, cairn_error **reterr)
{
	for (size_t i = 0; i < rows->n; i++) {
		const struct meta_record *x = &rows->v[i];
		int k = x->deleted ? 0 : check_row(x, snaps);
		broken[i] = k == 1;
		doomed[i] = x->deleted || broken[i];
		if (k != 2)
			continue;
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		int r;
		if ((r = meta_tx_begin(c->db, &tx, true, reterr)) < 0)
			return r;
		/* Gone since the rows were read: another process removed it (prune, repair). */
		if ((r = set_flag_if_present(&tx, x->id, meta_record_set_extracted, false,
		                             reterr)) <= 0 ||
		    (r = meta_tx_commit(&tx, reterr)) < 0)
			return r;
		log_debug("record '%s' lost its snapshot; its blob remains", x->id);
	}
	for (bool changed = true; changed;) {
		changed = false;
		for (size_t i = 0; i < rows->n; i++) {
			ssize_t p = find_row(rows, rows->v[i].parent);
			ssize_t m = find_row(rows, rows->v[i].equal_mutable);
			bool b = (p >= 0 && broken[p]) || (m >= 0 && broken[m]);
			bool d = b || (m >= 0 && doomed[m]);
			if ((b && !broken[i]) || (d && !doomed[i])) {
				broken[i] |= b;
				doomed[i] = true;
				changed = true;
			}
		}
	}
	return 0;
}

static int remove_doomed(cairn_cache *c, const struct rows *rows, const bool *doomed,
                         cairn_error **reterr)
{
	_cleanup_free_ struct doomed *order = calloc(rows->n ? rows->n : 1, sizeof(*order));
	if (!order)
		return err_set(reterr, -ENOMEM, "repair records: out of memory");
	size_t n = 0;
	for (size_t i = 0; i < rows->n; i++) {
		if (!doomed[i])
			continue;
		size_t depth = 0;
		for (ssize_t p = find_row(rows, rows->v[i].parent); p >= 0 && depth < rows->n;
		     p = find_row(rows, rows->v[p].parent))
			depth++;
		order[n++] = (struct doomed){i, depth, rows->v[i].equal_mutable != NULL};
	}
	qsort(order, n, sizeof(*order), cmp_doomed);
	/* Tombstone everything first, so that a crash here is finished by the next open. A row
	 * that is gone was removed meanwhile by another process (a prune, or the repair of another
	 * open finishing the same tombstones): done already, not an error. */
	_cleanup_free_ bool *gone = calloc(n ? n : 1, sizeof(bool));
	if (!gone)
		return err_set(reterr, -ENOMEM, "repair records: out of memory");
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, true, reterr);
	for (size_t k = 0; r >= 0 && k < n; k++) {
		r = set_flag_if_present(&tx, rows->v[order[k].idx].id, meta_record_set_deleted,
		                        true, reterr);
		gone[k] = r == 0;
	}
	if (r < 0 || (r = meta_tx_commit(&tx, reterr)) < 0)
		return r;
	for (size_t k = 0; k < n; k++) {
		char *id = rows->v[order[k].idx].id;
		if (gone[k]) {
			log_debug("repair: record '%s' was removed by another process", id);
			continue;
		}
		_cleanup_(cairn_error_freep) cairn_error *err = NULL;
		if (cache_remove_records(c, &id, 1, &err) < 0)
			log_debug("repair: keep record '%s': %s", id, cairn_error_message(err));
		else
			log_debug("repair: removed record '%s'%s", id,
			          rows->v[order[k].idx].deleted ? " (tombstoned)"
			                                        : " (its data is gone)");
	}
	return 0;
}

/* Whether a live row lost its data with no blob to fall back on (its descendants go too). */
static bool any_broken(const struct rows *rows, const struct snap_names *snaps)
{
	for (size_t i = 0; i < rows->n; i++)
		if (!rows->v[i].deleted && check_row(&rows->v[i], snaps) == 1)
			return true;
	return false;
}

static int repair_records(cairn_cache *c, cairn_error **reterr)
{
	struct rows rows = {0};
	struct snap_names snaps = {0};
	int r = load_rows(c, &rows, false, reterr);
	if (r >= 0)
		r = load_snapshots(c, &snaps, reterr);
	if (r >= 0 && (r = roll_forward(c, &rows, &snaps, reterr)) > 0) {
		/* Rows changed (the snapshots did not): read them again. */
		rows_free(&rows);
		r = load_rows(c, &rows, false, reterr);
	}
	if (r >= 0 && any_broken(&rows, &snaps)) {
		/* Broken rows take their descendants, lazy ones included: read every row. */
		rows_free(&rows);
		r = load_rows(c, &rows, true, reterr);
	}
	_cleanup_free_ bool *doomed = NULL, *broken = NULL;
	if (r >= 0 && (!(doomed = calloc(rows.n + 1, sizeof(bool))) ||
	               !(broken = calloc(rows.n + 1, sizeof(bool)))))
		r = err_set(reterr, -ENOMEM, "repair records: out of memory");
	if (r >= 0 && (r = mark_doomed(c, &rows, &snaps, doomed, broken, reterr)) >= 0)
		r = remove_doomed(c, &rows, doomed, reterr);
	rows_free(&rows);
	for (size_t i = 0; i < snaps.n; i++)
		free(snaps.v[i].name);
	free(snaps.v);
	return r;
}

int cache_repair(cairn_cache *c, cairn_error **reterr)
{
	int r = clear_dead_leases(c, reterr);
	if (r < 0)
		return r;
	return repair_records(c, reterr);
}
