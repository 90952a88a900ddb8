/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "config.h"
#include "base/fs.h"
#include "base/thread.h"
#include "compress.h"
#include "pgzip.h"
#if HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#define BUF_SIZE (128 * 1024)

/* Threaded reading: the decoder runs ahead by up to SLOTS buffers of SLOT_SIZE bytes. A slot is
 * handed over once less than SLOT_MIN_ROOM is left in it, so hand-overs stay rare. */
#define SLOTS         4
#define SLOT_SIZE     (1024 * 1024)
#define SLOT_MIN_ROOM (64 * 1024)
#define STEP_SIZE     (128 * 1024) /* decoded per step, within the L2 cache */
#define LEAN_MAX      2            /* waits it takes to move the hashing to the other side */

/* Go's gzip reader and ours agree: only the deflate method (08) is gzip. */
static const uint8_t gzip_magic[3] = {0x1f, 0x8b, 0x08};
static const uint8_t zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};

#if HAVE_ISAL
/* The gzip header ISA-L's stream gets: no flags, mtime 0, XFL 0, OS 255 (unknown), as Go's
 * writer does. */
static const uint8_t gzip_header[10] = {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff};
#endif

static atomic_bool force_zlib;
static atomic_bool force_direct;

void layer_force_direct(bool on)
{
	atomic_store(&force_direct, on);
}

void layer_force_zlib(bool on)
{
	atomic_store(&force_zlib, on);
}

bool layer_have_isal(void)
{
	return HAVE_ISAL && !atomic_load(&force_zlib);
}

const char *layer_compression_name(layer_compression c)
{
	switch (c) {
	case LAYER_COMPRESSION_GZIP:
		return "gzip";
	case LAYER_COMPRESSION_ZSTD:
		return "zstd";
	default:
		return "none";
	}
}

static bool level_valid(layer_compression c, int level)
{
	if (level == LAYER_LEVEL_DEFAULT || c == LAYER_COMPRESSION_NONE)
		return true;
	if (c == LAYER_COMPRESSION_GZIP)
		return level >= 0 && level <= 9;
	return level >= 1 && level <= ZSTD_maxCLevel();
}

int layer_compression_parse(const char *s, layer_compression *ret, int *ret_level,
                            cairn_error **reterr)
{
	const char *colon = s ? strchr(s, ':') : NULL;
	size_t n = colon ? (size_t)(colon - s) : s ? strlen(s) : 0;
	layer_compression c;
	if (s && ((n == 4 && memcmp(s, "none", 4) == 0) ||
	          (n == 12 && memcmp(s, "uncompressed", 12) == 0)))
		c = LAYER_COMPRESSION_NONE;
	else if (s && n == 4 && memcmp(s, "gzip", 4) == 0)
		c = LAYER_COMPRESSION_GZIP;
	else if (s && n == 4 && memcmp(s, "zstd", 4) == 0)
		c = LAYER_COMPRESSION_ZSTD;
	else
		return err_set(reterr, -EINVAL,
		               "unknown compression '%s' (expected gzip, zstd or none, with an "
		               "optional :LEVEL)",
		               s ? s : "(null)");
	int level = LAYER_LEVEL_DEFAULT;
	if (colon) {
		char *end = NULL;
		errno = 0;
		long v = strtol(colon + 1, &end, 10);
		if (c == LAYER_COMPRESSION_NONE || !ret_level || errno || end == colon + 1 ||
		    *end || v < 0 || v > INT32_MAX || !level_valid(c, (int)v))
			return err_set(reterr, -EINVAL,
			               "bad compression level in '%s' (gzip: 0-9, zstd: 1-%d)", s,
			               ZSTD_maxCLevel());
		level = (int)v;
	}
	*ret = c;
	if (ret_level)
		*ret_level = level;
	return 0;
}

layer_compression layer_compression_detect(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	if (len >= 3 && memcmp(p, gzip_magic, 3) == 0)
		return LAYER_COMPRESSION_GZIP;
	if (len >= 4 && memcmp(p, zstd_magic, 4) == 0)
		return LAYER_COMPRESSION_ZSTD;
	if (len >= 8) {
		uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		             (uint32_t)p[3] << 24;
		if ((v & 0xfffffff0u) == 0x184d2a50u)
			return LAYER_COMPRESSION_ZSTD; /* a skippable frame */
	}
	return LAYER_COMPRESSION_NONE;
}

