/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/thread.h"
#include "pgzip.h"

enum slot_state { SLOT_FREE, SLOT_QUEUED, SLOT_BUSY, SLOT_DONE };

/* One block on its way: filled by the caller, compressed by a worker, emitted by the caller. */
struct slot {
	enum slot_state state;
	uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t out_cap, out_len;
	int err; /* -EIO or -ENOMEM from the worker */
};

struct pgzip {
	int level;
	unsigned threads;
	pgzip_emit_fn emit;
	void *userdata;
	struct slot *slots;
	size_t n_slots;
	/* Sequence numbers; block n lives in slots[n % n_slots]. */
	uint64_t filling; /* the block the caller fills */
	uint64_t emitted; /* blocks before this one went to @emit */
	uint64_t taken;   /* blocks before this one were taken by a worker */
	int failed;
	struct libdeflate_compressor *comp; /* with no threads */
	pthread_mutex_t mu;
	pthread_cond_t work; /* a block was queued, or stop */
	pthread_cond_t done; /* a block was compressed */
	bool stop;
	pthread_t *tids;
	unsigned n_tids;
};

static struct slot *slot_of(pgzip *p, uint64_t n)
{
	return &p->slots[n % p->n_slots];
}

/* Compresses one block into s->out as a gzip member; runs on a worker (or the caller). */
static void compress_slot(struct libdeflate_compressor *comp, struct slot *s)
{
	size_t need = libdeflate_gzip_compress_bound(comp, s->in_len);
	if (s->out_cap < need) {
		uint8_t *o = realloc(s->out, need);
		if (!o) {
			s->err = -ENOMEM;
			return;
		}
		s->out = o;
		s->out_cap = need;
	}
	s->out_len = libdeflate_gzip_compress(comp, s->in, s->in_len, s->out, s->out_cap);
	if (s->out_len == 0)
		s->err = -EIO; /* the bound was not enough: cannot happen */
}

static void *worker(void *userdata)
{
	pgzip *p = userdata;
	struct libdeflate_compressor *comp = libdeflate_alloc_compressor(p->level);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop &&
		       (p->taken >= p->filling || slot_of(p, p->taken)->state != SLOT_QUEUED))
			pthread_cond_wait(&p->work, &p->mu);
		if (p->stop)
			break;
		struct slot *s = slot_of(p, p->taken++);
		s->state = SLOT_BUSY;
		pthread_mutex_unlock(&p->mu);
		if (comp)
			compress_slot(comp, s);
		else
			s->err = -ENOMEM;
		pthread_mutex_lock(&p->mu);
		s->state = SLOT_DONE;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	if (comp)
		libdeflate_free_compressor(comp);
	return NULL;
}

static int fail(pgzip *p, int code, cairn_error **reterr)
{
	p->failed = code;
	return err_set(reterr, code, "gzip: %s",
	               code == -ENOMEM ? "out of memory" : "a block could not be compressed");
}

/* Emits the oldest block; with @wait, waits for it to be compressed, else only if it is. */
static int emit_one(pgzip *p, bool wait, bool *ret_emitted, cairn_error **reterr)
{
	struct slot *s = slot_of(p, p->emitted);
	*ret_emitted = false;
	if (p->emitted >= p->filling)
		return 0;
	if (p->threads > 0) {
		pthread_mutex_lock(&p->mu);
		while (wait && s->state != SLOT_DONE)
			pthread_cond_wait(&p->done, &p->mu);
		bool ready = s->state == SLOT_DONE;
		pthread_mutex_unlock(&p->mu);
		if (!ready)
			return 0;
	}
	if (s->err)
		return fail(p, s->err, reterr);
	int r = p->emit(p->userdata, s->out, s->out_len, reterr);
	if (r < 0) {
		p->failed = r;
		return r;
	}
	s->in_len = s->out_len = 0;
	if (p->threads > 0) {
		pthread_mutex_lock(&p->mu);
		s->state = SLOT_FREE;
		pthread_mutex_unlock(&p->mu);
	}
	p->emitted++;
	*ret_emitted = true;
	return 0;
}

