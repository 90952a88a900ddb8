/* SPDX-License-Identifier: MIT */
/*
 * Diffing: write the changes between two trees as a layer tar (spec/containerd.md §8).
 *
 * layer_diff() is the double walk (continuity's fs.Changes): both trees are walked in lexical
 * order, a directory's subtree right after it, and merged. A path only in the lower tree is a
 * DELETE (written as the whiteout "<dir>/.wh.<name>"; a deleted directory's contents are implied),
 * a path only in the upper tree an ADD, a path in both a MODIFY unless the two are the same file:
 * same mode, owner, rdev and security.capability, and for non-directories the same size and
 * mtime (when both mtimes have no nanoseconds, as after a tar round trip, the contents or link
 * targets decide). Directory mtimes and other xattrs are not compared.
 *
 * layer_diff_overlay() is the overlay fast path (continuity's DiffDirChanges): only the upper
 * directory of an overlay mount is walked. A character device 0/0 is a whiteout (DELETE), a
 * directory with trusted.overlay.opaque or user.overlay.opaque = "y" gets a ".wh..wh..opq"
 * entry right after it, everything else is written as it is. Directories equal to the lower
 * tree's (mode, owner, mtime) are left out unless a child needs them. A directory with
 * trusted.overlay.redirect or a file with trusted.overlay.metacopy cannot be diffed this way
 * (-EOPNOTSUPP): the caller falls back to the double walk.
 *
 * The tar (PAX, ustar-shaped headers with extended records only where needed) is deterministic:
 * entries in walk order, each preceded by its parent directories when they were not written yet
 * (each directory at most once); numeric uid/gid only, no user or group names; mode with the
 * setuid/setgid/sticky bits; mtime in whole seconds, clamped to source_date_epoch when given; no
 * atime or ctime; xattrs sorted by name, except trusted.* and security.selinux (a host's labels)
 * and, on the fast path, user.overlay.*; whiteouts are empty regular files with mode 0, owner
 * 0:0 and mtime source_date_epoch (or 0). Files with several links become one file entry and hard
 * link entries (an unchanged name of a changed inode is written as a link right after the first
 * changed name). Sockets are skipped; sparse files are written whole. The tar ends with exactly
 * two zero blocks: an empty diff is 1024 zero bytes.
 *
 * Memory grows with the number of directories written and of multiply-linked files, plus one
 * directory listing per level of the walk. Trees must not change during the walk.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "compress.h"

struct layer_diff_opts {
	const char *what;           /* a name for messages (the snapshot); may be NULL */
	bool has_source_date_epoch; /* clamp mtimes to source_date_epoch */
	int64_t source_date_epoch;  /* seconds since 1970 */
	bool no_parents;            /* do not add unchanged parent directories (for tests) */
};

struct layer_diff_result {
	uint64_t entries; /* tar entries written */
};

/*
 * layer_diff() - write the changes from the tree at @lowerfd (-1: no lower tree, everything is
 * added) to the tree at @upperfd into @w (borrowed; the caller finishes it and gets the
 * digests). @opts may be NULL; @ret may be NULL. Errors: errno of the walk (open, stat, read,
 * readlink) naming the path, -EIO for a file that shrank while read ("short read"), errors of
 * @w; the message is prefixed with opts->what when given. On failure @w holds a partial stream.
 */
int layer_diff(int lowerfd, int upperfd, layer_writer *w, const struct layer_diff_opts *opts,
               struct layer_diff_result *ret, cairn_error **reterr);

/*
 * layer_diff_overlay() - the changes an overlay upper directory @upperfd holds over the lower
 * tree @lowerfd (its merged lower layers, or -1: every whiteout is then written, and every
 * directory). Errors: as layer_diff(); -EOPNOTSUPP for a redirect or metacopy xattr, naming the
 * path.
 */
int layer_diff_overlay(int lowerfd, int upperfd, layer_writer *w,
                       const struct layer_diff_opts *opts, struct layer_diff_result *ret,
                       cairn_error **reterr);
