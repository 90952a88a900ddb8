/* SPDX-License-Identifier: MIT */
/* Parsing and checking the JSON documents of image layouts and docker archives. */
#include <string.h>

#include "image/spec.h"
#include "layer/compress.h"

/* The JSON document of @buf, or CAIRN_ECORRUPT naming @what and where the parser stopped. */
static int load(const char *buf, size_t len, const char *what, json_t **ret, cairn_error **reterr)
{
	json_error_t je;
	json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!doc)
		return err_set(reterr, CAIRN_ECORRUPT, "'%s' is not valid JSON: %s (line %d)", what,
		               je.text, je.line);
	*ret = doc;
	return 0;
}

static int bad(cairn_error **reterr, const char *what, const char *field, const char *problem)
{
	return err_set(reterr, CAIRN_ECORRUPT, "'%s': %s: %s", what, field, problem);
}

/* A copy of string member @key of @o: 0 and NULL when absent (or when @o is NULL); an error
 * when present and not a string. */
static int opt_string(json_t *o, const char *key, const char *what, const char *field, char **ret,
                      cairn_error **reterr)
{
	*ret = NULL;
	json_t *v = o ? json_object_get(o, key) : NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return err_set(reterr, CAIRN_ECORRUPT, "'%s': %s.%s: not a string", what, field,
		               key);
	*ret = strdup(json_string_value(v));
	return *ret ? 0 : err_set(reterr, -ENOMEM, "'%s': out of memory", what);
}

static int parse_digest(json_t *v, const char *what, const char *field, digest *ret,
                        cairn_error **reterr)
{
	if (!json_is_string(v))
		return bad(reterr, what, field, "missing or not a string");
	cairn_error *e = NULL;
	int r = digest_parse(json_string_value(v), ret, &e);
	if (r < 0) {
		r = err_set(reterr, r, "'%s': %s: %s", what, field, cairn_error_message(e));
		cairn_error_free(e);
	}
	return r;
}

void image_desc_clear(struct image_desc *d)
{
	free(d->media_type);
	free(d->ref_name);
	free(d->image_name);
	free(d->os);
	free(d->arch);
	free(d->variant);
	*d = (struct image_desc){0};
}

/* Descriptor @o (at @field of @what) into *@d. */
static int parse_desc(json_t *o, const char *what, const char *field, struct image_desc *d,
                      cairn_error **reterr)
{
	if (!json_is_object(o))
		return bad(reterr, what, field, "not an object");
	int r = opt_string(o, "mediaType", what, field, &d->media_type, reterr);
	if (r < 0)
		return r;
	if (!d->media_type || !*d->media_type)
		return err_set(reterr, CAIRN_ECORRUPT, "'%s': %s.mediaType: missing", what, field);
	char sub[128];
	snprintf(sub, sizeof(sub), "%s.digest", field);
	if ((r = parse_digest(json_object_get(o, "digest"), what, sub, &d->digest, reterr)) < 0)
		return r;
	json_t *size = json_object_get(o, "size");
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return err_set(reterr, CAIRN_ECORRUPT,
		               "'%s': %s.size: missing or not a non-negative integer", what, field);
	d->size = json_integer_value(size);
	json_t *urls = json_object_get(o, "urls");
	if (urls && !json_is_null(urls) && json_array_size(urls) > 0)
		return err_set(reterr, -EOPNOTSUPP,
		               "'%s': %s: foreign layers (urls) are not supported", what, field);
	json_t *an = json_object_get(o, "annotations");
	if (an && !json_is_null(an) && !json_is_object(an))
		return err_set(reterr, CAIRN_ECORRUPT, "'%s': %s.annotations: not an object", what,
		               field);
	if ((r = opt_string(an, ANNOT_REF_NAME, what, field, &d->ref_name, reterr)) < 0 ||
	    (r = opt_string(an, ANNOT_IMAGE_NAME, what, field, &d->image_name, reterr)) < 0)
		return r;
	json_t *pl = json_object_get(o, "platform");
	if (pl && !json_is_null(pl) && !json_is_object(pl))
		return err_set(reterr, CAIRN_ECORRUPT, "'%s': %s.platform: not an object", what,
		               field);
	if ((r = opt_string(pl, "os", what, field, &d->os, reterr)) < 0 ||
	    (r = opt_string(pl, "architecture", what, field, &d->arch, reterr)) < 0 ||
	    (r = opt_string(pl, "variant", what, field, &d->variant, reterr)) < 0)
		return r;
	return 0;
}

