#!/usr/bin/env python3
"""Index benchmark: forge's cold and warm index times for the host's sources vs `apt-get update` in a scratch dir.

Prints one table; ratios are measured in this run. Run from the project root: `python3 bench/index.py`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rootfs_forge.archive.sources import host_sources
from rootfs_forge.index.context import Context
from rootfs_forge.index.packages import PackageIndex
from tests.support.aptsim import ScratchApt


def timed(fn: object, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--arch", default="amd64")
    args = ap.parse_args()
    entries = [e for e in host_sources() if e.suite.count("-") == 0][:1]  # the main suite (bookworm main)
    work = Path(tempfile.mkdtemp(prefix="forge-bench-index-"))
    try:
        # Download once so both tools are measured on CPU + local I/O, not on the network.
        ctx = Context.create(str(work / "dl"))
        files = ctx.index_files(entries, [args.arch])

        def forge_cold() -> None:
            for f in files:
                for p in ctx.cache.root.glob(f"index/{f.sha256}.idx*"):
                    p.unlink()
            PackageIndex.open(files, ctx.cache).packages("bash")
            # a fresh index's database is written by a detached child: the cold figure waits for it, so it
            # counts the whole build (a compose goes on meanwhile), and the next run starts from nothing
            deadline = time.monotonic() + 60
            while not all(ctx.cache.index_path(f.sha256).exists() for f in files) and time.monotonic() < deadline:
                time.sleep(0.005)

        def forge_warm() -> None:
            PackageIndex.open(files, ctx.cache).packages("bash")

        def forge_update_warm() -> None:
            Context.create(str(work / "dl")).open_index(entries, [args.arch]).packages("bash")

        cold = timed(forge_cold, args.repeat)
        warm = timed(forge_warm, args.repeat)
        upd = timed(forge_update_warm, args.repeat)

        apt = ScratchApt.create(work / "apt", args.arch)
        for f in (work / "apt" / "etc" / "sources.list.d").iterdir():
            f.write_text("\n\n".join(p for p in f.read_text().split("\n\n")
                                     if f"Suites: {entries[0].suite}" in p or f" {entries[0].suite} " in p))
        apt.update()

        def apt_cold() -> None:
            shutil.rmtree(work / "apt" / "lists")
            (work / "apt" / "lists" / "partial").mkdir(parents=True)
            apt.update()

        def apt_warm() -> None:
            subprocess.run(["apt-cache", *apt.options(), "show", "bash"], check=True, capture_output=True)

        a_cold = timed(apt_cold, args.repeat)
        a_warm = timed(apt_warm, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("cold index (forge: build from cached Packages; apt: update incl. download)", cold, a_cold),
        ("warm load + one lookup (forge: open index; apt: apt-cache show)", warm, a_warm),
        ("forge update, index unchanged (re-verify InRelease) vs apt-get update", upd, a_cold),
    ]
    print(f"index benchmark: {entries[0].suite} {','.join(entries[0].components)} {args.arch}, "
          f"median of {args.repeat}")
    print(f"{'case':78} {'forge s':>8} {'apt s':>8} {'apt/forge':>10}")
    for name, forge_s, apt_s in rows:
        print(f"{name:78} {forge_s:8.3f} {apt_s:8.3f} {apt_s / forge_s:9.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
