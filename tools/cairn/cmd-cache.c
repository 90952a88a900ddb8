/* SPDX-License-Identifier: MIT */
/*
 * The cache commands: new, commit, mount, umount, mounts, ls, info, rm, tag, untag, du, prune.
 * REF is a record id, a unique id prefix or a tag. Each command is one process, so what it makes
 * must outlive it: new records are retained, commit finalizes and retains, and main closes the
 * cache before the refs are freed.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Parses (with @o, may be NULL), checks the count and opens the cache: index of the first
 * positional, or -(exit code). */
static int setup(struct cli *cli, int argc, char **argv, const struct cli_opts *o, int min, int max)
{
	return cli_setup(cli, argc, argv, o, min, max, CLI_OPEN_CACHE);
}

/* REF to a record id (caller frees), printing the error. Returns 0 or an exit code. */
static int resolve(struct cli *cli, const char *ref, char **ret_id)
{
	cairn_error *e = NULL;
	if (cairn_cache_resolve(cli->cache, ref, ret_id, &e) < 0)
		return cli_fail(cli, e);
	return 0;
}

/* A ref on REF, printing the error: the mutable one with @mut, else one of either kind
 * (mutable records come back mutable). Returns 0 or an exit code. */
static int get_ref(struct cli *cli, const char *name, bool mut, cairn_ref **ret)
{
	char *id = NULL;
	int rc = resolve(cli, name, &id);
	if (rc)
		return rc;
	cairn_error *e = NULL;
	int r = mut ? cairn_cache_get_mutable(cli->cache, id, ret, &e)
	            : cairn_cache_get(cli->cache, id, CAIRN_CACHE_GET_ANY_KIND, ret, &e);
	free(id);
	return r < 0 ? cli_fail(cli, e) : 0;
}

/* "-" until the size is known, else the size in @buf. */
static const char *size_or_dash(int64_t size, char *buf, size_t len)
{
	if (size < 0)
		return "-";
	return cli_format_size((uint64_t)size, buf, len);
}

static json_t *json_str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *record_json(const cairn_record_info *r)
{
	json_t *tags = json_array();
	for (size_t i = 0; tags && i < r->n_tags; i++)
		json_array_append_new(tags, json_string(r->tags[i]));
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "parent", json_str_or_null(r->parent));
	json_object_set_new(o, "kind", json_string(r->is_mutable ? "mutable" : "immutable"));
	json_object_set_new(o, "in_use", json_boolean(r->in_use));
	json_object_set_new(o, "shared", json_boolean(r->shared));
	json_object_set_new(o, "reclaimable", json_boolean(r->reclaimable));
	json_object_set_new(o, "size", r->size < 0 ? json_null() : json_integer(r->size));
	json_object_set_new(o, "created_at", json_integer(r->created_at));
	json_object_set_new(o, "last_used",
	                    r->last_used ? json_integer(r->last_used) : json_null());
	json_object_set_new(o, "usage_count", json_integer(r->usage_count));
	json_object_set_new(o, "description", json_string(r->description ? r->description : ""));
	json_object_set_new(o, "record_type", json_str_or_null(r->record_type));
	json_object_set_new(o, "retain", json_boolean(r->retain));
	json_object_set_new(o, "blob", json_str_or_null(r->blob));
	json_object_set_new(o, "diff_id", json_str_or_null(r->diff_id));
	json_object_set_new(o, "chain_id", json_str_or_null(r->chain_id));
	json_object_set_new(o, "blob_chain_id", json_str_or_null(r->blob_chain_id));
	json_object_set_new(o, "media_type", json_str_or_null(r->media_type));
	json_object_set_new(o, "extracted", json_boolean(r->extracted));
	json_object_set_new(o, "tags", tags ? tags : json_array());
	return o;
}

static json_t *records_json(const cairn_record_info *infos, size_t n)
{
	json_t *arr = json_array();
	for (size_t k = 0; arr && k < n; k++)
		json_array_append_new(arr, record_json(&infos[k]));
	return arr;
}