image_kind image_kind_of(const char *mt)
{
	if (!mt)
		return IMAGE_KIND_OTHER;
	if (strcmp(mt, MT_OCI_INDEX) == 0 || strcmp(mt, MT_DOCKER_LIST) == 0)
		return IMAGE_KIND_INDEX;
	if (strcmp(mt, MT_OCI_MANIFEST) == 0 || strcmp(mt, MT_DOCKER_MANIF) == 0)
		return IMAGE_KIND_MANIFEST;
	return IMAGE_KIND_OTHER;
}

bool image_platform_match(const struct image_desc *d, const char *os, const char *arch,
                          const char *variant)
{
	if (!d->os || !d->arch || strcmp(d->os, os) != 0 || strcmp(d->arch, arch) != 0)
		return false;
	return !variant || (d->variant && strcmp(d->variant, variant) == 0);
}

int image_layout_parse(const char *buf, size_t len, const char *what, cairn_error **reterr)
{
	json_t *doc = NULL;
	int r = load(buf, len, what, &doc, reterr);
	if (r < 0)
		return r;
	json_t *v = json_is_object(doc) ? json_object_get(doc, "imageLayoutVersion") : NULL;
	if (!json_is_string(v))
		r = bad(reterr, what, "imageLayoutVersion", "missing or not a string");
	else if (strcmp(json_string_value(v), "1.0.0") != 0)
		r = err_set(reterr, CAIRN_ECORRUPT,
		            "'%s': imageLayoutVersion '%.64s' is not supported (1.0.0 is)", what,
		            json_string_value(v));
	json_decref(doc);
	return r;
}

/* Checks the optional "mediaType" of a document against @want (any of two). */
static int check_doc_type(json_t *doc, const char *what, const char *a, const char *b, char **ret,
                          cairn_error **reterr)
{
	int r = opt_string(doc, "mediaType", what, "document", ret, reterr);
	if (r < 0 || !*ret)
		return r;
	if (strcmp(*ret, a) != 0 && strcmp(*ret, b) != 0)
		return err_set(reterr, CAIRN_ECORRUPT, "'%s': mediaType '%.128s' is not %s", what,
		               *ret, a);
	return 0;
}

/* The array member @key of object @doc with at most @max entries. */
static int get_array(json_t *doc, const char *key, const char *what, size_t max, json_t **ret,
                     cairn_error **reterr)
{
	json_t *a = json_is_object(doc) ? json_object_get(doc, key) : NULL;
	if (!json_is_array(a))
		return err_set(reterr, CAIRN_ECORRUPT, "'%s': %s: missing or not an array", what,
		               key);
	if (json_array_size(a) > max)
		return err_set(reterr, -E2BIG, "'%s': %s: %zu entries, more than %zu", what, key,
		               json_array_size(a), max);
	*ret = a;
	return 0;
}

static int check_schema(json_t *doc, const char *what, cairn_error **reterr)
{
	if (!json_is_object(doc))
		return err_set(reterr, CAIRN_ECORRUPT, "'%s': not a JSON object", what);
	json_t *v = json_object_get(doc, "schemaVersion");
	if (!json_is_integer(v) || json_integer_value(v) != 2)
		return bad(reterr, what, "schemaVersion", "missing or not 2");
	return 0;
}

void image_index_clear(struct image_index *x)
{
	for (size_t i = 0; x->manifests && i < x->n; i++)
		image_desc_clear(&x->manifests[i]);
	free(x->manifests);
	*x = (struct image_index){0};
}

int image_index_parse(const char *buf, size_t len, const char *what, struct image_index *ret,
                      cairn_error **reterr)
{
	json_t *doc = NULL;
	json_t *arr = NULL;
	_cleanup_free_ char *mt = NULL;
	struct image_index x = {0};
	int r = load(buf, len, what, &doc, reterr);
	if (r < 0)
		return r;
	if ((r = check_schema(doc, what, reterr)) < 0 ||
	    (r = check_doc_type(doc, what, MT_OCI_INDEX, MT_DOCKER_LIST, &mt, reterr)) < 0 ||
	    (r = get_array(doc, "manifests", what, IMAGE_LIST_MAX, &arr, reterr)) < 0)
		goto out;
	x.manifests = calloc(json_array_size(arr) + 1, sizeof(*x.manifests));
	if (!x.manifests) {
		r = err_set(reterr, -ENOMEM, "'%s': out of memory", what);
		goto out;
	}
	for (size_t i = 0; i < json_array_size(arr); i++) {
		char field[64];
		snprintf(field, sizeof(field), "manifests[%zu]", i);
		x.n++;
		if ((r = parse_desc(json_array_get(arr, i), what, field, &x.manifests[i], reterr)) <
		    0)
			goto out;
	}
	*ret = x;
	x = (struct image_index){0};
out:
	image_index_clear(&x);
	json_decref(doc);
	return r;
}

