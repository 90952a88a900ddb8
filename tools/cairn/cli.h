/* SPDX-License-Identifier: MIT */
/* The cairn command: shared state, option parsing, output. Uses only the public API. */
#pragma once

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>

#include "cairn/cairn.h"

/* Exit codes (the contract of DESIGN.md). */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2,
	EXIT_NOTFOUND = 3,
	EXIT_BUSY = 4,
};

struct cli {
	const char *root;
	const char *snapshotter;
	bool json;
	bool quiet;
	int verbose;
	const char *prog; /* "cairn content add": for messages and usage */
	const struct cli_command *cmd;
	cairn_store *store;
	cairn_cache *cache; /* opened by cli_open_cache(); closed by main before the store */
};

struct cli_command {
	const char *name;
	const char *args;    /* "FILE" */
	const char *summary; /* one line */
	const char *help;    /* options and details, printed by --help */
	int (*run)(struct cli *cli, int argc, char **argv);
	const struct cli_command *subs; /* NULL-terminated table of subcommands, or NULL */
};

/*
 * cli_parse() - parse @argc/@argv of one command: the global options (anywhere) plus @opts
 * (getopt_long, may be NULL); calls @fn(cli, opt, optarg, userdata) for each command option.
 * --help prints the command's help and exits 0. Returns the index of the first positional
 * argument (positionals are permuted to the end), or -1 after printing a usage error.
 */
typedef int (*cli_opt_fn)(struct cli *cli, int opt, const char *arg, void *userdata);
int cli_parse(struct cli *cli, int argc, char **argv, const char *shortopts,
              const struct option *opts, cli_opt_fn fn, void *userdata);

/* cli_usage_error() - "cairn: <msg>" + the command's usage line on stderr; returns EXIT_USAGE. */
int cli_usage_error(struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* cli_nargs() - check the positional count is within [min, max]; usage error otherwise. */
int cli_nargs(struct cli *cli, int n, int min, int max);

/* cli_open_store() - open the store named by --root (or the default); prints the error. */
int cli_open_store(struct cli *cli, unsigned flags);

/* cli_fail() - print "cairn: <message of e>" and return the exit code for its code. Frees @e. */
int cli_fail(struct cli *cli, cairn_error *e);

/* cli_exit_code() - exit code for a library return code. */
int cli_exit_code(int code);

/* cli_json_print() - print @doc (stolen) as one JSON document on stdout. */
int cli_json_print(json_t *doc);

/* cli_format_size() - "1.5 MiB" into @buf. */
const char *cli_format_size(uint64_t bytes, char *buf, size_t len);
/* cli_format_time() - local "YYYY-MM-DD HH:MM:SS" of @ns into @buf. */
const char *cli_format_time(int64_t ns, char *buf, size_t len);

/* cli_mounts_json() - a mount spec list as a JSON array (new reference; NULL on OOM). */
json_t *cli_mounts_json(const cairn_mount *m, size_t n);

/* The command tables and commands, one file per group. */
extern const struct cli_command cmd_content[];
extern const struct cli_command cmd_snapshot[];
extern const struct cli_command cmd_cache[]; /* top-level: new, commit, mount, ls, ... */

/* cli_open_cache() - open the store (as cli_open_store) and its cache manager. */
int cli_open_cache(struct cli *cli, unsigned flags);