/* --- new ----------------------------------------------------------------------------------- */

struct new_opts {
	const char *parent, *desc;
	bool no_retain;
};

enum {
	OPT_PARENT = 0x2000,
	OPT_DESC,
	OPT_NO_RETAIN,
	OPT_RO,
	OPT_ALL,
	OPT_FILTER,
	OPT_VERBOSE,
	OPT_KEEP_DURATION,
	OPT_KEEP_STORAGE,
	OPT_DRY_RUN,
};

static int new_opt(struct cli *cli, int opt, const char *arg, void *userdata)
{
	struct new_opts *o = userdata;
	if (opt == OPT_PARENT)
		o->parent = arg;
	else if (opt == OPT_DESC)
		o->desc = arg;
	else if (opt == OPT_NO_RETAIN)
		o->no_retain = true;
	return 0;
}

static int cmd_new(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"parent", required_argument, NULL, OPT_PARENT},
		{"desc", required_argument, NULL, OPT_DESC},
		{"no-retain", no_argument, NULL, OPT_NO_RETAIN},
		{0},
	};
	struct new_opts o = {0};
	int i = setup(cli, argc, argv, &(struct cli_opts){NULL, opts, new_opt, &o}, 0, 0);
	if (i < 0)
		return -i;
	cairn_ref *parent = NULL, *ref = NULL;
	int rc = o.parent ? get_ref(cli, o.parent, false, &parent) : 0;
	if (rc)
		return rc;
	cairn_new_options nopts = {
		.version = CAIRN_NEW_OPTIONS_VERSION,
		.policy = o.no_retain ? CAIRN_CACHE_POLICY_DEFAULT : CAIRN_CACHE_POLICY_RETAIN,
		.description = o.desc,
	};
	cairn_error *e = NULL;
	int r = cairn_cache_new(cli->cache, parent, &nopts, &ref, &e);
	cairn_ref_free(parent);
	if (r < 0)
		return cli_fail(cli, e);
	rc = cli_print_value(cli, "id", cairn_ref_id(ref), false);
	/* Freed after main closes the cache, so the ref's release keeps the record. */
	cairn_cache_close(cli->cache);
	cli->cache = NULL;
	cairn_ref_free(ref);
	return rc;
}

/* --- commit -------------------------------------------------------------------------------- */

/* A ref on the immutable of mutable @name when an earlier commit was cut short after the
 * immutable was made (a crash before its finalize), else *@ret NULL. 0 or an exit code. */
static int commit_pending(struct cli *cli, const char *name, cairn_ref **ret)
{
	char *id = NULL;
	cairn_record_info *info = NULL;
	cairn_error *e = NULL;
	*ret = NULL;
	int rc = resolve(cli, name, &id);
	if (rc)
		return rc;
	int r = cairn_cache_info(cli->cache, id, &info, &e);
	free(id);
	if (r >= 0 && info->is_mutable && info->equal_immutable)
		r = cairn_cache_get(cli->cache, info->equal_immutable, 0, ret, &e);
	cairn_record_infos_free(info, 1);
	return r < 0 ? cli_fail(cli, e) : 0;
}

static int cmd_commit(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, NULL, 1, 1);
	if (i < 0)
		return -i;
	cairn_ref *mut = NULL, *imm = NULL;
	int rc = commit_pending(cli, argv[i], &imm);
	if (!rc && !imm)
		rc = get_ref(cli, argv[i], true, &mut);
	if (rc)
		return rc;
	/* The CLI commits for good: the immutable is retained, then owns its data. In that order, a
	 * crash at any point leaves the data in a retained record: the mutable, or the immutable
	 * once the finalize went through (a commit run again picks up a pending one). */
	cairn_error *e = NULL;
	int r = mut ? cairn_ref_commit(mut, &imm, &e) : 0;
	if (r >= 0)
		r = cairn_ref_set_cache_policy(imm, CAIRN_CACHE_POLICY_RETAIN, &e);
	if (r >= 0)
		r = cairn_ref_finalize(imm, &e);
	if (r >= 0)
		rc = cli_print_value(cli, "id", cairn_ref_id(imm), false);
	cairn_ref_free(imm);
	cairn_ref_free(mut);
	return r < 0 ? cli_fail(cli, e) : rc;
}

