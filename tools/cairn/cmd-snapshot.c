/* SPDX-License-Identifier: MIT */
/* cairn snapshot ...: snapshotter plumbing with containerd's semantics; cairn umount. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The CLI is stricter than the library: keys name things a person types and scripts pass
 * around, so no '/', no '..', nothing empty. */
static int check_key(struct cli *cli, const char *what, const char *key)
{
	if (!*key || strchr(key, '/') || strstr(key, "..") || strlen(key) > 4096) {
		fprintf(stderr, "cairn: invalid %s '%s': must be non-empty, without '/' or '..'\n",
		        what, key);
		return EXIT_FAIL;
	}
	return 0;
}

/* Options, argument count, key checks and the store: the index of the first positional, or
 * -(exit code). @nkeys leading positionals are checked as keys. */
static int setup(struct cli *cli, int argc, char **argv, int min, int max, int nkeys)
{
	int i = cli_setup(cli, argc, argv, NULL, min, max, CLI_OPEN_NONE);
	if (i < 0)
		return i;
	int r;
	for (int k = 0; k < nkeys && i + k < argc; k++)
		if ((r = check_key(cli, "key", argv[i + k])))
			return -r;
	r = cli_open_store(cli, 0);
	return r ? -r : i;
}

json_t *cli_mounts_json(const cairn_mount *m, size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		json_t *opts = json_array();
		for (size_t k = 0; opts && k < m[i].n_options; k++)
			json_array_append_new(opts, json_string(m[i].options[k]));
		json_array_append_new(arr, json_pack("{ss ss so}", "type", m[i].type, "source",
		                                     m[i].source, "options", opts));
	}
	return arr;
}

int cli_print_mounts(cairn_mount *m, size_t n)
{
	int rc = cli_json_print(cli_mounts_json(m, n));
	cairn_mounts_free(m, n);
	return rc;
}

/* Prints the mounts of a new snapshot: JSON with --json, nothing with -q, the key otherwise. */
static int print_created(struct cli *cli, const char *key, cairn_mount *m, size_t n)
{
	int rc = EXIT_OK;
	if (cli->json)
		rc = cli_json_print(
			json_pack("{ss so}", "key", key, "mounts", cli_mounts_json(m, n)));
	else if (!cli->quiet)
		printf("%s\n", key);
	cairn_mounts_free(m, n);
	return rc;
}

/* prepare KEY [PARENT] or view KEY PARENT. */
static int create(struct cli *cli, int argc, char **argv, bool view)
{
	int i = setup(cli, argc, argv, view ? 2 : 1, 2, 2);
	if (i < 0)
		return -i;
	const char *parent = i + 1 < argc ? argv[i + 1] : NULL;
	cairn_mount *m = NULL;
	size_t n = 0;
	cairn_error *e = NULL;
	int r = view ? cairn_snapshot_view(cli->store, argv[i], parent, &m, &n, &e)
	             : cairn_snapshot_prepare(cli->store, argv[i], parent, &m, &n, &e);
	if (r < 0)
		return cli_fail(cli, e);
	return print_created(cli, argv[i], m, n);
}

static int prepare(struct cli *cli, int argc, char **argv)
{
	return create(cli, argc, argv, false);
}

static int view(struct cli *cli, int argc, char **argv)
{
	return create(cli, argc, argv, true);
}

static int commit(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, 2, 2, 2);
	if (i < 0)
		return -i;
	cairn_error *e = NULL;
	if (cairn_snapshot_commit(cli->store, argv[i], argv[i + 1], &e) < 0)
		return cli_fail(cli, e);
	return cli_print_value(cli, "name", argv[i], cli->quiet);
}

static int rm_one(struct cli *cli, const char *key, char **ret_name)
{
	cairn_error *e = NULL;
	int r = check_key(cli, "key", key);
	if (!r && cairn_snapshot_remove(cli->store, key, &e) < 0)
		r = cli_fail(cli, e);
	return r;
}

static int rm(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, 1, -1, 0);
	if (i < 0)
		return -i;
	/* No "removed KEY" lines: only --json reports what went. */
	return cli_remove_each(cli, argc, argv, i, rm_one, false);
}

static int mounts(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, 1, 1, 1);
	if (i < 0)
		return -i;
	cairn_mount *m = NULL;
	size_t n = 0;
	cairn_error *e = NULL;
	if (cairn_snapshot_mounts(cli->store, argv[i], &m, &n, &e) < 0)
		return cli_fail(cli, e);
	return cli_print_mounts(m, n);
}

