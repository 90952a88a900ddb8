/* SPDX-License-Identifier: MIT */
/* cairn gc, cairn fsck, cairn lease ls|rm: the store's housekeeping. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPT_DRY_RUN = 0x3000, OPT_REPAIR };

static int flag_opt(struct cli *cli, int opt, const char *arg, void *userdata)
{
	(void)cli;
	(void)opt;
	(void)arg;
	*(bool *)userdata = true;
	return 0;
}

/* ---- gc ---- */

static json_t *report_json(const cairn_gc_report *r, bool dry_run)
{
	return json_pack("{sb sI sI sI sI sI sI sI sI sI sI sI sI}", "dry_run", dry_run,
	                 "snapshots", (json_int_t)r->snapshots, "snapshot_bytes",
	                 (json_int_t)r->snapshot_bytes, "blobs", (json_int_t)r->blobs, "blob_bytes",
	                 (json_int_t)r->blob_bytes, "ingests", (json_int_t)r->ingests,
	                 "ingest_bytes", (json_int_t)r->ingest_bytes, "leases",
	                 (json_int_t)r->leases, "tmp_entries", (json_int_t)r->tmp_entries,
	                 "tmp_bytes", (json_int_t)r->tmp_bytes, "labels", (json_int_t)r->labels,
	                 "bytes", (json_int_t)r->bytes, "skipped", (json_int_t)r->skipped);
}

static void print_report(const cairn_gc_report *r, bool dry_run)
{
	char a[32], b[32], c[32], d[32], t[32];
	const char *verb = dry_run ? "would remove" : "removed";
	printf("%s %zu snapshots (%s), %zu blobs (%s), %zu ingests (%s), %zu leases, %zu tmp "
	       "entries (%s)\n",
	       verb, r->snapshots, cli_format_size(r->snapshot_bytes, a, sizeof(a)), r->blobs,
	       cli_format_size(r->blob_bytes, b, sizeof(b)), r->ingests,
	       cli_format_size(r->ingest_bytes, c, sizeof(c)), r->leases, r->tmp_entries,
	       cli_format_size(r->tmp_bytes, d, sizeof(d)));
	if (r->labels)
		printf("%s the labels of %zu blobs not in the store (pruned lazy records)\n", verb,
		       r->labels);
	printf("%s %s in total\n", dry_run ? "would free" : "freed",
	       cli_format_size(r->bytes, t, sizeof(t)));
	if (r->skipped)
		printf("%zu objects could not be removed (run with -vv for why)\n", r->skipped);
}

int cmd_gc_run(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"dry-run", no_argument, NULL, OPT_DRY_RUN},
		{0},
	};
	bool dry_run = false;
	int i = cli_setup(cli, argc, argv, &(struct cli_opts){NULL, opts, flag_opt, &dry_run}, 0, 0,
	                  CLI_OPEN_NONE);
	if (i < 0)
		return -i;
	/* gc must have the store to itself: a busy store is exit 4 at once, never a wait. */
	int r = cli_open_store(cli, CAIRN_STORE_EXCLUSIVE | CAIRN_STORE_NOWAIT);
	if (r)
		return r;
	cairn_gc_report rep;
	cairn_error *e = NULL;
	if (cairn_gc(cli->store, dry_run ? CAIRN_GC_DRY_RUN : 0, &rep, &e) < 0)
		return cli_fail(cli, e);
	if (cli->json)
		return cli_json_print(report_json(&rep, dry_run));
	if (!cli->quiet)
		print_report(&rep, dry_run);
	return rep.skipped ? EXIT_FAIL : EXIT_OK;
}

/* ---- fsck ---- */

struct fsck_state {
	struct cli *cli;
	json_t *list;
};

static int fsck_one(const cairn_fsck_problem *p, void *userdata)
{
	struct fsck_state *st = userdata;
	if (st->list)
		return json_array_append_new(st->list,
		                             json_pack("{ss ss ss sb}", "kind", p->kind, "object",
		                                       p->object, "message", p->message, "repaired",
		                                       p->repaired)) < 0
		               ? -ENOMEM
		               : 0;
	printf("%s%s\n", p->repaired ? "repaired: " : "", p->message);
	return 0;
}