/* --- mount, umount, mounts ------------------------------------------------------------------ */

static int ro_opt(struct cli *cli, int opt, const char *arg, void *userdata)
{
	*(bool *)userdata = true;
	return 0;
}

static const struct option ro_opts[] = {
	{"ro", no_argument, NULL, OPT_RO},
	{0},
};

/* Parses --ro into *@ro, checks the count, opens the cache, as setup(). */
static int setup_ro(struct cli *cli, int argc, char **argv, bool *ro, int min, int max)
{
	return setup(cli, argc, argv, &(struct cli_opts){NULL, ro_opts, ro_opt, ro}, min, max);
}

static int cmd_mount(struct cli *cli, int argc, char **argv)
{
	bool ro = false;
	int i = setup_ro(cli, argc, argv, &ro, 2, 2);
	if (i < 0)
		return -i;
	const char *target = argv[i + 1];
	cairn_ref *ref = NULL;
	int rc = get_ref(cli, argv[i], false, &ref);
	if (rc)
		return rc;
	if (cli_make_mount_point(target)) {
		cairn_ref_free(ref);
		return EXIT_FAIL;
	}
	cairn_error *e = NULL;
	int r = cairn_ref_mount_at(ref, target, ro, &e);
	if (r >= 0) {
		if (cli->json)
			rc = cli_json_print(json_pack("{ss ss sb}", "id", cairn_ref_id(ref),
			                              "target", target, "readonly", ro));
		else if (!cli->quiet)
			printf("mounted %s on %s%s\n", cairn_ref_id(ref), target,
			       ro ? " (read-only)" : "");
	}
	cairn_ref_free(ref); /* the mount holds the record now */
	return r < 0 ? cli_fail(cli, e) : rc;
}

static int cmd_umount(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, NULL, 1, -1);
	if (i < 0)
		return -i;
	int rc = EXIT_OK;
	for (; i < argc; i++) {
		cairn_error *e = NULL;
		int r = cairn_cache_unmount(cli->cache, argv[i], &e);
		if (r == -ENOENT) {
			/* Not a record's mount: a snapshot mounted with `snapshot mount`. */
			e = cairn_error_free(e);
			r = cairn_unmount(argv[i], &e);
		}
		if (r < 0) {
			int x = cli_fail(cli, e);
			rc = rc ? rc : x;
		} else if (!cli->quiet && !cli->json) {
			printf("unmounted %s\n", argv[i]);
		}
	}
	if (cli->json && rc == EXIT_OK)
		return cli_json_print(json_pack("{sb}", "unmounted", 1));
	return rc;
}

static int cmd_mounts(struct cli *cli, int argc, char **argv)
{
	bool ro = false;
	int i = setup_ro(cli, argc, argv, &ro, 1, 1);
	if (i < 0)
		return -i;
	cairn_ref *ref = NULL;
	int rc = get_ref(cli, argv[i], false, &ref);
	if (rc)
		return rc;
	cairn_mount *m = NULL;
	size_t n = 0;
	cairn_error *e = NULL;
	int r = cairn_ref_mount(ref, ro, &m, &n, &e);
	if (r >= 0)
		rc = cli_print_mounts(m, n);
	cairn_ref_free(ref);
	return r < 0 ? cli_fail(cli, e) : rc;
}

/* --- ls, info ------------------------------------------------------------------------------- */

