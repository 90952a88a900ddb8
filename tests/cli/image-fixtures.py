#!/usr/bin/env python3
"""Fixture builders for tests/cli/image.bats: OCI image layouts and docker archives made by hand
where umoci and skopeo cannot make them (multi-platform and nested indexes, opaque whiteouts,
docker's archive formats, broken input). python3 standard library only.

usage:
  image-fixtures.py opaque-layer OUT.tar
  image-fixtures.py multiplatform LAYOUT          index.json lists linux/amd64 and linux/arm64
  image-fixtures.py nested LAYOUT                 index.json -> index "t" -> index -> manifest,
                                                  and index "multi" -> {amd64, arm64}
  image-fixtures.py docker-oci LAYOUT TAG NAME OUT.tar      docker >= 25 `docker save` form
  image-fixtures.py docker-legacy LAYOUT TAG NAME OUT.tar   `<id>/layer.tar` form
  image-fixtures.py corrupt KIND LAYOUT TAG       break a copy of a layout in place; prints the
                                                  name of the file the error should name
  image-fixtures.py layers LAYOUT TAG             print the manifest's layer digests, one a line
  image-fixtures.py verify LAYOUT                 check every blob's digest and size, and that
                                                  every descriptor reachable from index.json
                                                  resolves; prints the count
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"
EPOCH = 1700000000


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(b):
    return hashlib.sha256(b).hexdigest()


class Layout:
    def __init__(self, root, create=True):
        self.root = root
        if create:
            os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
            with open(os.path.join(root, "oci-layout"), "w") as f:
                json.dump({"imageLayoutVersion": "1.0.0"}, f)

    def blob_path(self, digest):
        return os.path.join(self.root, "blobs", "sha256", digest.split(":", 1)[1])

    def put(self, data, media_type, **extra):
        d = "sha256:" + sha256(data)
        with open(self.blob_path(d), "wb") as f:
            f.write(data)
        desc = {"mediaType": media_type, "digest": d, "size": len(data)}
        desc.update(extra)
        return desc

    def get(self, desc):
        with open(self.blob_path(desc["digest"]), "rb") as f:
            return f.read()

    def get_json(self, desc):
        return json.loads(self.get(desc))

    def index(self):
        with open(os.path.join(self.root, "index.json")) as f:
            return json.load(f)

    def write_index(self, manifests):
        with open(os.path.join(self.root, "index.json"), "wb") as f:
            f.write(canon({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}))

    def find(self, tag):
        """The manifest descriptor tagged TAG in index.json, following nested indexes."""
        for d in self.index()["manifests"]:
            if d.get("annotations", {}).get(REF_NAME) == tag:
                while d["mediaType"] in (MT_INDEX, MT_DOCKER_LIST):
                    d = self.get_json(d)["manifests"][0]
                return d
        raise SystemExit("image-fixtures: no tag '%s' in '%s'" % (tag, self.root))


def tar_bytes(entries):
    """entries: list of (name, kind, data_or_target, mode). kind: file dir symlink whiteout."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = EPOCH
            ti.mode = mode
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                t.addfile(ti)
            else:
                data = data if isinstance(data, bytes) else data.encode()
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def gz(b):
    return gzip.compress(b, mtime=0)


def image(lay, layer_tars, os_="linux", arch="amd64", variant=None, tag=None):
    """Store layers (gzip), a config and a manifest; return the manifest descriptor."""
    layers = [lay.put(gz(t), MT_LAYER_GZ) for t in layer_tars]
    cfg = {"architecture": arch, "os": os_, "created": "2023-11-14T22:13:20Z",
           "config": {"Cmd": ["/bin/sh"]},
           "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256(t) for t in layer_tars]},
           "history": [{"created_by": "image-fixtures layer %d" % i} for i in range(len(layers))]}
    if variant:
        cfg["variant"] = variant
    c = lay.put(canon(cfg), MT_CONFIG)
    m = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": c, "layers": layers}
    plat = {"os": os_, "architecture": arch}
    if variant:
        plat["variant"] = variant
    desc = lay.put(canon(m), MT_MANIFEST, platform=plat)
    if tag:
        desc["annotations"] = {REF_NAME: tag}
    return desc


