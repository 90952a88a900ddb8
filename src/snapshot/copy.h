/* SPDX-License-Identifier: MIT */
/* A faithful recursive copy of a directory tree (spec/containerd.md §6.2), for the native driver.
 */
#pragma once

#include "base/error.h"

/*
 * snap_copy_tree() - copy everything inside directory @srcfd into directory @dstfd (expected
 * empty; both borrowed), then give @dstfd the owner, mode, xattrs and times of @srcfd.
 * Regular files are cloned with FICLONE where the filesystem shares extents, else copied extent
 * by extent (SEEK_DATA/SEEK_HOLE, copy_file_range, read/write as the last resort), so holes stay
 * holes. Hard links stay hard links (any file type), symlinks are recreated with the same target
 * text, devices, FIFOs and sockets with mknod. Owners, full modes (setuid, setgid, sticky),
 * atime/mtime with nanoseconds (directories after their children) and xattrs are kept; an xattr
 * the destination refuses (security.*, trusted.* without privilege) is skipped. Never follows a
 * symlink and never leaves @srcfd's filesystem: a mount point inside is copied as an empty
 * directory. @what names the tree in messages.
 * Errors: the first failing syscall's errno, with the relative path in quotes.
 */
int snap_copy_tree(int srcfd, int dstfd, const char *what, cairn_error **reterr);
