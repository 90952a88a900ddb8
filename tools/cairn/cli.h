/* SPDX-License-Identifier: MIT */
/* The cairn command: shared state, option parsing, output. Uses only the public API. */
#pragma once

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <time.h>

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

/* A progress bar on stderr: LABEL [####----] done / total  rate  ETA. */
struct cli_bar {
	const char *label;
	struct timespec start, last;
	bool shown;
};
/* cli_bar_start() - set @b up (it is the callback's userdata); returns the callback to hand to
 * the library, or NULL when no bar is wanted (stderr not a terminal, -q, --json). */
cairn_progress_fn cli_bar_start(struct cli *cli, struct cli_bar *b, const char *label);
/* cli_bar_end() - end the bar's line, if one was drawn. */
void cli_bar_end(struct cli_bar *b);

/* cli_compression() - 0 for "gzip", "zstd" or "none" with an optional ":LEVEL" (gzip 0-9,
 * zstd 1-22); else prints a usage error naming @arg and returns -1. */
int cli_compression(struct cli *cli, const char *arg);
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
/* cmd-gc.c: the top-level gc, fsck and lease commands. */
extern const struct cli_command cmd_lease[];
extern const char cmd_gc_help[], cmd_fsck_help[];
int cmd_gc_run(struct cli *cli, int argc, char **argv);
int cmd_fsck_run(struct cli *cli, int argc, char **argv);
extern const struct cli_command cmd_layer[]; /* top-level: extract, diff, import-blob */
extern const struct cli_command cmd_image[]; /* top-level: import, export */

/* cmd-push.c: push, and the registry options push and the cache group share. */
enum {
	CLI_OPT_CREDS = 0x5000,
	CLI_OPT_INSECURE,
	CLI_OPT_COMPRESSION,
	CLI_OPT_JOBS,
	CLI_OPT_SDE,
};
/* clang-format off */
#define CLI_REMOTE_OPTIONS                                                                         \
	{"creds", required_argument, NULL, CLI_OPT_CREDS},                                         \
	{"insecure", no_argument, NULL, CLI_OPT_INSECURE},                                         \
	{"jobs", required_argument, NULL, CLI_OPT_JOBS}
#define CLI_REMOTE_HELP                                                                            \
	"  --creds USER:PASS        credentials (default: $DOCKER_CONFIG/config.json or\n"         \
	"                           ~/.docker/config.json)\n"                                      \
	"  --insecure               plain http (a registry on localhost)\n"                        \
	"  --jobs N                 blobs moved at once (default 4)\n"
/* clang-format on */
struct cli_remote {
	cairn_remote_options ro;
	struct cli_bar bar;
};
/* cli_remote_opt() - handle one of the options above into @o: 1 if it was one, 0 if not, -1
 * after a usage error. */
int cli_remote_opt(struct cli *cli, int opt, const char *arg, struct cli_remote *o);
/* cli_remote_begin() - ignore SIGPIPE, start the progress bar, attach the registry fetcher to
 * the cache (opened). Returns an exit code. */
int cli_remote_begin(struct cli *cli, struct cli_remote *o, const char *label);
/* cli_push_json() - a push or cache export info as JSON (new reference). */
json_t *cli_push_json(const cairn_push_info *info);
extern const char cmd_push_help[];
int cmd_push_run(struct cli *cli, int argc, char **argv);
/* cmd-remote.c: cairn pull. */
extern const char cmd_pull_help[];
int cmd_pull_run(struct cli *cli, int argc, char **argv);
extern const struct cli_command cmd_cache_remote[]; /* cairn cache export / import */

/* cli_open_cache() - open the store (as cli_open_store) and its cache manager. */
int cli_open_cache(struct cli *cli, unsigned flags);

/* The options of one command for cli_setup(): as the arguments of cli_parse(). */
struct cli_opts {
	const char *shortopts;
	const struct option *longopts;
	cli_opt_fn fn;
	void *userdata;
};

/* What cli_setup() opens once the arguments check out. */
enum cli_open {
	CLI_OPEN_NONE,
	CLI_OPEN_STORE, /* cli_open_store() */
	CLI_OPEN_CACHE, /* cli_open_cache() */
};

/*
 * cli_setup() - cli_parse() with @o (NULL: none but the global options), cli_nargs() within
 * [@min, @max], then open what @open names (with no flags). Returns the index of the first
 * positional, or -(exit code) after printing the error.
 */
int cli_setup(struct cli *cli, int argc, char **argv, const struct cli_opts *o, int min, int max,
              enum cli_open open);

/* cli_print_value() - {"@key": @value} with --json; else @value on a line unless @quiet. Returns
 * an exit code. */
int cli_print_value(struct cli *cli, const char *key, const char *value, bool quiet);

/* cli_make_mount_point() - create directory @target unless it exists; prints the error. Returns
 * EXIT_OK or EXIT_FAIL. */
int cli_make_mount_point(const char *target);

/* cli_print_mounts() - print a mount spec list as JSON (cli_mounts_json) and free it. */
int cli_print_mounts(cairn_mount *m, size_t n);

/*
 * Removes the thing @arg names, printing any error: 0 or an exit code. May set *@ret_name to
 * the name to report instead of @arg (freed by the caller).
 */
typedef int (*cli_remove_fn)(struct cli *cli, const char *arg, char **ret_name);

/*
 * cli_remove_each() - @fn on each of argv[@i..@argc-1], going on past failures. With --json
 * prints {"removed": [names]}; otherwise "removed NAME" per success when @print and not -q.
 * Returns the first failure's exit code, or EXIT_OK.
 */
int cli_remove_each(struct cli *cli, int argc, char **argv, int i, cli_remove_fn fn, bool print);
