/* SPDX-License-Identifier: MIT */
/* The manager: open and close, the table of records in use, get, get_mutable, new, resolve, tags.
 */
#include <ctype.h>
#include <string.h>
#include <sys/random.h>

#include "base/lockstat.h"
#include "base/log.h"
#include "content/content.h"
#include "internal.h"
#include "lease/lease.h"
#include "meta/labels.h"
#include "meta/leases.h"

/* ---- ids ---- */

void cache_new_id(char buf[CAIRN_RECORD_ID_LEN + 1])
{
	/* BuildKit's identity.NewID(): 17 random bytes with the top bit set, in base 36, the first
	 * digit dropped and 25 kept: a fixed-length id with 128 random bits. */
	uint8_t num[17];
	size_t got = 0;
	while (got < sizeof(num)) {
		ssize_t n = getrandom(num + got, sizeof(num) - got, 0);
		if (n > 0)
			got += (size_t)n;
	}
	num[0] |= 0x80;
	static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	char rev[40];
	size_t nd = 0;
	bool nonzero;
	do {
		unsigned rem = 0;
		nonzero = false;
		for (size_t i = 0; i < sizeof(num); i++) {
			unsigned cur = rem * 256 + num[i];
			num[i] = (uint8_t)(cur / 36);
			rem = cur % 36;
			nonzero |= num[i] != 0;
		}
		rev[nd++] = digits[rem];
	} while (nonzero && nd < sizeof(rev));
	/* rev holds the digits least significant first; the text is rev reversed (27 digits). */
	for (size_t i = 0; i < CAIRN_RECORD_ID_LEN; i++)
		buf[i] = rev[nd - 2 - i];
	buf[CAIRN_RECORD_ID_LEN] = '\0';
}

bool cache_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > CACHE_ID_MAX)
		return false;
	for (const char *p = id; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
			return false;
	return true;
}

/* Whether @s looks like an id cairn makes (so a tag of that shape would be ambiguous). */
static bool id_shaped(const char *s)
{
	if (strlen(s) != CAIRN_RECORD_ID_LEN)
		return false;
	for (const char *p = s; *p; p++)
		if (!isdigit((unsigned char)*p) && !islower((unsigned char)*p))
			return false;
	return true;
}

/* ---- processes ---- */

bool cache_proc_alive(int64_t pid, int64_t start)
{
	return pid > 0 && lease_proc_start(pid) == start;
}

/* ---- locks, table, refs ---- */

void cache_lock(cairn_cache *c)
{
	pthread_mutex_lock(&c->lock);
	c->lock_since = lockstat_start();
}

void cache_unlock(cairn_cache *c)
{
	lockstat_end(LOCKSTAT_MANAGER, c->lock_since);
	pthread_mutex_unlock(&c->lock);
}

int cache_check_open(cairn_cache *c, cairn_error **reterr)
{
	if (c->closed)
		return err_set(reterr, -EBADF, "cache of store '%s' is closed", c->store->root);
	return 0;
}

int cache_enter(cairn_cache *c, bool invalid, const char *op, cairn_error **reterr)
{
	if (invalid)
		return err_set(reterr, -EINVAL, "%s: invalid arguments", op);
	return cache_check_open(c, reterr);
}

int cache_ref_check(const cairn_ref *ref, const char *what, cairn_error **reterr)
{
	if (!ref)
		return err_set(reterr, -EINVAL, "%s: no ref given", what);
	int r = cache_check_open(ref->cache, reterr);
	if (r < 0)
		return err_prefix(reterr, "%s '%s'", what, ref->id);
	if (ref->consumed)
		return err_set(reterr, -EINVAL, "%s '%s': the mutable ref was committed", what,
		               ref->id);
	if (ref->released || !ref->e)
		return err_set(reterr, -EINVAL, "%s '%s': the ref was released", what, ref->id);
	return 0;
}