/* Hands the block being filled over and makes the next slot free to fill. */
static int submit(pgzip *p, cairn_error **reterr)
{
	struct slot *s = slot_of(p, p->filling);
	if (p->threads == 0) {
		compress_slot(p->comp, s);
		p->filling++;
	} else {
		pthread_mutex_lock(&p->mu);
		s->state = SLOT_QUEUED;
		p->filling++;
		pthread_cond_signal(&p->work);
		pthread_mutex_unlock(&p->mu);
	}
	/* Out goes what is ready; and the oldest block when its slot is the next to fill. */
	bool more = true;
	while (more) {
		bool need = p->emitted + p->n_slots <= p->filling;
		int r = emit_one(p, need, &more, reterr);
		if (r < 0)
			return r;
	}
	return 0;
}

int pgzip_write(pgzip *p, const void *buf, size_t len, cairn_error **reterr)
{
	if (p->failed)
		return err_set(reterr, p->failed, "gzip: the stream failed earlier");
	const uint8_t *in = buf;
	while (len > 0) {
		struct slot *s = slot_of(p, p->filling);
		size_t n = PGZIP_BLOCK - s->in_len;
		if (n > len)
			n = len;
		memcpy(s->in + s->in_len, in, n);
		s->in_len += n;
		in += n;
		len -= n;
		if (s->in_len == PGZIP_BLOCK) {
			int r = submit(p, reterr);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int pgzip_finish(pgzip *p, cairn_error **reterr)
{
	if (p->failed)
		return err_set(reterr, p->failed, "gzip: the stream failed earlier");
	/* The last block may be short; an empty one is written only for an empty input. */
	int r = 0;
	if (slot_of(p, p->filling)->in_len > 0 || p->filling == 0)
		r = submit(p, reterr);
	bool more = true;
	while (r >= 0 && p->emitted < p->filling)
		r = emit_one(p, true, &more, reterr);
	return r;
}

pgzip *pgzip_free(pgzip *p)
{
	if (!p)
		return NULL;
	if (p->n_tids > 0) {
		pthread_mutex_lock(&p->mu);
		p->stop = true;
		pthread_cond_broadcast(&p->work);
		pthread_mutex_unlock(&p->mu);
		for (unsigned i = 0; i < p->n_tids; i++)
			pthread_join(p->tids[i], NULL);
	}
	if (p->threads > 0) {
		pthread_cond_destroy(&p->work);
		pthread_cond_destroy(&p->done);
		pthread_mutex_destroy(&p->mu);
	}
	if (p->comp)
		libdeflate_free_compressor(p->comp);
	for (size_t i = 0; p->slots && i < p->n_slots; i++) {
		free(p->slots[i].in);
		free(p->slots[i].out);
	}
	free(p->slots);
	free(p->tids);
	free(p);
	return NULL;
}

int pgzip_new(int level, unsigned threads, pgzip_emit_fn emit, void *userdata, pgzip **ret)
{
	if (level < 0 || level > 9)
		return -EINVAL;
	_cleanup_(pgzip_freep) pgzip *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->level = level;
	p->emit = emit;
	p->userdata = userdata;
	/* Two blocks per worker keep them busy while the caller fills one more. */
	p->n_slots = threads > 0 ? 2 * (size_t)threads + 1 : 1;
	p->slots = calloc(p->n_slots, sizeof(*p->slots));
	if (!p->slots)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_slots; i++) {
		p->slots[i].in = malloc(PGZIP_BLOCK);
		if (!p->slots[i].in)
			return -ENOMEM;
	}
	if (threads == 0) {
		if (!(p->comp = libdeflate_alloc_compressor(level)))
			return -ENOMEM;
		*ret = TAKE_PTR(p);
		return 0;
	}
	p->threads = threads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	p->tids = calloc(threads, sizeof(*p->tids));
	if (!p->tids)
		return -ENOMEM;
	for (unsigned i = 0; i < threads; i++) {
		int k = thread_spawn(&p->tids[i], worker, p);
		if (k != 0)
			return -k;
		p->n_tids++;
	}
	*ret = TAKE_PTR(p);
	return 0;
}
