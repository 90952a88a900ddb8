#!/usr/bin/env python3
"""bench-report.py TSV ENV [--no-md] RESULTS.md

Summarises bench.sh's per-run TSV: per filesystem, image, tag and tool the mean/sd/min wall
time, mean CPU (user+sys, containerd's own CPU added), peak RSS and the tree check; then the
issue 8 targets as ratios of means (cairn / peer, same run). Prints the section and, unless
--no-md, replaces the text between the issue-8 markers of RESULTS.md with it (appending the
section when the markers are missing)."""
import statistics as S
import sys

BEGIN = "<!-- issue8-table-begin (bench/bench.sh writes this part) -->"
END = "<!-- issue8-table-end -->"

# (image, tag, cairn case, peer case, limit)
TARGETS = [
    ("debian", "gzip", "cairn import+extract", "podman", 0.6),
    ("debian", "gzip", "cairn import+extract", "umoci", 0.5),
    ("debian", "gzip", "cairn import+extract", "ctr", 0.7),
    ("debian", "gzip", "cairn import+extract", "tar", 1.0),
    ("debian", "zstd", "cairn import+extract", "podman", 0.7),
    ("smallfiles", "gzip", "cairn extract", "tar", 0.7),
    ("bigfile", "gzip", "cairn extract", "tar", 0.5),
    ("bigfile", "zstd", "cairn extract", "tar", 0.8),
    ("debian", "export", "cairn diff gzip:6", "tar -c | pigz -6", 1.0),
]

COMMANDS = """Commands, exactly as timed (`$L` = the layer blobs of IMAGE:TAG, bottom first; D = diff id,
MT = media type from the manifest; every tool writes into its own fresh directory/store):

| tool | command |
|---|---|
| cairn import+extract | `cairn --root R -q import LAYOUT:TAG` then `cairn --root R extract TOP` where the binary has `import` (it had in this run, see the environment), else per layer `cairn --root R content add $L` + `cairn --root R import-blob DIGEST --diff-id D --media-type MT [--parent PREV]`, then the extract; one script |
| cairn extract | `cairn --root R extract TOP` (add and import-blob done untimed before). On overlay the layers are committed before they reach the disk, marked with the boot id (a reboot sends them back to be extracted again from their blobs); tar, umoci and podman do not sync either |
| tar | `for l in $L; do tar -xzf $l -C OUT; done` (zstd: `tar --zstd -xf`) |
| umoci | `umoci unpack --image LAYOUT:TAG BUNDLE` |
| ctr | `ctr -a SOCK -n bench images import --base-name bench/IMAGE --snapshotter overlayfs IMAGE-TAG.oci.tar` (private containerd: own root, state, socket; stopped by PID) |
| podman | `podman --root P --runroot RR --storage-driver overlay --events-backend none --cgroup-manager cgroupfs pull -q oci:LAYOUT:TAG` |
| cairn diff gzip:6 | `cairn --root R diff REC --compression gzip:6 --source-date-epoch 1704067200 -o out.tar.gz` (REC: one record holding the debian tree; the record already has a zstd blob, so every run is a fresh diff + compression): libdeflate level 6, one gzip member per 512 KiB block, on up to 8 threads (src/layer/pgzip.c) |
| tar -c \\| pigz -6 | `tar -C TREE --numeric-owner -cf - . \\| pigz -6 > out.tar.gz` (TREE: the same debian tree) |
"""


def load(path):
    rows = [l.split("\t") for l in open(path).read().splitlines()[1:] if l]
    runs, checks, fsdesc, digests, sizes = {}, {}, {}, {}, {}
    for r in rows:
        if len(r) >= 3 and r[1] == "fs":
            fsdesc[r[0]] = r[2]
            continue
        fs, img, tag, case, run = r[:5]
        key = (fs, img, tag, case)
        if run == "check":
            checks[key] = r[5]
        elif run == "digest":
            digests.setdefault(key, []).append(r[5])
        elif run == "size":
            sizes.setdefault(key, set()).add(int(r[5]))
        elif r[5] == "FAILED":
            runs.setdefault(key, []).append(None)
        else:
            w, u, s, m = float(r[5]), float(r[6]), float(r[7]), int(r[8])
            # containerd runs through every case; its share only counts for ctr's own rows
            own = case == "ctr"
            dc = float(r[9]) if own and len(r) > 9 and r[9] else 0.0
            dr = int(r[10]) if own and len(r) > 10 and r[10] else 0
            runs.setdefault(key, []).append((w, u + s + dc, m, dc, dr))
    return runs, checks, fsdesc, digests, sizes


