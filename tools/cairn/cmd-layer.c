/* SPDX-License-Identifier: MIT */
/*
 * The layer commands: extract (a lazy record's blob into its snapshot), diff (a record's layer
 * as a blob) and import-blob (a blob of the content store as a lazy record).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

enum { OPT_OUTPUT = 'o', OPT_COMPRESSION = 0x3000, OPT_SDE, OPT_PARENT, OPT_DIFF_ID, OPT_MEDIA };

/* A ref on REF (immutable, or a mutable's committed partner), printing the error. */
static int get_ref(struct cli *cli, const char *name, cairn_ref **ret)
{
	char *id = NULL;
	cairn_error *e = NULL;
	if (cairn_cache_resolve(cli->cache, name, &id, &e) < 0)
		return cli_fail(cli, e);
	int r = cairn_cache_get(cli->cache, id, 0, ret, &e);
	free(id);
	return r < 0 ? cli_fail(cli, e) : 0;
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* The layer fields of @ref's record as JSON (NULL on failure, the error printed). */
static json_t *layer_json(struct cli *cli, cairn_ref *ref)
{
	cairn_record_info *i = NULL;
	cairn_error *e = NULL;
	if (cairn_ref_info(ref, &i, &e) < 0) {
		cli_fail(cli, e);
		return NULL;
	}
	json_t *o = json_pack("{ss so so so so so sb}", "id", i->id, "parent",
	                      str_or_null(i->parent), "blob", str_or_null(i->blob), "diff_id",
	                      str_or_null(i->diff_id), "chain_id", str_or_null(i->chain_id),
	                      "media_type", str_or_null(i->media_type), "extracted", i->extracted);
	cairn_record_infos_free(i, 1);
	return o;
}

/* --- extract -------------------------------------------------------------------------------- */

static int cmd_extract(struct cli *cli, int argc, char **argv)
{
	int i = cli_setup(cli, argc, argv, NULL, 1, 1, CLI_OPEN_CACHE);
	if (i < 0)
		return -i;
	cairn_ref *ref = NULL;
	int rc = get_ref(cli, argv[i], &ref);
	if (rc)
		return rc;
	struct cli_bar b;
	cairn_progress_fn bar = cli_bar_start(cli, &b, "extract");
	cairn_error *e = NULL;
	int r = cairn_ref_extract(ref, bar, &b, &e);
	cli_bar_end(&b);
	if (r < 0)
		rc = cli_fail(cli, e);
	else if (cli->json)
		rc = cli_json_print(layer_json(cli, ref));
	cairn_ref_free(ref);
	return rc;
}

/* --- diff ----------------------------------------------------------------------------------- */

struct diff_opts {
	const char *output, *compression;
	int64_t sde;
};

static int diff_opt(struct cli *cli, int opt, const char *arg, void *userdata)
{
	struct diff_opts *o = userdata;
	if (opt == OPT_OUTPUT) {
		o->output = arg;
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
	}
	return 0;
}

static int copy_fd(int in, int out, const char *what)
{
	char buf[1 << 16];
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "cairn: read blob '%s': %m\n", what);
			return EXIT_FAIL;
		}
		if (n == 0)
			return EXIT_OK;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				fprintf(stderr, "cairn: write blob '%s': %m\n", what);
				return EXIT_FAIL;
			}
			off += w;
		}
	}
}

/* Copies blob @digest of the store to @out. */
static int cat_blob(struct cli *cli, const char *digest, int out)
{
	int fd = -1;
	cairn_error *e = NULL;
	if (cairn_content_open(cli->store, digest, &fd, &e) < 0)
		return cli_fail(cli, e);
	int rc = copy_fd(fd, out, digest);
	close(fd);
	return rc;
}

