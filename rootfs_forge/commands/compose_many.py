"""forge compose A.toml B.toml DIR/ 'GLOB': several recipes in one process, one summary table at the end."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rootfs_forge.commands.common import print_json, warn
from rootfs_forge.commands.fmt import table
from rootfs_forge.commands.platform_arg import platforms_of
from rootfs_forge.errors import ForgeError
from rootfs_forge.gallery import compose_many

HEADERS = ["recipe", "image", "architectures", "packages", "digest or error", "seconds"]


def cmd_compose_many(args: argparse.Namespace) -> int:
    if args.output and Path(args.output).exists() and not Path(args.output).is_dir():
        raise ForgeError("compose", f"several recipes to {args.output}",
                         "-o names a file; with several recipes it names a directory of outputs")
    if args.parallel is not None and args.parallel < 1:
        raise ForgeError("compose", "the recipes", "--parallel must be at least 1")
    t0 = time.perf_counter()
    reports = compose_many(args.recipe, args.output, format=args.format, cache_dir=args.cache_dir,
                           offline=args.offline, locked=args.locked, use_lock=not args.no_lock, jobs=args.jobs,
                           progress=not args.quiet and not args.json and sys.stderr.isatty(), warn=warn,
                           vendor=args.vendor, insecure=args.insecure, registry_cache=args.registry_cache,
                           platforms=platforms_of(args), workers=args.parallel)
    failed = [r for r in reports if "error" in r]
    if args.json:
        print_json(reports)
    else:
        print("\n".join(summary_lines(reports, time.perf_counter() - t0, quiet=args.quiet,
                                      verbose=args.verbose)))
    sys.stdout.flush()
    for r in failed:
        print(f"forge: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def summary_lines(reports: list[dict[str, Any]], seconds: float, quiet: bool = False,
                  verbose: bool = False) -> list[str]:
    """One row per recipe (a failed one shows its error), then the total; ``verbose`` first prints each
    recipe's own compose output (every script, effect and note), ``quiet`` only the table."""
    from rootfs_forge.commands.compose import report_lines

    lines: list[str] = []
    if verbose:
        for r in reports:
            if "error" not in r:
                lines += [f"{r['recipe']}:", *(f"  {line}" for line in report_lines(r, verbose=True)), ""]
    lines.append(table([_row(r) for r in reports], HEADERS))
    if not quiet:
        failed = sum(1 for r in reports if "error" in r)
        what = f"composed {len(reports) - failed} of {len(reports)} recipes"
        lines.append(f"{what} ({failed} failed) in {seconds:.2f} s" if failed else f"{what} in {seconds:.2f} s")
    return lines


def _row(r: dict[str, Any]) -> list[str]:
    if "error" in r:
        return [r["recipe"], r.get("image", "-"), "-", "-", f"error: {r['error']}", f"{r['seconds']:.2f}"]
    archs = r.get("architectures") or {}
    result = r.get("manifest_digest") or r.get("diff_id") or f"{r['output']} ({r['format']})"
    return [r["recipe"], r.get("image", "-"), ",".join(archs) or "-",
            "/".join(str(a.get("packages", "?")) for a in archs.values()) or "-", str(result),
            f"{r['seconds']:.2f}"]