static const struct {
	const char *type;
	layer_compression c;
} media_types[] = {
	{"application/vnd.oci.image.layer.v1.tar", LAYER_COMPRESSION_NONE},
	{"application/vnd.oci.image.layer.v1.tar+gzip", LAYER_COMPRESSION_GZIP},
	{"application/vnd.oci.image.layer.v1.tar+zstd", LAYER_COMPRESSION_ZSTD},
	{"application/vnd.oci.image.layer.nondistributable.v1.tar", LAYER_COMPRESSION_NONE},
	{"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", LAYER_COMPRESSION_GZIP},
	{"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", LAYER_COMPRESSION_ZSTD},
	{"application/vnd.docker.image.rootfs.diff.tar", LAYER_COMPRESSION_NONE},
	{"application/vnd.docker.image.rootfs.diff.tar.gzip", LAYER_COMPRESSION_GZIP},
	{"application/vnd.docker.image.rootfs.foreign.diff.tar", LAYER_COMPRESSION_NONE},
	{"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", LAYER_COMPRESSION_GZIP},
};

int layer_media_type_parse(const char *mt, layer_compression *ret, cairn_error **reterr)
{
	for (size_t i = 0; mt && i < ELEMENTSOF(media_types); i++)
		if (strcmp(mt, media_types[i].type) == 0) {
			*ret = media_types[i].c;
			return 0;
		}
	return err_set(reterr, -EOPNOTSUPP, "unsupported layer media type '%s'",
	               mt ? mt : "(null)");
}

const char *layer_media_type(layer_compression c)
{
	switch (c) {
	case LAYER_COMPRESSION_GZIP:
		return "application/vnd.oci.image.layer.v1.tar+gzip";
	case LAYER_COMPRESSION_ZSTD:
		return "application/vnd.oci.image.layer.v1.tar+zstd";
	default:
		return "application/vnd.oci.image.layer.v1.tar";
	}
}

/* ---- reading ---- */

struct layer_reader {
	int fd;
	char *what;
	layer_compression comp;
	bool started;  /* detection done, decoder ready */
	bool ended;    /* the end of the uncompressed stream was delivered */
	bool between;  /* gzip: a member ended; the next bytes must start another or be EOF */
	size_t zstd_r; /* last ZSTD_decompressStream() result: 0 when a frame is complete */
	bool hash_compressed;
	hasher *diff_h, *comp_h;
	uint8_t *in, *out;
	uint8_t *obuf; /* where the decoders write: out, or a slot */
	size_t ocap;
	size_t in_pos, in_len;
	bool in_eof;
	uint64_t in_total, out_total;
	layer_progress_fn progress;
	void *userdata;
	/*
	 * Threaded mode: a producer thread reads and decodes into slots[tail...]; the caller's
	 * thread reads slots[head...]. count = slots filled, the one the caller holds included
	 * (libarchive may point into it until the next read). Everything below mu is guarded by
	 * it; the decoder state above belongs to the producer until it set prod_done.
	 */
	bool threaded;
	bool thread_started;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct slot {
		uint8_t *buf;
		size_t len;
		uint64_t in_total; /* compressed bytes read when the slot was filled */
		bool hashed;       /* the producer hashed it (else the caller does, taking it) */
	} slots[SLOTS];
	unsigned head, tail, count;
	bool held, stop, prod_done;
	/*
	 * The diffID is hashed, in stream order, by the side that waits for the other: the
	 * producer while the caller keeps it waiting for room (lean < 0), the caller while it
	 * waits for data (lean > 0). The producer hashes slot number n only once hashed == n,
	 * the slots before it all hashed.
	 */
	int lean;
	uint64_t filled_n, hashed;
	uint64_t caller_hashed; /* slots the caller hashed (the caller's own) */
	int ufailed;            /* the caller's side: the code the stream failed with */
	int prod_err;
	cairn_error *prod_e;
	z_stream z;
	bool z_init;
#if HAVE_ISAL
	struct inflate_state *isal;
#endif
	ZSTD_DCtx *zd;
};

static const char *rwhat(const layer_reader *r)
{
	return r->what ? r->what : "layer";
}