BASE = [("etc", "dir", None, 0o755), ("etc/os-release", "file", "ID=fixture\n", 0o644),
        ("bin", "dir", None, 0o755), ("bin/sh", "symlink", "busybox", 0o777)]


def arch_layer(arch):
    return tar_bytes([("arch", "file", arch + "\n", 0o644),
                      ("etc", "dir", None, 0o755), ("etc/" + arch, "file", arch * 3 + "\n", 0o600)])


def cmd_multiplatform(root):
    lay = Layout(root)
    base = tar_bytes(BASE)
    amd = image(lay, [base, arch_layer("amd64")], arch="amd64")
    arm = image(lay, [base, arch_layer("arm64")], arch="arm64", variant="v8")
    # the order puts arm64 first so that "first manifest" is not mistaken for "linux/amd64"
    lay.write_index([arm, amd])


def cmd_nested(root):
    lay = Layout(root)
    base = tar_bytes(BASE)
    single = image(lay, [base, arch_layer("amd64")], arch="amd64")
    inner = lay.put(canon({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [single]}),
                    MT_INDEX)
    outer = lay.put(canon({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [inner]}),
                    MT_INDEX, annotations={REF_NAME: "t"})
    amd = image(lay, [base, arch_layer("amd64")], arch="amd64")
    arm = image(lay, [base, arch_layer("arm64")], arch="arm64", variant="v8")
    multi = lay.put(canon({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [arm, amd]}),
                    MT_INDEX, annotations={REF_NAME: "multi"})
    other = image(lay, [tar_bytes([("other", "file", "other\n", 0o644)])], tag="other")
    lay.write_index([other, outer, multi])


def cmd_opaque_layer(out):
    """A layer that makes dir/ opaque (hiding everything below it from lower layers) and adds
    one file there; replaces the fifo by a directory and etc/hello by a symlink."""
    t = tar_bytes([("dir", "dir", None, 0o750), ("dir/.wh..wh..opq", "file", b"", 0o644),
                   ("dir/fresh", "file", "fresh\n", 0o640),
                   ("fifo", "dir", None, 0o700), ("fifo/inside", "file", "inside\n", 0o644),
                   ("etc", "dir", None, 0o755), ("etc/hello", "symlink", "/dir/fresh", 0o777)])
    with open(out, "wb") as f:
        f.write(t)


def layer_tars(lay, mdesc):
    """The uncompressed tar of each layer of a manifest, with its config and manifest."""
    m = lay.get_json(mdesc)
    out = []
    for l in m["layers"]:
        b = lay.get(l)
        if l["mediaType"].endswith("gzip") or b[:2] == b"\x1f\x8b":
            b = gzip.decompress(b)
        out.append(b)
    return m, lay.get(m["config"]), out


def add_file(t, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = EPOCH
    ti.mode = 0o644
    t.addfile(ti, io.BytesIO(data))


def add_dir(t, name):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mtime = EPOCH
    ti.mode = 0o755
    t.addfile(ti)


def cmd_docker_oci(root, tag, name, out):
    """docker >= 25 writes an OCI layout inside the tar plus the old manifest.json that points
    at blobs/sha256/<hex>; its layers are uncompressed."""
    src = Layout(root, create=False)
    _, cfg, tars = layer_tars(src, src.find(tag))
    blobs = {}

    def put(b):
        h = sha256(b)
        blobs[h] = b
        return h

    layers = [{"mediaType": MT_LAYER, "digest": "sha256:" + put(t), "size": len(t)} for t in tars]
    c = {"mediaType": MT_CONFIG, "digest": "sha256:" + put(cfg), "size": len(cfg)}
    m = canon({"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": c, "layers": layers})
    mh = put(m)
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [
        {"mediaType": MT_MANIFEST, "digest": "sha256:" + mh, "size": len(m),
         "annotations": {"io.containerd.image.name": "docker.io/library/%s:%s" % (name, tag),
                         REF_NAME: tag}}]}
    manifest = [{"Config": "blobs/sha256/" + c["digest"][7:], "RepoTags": ["%s:%s" % (name, tag)],
                 "Layers": ["blobs/sha256/" + l["digest"][7:] for l in layers],
                 "LayerSources": {l["digest"]: l for l in layers}}]
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        add_dir(t, "blobs")
        add_dir(t, "blobs/sha256")
        for h, b in sorted(blobs.items()):
            add_file(t, "blobs/sha256/" + h, b)
        add_file(t, "index.json", canon(index))
        add_file(t, "manifest.json", canon(manifest))
        add_file(t, "oci-layout", canon({"imageLayoutVersion": "1.0.0"}))
        add_file(t, "repositories", canon({name: {tag: mh}}))


