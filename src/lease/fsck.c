/* SPDX-License-Identifier: MIT */
/*
 * fsck: check that the database and the files agree, and with CAIRN_FSCK_REPAIR fix what can be
 * fixed without losing anything that is still good. The order matters: blobs first (a corrupt
 * blob is deleted before records are checked against the blobs present), then snapshots (the
 * reconcile may drop rows), then records, tags and mounts against what is left.
 */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fs.h"
#include "content/content.h"
#include "cairn/lease.h"
#include "lease.h"
#include "meta/labels.h"
#include "meta/records.h"
#include "meta/snapshots.h"
#include "store/store.h"

struct fsck {
	cairn_store *store;
	bool repair;
	cairn_fsck_fn fn;
	void *userdata;
	size_t unfixed;
	meta_tx *tx;
	char **corrupt; /* digests of corrupt blobs */
	size_t n_corrupt;
	int snapfd;
	cairn_error **reterr;
};

static int report(struct fsck *f, const char *kind, const char *object, bool repaired,
                  const char *fmt, ...) _printf_(5, 6);

static int report(struct fsck *f, const char *kind, const char *object, bool repaired,
                  const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return err_set(f->reterr, -ENOMEM, "fsck: out of memory");
	if (!repaired)
		f->unfixed++;
	if (!f->fn)
		return 0;
	cairn_fsck_problem p = {kind, object, msg, repaired};
	int r = f->fn(&p, f->userdata);
	return r < 0 ? err_set(f->reterr, r, "fsck: stopped by the caller") : 0;
}

/* ---- blobs ---- */

static int check_blob(const content_blob_info *info, void *userdata)
{
	struct fsck *f = userdata;
	cairn_error *e = NULL;
	int r = content_verify(f->store->content, info->digest, &e);
	if (r == -ENOENT || r >= 0) {
		cairn_error_free(e);
		return 0;
	}
	if (r != CAIRN_EDIGEST && r != CAIRN_ECORRUPT) {
		/* An I/O error is no verdict on the blob: stop and say so. */
		if (f->reterr && !*f->reterr)
			*f->reterr = e;
		else
			cairn_error_free(e);
		return r;
	}
	_cleanup_free_ char *msg = strdup(cairn_error_message(e));
	cairn_error_free(e);
	char **a = realloc(f->corrupt, (f->n_corrupt + 1) * sizeof(*a));
	if (!msg || !a || !(a[f->n_corrupt] = strdup(info->digest))) {
		if (a)
			f->corrupt = a;
		return err_set(f->reterr, -ENOMEM, "fsck: out of memory");
	}
	f->corrupt = a;
	f->n_corrupt++;
	bool fixed = f->repair && content_delete(f->store->content, info->digest, NULL) >= 0;
	return report(f, "blob", info->digest, fixed, "%s%s", msg, fixed ? " (deleted)" : "");
}

/* ---- snapshots ---- */

struct ids {
	int64_t *v;
	size_t n;
};

