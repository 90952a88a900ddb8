/* SPDX-License-Identifier: MIT */
/* cairn cache export / import: record chains shared through a registry (cache manifests). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPT_TO = 0x5100, OPT_FROM };

struct cache_opts {
	struct cli_remote r;
	const char *to, *from;
};

static int cache_opt(struct cli *cli, int opt, const char *arg, void *userdata)
{
	struct cache_opts *o = userdata;
	if (opt == OPT_TO)
		o->to = arg;
	else if (opt == OPT_FROM)
		o->from = arg;
	else if (cli_remote_opt(cli, opt, arg, &o->r) < 0)
		return -1;
	return 0;
}

static int cmd_export(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_REMOTE_OPTIONS,
		{"to", required_argument, NULL, OPT_TO},
		{"compression", required_argument, NULL, CLI_OPT_COMPRESSION},
		{"source-date-epoch", required_argument, NULL, CLI_OPT_SDE},
		{0},
	};
	struct cache_opts o = {0};
	int i = cli_parse(cli, argc, argv, NULL, opts, cache_opt, &o);
	if (i < 0)
		return EXIT_USAGE;
	int rc = cli_nargs(cli, argc - i, 1, -1);
	if (rc)
		return rc;
	if (!o.to)
		return cli_usage_error(cli, "missing --to REGISTRY/REPO[:TAG]");
	if ((rc = cli_open_cache(cli, 0)) || (rc = cli_remote_begin(cli, &o.r, "cache export")))
		return rc;
	cairn_push_info *info = NULL;
	cairn_error *e = NULL;
	int r = cairn_cache_export(cli->cache, (const char *const *)argv + i, (size_t)(argc - i),
	                           o.to, &o.r.ro, &info, &e);
	cli_bar_end(&o.r.bar);
	if (r < 0)
		return cli_fail(cli, e);
	if (cli->json)
		rc = cli_json_print(cli_push_json(info));
	else if (!cli->quiet)
		printf("%s\n", info->manifest_digest);
	if (cli->verbose && !cli->json)
		fprintf(stderr,
		        "cairn: %zu records, %zu blobs: %zu sent (%llu bytes), %zu present, %zu "
		        "mounted\n",
		        info->n_records, info->n_blobs, info->n_blobs_sent,
		        (unsigned long long)info->bytes_sent, info->n_blobs_present,
		        info->n_blobs_mounted);
	cairn_push_info_free(info);
	return rc;
}

static int cmd_import(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_REMOTE_OPTIONS,
		{"from", required_argument, NULL, OPT_FROM},
		{0},
	};
	struct cache_opts o = {0};
	int i = cli_parse(cli, argc, argv, NULL, opts, cache_opt, &o);
	if (i < 0)
		return EXIT_USAGE;
	int rc = cli_nargs(cli, argc - i, 0, 0);
	if (rc)
		return rc;
	if (!o.from)
		return cli_usage_error(cli, "missing --from REGISTRY/REPO[:TAG]");
	if ((rc = cli_open_cache(cli, 0)) || (rc = cli_remote_begin(cli, &o.r, "cache import")))
		return rc;
	cairn_cache_import_info *info = NULL;
	cairn_error *e = NULL;
	int r = cairn_cache_import(cli->cache, o.from, &o.r.ro, &info, &e);
	cli_bar_end(&o.r.bar);
	if (r < 0)
		return cli_fail(cli, e);
	/* With --json the warnings are in the document. */
	for (size_t k = 0; !cli->json && k < info->n_warnings; k++)
		fprintf(stderr, "cairn: warning: %s\n", info->warnings[k]);
	if (cli->json) {
		json_t *w = json_array();
		for (size_t k = 0; w && k < info->n_warnings; k++)
			json_array_append_new(w, json_string(info->warnings[k]));
		rc = cli_json_print(json_pack(
			"{ss so sb sI sI sI sI sI sI so}", "from", o.from, "manifest",
			info->manifest_digest ? json_string(info->manifest_digest) : json_null(),
			"miss", info->miss, "records", (json_int_t)info->n_records, "imported",
			(json_int_t)info->n_imported, "new", (json_int_t)info->n_new, "missed",
			(json_int_t)info->n_missed, "tags", (json_int_t)info->n_tags, "fetched",
			(json_int_t)info->n_fetched, "warnings", w));
	} else if (!cli->quiet) {
		printf("%zu records imported (%zu new), %zu missed, %zu tags%s\n", info->n_imported,
		       info->n_new, info->n_missed, info->n_tags, info->miss ? " (no cache)" : "");
	}
	cairn_cache_import_info_free(info);
	return rc;
}

const struct cli_command cmd_cache_remote[] = {
	{"export", "REF... --to REGISTRY/REPO[:TAG]",
         "push record chains and a cache manifest describing them to a registry",
         "Pushes the blobs of every record of the chains the REFs name (made where missing;\n"
         "blobs the registry has are not sent again), a cache config describing the records\n"
         "(chain ids, blobs, parents, descriptions, creation times, tags; any size), and\n"
         "last an OCI image manifest naming them.\n"
         "Options:\n"
         "  --to REGISTRY/REPO[:TAG] where to (tag latest when none)\n" CLI_REMOTE_HELP
         "  --compression C[:LEVEL]  gzip (default), zstd or none (gzip:6, zstd:19), for\n"
         "                           layers without a blob\n"
         "  --source-date-epoch N    clamp new layers' mtimes to N\n"
         "Prints the manifest digest; --json: {id: null, remote, manifest, config,\n"
         "config_size, records, blobs, blobs_sent, blobs_present, blobs_mounted, bytes_sent}.\n",
         cmd_export, NULL},
	{"import", "--from REGISTRY/REPO[:TAG]",
         "make the records of a cache manifest here, lazily (nothing is downloaded)",
         "Reads the cache manifest and its config, checks them whole, and makes each\n"
         "record as a lazy record whose blob stays in the registry until it is extracted;\n"
         "records this store has (same blob chain id) are reused; tags are set.\n"
         "A missing or invalid cache is a miss, not a failure: no manifest under the tag, a\n"
         "bad config, or a layer blob the registry lacks (that record and its descendants)\n"
         "print a warning and exit 0. Exit 1 only when the registry cannot be asked\n"
         "(unreachable, 401/403).\n"
         "Options:\n"
         "  --from REGISTRY/REPO[:TAG] where from (tag latest when none)\n" CLI_REMOTE_HELP
         "Prints a summary and the warnings (on stderr); --json: {from, manifest, miss,\n"
         "records, imported, new, missed, tags, fetched, warnings}.\n",
         cmd_import, NULL},
	{0},
};
