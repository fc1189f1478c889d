#!/usr/bin/env python3
"""The whole gallery in one ``forge compose recipes/`` vs the same recipes by separate ``forge compose`` calls.

Every recipe of recipes/ (from its lock, every architecture it names: amd64 and arm64), warm (one untimed
gallery compose first fills the cache's unpacked packages), OCI images. The two ways alternate run by run so
that the other load on the machine falls on both alike; each is timed as whole processes (interpreter start
included), median of ``--repeat`` runs. The digests of the two ways are compared too: they must be identical.

    python3 bench/gallery.py [--repeat 3] [--cache-dir DIR]

``--cache-dir`` (default: $FORGE_CACHE, else cache/ at the project root) must hold the gallery's .debs for a
warm run (a cold one downloads them first, untimed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORGE = [sys.executable, "-m", "rootfs_forge"]


def run(argv: list[str], cache: str) -> tuple[float, str]:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    done = subprocess.run([*FORGE, *argv, "--cache-dir", cache], capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - t0
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
    ap.add_argument("--repeat", type=int, default=3, help="runs of each way (median; default 3)")
    ap.add_argument("--cache-dir", default=os.environ.get("FORGE_CACHE") or str(ROOT / "cache"))
    ap.add_argument("-v", "--verbose", action="store_true", help="print each run's time to stderr")
    args = ap.parse_args()
    # an installed forge runs from byte-code: compile once, as pip would
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "rootfs_forge")], check=True,
                   capture_output=True, env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    gallery = ROOT / "recipes"
    recipes = sorted(gallery.glob("*.toml"))
    times: dict[str, list[float]] = {"one": [], "separate": []}
    mismatched: set[str] = set()
    work = Path(tempfile.mkdtemp(prefix="forge-bench-gallery-"))
    load = os.getloadavg()[0]
    try:
        together(gallery, work / "warm-up", args.cache_dir)  # warm: the unpacked packages are in the cache
        shutil.rmtree(work / "warm-up")
        for i in range(args.repeat):
            for way in ("one", "separate") if i % 2 == 0 else ("separate", "one"):
                out = work / way
                if way == "one":
                    seconds, digests = together(gallery, out, args.cache_dir)
                else:
                    seconds, digests = separately(recipes, out, args.cache_dir)
                times[way].append(seconds)
                if way == "one":
                    one_digests = digests
                else:
                    sep_digests = digests
                shutil.rmtree(out)
                if args.verbose:
                    print(f"{way}: {seconds:.2f} s", file=sys.stderr)
            mismatched |= {k for k in sep_digests if one_digests.get(k) != sep_digests[k]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one, sep = statistics.median(times["one"]), statistics.median(times["separate"])
    archs = "amd64+arm64"
    print(f"the gallery: {len(recipes)} recipes x {archs}, OCI, warm; median of {args.repeat} runs each, "
          f"alternating (load average {load:.1f} at the start, {os.cpu_count()} cores)")
    print(f"{'way':52} {'median':>9} {'runs':>26}")
    print(f"{'one `forge compose recipes/`':52} {one:7.2f} s {' '.join(f'{t:.1f}' for t in times['one']):>26}")
    print(f"{'separate `forge compose R.toml` calls, in sequence':52} {sep:7.2f} s "
          f"{' '.join(f'{t:.1f}' for t in times['separate']):>26}")
    print(f"ratio: one call is {sep / one:.2f}x faster (target >= 2x); digests identical: "
          f"{'yes' if not mismatched else 'NO: ' + ', '.join(sorted(mismatched))} ({len(recipes)} images)")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