static int usage(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, 1, 1, 1);
	if (i < 0)
		return -i;
	int64_t size = 0, inodes = 0;
	cairn_error *e = NULL;
	if (cairn_snapshot_usage(cli->store, argv[i], &size, &inodes, &e) < 0)
		return cli_fail(cli, e);
	if (cli->json)
		return cli_json_print(json_pack("{ss sI sI}", "key", argv[i], "size",
		                                (json_int_t)size, "inodes", (json_int_t)inodes));
	char buf[32];
	printf("%s\t%s\t%lld inodes\n", argv[i], cli_format_size((uint64_t)size, buf, sizeof(buf)),
	       (long long)inodes);
	return EXIT_OK;
}

static int mount_cmd(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, 2, 2, 1);
	if (i < 0)
		return -i;
	const char *target = argv[i + 1];
	cairn_mount *m = NULL;
	size_t n = 0;
	cairn_error *e = NULL;
	if (cairn_snapshot_mounts(cli->store, argv[i], &m, &n, &e) < 0)
		return cli_fail(cli, e);
	if (cli_make_mount_point(target)) {
		cairn_mounts_free(m, n);
		return EXIT_FAIL;
	}
	int r = cairn_mount_apply(m, n, target, &e);
	cairn_mounts_free(m, n);
	if (r < 0)
		return cli_fail(cli, e);
	if (cli->json)
		return cli_json_print(json_pack("{ss ss}", "key", argv[i], "target", target));
	if (!cli->quiet)
		printf("mounted %s on %s\n", argv[i], target);
	return EXIT_OK;
}

struct ls_state {
	struct cli *cli;
	json_t *list;
};

static const char *kind_name(cairn_snapshot_kind k)
{
	return k == CAIRN_SNAPSHOT_VIEW     ? "view"
	       : k == CAIRN_SNAPSHOT_ACTIVE ? "active"
	                                    : "committed";
}

static int ls_one(const cairn_snapshot_info *info, void *userdata)
{
	struct ls_state *st = userdata;
	if (st->list) {
		json_t *labels = json_object();
		for (size_t k = 0; labels && k < info->n_labels; k++)
			json_object_set_new(labels, info->label_keys[k],
			                    json_string(info->label_values[k]));
		return json_array_append_new(
			       st->list,
			       json_pack("{ss ss ss sI sI so}", "name", info->name, "kind",
		                         kind_name(info->kind), "parent", info->parent,
		                         "created_ns", (json_int_t)info->created_ns, "updated_ns",
		                         (json_int_t)info->updated_ns, "labels", labels)) < 0
		               ? -ENOMEM
		               : 0;
	}
	if (st->cli->quiet)
		printf("%s\n", info->name);
	else
		printf("%-32s  %-9s  %s\n", info->name, kind_name(info->kind), info->parent);
	return 0;
}

static int ls(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, 0, -1, 0);
	if (i < 0)
		return -i;
	struct ls_state st = {cli, cli->json ? json_array() : NULL};
	if (!cli->json && !cli->quiet)
		printf("%-32s  %-9s  %s\n", "KEY", "KIND", "PARENT");
	cairn_error *e = NULL;
	if (cairn_snapshot_walk(cli->store, (const char *const *)argv + i, (size_t)(argc - i),
	                        ls_one, &st, &e) < 0) {
		json_decref(st.list);
		return cli_fail(cli, e);
	}
	return cli->json ? cli_json_print(st.list) : EXIT_OK;
}

const struct cli_command cmd_snapshot[] = {
	{"ls", "[FILTER...]", "list snapshots",
         "Filters use containerd's syntax: name==K, parent==P, kind==committed, labels.KEY~=RE;\n"
         "a comma joins conditions, several filters match any of them.\n",
         ls, NULL},
	{"prepare", "KEY [PARENT]", "create an active (writable) snapshot on a committed parent",
         NULL, prepare, NULL},
	{"view", "KEY PARENT", "create a read-only view of a committed snapshot", NULL, view, NULL},
	{"commit", "NAME KEY", "commit active snapshot KEY as NAME (no data is copied)", NULL,
         commit, NULL},
	{"rm", "KEY...", "remove snapshots (not ones that have children)", NULL, rm, NULL},
	{"mounts", "KEY", "print the mount spec of an active or view snapshot as JSON", NULL,
         mounts, NULL},
	{"usage", "KEY", "show the disk usage of a snapshot's own layer", NULL, usage, NULL},
	{"mount", "KEY TARGET", "mount an active or view snapshot on TARGET (created if missing)",
         NULL, mount_cmd, NULL},
	{0},
};
