/* SPDX-License-Identifier: MIT */
/*
 * Applying a layer: unpack a (possibly compressed) tar into a directory, following containerd's
 * archive.Apply (spec/containerd.md §7) with every write confined to the directory.
 *
 * Confinement. Each entry's name is cleaned lexically ("..", "." and leading "/" cannot climb
 * above the root). Its parent directory is resolved as continuity's RootPath does (§7.2): a
 * symlink met on the way is followed with the root standing in for "/", so "etc -> /etc" writes
 * into ROOT/etc, never the host's /etc. The walk is done with *at calls on directory fds opened
 * from @rootfd (O_NOFOLLOW, one validated name at a time), and the last component is created in
 * that parent fd with O_EXCL/O_NOFOLLOW semantics: nothing is followed through a link.
 * Owners, modes and times are set through the object's fd or with AT_SYMLINK_NOFOLLOW. Hardlink
 * targets are resolved the same way (their last component is not followed: a link to a symlink
 * links the symlink). Whiteouts delete with fs_rm_rf(), which never follows a symlink.
 *
 * Entries: regular files (sparse ones keep their holes), directories (an existing directory is
 * merged: only its metadata changes), symlinks (target text verbatim), hardlinks, character and
 * block devices (skipped inside a user namespace), fifos; the pax, GNU and ustar formats with
 * long names. An existing object in an entry's place is removed first unless both are
 * directories. Then, in this order: owner (numeric ids, unless no_same_owner), xattrs (from
 * SCHILY.xattr / LIBARCHIVE.xattr records, security.capability included; trusted.* are dropped,
 * as containerd does, and in overlay mode user.overlay.* too; ENOTSUP is ignored, as is EPERM
 * for user.* on objects other than files and directories), mode with setuid/setgid/sticky
 * (after the chown that clears them; never on symlinks), times (atime = max(atime, mtime); times
 * before 1970 become 0). Directory times are set after the whole stream, so their children do
 * not disturb them.
 *
 * Whiteouts (OCI): ".wh.NAME" removes NAME, ".wh..wh..opq" marks its directory opaque.
 * LAYER_WHITEOUT_DELETE applies them to the tree: NAME is removed (a symlink itself, never its
 * target); an opaque directory loses every entry not unpacked earlier from this same layer.
 * LAYER_WHITEOUT_OVERLAY writes them as overlayfs does: a character device 0/0 NAME (owned by
 * the entry's uid/gid), and the xattr trusted.overlay.opaque=y (user.overlay.opaque with
 * userxattr) on the directory. A whiteout whose name is ".wh..", ".wh..." or ".wh." is an
 * invalid archive.
 *
 * Memory: the stream is never held; the set of unpacked paths (delete mode) and the list of
 * directories grow with the number of entries (a path each).
 *
 * Not thread-safe per root; independent roots can be applied in parallel.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/digest.h"
#include "base/error.h"
#include "compress.h"

typedef enum layer_whiteout_mode {
	LAYER_WHITEOUT_DELETE = 0, /* native: apply whiteouts to the tree */
	LAYER_WHITEOUT_OVERLAY =
		1, /* overlay upper dir: write whiteout devices and opaque xattrs */
} layer_whiteout_mode;

struct layer_apply_opts {
	layer_whiteout_mode whiteout;
	bool userxattr;     /* overlay mode: mark opaque directories with user.overlay.opaque */
	bool no_same_owner; /* do not chown: every object belongs to the caller */
	bool writeback;     /* start writing large files back early: the caller syncs after */
	/*
	 * Roots of the lower layers, nearest first (borrowed, O_DIRECTORY fds), or NULL. They
	 * serve as overlayfs would: a directory created implicitly (an entry's missing parent)
	 * takes the owner, mode, times and non-trusted xattrs of the first lower directory at
	 * the same path; a hardlink whose target is not in the root is satisfied by copying the
	 * target up from the first lower layer that has it (a whiteout device or an opaque
	 * directory in the root or in a nearer layer hides the deeper ones). In delete mode the
	 * root normally holds the whole lower tree already and needs no parents.
	 */
	const int *parent_fds;
	size_t n_parents;
	const char *what;            /* the layer's name for messages (its digest); may be NULL */
	const char *expected_diffid; /* "sha256:..." to verify after the stream, or NULL */
	layer_progress_fn progress;  /* compressed bytes read so far; may be NULL */
	void *userdata;
};

struct layer_apply_result {
	digest diffid; /* SHA-256 of the uncompressed stream, trailing padding included */
	digest compressed_digest; /* SHA-256 of the bytes read from the fd */
	layer_compression compression;
	uint64_t size;            /* uncompressed bytes */
	uint64_t compressed_size; /* bytes read from the fd */
	uint64_t entries;         /* tar headers read, skipped ones included */
};

/*
 * layer_apply() - apply the layer read from @fd (current offset to EOF; borrowed, not closed)
 * into the directory @rootfd (borrowed). @opts may be NULL (delete mode, defaults). On success
 * fills *@ret (may be NULL).
 *
 * Errors (the message names opts->what when given and the entry's name as in the tar):
 * CAIRN_ECORRUPT for a truncated or corrupt gzip/zstd stream or tar ("invalid archive" for a
 * malformed whiteout name); CAIRN_EDIGEST when the stream's diffID is not
 * opts->expected_diffid, naming both (checked after the whole stream was applied and drained);
 * -EINVAL for a malformed expected_diffid; -EOPNOTSUPP for an entry type that cannot be
 * created (sockets); -ENOENT for a hardlink whose target exists neither in the root nor in a
 * lower layer; -ENOTDIR when an entry's parent is not a directory; -ELOOP when resolving a path
 * takes more than 255 links; any errno of the filesystem calls (-EPERM for chown without
 * privileges, -ENOSPC, ...). On failure the root is left half-written: the caller removes it.
 */
int layer_apply(int rootfd, int fd, const struct layer_apply_opts *opts,
                struct layer_apply_result *ret, cairn_error **reterr);

/*
 * layer_apply_reader() - as layer_apply(), reading from @reader (borrowed; it must not have been
 * read from yet). opts->progress is ignored: the reader's own options say where progress goes.
 */
int layer_apply_reader(int rootfd, layer_reader *reader, const struct layer_apply_opts *opts,
                       struct layer_apply_result *ret, cairn_error **reterr);