int cmd_fsck_run(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"repair", no_argument, NULL, OPT_REPAIR},
		{0},
	};
	bool repair = false;
	int i = cli_setup(cli, argc, argv, &(struct cli_opts){NULL, opts, flag_opt, &repair}, 0, 0,
	                  CLI_OPEN_NONE);
	if (i < 0)
		return -i;
	int r = cli_open_store(cli, repair ? CAIRN_STORE_EXCLUSIVE | CAIRN_STORE_NOWAIT : 0);
	if (r)
		return r;
	struct fsck_state st = {cli, cli->json ? json_array() : NULL};
	size_t problems = 0;
	cairn_error *e = NULL;
	if (cairn_fsck(cli->store, repair ? CAIRN_FSCK_REPAIR : 0, fsck_one, &st, &problems, &e) <
	    0) {
		json_decref(st.list);
		return cli_fail(cli, e);
	}
	if (cli->json) {
		cli_json_print(json_pack("{so sI sb}", "problems", st.list, "unfixed",
		                         (json_int_t)problems, "clean", problems == 0));
	} else if (problems) {
		printf("%zu problem%s %s\n", problems, problems == 1 ? "" : "s",
		       repair ? "could not be fixed"
		              : "found (cairn fsck --repair fixes what it can)");
	} else if (!cli->quiet) {
		printf("store is consistent\n");
	}
	return problems ? EXIT_FAIL : EXIT_OK;
}

/* ---- lease ls|rm ---- */

static json_t *lease_json(const cairn_lease_info *l)
{
	json_t *labels = json_object(), *res = json_array();
	for (size_t i = 0; labels && i < l->n_labels; i++)
		json_object_set_new(labels, l->label_keys[i], json_string(l->label_values[i]));
	for (size_t i = 0; res && i < l->n_resources; i++)
		json_array_append_new(res, json_pack("{ss ss}", "type", l->resources[i].type, "id",
		                                     l->resources[i].id));
	return json_pack("{ss sI sI sI sb so so}", "id", l->id, "created_ns",
	                 (json_int_t)l->created_ns, "expires_ns", (json_int_t)l->expires_ns, "pid",
	                 (json_int_t)l->pid, "live", l->live, "labels", labels, "resources", res);
}

static void lease_print(const cairn_lease_info *l, bool quiet)
{
	if (quiet) {
		printf("%s\n", l->id);
		return;
	}
	char created[32], expires[32] = "never", pid[24] = "-";
	cli_format_time(l->created_ns, created, sizeof(created));
	if (l->expires_ns)
		cli_format_time(l->expires_ns, expires, sizeof(expires));
	if (l->pid)
		snprintf(pid, sizeof(pid), "%lld", (long long)l->pid);
	printf("%-32s  %-19s  %-19s  %-8s  %-5s  %zu\n", l->id, created, expires, pid,
	       l->live ? "yes" : "no", l->n_resources);
}

static int lease_ls(struct cli *cli, int argc, char **argv)
{
	int i = cli_setup(cli, argc, argv, NULL, 0, 0, CLI_OPEN_STORE);
	if (i < 0)
		return -i;
	cairn_lease_info *infos = NULL;
	size_t n = 0;
	cairn_error *e = NULL;
	if (cairn_lease_list(cli->store, &infos, &n, &e) < 0)
		return cli_fail(cli, e);
	if (cli->json) {
		json_t *list = json_array();
		for (size_t k = 0; list && k < n; k++)
			json_array_append_new(list, lease_json(&infos[k]));
		cairn_lease_infos_free(infos, n);
		return cli_json_print(list);
	}
	if (!cli->quiet)
		printf("%-32s  %-19s  %-19s  %-8s  %-5s  %s\n", "ID", "CREATED", "EXPIRES", "PID",
		       "LIVE", "RESOURCES");
	for (size_t k = 0; k < n; k++)
		lease_print(&infos[k], cli->quiet);
	cairn_lease_infos_free(infos, n);
	return EXIT_OK;
}

static int lease_rm_one(struct cli *cli, const char *arg, char **ret_name)
{
	(void)ret_name;
	cairn_error *e = NULL;
	return cairn_lease_delete(cli->store, arg, &e) < 0 ? cli_fail(cli, e) : EXIT_OK;
}

static int lease_rm(struct cli *cli, int argc, char **argv)
{
	int i = cli_setup(cli, argc, argv, NULL, 1, argc, CLI_OPEN_STORE);
	if (i < 0)
		return -i;
	return cli_remove_each(cli, argc, argv, i, lease_rm_one, true);
}

const struct cli_command cmd_lease[] = {
	{"ls", "", "list leases: what they hold, when they expire, whether they are live", NULL,
         lease_ls, NULL},
	{"rm", "ID...", "delete leases (what they held is collected by the next gc)", NULL,
         lease_rm, NULL},
	{0},
};

const char cmd_gc_help[] = "Options:\n  --dry-run  report what would be removed, remove nothing\n"
			   "Needs the store to itself: exits 4 at once when another process has "
			   "it open.\n";

const char cmd_fsck_help[] = "Options:\n  --repair  fix what can be fixed (needs the store to "
			     "itself)\nExit 0 when the store is consistent, 1 listing the "
			     "problems otherwise.\n";
