/* SPDX-License-Identifier: MIT */
/* Sizes, record infos, disk usage, prune and remove. */
#include <stddef.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "base/fault.h"
#include "base/log.h"
#include "content/content.h"
#include "internal.h"
#include "lease/lease.h"
#include "meta/labels.h"
#include "meta/leases.h"
#include "snapshot/filter.h"

/* ---- size ---- */

struct size_args {
	cairn_cache *c;
	const char *id;
};

/*
 * Whether the record of @row is a held mutable (its content may change while we look). Takes the
 * manager lock, so no transaction may be open (lock order: manager, then database).
 */
static bool held_mutable(cairn_cache *c, const struct meta_record *row)
{
	if (row->kind != META_RECORD_MUTABLE)
		return false;
	cache_lock(c);
	bool held = entry_busy(entry_find(c, row->id));
	cache_unlock(c);
	if (held)
		return true;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	_cleanup_free_ char *target = NULL;
	return meta_tx_begin(c->db, &tx, false, NULL) < 0 ||
	       cache_first_mount(&tx, row->id, &target, NULL) != 0;
}

/* One measurement; -EAGAIN when the record changed under it (a finalize renamed its snapshot). */
static int measure(cairn_cache *c, const char *id, int64_t *ret, cairn_error **reterr)
{
	_cleanup_(meta_record_clear) struct meta_record row = {0}, again = {0};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	if (r < 0 || (r = meta_record_get(&tx, id, &row, reterr)) < 0)
		return r;
	*ret = 0;
	if (r == 0)
		return 0;
	meta_tx_end(&tx);
	bool live = held_mutable(c, &row);
	if (!live && row.size >= 0) {
		*ret = row.size;
		return 0;
	}
	int64_t total = 0;
	const char *key = row.equal_mutable ? row.equal_mutable : row.snapshot;
	if (row.extracted && key) {
		struct snap_usage u = {0};
		_cleanup_(cairn_error_freep) cairn_error *err = NULL;
		r = snap_usage(c->snap, key, &u, &err);
		if (r == -ENOENT) {
			if ((r = meta_tx_begin(c->db, &tx, false, reterr)) < 0 ||
			    (r = meta_record_get(&tx, id, &again, reterr)) < 0)
				return r;
			if (r > 0 && again.gen != row.gen)
				return -EAGAIN;
			/* Missing data counts nothing (open drops such records). */
		} else if (r < 0) {
			return err_set(reterr, r, "size of record '%s': %s", id,
			               cairn_error_message(err));
		} else {
			total += u.size;
		}
	}
	content_blob_info bi;
	if (row.blob && content_info(c->store->content, row.blob, &bi, NULL) == 0)
		total += (int64_t)bi.size;
	if (!live) {
		meta_tx_end(&tx);
		if ((r = meta_tx_begin(c->db, &tx, true, reterr)) < 0 ||
		    (r = meta_record_set_size(&tx, id, row.gen, total, reterr)) < 0 ||
		    (r = meta_tx_commit(&tx, reterr)) < 0)
			return r;
	}
	*ret = total;
	return 0;
}

static int size_work(void *userdata, const atomic_bool *cancelled, int64_t *ret_value,
                     cairn_error **reterr)
{
	struct size_args *a = userdata;
	int r;
	for (int attempt = 0; attempt < 4; attempt++)
		if ((r = measure(a->c, a->id, ret_value, reterr)) != -EAGAIN)
			return r;
	return err_set(reterr, -EAGAIN, "size of record '%s': it keeps changing", a->id);
}

int cache_size(cairn_cache *c, const char *id, int64_t *ret, cairn_error **reterr)
{
	/* No cancel flag: this caller always waits, so @args outlives the work. */
	struct size_args args = {c, id};
	return flight_do(c->flight, id, size_work, &args, NULL, ret, reterr);
}

int cairn_ref_size(cairn_ref *ref, int64_t *ret, cairn_error **reterr)
{
	int r = cache_ref_check(ref, "size of", reterr);
	if (r < 0)
		return r;
	if (!ret)
		return err_set(reterr, -EINVAL, "size of '%s': invalid arguments", ref->id);
	return cache_size(ref->cache, ref->id, ret, reterr);
}

