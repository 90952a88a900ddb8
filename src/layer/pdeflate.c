/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/thread.h"
#include "pdeflate.h"

/* Deflate looks back at most 32 KiB: that much of the previous block primes the next one. */
#define DICT_SIZE (32 * 1024)

enum slot_state { SLOT_FREE, SLOT_QUEUED, SLOT_BUSY, SLOT_DONE };

/* One block on its way: filled by the caller, compressed by a worker, emitted by the caller. */
struct slot {
	enum slot_state state;
	bool last;
	uint8_t *in;
	size_t in_len;
	uint8_t *dict; /* a copy: the previous block's slot is reused while this one runs */
	size_t dict_len;
	uint8_t *out;
	size_t out_cap, out_len;
	uint32_t crc;
	int err; /* -EIO or -ENOMEM from the worker */
};

struct pdeflate {
	int level;
	unsigned threads;
	pdeflate_emit_fn emit;
	void *userdata;
	struct slot *slots;
	size_t n_slots;
	/* Sequence numbers; block n lives in slots[n % n_slots]. */
	uint64_t filling; /* the block the caller fills */
	uint64_t emitted; /* blocks before this one went to @emit */
	uint64_t taken;   /* blocks before this one were taken by a worker */
	uint32_t crc;
	int failed;
	z_stream z; /* with no threads */
	bool z_init;
	pthread_mutex_t mu;
	pthread_cond_t work; /* a block was queued, or stop */
	pthread_cond_t done; /* a block was compressed */
	bool stop;
	pthread_t *tids;
	unsigned n_tids;
};

static struct slot *slot_of(pdeflate *p, uint64_t n)
{
	return &p->slots[n % p->n_slots];
}

