/* SPDX-License-Identifier: MIT */
/* Replays every file of the corpus directories given as arguments through the fuzz target and
 * prints TAP, one line per input. A crash fails the run (and the sanitizers say where). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay(const char *path, size_t n)
{
	FILE *f = fopen(path, "rbe");
	if (!f) {
		printf("not ok %zu - %s: cannot open\n", n, path);
		return 1;
	}
	size_t cap = 1 << 16, len = 0;
	uint8_t *buf = malloc(cap);
	size_t got;
	while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
		len += got;
		if (len == cap) {
			uint8_t *nb = realloc(buf, cap *= 2);
			if (!nb) {
				free(buf);
				buf = NULL;
			}
			buf = nb;
		}
	}
	fclose(f);
	if (!buf)
		return 1;
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	printf("ok %zu - %s\n", n, path);
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	char *files[4096];
	size_t n = 0;
	for (int i = 1; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		struct dirent *de;
		while (d && (de = readdir(d)) && n < 4096) {
			if (de->d_name[0] == '.')
				continue;
			if (asprintf(&files[n], "%s/%s", argv[i], de->d_name) >= 0)
				n++;
		}
		if (d)
			closedir(d);
	}
	qsort(files, n, sizeof(*files), cmp);
	printf("1..%zu\n", n);
	int failed = 0;
	for (size_t i = 0; i < n; i++) {
		failed |= replay(files[i], i + 1);
		free(files[i]);
	}
	return failed;
}