void image_manifest_clear(struct image_manifest *x)
{
	free(x->media_type);
	image_desc_clear(&x->config);
	for (size_t i = 0; x->layers && i < x->n_layers; i++)
		image_desc_clear(&x->layers[i]);
	free(x->layers);
	*x = (struct image_manifest){0};
}

static int parse_layers(json_t *arr, const char *what, struct image_manifest *x,
                        cairn_error **reterr)
{
	x->layers = calloc(json_array_size(arr) + 1, sizeof(*x->layers));
	if (!x->layers)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", what);
	for (size_t i = 0; i < json_array_size(arr); i++) {
		char field[64];
		snprintf(field, sizeof(field), "layers[%zu]", i);
		x->n_layers++;
		int r = parse_desc(json_array_get(arr, i), what, field, &x->layers[i], reterr);
		layer_compression comp;
		cairn_error *e = NULL;
		if (r >= 0 &&
		    (r = layer_media_type_parse(x->layers[i].media_type, &comp, &e)) < 0) {
			r = err_set(reterr, r, "'%s': %s: %s", what, field, cairn_error_message(e));
			cairn_error_free(e);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

int image_manifest_parse(const char *buf, size_t len, const char *what, struct image_manifest *ret,
                         cairn_error **reterr)
{
	json_t *doc = NULL;
	json_t *arr = NULL;
	struct image_manifest x = {0};
	int r = load(buf, len, what, &doc, reterr);
	if (r < 0)
		return r;
	if ((r = check_schema(doc, what, reterr)) < 0 ||
	    (r = check_doc_type(doc, what, MT_OCI_MANIFEST, MT_DOCKER_MANIF, &x.media_type,
	                        reterr)) < 0 ||
	    (r = parse_desc(json_object_get(doc, "config"), what, "config", &x.config, reterr)) <
	            0 ||
	    (r = get_array(doc, "layers", what, IMAGE_LAYERS_MAX, &arr, reterr)) < 0)
		goto out;
	if (strcmp(x.config.media_type, MT_OCI_CONFIG) != 0 &&
	    strcmp(x.config.media_type, MT_DOCKER_CONFIG) != 0) {
		r = err_set(reterr, CAIRN_ECORRUPT,
		            "'%s': config.mediaType '%.128s' is not an image config", what,
		            x.config.media_type);
		goto out;
	}
	if ((r = parse_layers(arr, what, &x, reterr)) < 0)
		goto out;
	*ret = x;
	x = (struct image_manifest){0};
out:
	image_manifest_clear(&x);
	json_decref(doc);
	return r;
}

void image_config_clear(struct image_config *x)
{
	free(x->diff_ids);
	free(x->os);
	free(x->arch);
	free(x->variant);
	json_decref(x->doc);
	*x = (struct image_config){0};
}

static int parse_rootfs(json_t *doc, const char *what, struct image_config *x, cairn_error **reterr)
{
	json_t *rootfs = json_object_get(doc, "rootfs");
	if (!json_is_object(rootfs))
		return bad(reterr, what, "rootfs", "missing or not an object");
	json_t *type = json_object_get(rootfs, "type");
	if (!json_is_string(type) || strcmp(json_string_value(type), "layers") != 0)
		return bad(reterr, what, "rootfs.type", "missing or not \"layers\"");
	json_t *ids = NULL;
	int r = get_array(rootfs, "diff_ids", what, IMAGE_LAYERS_MAX, &ids, reterr);
	if (r < 0)
		return err_set(reterr, r,
		               "'%s': rootfs.diff_ids: missing, not an array or too long", what);
	x->diff_ids = calloc(json_array_size(ids) + 1, sizeof(*x->diff_ids));
	if (!x->diff_ids)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", what);
	for (size_t i = 0; i < json_array_size(ids); i++) {
		char field[64];
		snprintf(field, sizeof(field), "rootfs.diff_ids[%zu]", i);
		if ((r = parse_digest(json_array_get(ids, i), what, field, &x->diff_ids[i],
		                      reterr)) < 0)
			return r;
		x->n_diff_ids++;
	}
	return 0;
}

int image_config_parse(const char *buf, size_t len, const char *what, struct image_config *ret,
                       cairn_error **reterr)
{
	struct image_config x = {0};
	int r = load(buf, len, what, &x.doc, reterr);
	if (r < 0)
		return r;
	if (!json_is_object(x.doc))
		r = err_set(reterr, CAIRN_ECORRUPT, "'%s': not a JSON object", what);
	if (r >= 0)
		r = parse_rootfs(x.doc, what, &x, reterr);
	if (r >= 0 && (r = opt_string(x.doc, "os", what, "config", &x.os, reterr)) >= 0 &&
	    (r = opt_string(x.doc, "architecture", what, "config", &x.arch, reterr)) >= 0)
		r = opt_string(x.doc, "variant", what, "config", &x.variant, reterr);
	if (r < 0) {
		image_config_clear(&x);
		return r;
	}
	*ret = x;
	return 0;
}

void docker_manifest_clear(struct docker_manifest *x)
{
	for (size_t i = 0; x->images && i < x->n; i++) {
		struct docker_image *im = &x->images[i];
		free(im->config);
		for (size_t j = 0; im->repo_tags && j < im->n_repo_tags; j++)
			free(im->repo_tags[j]);
		free(im->repo_tags);
		for (size_t j = 0; im->layers && j < im->n_layers; j++)
			free(im->layers[j]);
		free(im->layers);
	}
	free(x->images);
	*x = (struct docker_manifest){0};
}

/* The strings of array @a (@field of @what) into a new array *@ret of *@ret_n. */
static int string_list(json_t *a, const char *what, const char *field, size_t max, char ***ret,
                       size_t *ret_n, cairn_error **reterr)
{
	if (json_array_size(a) > max)
		return err_set(reterr, -E2BIG, "'%s': %s: more than %zu entries", what, field, max);
	*ret = calloc(json_array_size(a) + 1, sizeof(char *));
	if (!*ret)
		return err_set(reterr, -ENOMEM, "'%s': out of memory", what);
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *v = json_array_get(a, i);
		if (!json_is_string(v) || json_string_length(v) == 0 ||
		    strlen(json_string_value(v)) != json_string_length(v))
			return err_set(reterr, CAIRN_ECORRUPT,
			               "'%s': %s[%zu]: not a non-empty string", what, field, i);
		if (!((*ret)[i] = strdup(json_string_value(v))))
			return err_set(reterr, -ENOMEM, "'%s': out of memory", what);
		(*ret_n)++;
	}
	return 0;
}

static int parse_docker_image(json_t *o, const char *what, size_t i, struct docker_image *im,
                              cairn_error **reterr)
{
	char field[64];
	snprintf(field, sizeof(field), "[%zu]", i);
	if (!json_is_object(o))
		return bad(reterr, what, field, "not an object");
	json_t *cfg = json_object_get(o, "Config");
	if (!json_is_string(cfg) || json_string_length(cfg) == 0 ||
	    strlen(json_string_value(cfg)) != json_string_length(cfg))
		return err_set(reterr, CAIRN_ECORRUPT, "'%s': %s.Config: missing or not a path",
		               what, field);
	if (!(im->config = strdup(json_string_value(cfg))))
		return err_set(reterr, -ENOMEM, "'%s': out of memory", what);
	json_t *tags = json_object_get(o, "RepoTags");
	json_t *layers = json_object_get(o, "Layers");
	if (tags && !json_is_null(tags) && !json_is_array(tags))
		return err_set(reterr, CAIRN_ECORRUPT, "'%s': %s.RepoTags: not an array", what,
		               field);
	if (!json_is_array(layers))
		return err_set(reterr, CAIRN_ECORRUPT, "'%s': %s.Layers: missing or not an array",
		               what, field);
	int r = 0;
	if (json_is_array(tags))
		r = string_list(tags, what, "RepoTags", IMAGE_LIST_MAX, &im->repo_tags,
		                &im->n_repo_tags, reterr);
	if (r >= 0)
		r = string_list(layers, what, "Layers", IMAGE_LAYERS_MAX, &im->layers,
		                &im->n_layers, reterr);
	return r;
}

int docker_manifest_parse(const char *buf, size_t len, const char *what,
                          struct docker_manifest *ret, cairn_error **reterr)
{
	json_t *doc = NULL;
	struct docker_manifest x = {0};
	int r = load(buf, len, what, &doc, reterr);
	if (r < 0)
		return r;
	if (!json_is_array(doc) || json_array_size(doc) == 0) {
		r = err_set(reterr, CAIRN_ECORRUPT, "'%s': not a non-empty JSON array", what);
		goto out;
	}
	if (json_array_size(doc) > IMAGE_LIST_MAX) {
		r = err_set(reterr, -E2BIG, "'%s': more than %u images", what, IMAGE_LIST_MAX);
		goto out;
	}
	if (!(x.images = calloc(json_array_size(doc), sizeof(*x.images)))) {
		r = err_set(reterr, -ENOMEM, "'%s': out of memory", what);
		goto out;
	}
	for (size_t i = 0; i < json_array_size(doc); i++) {
		x.n++;
		if ((r = parse_docker_image(json_array_get(doc, i), what, i, &x.images[i],
		                            reterr)) < 0)
			goto out;
	}
	*ret = x;
	x = (struct docker_manifest){0};
out:
	docker_manifest_clear(&x);
	json_decref(doc);
	return r;
}