static unsigned hash_id(const char *id)
{
	unsigned h = 2166136261u;
	for (const char *p = id; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % CACHE_TABLE;
}

/* ---- the process lease ---- */

bool cache_needs_lease(cairn_cache *c, const char *id)
{
	struct entry *e = entry_find(c, id);
	return !e || !e->leased;
}

static int flush_stale(cairn_cache *c, meta_tx *tx, cairn_error **reterr)
{
	while (c->n_stale) {
		char *id = c->stale[c->n_stale - 1];
		int r = meta_lease_resource_remove(tx, c->lease_id, LEASE_RECORD, id, reterr);
		if (r < 0)
			return r;
		free(id);
		c->n_stale--;
	}
	return 0;
}

int cache_lease_hold(cairn_cache *c, meta_tx *tx, struct entry *e, cairn_error **reterr)
{
	int r = flush_stale(c, tx, reterr);
	if (r < 0 || e->leased)
		return r;
	cairn_error *err = NULL;
	r = meta_lease_resource_add(tx, c->lease_id, LEASE_RECORD, e->id, &err);
	cairn_error_free(err);
	if (r == -ENOENT) {
		/* The first hold of this manager (or the lease went with a failed transaction). */
		struct meta_lease l = {.id = c->lease_id,
		                       .created_at = meta_now_ns(),
		                       .pid = c->pid,
		                       .pid_start = c->pid_start};
		if ((r = meta_lease_insert(tx, &l, reterr)) < 0)
			return r;
		r = meta_lease_resource_add(tx, c->lease_id, LEASE_RECORD, e->id, reterr);
	}
	if (r < 0)
		return err_prefix(reterr, "hold record '%s'", e->id);
	e->leased = true;
	c->lease_used = true;
	return 0;
}

int cache_lease_drop(cairn_cache *c, meta_tx *tx, struct entry *e, cairn_error **reterr)
{
	if (!e->leased)
		return 0;
	int r = meta_lease_resource_remove(tx, c->lease_id, LEASE_RECORD, e->id, reterr);
	if (r < 0)
		return r;
	e->leased = false;
	return 0;
}

/* Deletes the process lease (close): what this manager held is free for others. */
static void drop_lease(cairn_cache *c)
{
	if (!c->lease_used)
		return;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	_cleanup_(cairn_error_freep) cairn_error *err = NULL;
	int r = meta_tx_begin(c->db, &tx, true, &err);
	if (r >= 0 && (r = meta_lease_delete(&tx, c->lease_id, &err)) == -ENOENT)
		r = 0;
	if (r >= 0)
		r = meta_tx_commit(&tx, NULL);
	if (r < 0)
		log_debug("keep process lease '%s' for gc (%d): %s", c->lease_id, r,
		          err ? cairn_error_message(err) : "commit failed");
}

struct entry *entry_find(cairn_cache *c, const char *id)
{
	for (struct entry *e = c->table[hash_id(id)]; e; e = e->next)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

struct entry *entry_acquire(cairn_cache *c, const char *id, bool is_mutable, const char *partner)
{
	struct entry *e = entry_find(c, id);
	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->is_mutable = is_mutable;
	/* The two halves of a pair share one lock, however they came to be in memory. */
	struct entry *p = partner ? entry_find(c, partner) : NULL;
	if (p) {
		e->lock = p->lock;
	} else {
		e->lock = calloc(1, sizeof(*e->lock));
		if (!e->lock) {
			free(e);
			return NULL;
		}
		pthread_mutex_init(&e->lock->mu, NULL);
	}
	e->lock->refs++;
	unsigned h = hash_id(id);
	e->next = c->table[h];
	c->table[h] = e;
	return e;
}

static void entry_free(struct entry *e)
{
	if (--e->lock->refs == 0) {
		pthread_mutex_destroy(&e->lock->mu);
		free(e->lock);
	}
	snap_mounts_free(e->view_mounts, e->n_view_mounts);
	free(e->view);
	free(e);
}

void entry_put(cairn_cache *c, struct entry *e)
{
	if (!e || e->handles || e->pins || c->closed)
		return;
	for (struct entry **pp = &c->table[hash_id(e->id)]; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	if (e->leased) {
		/* Its lease resource goes with the next write (or close); until then other
		 * processes still see it held, which errs on the safe side. */
		char **a = realloc(c->stale, (c->n_stale + 1) * sizeof(*a));
		if (a) {
			c->stale = a;
			if ((a[c->n_stale] = strdup(e->id)))
				c->n_stale++;
		}
	}
	entry_free(e);
}

cairn_ref *cache_ref_new(cairn_cache *c, struct entry *e, bool is_mutable, bool trigger)
{
	cairn_ref *ref = calloc(1, sizeof(*ref));
	if (!ref)
		return NULL;
	*ref = (cairn_ref){.cache = c, .e = e, .is_mutable = is_mutable, .trigger = trigger};
	snprintf(ref->id, sizeof(ref->id), "%s", e->id);
	e->handles++;
	if (trigger)
		e->triggers++;
	c->refs++;
	return ref;
}

void cache_ref_drop_locked(cairn_cache *c, cairn_ref *ref)
{
	struct entry *e = ref->e;
	e->handles--;
	if (ref->trigger)
		e->triggers--;
	c->refs--;
	free(ref);
	entry_put(c, e);
}

int cache_load(cairn_cache *c, meta_tx *tx, const char *id, struct meta_record *ret,
               cairn_error **reterr)
{
	if (!cache_id_valid(id))
		return err_set(reterr, -ENOENT, "record '%s' not found", id);
	int r = meta_record_get(tx, id, ret, reterr);
	if (r < 0)
		return r;
	if (r == 0 || ret->deleted || strcmp(ret->snapshotter, c->driver) != 0) {
		meta_record_clear(ret);
		return err_set(reterr, -ENOENT, "record '%s' not found", id);
	}
	return 0;
}

int cache_load_once(cairn_cache *c, const char *id, struct meta_record *ret, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	if (r < 0)
		return r;
	return cache_load(c, &tx, id, ret, reterr);
}

static int first_mount_fn(const struct meta_mount *m, void *userdata)
{
	char **ret = userdata;
	*ret = strdup(m->target);
	return *ret ? 1 : -ENOMEM;
}

int cache_first_mount(meta_tx *tx, const char *id, char **ret_target, cairn_error **reterr)
{
	*ret_target = NULL;
	int r = meta_mount_list(tx, id, first_mount_fn, ret_target, reterr);
	if (r == -ENOMEM)
		return err_set(reterr, r, "mounts of record '%s': out of memory", id);
	if (r < 0)
		return r;
	return *ret_target != NULL;
}

/* ---- open and close ---- */

static void cache_destroy(cairn_cache *c)
{
	for (size_t i = 0; i < CACHE_TABLE; i++)
		while (c->table[i]) {
			struct entry *e = c->table[i];
			c->table[i] = e->next;
			entry_free(e);
		}
	for (size_t i = 0; i < c->n_stale; i++)
		free(c->stale[i]);
	free(c->stale);
	flight_group_free(c->flight);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->prune_lock);
	free(c);
}

void cache_unref(cairn_cache *c)
{
	cache_lock(c);
	bool last = --c->refs == 0;
	cache_unlock(c);
	if (last)
		cache_destroy(c);
}

int cairn_cache_open(cairn_store *store, cairn_cache **ret, cairn_error **reterr)
{
	if (!store || !ret)
		return err_set(reterr, -EINVAL, "open cache: invalid arguments");
	if (!store->snap)
		return err_set(reterr, -EINVAL, "open cache of store '%s': no snapshotter",
		               store->root);
	cairn_cache *c = calloc(1, sizeof(*c));
	if (!c || !(c->flight = flight_group_new())) {
		free(c);
		return err_set(reterr, -ENOMEM, "open cache of store '%s': out of memory",
		               store->root);
	}
	*c = (cairn_cache){.store = store,
	                   .snap = store->snap,
	                   .db = store->db,
	                   .driver = snap_driver_name(store->snap),
	                   .flight = c->flight,
	                   .refs = 1,
	                   .pid = getpid()};
	c->pid_start = lease_proc_start(c->pid);
	uint32_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)meta_now_ns();
	snprintf(c->lease_id, sizeof(c->lease_id), "cairn-process-%lld-%08x", (long long)c->pid,
	         rnd);
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->prune_lock, NULL);
	cache_boot_id(c->boot);
	int r = cache_repair(c, reterr);
	if (r >= 0)
		r = cache_unsynced_settle(c, reterr);
	if (r < 0) {
		cache_destroy(c);
		return err_prefix(reterr, "open cache of store '%s'", store->root);
	}
	log_debug("opened the cache of store '%s' (%s)", store->root, c->driver);
	*ret = c;
	return 0;
}