def cmd_docker_legacy(root, tag, name, out):
    """docker < 25: <id>/layer.tar, <id>/json, <id>/VERSION, <config-hex>.json, manifest.json,
    repositories."""
    src = Layout(root, create=False)
    _, cfg, tars = layer_tars(src, src.find(tag))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        ids, parent = [], ""
        for b in tars:
            lid = sha256((parent + "\n" + sha256(b)).encode())
            add_dir(t, lid)
            add_file(t, lid + "/VERSION", b"1.0")
            v1 = {"id": lid, "created": "2023-11-14T22:13:20Z"}
            if parent:
                v1["parent"] = parent
            add_file(t, lid + "/json", canon(v1))
            add_file(t, lid + "/layer.tar", b)
            ids.append(lid)
            parent = lid
        ch = sha256(cfg)
        add_file(t, ch + ".json", cfg)
        add_file(t, "manifest.json", canon([{"Config": ch + ".json",
                                            "RepoTags": ["%s:%s" % (name, tag)],
                                            "Layers": [i + "/layer.tar" for i in ids]}]))
        add_file(t, "repositories", canon({name: {tag: ids[-1]}}))


def retag_manifest(lay, tag, mutate):
    """Rewrite the manifest tagged TAG through mutate(manifest dict) and point index.json at the
    new blob; returns the new manifest's blob path."""
    idx = lay.index()
    for d in idx["manifests"]:
        if d.get("annotations", {}).get(REF_NAME) == tag:
            m = lay.get_json(d)
            mutate(m)
            nd = lay.put(canon(m), d["mediaType"])
            d.update(digest=nd["digest"], size=nd["size"])
            lay.write_index(idx["manifests"])
            return lay.blob_path(nd["digest"])
    raise SystemExit("image-fixtures: no tag '%s'" % tag)


def zeros_digest(n):
    h = hashlib.sha256()
    z = bytes(1 << 20)
    for _ in range(n >> 20):
        h.update(z)
    return "sha256:" + h.hexdigest()