int cairn_cache_size(cairn_cache *c, const char *id, int64_t *ret, cairn_error **reterr)
{
	int r = cache_enter(c, !c || !id || !ret, "size of record", reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	if ((r = cache_load_once(c, id, &row, reterr)) < 0)
		return r;
	return cache_size(c, id, ret, reterr);
}

/* ---- infos ---- */

/* Frees what @x holds and zeroes it. */
static void info_clear(cairn_record_info *x)
{
	char *strs[] = {x->id,          x->parent,        x->description,     x->record_type,
	                x->snapshot_id, x->equal_mutable, x->equal_immutable, x->blob,
	                x->diff_id,     x->chain_id,      x->blob_chain_id,   x->media_type};
	for (size_t j = 0; j < ELEMENTSOF(strs); j++)
		free(strs[j]);
	for (size_t j = 0; j < x->n_tags; j++)
		free(x->tags[j]);
	free(x->tags);
	*x = (cairn_record_info){0};
}

cairn_record_info *cairn_record_infos_free(cairn_record_info *infos, size_t n)
{
	if (!infos)
		return NULL;
	for (size_t i = 0; i < n; i++)
		info_clear(&infos[i]);
	free(infos);
	return NULL;
}

static char *dup_or_null(const char *s, bool *oom)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

/* *@s moved out of its row (@take) or copied. */
static char *give(char **s, bool take, bool *oom)
{
	return take ? TAKE_PTR(*s) : dup_or_null(*s, oom);
}

/* Fills @info from @row, moving the row's strings into it when @take (the row is left with
 * NULLs where it gave them up), copying them otherwise (@row is then not changed). */
static int info_make(cairn_record_info *info, struct meta_record *row, bool in_use, bool shared,
                     bool take)
{
	bool oom = false;
	char *snapshot_id =
		dup_or_null(row->equal_mutable ? row->equal_mutable : row->snapshot, &oom);
	char *type = row->record_type && *row->record_type ? give(&row->record_type, take, &oom)
	                                                   : dup_or_null("regular", &oom);
	char *description =
		row->description ? give(&row->description, take, &oom) : dup_or_null("", &oom);
	*info = (cairn_record_info){
		.id = give(&row->id, take, &oom),
		.parent = give(&row->parent, take, &oom),
		.is_mutable = row->kind == META_RECORD_MUTABLE,
		.in_use = in_use,
		.shared = shared,
		.reclaimable = !in_use && !shared,
		.retain = row->retain,
		.size = row->size,
		.created_at = row->created_at,
		.last_used = row->last_used,
		.usage_count = row->usage_count,
		.description = description,
		.record_type = type,
		.snapshot_id = snapshot_id,
		.equal_mutable = give(&row->equal_mutable, take, &oom),
		.equal_immutable = give(&row->equal_immutable, take, &oom),
		.blob = give(&row->blob, take, &oom),
		.diff_id = give(&row->diff_id, take, &oom),
		.chain_id = give(&row->chain_id, take, &oom),
		.blob_chain_id = give(&row->blob_chain_id, take, &oom),
		.media_type = give(&row->media_type, take, &oom),
		.extracted = row->extracted,
	};
	return oom ? -ENOMEM : 0;
}

int cache_record_info_fill(cairn_record_info *info, const struct meta_record *row, bool in_use,
                           bool shared)
{
	/* Not taking: the row is only read. */
	return info_make(info, (struct meta_record *)row, in_use, shared, false);
}

/* ---- a scan: every live record with what holds it ---- */

struct scan {
	struct meta_record *rows; /* live rows in id order */
	size_t n, cap;
	bool *held;   /* a ref or pin in this process, or a persistent mount */
	bool *in_use; /* held, itself or a descendant, or its lazy partner */
	bool *shared; /* tagged, itself or a descendant */
	size_t *n_children;
	ssize_t *parent;  /* index of the parent row, -1 */
	ssize_t *partner; /* index of the pair partner row, -1 */
	struct tag {
		char *name, *target;
	} * tags;
	size_t n_tags;
	/* lease holds: the lease last judged and whether it is live */
	const char *own_lease;
	char last_lease[300];
	bool last_live;
	int64_t now;
};

static void scan_free(struct scan *s)
{
	for (size_t i = 0; i < s->n; i++)
		meta_record_clear(&s->rows[i]);
	for (size_t i = 0; i < s->n_tags; i++) {
		free(s->tags[i].name);
		free(s->tags[i].target);
	}
	free(s->rows);
	free(s->held);
	free(s->in_use);
	free(s->shared);
	free(s->n_children);
	free(s->parent);
	free(s->partner);
	free(s->tags);
	*s = (struct scan){0};
}

static int cmp_row(const void *key, const void *elem)
{
	return strcmp(key, ((const struct meta_record *)elem)->id);
}

static ssize_t scan_find(const struct scan *s, const char *id)
{
	/* No rows: s->rows may be NULL, which bsearch() must not get. */
	if (!id || s->n == 0)
		return -1;
	const struct meta_record *r = bsearch(id, s->rows, s->n, sizeof(*s->rows), cmp_row);
	return r ? r - s->rows : -1;
}

static int scan_row(struct meta_record *r, void *userdata)
{
	struct scan *s = userdata;
	if (r->deleted)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct meta_record *nrows = realloc(s->rows, cap * sizeof(*nrows));
		if (!nrows)
			return -ENOMEM;
		s->rows = nrows;
		s->cap = cap;
	}
	/* The row is ours (meta_record_list_take): keep its strings. */
	s->rows[s->n++] = *r;
	*r = (struct meta_record){0};
	return 0;
}

static int scan_mount(const struct meta_mount *m, void *userdata)
{
	struct scan *s = userdata;
	ssize_t i = scan_find(s, m->record);
	if (i >= 0)
		s->held[i] = true;
	return 0;
}

/* A record held by a live lease of someone else (another process's refs, a user's lease). */
static int scan_lease(const struct meta_lease *l, const char *res, void *userdata)
{
	struct scan *s = userdata;
	if (strcmp(l->id, s->own_lease) == 0)
		return 0; /* this manager's holds are its entries */
	if (strcmp(l->id, s->last_lease) != 0) {
		snprintf(s->last_lease, sizeof(s->last_lease), "%s", l->id);
		s->last_live = lease_live(l, s->now);
	}
	ssize_t i = s->last_live ? scan_find(s, res) : -1;
	if (i >= 0)
		s->held[i] = true;
	return 0;
}

static int scan_tag(const char *name, const char *target, void *userdata)
{
	struct scan *s = userdata;
	struct tag *nt = realloc(s->tags, (s->n_tags + 1) * sizeof(*nt));
	if (!nt)
		return -ENOMEM;
	s->tags = nt;
	nt[s->n_tags] = (struct tag){strdup(name), strdup(target)};
	s->n_tags++;
	return nt[s->n_tags - 1].name && nt[s->n_tags - 1].target ? 0 : -ENOMEM;
}

/* Marks @i and its ancestors (stopping at one already marked: its ancestors are marked). */
static void mark_up(const struct scan *s, bool *flag, ssize_t i)
{
	while (i >= 0 && !flag[i]) {
		flag[i] = true;
		i = s->parent[i];
	}
}