cairn_cache *cairn_cache_close(cairn_cache *c)
{
	if (!c)
		return NULL;
	/* The views of refs still alive are this process's temporary leases: drop them now, so
	 * that a reopen in this same process does not inherit them. */
	struct cache_work views[CACHE_TABLE] = {0};
	size_t n = 0;
	cache_lock(c);
	for (size_t i = 0; i < CACHE_TABLE; i++)
		for (struct entry *e = c->table[i]; e; e = e->next) {
			if (!e->view)
				continue;
			if (n == ELEMENTSOF(views)) {
				cache_remove_view(c, e->view, NULL);
				continue;
			}
			views[n].view = TAKE_PTR(e->view);
			views[n].view_mounts = TAKE_PTR(e->view_mounts);
			views[n].n_view_mounts = e->n_view_mounts;
			e->n_view_mounts = 0;
			n++;
		}
	c->closed = true;
	cache_unlock(c);
	for (size_t i = 0; i < n; i++)
		cache_work_run(c, &views[i], NULL);
	drop_lease(c);
	cache_fetcher_free(c);
	cache_unref(c);
	return NULL;
}

/* ---- get, get_mutable, new ---- */

struct holder {
	const char *own;
	int64_t now;
	bool held;
};

static int holder_fn(const struct meta_lease *l, const char *res, void *userdata)
{
	struct holder *h = userdata;
	h->held |= strcmp(l->id, h->own) != 0 && lease_live(l, h->now);
	return 0;
}

