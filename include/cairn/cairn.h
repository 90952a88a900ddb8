/* SPDX-License-Identifier: MIT */
/* libcairn: include this one header. */
#ifndef CAIRN_H
#define CAIRN_H

#include "cairn/common.h"
#include "cairn/error.h"
#include "cairn/store.h"
#include "cairn/content.h"
#include "cairn/mount.h"
#include "cairn/snapshot.h"
#include "cairn/cache.h"
#include "cairn/lease.h"
#include "cairn/image.h"
#include "cairn/remote.h"

#endif