static int scan_links(struct scan *s)
{
	size_t n = s->n ? s->n : 1;
	s->held = calloc(n, sizeof(bool));
	s->in_use = calloc(n, sizeof(bool));
	s->shared = calloc(n, sizeof(bool));
	s->n_children = calloc(n, sizeof(size_t));
	s->parent = calloc(n, sizeof(ssize_t));
	s->partner = calloc(n, sizeof(ssize_t));
	if (!s->held || !s->in_use || !s->shared || !s->n_children || !s->parent || !s->partner)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		s->parent[i] = scan_find(s, s->rows[i].parent);
		s->partner[i] = scan_find(s, s->rows[i].equal_mutable ? s->rows[i].equal_mutable
		                                                      : s->rows[i].equal_immutable);
		if (s->parent[i] >= 0)
			s->n_children[s->parent[i]]++;
	}
	return 0;
}

/*
 * Loads what a decision needs from the database, inside @tx; scan_finish() adds this process's
 * holds. No manager lock needed: a prune re-checks each victim when it tombstones it, and
 * listings may be a moment old.
 */
static int scan_load(cairn_cache *c, meta_tx *tx, struct scan *s, cairn_error **reterr)
{
	int r = meta_record_list_take(tx, c->driver, scan_row, s, reterr);
	if (r >= 0)
		r = scan_links(s);
	if (r >= 0)
		r = meta_mount_list(tx, NULL, scan_mount, s, reterr);
	s->own_lease = c->lease_id;
	s->now = meta_now_ns();
	if (r >= 0)
		r = meta_lease_holds(tx, LEASE_RECORD, NULL, scan_lease, s, reterr);
	if (r >= 0)
		r = meta_tags(tx, scan_tag, s, reterr);
	if (r == -ENOMEM)
		return err_set(reterr, r, "scan records: out of memory");
	return r;
}

/* Adds the records this process holds (under the manager lock, taken when @lock) and derives
 * in use and shared. No transaction may be open when @lock (lock order: manager, database). */
static void scan_finish(cairn_cache *c, struct scan *s, bool lock)
{
	if (lock)
		cache_lock(c);
	for (size_t i = 0; i < s->n; i++)
		s->held[i] |= entry_busy(entry_find(c, s->rows[i].id));
	if (lock)
		cache_unlock(c);
	for (size_t i = 0; i < s->n; i++)
		if (s->held[i]) {
			/* A held half of a pair holds the other's data too. */
			mark_up(s, s->in_use, (ssize_t)i);
			mark_up(s, s->in_use, s->partner[i]);
		}
	for (size_t i = 0; i < s->n_tags; i++) {
		/* A tagged lazy immutable shares its mutable's data: the pair is shared. */
		ssize_t t = scan_find(s, s->tags[i].target);
		mark_up(s, s->shared, t);
		if (t >= 0)
			mark_up(s, s->shared, s->partner[t]);
	}
}

/* The tags of row @i into @info (sorted: the scan has them in name order). */
static int fill_tags(const struct scan *s, size_t i, cairn_record_info *info)
{
	for (size_t t = 0; t < s->n_tags; t++) {
		if (strcmp(s->tags[t].target, s->rows[i].id) != 0)
			continue;
		char **nt = realloc(info->tags, (info->n_tags + 1) * sizeof(*nt));
		if (!nt)
			return -ENOMEM;
		info->tags = nt;
		if (!(nt[info->n_tags] = strdup(s->tags[t].name)))
			return -ENOMEM;
		info->n_tags++;
	}
	return 0;
}

static int scan_info(const struct scan *s, size_t i, cairn_record_info *info)
{
	int r = cache_record_info_fill(info, &s->rows[i], s->in_use[i], s->shared[i]);
	return r < 0 ? r : fill_tags(s, i, info);
}

/* As scan_info(), moving row @i's strings into @info: for a listing, which reads each row once
 * and frees the scan after (the row's id is gone from then on: no scan_find of it). */
static int scan_info_take(struct scan *s, size_t i, cairn_record_info *info)
{
	*info = (cairn_record_info){0};
	int r = fill_tags(s, i, info);
	if (r < 0)
		return r;
	cairn_record_info x;
	r = info_make(&x, &s->rows[i], s->in_use[i], s->shared[i], true);
	x.tags = info->tags;
	x.n_tags = info->n_tags;
	*info = x; /* also on failure: the caller frees what was made */
	return r;
}

/* Whether row @i is the one a lazy pair shows: the immutable while held, else the mutable. */
static bool scan_shown(const struct scan *s, size_t i)
{
	ssize_t p = s->partner[i];
	if (p < 0)
		return true;
	if (s->rows[i].equal_mutable)
		return s->held[i];
	return !s->held[p];
}

/* ---- info and list ---- */

/* Runs @fn over a scan (the manager lock held only to read this process's holds). */
static int with_scan(cairn_cache *c, int (*fn)(struct scan *s, void *userdata), void *userdata,
                     cairn_error **reterr)
{
	struct scan s = {0};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	if (r >= 0)
		r = scan_load(c, &tx, &s, reterr);
	meta_tx_end(&tx);
	if (r >= 0)
		scan_finish(c, &s, true);
	if (r >= 0)
		r = fn(&s, userdata);
	scan_free(&s);
	return r;
}

struct info_ctx {
	const char *id;
	cairn_record_info *info;
	cairn_error **reterr;
};

static int info_fn(struct scan *s, void *userdata)
{
	struct info_ctx *ctx = userdata;
	ssize_t i = scan_find(s, ctx->id);
	if (i < 0)
		return err_set(ctx->reterr, -ENOENT, "record '%s' not found", ctx->id);
	ctx->info = calloc(1, sizeof(*ctx->info));
	if (!ctx->info || scan_info(s, (size_t)i, ctx->info) < 0) {
		ctx->info = cairn_record_infos_free(ctx->info, 1);
		return err_set(ctx->reterr, -ENOMEM, "info of record '%s': out of memory", ctx->id);
	}
	return 0;
}

