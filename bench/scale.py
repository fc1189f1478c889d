#!/usr/bin/env python3
"""How cost grows with the request: `forge compose` vs `mmdebstrap` for ~60, ~160 and ~500 packages, one table.

Per package set both tools install the same request from the host's apt sources (read at run time; no host name
is written anywhere) into an empty directory, as root: forge composes a `rootfs` directory (`essential = true`,
`profile = "full"`: nothing filtered); mmdebstrap runs its essential variant with Debian's merged-/usr hook and
`--include` of the request (apt, no Recommends: mmdebstrap's default). Each set is timed cold (empty caches:
indexes and packages are downloaded) and warm (caches kept; mmdebstrap's .debs and apt lists synced in, as
bench/compose.py does), the two tools taking turns run by run so that the machine's other load falls on both.
Then a least-squares line through each tool's (packages, seconds) points gives its cost per 100 packages.

Run from the project root, as root: `python3 bench/scale.py [--runs N] [--cold-runs N] [--sets NAME…]
[--cache-dir DIR]`. Takes a long time (34 minutes on 2 busy cores): mmdebstrap runs dpkg and the maintainer
scripts of ~530 packages in the largest set, and the cold runs download ~250 MB of packages per tool.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import compile_forge, host_suite_and_mirrors, load_average, preflight, print_table  # noqa: E402
from bench.compose import Bench, ForgeConfig, MmConfig, Runs, fmt_mb, fmt_s, ratio, remove_tree  # noqa: E402

MERGED_USR = "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"


@dataclass(frozen=True)
class ScaleSet:
    name: str
    request: tuple[str, ...]  # on top of the essential set
    what: str


# Package counts as forge resolves them on bookworm amd64 (essential = true): 61, 157, 532.
SETS = (
    ScaleSet("essential", (), "the essential set"),
    ScaleSet("dev-tools", ("build-essential", "git", "python3-numpy", "perl"),
             "essential + a compiler, git, Python with numpy and Perl (issue #18's 157-package row)"),
    ScaleSet("dev-env", (
        "build-essential", "git", "python3-dev", "python3-pip", "python3-venv", "cmake", "gdb", "vim",
        "openssh-client", "curl", "pkg-config", "autoconf", "automake", "libtool", "meson", "ninja-build", "strace",
        "libssl-dev", "zlib1g-dev", "libffi-dev", "sqlite3", "postgresql-client", "subversion", "mercurial",
        "libwww-perl", "libdbi-perl", "libmoose-perl", "libdatetime-perl", "python3-numpy", "python3-requests",
        "python3-yaml", "python3-pytest", "ruby", "python3-pandas", "libtest-most-perl", "libdevel-cover-perl",
        "libmojolicious-perl", "libtemplate-perl", "libdbd-sqlite3-perl", "devscripts", "libcatalyst-perl",
        "libdist-zilla-perl", "python3-sphinx"),
        "essential + a desktop-less development environment (compilers, build tools, VCSs, Python, Perl, Ruby)"),
)


def slope_per_100(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(packages, seconds)`` points, in seconds per 100 packages; None without two
    distinct package counts."""
    if len({x for x, _ in points}) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return 100 * sxy / sxx