int layer_reader_new(int fd, const struct layer_reader_opts *opts, layer_reader **ret_reader,
                     cairn_error **reterr)
{
	static const struct layer_reader_opts none = {0};
	if (!opts)
		opts = &none;
	_cleanup_(layer_reader_freep) layer_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return err_set(reterr, -ENOMEM, "read '%s': out of memory",
		               opts->what ? opts->what : "layer");
	r->fd = fd;
	r->threaded = opts->threaded && !atomic_load(&force_direct);
	r->hash_compressed = opts->compressed_digest;
	r->progress = opts->progress;
	r->userdata = opts->userdata;
	r->what = opts->what ? strdup(opts->what) : NULL;
	r->in = malloc(BUF_SIZE);
	r->out = malloc(BUF_SIZE);
	r->diff_h = hasher_new();
	r->comp_h = r->hash_compressed ? hasher_new() : NULL;
	if ((opts->what && !r->what) || !r->in || !r->out || !r->diff_h ||
	    (r->hash_compressed && !r->comp_h))
		return err_set(reterr, -ENOMEM, "read '%s': out of memory", rwhat(r));
	*ret_reader = TAKE_PTR(r);
	return 0;
}

layer_reader *layer_reader_free(layer_reader *r)
{
	if (!r)
		return NULL;
	if (r->thread_started) {
		pthread_mutex_lock(&r->mu);
		r->stop = true;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->mu);
		pthread_join(r->thread, NULL);
		pthread_mutex_destroy(&r->mu);
		pthread_cond_destroy(&r->cond);
	}
	for (size_t i = 0; i < SLOTS; i++)
		free(r->slots[i].buf);
	cairn_error_free(r->prod_e);
	if (r->z_init)
		inflateEnd(&r->z);
#if HAVE_ISAL
	free(r->isal);
#endif
	ZSTD_freeDCtx(r->zd);
	hasher_free(r->diff_h);
	hasher_free(r->comp_h);
	free(r->in);
	free(r->out);
	free(r->what);
	free(r);
	return NULL;
}

layer_compression layer_reader_compression(const layer_reader *r)
{
	return r->comp;
}

uint64_t layer_reader_size(const layer_reader *r)
{
	return r->out_total;
}

uint64_t layer_reader_caller_hashed(const layer_reader *r)
{
	return r->caller_hashed;
}

uint64_t layer_reader_compressed_size(const layer_reader *r)
{
	return r->in_total;
}

void layer_reader_digests(const layer_reader *r, digest *ret_diffid, digest *ret_compressed)
{
	if (ret_diffid)
		hasher_peek(r->diff_h, ret_diffid);
	if (ret_compressed && r->comp_h)
		hasher_peek(r->comp_h, ret_compressed);
	else if (ret_compressed)
		memset(ret_compressed, 0, sizeof(*ret_compressed));
}

static int fail(layer_reader *r, cairn_error **reterr, int code, const char *msg,
                const char *detail)
{
	if (code == CAIRN_ECORRUPT)
		return err_set(reterr, code, "read layer '%s' (%s): %s%s", rwhat(r),
		               layer_compression_name(r->comp), msg ? msg : "",
		               detail ? detail : "");
	return err_errno(reterr, code, "read layer '%s'", rwhat(r));
}

