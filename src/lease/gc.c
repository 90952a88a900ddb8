/* SPDX-License-Identifier: MIT */
/*
 * gc: mark and sweep (spec/containerd.md §11.3-11.4, over one database).
 *
 * Mark runs in one read transaction: roots are live leases' resources, every record that is not a
 * tombstone, tags (and the image manifests they name), mounts, and blobs labelled
 * containerd.io/gc.root; a marked blob marks what its containerd.io/gc.ref.content* and
 * gc.ref.snapshot.<driver> labels name; a marked record marks its parent record, its blob and its
 * snapshot, and a marked snapshot its ancestors. Since the store is held exclusively (ROOT/LOCK),
 * nothing can become reachable between mark and sweep. Sweep deletes the dead leases, the labels
 * of the doomed blobs and the labels of unmarked blobs that are not in blobs/ at all (a lazy
 * record's cairn.lazy.* labels outlive it when it is pruned before its blob was fetched) in one
 * write transaction, then removes snapshots children first (each
 * snap_remove is its own crash-safe transaction), then blobs, old ingests and tmp/. A crash
 * anywhere leaves garbage for the next gc, never a dangling reference: nothing removed was
 * reachable.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/digest.h"
#include "base/fault.h"
#include "base/fs.h"
#include "base/log.h"
#include "cairn/lease.h"
#include "lease.h"
#include "meta/labels.h"
#include "meta/snapshots.h"
#include "store/store.h"

/* ---- a set of strings (open addressing) ---- */

struct strset {
	char **slots;
	size_t cap, n;
};

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static char **slot(const struct strset *set, const char *key)
{
	size_t i = hash(key) & (set->cap - 1);
	while (set->slots[i] && strcmp(set->slots[i], key) != 0)
		i = (i + 1) & (set->cap - 1);
	return &set->slots[i];
}

static bool set_has(const struct strset *set, const char *key)
{
	return set->cap && *slot(set, key);
}

static int set_grow(struct strset *set)
{
	struct strset bigger = {calloc(set->cap ? set->cap * 2 : 64, sizeof(char *)),
	                        set->cap ? set->cap * 2 : 64, set->n};
	if (!bigger.slots)
		return -ENOMEM;
	for (size_t i = 0; i < set->cap; i++)
		if (set->slots[i])
			*slot(&bigger, set->slots[i]) = set->slots[i];
	free(set->slots);
	*set = bigger;
	return 0;
}

/* 1 when added, 0 when present already, -ENOMEM. */
static int set_add(struct strset *set, const char *key)
{
	if ((set->n + 1) * 2 > set->cap && set_grow(set) < 0)
		return -ENOMEM;
	char **p = slot(set, key);
	if (*p)
		return 0;
	if (!(*p = strdup(key)))
		return -ENOMEM;
	set->n++;
	return 1;
}

static void set_free(struct strset *set)
{
	for (size_t i = 0; i < set->cap; i++)
		free(set->slots[i]);
	free(set->slots);
	*set = (struct strset){0};
}

/* ---- the mark state ---- */

struct snaprow {
	int64_t id, parent;
	char *snapshotter, *name;
	bool marked;
	int depth; /* -1 until computed */
	uint64_t bytes;
};

struct recrow {
	char *id, *snapshotter, *snapshot, *blob, *parent;
	bool deleted, marked;
};

struct gc {
	cairn_store *store;
	meta_tx *tx;
	int64_t now;
	struct snaprow *snaps; /* sorted by id */
	size_t n_snaps, cap_snaps;
	size_t *by_name;     /* indexes into snaps, sorted by (snapshotter, name) */
	struct recrow *recs; /* sorted by id */
	size_t n_recs, cap_recs;
	struct strset blobs; /* marked digests */
	struct strset roots; /* record ids held by leases, tags, mounts */
	char **dead_leases;
	size_t n_dead;
	char **unmarked_labelled; /* digests with labels that nothing marks, present or not */
	size_t n_unmarked_labelled;
	cairn_error **reterr;
};

