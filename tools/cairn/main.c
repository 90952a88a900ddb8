/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "cairn/common.h"

int main(int argc, char **argv)
{
	printf("cairn %s\n", cairn_version());
	return 0;
}