int cairn_cache_info(cairn_cache *c, const char *id, cairn_record_info **ret, cairn_error **reterr)
{
	int r = cache_enter(c, !c || !id || !ret, "record info", reterr);
	if (r < 0)
		return r;
	struct info_ctx ctx = {.id = id, .reterr = reterr};
	if ((r = with_scan(c, info_fn, &ctx, reterr)) < 0)
		return r;
	*ret = ctx.info;
	return 0;
}

int cairn_ref_info(cairn_ref *ref, cairn_record_info **ret, cairn_error **reterr)
{
	int r = cache_ref_check(ref, "info of", reterr);
	if (r < 0)
		return r;
	return cairn_cache_info(ref->cache, ref->id, ret, reterr);
}

struct list_ctx {
	cairn_record_info *infos;
	size_t n;
	bool usage; /* disk usage: one row per pair */
	snap_filter *filter;
	cairn_error **reterr;
};

static const char *info_field(const char *const *path, size_t n, void *userdata)
{
	const cairn_record_info *i = userdata;
	if (n == 0)
		return NULL;
	const char *f = path[0];
	if (strcmp(f, "id") == 0)
		return *i->id ? i->id : NULL;
	if (strcmp(f, "parent") == 0)
		return i->parent;
	if (strcmp(f, "description") == 0)
		return *i->description ? i->description : NULL;
	if (strcmp(f, "type") == 0)
		return i->record_type;
	bool present = strcmp(f, "inuse") == 0       ? i->in_use
	               : strcmp(f, "mutable") == 0   ? i->is_mutable
	               : strcmp(f, "immutable") == 0 ? !i->is_mutable
	               : strcmp(f, "shared") == 0    ? i->shared
	               : strcmp(f, "private") == 0   ? !i->shared
	                                             : false;
	return present ? "" : NULL;
}

static int list_fn(struct scan *s, void *userdata)
{
	struct list_ctx *ctx = userdata;
	ctx->infos = calloc(s->n ? s->n : 1, sizeof(*ctx->infos));
	if (!ctx->infos)
		return err_set(ctx->reterr, -ENOMEM, "list records: out of memory");
	for (size_t i = 0; i < s->n; i++) {
		if (ctx->usage && !scan_shown(s, i))
			continue;
		cairn_record_info *info = &ctx->infos[ctx->n++];
		if (scan_info_take(s, i, info) < 0)
			return err_set(ctx->reterr, -ENOMEM, "list records: out of memory");
		/* A held mutable changes while we look: measure it now, never from the record. */
		if (ctx->usage && info->is_mutable && s->held[i])
			info->size = -1;
	}
	return 0;
}

int cairn_cache_list(cairn_cache *c, cairn_record_info **ret, size_t *ret_n, cairn_error **reterr)
{
	int r = cache_enter(c, !c || !ret || !ret_n, "list records", reterr);
	if (r < 0)
		return r;
	struct list_ctx ctx = {.reterr = reterr};
	if ((r = with_scan(c, list_fn, &ctx, reterr)) < 0) {
		cairn_record_infos_free(ctx.infos, ctx.n);
		return r;
	}
	*ret = ctx.infos;
	*ret_n = ctx.n;
	return 0;
}

int cairn_cache_disk_usage(cairn_cache *c, const char *const *filters, size_t n_filters,
                           cairn_record_info **ret, size_t *ret_n, cairn_error **reterr)
{
	int r = cache_enter(c, !c || !ret || !ret_n || (n_filters && !filters), "disk usage",
	                    reterr);
	if (r < 0)
		return r;
	_cleanup_(snap_filter_freep) snap_filter *filter = NULL;
	if ((r = snap_filter_parse(filters, n_filters, &filter, reterr)) < 0)
		return err_prefix(reterr, "disk usage");
	struct list_ctx ctx = {.usage = true, .reterr = reterr};
	r = with_scan(c, list_fn, &ctx, reterr);
	size_t kept = 0;
	for (size_t i = 0; r >= 0 && i < ctx.n; i++) {
		cairn_record_info *info = &ctx.infos[i];
		if (!snap_filter_match(filter, info_field, info)) {
			info_clear(info);
			continue;
		}
		/* Sizes are measured with no lock held (single flight per record). */
		if (info->size < 0 && (r = cache_size(c, info->id, &info->size, reterr)) < 0)
			break;
		if (kept != i) {
			ctx.infos[kept] = *info;
			*info = (cairn_record_info){0};
		}
		kept++;
	}
	if (r < 0) {
		cairn_record_infos_free(ctx.infos, ctx.n);
		return r;
	}
	*ret = ctx.infos;
	*ret_n = kept;
	return 0;
}

/* ---- remove and prune ---- */

/* -EBUSY when row @i (or, for a pair, its partner) cannot be removed now. */
static int check_removable(cairn_cache *c, meta_tx *tx, const struct scan *s, size_t i,
                           cairn_error **reterr)
{
	const char *id = s->rows[i].id;
	if (s->n_children[i]) {
		char list[256] = "";
		size_t shown = 0;
		for (size_t j = 0; j < s->n && shown < 3; j++)
			if (s->parent[j] == (ssize_t)i) {
				size_t len = strlen(list);
				snprintf(list + len, sizeof(list) - len, "%s'%s'",
				         shown ? ", " : "", s->rows[j].id);
				shown++;
			}
		return err_set(reterr, -EBUSY, "record '%s' has children: %s%s", id, list,
		               s->n_children[i] > shown ? ", ..." : "");
	}
	struct entry *e = entry_find(c, id);
	if (e && e->handles)
		return err_set(reterr, -EBUSY,
		               "record '%s' is in use: %u ref%s open in this process", id,
		               e->handles, e->handles == 1 ? "" : "s");
	if (e && e->pins)
		return err_set(reterr, -EBUSY, "record '%s' is in use by this process", id);
	_cleanup_free_ char *target = NULL;
	int r = cache_first_mount(tx, id, &target, reterr);
	if (r != 0)
		return r < 0 ? r
		             : err_set(reterr, -EBUSY, "record '%s' is in use: mounted at '%s'", id,
		                       target);
	if (s->held[i])
		return err_set(reterr, -EBUSY,
		               "record '%s' is in use: another process holds it (a lease)", id);
	return 0;
}