int cache_held_elsewhere(cairn_cache *c, meta_tx *tx, const char *id, cairn_error **reterr)
{
	struct holder h = {c->lease_id, meta_now_ns(), false};
	int r = meta_lease_holds(tx, LEASE_RECORD, id, holder_fn, &h, reterr);
	return r < 0 ? r : h.held;
}

/* CAIRN_ELOCKED when mutable @id is held (a ref, an internal hold or a persistent mount). */
static int check_unheld(cairn_cache *c, meta_tx *tx, const char *id, const char *what,
                        cairn_error **reterr)
{
	struct entry *e = entry_find(c, id);
	if (e && e->handles)
		return err_set(reterr, CAIRN_ELOCKED, "%s is locked: %u ref%s on it %s open", what,
		               e->handles, e->handles == 1 ? "" : "s",
		               e->handles == 1 ? "is" : "are");
	if (e && e->pins)
		return err_set(reterr, CAIRN_ELOCKED,
		               "%s is locked: it is being used by this process", what);
	_cleanup_free_ char *target = NULL;
	int r = cache_first_mount(tx, id, &target, reterr);
	if (r < 0)
		return r;
	if (r > 0)
		return err_set(reterr, CAIRN_ELOCKED, "%s is locked: it is mounted at '%s'", what,
		               target);
	if ((r = cache_held_elsewhere(c, tx, id, reterr)) != 0)
		return r < 0 ? r
		             : err_set(reterr, CAIRN_ELOCKED,
		                       "%s is locked: another process holds it", what);
	return 0;
}