def stats(v):
    ok = [x for x in v if x]
    if not ok:
        return None
    w = [x[0] for x in ok]
    return {
        "n": len(ok), "failed": len(v) - len(ok), "mean": S.mean(w),
        "sd": S.stdev(w) if len(w) > 1 else 0.0, "min": min(w),
        "cpu": S.mean(x[1] for x in ok), "rss": max(x[2] for x in ok) / 1024,
        "dcpu": S.mean(x[3] for x in ok), "drss": max(x[4] for x in ok) / 1024,
    }


def main(argv):
    nomd = "--no-md" in argv
    argv = [a for a in argv if a != "--no-md"]
    tsv, env, md = argv[0], argv[1], argv[2]
    runs, checks, fsdesc, digests, sizes = load(tsv)
    out = []
    out.append("Environment of this run:\n")
    out.append("```\n" + open(env).read().rstrip() + "\n```\n")
    fss = list(dict.fromkeys(k[0] for k in runs))
    for fs in fss:
        name = "root filesystem" if fs == "root" else "journaled ext4 loop mount"
        out.append(f"\n#### {name} ({fsdesc.get(fs, '?')})\n")
        out.append("| image | tag | tool | runs | wall mean s | sd | min | CPU s | peak RSS MiB | tree |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for key, v in runs.items():
            if key[0] != fs:
                continue
            st = stats(v)
            _, img, tag, case = key
            chk = checks.get(key, "-")
            if key in digests:
                d = digests[key]
                chk = ("same bytes every run (%s…)" % d[0][:12]) if len(set(d)) == 1 else \
                    "DIFFERENT bytes across runs"
            if key in sizes:
                out_size = "output " + "/".join(f"{n:,}" for n in sorted(sizes[key])) + " bytes"
                chk = out_size if chk == "-" else f"{chk}; {out_size}"
            if not st:
                out.append(f"| {img} | {tag} | {case.replace('|', '/')} | 0 | FAILED | | | | | {chk} |")
                continue
            cpu = f"{st['cpu']:.2f}"
            if st["dcpu"]:
                cpu += f" (daemon {st['dcpu']:.2f})"
            rss = f"{st['rss']:.0f}"
            if st["drss"]:
                rss += f" (daemon {st['drss']:.0f})"
            fail = f" ({st['failed']} failed)" if st["failed"] else ""
            case = case.replace("|", "\\|")
            out.append(f"| {img} | {tag} | {case} | {st['n']}{fail} | {st['mean']:.2f} | "
                       f"{st['sd']:.2f} | {st['min']:.2f} | {cpu} | {rss} | {chk} |")
    out.append("\nTargets (ratio of mean wall times, cairn / peer, same run; in brackets the "
               "ratio of the minima):\n")
    out.append("| target | limit | " + " | ".join(
        "root fs" if f == "root" else "journaled loop" for f in fss) + " |")
    out.append("|---|---|" + "---|" * len(fss))
    for img, tag, c, p, lim in TARGETS:
        cells = []
        for fs in fss:
            a, b = stats(runs.get((fs, img, tag, c), [])), stats(runs.get((fs, img, tag, p), []))
            if not a or not b:
                cells.append("-")
                continue
            r, rm = a["mean"] / b["mean"], a["min"] / b["min"]
            verdict = "met" if r <= lim else f"missed by {r / lim - 1:.0%}"
            cells.append(f"{r:.2f} ({rm:.2f}) {verdict}")
        pe = p.replace("|", "\\|")
        out.append(f"| {img}:{tag} {c} vs {pe} | {lim} | " + " | ".join(cells) + " |")
    cairn_rss = [stats(v)["rss"] for k, v in runs.items()
                 if k[3].startswith("cairn") and stats(v)]
    if cairn_rss:
        m = max(cairn_rss)
        out.append(f"| peak RSS of any cairn command | 64 MiB | {m:.0f} MiB "
                   f"{'met' if m <= 64 else 'missed'} |" + " |" * (len(fss) - 1))
    out.append("\n" + COMMANDS)
    text = "\n".join(out) + "\n"
    print(text)
    if nomd:
        return 0
    doc = open(md).read()
    block = BEGIN + "\n" + text + END
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n## Layer import, extract and export against peers (issue 8)\n\n" \
            "Reproduce: `make bench`.\n\n" + block + "\n"
    open(md, "w").write(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