/* The records removing row @i takes (a mutable takes its lazy immutable), in removal order. */
static size_t removal_set(const struct scan *s, size_t i, bool with_partner, const char *ids[2])
{
	ssize_t p = s->partner[i];
	if (with_partner && p >= 0 && !s->rows[i].equal_mutable) {
		ids[0] = s->rows[p].id; /* the immutable first: it points at the mutable */
		ids[1] = s->rows[i].id;
		return 2;
	}
	ids[0] = s->rows[i].id;
	return 1;
}

static int tombstone(meta_tx *tx, const char *const *ids, size_t n, char **copies,
                     cairn_error **reterr)
{
	for (size_t k = 0; k < n; k++) {
		int r = meta_record_set_deleted(tx, ids[k], true, reterr);
		if (r < 0)
			return r;
		if (!(copies[k] = strdup(ids[k])))
			return err_set(reterr, -ENOMEM, "remove record '%s': out of memory",
			               ids[k]);
	}
	return 0;
}

struct remove_ctx {
	cairn_cache *c;
	meta_tx *tx;
	const char *id;
	char *ids[2];
	size_t n;
	cairn_error **reterr;
};

static int remove_fn(struct scan *s, void *userdata)
{
	struct remove_ctx *ctx = userdata;
	ssize_t i = scan_find(s, ctx->id);
	if (i < 0)
		return err_set(ctx->reterr, -ENOENT, "record '%s' not found", ctx->id);
	const char *ids[2];
	size_t n = removal_set(s, (size_t)i, true, ids);
	for (size_t k = 0; k < n; k++) {
		int r = check_removable(ctx->c, ctx->tx, s, (size_t)scan_find(s, ids[k]),
		                        ctx->reterr);
		if (r < 0)
			return r;
	}
	ctx->n = n;
	return tombstone(ctx->tx, ids, n, ctx->ids, ctx->reterr);
}