static int get_mutable_locked(cairn_cache *c, const char *id, cairn_ref **ret, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	int r = meta_tx_begin(c->db, &tx, true, reterr);
	if (r < 0 || (r = cache_load(c, &tx, id, &row, reterr)) < 0)
		return r;
	if (row.kind != META_RECORD_MUTABLE)
		return err_set(reterr, -EINVAL, "record '%s' is immutable: it has no mutable ref",
		               id);
	char what[CACHE_ID_MAX + 64];
	snprintf(what, sizeof(what), "record '%s'", id);
	if ((r = check_unheld(c, &tx, id, what, reterr)) < 0)
		return r;
	if (row.equal_immutable) {
		/* Taking the data back: the unheld lazy immutable that shared it goes away. */
		snprintf(what, sizeof(what), "record '%s': its committed record '%s'", id,
		         row.equal_immutable);
		if ((r = check_unheld(c, &tx, row.equal_immutable, what, reterr)) < 0 ||
		    (r = meta_record_delete(&tx, row.equal_immutable, reterr)) < 0)
			return r;
	}
	/* The mutable is writable again: its recorded size will not hold. */
	if ((r = meta_record_bump_gen(&tx, id, reterr)) < 0)
		return r;
	struct entry *e = entry_acquire(c, id, true, NULL);
	if (!e)
		return err_set(reterr, -ENOMEM, "get mutable record '%s': out of memory", id);
	cairn_ref *ref = cache_ref_new(c, e, true, true);
	if (!ref) {
		entry_put(c, e);
		return err_set(reterr, -ENOMEM, "get record '%s': out of memory", id);
	}
	if ((r = cache_lease_hold(c, &tx, e, reterr)) < 0 ||
	    (r = meta_tx_commit(&tx, reterr)) < 0) {
		cache_ref_drop_locked(c, ref);
		return r;
	}
	*ret = ref;
	return 0;
}

static int get_locked(cairn_cache *c, const char *id, unsigned flags, cairn_ref **ret,
                      cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	/* A first hold here writes the process lease in the transaction that finds the record
	 * live (a mutable's partner is held only when the mutable is not: a write too). */
	int r = meta_tx_begin(c->db, &tx, cache_needs_lease(c, id), reterr);
	if (r < 0 || (r = cache_load(c, &tx, id, &row, reterr)) < 0)
		return r;
	if (row.kind == META_RECORD_MUTABLE) {
		if (flags & CAIRN_CACHE_GET_ANY_KIND) {
			meta_tx_end(&tx);
			return get_mutable_locked(c, id, ret, reterr);
		}
		char what[CACHE_ID_MAX + 16];
		snprintf(what, sizeof(what), "record '%s'", id);
		if ((r = check_unheld(c, &tx, id, what, reterr)) < 0)
			return r;
		if (!row.equal_immutable)
			return err_set(
				reterr, -EINVAL,
				"record '%s' is mutable and not committed: commit it to get an "
				"immutable ref",
				id);
		_cleanup_free_ char *partner = strdup(row.equal_immutable);
		if (!partner)
			return err_set(reterr, -ENOMEM, "get record '%s': out of memory", id);
		meta_record_clear(&row);
		if ((r = cache_load(c, &tx, partner, &row, reterr)) < 0)
			return r;
	}
	struct entry *e = entry_acquire(c, row.id, false, row.equal_mutable);
	cairn_ref *ref =
		e ? cache_ref_new(c, e, false, !(flags & CAIRN_CACHE_GET_NO_UPDATE_LAST_USED))
		  : NULL;
	if (!ref) {
		entry_put(c, e);
		return err_set(reterr, -ENOMEM, "get record '%s': out of memory", id);
	}
	if (!e->leased && ((r = cache_lease_hold(c, &tx, e, reterr)) < 0 ||
	                   (r = meta_tx_commit(&tx, reterr)) < 0)) {
		cache_ref_drop_locked(c, ref);
		return r;
	}
	*ret = ref;
	return 0;
}