static void print_row(const cairn_record_info *r)
{
	char size[32], when[32];
	printf("%-25s  %-9s  %-6s  %10s  %-19s  %s%s%s\n", r->id,
	       r->is_mutable ? "mutable" : "immutable", r->in_use ? "yes" : "no",
	       size_or_dash(r->size, size, sizeof(size)),
	       cli_format_time(r->created_at, when, sizeof(when)), r->description,
	       r->n_tags ? (*r->description ? " " : "") : "", r->n_tags ? r->tags[0] : "");
}

static int cmd_ls(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, NULL, 0, 0);
	if (i < 0)
		return -i;
	cairn_record_info *infos = NULL;
	size_t n = 0;
	cairn_error *e = NULL;
	if (cairn_cache_list(cli->cache, &infos, &n, &e) < 0)
		return cli_fail(cli, e);
	int rc = EXIT_OK;
	if (cli->json) {
		rc = cli_json_print(records_json(infos, n));
	} else {
		if (!cli->quiet)
			printf("%-25s  %-9s  %-6s  %10s  %-19s  %s\n", "ID", "KIND", "IN USE",
			       "SIZE", "CREATED", "DESCRIPTION / TAG");
		for (size_t k = 0; k < n; k++)
			if (cli->quiet)
				printf("%s\n", infos[k].id);
			else
				print_row(&infos[k]);
	}
	cairn_record_infos_free(infos, n);
	return rc;
}

static int cmd_info(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, NULL, 1, 1);
	if (i < 0)
		return -i;
	char *id = NULL;
	int rc = resolve(cli, argv[i], &id);
	if (rc)
		return rc;
	cairn_record_info *info = NULL;
	cairn_error *e = NULL;
	int r = cairn_cache_info(cli->cache, id, &info, &e);
	free(id);
	if (r < 0)
		return cli_fail(cli, e);
	json_t *o = record_json(info);
	cairn_record_infos_free(info, 1);
	if (cli->json)
		return cli_json_print(o);
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v)
	{
		char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		printf("%-14s %s\n", key, s ? s : json_string_value(v));
		free(s);
	}
	json_decref(o);
	return EXIT_OK;
}

/* --- rm, tag, untag ------------------------------------------------------------------------ */

/* Removes the record REF names, reporting it by id. */
static int rm_one(struct cli *cli, const char *ref, char **ret_id)
{
	int x = resolve(cli, ref, ret_id);
	cairn_error *e = NULL;
	if (!x && cairn_cache_remove(cli->cache, *ret_id, &e) < 0)
		x = cli_fail(cli, e);
	return x;
}

static int cmd_rm(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, NULL, 1, -1);
	if (i < 0)
		return -i;
	return cli_remove_each(cli, argc, argv, i, rm_one, true);
}

static int cmd_tag(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, NULL, 2, 2);
	if (i < 0)
		return -i;
	char *id = NULL;
	int rc = resolve(cli, argv[i], &id);
	if (rc)
		return rc;
	cairn_error *e = NULL;
	int r = cairn_cache_tag(cli->cache, id, argv[i + 1], &e);
	if (r >= 0 && cli->json)
		rc = cli_json_print(json_pack("{ss ss}", "tag", argv[i + 1], "id", id));
	free(id);
	return r < 0 ? cli_fail(cli, e) : rc;
}

static int untag_one(struct cli *cli, const char *name, char **ret_name)
{
	cairn_error *e = NULL;
	return cairn_cache_untag(cli->cache, name, &e) < 0 ? cli_fail(cli, e) : 0;
}

static int cmd_untag(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, NULL, 1, -1);
	if (i < 0)
		return -i;
	return cli_remove_each(cli, argc, argv, i, untag_one, false);
}

/* --- du, prune ------------------------------------------------------------------------------ */

struct filter_opts {
	const char *filters[32];
	size_t n;
	bool all, verbose, dry_run;
	int64_t keep_duration_ns, keep_bytes;
};