static int oom(struct gc *g)
{
	return err_set(g->reterr, -ENOMEM, "gc of store '%s': out of memory", g->store->root);
}

static void *grow(void *array, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return array;
	size_t c = *cap ? *cap * 2 : 64;
	void *a = realloc(array, c * size);
	if (a)
		*cap = c;
	return a;
}

static int load_snap(const struct meta_snapshot *s, void *userdata)
{
	struct gc *g = userdata;
	struct snaprow *a = grow(g->snaps, &g->cap_snaps, g->n_snaps, sizeof(*a));
	if (!a)
		return oom(g);
	g->snaps = a;
	a[g->n_snaps] = (struct snaprow){
		.id = s->id,
		.parent = s->parent,
		.snapshotter = strdup(s->snapshotter),
		.name = strdup(s->name),
		.depth = -1,
	};
	if (!a[g->n_snaps].snapshotter || !a[g->n_snaps].name)
		return oom(g);
	g->n_snaps++;
	return 0;
}

static int cmp_snap_id(const void *a, const void *b)
{
	const struct snaprow *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static const struct gc *sort_gc; /* qsort has no userdata; gc runs under the exclusive LOCK */

static int cmp_name(const char *drv1, const char *name1, const char *drv2, const char *name2)
{
	int c = strcmp(drv1, drv2);
	return c ? c : strcmp(name1, name2);
}

static int cmp_snap_name(const void *a, const void *b)
{
	const struct snaprow *x = &sort_gc->snaps[*(const size_t *)a];
	const struct snaprow *y = &sort_gc->snaps[*(const size_t *)b];
	return cmp_name(x->snapshotter, x->name, y->snapshotter, y->name);
}

static struct snaprow *snap_by_id(struct gc *g, int64_t id)
{
	struct snaprow key = {.id = id};
	return g->n_snaps ? bsearch(&key, g->snaps, g->n_snaps, sizeof(key), cmp_snap_id) : NULL;
}

static struct snaprow *snap_by_name(struct gc *g, const char *drv, const char *name)
{
	size_t lo = 0, hi = g->n_snaps;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct snaprow *s = &g->snaps[g->by_name[mid]];
		int c = cmp_name(drv, name, s->snapshotter, s->name);
		if (c == 0)
			return s;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static int load_snaps(struct gc *g)
{
	int r = meta_snapshot_list(g->tx, NULL, load_snap, g, g->reterr);
	if (r < 0)
		return r;
	if (g->n_snaps == 0)
		return 0;
	qsort(g->snaps, g->n_snaps, sizeof(*g->snaps), cmp_snap_id);
	g->by_name = calloc(g->n_snaps, sizeof(*g->by_name));
	if (!g->by_name)
		return oom(g);
	for (size_t i = 0; i < g->n_snaps; i++)
		g->by_name[i] = i;
	sort_gc = g;
	qsort(g->by_name, g->n_snaps, sizeof(*g->by_name), cmp_snap_name);
	return 0;
}

/* Marks snapshot @name of @drv and its ancestors; a missing one is fsck's business. */
static void mark_snapshot(struct gc *g, const char *drv, const char *name)
{
	struct snaprow *s = drv && name ? snap_by_name(g, drv, name) : NULL;
	while (s && !s->marked) {
		s->marked = true;
		s = s->parent ? snap_by_id(g, s->parent) : NULL;
	}
}

/* ---- roots ---- */

static int mark_resource(const char *type, const char *id, void *userdata)
{
	struct gc *g = userdata;
	int r = 0;
	if (strcmp(type, LEASE_BLOB) == 0)
		r = set_add(&g->blobs, id);
	else if (strcmp(type, LEASE_RECORD) == 0)
		r = set_add(&g->roots, id);
	else if (strncmp(type, LEASE_SNAPSHOT, strlen(LEASE_SNAPSHOT)) == 0)
		mark_snapshot(g, type + strlen(LEASE_SNAPSHOT), id);
	return r < 0 ? oom(g) : 0;
}

static int visit_lease(const struct meta_lease *l, void *userdata)
{
	struct gc *g = userdata;
	if (lease_live(l, g->now))
		return meta_lease_resources(g->tx, l->id, mark_resource, g, g->reterr);
	char **a = realloc(g->dead_leases, (g->n_dead + 1) * sizeof(*a));
	if (!a)
		return oom(g);
	g->dead_leases = a;
	if (!(a[g->n_dead] = strdup(l->id)))
		return oom(g);
	g->n_dead++;
	return 0;
}

static char *dup_or_null(const char *s, bool *failed)
{
	char *d = s ? strdup(s) : NULL;
	if (s && !d)
		*failed = true;
	return d;
}

static int load_record(const char *id, const char *drv, const char *snapshot, const char *blob,
                       const char *parent, bool deleted, bool extracted, void *userdata)
{
	(void)extracted;
	struct gc *g = userdata;
	struct recrow *a = grow(g->recs, &g->cap_recs, g->n_recs, sizeof(*a));
	if (!a)
		return oom(g);
	g->recs = a;
	bool failed = false;
	a[g->n_recs++] = (struct recrow){
		.id = dup_or_null(id, &failed),
		.snapshotter = dup_or_null(drv, &failed),
		.snapshot = dup_or_null(snapshot, &failed),
		.blob = dup_or_null(blob, &failed),
		.parent = dup_or_null(parent, &failed),
		.deleted = deleted,
	};
	return failed ? oom(g) : 0;
}

static int cmp_rec(const void *a, const void *b)
{
	return strcmp(((const struct recrow *)a)->id, ((const struct recrow *)b)->id);
}

static struct recrow *rec_by_id(struct gc *g, const char *id)
{
	struct recrow key = {.id = (char *)id};
	return id && g->n_recs ? bsearch(&key, g->recs, g->n_recs, sizeof(key), cmp_rec) : NULL;
}

/* Marks record @r, its parents, and what each of them holds. */
static int mark_record(struct gc *g, struct recrow *r)
{
	for (; r && !r->marked; r = rec_by_id(g, r->parent)) {
		r->marked = true;
		mark_snapshot(g, r->snapshotter, r->snapshot);
		if (r->blob && set_add(&g->blobs, r->blob) < 0)
			return oom(g);
	}
	return 0;
}

static int root_tag(const char *name, const char *target, void *userdata)
{
	(void)name;
	struct gc *g = userdata;
	return set_add(&g->roots, target) < 0 ? oom(g) : 0;
}

static int root_mount(const char *target, const char *record, const char *drv, const char *view,
                      void *userdata)
{
	(void)target;
	struct gc *g = userdata;
	mark_snapshot(g, drv, view);
	return set_add(&g->roots, record) < 0 ? oom(g) : 0;
}

static int mark_records(struct gc *g)
{
	int r = meta_record_refs(g->tx, load_record, g, g->reterr);
	if (r < 0 || (r = meta_tags(g->tx, root_tag, g, g->reterr)) < 0 ||
	    (r = meta_mount_refs(g->tx, root_mount, g, g->reterr)) < 0)
		return r;
	/* Rows come in id order (BINARY collation is strcmp order): already sorted. */
	for (size_t i = 0; i < g->n_recs; i++) {
		struct recrow *rec = &g->recs[i];
		if ((!rec->deleted || set_has(&g->roots, rec->id)) && (r = mark_record(g, rec)) < 0)
			return r;
	}
	return 0;
}

/* ---- containerd's gc labels on content ---- */

#define GC_ROOT        "containerd.io/gc.root"
#define GC_REF         "containerd.io/gc.ref."
#define GC_REF_CONTENT GC_REF "content"
#define GC_REF_SNAP    GC_REF "snapshot."

struct labelrow {
	char *digest, *key, *value;
};

struct labels {
	struct labelrow *rows;
	size_t n, cap;
};

/* (tag name, manifest digest) */
static int root_manifest(const char *name, const char *dgst, void *userdata)
{
	(void)name;
	struct gc *g = userdata;
	return set_add(&g->blobs, dgst) < 0 ? oom(g) : 0;
}

/* (digest, gc.root value) */
static int root_labelled(const char *dgst, const char *value, void *userdata)
{
	return root_manifest(value, dgst, userdata);
}

static int load_ref_label(const char *dgst, const char *key, const char *value, void *userdata)
{
	struct labels *l = userdata;
	struct labelrow *a = grow(l->rows, &l->cap, l->n, sizeof(*a));
	if (!a)
		return -ENOMEM;
	l->rows = a;
	a[l->n] = (struct labelrow){strdup(dgst), strdup(key), strdup(value)};
	if (!a[l->n].digest || !a[l->n].key || !a[l->n].value) {
		free(a[l->n].digest);
		free(a[l->n].key);
		free(a[l->n].value);
		return -ENOMEM;
	}
	l->n++;
	return 0;
}

/* Follows one reference label of a marked blob: 1 when it marked a blob not marked before. */
static int follow_label(struct gc *g, const struct labelrow *row)
{
	const char *k = row->key;
	if (strncmp(k, GC_REF_CONTENT, strlen(GC_REF_CONTENT)) == 0) {
		char next = k[strlen(GC_REF_CONTENT)];
		if ((next != '\0' && next != '.' && next != '/') || !digest_valid(row->value))
			return 0;
		int r = set_add(&g->blobs, row->value);
		return r < 0 ? oom(g) : r;
	}
	if (strncmp(k, GC_REF_SNAP, strlen(GC_REF_SNAP)) == 0) {
		const char *drv = k + strlen(GC_REF_SNAP);
		size_t n = strcspn(drv, "/");
		char name[64];
		if (n == 0 || n >= sizeof(name))
			return 0;
		memcpy(name, drv, n);
		name[n] = '\0';
		mark_snapshot(g, name, row->value);
	}
	return 0;
}

/* Roots among the blobs (tagged image manifests, `gc.root` labels), then the closure over the
 * `gc.ref.content*` and `gc.ref.snapshot.*` labels of every marked blob. */
static int mark_labels(struct gc *g)
{
	struct labels l = {0};
	int r = meta_tag_manifests(g->tx, root_manifest, g, g->reterr);
	if (r < 0 || (r = meta_content_labelled(g->tx, GC_ROOT, root_labelled, g, g->reterr)) < 0)
		return r;
	r = meta_content_labels_prefixed(g->tx, GC_REF, load_ref_label, &l, g->reterr);
	if (r == -ENOMEM)
		r = oom(g);
	/* A few rounds: each follows one level of manifests (index, manifest, config/layers). */
	for (bool more = r >= 0; more;) {
		more = false;
		for (size_t i = 0; r >= 0 && i < l.n; i++) {
			if (!set_has(&g->blobs, l.rows[i].digest))
				continue;
			int m = follow_label(g, &l.rows[i]);
			if (m < 0)
				r = m;
			else if (m > 0)
				more = true;
		}
		if (r < 0)
			more = false;
	}
	for (size_t i = 0; i < l.n; i++) {
		free(l.rows[i].digest);
		free(l.rows[i].key);
		free(l.rows[i].value);
	}
	free(l.rows);
	return r;
}

static int push(char ***array, size_t *n, const char *s);

/* (digest, label count) of a labelled blob: kept aside when nothing marked it. */
static int note_labelled(const char *dgst, const char *count, void *userdata)
{
	(void)count;
	struct gc *g = userdata;
	if (set_has(&g->blobs, dgst))
		return 0;
	return push(&g->unmarked_labelled, &g->n_unmarked_labelled, dgst) < 0 ? oom(g) : 0;
}

static int mark(struct gc *g)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	g->tx = &tx;
	int r = meta_tx_begin(g->store->db, &tx, false, g->reterr);
	if (r < 0 || (r = load_snaps(g)) < 0 ||
	    (r = meta_lease_list(&tx, visit_lease, g, g->reterr)) < 0 ||
	    (r = mark_records(g)) < 0 || (r = mark_labels(g)) < 0 ||
	    (r = meta_content_label_digests(&tx, note_labelled, g, g->reterr)) < 0)
		return r;
	g->tx = NULL;
	return 0;
}

/* ---- sizes and victims ---- */

static uint64_t dir_bytes(int dfd, const char *path)
{
	_cleanup_close_ int fd = openat(dfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	uint64_t bytes = 0, inodes = 0;
	if (fd < 0 || fs_usage_fd(fd, path, &bytes, &inodes, NULL) < 0)
		return 0;
	return bytes;
}

static int snap_depth(struct gc *g, struct snaprow *s)
{
	if (s->depth < 0) {
		struct snaprow *p = s->parent ? snap_by_id(g, s->parent) : NULL;
		s->depth = p ? snap_depth(g, p) + 1 : 0;
	}
	return s->depth;
}

static int cmp_depth_desc(const void *a, const void *b)
{
	const struct snaprow *x = *(struct snaprow *const *)a, *y = *(struct snaprow *const *)b;
	return y->depth - x->depth;
}

struct victims {
	struct snaprow **snaps;
	size_t n_snaps;
	char **blobs;
	size_t n_blobs;
	char **ingests;
	size_t n_ingests;
	char **labels; /* digests of absent blobs whose labels go */
	size_t n_labels;
};

static int push(char ***array, size_t *n, const char *s)
{
	char **a = realloc(*array, (*n + 1) * sizeof(*a));
	if (!a)
		return -ENOMEM;
	*array = a;
	if (!(a[*n] = strdup(s)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

static int pick_snapshots(struct gc *g, struct victims *v, cairn_gc_report *rep)
{
	_cleanup_close_ int snapfd =
		openat(g->store->rootfd, "snapshots", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	v->snaps = calloc(g->n_snaps + 1, sizeof(*v->snaps));
	if (!v->snaps)
		return oom(g);
	for (size_t i = 0; i < g->n_snaps; i++) {
		struct snaprow *s = &g->snaps[i];
		if (s->marked)
			continue;
		char name[32];
		snprintf(name, sizeof(name), "%" PRId64, s->id);
		s->bytes = snapfd >= 0 ? dir_bytes(snapfd, name) : 0;
		snap_depth(g, s);
		v->snaps[v->n_snaps++] = s;
		rep->snapshots++;
		rep->snapshot_bytes += s->bytes;
	}
	qsort(v->snaps, v->n_snaps, sizeof(*v->snaps), cmp_depth_desc);
	return 0;
}

struct pick {
	struct gc *g;
	struct victims *v;
	cairn_gc_report *rep;
};

static int pick_blob(const content_blob_info *info, void *userdata)
{
	struct pick *p = userdata;
	if (set_has(&p->g->blobs, info->digest))
		return 0;
	if (push(&p->v->blobs, &p->v->n_blobs, info->digest) < 0)
		return oom(p->g);
	p->rep->blobs++;
	p->rep->blob_bytes += info->size;
	return 0;
}

static int pick_ingest(const content_ingest_status *st, void *userdata)
{
	struct pick *p = userdata;
	if (st->updated_ns > p->g->now - LEASE_INGEST_MAX_AGE_NS)
		return 0;
	if (push(&p->v->ingests, &p->v->n_ingests, st->ref) < 0)
		return oom(p->g);
	p->rep->ingests++;
	p->rep->ingest_bytes += st->offset;
	return 0;
}

static int measure_tmp(struct gc *g, cairn_gc_report *rep)
{
	_cleanup_close_ int fd =
		fs_openat(g->store->rootfd, "tmp", O_RDONLY | O_DIRECTORY, 0, g->reterr);
	if (fd < 0)
		return fd == -ENOENT ? 0
		                     : err_prefix(g->reterr, "gc of store '%s'", g->store->root);
	DIR *d = fdopendir(dup(fd));
	if (!d)
		return err_errno(g->reterr, -errno, "gc: read '%s/tmp'", g->store->root);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		rep->tmp_entries++;
		rep->tmp_bytes += S_ISDIR(st.st_mode) ? dir_bytes(fd, de->d_name)
		                                      : (uint64_t)st.st_blocks * 512;
	}
	closedir(d);
	return 0;
}

/*
 * Labels that outlived their blob: an unmarked labelled digest with no file in blobs/ (one that
 * has a file is a doomed blob, whose labels go with it). A label row of a digest that is not
 * even valid can never belong to a blob, so it goes too.
 */
static int pick_labels(struct gc *g, struct victims *v, cairn_gc_report *rep)
{
	for (size_t i = 0; i < g->n_unmarked_labelled; i++) {
		const char *dgst = g->unmarked_labelled[i];
		cairn_error *e = NULL;
		int r = content_exists(g->store->content, dgst, &e);
		if (r < 0 && r != CAIRN_EDIGEST) {
			if (g->reterr && !*g->reterr)
				*g->reterr = TAKE_PTR(e);
			cairn_error_free(e);
			return err_prefix(g->reterr, "labels of blob '%s'", dgst);
		}
		cairn_error_free(e);
		if (r > 0)
			continue;
		if (push(&v->labels, &v->n_labels, dgst) < 0)
			return oom(g);
		rep->labels++;
	}
	return 0;
}

static int pick(struct gc *g, struct victims *v, cairn_gc_report *rep)
{
	struct pick p = {g, v, rep};
	int r = pick_snapshots(g, v, rep);
	if (r < 0 || (r = content_walk(g->store->content, pick_blob, &p, g->reterr)) < 0 ||
	    (r = pick_labels(g, v, rep)) < 0 ||
	    (r = content_list_ingests(g->store->content, pick_ingest, &p, g->reterr)) < 0 ||
	    (r = measure_tmp(g, rep)) < 0)
		return r;
	rep->leases = g->n_dead;
	return 0;
}

/* ---- sweep ---- */

static int sweep_meta(struct gc *g, const struct victims *v)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(g->store->db, &tx, true, g->reterr);
	if (r < 0)
		return r;
	for (size_t i = 0; i < g->n_dead; i++)
		if ((r = meta_lease_delete(&tx, g->dead_leases[i], g->reterr)) < 0 && r != -ENOENT)
			return r;
	for (size_t i = 0; i < v->n_blobs; i++)
		if ((r = meta_content_labels_clear(&tx, v->blobs[i], g->reterr)) < 0)
			return r;
	for (size_t i = 0; i < v->n_labels; i++)
		if ((r = meta_content_labels_clear(&tx, v->labels[i], g->reterr)) < 0)
			return err_prefix(g->reterr, "labels of blob '%s'", v->labels[i]);
	return meta_tx_commit(&tx, g->reterr);
}

/* Removes the victims of snapshotter @drv with @s, children first (the order of v->snaps). */
static void sweep_driver(snapshotter *s, const char *drv, const struct victims *v,
                         cairn_gc_report *rep)
{
	for (size_t i = 0; i < v->n_snaps; i++) {
		if (strcmp(v->snaps[i]->snapshotter, drv) != 0)
			continue;
		cairn_error *e = NULL;
		int r = snap_remove(s, v->snaps[i]->name, &e);
		if (r < 0 && r != -ENOENT) {
			log_debug("gc: %s", cairn_error_message(e));
			rep->skipped++;
		}
		if (r >= 0)
			fault_point("gc.snapshot-removed");
		cairn_error_free(e);
	}
}

static void sweep_snapshots(struct gc *g, const struct victims *v, cairn_gc_report *rep)
{
	static const char *const drivers[] = {"overlay", "native"};
	for (size_t d = 0; d < ELEMENTSOF(drivers); d++) {
		size_t n = 0;
		for (size_t i = 0; i < v->n_snaps; i++)
			n += strcmp(v->snaps[i]->snapshotter, drivers[d]) == 0;
		if (n == 0)
			continue;
		if (strcmp(snap_driver_name(g->store->snap), drivers[d]) == 0) {
			sweep_driver(g->store->snap, drivers[d], v, rep);
			continue;
		}
		_cleanup_(snap_closep) snapshotter *other = NULL;
		cairn_error *e = NULL;
		if (snap_open(g->store->rootfd, g->store->db, drivers[d], &other, &e) < 0) {
			log_debug("gc: keep %zu snapshots of '%s': %s", n, drivers[d],
			          cairn_error_message(e));
			rep->skipped += n;
		} else {
			sweep_driver(other, drivers[d], v, rep);
		}
		cairn_error_free(e);
	}
}

static void sweep_files(struct gc *g, const struct victims *v, cairn_gc_report *rep)
{
	for (size_t i = 0; i < v->n_blobs; i++) {
		int r = content_delete(g->store->content, v->blobs[i], NULL);
		if (r < 0 && r != -ENOENT)
			rep->skipped++;
		if (r >= 0)
			fault_point("gc.blob-removed");
	}
	for (size_t i = 0; i < v->n_ingests; i++) {
		int r = content_abort(g->store->content, v->ingests[i], NULL);
		if (r < 0 && r != -ENOENT)
			rep->skipped++;
	}
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void gc_free(struct gc *g, struct victims *v)
{
	for (size_t i = 0; i < g->n_snaps; i++) {
		free(g->snaps[i].snapshotter);
		free(g->snaps[i].name);
	}
	for (size_t i = 0; i < g->n_recs; i++) {
		struct recrow *r = &g->recs[i];
		free(r->id);
		free(r->snapshotter);
		free(r->snapshot);
		free(r->blob);
		free(r->parent);
	}
	free(g->snaps);
	free(g->by_name);
	free(g->recs);
	set_free(&g->blobs);
	set_free(&g->roots);
	free_strv(g->dead_leases, g->n_dead);
	free_strv(g->unmarked_labelled, g->n_unmarked_labelled);
	free(v->snaps);
	free_strv(v->labels, v->n_labels);
	free_strv(v->blobs, v->n_blobs);
	free_strv(v->ingests, v->n_ingests);
}

static int run(struct gc *g, struct victims *v, unsigned flags, cairn_gc_report *rep)
{
	int r = mark(g);
	if (r < 0 || (r = pick(g, v, rep)) < 0)
		return r;
	if (flags & CAIRN_GC_DRY_RUN)
		return 0;
	/* Metadata first: a crash after it leaves only unreferenced files, which the next gc
	 * (or the open-time reconcile) removes. */
	fault_point("gc.marked");
	if ((r = sweep_meta(g, v)) < 0)
		return r;
	fault_point("gc.meta-swept");
	sweep_snapshots(g, v, rep);
	sweep_files(g, v, rep);
	return store_tmpdir_clean(g->store, g->reterr);
}

int cairn_gc(cairn_store *store, unsigned flags, cairn_gc_report *ret_report, cairn_error **reterr)
{
	if (!store)
		return err_set(reterr, -EINVAL, "gc: no store given");
	if (flags & ~CAIRN_GC_FLAGS_ALL)
		return err_set(reterr, -EINVAL, "gc of store '%s': unknown flags 0x%x", store->root,
		               flags);
	if (!(store->flags & CAIRN_STORE_EXCLUSIVE))
		return err_set(reterr, -EINVAL,
		               "gc of store '%s': the store must be opened with "
		               "CAIRN_STORE_EXCLUSIVE, so that no other process uses it meanwhile",
		               store->root);
	struct gc g = {.store = store, .now = meta_now_ns(), .reterr = reterr};
	struct victims v = {0};
	cairn_gc_report rep = {0};
	int r = run(&g, &v, flags, &rep);
	gc_free(&g, &v);
	if (r < 0)
		return err_prefix(reterr, "gc of store '%s'", store->root);
	rep.bytes = rep.snapshot_bytes + rep.blob_bytes + rep.ingest_bytes + rep.tmp_bytes;
	if (ret_report)
		*ret_report = rep;
	return 0;
}