static bool has_dir(struct fsck *f, int64_t id, const char *sub)
{
	char path[64];
	struct stat st;
	snprintf(path, sizeof(path), "%" PRId64 "%s", id, sub);
	return f->snapfd >= 0 && fstatat(f->snapfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

struct snap_pass {
	struct fsck *f;
	struct ids ids;
	bool found;
};

static int check_snap_row(const struct meta_snapshot *s, void *userdata)
{
	struct snap_pass *p = userdata;
	int64_t *a = realloc(p->ids.v, (p->ids.n + 1) * sizeof(*a));
	if (!a)
		return err_set(p->f->reterr, -ENOMEM, "fsck: out of memory");
	p->ids.v = a;
	a[p->ids.n++] = s->id;
	if (has_dir(p->f, s->id, "/fs"))
		return 0;
	p->found = true;
	/* Reported before the repair; the reconcile that follows drops the row. */
	return report(
		p->f, "snapshot", s->name, p->f->repair,
		"snapshot '%s' (%s, id %" PRId64 ") has no directory 'snapshots/%" PRId64 "/fs'%s",
		s->name, s->snapshotter, s->id, s->id,
		p->f->repair ? " (row dropped; records using it are re-extracted below)" : "");
}

static bool known_id(const struct ids *ids, int64_t id)
{
	for (size_t i = 0; i < ids->n; i++)
		if (ids->v[i] == id)
			return true;
	return false;
}

/* A decimal id without leading zeros, or -1. */
static int64_t parse_id(const char *s)
{
	if (!*s || (*s == '0' && s[1]) || strlen(s) > 18)
		return -1;
	int64_t v = 0;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

static int check_orphans(struct snap_pass *p)
{
	if (p->f->snapfd < 0)
		return 0;
	DIR *d = fdopendir(dup(p->f->snapfd));
	if (!d)
		return err_errno(p->f->reterr, -errno, "fsck: read '%s/snapshots'",
		                 p->f->store->root);
	struct dirent *de;
	int r = 0;
	while (r >= 0 && (de = readdir(d))) {
		int64_t id = parse_id(de->d_name);
		if (id < 0 || known_id(&p->ids, id))
			continue;
		p->found = true;
		r = report(p->f, "snapshot", de->d_name, p->f->repair,
		           "directory 'snapshots/%s' belongs to no snapshot%s", de->d_name,
		           p->f->repair ? " (deleted)" : "");
	}
	closedir(d);
	return r;
}

static int check_snapshots(struct fsck *f)
{
	struct snap_pass p = {.f = f};
	int r;
	{
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		if ((r = meta_tx_begin(f->store->db, &tx, false, f->reterr)) >= 0)
			r = meta_snapshot_list(&tx, NULL, check_snap_row, &p, f->reterr);
	}
	if (r >= 0)
		r = check_orphans(&p);
	free(p.ids.v);
	if (r < 0 || !p.found || !f->repair)
		return r;
	/* One reconcile fixes both directions, for every snapshotter. */
	r = snap_reconcile(f->store->snap, f->reterr);
	return r < 0 ? err_prefix(f->reterr, "fsck") : 0;
}

/* ---- records, tags, mounts ---- */

static bool snapshot_exists(struct fsck *f, const char *drv, const char *name)
{
	struct meta_snapshot s = {0};
	int r = meta_snapshot_get(f->tx, drv, name, &s, NULL);
	meta_snapshot_clear(&s);
	return r > 0;
}

static bool blob_usable(struct fsck *f, const char *dgst)
{
	for (size_t i = 0; i < f->n_corrupt; i++)
		if (strcmp(f->corrupt[i], dgst) == 0)
			return false;
	return content_exists(f->store->content, dgst, NULL) > 0;
}

static int has_source(const char *key, const char *value, void *userdata)
{
	(void)value;
	if (strcmp(key, "cairn.lazy.source") == 0)
		*(bool *)userdata = true;
	return 0;
}

/* Whether blob @dgst is lazy: a source to fetch it from is recorded (src/cache/blobs.c), so its
 * absence is no problem ("remote"). */
static bool blob_remote(struct fsck *f, const char *dgst)
{
	bool lazy = false;
	return meta_content_labels(f->tx, dgst, has_source, &lazy, NULL) >= 0 && lazy;
}

static int check_record_snapshot(struct fsck *f, const char *id, const char *drv,
                                 const char *snapshot, const char *blob)
{
	if (f->repair && blob && blob_usable(f, blob) &&
	    meta_record_set_extracted(f->tx, id, false, NULL) >= 0)
		return report(
			f, "record", id, true,
			"record '%s': snapshot '%s' (%s) is missing (marked not extracted: the "
			"next extract re-creates it from blob '%s')",
			id, snapshot, drv, blob);
	if (blob && blob_usable(f, blob))
		return report(f, "record", id, false,
		              "record '%s': snapshot '%s' (%s) is missing; --repair re-extracts it "
		              "from blob '%s'",
		              id, snapshot, drv, blob);
	return report(f, "record", id, false,
	              "record '%s': snapshot '%s' (%s) is missing and no blob holds its data: "
	              "remove the record (cairn rm) or import its layer again",
	              id, snapshot, drv);
}

/*
 * Whether mutable @id is half way through a finalize that a crash interrupted: its active snapshot
 * was committed under the id of its immutable, the rows did not change yet. Not a problem: the
 * next open of the cache completes it (cache/repair.c, roll_forward).
 */
static bool finalize_pending(struct fsck *f, const char *id, const char *drv)
{
	struct meta_record row = {0};
	bool pending = meta_record_get(f->tx, id, &row, NULL) > 0 &&
	               row.kind == META_RECORD_MUTABLE && row.equal_immutable &&
	               snapshot_exists(f, drv, row.equal_immutable);
	meta_record_clear(&row);
	return pending;
}

static int check_record(const char *id, const char *drv, const char *snapshot, const char *blob,
                        const char *parent, bool deleted, bool extracted, void *userdata)
{
	struct fsck *f = userdata;
	int r = 0;
	if (deleted)
		return 0; /* a tombstone: the next open of the cache finishes its removal */
	if (extracted && snapshot && !snapshot_exists(f, drv, snapshot) &&
	    !finalize_pending(f, id, drv))
		r = check_record_snapshot(f, id, drv, snapshot, blob);
	if (r >= 0 && !extracted && blob && !blob_usable(f, blob) && !blob_remote(f, blob))
		r = report(f, "record", id, false,
		           "record '%s' is not extracted and its blob '%s' is missing or corrupt: "
		           "import or pull that layer again",
		           id, blob);
	if (r >= 0 && extracted && blob && !blob_usable(f, blob) && !blob_remote(f, blob))
		r = report(
			f, "record", id, false,
			"record '%s': its blob '%s' is missing or corrupt (its snapshot is intact; "
			"export or push will need the blob again)",
			id, blob);
	if (r >= 0 && parent) {
		struct meta_record p = {0};
		int k = meta_record_get(f->tx, parent, &p, NULL);
		meta_record_clear(&p);
		if (k == 0)
			r = report(f, "record", id, false,
			           "record '%s': parent record '%s' is missing", id, parent);
	}
	return r;
}

static bool record_live(struct fsck *f, const char *id)
{
	struct meta_record rec = {0};
	int r = meta_record_get(f->tx, id, &rec, NULL);
	bool live = r > 0 && !rec.deleted;
	meta_record_clear(&rec);
	return live;
}

struct tag {
	char *name, *target;
};

struct tags {
	struct tag *v;
	size_t n;
};

static int collect_tag(const char *name, const char *target, void *userdata)
{
	struct tags *t = userdata;
	struct tag *a = realloc(t->v, (t->n + 1) * sizeof(*a));
	if (!a)
		return -ENOMEM;
	t->v = a;
	a[t->n] = (struct tag){strdup(name), strdup(target)};
	return a[t->n++].target ? 0 : -ENOMEM;
}

static void tags_free(struct tags *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].name);
		free(t->v[i].target);
	}
	free(t->v);
	*t = (struct tags){0};
}

