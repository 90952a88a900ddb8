/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"

#define FAULT_NAME(name, what) name,
const char *const fault_points[] = {FAULT_POINTS(FAULT_NAME)};
#undef FAULT_NAME
const unsigned fault_points_n = sizeof(fault_points) / sizeof(fault_points[0]);

static bool listed(const char *name)
{
	for (unsigned i = 0; i < fault_points_n; i++)
		if (strcmp(fault_points[i], name) == 0)
			return true;
	return false;
}

void fault_point(const char *name)
{
	const char *want = getenv("CAIRN_FAULT");
	if (!want || !*want)
		return;
	/* Only crash tests get here: check both names against the list, loudly. */
	if (!listed(want) || !listed(name)) {
		fprintf(stderr, "cairn: fault point '%s' is not in FAULT_POINTS (base/fault.h)\n",
		        listed(want) ? name : want);
		abort();
	}
	if (strcmp(want, name) == 0)
		raise(SIGKILL);
}