/* A duration: one or more NUMBER UNIT, units d, h, m, s ("1h30m", "7d", "1.5h"); -1 if bad. */
static int64_t parse_duration(const char *s)
{
	static const struct {
		char unit;
		double ns;
	} units[] = {{'d', 86400e9}, {'h', 3600e9}, {'m', 60e9}, {'s', 1e9}};
	double total = 0;
	if (!*s)
		return -1;
	while (*s) {
		if (!isdigit((unsigned char)*s) && *s != '.')
			return -1;
		char *end = NULL;
		errno = 0;
		double v = strtod(s, &end);
		if (errno || end == s)
			return -1;
		size_t k = 0;
		while (k < sizeof(units) / sizeof(units[0]) && units[k].unit != *end)
			k++;
		if (k == sizeof(units) / sizeof(units[0]))
			return -1;
		total += v * units[k].ns;
		s = end + 1;
	}
	return total >= 0 && total < 9.2e18 ? (int64_t)total : -1;
}

/* A size: NUMBER [UNIT], units B, K/KB/M/MB/G/GB/T/TB (powers of 1000) and KiB/MiB/GiB/TiB
 * (powers of 1024), any case ("10GB", "512MiB", "1.5G", "4096"); -1 if bad. */
static int64_t parse_size(const char *s)
{
	static const char prefixes[] = "kmgt";
	if (!isdigit((unsigned char)*s) && *s != '.')
		return -1;
	char *end = NULL;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s)
		return -1;
	double mult = 1;
	const char *p = *end ? strchr(prefixes, tolower((unsigned char)*end)) : NULL;
	if (p) {
		bool binary = end[1] == 'i' || end[1] == 'I';
		for (long k = 0; k <= p - prefixes; k++)
			mult *= binary ? 1024 : 1000;
		end += binary ? 2 : 1;
		if (binary && *end != 'b' && *end != 'B')
			return -1;
	}
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end)
		return -1;
	double total = v * mult;
	return total >= 0 && total < 9.2e18 ? (int64_t)total : -1;
}

/* Whether @key is a field the filters know (spec §5.10). */
static bool filter_key_known(const char *key, size_t len)
{
	static const char *const keys[] = {"id",      "parent",    "description", "type",   "inuse",
	                                   "mutable", "immutable", "shared",      "private"};
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		if (strlen(keys[k]) == len && strncmp(keys[k], key, len) == 0)
			return true;
	return false;
}

/* --filter K=V is containerd's K==V; K==V, K!=V and K~=RE pass through. */
static int filter_opt(struct cli *cli, int opt, const char *arg, void *userdata)
{
	struct filter_opts *o = userdata;
	if (opt == OPT_ALL || opt == 'a') {
		o->all = true;
		return 0;
	}
	if (opt == OPT_VERBOSE) {
		o->verbose = true;
		return 0;
	}
	if (opt == OPT_DRY_RUN) {
		o->dry_run = true;
		return 0;
	}
	if (opt == OPT_KEEP_DURATION) {
		if ((o->keep_duration_ns = parse_duration(arg)) < 0) {
			cli_usage_error(cli, "bad duration '%s': expected e.g. 48h, 7d, 1h30m",
			                arg);
			return -1;
		}
		return 0;
	}
	if (opt == OPT_KEEP_STORAGE) {
		if ((o->keep_bytes = parse_size(arg)) < 0) {
			cli_usage_error(cli, "bad size '%s': expected e.g. 10GB, 512MiB, 1.5G",
			                arg);
			return -1;
		}
		return 0;
	}
	if (o->n == sizeof(o->filters) / sizeof(o->filters[0])) {
		cli_usage_error(cli, "too many --filter options");
		return -1;
	}
	const char *eq = strchr(arg, '=');
	if (!eq || eq == arg) {
		cli_usage_error(cli, "bad filter '%s': expected KEY=VALUE", arg);
		return -1;
	}
	size_t klen = (size_t)(eq - arg) - (eq[-1] == '!' || eq[-1] == '~');
	if (!filter_key_known(arg, klen)) {
		cli_usage_error(cli, "unknown filter key '%.*s' in '%s'", (int)klen, arg, arg);
		return -1;
	}
	char *f = NULL;
	if (eq[1] == '=' || eq[-1] == '!' || eq[-1] == '~')
		f = strdup(arg);
	else if (asprintf(&f, "%.*s==%s", (int)(eq - arg), arg, eq + 1) < 0)
		f = NULL;
	if (!f)
		return -1;
	o->filters[o->n++] = f;
	return 0;
}

