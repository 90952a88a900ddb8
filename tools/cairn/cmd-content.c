/* SPDX-License-Identifier: MIT */
/* cairn content add|ls|cat|rm|info: the blob store's plumbing. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Parses options (none but the global ones), checks the count, opens the store. Returns the
 * index of the first positional, or -(exit code). */
static int setup(struct cli *cli, int argc, char **argv, int min, int max)
{
	return cli_setup(cli, argc, argv, NULL, min, max, CLI_OPEN_STORE);
}

static json_t *info_json(const cairn_content_info *info)
{
	return json_pack("{ss sI sI}", "digest", info->digest, "size", (json_int_t)info->size,
	                 "created_ns", (json_int_t)info->created_ns);
}

static int add(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, 1, 1);
	if (i < 0)
		return -i;
	const char *path = argv[i];
	int fd = strcmp(path, "-") == 0 ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "cairn: open '%s': %m\n", path);
		return errno == ENOENT ? EXIT_NOTFOUND : EXIT_FAIL;
	}
	cairn_content_info info;
	cairn_error *e = NULL;
	int r = cairn_content_add_fd(cli->store, fd, NULL, &info, &e);
	close(fd);
	if (r < 0)
		return cli_fail(cli, e);
	if (cli->json) {
		json_t *j = info_json(&info);
		if (j)
			json_object_set_new(j, "new", json_boolean(r == 1));
		return cli_json_print(j);
	}
	printf("%s\n", info.digest);
	return EXIT_OK;
}

struct ls_state {
	struct cli *cli;
	json_t *list;
};

static int ls_one(const cairn_content_info *info, void *userdata)
{
	struct ls_state *st = userdata;
	if (st->list)
		return json_array_append_new(st->list, info_json(info)) < 0 ? -ENOMEM : 0;
	if (st->cli->quiet) {
		printf("%s\n", info->digest);
		return 0;
	}
	char size[32], when[32];
	printf("%-71s  %10s  %s\n", info->digest, cli_format_size(info->size, size, sizeof(size)),
	       cli_format_time(info->created_ns, when, sizeof(when)));
	return 0;
}

static int ls(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, 0, 0);
	if (i < 0)
		return -i;
	struct ls_state st = {cli, cli->json ? json_array() : NULL};
	if (!cli->json && !cli->quiet)
		printf("%-71s  %10s  %s\n", "DIGEST", "SIZE", "CREATED");
	cairn_error *e = NULL;
	if (cairn_content_walk(cli->store, ls_one, &st, &e) < 0) {
		json_decref(st.list);
		return cli_fail(cli, e);
	}
	return cli->json ? cli_json_print(st.list) : EXIT_OK;
}

static int cat(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, 1, 1);
	if (i < 0)
		return -i;
	int fd = -1;
	cairn_error *e = NULL;
	if (cairn_content_open(cli->store, argv[i], &fd, &e) < 0)
		return cli_fail(cli, e);
	char buf[1 << 16];
	ssize_t n;
	fflush(stdout);
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(STDOUT_FILENO, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				fprintf(stderr, "cairn: write to standard output: %m\n");
				close(fd);
				return EXIT_FAIL;
			}
			off += w;
		}
	}
	int err = n < 0 ? errno : 0;
	close(fd);
	if (err) {
		fprintf(stderr, "cairn: read blob '%s': %s\n", argv[i], strerror(err));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static int rm_one(struct cli *cli, const char *digest, char **ret_name)
{
	cairn_error *e = NULL;
	if (cairn_content_delete(cli->store, digest, &e) < 0)
		return cli_fail(cli, e);
	return 0;
}

static int rm(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, 1, -1);
	if (i < 0)
		return -i;
	return cli_remove_each(cli, argc, argv, i, rm_one, true);
}

static int add_label(const char *key, const char *value, void *userdata)
{
	json_t *labels = userdata;
	return json_object_set_new(labels, key, json_string(value)) < 0 ? -ENOMEM : 0;
}

static int info(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, 1, 1);
	if (i < 0)
		return -i;
	cairn_content_info info;
	cairn_error *e = NULL;
	json_t *labels = json_object();
	if (cairn_content_info_get(cli->store, argv[i], &info, &e) < 0 ||
	    cairn_content_labels(cli->store, argv[i], add_label, labels, &e) < 0) {
		json_decref(labels);
		return cli_fail(cli, e);
	}
	if (cli->json) {
		json_t *j = info_json(&info);
		if (j)
			json_object_set_new(j, "labels", labels);
		return cli_json_print(j);
	}
	char size[32], when[32];
	printf("digest:  %s\nsize:    %llu (%s)\ncreated: %s\n", info.digest,
	       (unsigned long long)info.size, cli_format_size(info.size, size, sizeof(size)),
	       cli_format_time(info.created_ns, when, sizeof(when)));
	const char *key;
	json_t *v;
	json_object_foreach(labels, key, v)
	{
		printf("label:   %s=%s\n", key, json_string_value(v));
	}
	json_decref(labels);
	return EXIT_OK;
}

static int label(struct cli *cli, int argc, char **argv)
{
	int i = setup(cli, argc, argv, 2, -1);
	if (i < 0)
		return -i;
	const char *dig = argv[i++];
	for (; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq || eq == argv[i])
			return cli_usage_error(cli, "bad label '%s': expected KEY=VALUE", argv[i]);
		*eq = '\0';
		cairn_error *e = NULL;
		if (cairn_content_label_set(cli->store, dig, argv[i], eq + 1, &e) < 0)
			return cli_fail(cli, e);
	}
	return EXIT_OK;
}

const struct cli_command cmd_content[] = {
	{"add", "FILE", "add a file (or - for standard input) to the store; prints its digest",
         NULL, add, NULL},
	{"ls", "", "list the blobs in the store",
         "Columns: digest, size, creation time. -q prints digests only.\n", ls, NULL},
	{"cat", "DIGEST", "write a blob's bytes to standard output", NULL, cat, NULL},
	{"rm", "DIGEST...", "remove blobs", NULL, rm, NULL},
	{"info", "DIGEST", "show a blob's size, creation time and labels", NULL, info, NULL},
	{"label", "DIGEST KEY=VALUE...", "set labels of a blob (an empty VALUE deletes the label)",
         NULL, label, NULL},
	{0},
};