static int cmd_diff(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, OPT_OUTPUT},
		{"compression", required_argument, NULL, OPT_COMPRESSION},
		{"source-date-epoch", required_argument, NULL, OPT_SDE},
		{0},
	};
	struct diff_opts o = {.sde = -1};
	int i = cli_setup(cli, argc, argv, &(struct cli_opts){"o:", opts, diff_opt, &o}, 1, 1,
	                  CLI_OPEN_CACHE);
	if (i < 0)
		return -i;
	cairn_ref *ref = NULL;
	int rc = get_ref(cli, argv[i], &ref);
	if (rc)
		return rc;
	cairn_record_info *info = NULL;
	cairn_error *e = NULL;
	if (cairn_ref_info(ref, &info, &e) < 0) {
		cairn_ref_free(ref);
		return cli_fail(cli, e);
	}
	int out = STDOUT_FILENO;
	if (o.output) {
		out = open(o.output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out < 0) {
			fprintf(stderr, "cairn: open '%s': %m\n", o.output);
			rc = EXIT_FAIL;
			goto done;
		}
	}
	cairn_blob *blob = NULL;
	int r;
	if (info->blob && !o.compression && o.sde < 0) {
		/* The record's own blob, as it is. */
		if ((rc = cat_blob(cli, info->blob, out)) == EXIT_OK && o.output)
			rc = cli_print_value(cli, "digest", info->blob, false);
	} else if (!info->blob) {
		/* Made, stored and recorded: the record has a blob from now on. */
		if ((r = cairn_ref_get_remote(ref, o.compression, o.sde, &blob, &e)) < 0)
			rc = cli_fail(cli, e);
		else if ((rc = cat_blob(cli, blob->digest, out)) == EXIT_OK && o.output)
			rc = cli_print_value(cli, "digest", blob->digest, false);
	} else {
		/* Options that differ from how the recorded blob was made: a fresh diff. */
		if ((r = cairn_ref_diff(ref, o.compression, o.sde, out, &blob, &e)) < 0)
			rc = cli_fail(cli, e);
		else if (o.output)
			rc = cli_print_value(cli, "digest", blob->digest, false);
	}
	cairn_blob_free(blob);
	if (o.output && close(out) < 0 && rc == EXIT_OK) {
		fprintf(stderr, "cairn: write '%s': %m\n", o.output);
		rc = EXIT_FAIL;
	}
	if (o.output && rc != EXIT_OK)
		unlink(o.output);
done:
	cairn_record_infos_free(info, 1);
	cairn_ref_free(ref);
	return rc;
}

/* --- import-blob ---------------------------------------------------------------------------- */

struct import_opts {
	const char *parent, *diff_id, *media_type;
};

static int import_opt(struct cli *cli, int opt, const char *arg, void *userdata)
{
	struct import_opts *o = userdata;
	if (opt == OPT_PARENT)
		o->parent = arg;
	else if (opt == OPT_DIFF_ID)
		o->diff_id = arg;
	else if (opt == OPT_MEDIA)
		o->media_type = arg;
	return 0;
}

static int cmd_import_blob(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"parent", required_argument, NULL, OPT_PARENT},
		{"diff-id", required_argument, NULL, OPT_DIFF_ID},
		{"media-type", required_argument, NULL, OPT_MEDIA},
		{0},
	};
	struct import_opts o = {0};
	int i = cli_setup(cli, argc, argv, &(struct cli_opts){NULL, opts, import_opt, &o}, 1, 1,
	                  CLI_OPEN_CACHE);
	if (i < 0)
		return -i;
	cairn_ref *parent = NULL, *ref = NULL;
	int rc = o.parent ? get_ref(cli, o.parent, &parent) : 0;
	if (rc)
		return rc;
	cairn_descriptor d = {.digest = argv[i], .media_type = o.media_type, .diff_id = o.diff_id};
	cairn_error *e = NULL;
	int r = cairn_cache_get_by_blob(cli->cache, &d, parent, &ref, &e);
	cairn_ref_free(parent);
	if (r < 0)
		return cli_fail(cli, e);
	/* Records the CLI makes outlive it (as `new` and `commit`): retained. */
	if (cairn_ref_set_cache_policy(ref, CAIRN_CACHE_POLICY_RETAIN, &e) < 0)
		rc = cli_fail(cli, e);
	else
		rc = cli_print_value(cli, "id", cairn_ref_id(ref), false);
	cairn_ref_free(ref);
	return rc;
}

const struct cli_command cmd_layer[] = {
	{"extract", "REF", "extract a record that is only a blob yet (and its parents)",
         "A progress bar (bytes, rate, ETA) goes to stderr when it is a terminal.\n"
         "--json prints the record's layer fields.\n",
         cmd_extract, NULL},
	{"diff", "REF", "write the layer of a record as a blob",
         "Options:\n"
         "  -o, --output FILE          write to FILE and print its digest (default: stdout)\n"
         "  --compression C[:LEVEL]    gzip (default), zstd or none; gzip:6 is libdeflate's\n"
         "                             level 6 on every CPU, plain gzip ISA-L's fast level\n"
         "  --source-date-epoch N      clamp mtimes to N seconds since 1970\n"
         "A record with a blob gives it as it is unless an option asks otherwise; a record\n"
         "without one gets one (stored in the content store and recorded).\n",
         cmd_diff, NULL},
	{"import-blob", "DIGEST", "make a record from a layer blob of the content store",
         "Options:\n"
         "  --parent REF       the record it is a layer on (one with a blob)\n"
         "  --diff-id D        the uncompressed digest (default: computed from the blob)\n"
         "  --media-type T     default: from the blob's compression\n"
         "Nothing is extracted until `cairn extract` or `cairn mount`. Prints the record id.\n",
         cmd_import_blob, NULL},
	{0},
};