static void filter_opts_free(struct filter_opts *o)
{
	for (size_t k = 0; k < o->n; k++)
		free((char *)o->filters[k]);
	o->n = 0;
}

static const struct option filter_opts_table[] = {
	{"filter", required_argument, NULL, OPT_FILTER},
	{"all", no_argument, NULL, OPT_ALL},
	{"verbose-table", no_argument, NULL, OPT_VERBOSE},
	{0},
};

static const struct option prune_opts_table[] = {
	{"filter", required_argument, NULL, OPT_FILTER},
	{"all", no_argument, NULL, OPT_ALL},
	{"keep-duration", required_argument, NULL, OPT_KEEP_DURATION},
	{"keep-storage", required_argument, NULL, OPT_KEEP_STORAGE},
	{"dry-run", no_argument, NULL, OPT_DRY_RUN},
	{0},
};

typedef int (*filter_run_fn)(struct cli *cli, struct filter_opts *o);

/* Parses the filter options (and @shortopts), takes no positionals, opens the cache and runs
 * @run; frees the filters whatever happens. */
static int with_filters(struct cli *cli, int argc, char **argv, const char *shortopts,
                        const struct option *table, filter_run_fn run)
{
	struct filter_opts o = {0};
	int i = setup(cli, argc, argv, &(struct cli_opts){shortopts, table, filter_opt, &o}, 0, 0);
	int rc = i < 0 ? -i : run(cli, &o);
	filter_opts_free(&o);
	return rc;
}

/* cli_fail(), but a filter the library could not parse is a usage error. */
static int filter_fail(struct cli *cli, const struct filter_opts *o, cairn_error *e)
{
	if (o->n && cairn_error_code(e) == -EINVAL && strstr(cairn_error_message(e), "filter")) {
		cli_usage_error(cli, "%s", cairn_error_message(e));
		cairn_error_free(e);
		return EXIT_USAGE;
	}
	return cli_fail(cli, e);
}

static void print_du_rows(const cairn_record_info *infos, size_t n)
{
	printf("%-25s  %-9s  %-6s  %-6s  %10s  %s\n", "ID", "KIND", "IN USE", "SHARED", "SIZE",
	       "DESCRIPTION");
	for (size_t k = 0; k < n; k++) {
		char size[32];
		printf("%-25s  %-9s  %-6s  %-6s  %10s  %s\n", infos[k].id,
		       infos[k].is_mutable ? "mutable" : "immutable",
		       infos[k].in_use ? "yes" : "no", infos[k].shared ? "yes" : "no",
		       size_or_dash(infos[k].size, size, sizeof(size)), infos[k].description);
	}
}

/* The parts of the store as JSON (NULL on OOM). */
static json_t *store_json(const cairn_store_usage *u)
{
	return json_pack("{sI sI sI sI sI sI}", "blobs", (json_int_t)u->blobs, "snapshots",
	                 (json_int_t)u->snapshots, "metadata", (json_int_t)u->metadata, "ingest",
	                 (json_int_t)u->ingest, "tmp", (json_int_t)u->tmp, "other",
	                 (json_int_t)u->other);
}

