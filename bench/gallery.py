#!/usr/bin/env python3
"""The whole gallery in one ``forge compose recipes/`` vs the same recipes by separate ``forge compose`` calls.

Every recipe of recipes/ (from its lock, every architecture it names: amd64 and arm64), warm (one untimed
gallery compose first fills the cache's unpacked packages), OCI images. The two ways alternate run by run so
that the other load on the machine falls on both alike; each is timed as whole processes (interpreter start
included). The ratio is the median of ``--repeat`` pairs' ratios (paired A/B timing: robust to the machine's
speed drifting during the call), with the ratio of the two medians beside it. The digests of the two ways are
compared too: they must be identical.

    python3 bench/gallery.py [--repeat 5] [--cache-dir DIR]

``--cache-dir`` (default: $FORGE_CACHE, else cache/ at the project root) must hold the gallery's .debs for a
warm run (a cold one downloads them first, untimed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORGE = [sys.executable, "-m", "rootfs_forge"]


CPU: list[float] = [0.0]  # CPU seconds (user + system) of every forge process run, children included


def run(argv: list[str], cache: str) -> tuple[float, str]:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([*FORGE, *argv, "--cache-dir", cache], capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[0] += after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode != 0:
        raise SystemExit(f"bench/gallery.py: forge {' '.join(argv)} failed: "
                         f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return seconds, done.stdout


def together(recipes: Path, out: Path, cache: str) -> tuple[float, dict[str, str]]:
    seconds, stdout = run(["compose", str(recipes), "-o", str(out), "--json"], cache)
    return seconds, {Path(r["recipe"]).stem: r["manifest_digest"] for r in json.loads(stdout)}


def separately(recipes: list[Path], out: Path, cache: str) -> tuple[float, dict[str, str]]:
    total, digests = 0.0, {}
    for r in recipes:
        seconds, stdout = run(["compose", str(r), "-o", str(out / r.stem), "--json"], cache)
        total += seconds
        digests[r.stem] = json.loads(stdout)["manifest_digest"]
    return total, digests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="pairs of runs, one of each way (median; default 5)")
    ap.add_argument("--cache-dir", default=os.environ.get("FORGE_CACHE") or str(ROOT / "cache"))
    ap.add_argument("-v", "--verbose", action="store_true", help="print each run's time to stderr")
    args = ap.parse_args()
    # an installed forge runs from byte-code: compile once, as pip would
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "rootfs_forge")], check=True,
                   capture_output=True, env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    gallery = ROOT / "recipes"
    recipes = sorted(gallery.glob("*.toml"))
    times: dict[str, list[float]] = {"one": [], "separate": []}
    cpu: dict[str, list[float]] = {"one": [], "separate": []}
    mismatched: set[str] = set()
    work = Path(tempfile.mkdtemp(prefix="forge-bench-gallery-"))
    load = os.getloadavg()[0]
    try:
        together(gallery, work / "warm-up", args.cache_dir)  # warm: the unpacked packages are in the cache
        shutil.rmtree(work / "warm-up")
        for i in range(args.repeat):
            for way in ("one", "separate") if i % 2 == 0 else ("separate", "one"):
                out = work / way
                CPU[0] = 0.0
                if way == "one":
                    seconds, digests = together(gallery, out, args.cache_dir)
                else:
                    seconds, digests = separately(recipes, out, args.cache_dir)
                times[way].append(seconds)
                cpu[way].append(CPU[0])
                if way == "one":
                    one_digests = digests
                else:
                    sep_digests = digests
                shutil.rmtree(out)
                if args.verbose:
                    print(f"{way}: {seconds:.2f} s, {CPU[0]:.2f} s of CPU", file=sys.stderr)
            mismatched |= {k for k in sep_digests if one_digests.get(k) != sep_digests[k]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one, sep = statistics.median(times["one"]), statistics.median(times["separate"])
    pairs = statistics.median(s / o for s, o in zip(times["separate"], times["one"], strict=True))
    print(f"the gallery: {len(recipes)} recipes x amd64+arm64, OCI, warm; median of {args.repeat} runs each, "
          f"alternating (load average {load:.1f} at the start, {os.cpu_count()} cores)")
    print(f"{'way':52} {'wall':>9} {'CPU':>9} {'wall of each run':>22}")
    for way, label in (("one", "one `forge compose recipes/`"),
                       ("separate", "separate `forge compose R.toml` calls, in sequence")):
        print(f"{label:52} {statistics.median(times[way]):7.2f} s {statistics.median(cpu[way]):7.2f} s "
              f"{' '.join(f'{t:.1f}' for t in times[way]):>22}")
    # the pairs' ratios are the figure: each pair ran back to back, so a change of the machine's speed during the
    # call (other jobs share it) falls on both ways of a pair alike; the ratio of the two medians is shown too
    print(f"ratio: one call is {pairs:.2f}x faster (median of the {len(times['one'])} pairs' ratios; ratio of the "
          f"medians {sep / one:.2f}x; target >= 2x); "
          f"digests identical: {'yes' if not mismatched else 'NO: ' + ', '.join(sorted(mismatched))} "
          f"({len(recipes)} images)")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
