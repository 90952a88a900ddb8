/* SPDX-License-Identifier: MIT */
/* The image commands: import (an OCI layout or a docker archive) and export. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum {
	OPT_TAG = 0x4000,
	OPT_PLATFORM,
	OPT_EXTRACT,
	OPT_OUTPUT = 'o',
	OPT_COMPRESSION = 0x4100,
	OPT_SDE,
	OPT_FORMAT,
};

static json_t *strv_json(char **v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && v && i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* --- import --------------------------------------------------------------------------------- */

struct import_opts {
	const char *tag, *platform;
	bool extract;
};

static int import_opt(struct cli *cli, int opt, const char *arg, void *userdata)
{
	struct import_opts *o = userdata;
	if (opt == OPT_TAG)
		o->tag = arg;
	else if (opt == OPT_PLATFORM)
		o->platform = arg;
	else if (opt == OPT_EXTRACT)
		o->extract = true;
	return 0;
}

static int cmd_import(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"tag", required_argument, NULL, OPT_TAG},
		{"platform", required_argument, NULL, OPT_PLATFORM},
		{"extract", no_argument, NULL, OPT_EXTRACT},
		{0},
	};
	struct import_opts o = {0};
	int i = cli_setup(cli, argc, argv, &(struct cli_opts){NULL, opts, import_opt, &o}, 1, 1,
	                  CLI_OPEN_CACHE);
	if (i < 0)
		return -i;
	struct cli_bar b;
	cairn_progress_fn bar = cli_bar_start(cli, &b, "import");
	cairn_image_import_options io = {
		.version = CAIRN_IMAGE_IMPORT_OPTIONS_VERSION,
		.flags = o.extract ? CAIRN_IMAGE_IMPORT_EXTRACT : 0,
		.tag = o.tag,
		.platform = o.platform,
		.progress = bar,
		.userdata = &b,
	};
	cairn_image_info *info = NULL;
	cairn_error *e = NULL;
	int r = cairn_image_import(cli->cache, argv[i], &io, &info, &e);
	cli_bar_end(&b);
	if (r < 0)
		return cli_fail(cli, e);
	int rc = EXIT_OK;
	if (cli->json)
		rc = cli_json_print(json_pack("{ss so ss ss so so so sI sI}", "id", info->id, "tag",
		                              str_or_null(info->tag), "manifest",
		                              info->manifest_digest, "config", info->config_digest,
		                              "layers", strv_json(info->layers, info->n_layers),
		                              "blobs", strv_json(info->blobs, info->n_layers),
		                              "diff_ids", strv_json(info->diff_ids, info->n_layers),
		                              "new_records", (json_int_t)info->n_new_records,
		                              "new_blobs", (json_int_t)info->n_new_blobs));
	else
		printf("%s\n", info->id);
	cairn_image_info_free(info);
	return rc;
}

/* --- export --------------------------------------------------------------------------------- */

struct export_opts {
	const char *output, *tag, *compression;
	int64_t sde;
	cairn_image_format format;
};

/* Usage errors return -1: cli_parse() fails on a negative return. */
static int export_opt(struct cli *cli, int opt, const char *arg, void *userdata)
{
	struct export_opts *o = userdata;
	if (opt == OPT_OUTPUT) {
		o->output = arg;
	} else if (opt == OPT_TAG) {
		o->tag = arg;
	} else if (opt == OPT_COMPRESSION) {
		if (cli_compression(cli, arg) < 0)
			return -1;
		o->compression = arg;
	} else if (opt == OPT_SDE) {
		char *end = NULL;
		errno = 0;
		long long v = strtoll(arg, &end, 10);
		if (errno || !*arg || *end || v < 0)
			return (cli_usage_error(cli, "invalid --source-date-epoch '%s'", arg), -1);
		o->sde = v;
	} else if (opt == OPT_FORMAT) {
		if (strcmp(arg, "oci") == 0)
			o->format = CAIRN_IMAGE_FORMAT_OCI;
		else if (strcmp(arg, "docker-archive") == 0)
			o->format = CAIRN_IMAGE_FORMAT_DOCKER_ARCHIVE;
		else
			return (cli_usage_error(cli, "unknown format '%s' (oci or docker-archive)",
			                        arg),
			        -1);
	}
	return 0;
}

