#!/usr/bin/env python3
"""treecmp: compare two directory trees entry by entry.

usage: treecmp.py [options] TREE_A TREE_B
       treecmp.py --list TREE

Each entry (every path below the root, and the root itself unless --no-root) is compared on:
type, mode (permission bits with setuid, setgid and sticky), uid and gid, size and sha256 of a
regular file's content, a symlink's target, a device node's major and minor, and its extended
attributes (all namespaces the caller can read: trusted. and security. too as root). Hardlinks
are compared as groups: the set of relative paths sharing one inode inside each tree.

Symlinks are never followed: entries are read with lstat, files are opened with O_NOFOLLOW, and
directories are listed through a file descriptor opened with O_NOFOLLOW | O_DIRECTORY.

Every difference is printed as `PATH: what: A-value != B-value` (or `only in A|B: PATH`).
Exit status: 0 when the trees are equal (and a line with the count of entries compared),
1 on any difference, 2 on a usage error or a tree that cannot be read.
"""

import argparse
import hashlib
import os
import stat
import sys

TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


def sha256_at(dirfd, name):
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        h = hashlib.sha256()
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)
    finally:
        os.close(fd)


def xattrs_of(path, ignore):
    """All extended attributes of path itself (not a symlink's target), as {name: bytes}."""
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out  # a filesystem without xattr support has none
    for n in names:
        if any(n.startswith(p) for p in ignore):
            continue
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError as e:
            out[n] = "<unreadable: %s>" % e.strerror
    return out


class Tree:
    def __init__(self, root, opts):
        self.root = root
        self.opts = opts
        self.entries = {}  # relpath -> dict of attributes
        self.inodes = {}  # (dev, ino) -> [relpath] for non-directories

    def load(self):
        st = os.lstat(self.root)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError("not a directory: '%s'" % self.root)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if not self.opts.no_root:
                self.add(".", self.root, None, None, st)
            self.walk(fd, "")
        finally:
            os.close(fd)
        return self

    def walk(self, dirfd, rel):
        for name in sorted(os.listdir(dirfd)):
            r = rel + name
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            self.add(r, os.path.join(self.root, r), dirfd, name, st)
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=dirfd)
                try:
                    self.walk(sub, r + "/")
                finally:
                    os.close(sub)

    def add(self, rel, path, dirfd, name, st):
        t = TYPES.get(stat.S_IFMT(st.st_mode), "unknown")
        e = {"type": t, "mode": "%04o" % stat.S_IMODE(st.st_mode)}
        if not self.opts.no_owner:
            e["uid"] = st.st_uid
            e["gid"] = st.st_gid
        if t == "file":
            e["size"] = st.st_size
            if dirfd is not None:
                e["sha256"] = sha256_at(dirfd, name)
        elif t == "symlink":
            e["target"] = os.readlink(name, dir_fd=dirfd) if dirfd is not None else os.readlink(path)
        elif t in ("char", "block"):
            e["rdev"] = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        if self.opts.mtime and t != "symlink":
            e["mtime"] = int(st.st_mtime)
        if not self.opts.no_xattrs:
            e["xattrs"] = xattrs_of(path, self.opts.ignore_xattr)
        self.entries[rel] = e
        if t != "dir":
            self.inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)

    def link_groups(self):
        """relpath -> frozenset of the paths sharing its inode, for inodes with 2+ paths here."""
        out = {}
        for paths in self.inodes.values():
            if len(paths) > 1:
                g = frozenset(paths)
                for p in paths:
                    out[p] = g
        return out


def show(v):
    if isinstance(v, bytes):
        try:
            s = v.decode()
            if s.isprintable():
                return repr(s)
        except UnicodeDecodeError:
            pass
        return "0x" + v.hex()
    if isinstance(v, frozenset):
        return "{" + ", ".join(sorted(v)) + "}"
    return str(v)


def compare(a, b):
    diffs = []
    for rel in sorted(set(a.entries) | set(b.entries)):
        ea, eb = a.entries.get(rel), b.entries.get(rel)
        if ea is None or eb is None:
            diffs.append("only in %s: %s (%s)" % ("B" if ea is None else "A", rel,
                                                  (eb or ea)["type"]))
            continue
        if ea["type"] != eb["type"]:
            diffs.append("%s: type: %s != %s" % (rel, ea["type"], eb["type"]))
            continue
        for k in ("mode", "uid", "gid", "size", "sha256", "target", "rdev", "mtime"):
            if k in ea and ea.get(k) != eb.get(k):
                diffs.append("%s: %s: %s != %s" % (rel, k, show(ea.get(k)), show(eb.get(k))))
        xa, xb = ea.get("xattrs", {}), eb.get("xattrs", {})
        for n in sorted(set(xa) | set(xb)):
            if xa.get(n) != xb.get(n):
                diffs.append("%s: xattr %s: %s != %s" % (rel, n, show(xa.get(n, "<absent>")),
                                                          show(xb.get(n, "<absent>"))))
    ga, gb = a.link_groups(), b.link_groups()
    for rel in sorted(set(ga) | set(gb)):
        if rel not in a.entries or rel not in b.entries:
            continue  # already reported as only in one tree
        if ga.get(rel) != gb.get(rel):
            diffs.append("%s: hardlinks: %s != %s" % (rel, show(ga.get(rel, frozenset([rel]))),
                                                      show(gb.get(rel, frozenset([rel])))))
    return diffs


def listing(t):
    groups = t.link_groups()
    for rel, e in sorted(t.entries.items()):
        parts = [rel, e["type"], e["mode"]]
        if "uid" in e:
            parts.append("%d:%d" % (e["uid"], e["gid"]))
        for k in ("size", "sha256", "target", "rdev", "mtime"):
            if k in e:
                parts.append("%s=%s" % (k, e[k]))
        for n, v in sorted(e.get("xattrs", {}).items()):
            parts.append("xattr:%s=%s" % (n, show(v)))
        if rel in groups:
            parts.append("links=" + show(groups[rel]))
        print(" ".join(parts))


def main(argv):
    p = argparse.ArgumentParser(prog="treecmp.py", description="compare two trees entry by entry")
    p.add_argument("trees", nargs="+", metavar="TREE")
    p.add_argument("--list", action="store_true", help="print one tree's entries and exit")
    p.add_argument("--no-root", action="store_true", help="skip the root directory's own attributes")
    p.add_argument("--no-owner", action="store_true", help="do not compare uid and gid")
    p.add_argument("--no-xattrs", action="store_true", help="do not compare extended attributes")
    p.add_argument("--ignore-xattr", action="append", default=[], metavar="PREFIX",
                   help="skip xattrs whose name starts with PREFIX (repeatable)")
    p.add_argument("--mtime", action="store_true", help="also compare mtimes (whole seconds)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing when equal")
    o = p.parse_args(argv)
    want = 1 if o.list else 2
    if len(o.trees) != want:
        p.error("expected %d tree%s" % (want, "" if want == 1 else "s"))
    try:
        trees = [Tree(r, o).load() for r in o.trees]
    except OSError as e:
        print("treecmp: %s" % e, file=sys.stderr)
        return 2
    if o.list:
        listing(trees[0])
        return 0
    diffs = compare(*trees)
    for d in diffs:
        print(d)
    if diffs:
        print("treecmp: %d difference%s between '%s' (A) and '%s' (B)"
              % (len(diffs), "" if len(diffs) == 1 else "s", o.trees[0], o.trees[1]))
        return 1
    if not o.quiet:
        print("treecmp: %d entries equal" % len(trees[0].entries))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