static void print_store_parts(const cairn_store_usage *u)
{
	const struct {
		const char *name;
		uint64_t bytes;
	} parts[] = {{"blobs", u->blobs},       {"snapshots", u->snapshots},
	             {"metadata", u->metadata}, {"ingest", u->ingest},
	             {"tmp", u->tmp},           {"other", u->other}};
	printf("\n%-10s  %10s\n", "PART", "ON DISK");
	for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]); k++) {
		char b[32];
		printf("%-10s  %10s\n", parts[k].name,
		       cli_format_size(parts[k].bytes, b, sizeof(b)));
	}
	printf("\n");
}

static int du_run(struct cli *cli, struct filter_opts *o)
{
	cairn_record_info *infos = NULL;
	size_t n = 0;
	cairn_error *e = NULL;
	if (cairn_cache_disk_usage(cli->cache, o->filters, o->n, &infos, &n, &e) < 0)
		return filter_fail(cli, o, e);
	int64_t total = 0, reclaimable = 0;
	for (size_t k = 0; k < n; k++) {
		int64_t sz = infos[k].size > 0 ? infos[k].size : 0;
		total += sz;
		if (infos[k].reclaimable)
			reclaimable += sz;
	}
	/* The whole root (blobs, snapshots, meta.db and its WAL, ingests, tmp), as du -sx sees it.
	 */
	cairn_store_usage su;
	if (cairn_store_disk_usage(cli->store, &su, &e) < 0) {
		cairn_record_infos_free(infos, n);
		return cli_fail(cli, e);
	}
	int rc = EXIT_OK;
	if (cli->json) {
		rc = cli_json_print(json_pack("{so sI sI sI so}", "records", records_json(infos, n),
		                              "total", (json_int_t)su.total, "records_total",
		                              (json_int_t)total, "reclaimable",
		                              (json_int_t)reclaimable, "store", store_json(&su)));
	} else {
		if (cli->verbose || o->verbose) {
			print_du_rows(infos, n);
			print_store_parts(&su);
		}
		char a[32], b[32], t[32];
		printf("records:      %zu\nrecords size: %s\nreclaimable:  %s\ntotal:        %s "
		       "(everything under the root)\n",
		       n, cli_format_size((uint64_t)total, a, sizeof(a)),
		       cli_format_size((uint64_t)reclaimable, b, sizeof(b)),
		       cli_format_size(su.total, t, sizeof(t)));
	}
	cairn_record_infos_free(infos, n);
	return rc;
}

struct prune_state {
	struct cli *cli;
	json_t *list;
	int64_t freed;
	bool dry_run;
};

static int prune_one(const cairn_record_info *r, void *userdata)
{
	struct prune_state *st = userdata;
	st->freed += r->size > 0 ? r->size : 0;
	if (st->list)
		return json_array_append_new(st->list, record_json(r)) < 0 ? -ENOMEM : 0;
	if (!st->cli->quiet) {
		char size[32];
		printf("%s %s  %10s  %s\n", st->dry_run ? "would remove" : "removed", r->id,
		       size_or_dash(r->size, size, sizeof(size)), r->description);
	}
	return 0;
}

static int prune_run(struct cli *cli, struct filter_opts *o)
{
	struct prune_state st = {cli, cli->json ? json_array() : NULL, 0, o->dry_run};
	cairn_prune_options popts = {
		.version = CAIRN_PRUNE_OPTIONS_VERSION,
		.flags = (o->all ? CAIRN_PRUNE_ALL : 0) | (o->dry_run ? CAIRN_PRUNE_DRY_RUN : 0),
		.filters = o->filters,
		.n_filters = o->n,
		.fn = prune_one,
		.userdata = &st,
		.keep_duration_ns = o->keep_duration_ns,
		.keep_bytes = o->keep_bytes,
	};
	cairn_error *e = NULL;
	int r = cairn_cache_prune(cli->cache, &popts, &e);
	if (r < 0) {
		json_decref(st.list);
		return filter_fail(cli, o, e);
	}
	if (cli->json)
		return cli_json_print(json_pack("{so sI sb}", "removed", st.list, "freed",
		                                (json_int_t)st.freed, "dry_run", o->dry_run));
	char buf[32];
	if (!cli->quiet)
		printf("%s %d record%s, %s %s\n", o->dry_run ? "would prune" : "pruned", r,
		       r == 1 ? "" : "s", cli_format_size((uint64_t)st.freed, buf, sizeof(buf)),
		       o->dry_run ? "would be freed" : "freed");
	return EXIT_OK;
}

