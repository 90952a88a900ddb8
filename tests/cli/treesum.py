#!/usr/bin/env python3
"""treesum: one checksum per record of a cairn store, over the record's layer directories.

usage: treesum.py CAIRN ID...

For each ID, runs `CAIRN --json mounts --ro ID` (which makes nothing), takes the layer
directories of the spec in order (overlay: upperdir then lowerdirs; bind: the source) and hashes,
per layer index, every entry below it: relative path, type, permission bits (with setuid, setgid
and sticky), owner, group, a symlink's target, a device's numbers and a regular file's sha256.
A change in any layer shows. Prints one line per ID: "ID SUM", or "ID exit N: MESSAGE" when cairn
failed for it (exit 3: no such record). One process for many records: the crash tests call it
after every crash, where a shell pipeline per record cost most of their time.
Exit status: 0, or 2 on a usage error or a layer directory that cannot be read.
"""

import hashlib
import json
import os
import stat
import subprocess
import sys


def layer_dirs(spec):
    dirs = []
    for m in spec:
        if m.get("type") == "bind":
            dirs.append(m["source"])
            continue
        upper, lower = [], []
        for o in m.get("options", []):
            if o.startswith("upperdir="):
                upper = [o[len("upperdir="):]]
            elif o.startswith("lowerdir="):
                lower = o[len("lowerdir="):].split(":")
        dirs += upper + lower
    return dirs


def file_sha256(path):
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            h.update(b)
    finally:
        os.close(fd)
    return h.hexdigest()


def layer_lines(i, root):
    out = []

    def walk(d, rel):
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            r = rel + "/" + name
            st = os.lstat(p)
            m = st.st_mode
            line = "%d %s %o %d %d %d" % (i, r, stat.S_IFMT(m), stat.S_IMODE(m), st.st_uid,
                                          st.st_gid)
            if stat.S_ISLNK(m):
                line += " -> " + os.readlink(p)
            elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
                line += " dev %d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
            elif stat.S_ISREG(m):
                line += " " + file_sha256(p)
            out.append(line)
            if stat.S_ISDIR(m):
                walk(p, r)

    walk(root, ".")
    return out


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    cairn = argv[1]
    for rid in argv[2:]:
        p = subprocess.run([cairn, "--json", "mounts", "--ro", rid], capture_output=True,
                           text=True)
        if p.returncode != 0:
            msg = (p.stderr or p.stdout).strip().replace("\n", " ")
            print("%s exit %d: %s" % (rid, p.returncode, msg))
            continue
        dirs = layer_dirs(json.loads(p.stdout))
        if not dirs:
            sys.stderr.write("treesum: no layer directories in: %s\n" % p.stdout)
            return 2
        h = hashlib.sha256()
        try:
            for i, d in enumerate(dirs, 1):
                for line in layer_lines(i, d):
                    h.update(line.encode("utf-8", "surrogateescape") + b"\n")
        except OSError as e:
            sys.stderr.write("treesum: record %s: %s\n" % (rid, e))
            return 2
        print("%s %s" % (rid, h.hexdigest()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
