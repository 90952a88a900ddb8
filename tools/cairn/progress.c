/* SPDX-License-Identifier: MIT */
/* The progress bar of long commands (extract, import, export). */
#include <stdio.h>
#include <unistd.h>

#include "cli.h"

static double since(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* One line on stderr: bytes, rate and ETA, redrawn at most 10 times a second. Runs on whichever
 * thread the library reports from. */
static void bar_fn(uint64_t done, uint64_t total, void *userdata)
{
	struct cli_bar *b = userdata;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (b->shown && done < total && since(&b->last, &now) < 0.1)
		return;
	b->last = now;
	b->shown = true;
	double secs = since(&b->start, &now);
	double rate = secs > 0 ? (double)done / secs : 0;
	char sd[32], st[32], sr[32], eta[32] = "--";
	cli_format_size(done, sd, sizeof(sd));
	cli_format_size(total, st, sizeof(st));
	cli_format_size((uint64_t)rate, sr, sizeof(sr));
	if (rate > 0 && total >= done)
		snprintf(eta, sizeof(eta), "%.0fs", (double)(total - done) / rate);
	int width = 30, fill = total ? (int)((double)done * width / (double)total) : width;
	char line[64];
	for (int k = 0; k < width; k++)
		line[k] = k < fill ? '#' : '-';
	line[width] = '\0';
	fprintf(stderr, "\r%s [%s] %s / %s  %s/s  ETA %s\033[K", b->label, line, sd, st, sr, eta);
	fflush(stderr);
}

cairn_progress_fn cli_bar_start(struct cli *cli, struct cli_bar *b, const char *label)
{
	*b = (struct cli_bar){.label = label};
	clock_gettime(CLOCK_MONOTONIC, &b->start);
	return isatty(STDERR_FILENO) && !cli->quiet && !cli->json ? bar_fn : NULL;
}

void cli_bar_end(struct cli_bar *b)
{
	if (b->shown)
		fputc('\n', stderr);
}
