/* SPDX-License-Identifier: MIT */
/* Leases: the public calls of include/cairn/lease.h over src/meta/leases.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cairn/lease.h"
#include "lease.h"
#include "store/store.h"

#define LEASE_ID_MAX 256

int64_t lease_proc_start(int64_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields start after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	p++;
	for (int field = 3; field < 22; field++) {
		while (*p == ' ')
			p++;
		while (*p && *p != ' ')
			p++;
	}
	long long start;
	return sscanf(p, " %lld", &start) == 1 ? start : -1;
}

bool lease_live(const struct meta_lease *l, int64_t now)
{
	if (l->expires_at && l->expires_at <= now)
		return false;
	if (l->pid && lease_proc_start(l->pid) != l->pid_start)
		return false;
	return true;
}

static bool id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > LEASE_ID_MAX)
		return false;
	for (const char *p = id; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '/')
			return false;
	return true;
}

/* containerd's random ids: <ns of the current second>-<random>. */
static int random_id(char *buf, size_t len)
{
	uint8_t b[4];
	if (getrandom(b, sizeof(b), 0) != sizeof(b))
		return -errno;
	snprintf(buf, len, "%09lld-%02x%02x%02x%02x", (long long)(meta_now_ns() % 1000000000), b[0],
	         b[1], b[2], b[3]);
	return 0;
}

static int check_options(const cairn_lease_options *o, cairn_error **reterr)
{
	if (o->version != CAIRN_LEASE_OPTIONS_VERSION || (o->flags & ~CAIRN_LEASE_FLAGS_ALL))
		return err_set(reterr, -EINVAL, "create lease: unknown options");
	if (o->id && !id_valid(o->id))
		return err_set(reterr, -EINVAL, "create lease: invalid id '%.64s'", o->id);
	if (o->expire_ns < 0)
		return err_set(reterr, -EINVAL, "create lease: negative expiry");
	for (size_t i = 0; i < o->n_labels; i++) {
		int r = meta_label_check(o->label_keys[i], o->label_values[i], reterr);
		if (r < 0)
			return err_prefix(reterr, "create lease");
	}
	return 0;
}

static int insert(cairn_store *store, const cairn_lease_options *o, const char *id,
                  cairn_error **reterr)
{
	int64_t now = meta_now_ns();
	struct meta_lease l = {.id = (char *)id, .created_at = now};
	if (o->expire_ns)
		l.expires_at = now + o->expire_ns;
	if (o->flags & CAIRN_LEASE_PROCESS) {
		l.pid = getpid();
		l.pid_start = lease_proc_start(l.pid);
	}
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(store->db, &tx, true, reterr);
	if (r < 0 || (r = meta_lease_insert(&tx, &l, reterr)) < 0)
		return r;
	for (size_t i = 0; i < o->n_labels; i++)
		if ((r = meta_lease_label_set(&tx, id, o->label_keys[i], o->label_values[i],
		                              reterr)) < 0)
			return err_prefix(reterr, "lease '%s'", id);
	return meta_tx_commit(&tx, reterr);
}

int cairn_lease_create(cairn_store *store, const cairn_lease_options *opts, char **ret_id,
                       cairn_error **reterr)
{
	cairn_lease_options defaults = {.version = CAIRN_LEASE_OPTIONS_VERSION};
	if (!store)
		return err_set(reterr, -EINVAL, "create lease: no store given");
	if (!opts)
		opts = &defaults;
	int r = check_options(opts, reterr);
	if (r < 0)
		return r;
	char rid[64];
	if (!opts->id && (r = random_id(rid, sizeof(rid))) < 0)
		return err_errno(reterr, r, "create lease: getrandom");
	const char *id = opts->id ? opts->id : rid;
	_cleanup_free_ char *copy = ret_id ? strdup(id) : NULL;
	if (ret_id && !copy)
		return err_set(reterr, -ENOMEM, "create lease '%s': out of memory", id);
	if ((r = insert(store, opts, id, reterr)) < 0)
		return r;
	if (ret_id)
		*ret_id = TAKE_PTR(copy);
	return 0;
}

int cairn_lease_delete(cairn_store *store, const char *id, cairn_error **reterr)
{
	if (!store || !id)
		return err_set(reterr, -EINVAL, "delete lease: no %s given",
		               store ? "id" : "store");
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(store->db, &tx, true, reterr);
	if (r < 0 || (r = meta_lease_delete(&tx, id, reterr)) < 0)
		return r;
	return meta_tx_commit(&tx, reterr);
}

static int check_resource(const char *type, const char *res, cairn_error **reterr)
{
	if (!type || !res || !*res)
		return err_set(reterr, -EINVAL, "lease resource: no type or id given");
	if (strcmp(type, LEASE_BLOB) == 0)
		return digest_valid(res) ? 0
		                         : err_set(reterr, CAIRN_EDIGEST,
		                                   "lease resource: invalid digest '%.80s'", res);
	if (strcmp(type, LEASE_RECORD) == 0 || strcmp(type, LEASE_SNAPSHOT "overlay") == 0 ||
	    strcmp(type, LEASE_SNAPSHOT "native") == 0)
		return 0;
	return err_set(reterr, -EINVAL,
	               "lease resource: unknown type '%.64s' (blob, record, snapshots/overlay or "
	               "snapshots/native)",
	               type);
}

