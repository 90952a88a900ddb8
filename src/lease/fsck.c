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
	if (r >= 0 && !extracted && blob && !blob_usable(f, blob))
		r = report(f, "record", id, false,
		           "record '%s' is not extracted and its blob '%s' is missing or corrupt: "
		           "import or pull that layer again",
		           id, blob);
	if (r >= 0 && extracted && blob && !blob_usable(f, blob))
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
	int r = content_walk(store->content, check_blob, &f, reterr);
	if (r >= 0 && (r = check_snapshots(&f)) >= 0)
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
