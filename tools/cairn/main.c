/* SPDX-License-Identifier: MIT */
/* cairn: parse the global options, find the command, run it. */
#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static int cmd_version(struct cli *cli, int argc, char **argv);
static int cmd_help(struct cli *cli, int argc, char **argv);

static const struct cli_command commands[] = {
	{"content", "COMMAND", "add, list, read and remove blobs", NULL, NULL, cmd_content},
	{"snapshot", "COMMAND", "prepare, view, commit, mount and remove snapshots", NULL, NULL,
         cmd_snapshot},
	{"gc", "", "remove what nothing references", cmd_gc_help, cmd_gc_run, NULL},
	{"fsck", "", "check the store and repair it", cmd_fsck_help, cmd_fsck_run, NULL},
	{"lease", "COMMAND", "list and remove leases", NULL, NULL, cmd_lease},
	{"push", "REF REGISTRY/REPO[:TAG]", "push a record and its parents as an image",
         cmd_push_help, cmd_push_run, NULL},
	{"pull", "REGISTRY/REPO[:TAG|@DIGEST]", "make an image of a registry lazy records",
         cmd_pull_help, cmd_pull_run, NULL},
	{"cache", "COMMAND", "share record chains through a registry (cache manifests)", NULL, NULL,
         cmd_cache_remote},
	{"version", "", "print the version", NULL, cmd_version, NULL},
	{"help", "[COMMAND]", "show help for a command", NULL, cmd_help, NULL},
	{0},
};

static const struct cli_command top = {"", "COMMAND", "", NULL, NULL, commands};

static const char global_help[] =
	"Global options (accepted anywhere on the line):\n"
	"  --root DIR          store directory (default: $CAIRN_ROOT, /var/lib/cairn as root,\n"
	"                      $XDG_DATA_HOME/cairn otherwise)\n"
	"  --snapshotter NAME  overlay or native (default: overlay where it mounts)\n"
	"  --json              print one JSON document on stdout and nothing else\n"
	"  -q, --quiet         print only what scripts need\n"
	"  -v, --verbose       more detail (repeat for debug logs on stderr)\n"
	"  -h, --help          help for the command\n"
	"\n"
	"Exit codes: 0 ok, 1 failed, 2 usage error, 3 not found, 4 store busy.\n";

enum { OPT_ROOT = 0x1000, OPT_SNAPSHOTTER, OPT_JSON, OPT_VERSION };

static const struct option global_opts[] = {
	{"root", required_argument, NULL, OPT_ROOT},
	{"snapshotter", required_argument, NULL, OPT_SNAPSHOTTER},
	{"json", no_argument, NULL, OPT_JSON},
	{"quiet", no_argument, NULL, 'q'},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{0},
};

static void print_help(struct cli *cli, FILE *out)
{
	const struct cli_command *c = cli->cmd;
	fprintf(out, "Usage: %s%s%s\n", cli->prog, *c->args ? " " : "", c->args);
	if (c->summary && *c->summary)
		fprintf(out, "\n%c%s.\n",
		        c->summary[0] >= 'a' && c->summary[0] <= 'z' ? c->summary[0] - 'a' + 'A'
		                                                     : c->summary[0],
		        c->summary + 1);
	if (c->help)
		fprintf(out, "\n%s", c->help);
	if (c->subs) {
		fprintf(out, "\nCommands:\n");
		if (c->subs == commands)
			for (const struct cli_command *s = cmd_cache; s->name; s++)
				fprintf(out, "  %-12s %s\n", s->name, s->summary);
		if (c->subs == commands)
			for (const struct cli_command *s = cmd_layer; s->name; s++)
				fprintf(out, "  %-12s %s\n", s->name, s->summary);
		if (c->subs == commands)
			for (const struct cli_command *s = cmd_image; s->name; s++)
				fprintf(out, "  %-12s %s\n", s->name, s->summary);
		for (const struct cli_command *s = c->subs; s->name; s++)
			fprintf(out, "  %-12s %s\n", s->name, s->summary);
	}
	fprintf(out, "\n%s", global_help);
}