int cairn_cache_remove(cairn_cache *c, const char *id, cairn_error **reterr)
{
	int r = cache_enter(c, !c || !id, "remove record", reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	struct scan s = {0};
	struct remove_ctx ctx = {.c = c, .tx = &tx, .id = id, .reterr = reterr};
	cache_lock(c);
	if ((r = meta_tx_begin(c->db, &tx, true, reterr)) >= 0 &&
	    (r = scan_load(c, &tx, &s, reterr)) >= 0) {
		scan_finish(c, &s, false);
		if ((r = remove_fn(&s, &ctx)) >= 0)
			r = meta_tx_commit(&tx, reterr);
	}
	meta_tx_end(&tx);
	cache_unlock(c);
	scan_free(&s);
	if (r >= 0)
		r = cache_remove_records(c, ctx.ids, ctx.n, reterr);
	for (size_t k = 0; k < 2; k++)
		free(ctx.ids[k]);
	return r;
}

/* A record prune chose: its report and the records to remove. */
struct victim {
	cairn_record_info info;
	char *ids[2];
	size_t n;
	int64_t gen[2], used[2];        /* of ids[k] as scanned: a change means someone used it */
	int64_t last_used, usage_count; /* of the pair: the later use, the higher count */
	int64_t size;                   /* as known when chosen (0 unknown) */
	size_t row;                     /* in the scan that chose it */
	bool taken;                     /* tombstoned, to be removed (or gone: @gone) */
	bool gone;                      /* its rows deleted at once: it had nothing on disk */
};

struct prune_ctx {
	cairn_cache *c;
	meta_tx *tx;
	const cairn_prune_options *opts;
	snap_filter *filter;
	int64_t cutoff;        /* keep records used after it (keep_duration_ns); 0: off */
	int64_t total;         /* keep_bytes: the size of every record, less what was chosen */
	cairn_record_info *du; /* keep_bytes: disk usage rows with sizes, in id order */
	size_t n_du;
	struct victim *v;
	size_t n, cap;
	int64_t commit_ns; /* what a commit costs per victim, as the last batches measured */
	cairn_error **reterr;
};

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

/* Whether prune may take row @i now. */
static bool prunable(const struct prune_ctx *ctx, const struct scan *s, size_t i)
{
	bool all = ctx->opts->flags & CAIRN_PRUNE_ALL;
	const struct meta_record *row = &s->rows[i];
	if (!scan_shown(s, i) || s->in_use[i] || s->n_children[i])
		return false;
	if (!all && (s->shared[i] || strcmp(row->record_type, "internal") == 0 ||
	             strcmp(row->record_type, "frontend") == 0))
		return false;
	return true;
}

static int cmp_du(const void *key, const void *elem)
{
	return strcmp(key, ((const cairn_record_info *)elem)->id);
}

/* The size of row @i (a pair's known one), from the scan or else the disk usage taken before. */
static int64_t row_size(const struct prune_ctx *ctx, const struct scan *s, size_t i)
{
	ssize_t p = s->partner[i];
	if (s->rows[i].size >= 0)
		return s->rows[i].size;
	if (p >= 0 && s->rows[p].size >= 0)
		return s->rows[p].size;
	for (int k = 0; k < 2; k++) {
		ssize_t j = k == 0 ? (ssize_t)i : p;
		/* No disk usage was taken without keep_bytes: bsearch must not see NULL. */
		const cairn_record_info *d = j < 0 || !ctx->du
		                                     ? NULL
		                                     : bsearch(s->rows[j].id, ctx->du, ctx->n_du,
		                                               sizeof(*ctx->du), cmp_du);
		if (d && d->size >= 0)
			return d->size;
	}
	return 0;
}

/* Victim order (keep_bytes): last use (never used first), usage count, creation, id. */
static int cmp_victim(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;
	if (x->last_used != y->last_used)
		return x->last_used < y->last_used ? -1 : 1;
	if (x->usage_count != y->usage_count)
		return x->usage_count < y->usage_count ? -1 : 1;
	if (x->info.created_at != y->info.created_at)
		return x->info.created_at < y->info.created_at ? -1 : 1;
	return strcmp(x->info.id, y->info.id);
}

static void victim_clear(struct victim *v)
{
	info_clear(&v->info);
	for (size_t k = 0; k < v->n; k++)
		free(v->ids[k]);
	*v = (struct victim){0};
}

/* Appends row @i to the victims when the filters and keep_duration let it go. */
static int consider(struct prune_ctx *ctx, struct scan *s, size_t i)
{
	const struct meta_record *row = &s->rows[i];
	ssize_t p = s->partner[i];
	struct victim v = {.row = i, .last_used = row->last_used, .usage_count = row->usage_count};
	if (p >= 0) {
		v.last_used = max64(v.last_used, s->rows[p].last_used);
		v.usage_count = max64(v.usage_count, s->rows[p].usage_count);
	}
	if (ctx->cutoff) {
		int64_t used = v.last_used ? v.last_used : row->created_at;
		if (p >= 0 && !v.last_used)
			used = max64(used, s->rows[p].created_at);
		if (used > ctx->cutoff)
			return 0;
	}
	if (scan_info(s, i, &v.info) < 0) {
		info_clear(&v.info);
		return err_set(ctx->reterr, -ENOMEM, "prune: out of memory");
	}
	if (!snap_filter_match(ctx->filter, info_field, &v.info)) {
		info_clear(&v.info);
		return 0;
	}
	v.size = row_size(ctx, s, i);
	if (ctx->n == ctx->cap) {
		size_t cap = ctx->cap ? ctx->cap * 2 : 64;
		struct victim *nv = realloc(ctx->v, cap * sizeof(*nv));
		if (!nv) {
			info_clear(&v.info);
			return err_set(ctx->reterr, -ENOMEM, "prune: out of memory");
		}
		ctx->v = nv;
		ctx->cap = cap;
	}
	ctx->v[ctx->n++] = v;
	return 0;
}

/* Records in @v what removing row @i takes, as scanned. */
static int victim_ids(struct victim *v, const struct scan *s, const char *const ids[2], size_t n)
{
	for (size_t j = 0; j < n; j++) {
		const struct meta_record *row = &s->rows[scan_find(s, ids[j])];
		if (!(v->ids[j] = strdup(ids[j])))
			return -ENOMEM;
		v->n = j + 1;
		v->gen[j] = row->gen;
		v->used[j] = row->last_used;
	}
	return 0;
}

/*
 * Chooses from a scan. Passes over one scan: what a pass takes is marked gone (its
 * parent loses a child), so the next pass sees the parents it frees, as a dry run must. With
 * keep_bytes a pass takes its candidates in victim order only while the total is over the cap.
 */
static int choose_fn(struct scan *s, void *userdata)
{
	struct prune_ctx *ctx = userdata;
	int64_t cap = ctx->opts->keep_bytes;
	_cleanup_free_ bool *gone = calloc(s->n ? s->n : 1, sizeof(bool));
	if (!gone)
		return err_set(ctx->reterr, -ENOMEM, "prune: out of memory");
	for (;;) {
		size_t first = ctx->n;
		int r;
		for (size_t i = 0; i < s->n; i++)
			if (!gone[i] && prunable(ctx, s, i) && (r = consider(ctx, s, i)) < 0)
				return r;
		if (ctx->n == first)
			return 0;
		if (cap) {
			qsort(ctx->v + first, ctx->n - first, sizeof(*ctx->v), cmp_victim);
			size_t keep = first;
			for (size_t k = first; k < ctx->n; k++) {
				if (ctx->total <= cap) {
					victim_clear(&ctx->v[k]);
					continue;
				}
				ctx->total -= ctx->v[k].size;
				if (keep != k) {
					ctx->v[keep] = ctx->v[k];
					ctx->v[k] = (struct victim){0};
				}
				keep++;
			}
			ctx->n = keep;
		}
		for (size_t k = first; k < ctx->n; k++) {
			struct victim *v = &ctx->v[k];
			const char *ids[2];
			size_t n = removal_set(s, v->row, true, ids);
			for (size_t j = 0; j < n; j++) {
				ssize_t x = scan_find(s, ids[j]);
				gone[x] = true;
				if (s->parent[x] >= 0)
					s->n_children[s->parent[x]]--;
			}
			if (victim_ids(v, s, ids, n) < 0)
				return err_set(ctx->reterr, -ENOMEM, "prune: out of memory");
		}
		if (cap && ctx->total <= cap)
			return 0;
	}
}

static void victims_free(struct prune_ctx *ctx)
{
	for (size_t i = 0; i < ctx->n; i++)
		victim_clear(&ctx->v[i]);
	free(ctx->v);
	ctx->v = NULL;
	ctx->n = ctx->cap = 0;
}

/*
 * One round: choose from a scan read in a read transaction (no lock held while the rows load);
 * nothing is tombstoned yet.
 */
static int prune_choose(struct prune_ctx *ctx)
{
	cairn_cache *c = ctx->c;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	struct scan s = {0};
	int r = meta_tx_begin(c->db, &tx, false, ctx->reterr);
	if (r >= 0)
		r = scan_load(c, &tx, &s, ctx->reterr);
	meta_tx_end(&tx);
	if (r >= 0) {
		scan_finish(c, &s, true);
		r = choose_fn(&s, ctx);
	}
	scan_free(&s);
	if (r < 0)
		victims_free(ctx);
	return r;
}

/*
 * Prune removes in batches: each batch is checked and tombstoned (lazy records: deleted) in one
 * write transaction; then the snapshots of the tombstoned ones are removed and their rows deleted
 * in a second one. A batch ends at PRUNE_BATCH victims, or once its checks so far plus the
 * commit they will cost (writing their pages to the WAL, as measured on the batches before)
 * reach PRUNE_HOLD_NS, so that no transaction (nor the manager lock) is held long and other
 * processes get the database between batches. Larger batches write fewer pages in all: victims
 * share pages, and a page is written once per commit.
 */
#define PRUNE_BATCH     1024
#define PRUNE_HOLD_NS   (25 * 1000000LL)
#define PRUNE_COMMIT_NS (50 * 1000LL) /* per victim, until measured */

/* Whether victim @v may still go: nothing took it since the scan (a ref or pin here, a lease,
 * a mount, a child, a use, a tag without --all). *@ret_files: whether any of its records may own
 * files (a snapshot to remove before its row). Manager lock held, inside write @tx. */
static int still_prunable(struct prune_ctx *ctx, meta_tx *tx, const struct victim *v,
                          bool *ret_files)
{
	cairn_cache *c = ctx->c;
	bool all = ctx->opts->flags & CAIRN_PRUNE_ALL;
	*ret_files = false;
	for (size_t k = 0; k < v->n; k++) {
		if (entry_busy(entry_find(c, v->ids[k])))
			return 0;
		struct meta_record_hold h;
		int r = meta_record_removable(tx, v->ids[k], c->lease_id, !all, &h, ctx->reterr);
		if (r <= 0)
			return r;
		/* Children chosen before it are tombstoned already; a mutable's lazy immutable
		 * goes with it (ids[0]). */
		if (h.deleted || h.children || (h.partner && v->n == 1) || h.mounted || h.tagged ||
		    h.gen != v->gen[k] || h.last_used != v->used[k])
			return 0;
		if (h.leased && (r = cache_held_elsewhere(c, tx, v->ids[k], ctx->reterr)) != 0)
			return r < 0 ? r : 0;
		*ret_files |= h.on_disk;
	}
	return 1;
}

static int64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/*
 * Checks victims from @from on and tombstones them; returns where the batch ends. A victim
 * with nothing on disk (a lazy record: no snapshot of its own, its blob is gc's) has nothing
 * to remove between a tombstone and its row, so its row is deleted here, in the transaction
 * that checked it: a crash leaves it there or gone, never half removed.
 */
static int take_batch(struct prune_ctx *ctx, size_t from, size_t *ret_end)
{
	cairn_cache *c = ctx->c;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int64_t start = mono_ns();
	size_t i = from;
	cache_lock(c);
	int r = meta_tx_begin(c->db, &tx, true, ctx->reterr);
	tx.defer_checkpoint = true; /* after the manager lock is dropped */
	for (; r >= 0 && i < ctx->n && i - from < PRUNE_BATCH; i++) {
		struct victim *v = &ctx->v[i];
		bool files = false;
		if ((r = still_prunable(ctx, &tx, v, &files)) < 0)
			break;
		v->taken = r > 0;
		v->gone = v->taken && !files;
		for (size_t k = 0; v->taken && k < v->n && r >= 0; k++)
			r = v->gone ? meta_record_delete(&tx, v->ids[k], ctx->reterr)
			            : meta_record_set_deleted(&tx, v->ids[k], true, ctx->reterr);
		if (!v->taken && ctx->opts->keep_bytes)
			ctx->total += v->size; /* it stays after all */
		if (mono_ns() - start + (int64_t)(i + 1 - from) * ctx->commit_ns > PRUNE_HOLD_NS) {
			i++;
			break;
		}
	}
	int64_t t1 = mono_ns();
	if (r >= 0)
		r = meta_tx_commit(&tx, ctx->reterr);
	meta_tx_end(&tx);
	cache_unlock(c);
	int64_t t2 = mono_ns();
	if (r >= 0 && i > from) /* half the last measure, half the ones before */
		ctx->commit_ns = (ctx->commit_ns + (t2 - t1) / (int64_t)(i - from)) / 2;
	meta_checkpoint(c->db);
	if (r < 0) {
		for (size_t k = from; k < i; k++)
			ctx->v[k].taken = ctx->v[k].gone = false;
		return r;
	}
	*ret_end = i;
	return 0;
}

/* Removes the taken victims of [@from, @end) that are not gone yet: snapshots one by one, rows
 * in one transaction (one by one if that fails). Victims whose removal failed are no longer
 * taken. */
static int remove_batch(struct prune_ctx *ctx, size_t from, size_t end)
{
	int ret = 0;
	_cleanup_free_ char **ids = calloc(2 * (end - from) + 1, sizeof(char *));
	if (!ids)
		return err_set(ctx->reterr, -ENOMEM, "prune: out of memory");
	size_t n = 0;
	for (size_t i = from; i < end; i++) {
		struct victim *v = &ctx->v[i];
		if (!v->taken || v->gone)
			continue;
		_cleanup_(cairn_error_freep) cairn_error *err = NULL;
		int r = cache_remove_snapshots(ctx->c, v->ids, v->n, &err);
		if (r == -EBUSY) {
			/* In use after all (a snapshot made on its data since the check): it was
			 * untombstoned and stays, as BuildKit skips a record that is in use. */
			log_debug("prune: keep record '%s': %s", v->ids[0],
			          cairn_error_message(err));
			v->taken = false;
			continue;
		}
		if (r < 0) {
			if (ret == 0)
				ret = err_set(ctx->reterr, r, "%s", cairn_error_message(err));
			v->taken = false;
			continue;
		}
		for (size_t k = 0; k < v->n; k++)
			ids[n++] = v->ids[k];
	}
	if (n && cache_delete_rows(ctx->c, ids, n, NULL) < 0) {
		for (size_t i = from; i < end; i++) {
			struct victim *v = &ctx->v[i];
			int r = v->taken && !v->gone
			                ? cache_delete_rows(ctx->c, v->ids, v->n,
			                                    ret < 0 ? NULL : ctx->reterr)
			                : 0;
			if (r < 0) {
				ret = ret < 0 ? ret : r;
				v->taken = false;
			}
		}
	}
	return ret;
}

/* Removes the victims of a round (a dry run: none), reporting each; the count or the first
 * error. */
static int prune_remove(struct prune_ctx *ctx)
{
	int ret = 0, count = 0;
	bool stopped = false, dry = ctx->opts->flags & CAIRN_PRUNE_DRY_RUN;
	/* Sizes first, while the data is there (measuring takes no lock). */
	for (size_t i = 0; i < ctx->n; i++) {
		int64_t size = ctx->v[i].info.size;
		if (size < 0 && cache_size(ctx->c, ctx->v[i].info.id, &size, NULL) >= 0)
			ctx->v[i].info.size = size;
		ctx->v[i].taken = dry;
	}
	for (size_t from = 0, end = 0; from < ctx->n && !stopped; from = end) {
		int r = 0;
		if (dry) {
			end = ctx->n;
		} else if ((r = take_batch(ctx, from, &end)) >= 0) {
			fault_point("prune.tombstoned");
			r = remove_batch(ctx, from, end);
		}
		if (r < 0 && ret == 0)
			ret = r;
		if (r < 0 && end <= from)
			break;
		for (size_t i = from; i < end && !stopped; i++) {
			struct victim *v = &ctx->v[i];
			if (!v->taken)
				continue;
			count++;
			if (!dry)
				fault_point("prune.record-removed");
			if (ctx->opts->fn && ret >= 0 &&
			    (r = ctx->opts->fn(&v->info, ctx->opts->userdata)) < 0) {
				/* The caller stopped prune: the batches not taken yet stay. */
				ret = err_set(ctx->reterr, r, "prune: stopped by the caller");
				stopped = true;
			}
		}
	}
	return ret < 0 ? ret : count;
}

/* keep_bytes: the total size of every record now (sizes computed), and the rows for lookups. */
static int prune_total(struct prune_ctx *ctx)
{
	int r = cairn_cache_disk_usage(ctx->c, NULL, 0, &ctx->du, &ctx->n_du, ctx->reterr);
	if (r < 0)
		return err_prefix(ctx->reterr, "prune");
	ctx->total = 0;
	for (size_t i = 0; i < ctx->n_du; i++)
		ctx->total += ctx->du[i].size > 0 ? ctx->du[i].size : 0;
	return 0;
}

int cairn_cache_prune(cairn_cache *c, const cairn_prune_options *opts, cairn_error **reterr)
{
	cairn_prune_options o = {.version = CAIRN_PRUNE_OPTIONS_VERSION};
	if (!c)
		return err_set(reterr, -EINVAL, "prune: invalid arguments");
	if (opts && opts->version == 1)
		memcpy(&o, opts, offsetof(cairn_prune_options, keep_duration_ns));
	else if (opts && opts->version == CAIRN_PRUNE_OPTIONS_VERSION)
		o = *opts;
	else if (opts)
		return err_set(reterr, -EINVAL, "prune: unknown options version %u", opts->version);
	if ((o.flags & ~CAIRN_PRUNE_FLAGS_ALL) || (o.n_filters && !o.filters))
		return err_set(reterr, -EINVAL, "prune: unknown options");
	if (o.keep_duration_ns < 0 || o.keep_bytes < 0)
		return err_set(reterr, -EINVAL, "prune: negative keep-duration or keep-bytes");
	int r = cache_check_open(c, reterr);
	if (r < 0)
		return r;
	struct prune_ctx ctx = {.c = c, .opts = &o, .commit_ns = PRUNE_COMMIT_NS, .reterr = reterr};
	if (o.keep_duration_ns)
		ctx.cutoff = meta_now_ns() - o.keep_duration_ns;
	if ((r = snap_filter_parse(o.filters, o.n_filters, &ctx.filter, reterr)) < 0)
		return err_prefix(reterr, "prune");
	int total = 0;
	pthread_mutex_lock(&c->prune_lock);
	if (o.keep_bytes)
		r = prune_total(&ctx);
	/* Removing a record frees its parent: go round until a round finds nothing. */
	while (r >= 0) {
		if (o.keep_bytes && ctx.total <= o.keep_bytes)
			break;
		if ((r = prune_choose(&ctx)) < 0 || ctx.n == 0)
			break;
		r = prune_remove(&ctx);
		victims_free(&ctx);
		if (r < 0)
			break;
		total += r;
		/* A round that took nothing (others hold what it chose) would choose it again. */
		if ((o.flags & CAIRN_PRUNE_DRY_RUN) || r == 0)
			break;
	}
	pthread_mutex_unlock(&c->prune_lock);
	cairn_record_infos_free(ctx.du, ctx.n_du);
	snap_filter_free(ctx.filter);
	return r < 0 ? r : total;
}
