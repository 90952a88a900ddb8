/* SPDX-License-Identifier: MIT */
/*
 * Image JSON: the input goes through every parser of src/image/spec.h (oci-layout, index,
 * manifest, config, docker's manifest.json). Each either fails with a negative code and a
 * message that names the file, or succeeds with a result whose invariants hold: every digest is
 * a valid sha256 string, sizes are non-negative, counts are within their caps, a config has as
 * many diff ids as it says, media types are set. Anything else traps.
 */
#include <stdint.h>
#include <string.h>

#include "image/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WHAT "fuzz.json"

static void check_err(int r, cairn_error *e)
{
	if (r >= 0)
		return;
	if (!e || cairn_error_code(e) != r || !strstr(cairn_error_message(e), WHAT))
		__builtin_trap();
}

static void check_desc(const struct image_desc *d)
{
	if (!d->media_type || !digest_valid(d->digest.str) || d->size < 0)
		__builtin_trap();
}

static void run_index(const char *buf, size_t size)
{
	cairn_error *e = NULL;
	struct image_index x = {0};
	int r = image_index_parse(buf, size, WHAT, &x, &e);
	check_err(r, e);
	if (r >= 0) {
		if (x.n > IMAGE_LIST_MAX)
			__builtin_trap();
		for (size_t i = 0; i < x.n; i++)
			check_desc(&x.manifests[i]);
	}
	image_index_clear(&x);
	cairn_error_free(e);
}

static void run_manifest(const char *buf, size_t size)
{
	cairn_error *e = NULL;
	struct image_manifest m = {0};
	int r = image_manifest_parse(buf, size, WHAT, &m, &e);
	check_err(r, e);
	if (r >= 0) {
		check_desc(&m.config);
		if (m.n_layers > IMAGE_LAYERS_MAX)
			__builtin_trap();
		for (size_t i = 0; i < m.n_layers; i++)
			check_desc(&m.layers[i]);
	}
	image_manifest_clear(&m);
	cairn_error_free(e);
}

static void run_config(const char *buf, size_t size)
{
	cairn_error *e = NULL;
	struct image_config c = {0};
	int r = image_config_parse(buf, size, WHAT, &c, &e);
	check_err(r, e);
	if (r >= 0) {
		if (!c.doc || c.n_diff_ids > IMAGE_LAYERS_MAX)
			__builtin_trap();
		for (size_t i = 0; i < c.n_diff_ids; i++)
			if (!digest_valid(c.diff_ids[i].str))
				__builtin_trap();
	}
	image_config_clear(&c);
	cairn_error_free(e);
}

static void run_docker(const char *buf, size_t size)
{
	cairn_error *e = NULL;
	struct docker_manifest d = {0};
	int r = docker_manifest_parse(buf, size, WHAT, &d, &e);
	check_err(r, e);
	if (r >= 0) {
		if (d.n == 0)
			__builtin_trap();
		for (size_t i = 0; i < d.n; i++) {
			if (!d.images[i].config || !*d.images[i].config)
				__builtin_trap();
			for (size_t j = 0; j < d.images[i].n_layers; j++)
				if (!d.images[i].layers[j] || !*d.images[i].layers[j])
					__builtin_trap();
		}
	}
	docker_manifest_clear(&d);
	cairn_error_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > IMAGE_CONFIG_MAX)
		return 0;
	const char *buf = (const char *)data;
	cairn_error *e = NULL;
	int r = image_layout_parse(buf, size, WHAT, &e);
	check_err(r, e);
	cairn_error_free(e);
	run_index(buf, size);
	run_manifest(buf, size);
	run_config(buf, size);
	run_docker(buf, size);
	return 0;
}