int cli_exit_code(int code)
{
	if (code >= 0)
		return EXIT_OK;
	if (code == -ENOENT)
		return EXIT_NOTFOUND;
	if (code == CAIRN_ELOCKED)
		return EXIT_BUSY;
	return EXIT_FAIL;
}

int cli_fail(struct cli *cli, cairn_error *e)
{
	int code = cairn_error_code(e);
	fprintf(stderr, "cairn: %s\n",
	        *cairn_error_message(e) ? cairn_error_message(e) : cairn_strerror(code));
	cairn_error_free(e);
	return cli_exit_code(code ? code : -EIO);
}

int cli_usage_error(struct cli *cli, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "cairn: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nUsage: %s%s%s\nTry '%s --help' for more information.\n", cli->prog,
	        *cli->cmd->args ? " " : "", cli->cmd->args, cli->prog);
	return EXIT_USAGE;
}

int cli_compression(struct cli *cli, const char *arg)
{
	const char *colon = strchr(arg, ':');
	size_t n = colon ? (size_t)(colon - arg) : strlen(arg);
	bool gzip = n == 4 && strncmp(arg, "gzip", 4) == 0;
	bool zstd = n == 4 && strncmp(arg, "zstd", 4) == 0;
	bool none = n == 4 && strncmp(arg, "none", 4) == 0;
	if (!gzip && !zstd && !none)
		return (cli_usage_error(cli, "unknown compression '%s' (gzip, zstd or none)", arg),
		        -1);
	if (!colon)
		return 0;
	char *end = NULL;
	errno = 0;
	long v = strtol(colon + 1, &end, 10);
	if (none || errno || end == colon + 1 || *end || v < (gzip ? 0 : 1) || v > (gzip ? 9 : 22))
		return (cli_usage_error(cli, "bad compression level in '%s' (gzip:0-9, zstd:1-22)",
		                        arg),
		        -1);
	return 0;
}

int cli_nargs(struct cli *cli, int n, int min, int max)
{
	if (n < min)
		return cli_usage_error(cli, "missing argument");
	if (max >= 0 && n > max)
		return cli_usage_error(cli, "too many arguments");
	return 0;
}

static void log_to_stderr(cairn_log_level level, const char *message, void *userdata)
{
	fprintf(stderr, "cairn: debug: %s\n", message);
}

/* Handles a global option; 1 if @opt was one, 0 if not, -1 on error. */
static int global_option(struct cli *cli, int opt, const char *arg)
{
	switch (opt) {
	case OPT_ROOT:
		cli->root = arg;
		return 1;
	case OPT_SNAPSHOTTER:
		if (strcmp(arg, "overlay") != 0 && strcmp(arg, "native") != 0) {
			cli_usage_error(cli, "unknown snapshotter '%s' (overlay or native)", arg);
			return -1;
		}
		cli->snapshotter = arg;
		return 1;
	case OPT_JSON:
		cli->json = true;
		return 1;
	case 'q':
		cli->quiet = true;
		return 1;
	case 'v':
		if (++cli->verbose >= 2)
			cairn_log_set(log_to_stderr, NULL);
		return 1;
	case 'h':
		print_help(cli, stdout);
		exit(EXIT_OK);
	}
	return 0;
}

int cli_parse(struct cli *cli, int argc, char **argv, const char *shortopts,
              const struct option *opts, cli_opt_fn fn, void *userdata)
{
	struct option all[64];
	size_t n = 0;
	for (const struct option *o = opts; o && o->name && n < 48; o++)
		all[n++] = *o;
	for (const struct option *o = global_opts; o->name; o++)
		all[n++] = *o;
	all[n] = (struct option){0};
	char shorts[64];
	snprintf(shorts, sizeof(shorts), ":qvh%s", shortopts ? shortopts : "");
	optind = 0; /* 0: reinitialise getopt, permuting positionals to the end */
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, shorts, all, NULL)) != -1) {
		if (opt == '?') {
			if (optopt)
				cli_usage_error(cli, "unknown option '-%c'", optopt);
			else
				cli_usage_error(cli, "unknown option '%s'", argv[optind - 1]);
			return -1;
		}
		if (opt == ':') {
			cli_usage_error(cli, "option '%s' needs an argument", argv[optind - 1]);
			return -1;
		}
		int g = global_option(cli, opt, optarg);
		if (g < 0)
			return -1;
		if (g == 0 && (!fn || fn(cli, opt, optarg, userdata) < 0))
			return -1;
	}
	return optind;
}