def cmd_corrupt(kind, root, tag):
    """Break the layout at ROOT (a copy); print the name of the file the error should name."""
    lay = Layout(root, create=False)
    mdesc = lay.find(tag)
    m = lay.get_json(mdesc)
    last = m["layers"][-1]
    rel = lambda p: os.path.relpath(p, root)
    if kind == "no-oci-layout":
        os.unlink(os.path.join(root, "oci-layout"))
        print("oci-layout")
    elif kind == "layout-version":
        with open(os.path.join(root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "2.0.0"}, f)
        print("oci-layout")
    elif kind == "missing-manifest":
        os.unlink(lay.blob_path(mdesc["digest"]))
        print(rel(lay.blob_path(mdesc["digest"])))
    elif kind == "missing-blob":
        os.unlink(lay.blob_path(last["digest"]))
        print(rel(lay.blob_path(last["digest"])))
    elif kind == "digest-mismatch":
        # same size and still a valid gzip stream: only the header's MTIME field changes
        p = lay.blob_path(last["digest"])
        with open(p, "r+b") as f:
            if f.read(2) != b"\x1f\x8b":
                raise SystemExit("image-fixtures: the last layer is not gzip")
            f.seek(4)
            f.write(b"\x01\x02\x03\x04")
        print(rel(p))
    elif kind == "config-digest-mismatch":
        # same size and still valid JSON with the same fields: one letter of a value changes
        p = lay.blob_path(m["config"]["digest"])
        with open(p, "rb") as f:
            b = f.read()
        if b'"amd64"' not in b:
            raise SystemExit("image-fixtures: no amd64 in the config")
        with open(p, "wb") as f:
            f.write(b.replace(b'"amd64"', b'"amd65"', 1))
        print(rel(p))
    elif kind == "size-mismatch":
        d = last["digest"]

        def grow(mm):
            mm["layers"][-1]["size"] += 1
        retag_manifest(lay, tag, grow)
        print(rel(lay.blob_path(d)))
    elif kind == "bad-digest-index":
        idx = lay.index()
        for d in idx["manifests"]:
            d["digest"] = "sha256:../../x"
        lay.write_index(idx["manifests"])
        print("sha256:../../x")
    elif kind == "bad-digest-layer":
        def bad(mm):
            mm["layers"][-1]["digest"] = "sha256:../../../../etc/passwd"
        retag_manifest(lay, tag, bad)
        print("sha256:../../../../etc/passwd")
    elif kind == "index-not-json":
        with open(os.path.join(root, "index.json"), "w") as f:
            f.write('{"schemaVersion": 2, "manifests": [ this is not json\n')
        print("index.json")
    elif kind == "manifest-not-json":
        junk = b"<html>not a manifest</html>\n"
        d = lay.put(junk, MT_MANIFEST)
        idx = lay.index()
        for x in idx["manifests"]:
            if x.get("annotations", {}).get(REF_NAME) == tag:
                x.update(digest=d["digest"], size=d["size"])
        lay.write_index(idx["manifests"])
        print(rel(lay.blob_path(d["digest"])))
    elif kind == "diff-ids":
        cfg = lay.get_json(m["config"])
        cfg["rootfs"]["diff_ids"].append("sha256:" + "ab" * 32)
        c = lay.put(canon(cfg), m["config"]["mediaType"])

        def recfg(mm):
            mm["config"] = c
        retag_manifest(lay, tag, recfg)
        print(rel(lay.blob_path(c["digest"])))
    elif kind == "huge-manifest":
        n = 1 << 30
        d = zeros_digest(n)
        with open(lay.blob_path(d), "wb") as f:
            f.truncate(n)
        idx = lay.index()
        for x in idx["manifests"]:
            if x.get("annotations", {}).get(REF_NAME) == tag:
                x.update(digest=d, size=n)
        lay.write_index(idx["manifests"])
        print(rel(lay.blob_path(d)))
    else:
        raise SystemExit("image-fixtures: unknown corruption '%s'" % kind)


def cmd_layers(root, tag):
    lay = Layout(root, create=False)
    for l in lay.get_json(lay.find(tag))["layers"]:
        print(l["digest"])


def cmd_verify(root):
    """Every blob's name is its sha256; every descriptor reachable from index.json exists with
    its size; manifests' configs list as many diff_ids as there are layers."""
    lay = Layout(root, create=False)
    with open(os.path.join(root, "oci-layout")) as f:
        if json.load(f).get("imageLayoutVersion") != "1.0.0":
            raise SystemExit("verify: bad oci-layout")
    bdir = os.path.join(root, "blobs", "sha256")
    for h in os.listdir(bdir):
        with open(os.path.join(bdir, h), "rb") as f:
            if sha256(f.read()) != h:
                raise SystemExit("verify: blob %s does not hash to its name" % h)
    seen = 0
    todo = list(lay.index()["manifests"])
    while todo:
        d = todo.pop()
        p = lay.blob_path(d["digest"])
        if os.path.getsize(p) != d["size"]:
            raise SystemExit("verify: %s: size %d != %d" % (d["digest"], os.path.getsize(p),
                                                              d["size"]))
        seen += 1
        if d["mediaType"] in (MT_INDEX, MT_DOCKER_LIST):
            todo += lay.get_json(d)["manifests"]
        elif d["mediaType"] in (MT_MANIFEST, MT_DOCKER_MANIFEST):
            m = lay.get_json(d)
            todo += [m["config"]] + m["layers"]
            cfg = lay.get_json(m["config"])
            if len(cfg["rootfs"]["diff_ids"]) != len(m["layers"]):
                raise SystemExit("verify: %s: diff_ids and layers differ" % d["digest"])
    print(seen)


def main(argv):
    if not argv:
        raise SystemExit(__doc__)
    cmds = {"opaque-layer": cmd_opaque_layer, "multiplatform": cmd_multiplatform,
            "nested": cmd_nested, "docker-oci": cmd_docker_oci,
            "docker-legacy": cmd_docker_legacy, "corrupt": cmd_corrupt, "layers": cmd_layers,
            "verify": cmd_verify}
    f = cmds.get(argv[0])
    if f is None:
        raise SystemExit(__doc__)
    f(*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