int cairn_cache_get(cairn_cache *c, const char *id, unsigned flags, cairn_ref **ret,
                    cairn_error **reterr)
{
	if (!c || !id || !ret)
		return err_set(reterr, -EINVAL, "get record: invalid arguments");
	if (flags & ~CAIRN_CACHE_GET_FLAGS_ALL)
		return err_set(reterr, -EINVAL, "get record '%s': unknown flags 0x%x", id,
		               flags & ~CAIRN_CACHE_GET_FLAGS_ALL);
	int r = cache_check_open(c, reterr);
	if (r < 0)
		return r;
	cache_lock(c);
	r = get_locked(c, id, flags, ret, reterr);
	cache_unlock(c);
	return r;
}

int cairn_cache_get_mutable(cairn_cache *c, const char *id, cairn_ref **ret, cairn_error **reterr)
{
	int r = cache_enter(c, !c || !id || !ret, "get mutable record", reterr);
	if (r < 0)
		return r;
	cache_lock(c);
	r = get_mutable_locked(c, id, ret, reterr);
	cache_unlock(c);
	return r;
}

/* Pins immutable record @id (a parent about to get a child) and returns its entry; NULL with
 * the error in *@ret_r. Manager lock held. */
static struct entry *pin_parent_locked(cairn_cache *c, const char *id, int *ret_r,
                                       cairn_error **reterr)
{
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, cache_needs_lease(c, id), reterr);
	if (r < 0 || (r = cache_load(c, &tx, id, &row, reterr)) < 0) {
		*ret_r = r;
		return NULL;
	}
	if (row.kind == META_RECORD_MUTABLE) {
		*ret_r = err_set(reterr, -EINVAL, "parent record '%s' is mutable: commit it first",
		                 id);
		return NULL;
	}
	struct entry *e = entry_acquire(c, id, false, row.equal_mutable);
	if (!e) {
		*ret_r = err_set(reterr, -ENOMEM, "parent record '%s': out of memory", id);
		return NULL;
	}
	/* Held across processes too while the child is made: a prune elsewhere waits. */
	if (!e->leased && ((r = cache_lease_hold(c, &tx, e, reterr)) < 0 ||
	                   (r = meta_tx_commit(&tx, reterr)) < 0)) {
		entry_put(c, e);
		*ret_r = r;
		return NULL;
	}
	e->pins++;
	return e;
}

/* Pins parent @id for a new child and finalizes it; *@ret_snapshot gets its snapshot. */
static int hold_parent(cairn_cache *c, const char *id, struct entry **ret_e, char **ret_snapshot,
                       cairn_error **reterr)
{
	int r = 0;
	cache_lock(c);
	struct entry *e = pin_parent_locked(c, id, &r, reterr);
	cache_unlock(c);
	if (!e)
		return r;
	*ret_e = e;
	pthread_mutex_lock(&e->lock->mu);
	r = cache_finalize_locked(c, id, reterr);
	pthread_mutex_unlock(&e->lock->mu);
	if (r < 0)
		return r;
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	if ((r = cache_load_once(c, id, &row, reterr)) < 0)
		return r;
	if (!row.extracted)
		return err_set(reterr, -EINVAL, "parent record '%s' is not extracted", id);
	*ret_snapshot = TAKE_PTR(row.snapshot);
	return 0;
}

static void unpin(cairn_cache *c, struct entry *e)
{
	if (!e)
		return;
	cache_lock(c);
	e->pins--;
	entry_put(c, e);
	cache_unlock(c);
}

/* Inserts the row of new mutable @rec and makes the one ref on it. Manager lock held. */
static int insert_mutable(cairn_cache *c, const struct meta_record *rec, cairn_ref **ret,
                          cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, true, reterr);
	if (r < 0 || (r = meta_record_insert(&tx, rec, reterr)) < 0)
		return r;
	struct entry *e = entry_acquire(c, rec->id, true, NULL);
	cairn_ref *ref = e ? cache_ref_new(c, e, true, true) : NULL;
	if (!ref) {
		entry_put(c, e);
		return err_set(reterr, -ENOMEM, "new record '%s': out of memory", rec->id);
	}
	if ((r = cache_lease_hold(c, &tx, e, reterr)) < 0 ||
	    (r = meta_tx_commit(&tx, reterr)) < 0) {
		cache_ref_drop_locked(c, ref);
		return r;
	}
	*ret = ref;
	return 0;
}