/* Compact the unread input to the buffer's start and read more; sets in_eof at EOF. */
static int fill(layer_reader *r, cairn_error **reterr)
{
	if (r->in_pos > 0) {
		memmove(r->in, r->in + r->in_pos, r->in_len - r->in_pos);
		r->in_len -= r->in_pos;
		r->in_pos = 0;
	}
	while (r->in_len < BUF_SIZE) {
		ssize_t n = read(r->fd, r->in + r->in_len, BUF_SIZE - r->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(r, reterr, -errno, NULL, NULL);
		if (n == 0) {
			r->in_eof = true;
			break;
		}
		if (r->comp_h)
			hasher_update(r->comp_h, r->in + r->in_len, (size_t)n);
		r->in_len += (size_t)n;
		r->in_total += (uint64_t)n;
		if (r->progress && !r->threaded)
			r->progress(r->in_total, r->userdata);
		break;
	}
	return 0;
}

static int start(layer_reader *r, cairn_error **reterr)
{
	while (r->in_len < 8 && !r->in_eof) {
		int k = fill(r, reterr);
		if (k < 0)
			return k;
	}
	r->comp = layer_compression_detect(r->in, r->in_len);
	r->started = true;
	if (r->comp == LAYER_COMPRESSION_ZSTD) {
		r->zd = ZSTD_createDCtx();
		if (!r->zd)
			return fail(r, reterr, -ENOMEM, NULL, NULL);
		ZSTD_DCtx_setParameter(r->zd, ZSTD_d_windowLogMax, LAYER_ZSTD_WINDOW_LOG_MAX);
	} else if (r->comp == LAYER_COMPRESSION_GZIP && layer_have_isal()) {
#if HAVE_ISAL
		r->isal = malloc(sizeof(*r->isal));
		if (!r->isal)
			return fail(r, reterr, -ENOMEM, NULL, NULL);
		isal_inflate_init(r->isal);
		r->isal->crc_flag = ISAL_GZIP;
#endif
	} else if (r->comp == LAYER_COMPRESSION_GZIP) {
		if (inflateInit2(&r->z, 16 + MAX_WBITS) != Z_OK)
			return fail(r, reterr, -ENOMEM, NULL, NULL);
		r->z_init = true;
	}
	return 0;
}

/*
 * Between gzip members: more input must begin a new member (Go's multistream reader, which
 * containerd uses, says the same); EOF ends the stream. Returns 1 for a new member, 0 at EOF.
 */
static int gzip_next_member(layer_reader *r, cairn_error **reterr)
{
	while (r->in_len - r->in_pos < 3 && !r->in_eof) {
		int k = fill(r, reterr);
		if (k < 0)
			return k;
	}
	size_t avail = r->in_len - r->in_pos;
	if (avail == 0)
		return 0;
	if (avail < 3 || memcmp(r->in + r->in_pos, gzip_magic, 3) != 0)
		return fail(r, reterr, CAIRN_ECORRUPT,
		            "data after the last gzip member is not gzip", NULL);
	r->between = false;
#if HAVE_ISAL
	if (r->isal) {
		isal_inflate_reset(r->isal);
		return 1;
	}
#endif
	if (inflateReset(&r->z) != Z_OK)
		return fail(r, reterr, CAIRN_ECORRUPT, "cannot restart inflate", NULL);
	return 1;
}

#if HAVE_ISAL
static const char *isal_error(int k)
{
	switch (k) {
	case ISAL_INVALID_BLOCK:
		return "invalid deflate block";
	case ISAL_INVALID_SYMBOL:
		return "invalid deflate symbol";
	case ISAL_INVALID_LOOKBACK:
		return "invalid lookback distance";
	case ISAL_INVALID_WRAPPER:
		return "invalid gzip header";
	case ISAL_UNSUPPORTED_METHOD:
		return "unsupported compression method";
	case ISAL_INCORRECT_CHECKSUM:
		return "CRC or length mismatch";
	default:
		return "inflate failed";
	}
}

/* One isal_inflate() step into r->out; returns bytes produced; sets between at a member's end. */
static ssize_t step_isal(layer_reader *r, cairn_error **reterr)
{
	struct inflate_state *s = r->isal;
	s->next_in = r->in + r->in_pos;
	s->avail_in = (uint32_t)(r->in_len - r->in_pos);
	s->next_out = r->obuf;
	s->avail_out = (uint32_t)r->ocap;
	int k = isal_inflate(s);
	r->in_pos = r->in_len - s->avail_in;
	if (k < 0 || k == ISAL_NEED_DICT)
		return fail(r, reterr, CAIRN_ECORRUPT, isal_error(k), NULL);
	if (s->block_state == ISAL_BLOCK_FINISH)
		r->between = true;
	return (ssize_t)(r->ocap - s->avail_out);
}
#endif

static ssize_t step_zlib(layer_reader *r, cairn_error **reterr)
{
	r->z.next_in = r->in + r->in_pos;
	r->z.avail_in = (uInt)(r->in_len - r->in_pos);
	r->z.next_out = r->obuf;
	r->z.avail_out = (uInt)r->ocap;
	int k = inflate(&r->z, Z_NO_FLUSH);
	r->in_pos = r->in_len - r->z.avail_in;
	if (k == Z_STREAM_END)
		r->between = true;
	else if (k == Z_MEM_ERROR)
		return fail(r, reterr, -ENOMEM, NULL, NULL);
	else if (k != Z_OK && k != Z_BUF_ERROR)
		return fail(r, reterr, CAIRN_ECORRUPT, "",
		            r->z.msg ? r->z.msg : "invalid deflate data");
	return (ssize_t)(r->ocap - r->z.avail_out);
}

static ssize_t step_zstd(layer_reader *r, cairn_error **reterr)
{
	ZSTD_inBuffer in = {r->in + r->in_pos, r->in_len - r->in_pos, 0};
	ZSTD_outBuffer out = {r->obuf, r->ocap, 0};
	size_t k = ZSTD_decompressStream(r->zd, &out, &in);
	r->in_pos += in.pos;
	if (ZSTD_isError(k))
		return fail(r, reterr, CAIRN_ECORRUPT, "", ZSTD_getErrorName(k));
	/* A call that moved nothing reports the next frame's needs: keep the last real answer. */
	if (in.pos > 0 || out.pos > 0)
		r->zstd_r = k;
	return (ssize_t)out.pos;
}

/* Decode until some output exists or the stream ends (0). */
static ssize_t decode(layer_reader *r, cairn_error **reterr)
{
	for (;;) {
		if (r->between) {
			int k = gzip_next_member(r, reterr);
			if (k <= 0)
				return k;
		}
		if (r->in_pos == r->in_len && !r->in_eof) {
			int k = fill(r, reterr);
			if (k < 0)
				return k;
		}
		size_t pos0 = r->in_pos;
		ssize_t n;
		if (r->comp == LAYER_COMPRESSION_ZSTD)
			n = step_zstd(r, reterr);
#if HAVE_ISAL
		else if (r->isal)
			n = step_isal(r, reterr);
#endif
		else
			n = step_zlib(r, reterr);
		if (n != 0)
			return n;
		if (r->between || r->in_pos != pos0 || r->in_pos < r->in_len || !r->in_eof)
			continue;
		/* No progress, input exhausted. */
		if (r->comp == LAYER_COMPRESSION_ZSTD && r->zstd_r == 0)
			return 0;
		return fail(r, reterr, CAIRN_ECORRUPT, "unexpected end of compressed data", NULL);
	}
}

/* The next chunk of the stream, decoded into r->obuf (at most r->ocap bytes) or, for a plain
 * tar, pointing into the input buffer (at most r->ocap bytes too); 0 at the end. */
static ssize_t next_chunk(layer_reader *r, const void **ret_buf, cairn_error **reterr)
{
	if (!r->started) {
		int k = start(r, reterr);
		if (k < 0)
			return k;
	}
	if (r->comp != LAYER_COMPRESSION_NONE) {
		*ret_buf = r->obuf;
		return decode(r, reterr);
	}
	if (r->in_pos == r->in_len) {
		r->in_pos = r->in_len = 0;
		if (!r->in_eof) {
			int k = fill(r, reterr);
			if (k < 0)
				return k;
		}
	}
	size_t n = r->in_len - r->in_pos;
	if (n > r->ocap)
		n = r->ocap;
	*ret_buf = r->in + r->in_pos;
	r->in_pos += n;
	return (ssize_t)n;
}

/* Producer thread: fills slots until the stream ends, fails, or the reader is freed. */
static void *produce(void *userdata)
{
	layer_reader *r = userdata;
	cairn_error *e = NULL;
	int err = 0;
	bool eof = false;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		if (r->count == SLOTS && !r->stop && r->lean > -LEAN_MAX)
			r->lean--;
		while (r->count == SLOTS && !r->stop)
			pthread_cond_wait(&r->cond, &r->mu);
		bool mine = r->lean <= 0;
		while (mine && r->hashed < r->filled_n && !r->stop)
			pthread_cond_wait(&r->cond, &r->mu);
		if (r->stop)
			break;
		struct slot *s = &r->slots[r->tail];
		pthread_mutex_unlock(&r->mu);
		size_t filled = 0;
		while (SLOT_SIZE - filled >= SLOT_MIN_ROOM) {
			const void *buf;
			r->obuf = s->buf + filled;
			r->ocap = SLOT_SIZE - filled;
			if (r->ocap > STEP_SIZE)
				r->ocap = STEP_SIZE;
			ssize_t n = next_chunk(r, &buf, &e);
			if (n <= 0) {
				err = (int)n;
				eof = n == 0;
				break;
			}
			if (buf != r->obuf)
				memcpy(r->obuf, buf, (size_t)n);
			/* Hashed while the decoder's output is still in this core's cache. */
			if (mine)
				hasher_update(r->diff_h, r->obuf, (size_t)n);
			filled += (size_t)n;
		}
		pthread_mutex_lock(&r->mu);
		if (filled > 0) {
			s->len = filled;
			s->in_total = r->in_total;
			s->hashed = mine;
			r->hashed += mine;
			r->filled_n++;
			r->tail = (r->tail + 1) % SLOTS;
			r->count++;
		}
		if (err < 0 || eof) {
			r->prod_done = true;
			r->prod_err = err;
			r->prod_e = TAKE_PTR(e);
		}
		pthread_cond_broadcast(&r->cond);
		if (err < 0 || eof)
			break;
	}
	pthread_mutex_unlock(&r->mu);
	cairn_error_free(e);
	return NULL;
}

