/* SPDX-License-Identifier: MIT */
/*
 * The dispatcher: argument checks, the one transaction per operation, the renames that make a
 * change visible, and the deletions after commit. Drivers only fill directories and build
 * mounts.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/fs.h"
#include "base/log.h"
#include "filter.h"
#include "internal.h"

const char *snap_kind_name(snap_kind k)
{
	switch (k) {
	case SNAP_KIND_VIEW:
		return "View";
	case SNAP_KIND_ACTIVE:
		return "Active";
	case SNAP_KIND_COMMITTED:
		return "Committed";
	default:
		return "Unknown";
	}
}

snap_kind snap_kind_parse(const char *s)
{
	if (strcasecmp(s, "view") == 0)
		return SNAP_KIND_VIEW;
	if (strcasecmp(s, "active") == 0)
		return SNAP_KIND_ACTIVE;
	if (strcasecmp(s, "committed") == 0)
		return SNAP_KIND_COMMITTED;
	return SNAP_KIND_UNKNOWN;
}

snap_info *snap_info_free(snap_info *i)
{
	if (!i)
		return NULL;
	for (size_t j = 0; j < i->n_labels; j++) {
		free((char *)i->labels[j].key);
		free((char *)i->labels[j].value);
	}
	free(i->labels);
	free(i->name);
	free(i->parent);
	free(i);
	return NULL;
}

const char *snap_info_label(const snap_info *i, const char *key)
{
	for (size_t j = 0; j < i->n_labels; j++)
		if (strcmp(i->labels[j].key, key) == 0)
			return i->labels[j].value;
	return NULL;
}

const char *snap_id_name(int64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%" PRId64, id);
	return buf;
}

int snap_fs_path(const snapshotter *s, int64_t id, const char *sub, char **ret)
{
	return asprintf(ret, "%s/snapshots/%" PRId64 "/%s", s->root, id, sub) < 0 ? -ENOMEM : 0;
}

const char *snap_driver_name(const snapshotter *s)
{
	return s->ops->name;
}

/* ---- staging directories ---- */

