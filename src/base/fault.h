/* SPDX-License-Identifier: MIT */
/*
 * Fault injection for crash tests. fault_point("snapshot.prepare.after-rename") kills the process
 * with SIGKILL (no cleanup, no atexit: a kill -9 at that instant) when the environment variable
 * CAIRN_FAULT equals the point's name. Costs one getenv() per point; points sit only on paths
 * that touch the disk anyway. Nothing else in the library reads CAIRN_FAULT.
 */
#pragma once

void fault_point(const char *name);