/* Starts the producer. 0 when it runs; 1 when no thread could be made (read directly then). */
static int start_thread(layer_reader *r, cairn_error **reterr)
{
	for (size_t i = 0; i < SLOTS; i++)
		if (!(r->slots[i].buf = malloc(SLOT_SIZE)))
			return err_set(reterr, -ENOMEM, "read '%s': out of memory", rwhat(r));
	if (pthread_mutex_init(&r->mu, NULL) != 0)
		return 1;
	if (pthread_cond_init(&r->cond, NULL) != 0) {
		pthread_mutex_destroy(&r->mu);
		return 1;
	}
	/* gzip inflates slower than the caller can hash, zstd faster: the first guess. */
	r->lean = r->comp == LAYER_COMPRESSION_GZIP ? LEAN_MAX : -LEAN_MAX;
	int k = thread_spawn(&r->thread, produce, r);
	if (k != 0) {
		pthread_cond_destroy(&r->cond);
		pthread_mutex_destroy(&r->mu);
		return 1;
	}
	r->thread_started = true;
	return 0;
}

static ssize_t read_threaded(layer_reader *r, const void **ret_buf, cairn_error **reterr)
{
	pthread_mutex_lock(&r->mu);
	if (r->held) {
		r->head = (r->head + 1) % SLOTS;
		r->count--;
		r->held = false;
		pthread_cond_broadcast(&r->cond);
	}
	if (r->count == 0 && !r->prod_done && r->lean < LEAN_MAX)
		r->lean++;
	while (r->count == 0 && !r->prod_done)
		pthread_cond_wait(&r->cond, &r->mu);
	if (r->count == 0) {
		int err = r->prod_err;
		pthread_mutex_unlock(&r->mu);
		/* The producer is done: its error object is no longer touched. */
		if (err < 0)
			return err_set(reterr, err, "%s", cairn_error_message(r->prod_e));
		return 0;
	}
	struct slot *s = &r->slots[r->head];
	r->held = true;
	pthread_mutex_unlock(&r->mu);
	if (!s->hashed) {
		hasher_update(r->diff_h, s->buf, s->len);
		r->caller_hashed++;
		pthread_mutex_lock(&r->mu);
		r->hashed++;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->mu);
	}
	*ret_buf = s->buf;
	if (r->progress)
		r->progress(s->in_total, r->userdata);
	return (ssize_t)s->len;
}