def points(runs: Sequence[Runs], cold: bool) -> list[tuple[float, float]]:
    """One (packages, median seconds) point per set that has both."""
    out = []
    for r in runs:
        secs = r.cold_s() if cold else r.warm_s()
        if r.packages and secs is not None:
            out.append((float(r.packages), secs))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="warm runs per tool and set (median; default 3)")
    ap.add_argument("--cold-runs", type=int, default=1, help="cold runs per tool and set (median; default 1)")
    ap.add_argument("--sets", nargs="+", choices=[s.name for s in SETS], help="only these sets (default: all)")
    ap.add_argument("--cache-dir", type=Path, help="where both tools keep their caches, in subdirectories of "
                    "their own that cold runs empty (default: the scratch directory)")
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each run's time to stderr")
    args = ap.parse_args()
    if (status := preflight("bench/scale.py")) is not None:
        return status
    sets = [s for s in SETS if not args.sets or s.name in args.sets]
    suite, mirrors = host_suite_and_mirrors()
    compile_forge()
    started, load = time.perf_counter(), load_average()
    work = Path(tempfile.mkdtemp(prefix="forge-bench-scale-"))
    caches = args.cache_dir.resolve() if args.cache_dir else work
    bench = Bench(work, args.arch, suite, mirrors, args.verbose)
    results: list[tuple[ScaleSet, Runs, Runs]] = []
    try:
        for s in sets:
            request = s.request or ("base-files",)
            f = ForgeConfig(s.name, request, True, "full")
            m = MmConfig(s.name, "essential", request, (MERGED_USR,))
            fr, mr = Runs(), Runs()
            fcache, mcache = caches / f"scale-forge-{s.name}", caches / f"scale-mm-{s.name}"

            def f_once(cold: bool, f: ForgeConfig = f, fcache: Path = fcache) -> tuple[float, int, int]:
                if cold:
                    remove_tree(fcache)
                return bench.forge_once(f, fcache)

            def m_once(cold: bool, m: MmConfig = m, mcache: Path = mcache) -> tuple[float, int, int]:
                for d in (mcache / "debs", mcache / "lists"):
                    if cold:
                        remove_tree(d)
                    d.mkdir(parents=True, exist_ok=True)
                return bench.mm_once(m, mcache, cold)

            # cold runs first (the last one leaves the caches filled), then warm ones, taking turns
            for cold, n in ((True, args.cold_runs), (False, args.runs)):
                for _ in range(n):
                    bench.measure(f_once, fr, cold)
                    bench.measure(m_once, mr, cold)
            results.append((s, fr, mr))
    except RuntimeError as exc:
        print(f"bench/scale.py: {exc}", file=sys.stderr)
        return 1
    finally:
        remove_tree(work)
    took = time.perf_counter() - started

    headers = ["set", "pkgs f/m", "MB f", "MB m", "size f/m", "cold f s", "cold m s", "cold m/f", "warm f s",
               "warm m s", "warm m/f"]
    table = [[s.name, f"{fr.packages}/{mr.packages}", fmt_mb(fr.size), fmt_mb(mr.size), ratio(fr.size, mr.size),
              fmt_s(fr.cold_s()), fmt_s(mr.cold_s()), ratio(mr.cold_s(), fr.cold_s()),
              fmt_s(fr.warm_s()), fmt_s(mr.warm_s()), ratio(mr.warm_s(), fr.warm_s())] for s, fr, mr in results]
    per_tool = {"f": [fr for _, fr, _ in results], "m": [mr for _, _, mr in results]}
    slopes = {(tool, cold): slope_per_100(points(runs, cold)) for tool, runs in per_tool.items()
              for cold in (True, False)}
    table.append(["s per 100 pkgs", "", "", "", "",
                  fmt_s(slopes["f", True]), fmt_s(slopes["m", True]), ratio(slopes["m", True], slopes["f", True]),
                  fmt_s(slopes["f", False]), fmt_s(slopes["m", False]),
                  ratio(slopes["m", False], slopes["f", False])])
    print(f"how cost grows: {suite} {args.arch}, {len(mirrors)} host source(s); cold = empty caches (median of "
          f"{args.cold_runs}), warm = caches kept (median of {args.runs}); wall seconds incl. process start; "
          f"{load} at the start; the whole bench took {took / 60:.1f} min")
    print_table(headers, table)
    for s, _, _ in results:
        print(textwrap.fill(f"{s.name}: {s.what}" + (f"; request: {' '.join(s.request)}" if s.request else ""),
                            width=116, subsequent_indent="  "))
    print("forge: `forge compose` of `essential = true` + the request, profile full (nothing filtered), as root into "
          "a directory (--format rootfs); cold = its cache directory removed first")
    print("mmdebstrap: --mode=root --format=directory --variant=essential, the merged-/usr hook, --include= the "
          "request (apt, no Recommends); warm = sync-in of the .debs and apt lists its cold run saved "
          "(apt-get update still revalidates)")
    print("sizes: du -sb --apparent-size of the output directory; m/f ratios >1x mean forge is faster; "
          "s per 100 pkgs = least-squares slope of median seconds over each tool's own package counts")
    print("note: other jobs share this machine; timings are noisy")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
