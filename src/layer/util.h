/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by apply.c and diff.c: tar path cleaning, scoped path resolution (continuity's
 * RootPath), a set of paths, and extended attributes on objects that cannot be opened for I/O
 * (symlinks, devices, fifos). Internal to the layer module; not thread-safe objects.
 */
#pragma once

#include <locale.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

/*
 * path_clean() - the lexical clean of a tar member name as an in-root relative path: "/" and "."
 * components dropped, ".." resolved lexically and never above the root, no leading or trailing
 * slash; "" is the root. Returns a new string (caller frees) or NULL on OOM.
 */
char *path_clean(const char *name);

/*
 * root_path() - resolve @path (a cleaned relative path) inside directory @rootfd as if @rootfd were
 * "/" (spec/containerd.md §7.2): every existing symlink met along the way is replaced by its
 * target (absolute targets restart at the root, ".." never climbs above it); components that do
 * not exist are taken literally. With @follow_last false the last component is kept as it is (a
 * link's own name). *@ret gets the resolved, symlink-free relative path ("" for the root); caller
 * frees. Errors: -ELOOP after 255 links, -ENAMETOOLONG, -ENOMEM, errno of fstatat/readlinkat other
 * than ENOENT/ENOTDIR; no message (callers name the entry).
 */
int root_path(int rootfd, const char *path, bool follow_last, char **ret);

/* path_join() - "@dir/@name", or @name when @dir is ""; NULL on OOM. */
char *path_join(const char *dir, const char *name);

/* path_split() - split @path in place at its last '/': *@ret_dir is "" or the part before it,
 * *@ret_base the rest. @path must not end in '/'. */
void path_split(char *path, const char **ret_dir, const char **ret_base);

/* A set of strings (open addressing, copies owned by the set). Zero-initialise; pathset_done(). */
struct pathset {
	char **keys;
	uint64_t *hashes;
	size_t cap, n;
};

/* pathset_add() - 1 when added, 0 when already present, -ENOMEM. */
int pathset_add(struct pathset *s, const char *key);
bool pathset_has(const struct pathset *s, const char *key);
void pathset_done(struct pathset *s);

/*
 * xattr_set_at() / xattr_get_at() / xattr_list_at() - extended attributes of entry @name in
 * directory @dfd, never following a symlink in @name: the *xattrat syscalls (Linux 6.13) where
 * the kernel has them, else the object opened O_PATH|O_NOFOLLOW and reached through
 * /proc/self/fd, which names the object itself (a magic link is not followed further). Return
 * 0 / the value's length / the list's length, or a negative errno; no message.
 */
int xattr_set_at(int dfd, const char *name, const char *key, const void *value, size_t len,
                 int flags);
ssize_t xattr_get_at(int dfd, const char *name, const char *key, void *value, size_t len);
ssize_t xattr_list_at(int dfd, const char *name, char *list, size_t len);

/* xattr_force_proc() - for tests: use the /proc/self/fd way even where the kernel has the *xattrat
 * syscalls (@on true), to cover the fallback; process-wide. */
void xattr_force_proc(bool on);

/*
 * xattr_list_alloc() - all attribute names of the object at @fd (when >= 0, an fd open for I/O)
 * or of @name in @dfd: a NUL-separated list in *@ret (caller frees; NULL when there is none),
 * its length in *@ret_len. ENOTSUP counts as no attributes. Negative errno on failure.
 */
int xattr_list_alloc(int fd, int dfd, const char *name, char **ret, size_t *ret_len);

/* xattr_get_alloc() - the value of @key, as xattr_list_alloc() finds the object; -ENODATA when
 * absent. The value gets a NUL after its length for convenience. */
int xattr_get_alloc(int fd, int dfd, const char *name, const char *key, char **ret,
                    size_t *ret_len);

/* copy_xattrs() - copy every attribute of (@sfd | @sdfd,@sname) to (@dfd_obj | @ddfd,@dname)
 * except those @skip(key) refuses; ENOTSUP and EPERM on user.* are ignored. -errno. */
int copy_xattrs(int sfd, int sdfd, const char *sname, int dfd_obj, int ddfd, const char *dname,
                bool (*skip)(const char *key), int flags);

/*
 * locale_push() / locale_pop() - run libarchive under C.UTF-8 (C where that is missing) on the
 * calling thread, whatever the process's locale: libarchive converts names through the current
 * locale, and the tar bytes (hence the diffID) must not depend on it. uselocale() is per thread.
 */
locale_t locale_push(void);
void locale_pop(locale_t old);