ssize_t layer_reader_read(layer_reader *r, const void **ret_buf, cairn_error **reterr)
{
	if (r->ufailed)
		return err_set(reterr, r->ufailed, "read layer '%s': the stream failed earlier",
		               rwhat(r));
	if (r->ended)
		return 0;
	if (r->threaded && !r->thread_started) {
		int k = start_thread(r, reterr);
		if (k < 0)
			return r->ufailed = k;
		r->threaded = k == 0;
	}
	ssize_t n;
	if (r->threaded) {
		n = read_threaded(r, ret_buf, reterr);
	} else {
		r->obuf = r->out;
		r->ocap = BUF_SIZE;
		n = next_chunk(r, ret_buf, reterr);
	}
	if (n < 0)
		return r->ufailed = (int)n;
	if (n == 0)
		r->ended = true;
	if (!r->threaded)
		hasher_update(r->diff_h, *ret_buf, (size_t)n);
	r->out_total += (uint64_t)n;
	return n;
}

int layer_reader_drain(layer_reader *r, cairn_error **reterr)
{
	const void *buf;
	ssize_t n;
	while ((n = layer_reader_read(r, &buf, reterr)) > 0)
		;
	return (int)n;
}

/* ---- writing ---- */

struct layer_writer {
	int fd;
	char *what;
	layer_compression comp;
	int level;
	bool finished;
	int failed;
	hasher *diff_h, *comp_h;
	uint64_t in_total, out_total;
	uint8_t *out;
	pgzip *pg; /* gzip by libdeflate, in members (levels 0 and 4-9) */
#if HAVE_ISAL
	bool header_done;
	struct isal_zstream *isal;
	uint8_t *level_buf;
#endif
	ZSTD_CCtx *zc;
};

static const char *wwhat(const layer_writer *w)
{
	return w->what ? w->what : "layer";
}