/* A tag that names an image manifest whose blob is gone keeps its record; the repair drops the
 * manifest from it (an export then writes a config of its own). */
static int check_tag_manifests(struct fsck *f)
{
	struct tags t = {0};
	int r = meta_tag_manifests(f->tx, collect_tag, &t, f->reterr);
	if (r == -ENOMEM)
		r = err_set(f->reterr, r, "fsck: out of memory");
	for (size_t i = 0; r >= 0 && i < t.n; i++) {
		const char *name = t.v[i].name, *manifest = t.v[i].target;
		if (!name || blob_usable(f, manifest))
			continue;
		_cleanup_free_ char *target = NULL;
		bool fixed = f->repair && meta_tag_get(f->tx, name, &target, NULL, NULL) > 0 &&
		             meta_tag_set(f->tx, name, target, NULL, NULL) >= 0;
		r = report(f, "tag", name, fixed,
		           "tag '%s' names image manifest blob %s, which is missing or corrupt%s",
		           name, manifest,
		           fixed ? " (manifest dropped from the tag)"
		                 : ": import the image again, or re-tag the record");
	}
	tags_free(&t);
	return r;
}

/* Tags are collected first: the repair deletes rows while the list is walked otherwise. */
static int check_tags(struct fsck *f)
{
	struct tags t = {0};
	int r = meta_tags(f->tx, collect_tag, &t, f->reterr);
	if (r == -ENOMEM)
		r = err_set(f->reterr, r, "fsck: out of memory");
	for (size_t i = 0; r >= 0 && i < t.n; i++) {
		if (!t.v[i].name || record_live(f, t.v[i].target))
			continue;
		bool fixed = f->repair && meta_tag_remove(f->tx, t.v[i].name, NULL) >= 0;
		r = report(f, "tag", t.v[i].name, fixed,
		           "tag '%s' points at record '%s', which does not exist or is being "
		           "removed%s",
		           t.v[i].name, t.v[i].target, fixed ? " (tag removed)" : "");
	}
	tags_free(&t);
	return r < 0 ? r : check_tag_manifests(f);
}