static int check_new_options(const cairn_new_options *o, cairn_error **reterr)
{
	if (o->version != CAIRN_NEW_OPTIONS_VERSION)
		return err_set(reterr, -EINVAL, "new record: unknown options version %u",
		               o->version);
	if (o->policy != CAIRN_CACHE_POLICY_DEFAULT && o->policy != CAIRN_CACHE_POLICY_RETAIN)
		return err_set(reterr, -EINVAL, "new record: unknown cache policy %d",
		               (int)o->policy);
	return 0;
}

int cairn_cache_new(cairn_cache *c, const cairn_ref *parent, const cairn_new_options *opts,
                    cairn_ref **ret, cairn_error **reterr)
{
	cairn_new_options defaults = {.version = CAIRN_NEW_OPTIONS_VERSION};
	if (!c || !ret)
		return err_set(reterr, -EINVAL, "new record: invalid arguments");
	if (!opts)
		opts = &defaults;
	int r = check_new_options(opts, reterr);
	if (r < 0 || (r = cache_check_open(c, reterr)) < 0)
		return r;
	/* A parent that is only a blob yet is extracted first (the caller's ref holds it). */
	if (parent && (r = cache_extract_id(c, parent->id, NULL, NULL, reterr)) < 0)
		return err_prefix(reterr, "new record");
	struct entry *pe = NULL;
	_cleanup_free_ char *psnap = NULL;
	if (parent && (r = hold_parent(c, parent->id, &pe, &psnap, reterr)) < 0) {
		unpin(c, pe);
		return err_prefix(reterr, "new record");
	}
	char id[CAIRN_RECORD_ID_LEN + 1];
	cache_new_id(id);
	/* The snapshot first, then the row: a crash in between leaves an orphan snapshot for gc,
	 * never a record without its data. */
	r = snap_prepare(c->snap, id, psnap, NULL, 0, NULL, NULL, reterr);
	if (r < 0) {
		unpin(c, pe);
		return err_prefix(reterr, "new record '%s'", id);
	}
	struct meta_record rec = {
		.id = id,
		.snapshotter = (char *)c->driver,
		.kind = META_RECORD_MUTABLE,
		.parent = parent ? (char *)parent->id : NULL,
		.snapshot = id,
		.description = (char *)opts->description,
		.record_type = (char *)opts->record_type,
		.retain = opts->policy == CAIRN_CACHE_POLICY_RETAIN,
		.extracted = true,
		.created_at = meta_now_ns(),
	};
	cache_lock(c);
	r = insert_mutable(c, &rec, ret, reterr);
	cache_unlock(c);
	unpin(c, pe);
	if (r < 0) {
		snap_remove(c->snap, id, NULL);
		return err_prefix(reterr, "new record");
	}
	return 0;
}

/* ---- names: resolve and tags ---- */

static bool prefix_shaped(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > CACHE_ID_MAX)
		return false;
	for (const char *p = s; *p; p++)
		if (!isdigit((unsigned char)*p) && !islower((unsigned char)*p))
			return false;
	return true;
}

static int resolve_prefix(cairn_cache *c, meta_tx *tx, const char *name, char **ret_id,
                          cairn_error **reterr)
{
	char **ids = NULL;
	size_t n = 0;
	int r = meta_record_prefix(tx, c->driver, name, 2, &ids, &n, reterr);
	if (r < 0)
		return r;
	if (n == 1)
		*ret_id = ids[0];
	else if (n == 0)
		r = err_set(reterr, -ENOENT, "record '%s' not found", name);
	else
		r = err_set(reterr, -ENOTUNIQ, "'%s' is ambiguous: it starts '%s' and '%s'", name,
		            ids[0], ids[1]);
	for (size_t i = r < 0 ? 0 : 1; i < n; i++)
		free(ids[i]);
	free(ids);
	return r;
}