int cli_open_store(struct cli *cli, unsigned flags)
{
	char *def = NULL;
	const char *root = cli->root;
	if (!root) {
		def = cairn_store_default_root();
		if (!def) {
			fprintf(stderr,
			        "cairn: no store root: give --root DIR or set CAIRN_ROOT\n");
			return EXIT_FAIL;
		}
		root = def;
	}
	cairn_store_options opts = {
		.version = CAIRN_STORE_OPTIONS_VERSION,
		.flags = flags | (getenv("CAIRN_NOWAIT") ? CAIRN_STORE_NOWAIT : 0),
		.snapshotter = cli->snapshotter,
	};
	cairn_error *e = NULL;
	int r = cairn_store_open(root, &opts, &cli->store, &e);
	free(def);
	return r < 0 ? cli_fail(cli, e) : 0;
}

int cli_open_cache(struct cli *cli, unsigned flags)
{
	int r = cli->store ? 0 : cli_open_store(cli, flags);
	if (r)
		return r;
	cairn_error *e = NULL;
	if (cairn_cache_open(cli->store, &cli->cache, &e) < 0)
		return cli_fail(cli, e);
	/* Lazy records (pull, cache import) fetch their blobs from the registry their source names
	 * ("http://" kept there for --insecure pulls) when extracted, mounted or exported; the
	 * credentials come from $CAIRN_REGISTRY_CREDS, else the docker config. libcurl's TLS
	 * writes to a closed connection raise SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	cairn_remote_options ro = {.creds = getenv("CAIRN_REGISTRY_CREDS")};
	if (cairn_remote_attach(cli->cache, &ro, &e) < 0)
		return cli_fail(cli, e);
	return 0;
}

int cli_setup(struct cli *cli, int argc, char **argv, const struct cli_opts *o, int min, int max,
              enum cli_open open)
{
	static const struct cli_opts none = {0};
	if (!o)
		o = &none;
	int i = cli_parse(cli, argc, argv, o->shortopts, o->longopts, o->fn, o->userdata);
	if (i < 0)
		return -EXIT_USAGE;
	int r = cli_nargs(cli, argc - i, min, max);
	if (!r && open == CLI_OPEN_STORE)
		r = cli_open_store(cli, 0);
	else if (!r && open == CLI_OPEN_CACHE)
		r = cli_open_cache(cli, 0);
	return r ? -r : i;
}

int cli_print_value(struct cli *cli, const char *key, const char *value, bool quiet)
{
	if (cli->json)
		return cli_json_print(json_pack("{ss}", key, value));
	if (!quiet)
		printf("%s\n", value);
	return EXIT_OK;
}

int cli_make_mount_point(const char *target)
{
	if (mkdir(target, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "cairn: create mount point '%s': %m\n", target);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

int cli_remove_each(struct cli *cli, int argc, char **argv, int i, cli_remove_fn fn, bool print)
{
	int rc = EXIT_OK;
	json_t *removed = cli->json ? json_array() : NULL;
	for (; i < argc; i++) {
		char *name = NULL;
		int r = fn(cli, argv[i], &name);
		const char *shown = name ? name : argv[i];
		if (!r && removed)
			json_array_append_new(removed, json_string(shown));
		else if (!r && print && !cli->quiet)
			printf("removed %s\n", shown);
		free(name);
		rc = rc ? rc : r;
	}
	if (removed)
		cli_json_print(json_pack("{so}", "removed", removed));
	return rc;
}

int cli_json_print(json_t *doc)
{
	if (!doc) {
		fprintf(stderr, "cairn: out of memory building JSON output\n");
		return EXIT_FAIL;
	}
	int r = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(doc);
	fputc('\n', stdout);
	return r < 0 ? EXIT_FAIL : EXIT_OK;
}

const char *cli_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

const char *cli_format_time(int64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000LL);
	struct tm tm;
	if (!localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(buf, len, "%lld", (long long)ns);
	return buf;
}

static int cmd_version(struct cli *cli, int argc, char **argv)
{
	int i = cli_parse(cli, argc, argv, NULL, NULL, NULL, NULL);
	if (i < 0)
		return EXIT_USAGE;
	if (cli_nargs(cli, argc - i, 0, 0))
		return EXIT_USAGE;
	if (cli->json)
		return cli_json_print(json_pack("{ss}", "version", cairn_version()));
	printf("cairn %s\n", cairn_version());
	return EXIT_OK;
}

static const struct cli_command *find(const struct cli_command *table, const char *name)
{
	for (const struct cli_command *c = table; c && c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	/* The cache commands sit at the top level beside the groups. */
	if (table == commands) {
		const struct cli_command *c = find(cmd_cache, name);
		if (!c)
			c = find(cmd_layer, name);
		return c ? c : find(cmd_image, name);
	}
	return NULL;
}

