/* SPDX-License-Identifier: MIT */
/* cairn push: a record and its parents as an image in a registry; the registry options that
 * push, cache export and cache import share. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_remote_opt(struct cli *cli, int opt, const char *arg, struct cli_remote *o)
{
	char *end = NULL;
	long long v;
	switch (opt) {
	case CLI_OPT_CREDS:
		if (!strchr(arg, ':'))
			return (cli_usage_error(cli, "--creds wants USER:PASS"), -1);
		o->ro.creds = arg;
		return 1;
	case CLI_OPT_INSECURE:
		o->ro.insecure = true;
		return 1;
	case CLI_OPT_COMPRESSION:
		if (cli_compression(cli, arg) < 0)
			return -1;
		o->ro.compression = arg;
		return 1;
	case CLI_OPT_JOBS:
		errno = 0;
		v = strtoll(arg, &end, 10);
		if (errno || !*arg || *end || v < 1 || v > 64)
			return (cli_usage_error(cli, "invalid --jobs '%s' (1 to 64)", arg), -1);
		o->ro.jobs = (unsigned)v;
		return 1;
	case CLI_OPT_SDE:
		errno = 0;
		v = strtoll(arg, &end, 10);
		if (errno || !*arg || *end || v < 0)
			return (cli_usage_error(cli, "invalid --source-date-epoch '%s'", arg), -1);
		o->ro.source_date_epoch = v;
		return 1;
	}
	return 0;
}

int cli_remote_begin(struct cli *cli, struct cli_remote *o, const char *label)
{
	/* libcurl's TLS writes to a closed connection raise SIGPIPE (see cairn/remote.h). */
	signal(SIGPIPE, SIG_IGN);
	/* Lazy blobs of the records involved come from their registries with these credentials
	 * and transport (cli_open_cache() attached the defaults). */
	cairn_remote_options fetch = o->ro;
	cairn_error *e = NULL;
	if ((o->ro.creds || o->ro.insecure) && cairn_remote_attach(cli->cache, &fetch, &e) < 0)
		return cli_fail(cli, e);
	o->ro.progress = cli_bar_start(cli, &o->bar, label);
	o->ro.progress_userdata = &o->bar;
	return EXIT_OK;
}

json_t *cli_push_json(const cairn_push_info *info)
{
	return json_pack(
		"{so ss ss ss sI sI sI sI sI sI sI}", "id",
		info->id ? json_string(info->id) : json_null(), "remote", info->remote, "manifest",
		info->manifest_digest, "config", info->config_digest, "config_size",
		(json_int_t)info->config_size, "records", (json_int_t)info->n_records, "blobs",
		(json_int_t)info->n_blobs, "blobs_sent", (json_int_t)info->n_blobs_sent,
		"blobs_present", (json_int_t)info->n_blobs_present, "blobs_mounted",
		(json_int_t)info->n_blobs_mounted, "bytes_sent", (json_int_t)info->bytes_sent);
}

static int push_opt(struct cli *cli, int opt, const char *arg, void *userdata)
{
	return cli_remote_opt(cli, opt, arg, userdata) < 0 ? -1 : 0;
}

int cmd_push_run(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_REMOTE_OPTIONS,
		{"compression", required_argument, NULL, CLI_OPT_COMPRESSION},
		{"source-date-epoch", required_argument, NULL, CLI_OPT_SDE},
		{0},
	};
	struct cli_remote o = {0};
	int i = cli_setup(cli, argc, argv, &(struct cli_opts){NULL, opts, push_opt, &o}, 2, 2,
	                  CLI_OPEN_CACHE);
	if (i < 0)
		return -i;
	int rc = cli_remote_begin(cli, &o, "push");
	if (rc)
		return rc;
	cairn_push_info *info = NULL;
	cairn_error *e = NULL;
	int r = cairn_push(cli->cache, argv[i], argv[i + 1], &o.ro, &info, &e);
	cli_bar_end(&o.bar);
	if (r < 0)
		return cli_fail(cli, e);
	if (cli->json)
		rc = cli_json_print(cli_push_json(info));
	else if (!cli->quiet)
		printf("%s\n", info->manifest_digest);
	if (cli->verbose && !cli->json)
		fprintf(stderr, "cairn: %zu blobs sent (%llu bytes), %zu present, %zu mounted\n",
		        info->n_blobs_sent, (unsigned long long)info->bytes_sent,
		        info->n_blobs_present, info->n_blobs_mounted);
	cairn_push_info_free(info);
	return rc;
}

const char cmd_push_help[] =
	"Pushes the record REF names and its parents as an OCI image to REGISTRY/REPO[:TAG]\n"
	"(tag latest when none): the manifest and config `cairn export` would write (an\n"
	"imported or pulled image's own, unchanged, when REF is exactly that image). Blobs\n"
	"the registry has (HEAD) are not sent again; the manifest goes last.\n"
	"Options:\n" CLI_REMOTE_HELP
	"  --compression C[:LEVEL]  gzip (default), zstd or none (gzip:6, zstd:19), for\n"
	"                           layers without a blob\n"
	"  --source-date-epoch N    clamp new layers' mtimes and the config's times to N\n"
	"Prints the manifest digest; --json: {id, remote, manifest, config, config_size,\n"
	"records, blobs, blobs_sent, blobs_present, blobs_mounted, bytes_sent}.\n"
	"Exit 1 naming the registry and the object when it cannot be pushed (unreachable,\n"
	"401/403, a digest mismatch).\n";