int cairn_cache_resolve_image(cairn_cache *c, const char *name, char **ret_id,
                              char **ret_manifest_digest, cairn_error **reterr)
{
	if (ret_manifest_digest)
		*ret_manifest_digest = NULL;
	int r = cache_enter(c, !c || !name || !ret_id, "resolve record", reterr);
	if (r < 0)
		return r;
	if (!*name)
		return err_set(reterr, -ENOENT, "record '' not found");
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	if ((r = meta_tx_begin(c->db, &tx, false, reterr)) < 0)
		return r;
	if (cache_id_valid(name) && cache_load(c, &tx, name, &row, NULL) == 0) {
		*ret_id = TAKE_PTR(row.id);
		return *ret_id ? 0 : -ENOMEM;
	}
	_cleanup_free_ char *target = NULL;
	_cleanup_free_ char *manifest = NULL;
	r = meta_tag_get(&tx, name, &target, &manifest, reterr);
	if (r < 0)
		return r;
	if (r > 0) {
		if (cache_load(c, &tx, target, &row, NULL) < 0)
			return err_set(reterr, -ENOENT, "tag '%s' names record '%s', which is gone",
			               name, target);
		*ret_id = TAKE_PTR(target);
		if (ret_manifest_digest)
			*ret_manifest_digest = TAKE_PTR(manifest);
		return 0;
	}
	if (!prefix_shaped(name))
		return err_set(reterr, -ENOENT, "record '%s' not found", name);
	return resolve_prefix(c, &tx, name, ret_id, reterr);
}

int cairn_cache_resolve(cairn_cache *c, const char *name, char **ret_id, cairn_error **reterr)
{
	return cairn_cache_resolve_image(c, name, ret_id, NULL, reterr);
}

static int check_tag_name(const char *name, cairn_error **reterr)
{
	size_t n = strlen(name);
	bool ok = n > 0 && n <= 255 && name[0] != '-' && name[0] != '.' && !id_shaped(name);
	for (const char *p = name; ok && *p; p++)
		ok = isalnum((unsigned char)*p) || strchr("._:/@+-", *p);
	if (!ok)
		return err_set(
			reterr, -EINVAL,
			"bad tag name '%.255s': use 1-255 of [A-Za-z0-9._:/@+-], not starting "
			"with '-' or '.', and not shaped like a record id",
			name);
	return 0;
}

int cairn_cache_tag_image(cairn_cache *c, const char *id, const char *name,
                          const char *manifest_digest, cairn_error **reterr)
{
	int r = cache_enter(c, !c || !id || !name, "tag record", reterr);
	if (r < 0 || (r = check_tag_name(name, reterr)) < 0)
		return r;
	if (manifest_digest) {
		r = content_exists(c->store->content, manifest_digest, reterr);
		if (r == 0)
			r = err_set(reterr, -ENOENT, "manifest blob %s not found", manifest_digest);
		if (r < 0)
			return err_prefix(reterr, "tag '%s'", name);
	}
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	_cleanup_(meta_record_clear) struct meta_record row = {0};
	if ((r = meta_tx_begin(c->db, &tx, true, reterr)) < 0 ||
	    (r = cache_load(c, &tx, id, &row, reterr)) < 0 ||
	    (r = meta_tag_set(&tx, name, id, manifest_digest, reterr)) < 0)
		return err_prefix(reterr, "tag '%s'", name);
	return meta_tx_commit(&tx, reterr);
}

int cairn_cache_tag(cairn_cache *c, const char *id, const char *name, cairn_error **reterr)
{
	return cairn_cache_tag_image(c, id, name, NULL, reterr);
}

int cairn_cache_untag(cairn_cache *c, const char *name, cairn_error **reterr)
{
	int r = cache_enter(c, !c || !name, "untag", reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if ((r = meta_tx_begin(c->db, &tx, true, reterr)) < 0 ||
	    (r = meta_tag_remove(&tx, name, reterr)) < 0)
		return r;
	return meta_tx_commit(&tx, reterr);
}
