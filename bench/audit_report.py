#!/usr/bin/env python3
"""``forge audit`` of a gallery image with and without ``--html``: wall and CPU time, and the report's size.

Usage: ``python3 bench/audit_report.py [--runs N] [--image DIR] [--baseline CHECKOUT]``. Without ``--image`` the
python3 gallery recipe is composed from its lock first (needs the host's apt mirror). ``--baseline`` names
another checkout of forge (e.g. ``git worktree add /tmp/base HEAD~3``) whose plain ``forge audit`` is timed in
the same runs, interleaved, to show the audit without ``--html`` is not slower than before. Prints medians.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str], pythonpath: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(pythonpath)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--image", help="an OCI layout to audit (default: compose recipes/python3.toml)")
    ap.add_argument("--baseline", help="another forge checkout to time plain `forge audit` against")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="forge-bench-audit-") as tmp:
        image = args.image
        if not image:
            image = os.path.join(tmp, "python3")
            subprocess.run([sys.executable, "-m", "rootfs_forge", "compose", str(ROOT / "recipes/python3.toml"),
                            "--locked", "-q", "-o", image], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        report = os.path.join(tmp, "report.html")
        audit = [sys.executable, "-m", "rootfs_forge", "audit", image, "--arch", "amd64"]
        variants = {"audit": (audit, ROOT), "audit --html": ([*audit, "--html", report], ROOT)}
        if args.baseline:
            variants["audit (baseline)"] = (audit, Path(args.baseline))
        for argv, path in variants.values():  # warm the page cache and the bytecode
            timed(argv, path)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, (argv, path) in variants.items():
                results[name].append(timed(argv, path))
        print(f"{'variant':18} {'wall median':>12} {'wall min':>9} {'CPU median':>11}")
        for name, runs in results.items():
            print(f"{name:18} {statistics.median(w for w, _ in runs):11.2f}s {min(w for w, _ in runs):8.2f}s "
                  f"{statistics.median(c for _, c in runs):10.2f}s")
        print(f"report size: {os.path.getsize(report) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