static int check_mount(const char *target, const char *record, const char *drv, const char *view,
                       void *userdata)
{
	struct fsck *f = userdata;
	if (!record_live(f, record))
		return report(f, "mount", target, false,
		              "mount '%s' holds record '%s', which does not exist or is being "
		              "removed: cairn umount '%s'",
		              target, record, target);
	if (view && !snapshot_exists(f, drv, view))
		return report(f, "mount", target, false,
		              "mount '%s' of record '%s': its view snapshot '%s' is missing: "
		              "cairn umount '%s', then mount again",
		              target, record, view, target);
	return 0;
}

static int check_references(struct fsck *f)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	f->tx = &tx;
	int r = meta_tx_begin(f->store->db, &tx, f->repair, f->reterr);
	if (r < 0 || (r = meta_record_refs(&tx, check_record, f, f->reterr)) < 0 ||
	    (r = check_tags(f)) < 0 || (r = meta_mount_refs(&tx, check_mount, f, f->reterr)) < 0)
		return r;
	f->tx = NULL;
	return f->repair ? meta_tx_commit(&tx, f->reterr) : 0;
}

/* ---- ingests ---- */

/* An ingest without a ref file this young may be a writer between its mkdir and its lock (the
 * age content_reconcile() waits for too); with the store to itself fsck knows there is none. */
#define INGEST_CUT_SHORT_AGE_NS (600LL * 1000000000)

/* An ingest no writer holds: abandoned when it was cut short (no ref or data file) or left
 * alone longer than gc allows (LEASE_INGEST_MAX_AGE_NS); younger ones are resumable. */
static int check_ingest(const content_ingest_check *c, void *userdata)
{
	struct fsck *f = userdata;
	int64_t age = meta_now_ns() - c->updated_ns;
	bool alone = f->store->flags & CAIRN_STORE_EXCLUSIVE;
	int r;
	if (!c->ref) {
		if (!alone && age < INGEST_CUT_SHORT_AGE_NS)
			return 0;
		r = report(f, "ingest", c->key, f->repair,
		           "ingest 'ingest/%s' has no ref or data file and no writer: a write cut "
		           "short%s",
		           c->key, f->repair ? " (removed)" : "; --repair removes it");
	} else {
		if (age < LEASE_INGEST_MAX_AGE_NS)
			return 0;
		r = report(f, "ingest", c->ref, f->repair,
		           "ingest '%s' ('ingest/%s', %" PRIu64
		           " bytes) has no writer and was last "
		           "written %" PRId64 " hours ago: abandoned (gc removes it too)%s",
		           c->ref, c->key, c->offset, (int64_t)(age / (3600LL * 1000000000)),
		           f->repair ? " (removed)" : "; --repair removes it");
	}
	return r < 0 ? r : f->repair;
}

static int check_ingests(struct fsck *f)
{
	int r = content_check_ingests(f->store->content, check_ingest, f, f->reterr);
	return r < 0 ? err_prefix(f->reterr, "fsck: ingests") : 0;
}

/* ---- snapshot chains ---- */