layer_writer *layer_writer_free(layer_writer *w)
{
	if (!w)
		return NULL;
	pgzip_free(w->pg);
#if HAVE_ISAL
	free(w->isal);
	free(w->level_buf);
#endif
	ZSTD_freeCCtx(w->zc);
	hasher_free(w->diff_h);
	hasher_free(w->comp_h);
	free(w->out);
	free(w->what);
	free(w);
	return NULL;
}

static int emit(layer_writer *w, const void *buf, size_t len, cairn_error **reterr);

static int emit_cb(void *userdata, const void *buf, size_t len, cairn_error **reterr)
{
	return emit(userdata, buf, len, reterr);
}

static int init_gzip(layer_writer *w, int level, unsigned threads)
{
#if HAVE_ISAL
	if (layer_have_isal() && (level == LAYER_LEVEL_DEFAULT || (level >= 1 && level <= 3))) {
		static const uint32_t sizes[] = {0, ISAL_DEF_LVL1_DEFAULT, ISAL_DEF_LVL2_DEFAULT,
		                                 ISAL_DEF_LVL3_DEFAULT};
		uint32_t lvl = level == LAYER_LEVEL_DEFAULT ? 1 : (uint32_t)level;
		w->isal = malloc(sizeof(*w->isal));
		w->level_buf = malloc(sizes[lvl]);
		if (!w->isal || !w->level_buf)
			return -ENOMEM;
		isal_deflate_init(w->isal);
		w->isal->level = lvl;
		w->isal->level_buf = w->level_buf;
		w->isal->level_buf_size = sizes[lvl];
		w->isal->gzip_flag = IGZIP_GZIP_NO_HDR; /* our header, ISA-L's CRC and trailer */
		return 0;
	}
#endif
	return pgzip_new(level == LAYER_LEVEL_DEFAULT ? 6 : level, threads, emit_cb, w, &w->pg);
}

static int init_zstd(layer_writer *w, int level, unsigned threads)
{
	w->zc = ZSTD_createCCtx();
	if (!w->zc)
		return -ENOMEM;
	int lvl = level == LAYER_LEVEL_DEFAULT ? ZSTD_CLEVEL_DEFAULT : level;
	if (ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, lvl)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 1)))
		return -EINVAL;
	/* A libzstd built without threads refuses workers: compress on this thread then. */
	if (threads > 0)
		(void)ZSTD_CCtx_setParameter(w->zc, ZSTD_c_nbWorkers, (int)threads);
	return 0;
}

int layer_writer_new(int fd, const struct layer_writer_opts *opts, layer_writer **ret_writer,
                     cairn_error **reterr)
{
	const char *what = opts->what ? opts->what : "layer";
	if (opts->compression != LAYER_COMPRESSION_NONE &&
	    opts->compression != LAYER_COMPRESSION_GZIP &&
	    opts->compression != LAYER_COMPRESSION_ZSTD)
		return err_set(reterr, -EINVAL, "write '%s': unknown compression %d", what,
		               (int)opts->compression);
	if (!level_valid(opts->compression, opts->level))
		return err_set(reterr, -EINVAL, "write '%s': %s level '%d' out of range", what,
		               layer_compression_name(opts->compression), opts->level);
	_cleanup_(layer_writer_freep) layer_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return err_set(reterr, -ENOMEM, "write '%s': out of memory", what);
	w->fd = fd;
	w->comp = opts->compression;
	w->level = opts->level;
	w->what = opts->what ? strdup(opts->what) : NULL;
	w->out = malloc(BUF_SIZE);
	w->diff_h = hasher_new();
	w->comp_h = hasher_new();
	if ((opts->what && !w->what) || !w->out || !w->diff_h || !w->comp_h)
		return err_set(reterr, -ENOMEM, "write '%s': out of memory", what);
	int r = 0;
	if (w->comp == LAYER_COMPRESSION_GZIP)
		r = init_gzip(w, opts->level, opts->threads);
	else if (w->comp == LAYER_COMPRESSION_ZSTD)
		r = init_zstd(w, opts->level, opts->threads);
	if (r < 0)
		return err_errno(reterr, r, "write '%s': set up %s", what,
		                 layer_compression_name(w->comp));
	*ret_writer = TAKE_PTR(w);
	return 0;
}

static int emit(layer_writer *w, const void *buf, size_t len, cairn_error **reterr)
{
	if (len == 0)
		return 0;
	int r = fs_write_all(w->fd, buf, len);
	if (r < 0) {
		w->failed = r;
		return err_errno(reterr, r, "write '%s'", wwhat(w));
	}
	hasher_update(w->comp_h, buf, len);
	w->out_total += len;
	return 0;
}

