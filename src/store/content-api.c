/* SPDX-License-Identifier: MIT */
/* The public content API: argument checks, then the content module; labels go with the blob. */
#include <string.h>

#include "meta/labels.h"
#include "store.h"

static void fill_info(cairn_content_info *ret, const char *dig, uint64_t size, int64_t created)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->digest, sizeof(ret->digest), "%s", dig);
	ret->size = size;
	ret->created_ns = created;
}

int cairn_content_add_fd(cairn_store *store, int fd, const char *expected,
                         cairn_content_info *ret_info, cairn_error **reterr)
{
	if (!store || fd < 0)
		return err_set(reterr, -EINVAL, "add content: invalid arguments");
	digest d;
	uint64_t size = 0;
	int r = content_add_fd(store->content, fd, expected, &d, &size, reterr);
	if (r < 0)
		return r;
	if (ret_info) {
		content_blob_info bi;
		int q = content_info(store->content, d.str, &bi, reterr);
		if (q < 0)
			return q;
		fill_info(ret_info, bi.digest, bi.size, bi.created_ns);
	}
	return r;
}

int cairn_content_open(cairn_store *store, const char *dig, int *ret_fd, cairn_error **reterr)
{
	if (!store || !ret_fd)
		return err_set(reterr, -EINVAL, "open content: invalid arguments");
	return content_open(store->content, dig, ret_fd, NULL, reterr);
}

int cairn_content_info_get(cairn_store *store, const char *dig, cairn_content_info *ret_info,
                           cairn_error **reterr)
{
	if (!store || !ret_info)
		return err_set(reterr, -EINVAL, "content info: invalid arguments");
	content_blob_info bi;
	int r = content_info(store->content, dig, &bi, reterr);
	if (r < 0)
		return r;
	fill_info(ret_info, bi.digest, bi.size, bi.created_ns);
	return 0;
}

struct walk_ctx {
	cairn_content_walk_fn fn;
	void *userdata;
};

static int walk_one(const content_blob_info *bi, void *userdata)
{
	struct walk_ctx *ctx = userdata;
	cairn_content_info info;
	fill_info(&info, bi->digest, bi->size, bi->created_ns);
	return ctx->fn(&info, ctx->userdata);
}

int cairn_content_walk(cairn_store *store, cairn_content_walk_fn fn, void *userdata,
                       cairn_error **reterr)
{
	if (!store || !fn)
		return err_set(reterr, -EINVAL, "walk content: invalid arguments");
	struct walk_ctx ctx = {fn, userdata};
	return content_walk(store->content, walk_one, &ctx, reterr);
}

/* Parses @dig into @d and checks the blob exists: 0, or an error naming it. */
static int existing_blob(cairn_store *store, const char *dig, digest *d, cairn_error **reterr)
{
	int r = digest_parse(dig, d, reterr);
	if (r < 0)
		return r;
	r = content_exists(store->content, d->str, reterr);
	if (r == 0)
		return err_set(reterr, -ENOENT, "blob '%s' not found", d->str);
	return r < 0 ? r : 0;
}

int cairn_content_delete(cairn_store *store, const char *dig, cairn_error **reterr)
{
	if (!store)
		return err_set(reterr, -EINVAL, "delete content: invalid arguments");
	/* Labels first, in one transaction: a crash in between leaves a blob without labels,
	 * never labels that a later blob of the same digest would inherit by accident. */
	digest d;
	int r = existing_blob(store, dig, &d, reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if ((r = meta_tx_begin(store->db, &tx, true, reterr)) < 0 ||
	    (r = meta_content_labels_clear(&tx, d.str, reterr)) < 0 ||
	    (r = meta_tx_commit(&tx, reterr)) < 0)
		return r;
	return content_delete(store->content, d.str, reterr);
}

int cairn_content_verify(cairn_store *store, const char *dig, cairn_error **reterr)
{
	if (!store)
		return err_set(reterr, -EINVAL, "verify content: invalid arguments");
	return content_verify(store->content, dig, reterr);
}

int cairn_content_label_set(cairn_store *store, const char *dig, const char *key, const char *value,
                            cairn_error **reterr)
{
	if (!store || !key)
		return err_set(reterr, -EINVAL, "label content: invalid arguments");
	digest d;
	int r = existing_blob(store, dig, &d, reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if ((r = meta_tx_begin(store->db, &tx, true, reterr)) < 0 ||
	    (r = meta_content_label_set(&tx, d.str, key, value, reterr)) < 0)
		return err_prefix(reterr, "label blob '%s'", d.str);
	return meta_tx_commit(&tx, reterr);
}

int cairn_content_labels(cairn_store *store, const char *dig, cairn_label_fn fn, void *userdata,
                         cairn_error **reterr)
{
	if (!store || !fn)
		return err_set(reterr, -EINVAL, "content labels: invalid arguments");
	digest d;
	int r = existing_blob(store, dig, &d, reterr);
	if (r < 0)
		return r;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	if ((r = meta_tx_begin(store->db, &tx, false, reterr)) < 0)
		return r;
	return meta_content_labels(&tx, d.str, fn, userdata, reterr);
}