struct snode {
	int64_t id, parent;
	int kind;
	char *drv, *name;
	ssize_t up;  /* index of the parent node, -1: none or missing */
	bool bad;    /* on a broken chain: goes with --repair */
	bool pinned; /* used (itself or below) by a record that has no blob to re-extract it from */
	char *why;   /* what is wrong with it (NULL: it sits on a broken snapshot) */
	char *record; /* the record whose parent it contradicts, when that is what is wrong */
};

struct rref {
	char *id, *drv, *snapshot, *blob, *parent;
};

struct chains {
	struct fsck *f;
	struct snode *v; /* in id order */
	size_t n;
	size_t *by_name; /* indexes of v in (name, snapshotter) order */
	struct rref *recs;
	size_t n_recs;
};

static int collect_snode(const struct meta_snapshot *s, void *userdata)
{
	struct chains *c = userdata;
	struct snode *a = realloc(c->v, (c->n + 1) * sizeof(*a));
	if (!a)
		return -ENOMEM;
	c->v = a;
	a[c->n] = (struct snode){.id = s->id,
	                         .parent = s->parent,
	                         .kind = s->kind,
	                         .drv = strdup(s->snapshotter),
	                         .name = strdup(s->name),
	                         .up = -1};
	c->n++;
	return a[c->n - 1].drv && a[c->n - 1].name ? 0 : -ENOMEM;
}

static int collect_rref(const char *id, const char *drv, const char *snapshot, const char *blob,
                        const char *parent, bool deleted, bool extracted, void *userdata)
{
	struct chains *c = userdata;
	if (deleted || !extracted || !snapshot)
		return 0; /* a tombstone, or no data of its own yet */
	struct rref *a = realloc(c->recs, (c->n_recs + 1) * sizeof(*a));
	if (!a)
		return -ENOMEM;
	c->recs = a;
	a[c->n_recs] = (struct rref){strdup(id), strdup(drv), strdup(snapshot),
	                             blob ? strdup(blob) : NULL, parent ? strdup(parent) : NULL};
	struct rref *x = &a[c->n_recs++];
	return x->id && x->drv && x->snapshot && (!blob || x->blob) && (!parent || x->parent)
	               ? 0
	               : -ENOMEM;
}

static void chains_free(struct chains *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].drv);
		free(c->v[i].name);
		free(c->v[i].why);
		free(c->v[i].record);
	}
	for (size_t i = 0; i < c->n_recs; i++) {
		free(c->recs[i].id);
		free(c->recs[i].drv);
		free(c->recs[i].snapshot);
		free(c->recs[i].blob);
		free(c->recs[i].parent);
	}
	free(c->v);
	free(c->by_name);
	free(c->recs);
}