static int cmd_export(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, OPT_OUTPUT},
		{"tag", required_argument, NULL, OPT_TAG},
		{"compression", required_argument, NULL, OPT_COMPRESSION},
		{"source-date-epoch", required_argument, NULL, OPT_SDE},
		{"format", required_argument, NULL, OPT_FORMAT},
		{0},
	};
	struct export_opts o = {.sde = -1};
	int i = cli_parse(cli, argc, argv, "o:", opts, export_opt, &o);
	if (i < 0)
		return EXIT_USAGE;
	int rc = cli_nargs(cli, argc - i, 1, 1);
	if (rc)
		return rc;
	if (!o.output)
		return cli_usage_error(cli, "missing -o OUTPUT");
	if ((rc = cli_open_cache(cli, 0)))
		return rc;
	struct cli_bar b;
	cairn_progress_fn bar = cli_bar_start(cli, &b, "export");
	cairn_image_export_options eo = {
		.version = CAIRN_IMAGE_EXPORT_OPTIONS_VERSION,
		.format = o.format,
		.tag = o.tag,
		.compression = o.compression,
		.source_date_epoch = o.sde,
		.progress = bar,
		.userdata = &b,
	};
	cairn_image_info *info = NULL;
	cairn_error *e = NULL;
	int r = cairn_image_export(cli->cache, argv[i], o.output, &eo, &info, &e);
	cli_bar_end(&b);
	if (r < 0)
		return cli_fail(cli, e);
	if (cli->json)
		rc = cli_json_print(
			json_pack("{ss so ss ss ss ss so so}", "id", info->id, "tag",
		                  str_or_null(info->tag), "manifest", info->manifest_digest,
		                  "config", info->config_digest, "output", o.output, "format",
		                  o.format == CAIRN_IMAGE_FORMAT_OCI ? "oci" : "docker-archive",
		                  "blobs", strv_json(info->blobs, info->n_layers), "diff_ids",
		                  strv_json(info->diff_ids, info->n_layers)));
	else if (!cli->quiet)
		printf("%s\n", info->manifest_digest);
	cairn_image_info_free(info);
	return rc;
}

const struct cli_command cmd_image[] = {
	{"import", "LAYOUT[:TAG] | ARCHIVE.tar",
         "import an OCI image layout or a docker archive as lazy records",
         "Options:\n"
         "  --tag NAME             tag the top record NAME (default: TAG, else the image's\n"
         "                         own name); in an archive of several images, picks the\n"
         "                         one whose RepoTags entry is NAME\n"
         "  --platform OS/ARCH[/VARIANT]  from a multi-platform index (default linux/amd64)\n"
         "  --extract              extract the layers now (default: when first used)\n"
         "LAYOUT:TAG picks the image whose org.opencontainers.image.ref.name is TAG; the\n"
         "argument is split at its last ':' only when no file of that whole name exists.\n"
         "Blobs are verified (digest and size) as they are copied; importing an image\n"
         "again creates nothing; images sharing base layers share records. Bad input\n"
         "fails naming the file and the problem, and leaves nothing behind.\n"
         "Prints the top record's id; --json: {id, tag, manifest, config, layers (record\n"
         "ids, base first), blobs, diff_ids, new_records, new_blobs}.\n",
         cmd_import, NULL},
	{"export", "REF -o OUTPUT",
         "write a record and its parents as an OCI image layout or a docker archive",
         "Options:\n"
         "  -o, --output PATH        the layout directory (created; an existing layout\n"
         "                           gains the image) or, for docker-archive, the tar file\n"
         "  --tag T                  the image's name in index.json (default: latest) and\n"
         "                           in a docker archive's RepoTags (default: none)\n"
         "  --compression C[:LEVEL]  gzip (default), zstd or none (gzip:6, zstd:19), for\n"
         "                           layers without a blob yet (layers with one keep it)\n"
         "  --source-date-epoch N    clamp new layers' mtimes and the config's times to N\n"
         "  --format F               oci (default) or docker-archive (plain tar layers,\n"
         "                           manifest.json plus the OCI layout, as Docker 25)\n"
         "The same record and options write the same bytes. Prints the manifest digest;\n"
         "--json: {id, tag, manifest, config, output, format, blobs, diff_ids}.\n",
         cmd_export, NULL},
	{0},
};
