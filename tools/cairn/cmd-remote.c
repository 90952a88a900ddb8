/* SPDX-License-Identifier: MIT */
/* cairn pull: an image of a registry as lazy records. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum {
	OPT_TAG = 0x5100,
	OPT_PLATFORM,
	OPT_EXTRACT,
};

struct pull_opts {
	struct cli_remote r;
	const char *tag;
	bool extract;
};

/* OS/ARCH or OS/ARCH/VARIANT, no part empty. */
static bool platform_valid(const char *s)
{
	int slashes = 0;
	for (const char *p = s; *p; p++)
		if (*p == '/') {
			if (p == s || !p[1] || p[1] == '/')
				return false;
			slashes++;
		}
	return slashes == 1 || slashes == 2;
}

static int pull_opt(struct cli *cli, int opt, const char *arg, void *userdata)
{
	struct pull_opts *o = userdata;
	switch (opt) {
	case OPT_TAG:
		o->tag = arg;
		return 0;
	case OPT_PLATFORM:
		if (!platform_valid(arg))
			return cli_usage_error(cli, "bad --platform '%s': use OS/ARCH[/VARIANT]",
			                       arg),
			       -1;
		o->r.ro.platform = arg;
		return 0;
	case OPT_EXTRACT:
		o->extract = true;
		return 0;
	}
	return cli_remote_opt(cli, opt, arg, &o->r) < 0 ? -1 : 0;
}

/* {id, tags, manifest}: the manifest is the one a tag of the record names. */
static int print_pulled(struct cli *cli, cairn_ref *ref)
{
	const char *id = cairn_ref_id(ref);
	if (!cli->json) {
		printf("%s\n", id); /* the result, also with -q */
		return EXIT_OK;
	}
	cairn_record_info *info = NULL;
	cairn_error *e = NULL;
	if (cairn_ref_info(ref, &info, &e) < 0)
		return cli_fail(cli, e);
	json_t *tags = json_array();
	char *manifest = NULL;
	for (size_t k = 0; k < info->n_tags; k++) {
		json_array_append_new(tags, json_string(info->tags[k]));
		char *rid = NULL, *m = NULL;
		if (!manifest &&
		    cairn_cache_resolve_image(cli->cache, info->tags[k], &rid, &m, NULL) == 0 &&
		    m && strcmp(rid, id) == 0)
			manifest = m, m = NULL;
		free(rid);
		free(m);
	}
	json_t *doc = json_pack("{ss so so}", "id", id, "tags", tags, "manifest",
	                        manifest ? json_string(manifest) : json_null());
	free(manifest);
	cairn_record_infos_free(info, 1);
	return cli_json_print(doc);
}

int cmd_pull_run(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_REMOTE_OPTIONS,
		{"tag", required_argument, NULL, OPT_TAG},
		{"platform", required_argument, NULL, OPT_PLATFORM},
		{"extract", no_argument, NULL, OPT_EXTRACT},
		{0},
	};
	struct pull_opts o = {0};
	int i = cli_setup(cli, argc, argv, &(struct cli_opts){NULL, opts, pull_opt, &o}, 1, 1,
	                  CLI_OPEN_CACHE);
	if (i < 0)
		return -i;
	if (!o.r.ro.creds)
		o.r.ro.creds = getenv("CAIRN_REGISTRY_CREDS");
	int rc = cli_remote_begin(cli, &o.r, "extract");
	if (rc)
		return rc;
	cairn_ref *ref = NULL;
	cairn_error *e = NULL;
	if (cairn_pull(cli->cache, argv[i], o.tag, &o.r.ro, &ref, &e) < 0)
		return cli_fail(cli, e);
	if (o.extract) {
		int r = cairn_ref_extract(ref, o.r.ro.progress, o.r.ro.progress_userdata, &e);
		cli_bar_end(&o.r.bar);
		if (r < 0) {
			cairn_ref_free(ref);
			return cli_fail(cli, e);
		}
	}
	rc = print_pulled(cli, ref);
	cairn_ref_free(ref);
	return rc;
}

const char cmd_pull_help[] =
	"Makes the image REGISTRY/REPO[:TAG|@DIGEST] (tag latest when none) a chain of lazy\n"
	"records: the manifest and config are read and checked, no layer is downloaded. Layers\n"
	"come from the registry when a record is first extracted, mounted or exported (several\n"
	"at once, verified; a progress bar on a terminal). Pulling an image again, or one whose\n"
	"layers are here already, makes nothing new.\n"
	"Options:\n" CLI_REMOTE_HELP
	"  --tag NAME               tag the top record NAME (default: REGISTRY/REPO:TAG as\n"
	"                           given)\n"
	"  --platform OS/ARCH[/V]   the image of a multi-platform index (default linux/amd64)\n"
	"  --extract                download and extract the layers now\n"
	"Credentials: --creds, else $CAIRN_REGISTRY_CREDS (USER:PASS), else the docker config;\n"
	"the later extract, mount and export of pulled records use $CAIRN_REGISTRY_CREDS or the\n"
	"docker config, and plain http when the pull was --insecure (kept with the records).\n"
	"Prints the top record's id; --json: {id, tags, manifest}.\n"
	"Exit 1 naming the registry and the object when it cannot be pulled (unreachable,\n"
	"401/403, a digest mismatch, a manifest over 4 MiB, HTML where JSON was expected);\n"
	"3 when the registry has no such manifest or tag (or platform). Nothing is created\n"
	"on failure.\n";