int snap_stage_new(snapshotter *s, struct snap_stage *st, cairn_error **reterr)
{
	static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	for (int attempt = 0; attempt < 100; attempt++) {
		uint8_t rnd[8];
		if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
			return err_errno(reterr, -errno, "staging directory: getrandom");
		char *p = st->name + sprintf(st->name, "new-");
		for (size_t i = 0; i < sizeof(rnd); i++)
			*p++ = chars[rnd[i] % (sizeof(chars) - 1)];
		*p = '\0';
		if (mkdirat(s->snapfd, st->name, 0700) < 0) {
			if (errno == EEXIST)
				continue;
			return err_errno(reterr, -errno, "create 'snapshots/%s'", st->name);
		}
		/* A reconcile elsewhere may lock and delete it between mkdir and our flock: it
		 * holds the lock until the directory is gone, so a missing or unlinked one means
		 * retry. */
		st->fd = openat(s->snapfd, st->name,
		                O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (st->fd < 0 && errno == ENOENT)
			continue;
		if (st->fd < 0)
			return err_errno(reterr, -errno, "open 'snapshots/%s'", st->name);
		struct stat sb;
		if (flock(st->fd, LOCK_EX) < 0 || fstat(st->fd, &sb) < 0) {
			int r = -errno;
			st->fd = safe_close(st->fd);
			return err_errno(reterr, r, "lock 'snapshots/%s'", st->name);
		}
		if (sb.st_nlink > 0)
			return 0;
		st->fd = safe_close(st->fd);
	}
	return err_set(reterr, -EEXIST, "create a staging directory in '%s/snapshots': gave up",
	               s->root);
}

void snap_stage_discard(snapshotter *s, struct snap_stage *st)
{
	if (st->name[0]) {
		_cleanup_(cairn_error_freep) cairn_error *e = NULL;
		if (fs_rm_rf(s->snapfd, st->name, &e) < 0)
			log_debug("discard 'snapshots/%s': %s", st->name, cairn_error_message(e));
		st->name[0] = '\0';
	}
	st->fd = safe_close(st->fd);
}

/* ---- argument checks ---- */

static int check_key(const char *op, const char *what, const char *key, cairn_error **reterr)
{
	if (!key || !*key)
		return err_set(reterr, -EINVAL, "%s: %s is empty", op, what);
	if (strnlen(key, SNAP_KEY_MAX + 1) > SNAP_KEY_MAX)
		return err_set(reterr, -EINVAL, "%s: %s '%.64s...' is longer than %d bytes", op,
		               what, key, SNAP_KEY_MAX);
	return 0;
}

static int check_labels(const char *key, const struct snap_label *labels, size_t n,
                        cairn_error **reterr)
{
	for (size_t i = 0; i < n; i++) {
		if (!labels[i].key)
			return err_set(reterr, -EINVAL, "snapshot '%s': label without a key", key);
		int r = meta_label_check(labels[i].key, labels[i].value, reterr);
		if (r < 0)
			return err_prefix(reterr, "snapshot '%s'", key);
	}
	return 0;
}

/* Later entries win; an empty value drops the key (containerd's WithLabels + storage rules). */
static int write_labels(meta_tx *tx, int64_t id, const struct snap_label *labels, size_t n,
                        cairn_error **reterr)
{
	for (size_t i = 0; i < n; i++) {
		int r = meta_snapshot_label_set(tx, id, labels[i].key, labels[i].value, reterr);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- reading rows ---- */

static int get_row(meta_tx *tx, snapshotter *s, const char *key, struct meta_snapshot *row,
                   const char *op, cairn_error **reterr)
{
	int r = meta_snapshot_get(tx, s->ops->name, key, row, reterr);
	if (r < 0)
		return err_prefix(reterr, "%s", op);
	if (r == 0)
		return err_set(reterr, -ENOENT, "%s: snapshot '%s' not found", op, key);
	return 0;
}

/* Checks @key and reads its row in a read transaction of its own, for @op; a failed begin is
 * prefixed "<what> '<key>'". */
static int read_key_row(snapshotter *s, const char *op, const char *what, const char *key,
                        struct meta_snapshot *row, cairn_error **reterr)
{
	int r = check_key(op, "key", key, reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	r = meta_tx_begin(s->db, &tx, false, reterr);
	if (r < 0)
		return err_prefix(reterr, "%s '%s'", what, key);
	return get_row(&tx, s, key, row, op, reterr);
}

struct label_vec {
	struct snap_label *v;
	size_t n;
};

static int add_label(const char *key, const char *value, void *userdata)
{
	struct label_vec *lv = userdata;
	struct snap_label *n = realloc(lv->v, (lv->n + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	lv->v = n;
	lv->v[lv->n] = (struct snap_label){strdup(key), strdup(value)};
	lv->n++;
	return lv->v[lv->n - 1].key && lv->v[lv->n - 1].value ? 0 : -ENOMEM;
}

static int make_info(meta_tx *tx, snapshotter *s, const struct meta_snapshot *row, snap_info **ret,
                     cairn_error **reterr)
{
	_cleanup_(snap_info_freep) snap_info *i = calloc(1, sizeof(*i));
	if (!i)
		return err_set(reterr, -ENOMEM, "stat '%s': out of memory", row->name);
	i->kind = (snap_kind)row->kind;
	i->created_ns = row->created_at;
	i->updated_ns = row->updated_at;
	i->name = strdup(row->name);
	i->parent = strdup(row->parent_name ? row->parent_name : "");
	struct label_vec lv = {0};
	int r = meta_snapshot_labels(tx, row->id, add_label, &lv, reterr);
	i->labels = lv.v;
	i->n_labels = lv.n;
	if (r == -ENOMEM || !i->name || !i->parent)
		return err_set(reterr, -ENOMEM, "stat '%s': out of memory", row->name);
	if (r < 0)
		return r;
	if (s->ops->stat) {
		struct snap_ref ref = {.id = row->id, .kind = i->kind};
		r = s->ops->stat(s, &ref, i, reterr);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(i);
	return 0;
}

/* ---- open and close ---- */

static int root_path(int rootfd, char **ret, cairn_error **reterr)
{
	char proc[64], buf[PATH_MAX + 1];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", rootfd);
	ssize_t n = readlink(proc, buf, sizeof(buf) - 1);
	if (n < 0)
		return err_errno(reterr, -errno, "resolve the store root: readlink '%s'", proc);
	buf[n] = '\0';
	if (buf[0] != '/' || strstr(buf, " (deleted)"))
		return err_set(reterr, -ENOENT, "the store root '%s' is not reachable by path",
		               buf);
	*ret = strdup(buf);
	return *ret ? 0 : err_set(reterr, -ENOMEM, "open snapshotter: out of memory");
}

static const struct snap_ops *find_driver(const char *name)
{
	if (strcmp(name, "overlay") == 0)
		return &snap_overlay_ops;
	if (strcmp(name, "native") == 0)
		return &snap_native_ops;
	return NULL;
}

static int init_driver(snapshotter *s, const struct snap_ops *ops, cairn_error **reterr)
{
	if (ops->version != SNAP_OPS_VERSION)
		return err_set(reterr, -EINVAL, "snapshotter '%s': ops version %u, expected %u",
		               ops->name, ops->version, SNAP_OPS_VERSION);
	s->ops = ops;
	return ops->init ? ops->init(s, s->db, &s->state, reterr) : 0;
}

/* NULL driver: overlay where it works, native otherwise. */
static int choose_driver(snapshotter *s, const char *driver, cairn_error **reterr)
{
	if (driver) {
		const struct snap_ops *ops = find_driver(driver);
		if (!ops)
			return err_set(reterr, -EINVAL,
			               "unknown snapshotter '%s' (expected overlay or native)",
			               driver);
		return init_driver(s, ops, reterr);
	}
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	int r = init_driver(s, &snap_overlay_ops, &e);
	if (r != -EOPNOTSUPP)
		return r < 0 ? err_set(reterr, r, "%s", cairn_error_message(e)) : r;
	log_debug("store '%s': using native snapshots: %s", s->root, cairn_error_message(e));
	return init_driver(s, &snap_native_ops, reterr);
}

int snap_open(int store_rootfd, meta_db *db, const char *driver, snapshotter **ret,
              cairn_error **reterr)
{
	_cleanup_(snap_closep) snapshotter *s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(reterr, -ENOMEM, "open snapshotter: out of memory");
	s->db = db;
	s->rootfd = store_rootfd;
	s->snapfd = -EBADF;
	int r = root_path(store_rootfd, &s->root, reterr);
	if (r < 0)
		return r;
	r = fs_mkdir_p(store_rootfd, "snapshots", 0700, reterr);
	if (r < 0)
		return err_prefix(reterr, "store '%s'", s->root);
	s->snapfd = fs_openat(store_rootfd, "snapshots", O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
	                      reterr);
	if (s->snapfd < 0)
		return err_prefix(reterr, "store '%s'", s->root);
	r = choose_driver(s, driver, reterr);
	if (r < 0)
		return r;
	r = snap_reconcile(s, reterr);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(s);
	return 0;
}

snapshotter *snap_close(snapshotter *s)
{
	if (!s)
		return NULL;
	if (s->ops && s->ops->free)
		s->ops->free(s->state);
	for (size_t i = 0; i < s->n_mount_options; i++)
		free(s->mount_options[i]);
	free(s->mount_options);
	safe_close(s->snapfd);
	free(s->root);
	free(s);
	return NULL;
}

int snap_set_mount_options(snapshotter *s, const char *const *options, size_t n,
                           cairn_error **reterr)
{
	char **v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return err_set(reterr, -ENOMEM, "set mount options: out of memory");
	for (size_t i = 0; i < n; i++)
		if (!(v[i] = strdup(options[i]))) {
			while (i--)
				free(v[i]);
			free(v);
			return err_set(reterr, -ENOMEM, "set mount options: out of memory");
		}
	for (size_t i = 0; i < s->n_mount_options; i++)
		free(s->mount_options[i]);
	free(s->mount_options);
	s->mount_options = v;
	s->n_mount_options = n;
	return 0;
}

/* ---- prepare and view ---- */

/* What prepare learns about the parent: the chain to hand to the driver. */
struct parent_chain {
	int64_t *ids; /* ids[0] = the parent itself, then its ancestors */
	size_t n;
};

static void parent_chain_done(struct parent_chain *c)
{
	free(c->ids);
}

/* containerd's checks in order: parent missing, parent not committed, key taken. */
static int check_create(meta_tx *tx, snapshotter *s, const char *op, const char *key,
                        const char *parent, struct parent_chain *chain, cairn_error **reterr)
{
	struct meta_snapshot row = {0};
	*chain = (struct parent_chain){0};
	if (parent) {
		int r = meta_snapshot_get(tx, s->ops->name, parent, &row, reterr);
		if (r < 0)
			return err_prefix(reterr, "%s '%s'", op, key);
		if (r == 0)
			return err_set(reterr, -ENOENT, "%s '%s': parent snapshot '%s' not found",
			               op, key, parent);
		int kind = row.kind;
		int64_t pid = row.id;
		meta_snapshot_clear(&row);
		if (kind != META_SNAPSHOT_COMMITTED)
			return err_set(reterr, -EINVAL,
			               "%s '%s': parent snapshot '%s' is not committed", op, key,
			               parent);
		int64_t *up = NULL;
		size_t n = 0;
		r = meta_snapshot_chain(tx, pid, &up, &n, reterr);
		if (r < 0)
			return err_prefix(reterr, "%s '%s'", op, key);
		chain->ids = malloc((n + 1) * sizeof(int64_t));
		if (!chain->ids) {
			free(up);
			return err_set(reterr, -ENOMEM, "%s '%s': out of memory", op, key);
		}
		chain->ids[0] = pid;
		if (n)
			memcpy(chain->ids + 1, up, n * sizeof(int64_t));
		chain->n = n + 1;
		free(up);
	}
	int r = meta_snapshot_get(tx, s->ops->name, key, &row, reterr);
	meta_snapshot_clear(&row);
	if (r < 0)
		return err_prefix(reterr, "%s '%s'", op, key);
	if (r > 0)
		return err_set(reterr, -EEXIST, "%s: snapshot '%s' already exists", op, key);
	return 0;
}

/* Moves the staged directory to snapshots/<id>. Inside the write transaction that allocated
 * @id, so a directory already there is an orphan of a transaction that never committed. */
static int stage_publish(snapshotter *s, struct snap_stage *st, int64_t id, cairn_error **reterr)
{
	char name[24];
	snap_id_name(id, name, sizeof(name));
	if (renameat(s->snapfd, st->name, s->snapfd, name) < 0) {
		if (errno != EEXIST && errno != ENOTEMPTY)
			return err_errno(reterr, -errno, "rename 'snapshots/%s' to 'snapshots/%s'",
			                 st->name, name);
		int r = fs_rm_rf(s->snapfd, name, reterr);
		if (r < 0)
			return r;
		if (renameat(s->snapfd, st->name, s->snapfd, name) < 0)
			return err_errno(reterr, -errno, "rename 'snapshots/%s' to 'snapshots/%s'",
			                 st->name, name);
	}
	st->name[0] = '\0'; /* published: discard must not delete it */
	/* Durable before the row is: a power cut must not leave a row whose rename was lost. */
	if (fsync(s->snapfd) < 0) {
		int r = err_errno(reterr, -errno, "fsync '%s/snapshots'", s->root);
		fs_rm_rf(s->snapfd, name, NULL); /* still under the write lock: ours to delete */
		return r;
	}
	return 0;
}

/* The write transaction of a create: re-check, insert, label, publish, commit. */
static int create_commit(snapshotter *s, const char *op, snap_kind kind, const char *key,
                         const char *parent, const struct parent_chain *staged,
                         const struct snap_label *labels, size_t n_labels, struct snap_stage *st,
                         int64_t *ret_id, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(s->db, &tx, true, reterr);
	if (r < 0)
		return err_prefix(reterr, "%s '%s'", op, key);
	struct parent_chain now = {0};
	r = check_create(&tx, s, op, key, parent, &now, reterr);
	bool same = now.n == staged->n && (!now.n || now.ids[0] == staged->ids[0]);
	free(now.ids);
	if (r < 0)
		return r;
	if (!same) /* the parent was removed and made again while we staged a copy of it */
		return err_set(reterr, -EAGAIN, "%s '%s': parent snapshot '%s' changed meanwhile",
		               op, key, parent);
	int64_t id = 0;
	r = meta_snapshot_insert(&tx, s->ops->name, key, (int)kind, now.n ? staged->ids[0] : 0,
	                         meta_now_ns(), &id, reterr);
	if (r >= 0)
		r = write_labels(&tx, id, labels, n_labels, reterr);
	if (r >= 0)
		r = stage_publish(s, st, id, reterr);
	if (r < 0)
		return err_prefix(reterr, "%s '%s'", op, key);
	fault_point("snapshot.prepare.after-rename");
	r = meta_tx_commit(&tx, reterr);
	if (r < 0) {
		/* Left as an orphan for the next reconcile or prepare: once the write lock is
		 * gone, the id may belong to someone else's snapshot at any moment. */
		return err_prefix(reterr, "%s '%s'", op, key);
	}
	*ret_id = id;
	return 0;
}

static int create_mounts(snapshotter *s, int64_t id, snap_kind kind,
                         const struct parent_chain *chain, struct snap_mount **ret_mounts,
                         size_t *ret_n, cairn_error **reterr)
{
	if (!ret_mounts)
		return 0;
	struct snap_ref ref = {
		.id = id, .kind = kind, .parents = chain->ids, .n_parents = chain->n};
	size_t n = 0;
	int r = s->ops->mounts(s, &ref, ret_mounts, &n, reterr);
	if (r >= 0 && ret_n)
		*ret_n = n;
	return r;
}

static int create(snapshotter *s, snap_kind kind, const char *key, const char *parent,
                  const struct snap_label *labels, size_t n_labels, struct snap_mount **ret_mounts,
                  size_t *ret_n, cairn_error **reterr)
{
	const char *op = kind == SNAP_KIND_VIEW ? "view" : "prepare";
	if (parent && !*parent)
		parent = NULL;
	int r = check_key(op, "key", key, reterr);
	if (r >= 0 && parent)
		r = check_key(op, "parent", parent, reterr);
	if (r >= 0)
		r = check_labels(key, labels, n_labels, reterr);
	if (r < 0)
		return r;

	/* Fail fast, and learn the chain to stage from, before the slow part. */
	_cleanup_(parent_chain_done) struct parent_chain chain = {0};
	{
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		r = meta_tx_begin(s->db, &tx, false, reterr);
		if (r < 0)
			return err_prefix(reterr, "%s '%s'", op, key);
		r = check_create(&tx, s, op, key, parent, &chain, reterr);
		if (r < 0)
			return r;
	}
	struct snap_stage st = {.fd = -EBADF};
	r = snap_stage_new(s, &st, reterr);
	if (r < 0)
		return err_prefix(reterr, "%s '%s'", op, key);
	struct snap_ref ref = {.kind = kind, .parents = chain.ids, .n_parents = chain.n};
	if (kind == SNAP_KIND_VIEW && s->ops->view)
		r = s->ops->view(s, st.fd, &ref, reterr);
	else
		r = s->ops->prepare(s, st.fd, &ref, reterr);
	if (r < 0) {
		snap_stage_discard(s, &st);
		return err_prefix(reterr, "%s '%s'", op, key);
	}
	fault_point("snapshot.prepare.staged");
	int64_t id = 0;
	r = create_commit(s, op, kind, key, parent, &chain, labels, n_labels, &st, &id, reterr);
	snap_stage_discard(s, &st);
	if (r < 0)
		return r;
	fault_point("snapshot.prepare.after-commit");
	return create_mounts(s, id, kind, &chain, ret_mounts, ret_n, reterr);
}

int snap_prepare(snapshotter *s, const char *key, const char *parent,
                 const struct snap_label *labels, size_t n_labels, struct snap_mount **ret_mounts,
                 size_t *ret_n, cairn_error **reterr)
{
	return create(s, SNAP_KIND_ACTIVE, key, parent, labels, n_labels, ret_mounts, ret_n,
	              reterr);
}

int snap_view(snapshotter *s, const char *key, const char *parent, const struct snap_label *labels,
              size_t n_labels, struct snap_mount **ret_mounts, size_t *ret_n, cairn_error **reterr)
{
	return create(s, SNAP_KIND_VIEW, key, parent, labels, n_labels, ret_mounts, ret_n, reterr);
}

/* ---- commit ---- */

static int commit_checks(meta_tx *tx, snapshotter *s, const char *name, const char *key,
                         struct meta_snapshot *row, cairn_error **reterr)
{
	int r = meta_snapshot_get(tx, s->ops->name, name, row, reterr);
	meta_snapshot_clear(row);
	if (r < 0)
		return err_prefix(reterr, "commit '%s' as '%s'", key, name);
	if (r > 0)
		return err_set(reterr, -EEXIST, "commit '%s': snapshot '%s' already exists", key,
		               name);
	r = meta_snapshot_get(tx, s->ops->name, key, row, reterr);
	if (r < 0)
		return err_prefix(reterr, "commit '%s' as '%s'", key, name);
	if (r == 0)
		return err_set(reterr, -ENOENT, "commit '%s': snapshot '%s' not found", key, key);
	if (row->kind != META_SNAPSHOT_ACTIVE)
		return err_set(reterr, CAIRN_EPRECONDITION,
		               "commit '%s': snapshot '%s' is %s, not active", key, key,
		               row->kind == META_SNAPSHOT_VIEW ? "a view" : "committed");
	return 0;
}

int snap_commit(snapshotter *s, const char *name, const char *key, const struct snap_label *labels,
                size_t n_labels, cairn_error **reterr)
{
	int r = check_key("commit", "name", name, reterr);
	if (r >= 0)
		r = check_key("commit", "key", key, reterr);
	if (r >= 0)
		r = check_labels(name, labels, n_labels, reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	r = meta_tx_begin(s->db, &tx, true, reterr);
	if (r < 0)
		return err_prefix(reterr, "commit '%s'", key);
	struct meta_snapshot row = {0};
	r = commit_checks(&tx, s, name, key, &row, reterr);
	int64_t id = row.id;
	meta_snapshot_clear(&row);
	if (r < 0)
		return r;
	if (s->ops->commit) {
		struct snap_ref ref = {.id = id, .kind = SNAP_KIND_ACTIVE};
		r = s->ops->commit(s, &ref, reterr);
		if (r < 0)
			return err_prefix(reterr, "commit '%s'", key);
	}
	/* Usage is left unknown: walking the layer here would make commit O(files). */
	r = meta_snapshot_commit(&tx, id, name, meta_now_ns(), META_SNAPSHOT_SIZE_UNKNOWN, 0,
	                         reterr);
	if (r >= 0)
		r = write_labels(&tx, id, labels, n_labels, reterr);
	if (r < 0)
		return err_prefix(reterr, "commit '%s'", key);
	fault_point("snapshot.commit.before-commit");
	r = meta_tx_commit(&tx, reterr);
	if (r < 0)
		return err_prefix(reterr, "commit '%s'", key);
	fault_point("snapshot.commit.after-commit");
	return 0;
}

/* ---- remove ---- */

/* Renames snapshots/<id> to rm-<id> (a stale rm-<id> is replaced; a missing <id> is fine). */
static int hide_dir(snapshotter *s, int64_t id, char *rm_name, size_t len, cairn_error **reterr)
{
	char name[24];
	snap_id_name(id, name, sizeof(name));
	snprintf(rm_name, len, "rm-%s", name);
	for (int attempt = 0;; attempt++) {
		if (renameat(s->snapfd, name, s->snapfd, rm_name) == 0 || errno == ENOENT)
			return 0;
		if ((errno != EEXIST && errno != ENOTEMPTY) || attempt > 0)
			return err_errno(reterr, -errno, "rename 'snapshots/%s' to 'snapshots/%s'",
			                 name, rm_name);
		int r = fs_rm_rf(s->snapfd, rm_name, reterr);
		if (r < 0)
			return r;
	}
}

static void delete_dir(snapshotter *s, const char *name)
{
	_cleanup_(cairn_error_freep) cairn_error *e = NULL;
	int r = s->ops->remove ? s->ops->remove(s, name, &e) : fs_rm_rf(s->snapfd, name, &e);
	if (r < 0) /* the snapshot is gone; the next reconcile deletes what is left */
		log_debug("delete 'snapshots/%s': %s", name, cairn_error_message(e));
}

int snap_remove_if(snapshotter *s, const char *key, snap_remove_guard_fn guard, void *userdata,
                   cairn_error **reterr)
{
	int r = check_key("remove", "key", key, reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	r = meta_tx_begin(s->db, &tx, true, reterr);
	if (r < 0)
		return err_prefix(reterr, "remove snapshot '%s'", key);
	struct meta_snapshot row = {0};
	r = get_row(&tx, s, key, &row, "remove", reterr);
	int64_t id = row.id;
	meta_snapshot_clear(&row);
	if (r < 0)
		return r;
	/* The caller's check runs in this write transaction: what it saw holds until the row and
	 * the directory are gone. */
	if (guard && (r = guard(&tx, key, userdata, reterr)) <= 0)
		return r < 0 ? err_prefix(reterr, "remove snapshot '%s'", key) : 1;
	r = meta_snapshot_has_children(&tx, id, reterr);
	if (r > 0)
		return err_set(reterr, CAIRN_EPRECONDITION,
		               "remove snapshot '%s': cannot remove snapshot with child", key);
	if (r >= 0)
		r = meta_snapshot_delete(&tx, id, reterr);
	char rm_name[32];
	if (r >= 0)
		r = hide_dir(s, id, rm_name, sizeof(rm_name), reterr);
	if (r < 0)
		return err_prefix(reterr, "remove snapshot '%s'", key);
	fault_point("snapshot.remove.after-rename");
	r = meta_tx_commit(&tx, reterr);
	if (r < 0) {
		char name[24];
		/* The row is back; so must the directory be (reconcile would do it too). */
		if (renameat(s->snapfd, rm_name, s->snapfd, snap_id_name(id, name, sizeof(name))) <
		    0)
			log_debug("restore 'snapshots/%s': %m", rm_name);
		return err_prefix(reterr, "remove snapshot '%s'", key);
	}
	fault_point("snapshot.remove.after-commit");
	delete_dir(s, rm_name);
	return 0;
}

int snap_remove(snapshotter *s, const char *key, cairn_error **reterr)
{
	return snap_remove_if(s, key, NULL, NULL, reterr);
}

/* ---- mounts, stat, update, usage ---- */

int snap_mounts(snapshotter *s, const char *key, struct snap_mount **ret_mounts, size_t *ret_n,
                cairn_error **reterr)
{
	int r = check_key("mounts", "key", key, reterr);
	if (r < 0)
		return r;
	_cleanup_free_ int64_t *parents = NULL;
	size_t n_parents = 0;
	struct meta_snapshot row = {0};
	{
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		r = meta_tx_begin(s->db, &tx, false, reterr);
		if (r < 0)
			return err_prefix(reterr, "mounts of '%s'", key);
		r = get_row(&tx, s, key, &row, "mounts", reterr);
		if (r < 0)
			return r;
		if (row.kind == META_SNAPSHOT_COMMITTED) {
			meta_snapshot_clear(&row);
			return err_set(reterr, CAIRN_EPRECONDITION,
			               "mounts: snapshot '%s' is committed; only active and view "
			               "snapshots can be mounted",
			               key);
		}
		r = meta_snapshot_chain(&tx, row.id, &parents, &n_parents, reterr);
	}
	if (r >= 0 && !ret_mounts) {
		meta_snapshot_clear(&row);
		return 0;
	}
	struct snap_ref ref = {row.id, (snap_kind)row.kind, parents, n_parents};
	meta_snapshot_clear(&row);
	if (r < 0)
		return err_prefix(reterr, "mounts of '%s'", key);
	size_t n = 0;
	r = s->ops->mounts(s, &ref, ret_mounts, &n, reterr);
	if (r < 0)
		return err_prefix(reterr, "mounts of '%s'", key);
	if (ret_n)
		*ret_n = n;
	return 0;
}

int snap_stat(snapshotter *s, const char *key, snap_info **ret, cairn_error **reterr)
{
	int r = check_key("stat", "key", key, reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	r = meta_tx_begin(s->db, &tx, false, reterr);
	if (r < 0)
		return err_prefix(reterr, "stat '%s'", key);
	struct meta_snapshot row = {0};
	r = get_row(&tx, s, key, &row, "stat", reterr);
	if (r < 0 || !ret) {
		meta_snapshot_clear(&row);
		return r;
	}
	r = make_info(&tx, s, &row, ret, reterr);
	meta_snapshot_clear(&row);
	return r;
}

/* The labels named by @fieldpaths, per containerd's Update rules. */
static int update_labels(meta_tx *tx, int64_t id, const snap_info *info,
                         const char *const *fieldpaths, size_t n, cairn_error **reterr)
{
	bool all = n == 0;
	for (size_t i = 0; i < n; i++) {
		const char *f = fieldpaths[i];
		if (strcmp(f, "labels") == 0)
			all = true;
		else if (strncmp(f, "labels.", 7) != 0 || !f[7])
			return err_set(reterr, -EINVAL,
			               "update '%s': cannot update field '%s' (only labels)",
			               info->name, f);
	}
	if (all) {
		int r = meta_snapshot_labels_clear(tx, id, reterr);
		for (size_t i = 0; r >= 0 && i < info->n_labels; i++)
			r = meta_snapshot_label_set(tx, id, info->labels[i].key,
			                            info->labels[i].value, reterr);
		return r;
	}
	for (size_t i = 0; i < n; i++) {
		const char *k = fieldpaths[i] + 7;
		int r = meta_snapshot_label_set(tx, id, k, snap_info_label(info, k), reterr);
		if (r < 0)
			return r;
	}
	return 0;
}

int snap_update(snapshotter *s, const snap_info *info, const char *const *fieldpaths,
                size_t n_fieldpaths, snap_info **ret, cairn_error **reterr)
{
	int r = check_key("update", "name", info ? info->name : NULL, reterr);
	if (r >= 0)
		r = check_labels(info->name, info->labels, info->n_labels, reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	r = meta_tx_begin(s->db, &tx, true, reterr);
	if (r < 0)
		return err_prefix(reterr, "update '%s'", info->name);
	struct meta_snapshot row = {0};
	r = get_row(&tx, s, info->name, &row, "update", reterr);
	int64_t id = row.id;
	meta_snapshot_clear(&row);
	if (r < 0)
		return r;
	r = update_labels(&tx, id, info, fieldpaths, n_fieldpaths, reterr);
	if (r >= 0)
		r = meta_snapshot_touch(&tx, id, meta_now_ns(), reterr);
	if (r < 0)
		return err_prefix(reterr, "update '%s'", info->name);
	_cleanup_(snap_info_freep) snap_info *out = NULL;
	if (ret) {
		r = meta_snapshot_get_id(&tx, id, &row, reterr);
		if (r > 0)
			r = make_info(&tx, s, &row, &out, reterr);
		meta_snapshot_clear(&row);
		if (r < 0)
			return err_prefix(reterr, "update '%s'", info->name);
	}
	r = meta_tx_commit(&tx, reterr);
	if (r < 0)
		return err_prefix(reterr, "update '%s'", info->name);
	if (ret)
		*ret = TAKE_PTR(out);
	return 0;
}

static int usage_now(snapshotter *s, const struct snap_ref *ref, struct snap_usage *ret,
                     cairn_error **reterr)
{
	if (s->ops->usage)
		return s->ops->usage(s, ref, ret, reterr);
	char path[48];
	snprintf(path, sizeof(path), "%" PRId64 "/fs", ref->id);
	_cleanup_close_ int fd =
		fs_openat(s->snapfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, reterr);
	if (fd < 0)
		return fd;
	uint64_t bytes = 0, inodes = 0;
	int r = fs_usage_fd(fd, path, &bytes, &inodes, reterr);
	if (r < 0)
		return r;
	*ret = (struct snap_usage){(int64_t)bytes, (int64_t)inodes};
	return 0;
}

/* Records the usage computed after a commit, unless the snapshot went away meanwhile. */
static int record_usage(snapshotter *s, int64_t id, const struct snap_usage *u,
                        cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(s->db, &tx, true, reterr);
	if (r < 0)
		return r;
	r = meta_snapshot_set_usage(&tx, id, u->size, u->inodes, reterr);
	if (r < 0)
		return r;
	return meta_tx_commit(&tx, reterr);
}

int snap_usage(snapshotter *s, const char *key, struct snap_usage *ret, cairn_error **reterr)
{
	struct meta_snapshot row = {0};
	int r = read_key_row(s, "usage", "usage of", key, &row, reterr);
	if (r < 0)
		return r;
	struct snap_ref ref = {.id = row.id, .kind = (snap_kind)row.kind};
	struct snap_usage u = {row.size, row.inodes};
	bool known = row.size != META_SNAPSHOT_SIZE_UNKNOWN;
	meta_snapshot_clear(&row);
	if (ref.kind == SNAP_KIND_VIEW) {
		*ret = (struct snap_usage){0, 0};
		return 0;
	}
	if (ref.kind == SNAP_KIND_COMMITTED && known) {
		*ret = u;
		return 0;
	}
	/* No lock while walking: an active layer may be large and busy. */
	r = usage_now(s, &ref, &u, reterr);
	if (r < 0)
		return err_prefix(reterr, "usage of '%s'", key);
	if (ref.kind == SNAP_KIND_COMMITTED) {
		_cleanup_(cairn_error_freep) cairn_error *e = NULL;
		if (record_usage(s, ref.id, &u, &e) < 0) /* computed again next time */
			log_debug("record usage of '%s': %s", key, cairn_error_message(e));
	}
	*ret = u;
	return 0;
}

/* ---- walk ---- */

struct walk_ctx {
	snapshotter *s;
	meta_tx *tx;
	const snap_filter *filter;
	snap_info **infos;
	size_t n, cap;
	cairn_error **reterr;
};

static const char *info_field(const char *const *path, size_t n, void *userdata)
{
	const snap_info *i = userdata;
	static __thread char joined[SNAP_KEY_MAX + 1];
	if (n == 1 && strcmp(path[0], "kind") == 0) {
		snap_kind k = i->kind;
		return k == SNAP_KIND_VIEW        ? "view"
		       : k == SNAP_KIND_ACTIVE    ? "active"
		       : k == SNAP_KIND_COMMITTED ? "committed"
		                                  : "unknown";
	}
	if (n == 1 && strcmp(path[0], "name") == 0)
		return i->name;
	if (n == 1 && strcmp(path[0], "parent") == 0)
		return i->parent;
	if (n < 2 || strcmp(path[0], "labels") != 0)
		return NULL;
	/* An unquoted dotted key arrives in pieces: labels.a.b means key "a.b". */
	size_t len = 0;
	for (size_t j = 1; j < n; j++) {
		int w = snprintf(joined + len, sizeof(joined) - len, "%s%s", j > 1 ? "." : "",
		                 path[j]);
		if (w < 0 || (size_t)w >= sizeof(joined) - len)
			return NULL;
		len += (size_t)w;
	}
	return snap_info_label(i, joined);
}

static int walk_collect(const struct meta_snapshot *row, void *userdata)
{
	struct walk_ctx *c = userdata;
	snap_info *info = NULL;
	int r = make_info(c->tx, c->s, row, &info, c->reterr);
	if (r < 0)
		return r;
	if (!snap_filter_match(c->filter, info_field, info)) {
		snap_info_free(info);
		return 0;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 32;
		snap_info **n = realloc(c->infos, cap * sizeof(*n));
		if (!n) {
			snap_info_free(info);
			return err_set(c->reterr, -ENOMEM, "walk snapshots: out of memory");
		}
		c->infos = n;
		c->cap = cap;
	}
	c->infos[c->n++] = info;
	return 0;
}

int snap_walk(snapshotter *s, const char *const *filters, size_t n_filters, snap_walk_fn fn,
              void *userdata, cairn_error **reterr)
{
	_cleanup_(snap_filter_freep) snap_filter *f = NULL;
	int r = snap_filter_parse(filters, n_filters, &f, reterr);
	if (r < 0)
		return err_prefix(reterr, "walk snapshots");
	struct walk_ctx c = {.s = s, .filter = f, .reterr = reterr};
	{
		/* Collect first: @fn runs with no transaction open, so it may call back in. */
		_cleanup_(meta_tx_end) meta_tx tx = {0};
		r = meta_tx_begin(s->db, &tx, false, reterr);
		c.tx = &tx;
		if (r >= 0)
			r = meta_snapshot_list(&tx, s->ops->name, walk_collect, &c, reterr);
	}
	for (size_t i = 0; r >= 0 && i < c.n; i++)
		r = fn(c.infos[i], userdata);
	for (size_t i = 0; i < c.n; i++)
		snap_info_free(c.infos[i]);
	free(c.infos);
	return r < 0 ? r : 0;
}

int snap_open_fs(snapshotter *s, const char *key, char **ret_path, cairn_error **reterr)
{
	struct meta_snapshot row = {0};
	int r = read_key_row(s, "open", "open", key, &row, reterr);
	if (r < 0)
		return r;
	int64_t id = row.id;
	meta_snapshot_clear(&row);
	char path[48];
	snprintf(path, sizeof(path), "%" PRId64 "/fs", id);
	_cleanup_close_ int fd =
		fs_openat(s->snapfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, reterr);
	if (fd < 0)
		return err_prefix(reterr, "snapshot '%s'", key);
	if (ret_path && snap_fs_path(s, id, "fs", ret_path) < 0)
		return err_set(reterr, -ENOMEM, "open '%s': out of memory", key);
	return TAKE_FD(fd);
}