static int change_resource(cairn_store *store, const char *id, const char *type, const char *res,
                           bool add, cairn_error **reterr)
{
	if (!store || !id)
		return err_set(reterr, -EINVAL, "lease resource: no %s given",
		               store ? "id" : "store");
	int r = check_resource(type, res, reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	struct meta_lease l = {0};
	if ((r = meta_tx_begin(store->db, &tx, true, reterr)) < 0 ||
	    (r = meta_lease_get(&tx, id, &l, reterr)) < 0)
		return r;
	meta_lease_clear(&l);
	if (r == 0)
		return err_set(reterr, -ENOENT, "lease '%s' not found", id);
	r = add ? meta_lease_resource_add(&tx, id, type, res, reterr)
	        : meta_lease_resource_remove(&tx, id, type, res, reterr);
	if (r < 0)
		return err_prefix(reterr, "lease '%s'", id);
	return meta_tx_commit(&tx, reterr);
}

int cairn_lease_add_resource(cairn_store *store, const char *id, const char *type, const char *res,
                             cairn_error **reterr)
{
	return change_resource(store, id, type, res, true, reterr);
}

int cairn_lease_remove_resource(cairn_store *store, const char *id, const char *type,
                                const char *res, cairn_error **reterr)
{
	return change_resource(store, id, type, res, false, reterr);
}

/* ---- list ---- */

struct list_state {
	meta_tx *tx;
	int64_t now;
	cairn_lease_info *infos;
	size_t n, cap;
	cairn_error **reterr;
};

static int add_label(const char *key, const char *value, void *userdata)
{
	cairn_lease_info *i = userdata;
	char **k = realloc(i->label_keys, (i->n_labels + 1) * sizeof(*k));
	if (k)
		i->label_keys = k;
	char **v = realloc(i->label_values, (i->n_labels + 1) * sizeof(*v));
	if (v)
		i->label_values = v;
	if (!k || !v)
		return -ENOMEM;
	k[i->n_labels] = strdup(key);
	v[i->n_labels] = strdup(value);
	i->n_labels++;
	return k[i->n_labels - 1] && v[i->n_labels - 1] ? 0 : -ENOMEM;
}

static int add_resource(const char *type, const char *id, void *userdata)
{
	cairn_lease_info *i = userdata;
	cairn_lease_resource *a = realloc(i->resources, (i->n_resources + 1) * sizeof(*a));
	if (!a)
		return -ENOMEM;
	i->resources = a;
	a[i->n_resources] = (cairn_lease_resource){strdup(type), strdup(id)};
	i->n_resources++;
	return a[i->n_resources - 1].type && a[i->n_resources - 1].id ? 0 : -ENOMEM;
}

static int list_one(const struct meta_lease *l, void *userdata)
{
	struct list_state *st = userdata;
	if (st->n == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 16;
		cairn_lease_info *a = realloc(st->infos, cap * sizeof(*a));
		if (!a)
			return err_set(st->reterr, -ENOMEM, "list leases: out of memory");
		st->infos = a;
		st->cap = cap;
	}
	cairn_lease_info *i = &st->infos[st->n++];
	*i = (cairn_lease_info){
		.id = strdup(l->id),
		.created_ns = l->created_at,
		.expires_ns = l->expires_at,
		.pid = l->pid,
		.live = lease_live(l, st->now),
	};
	if (!i->id)
		return err_set(st->reterr, -ENOMEM, "list leases: out of memory");
	int r = meta_lease_labels(st->tx, l->id, add_label, i, st->reterr);
	if (r >= 0)
		r = meta_lease_resources(st->tx, l->id, add_resource, i, st->reterr);
	if (r == -ENOMEM)
		return err_set(st->reterr, r, "list leases: out of memory");
	return r;
}

int cairn_lease_list(cairn_store *store, cairn_lease_info **ret, size_t *ret_n,
                     cairn_error **reterr)
{
	if (!store || !ret || !ret_n)
		return err_set(reterr, -EINVAL, "list leases: no store or result given");
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	struct list_state st = {.tx = &tx, .now = meta_now_ns(), .reterr = reterr};
	int r = meta_tx_begin(store->db, &tx, false, reterr);
	if (r >= 0)
		r = meta_lease_list(&tx, list_one, &st, reterr);
	if (r < 0) {
		cairn_lease_infos_free(st.infos, st.n);
		return r;
	}
	*ret = st.infos;
	*ret_n = st.n;
	return 0;
}

cairn_lease_info *cairn_lease_infos_free(cairn_lease_info *infos, size_t n)
{
	for (size_t i = 0; infos && i < n; i++) {
		cairn_lease_info *x = &infos[i];
		for (size_t j = 0; j < x->n_labels; j++) {
			free(x->label_keys[j]);
			free(x->label_values[j]);
		}
		for (size_t j = 0; j < x->n_resources; j++) {
			free(x->resources[j].type);
			free(x->resources[j].id);
		}
		free(x->label_keys);
		free(x->label_values);
		free(x->resources);
		free(x->id);
	}
	free(infos);
	return NULL;
}