static int z_init(z_stream *z, int level)
{
	memset(z, 0, sizeof(*z));
	return deflateInit2(z, level, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK
	               ? 0
	               : -ENOMEM;
}

/* Deflates one block into s->out; runs on a worker (or the caller with no threads). */
static void compress_slot(z_stream *z, struct slot *s)
{
	s->crc = (uint32_t)crc32(0, Z_NULL, 0);
	if (s->in_len > 0)
		s->crc = (uint32_t)crc32(s->crc, s->in, (uInt)s->in_len);
	if (deflateReset(z) != Z_OK ||
	    (s->dict_len > 0 && deflateSetDictionary(z, s->dict, (uInt)s->dict_len) != Z_OK)) {
		s->err = -EIO;
		return;
	}
	size_t need = deflateBound(z, (uLong)s->in_len) + 64;
	if (s->out_cap < need) {
		uint8_t *o = realloc(s->out, need);
		if (!o) {
			s->err = -ENOMEM;
			return;
		}
		s->out = o;
		s->out_cap = need;
	}
	z->next_in = s->in;
	z->avail_in = (uInt)s->in_len;
	z->next_out = s->out;
	z->avail_out = (uInt)s->out_cap;
	int k = deflate(z, s->last ? Z_FINISH : Z_SYNC_FLUSH);
	/* deflateBound() leaves room for everything, the sync marker included. */
	bool complete =
		s->last ? k == Z_STREAM_END : k == Z_OK && z->avail_in == 0 && z->avail_out > 0;
	if (!complete) {
		s->err = -EIO;
		return;
	}
	s->out_len = s->out_cap - z->avail_out;
}

static void *worker(void *userdata)
{
	pdeflate *p = userdata;
	z_stream z;
	bool ok = z_init(&z, p->level) == 0;
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
		if (ok)
			compress_slot(&z, s);
		else
			s->err = -ENOMEM;
		pthread_mutex_lock(&p->mu);
		s->state = SLOT_DONE;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	if (ok)
		deflateEnd(&z);
	return NULL;
}

static int fail(pdeflate *p, int code, cairn_error **reterr)
{
	p->failed = code;
	return err_set(reterr, code, "deflate: %s",
	               code == -ENOMEM ? "out of memory" : "zlib failed to compress a block");
}

/* Emits the oldest block; with @wait, waits for it to be compressed, else only if it is. */
static int emit_one(pdeflate *p, bool wait, bool *ret_emitted, cairn_error **reterr)
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
	p->crc = (uint32_t)crc32_combine(p->crc, s->crc, (z_off_t)s->in_len);
	int r = p->emit(p->userdata, s->out, s->out_len, reterr);
	if (r < 0) {
		p->failed = r;
		return r;
	}
	s->in_len = s->out_len = s->dict_len = 0;
	s->last = false;
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
static int submit(pdeflate *p, bool last, cairn_error **reterr)
{
	struct slot *s = slot_of(p, p->filling);
	s->last = last;
	if (p->filling > 0) {
		/* The previous block is full (only the last block is short) and still in its slot:
		 * that slot is refilled only after this block is submitted. */
		const struct slot *prev = slot_of(p, p->filling - 1);
		s->dict_len = DICT_SIZE;
		memcpy(s->dict, prev->in + PDEFLATE_BLOCK - DICT_SIZE, DICT_SIZE);
	}
	if (p->threads == 0) {
		compress_slot(&p->z, s);
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

int pdeflate_write(pdeflate *p, const void *buf, size_t len, cairn_error **reterr)
{
	if (p->failed)
		return err_set(reterr, p->failed, "deflate: the stream failed earlier");
	const uint8_t *in = buf;
	while (len > 0) {
		struct slot *s = slot_of(p, p->filling);
		size_t n = PDEFLATE_BLOCK - s->in_len;
		if (n > len)
			n = len;
		memcpy(s->in + s->in_len, in, n);
		s->in_len += n;
		in += n;
		len -= n;
		if (s->in_len == PDEFLATE_BLOCK) {
			int r = submit(p, false, reterr);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int pdeflate_finish(pdeflate *p, uint32_t *ret_crc, cairn_error **reterr)
{
	if (p->failed)
		return err_set(reterr, p->failed, "deflate: the stream failed earlier");
	int r = submit(p, true, reterr);
	bool more = true;
	while (r >= 0 && p->emitted < p->filling)
		r = emit_one(p, true, &more, reterr);
	if (r < 0)
		return r;
	*ret_crc = p->crc;
	return 0;
}

pdeflate *pdeflate_free(pdeflate *p)
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
	if (p->z_init)
		deflateEnd(&p->z);
	for (size_t i = 0; p->slots && i < p->n_slots; i++) {
		free(p->slots[i].in);
		free(p->slots[i].dict);
		free(p->slots[i].out);
	}
	free(p->slots);
	free(p->tids);
	free(p);
	return NULL;
}

int pdeflate_new(int level, unsigned threads, pdeflate_emit_fn emit, void *userdata, pdeflate **ret)
{
	if (level < 0 || level > 9)
		return -EINVAL;
	_cleanup_(pdeflate_freep) pdeflate *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->level = level;
	p->emit = emit;
	p->userdata = userdata;
	p->crc = (uint32_t)crc32(0, Z_NULL, 0);
	/* Two blocks per worker keep them busy while the caller fills one more; with no workers,
	 * the previous block's slot must stay apart from the one being filled (its dictionary). */
	p->n_slots = threads > 0 ? 2 * (size_t)threads + 1 : 2;
	p->slots = calloc(p->n_slots, sizeof(*p->slots));
	if (!p->slots)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_slots; i++) {
		p->slots[i].in = malloc(PDEFLATE_BLOCK);
		p->slots[i].dict = malloc(DICT_SIZE);
		if (!p->slots[i].in || !p->slots[i].dict)
			return -ENOMEM;
	}
	if (threads == 0) {
		if (z_init(&p->z, level) < 0)
			return -ENOMEM;
		p->z_init = true;
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