static int comp_fail(layer_writer *w, cairn_error **reterr, const char *detail)
{
	w->failed = -EIO;
	return err_set(reterr, -EIO, "write '%s': %s compression failed: %s", wwhat(w),
	               layer_compression_name(w->comp), detail);
}

#if HAVE_ISAL
static int push_isal(layer_writer *w, const void *buf, size_t len, bool end, cairn_error **reterr)
{
	struct isal_zstream *s = w->isal;
	if (!w->header_done) {
		int r = emit(w, gzip_header, sizeof(gzip_header), reterr);
		if (r < 0)
			return r;
		w->header_done = true;
	}
	s->next_in = (uint8_t *)buf;
	s->avail_in = (uint32_t)len;
	s->end_of_stream = end;
	do {
		s->next_out = w->out;
		s->avail_out = BUF_SIZE;
		if (isal_deflate(s) != COMP_OK)
			return comp_fail(w, reterr, "isal_deflate");
		int r = emit(w, w->out, BUF_SIZE - s->avail_out, reterr);
		if (r < 0)
			return r;
	} while (s->avail_in > 0 || (end && s->internal_state.state != ZSTATE_END));
	return 0;
}
#endif

static int push_pgzip(layer_writer *w, const void *buf, size_t len, bool end, cairn_error **reterr)
{
	int r = len > 0 ? pgzip_write(w->pg, buf, len, reterr) : 0;
	if (r >= 0 && end)
		r = pgzip_finish(w->pg, reterr);
	/* A failed write of the output was reported (and recorded) by emit(). */
	if (r < 0 && !w->failed) {
		w->failed = r;
		err_prefix(reterr, "write '%s'", wwhat(w));
	}
	return r;
}

static int push_zstd(layer_writer *w, const void *buf, size_t len, bool end, cairn_error **reterr)
{
	ZSTD_inBuffer in = {buf, len, 0};
	size_t k;
	do {
		ZSTD_outBuffer out = {w->out, BUF_SIZE, 0};
		k = ZSTD_compressStream2(w->zc, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
		if (ZSTD_isError(k))
			return comp_fail(w, reterr, ZSTD_getErrorName(k));
		int r = emit(w, w->out, out.pos, reterr);
		if (r < 0)
			return r;
	} while (in.pos < in.size || (end && k != 0));
	return 0;
}

static int push(layer_writer *w, const void *buf, size_t len, bool end, cairn_error **reterr)
{
	switch (w->comp) {
	case LAYER_COMPRESSION_GZIP:
#if HAVE_ISAL
		if (w->isal)
			return push_isal(w, buf, len, end, reterr);
#endif
		return push_pgzip(w, buf, len, end, reterr);
	case LAYER_COMPRESSION_ZSTD:
		return push_zstd(w, buf, len, end, reterr);
	default:
		return emit(w, buf, len, reterr);
	}
}

int layer_writer_write(layer_writer *w, const void *buf, size_t len, cairn_error **reterr)
{
	if (w->failed || w->finished)
		return err_set(reterr, w->failed ? w->failed : -EINVAL, "write '%s': the stream %s",
		               wwhat(w), w->failed ? "failed earlier" : "is finished");
	hasher_update(w->diff_h, buf, len);
	w->in_total += len;
	/* zlib and ISA-L count input in 32 bits: feed at most 1 GiB per call. */
	const uint8_t *p = buf;
	while (len > 0) {
		size_t n = len < (1u << 30) ? len : (1u << 30);
		int r = push(w, p, n, false, reterr);
		if (r < 0)
			return r;
		p += n;
		len -= n;
	}
	return 0;
}

int layer_writer_finish(layer_writer *w, digest *ret_diffid, digest *ret_compressed,
                        uint64_t *ret_size, uint64_t *ret_compressed_size, cairn_error **reterr)
{
	if (w->failed || w->finished)
		return err_set(reterr, w->failed ? w->failed : -EINVAL,
		               "finish '%s': the stream %s", wwhat(w),
		               w->failed ? "failed earlier" : "is already finished");
	int r = push(w, NULL, 0, true, reterr);
	if (r < 0)
		return r;
	w->finished = true;
	if (ret_diffid)
		hasher_peek(w->diff_h, ret_diffid);
	if (ret_compressed)
		hasher_peek(w->comp_h, ret_compressed);
	if (ret_size)
		*ret_size = w->in_total;
	if (ret_compressed_size)
		*ret_compressed_size = w->out_total;
	return 0;
}