static int cmp_snode(const void *a, const void *b)
{
	const struct snode *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static ssize_t snode_by_id(const struct chains *c, int64_t id)
{
	struct snode key = {.id = id};
	/* bsearch() must not get a NULL array, even with no elements. */
	const struct snode *x = c->n ? bsearch(&key, c->v, c->n, sizeof(*c->v), cmp_snode) : NULL;
	return x ? x - c->v : -1;
}

static int cmp_name(const struct snode *x, const char *drv, const char *name)
{
	int k = strcmp(x->name, name);
	return k ? k : strcmp(x->drv, drv);
}

static int cmp_by_name(const void *a, const void *b, void *userdata)
{
	const struct snode *v = userdata, *y = &v[*(const size_t *)b];
	return cmp_name(&v[*(const size_t *)a], y->drv, y->name);
}

static ssize_t snode_by_name(const struct chains *c, const char *drv, const char *name)
{
	size_t lo = 0, hi = c->n;
	while (name && lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int k = cmp_name(&c->v[c->by_name[mid]], drv, name);
		if (k == 0)
			return (ssize_t)c->by_name[mid];
		if (k < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static int cmp_rref(const void *key, const void *elem)
{
	return strcmp(key, ((const struct rref *)elem)->id);
}

/* Records come in id order (meta_record_refs()). */
static const struct rref *rref_find(const struct chains *c, const char *id)
{
	return id && c->n_recs ? bsearch(id, c->recs, c->n_recs, sizeof(*c->recs), cmp_rref) : NULL;
}

/* Marks @x broken for the reason @fmt (reported once the repair knows what it can do). */
static int set_bad(struct snode *x, const char *record, const char *fmt, ...) _printf_(3, 4);

static int set_bad(struct snode *x, const char *record, const char *fmt, ...)
{
	if (x->why)
		return 0;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&x->why, fmt, ap);
	va_end(ap);
	if (n < 0) {
		x->why = NULL;
		return -ENOMEM;
	}
	x->bad = true;
	return record && !(x->record = strdup(record)) ? -ENOMEM : 0;
}

/* Parent, kind and cycle of every snapshot: a parent that is missing or not committed, or a
 * chain that comes back to itself, makes the snapshot unusable (its layers cannot be stacked). */
static int check_snapshot_parents(struct chains *c)
{
	int r = 0;
	for (size_t i = 0; i < c->n; i++) {
		struct snode *x = &c->v[i];
		if (!x->parent)
			continue;
		x->up = snode_by_id(c, x->parent);
		if (x->up < 0)
			r = set_bad(x, NULL,
			            "snapshot '%s' (%s, id %" PRId64
			            "): its parent snapshot (id %" PRId64 ") does not exist",
			            x->name, x->drv, x->id, x->parent);
		else if (c->v[x->up].kind != META_SNAPSHOT_COMMITTED)
			r = set_bad(x, NULL,
			            "snapshot '%s' (%s): its parent '%s' is not committed (%s)",
			            x->name, x->drv, c->v[x->up].name,
			            snap_kind_name((snap_kind)c->v[x->up].kind));
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < c->n; i++) {
		/* More steps up than there are snapshots: the chain loops. */
		ssize_t k = (ssize_t)i;
		for (size_t steps = 0; k >= 0 && steps <= c->n; steps++)
			k = c->v[k].up;
		if (k >= 0 && (r = set_bad(&c->v[i], NULL,
		                           "snapshot '%s' (%s): its chain of parents loops back on "
		                           "itself",
		                           c->v[i].name, c->v[i].drv)) < 0)
			return r;
	}
	return 0;
}

/* Whether the snapshot named @have is, as a parent, the same layers as the one named @want: the
 * same snapshot, or one that records of the same chain id use (records with one chain id share
 * their data, so a child may sit on another record's copy of its parent's layers). */
static bool same_layers(struct chains *c, const char *drv, const char *want, const char *have)
{
	if (!want || !have)
		return !want && !have;
	if (strcmp(want, have) == 0)
		return true;
	struct fsck *f = c->f;
	_cleanup_free_ char *chain = NULL;
	for (size_t i = 0; !chain && i < c->n_recs; i++) {
		struct meta_record r = {0};
		if (strcmp(c->recs[i].drv, drv) == 0 && strcmp(c->recs[i].snapshot, want) == 0 &&
		    meta_record_get(f->tx, c->recs[i].id, &r, NULL) > 0 && r.chain_id)
			chain = TAKE_PTR(r.chain_id);
		meta_record_clear(&r);
	}
	bool same = false;
	for (size_t i = 0; chain && !same && i < c->n_recs; i++) {
		struct meta_record r = {0};
		same = strcmp(c->recs[i].drv, drv) == 0 && strcmp(c->recs[i].snapshot, have) == 0 &&
		       meta_record_get(f->tx, c->recs[i].id, &r, NULL) > 0 && r.chain_id &&
		       strcmp(r.chain_id, chain) == 0;
		meta_record_clear(&r);
	}
	return same;
}

/* Each record's snapshot sits on its parent record's snapshot (no parent: on nothing). */
static int check_record_chains(struct chains *c)
{
	for (size_t i = 0; i < c->n_recs; i++) {
		const struct rref *x = &c->recs[i];
		ssize_t s = snode_by_name(c, x->drv, x->snapshot);
		if (s < 0 || c->v[s].bad)
			continue; /* missing (reported with the record) or broken already */
		const struct rref *p = x->parent ? rref_find(c, x->parent) : NULL;
		if (x->parent && !p)
			continue; /* a parent not extracted, or missing (reported with the record)
			           */
		const char *want = p ? p->snapshot : NULL;
		ssize_t up = c->v[s].up;
		const char *have = up >= 0 ? c->v[up].name : NULL;
		if (same_layers(c, x->drv, want, have))
			continue;
		int r = set_bad(
			&c->v[s], x->id,
			"record '%s': its snapshot '%s' sits on %s%s%s, but its parent record "
			"%s%s%s has snapshot %s%s%s",
			x->id, x->snapshot, have ? "'" : "", have ? have : "nothing",
			have ? "'" : "", p ? "'" : "", p ? p->id : "(none)", p ? "'" : "",
			want ? "'" : "", want ? want : "(none)", want ? "'" : "");
		if (r < 0)
			return r;
	}
	return 0;
}

/* What sits on a broken snapshot is broken too. */
static void spread_bad(struct chains *c)
{
	for (bool changed = true; changed;) {
		changed = false;
		for (size_t i = 0; i < c->n; i++)
			if (!c->v[i].bad && c->v[i].up >= 0 && c->v[c->v[i].up].bad)
				changed = c->v[i].bad = true;
	}
}

/*
 * What sits on a broken snapshot is broken too. A broken snapshot goes with --repair unless it
 * (or one below it) holds the only copy of a record's data (no usable blob to extract it again
 * from): then it stays, reported as not repaired.
 */
static int mark_broken(struct chains *c)
{
	spread_bad(c);
	for (size_t i = 0; i < c->n_recs; i++) {
		const struct rref *x = &c->recs[i];
		ssize_t s = snode_by_name(c, x->drv, x->snapshot);
		if (s < 0 || !c->v[s].bad || (x->blob && blob_usable(c->f, x->blob)))
			continue;
		int r = report(
			c->f, "record", x->id, false,
			"record '%s': its snapshot '%s' is on a broken chain and no blob holds "
			"its data: remove the record (cairn rm %s) or import its layer again",
			x->id, x->snapshot, x->id);
		if (r < 0)
			return r;
		/* It and everything below it stay. */
		for (ssize_t k = s, steps = 0; k >= 0 && (size_t)steps <= c->n; steps++) {
			c->v[k].pinned = true;
			k = c->v[k].up;
		}
	}
	const char *drv = snap_driver_name(c->f->store->snap);
	for (size_t i = 0; i < c->n; i++) {
		const struct snode *x = &c->v[i];
		if (!x->bad)
			continue;
		bool mine = strcmp(x->drv, drv) == 0;
		bool fixed = c->f->repair && !x->pinned && mine;
		const char *how = !c->f->repair ? ""
		                  : fixed       ? " (snapshot removed)"
		                  : x->pinned
		                          ? " (kept: a record's only data)"
		                          : " (kept: run fsck --repair with that --snapshotter)";
		int r;
		if (x->why)
			r = report(c->f, x->record ? "record" : "snapshot",
			           x->record ? x->record : x->name, fixed, "%s%s%s", x->why,
			           c->f->repair ? "" : "; --repair removes the snapshot", how);
		else
			r = report(c->f, "snapshot", x->name, fixed,
			           "snapshot '%s' (%s) sits on '%s', a broken snapshot%s%s",
			           x->name, x->drv, c->v[x->up].name,
			           c->f->repair ? "" : "; --repair removes it", how);
		if (r < 0)
			return r;
	}
	return 0;
}

static int repair_chains(struct chains *c)
{
	struct fsck *f = c->f;
	const char *mine = snap_driver_name(f->store->snap);
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(f->store->db, &tx, true, f->reterr);
	/* Unlinked first: then no broken snapshot has a child left, whatever the order. */
	for (size_t i = 0; r >= 0 && i < c->n; i++)
		if (c->v[i].bad && !c->v[i].pinned && strcmp(c->v[i].drv, mine) == 0 &&
		    c->v[i].parent)
			r = meta_snapshot_clear_parent(&tx, c->v[i].id, f->reterr);
	if (r < 0 || (r = meta_tx_commit(&tx, f->reterr)) < 0)
		return r;
	meta_tx_end(&tx);
	for (size_t i = 0; r >= 0 && i < c->n; i++) {
		struct snode *x = &c->v[i];
		if (!x->bad || x->pinned)
			continue;
		if (strcmp(x->drv, mine) != 0)
			continue;
		_cleanup_(cairn_error_freep) cairn_error *e = NULL;
		if (snap_remove(f->store->snap, x->name, &e) < 0 && e)
			r = report(f, "snapshot", x->name, false, "snapshot '%s' (%s): %s", x->name,
			           x->drv, cairn_error_message(e));
	}
	return r;
}

static int check_chains(struct fsck *f)
{
	struct chains c = {.f = f};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(f->store->db, &tx, false, f->reterr);
	f->tx = &tx;
	if (r >= 0 && (r = meta_snapshot_list(&tx, NULL, collect_snode, &c, f->reterr)) >= 0)
		r = meta_record_refs(&tx, collect_rref, &c, f->reterr);
	if (r == -ENOMEM)
		r = err_set(f->reterr, r, "fsck: out of memory");
	if (r >= 0) {
		if (c.n > 0) /* qsort(NULL, 0) is undefined */
			qsort(c.v, c.n, sizeof(*c.v), cmp_snode);
		if (!(c.by_name = calloc(c.n + 1, sizeof(size_t))))
			r = err_set(f->reterr, -ENOMEM, "fsck: out of memory");
	}
	if (r >= 0) {
		for (size_t i = 0; i < c.n; i++)
			c.by_name[i] = i;
		if (c.n > 0)
			qsort_r(c.by_name, c.n, sizeof(size_t), cmp_by_name, c.v);
		if ((r = check_snapshot_parents(&c)) >= 0) {
			spread_bad(&c);
			if ((r = check_record_chains(&c)) >= 0)
				r = mark_broken(&c);
		}
	}
	meta_tx_end(&tx);
	f->tx = NULL;
	if (r >= 0 && f->repair)
		r = repair_chains(&c);
	chains_free(&c);
	return r;
}

int cairn_fsck(cairn_store *store, unsigned flags, cairn_fsck_fn fn, void *userdata,
               size_t *ret_problems, cairn_error **reterr)
{
	if (!store)
		return err_set(reterr, -EINVAL, "fsck: no store given");
	if (flags & ~CAIRN_FSCK_FLAGS_ALL)
		return err_set(reterr, -EINVAL, "fsck of store '%s': unknown flags 0x%x",
		               store->root, flags);
	if ((flags & CAIRN_FSCK_REPAIR) && !(store->flags & CAIRN_STORE_EXCLUSIVE))
		return err_set(reterr, -EINVAL,
		               "fsck of store '%s': repair needs the store opened with "
		               "CAIRN_STORE_EXCLUSIVE, so that no other process uses it meanwhile",
		               store->root);
	struct fsck f = {
		.store = store,
		.repair = flags & CAIRN_FSCK_REPAIR,
		.fn = fn,
		.userdata = userdata,
		.snapfd = openat(store->rootfd, "snapshots", O_RDONLY | O_DIRECTORY | O_CLOEXEC),
		.reterr = reterr,
	};
	/* The database's own pages first: opening the store reads only its header. */
	int r = meta_check(store->db, reterr);
	if (r >= 0)
		r = content_walk(store->content, check_blob, &f, reterr);
	if (r >= 0 && (r = check_ingests(&f)) >= 0 && (r = check_snapshots(&f)) >= 0 &&
	    (r = check_chains(&f)) >= 0)
		r = check_references(&f);
	for (size_t i = 0; i < f.n_corrupt; i++)
		free(f.corrupt[i]);
	free(f.corrupt);
	safe_close(f.snapfd);
	if (r < 0)
		return err_prefix(reterr, "fsck of store '%s'", store->root);
	if (ret_problems)
		*ret_problems = f.unfixed;
	return 0;
}
