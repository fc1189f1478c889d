"""forge compose: recipe → rootfs directory, rootfs tarball or OCI image."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rootfs_forge.api import DEFAULT_FORMAT, compose
from rootfs_forge.commands.common import add_cache_args, add_json_arg, human_size, print_json, warn
from rootfs_forge.commands.platform_arg import add_platform_arg, platforms_of
from rootfs_forge.recipe import FORMATS


def register(sub: Any) -> None:
    p = sub.add_parser("compose", help="compose a recipe into a rootfs or an OCI image")
    p.add_argument("recipe")
    p.add_argument("-o", "--output", help="where to write (default: out/<name>-<tag>[.tar])")
    p.add_argument("--format", choices=FORMATS, default=DEFAULT_FORMAT,
                   help=f"output format (default: {DEFAULT_FORMAT})")
    add_platform_arg(p, "build only this platform of a multi-platform recipe (linux/amd64, linux/arm64/v8, ...; "
                        "repeat or separate with commas for several); needed for tar and docker-archive when the "
                        "recipe has several", several=True)
    p.add_argument("--locked", action="store_true", help="refuse to compose without a current lock")
    p.add_argument("--no-lock", action="store_true", help="ignore the lock and resolve afresh")
    p.add_argument("-j", "--jobs", type=int, default=8, help="parallel downloads (default 8)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only errors and the result")
    add_cache_args(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_compose)


def cmd_compose(args: argparse.Namespace) -> int:
    report = compose(args.recipe, args.output, format=args.format, cache_dir=args.cache_dir,
                     offline=args.offline, locked=args.locked, use_lock=not args.no_lock, jobs=args.jobs,
                     progress=not args.quiet and not args.json and sys.stderr.isatty(), warn=warn,
                     platforms=platforms_of(args))
    if args.json:
        print_json(report)
    else:
        _print_report(report, quiet=args.quiet)
    return 0


def _print_report(report: dict[str, Any], quiet: bool) -> None:
    for arch, r in report["architectures"].items():
        skipped = list(r["scripts"])
        if not quiet:
            print(f"{arch}: {r['packages']} packages ({r['downloaded']} downloaded), "
                  f"{human_size(r['kept_bytes'])} kept; filters dropped {r['filtered_files']} files "
                  f"({human_size(r['filtered_bytes'])})")
            applied = [e["effect"] for e in r["effects"] if e["status"] == "applied"]
            skipped_fx = [f"{e['effect']} ({e['skipped']})" for e in r["effects"] if e["status"] == "skipped"]
            if applied:
                print(f"  effects applied: {', '.join(applied)}")
            for s in skipped_fx:
                print(f"  effect skipped: {s}")
            if skipped:
                print(f"  maintainer scripts not run: {len(skipped)}")
                for s in skipped:
                    print(f"    {s['package']}/{s['script']}: {s['status']}"
                          f"{': ' + str(s['reason']) if s.get('reason') else ''}")
            for note in r["notes"]:
                print(f"  note: {note}")
    digest = f" {report['manifest_digest']}" if report.get("manifest_digest") else ""
    print(f"wrote {report['output']} ({report['format']}){digest} in {report['seconds']:.2f} s")