static int cmd_du(struct cli *cli, int argc, char **argv)
{
	return with_filters(cli, argc, argv, NULL, filter_opts_table, du_run);
}

static int cmd_prune(struct cli *cli, int argc, char **argv)
{
	return with_filters(cli, argc, argv, "a", prune_opts_table, prune_run);
}

const struct cli_command cmd_cache[] = {
	{"new", "", "create a writable record (a mutable ref); prints its id",
         "Options:\n"
         "  --parent REF   build on a committed record\n"
         "  --desc TEXT    a description, shown by ls and du\n"
         "  --no-retain    do not retain the record: the next command that takes and releases it\n"
         "                 without committing removes it\n",
         cmd_new, NULL},
	{"commit", "REF", "commit a writable record; prints the new immutable id",
         "The new record owns the data at once (the writable one is gone) and is retained.\n"
         "A record that is mounted cannot be committed: unmount it first.\n",
         cmd_commit, NULL},
	{"mount", "REF TARGET", "mount a record on TARGET (created if missing) until umount",
         "Options:\n"
         "  --ro   read-only (immutable records are always read-only)\n"
         "The mount holds the record: it is in use, never pruned, until `cairn umount TARGET`.\n",
         cmd_mount, NULL},
	{"umount", "TARGET...", "unmount what cairn mounted on TARGET", NULL, cmd_umount, NULL},
	{"mounts", "REF", "print the mount spec of a record as JSON",
         "Options:\n"
         "  --ro   the read-only form (BuildKit's conversion)\n"
         "For an immutable record the spec names a view that lives as long as this command:\n"
         "use `cairn mount` for a mount that lasts.\n",
         cmd_mounts, NULL},
	{"ls", "", "list records",
         "Columns: id, kind, in use, size (- until computed), created, description or tag.\n"
         "--json prints every field; -q prints ids only.\n",
         cmd_ls, NULL},
	{"info", "REF", "show everything about a record", NULL, cmd_info, NULL},
	{"rm", "REF...", "remove records (not ones in use or with children)", NULL, cmd_rm, NULL},
	{"tag", "REF NAME", "name a record; tagged records survive a plain prune", NULL, cmd_tag,
         NULL},
	{"untag", "NAME...", "remove tags", NULL, cmd_untag, NULL},
	{"du", "", "disk usage per record: size, in use, shared, reclaimable, totals",
         "Options:\n"
         "  --filter K=V     only records matching (id, parent, description, type, inuse,\n"
         "                   mutable, immutable, shared, private; K==V, K!=V, K~=RE too)\n"
         "  --verbose-table  a row per record and the store by part (also with -v)\n"
         "The total counts everything under the root as `du -sx` does: blobs, snapshots,\n"
         "metadata (meta.db and its WAL), ingest, tmp, other. --json: total, records_total,\n"
         "reclaimable, store (bytes by part) and records.\n",
         cmd_du, NULL},
	{"prune", "", "remove records nobody uses",
         "Options:\n"
         "  -a, --all        also shared (tagged) records and internal/frontend ones\n"
         "  --filter K=V     only records matching, as for du\n"
         "  --keep-duration D\n"
         "                   keep records used (or made) within D: 48h, 7d, 30m, 90s, 1h30m\n"
         "  --keep-storage SIZE\n"
         "                   remove only until all records take at most SIZE (10GB, 512MiB,\n"
         "                   1.5G, bytes), least recently used first, then least used\n"
         "  --dry-run        list what would go, with sizes; remove nothing\n",
         cmd_prune, NULL},
	{0},
};
