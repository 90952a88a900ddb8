/* SPDX-License-Identifier: MIT */
/*
 * Safe filesystem helpers. Every path taken here is relative to a root directory fd and resolved
 * with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): "..", absolute paths and symlinks cannot
 * lead outside the root. On kernels without openat2 a component walk does the same job, refusing
 * symlinks (-ELOOP) in the middle of a path and, unless the flags hold O_NOFOLLOW, in the last
 * component too. All fds returned are O_CLOEXEC and owned by the caller.
 * Messages quote the path as given.
 */
#pragma once

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "error.h"

/* fs_open_dir() - open directory @path (an ordinary path, not confined) O_DIRECTORY. */
int fs_open_dir(const char *path, cairn_error **reterr);

/*
 * fs_openat() - open @path confined to @rootfd with @flags (O_CLOEXEC added) and @mode.
 * "" or "." opens the root itself. Returns the fd. Errors: negative errno of openat2
 * (-ENOENT, -EEXIST with O_EXCL, -ELOOP, -EXDEV when a path tries to leave via a magic link).
 */
int fs_openat(int rootfd, const char *path, int flags, mode_t mode, cairn_error **reterr);

/* fs_open_parent() - open the parent directory of @path within @rootfd; *@ret_name points into
 * @path at the last component (borrowed). Errors: as fs_openat(); -EINVAL for "" or "/". */
int fs_open_parent(int rootfd, const char *path, const char **ret_name, cairn_error **reterr);

/* fs_mkdir_p() - create @path and missing parents with @mode below @rootfd. Existing
 * directories are fine; an existing non-directory is -ENOTDIR. */
int fs_mkdir_p(int rootfd, const char *path, mode_t mode, cairn_error **reterr);

/* fs_rm_rf() - remove @path below @rootfd, recursively, never following symlinks and never
 * crossing into another mount. A missing path is success. */
int fs_rm_rf(int rootfd, const char *path, cairn_error **reterr);

/* fs_opendir_fd() - a directory stream of its own on directory fd @dfd (which stays open and
 * keeps its offset); closedir() it. Errors name @what: "open '<what>'", "opendir '<what>'". */
int fs_opendir_fd(int dfd, const char *what, DIR **ret, cairn_error **reterr);

/* fs_readdir() - readdir() skipping "." and "..". NULL at the end with errno 0, or on failure
 * with errno set. */
struct dirent *fs_readdir(DIR *d);

/* fs_rm_rf_children() - remove every entry inside directory fd @dfd (kept open, not closed). */
int fs_rm_rf_children(int dfd, const char *what, cairn_error **reterr);

/*
 * fs_write_atomic() - replace @path below @rootfd with @len bytes of @data: write a temp file
 * beside it, fsync, rename over @path, fsync the directory. A crash leaves the old content or
 * the new, never a mix.
 */
int fs_write_atomic(int rootfd, const char *path, const void *data, size_t len, mode_t mode,
                    cairn_error **reterr);

/* fs_read_file() - read all of @path below @rootfd (at most @max bytes, else -EFBIG) into a
 * NUL-terminated buffer *@ret (caller frees); *@ret_len may be NULL. */
int fs_read_file(int rootfd, const char *path, size_t max, char **ret, size_t *ret_len,
                 cairn_error **reterr);

/* fs_fsync_path() - fsync the file or directory @path below @rootfd ("" for the root). */
int fs_fsync_path(int rootfd, const char *path, cairn_error **reterr);

/* fs_write_all() - write all @len bytes to @fd, retrying short writes and EINTR; -errno. */
int fs_write_all(int fd, const void *buf, size_t len);

/* fs_name_valid() - whether @name is a single path component: non-empty, no '/', not "." or
 * "..", at most 255 bytes. */
bool fs_name_valid(const char *name);

/* fs_usage_fd() - allocated bytes and inode count of the tree at directory fd @dfd, counting a
 * hardlinked inode once and not crossing mounts. */
int fs_usage_fd(int dfd, const char *what, uint64_t *ret_bytes, uint64_t *ret_inodes,
                cairn_error **reterr);

/*
 * A disk usage count over several entries of one filesystem, as `du -sx` counts: allocated blocks
 * (st_blocks * 512), a hardlinked inode once across all of them, nothing on another mount.
 * fs_du_new() takes the filesystem from directory @dfd; fs_du_add() adds entry @name of @dfd (a
 * file, or a directory and its tree; a missing one counts 0) to *@ret_bytes; @what names it in
 * errors. Ownership: *@ret is the caller's, freed by fs_du_free() (NULL-safe, returns NULL).
 * Not thread-safe.
 */
typedef struct fs_du fs_du;
int fs_du_new(int dfd, fs_du **ret, cairn_error **reterr);
int fs_du_add(fs_du *du, int dfd, const char *name, const char *what, uint64_t *ret_bytes,
              cairn_error **reterr);
fs_du *fs_du_free(fs_du *du);
DEFINE_TRIVIAL_CLEANUP_FUNC(fs_du *, fs_du_free)

/* fs_force_fallback() - for tests: resolve paths with the component walk used on kernels
 * without openat2 (@on true) or with openat2 when the kernel has it (false, the default). */
void fs_force_fallback(bool on);

/* fs_in_userns() - whether this process runs in a user namespace other than the initial one
 * (its uid_map is not the identity map of all ids). */
bool fs_in_userns(void);