/* Index of the first argument that is not a global option (or its value), or argc. */
static int next_word(int argc, char **argv, int from)
{
	for (int i = from; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0)
			return i + 1 < argc ? i + 1 : argc;
		if (a[0] != '-' || a[1] == '\0')
			return i;
		if ((strcmp(a, "--root") == 0 || strcmp(a, "--snapshotter") == 0) && i + 1 < argc)
			i++;
	}
	return argc;
}

static char prog_buf[256];

/* Resolve the command path (e.g. "content add"), dropping its words from argv. */
static int dispatch(struct cli *cli, int argc, char **argv)
{
	const struct cli_command *cmd = &top;
	snprintf(prog_buf, sizeof(prog_buf), "cairn");
	cli->prog = prog_buf;
	cli->cmd = cmd;
	while (cmd->subs) {
		int w = next_word(argc, argv, 1);
		if (w >= argc) {
			/* No subcommand: global options only (--help prints this level's help). */
			if (cli_parse(cli, argc, argv, NULL, NULL, NULL, NULL) < 0)
				return EXIT_USAGE;
			return cli_usage_error(cli, "missing command");
		}
		const struct cli_command *sub = find(cmd->subs, argv[w]);
		if (!sub)
			return cli_usage_error(cli, "unknown command '%s'", argv[w]);
		size_t len = strlen(prog_buf);
		snprintf(prog_buf + len, sizeof(prog_buf) - len, " %s", sub->name);
		memmove(argv + w, argv + w + 1, (size_t)(argc - w) * sizeof(*argv));
		argc--;
		cmd = sub;
		cli->cmd = cmd;
	}
	return cmd->run(cli, argc, argv);
}

static int cmd_help(struct cli *cli, int argc, char **argv)
{
	int i = cli_parse(cli, argc, argv, NULL, NULL, NULL, NULL);
	if (i < 0)
		return EXIT_USAGE;
	const struct cli_command *cmd = &top;
	snprintf(prog_buf, sizeof(prog_buf), "cairn");
	for (; i < argc; i++) {
		const struct cli_command *sub = find(cmd->subs, argv[i]);
		if (!sub)
			return cli_usage_error(cli, "unknown command '%s'", argv[i]);
		size_t len = strlen(prog_buf);
		snprintf(prog_buf + len, sizeof(prog_buf) - len, " %s", sub->name);
		cmd = sub;
	}
	cli->cmd = cmd;
	print_help(cli, stdout);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	setlocale(LC_ALL, "");
	struct cli cli = {0};
	int rc = dispatch(&cli, argc, argv);
	/* Closing the cache first keeps what this process made: refs freed after the manager
	 * is closed release nothing (records outlive commands; prune and rm remove them). */
	cairn_cache_close(cli.cache);
	cairn_store_close(cli.store);
	if (fflush(stdout) != 0 && rc == EXIT_OK) {
		fprintf(stderr, "cairn: write to standard output: %m\n");
		rc = EXIT_FAIL;
	}
	return rc;
}
