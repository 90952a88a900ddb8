/* SPDX-License-Identifier: MIT */
/* What import and export share: infos, manifests, tag names. */
#include <ctype.h>
#include <jansson.h>
#include <string.h>

#include "cairn/cache.h"
#include "image/image.h"

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

cairn_image_info *cairn_image_info_free(cairn_image_info *info)
{
	if (!info)
		return NULL;
	free(info->id);
	free(info->tag);
	free(info->manifest_digest);
	free(info->config_digest);
	strv_free(info->layers, info->n_layers);
	strv_free(info->blobs, info->n_layers);
	strv_free(info->diff_ids, info->n_layers);
	free(info);
	return NULL;
}

cairn_image_info *image_info_new(size_t n)
{
	cairn_image_info *info = calloc(1, sizeof(*info));
	if (!info)
		return NULL;
	info->n_layers = n;
	info->layers = calloc(n + 1, sizeof(char *));
	info->blobs = calloc(n + 1, sizeof(char *));
	info->diff_ids = calloc(n + 1, sizeof(char *));
	if (!info->layers || !info->blobs || !info->diff_ids)
		return cairn_image_info_free(info);
	return info;
}

static json_t *desc_json(const char *mt, const char *dg, int64_t size)
{
	json_t *o = json_object();
	if (o && json_object_set_new(o, "mediaType", json_string(mt)) == 0 &&
	    json_object_set_new(o, "digest", json_string(dg)) == 0 &&
	    json_object_set_new(o, "size", json_integer(size)) == 0)
		return o;
	json_decref(o);
	return NULL;
}

int image_manifest_build(const char *config_mt, const digest *config, int64_t config_size,
                         const struct image_desc *layers, size_t n, char **ret, size_t *ret_len,
                         cairn_error **reterr)
{
	json_t *m = json_object();
	json_t *ls = json_array();
	bool ok = m && ls && json_object_set_new(m, "schemaVersion", json_integer(2)) == 0 &&
	          json_object_set_new(m, "mediaType", json_string(MT_OCI_MANIFEST)) == 0 &&
	          json_object_set_new(m, "config",
	                              desc_json(config_mt, config->str, config_size)) == 0;
	for (size_t i = 0; ok && i < n; i++)
		ok = json_array_append_new(ls, desc_json(layers[i].media_type, layers[i].digest.str,
		                                         layers[i].size)) == 0;
	ok = ok && json_object_set(m, "layers", ls) == 0;
	char *s = ok ? json_dumps(m, JSON_COMPACT) : NULL;
	json_decref(ls);
	json_decref(m);
	if (!s)
		return err_set(reterr, -ENOMEM, "build image manifest: out of memory");
	*ret_len = strlen(s);
	*ret = s;
	return 0;
}

bool image_tag_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 255 || name[0] == '-' || name[0] == '.')
		return false;
	bool id_shaped = n == CAIRN_RECORD_ID_LEN;
	for (const char *p = name; *p; p++) {
		if (!isalnum((unsigned char)*p) && !strchr("._:/@+-", *p))
			return false;
		if (!isdigit((unsigned char)*p) && !islower((unsigned char)*p))
			id_shaped = false;
	}
	return !id_shaped;
}
