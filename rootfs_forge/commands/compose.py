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
    p.add_argument("recipe", nargs="+",
                   help="a recipe; or several, directories of recipes (their *.toml) and globs: composed together, "
                        "in one process (see --parallel)")
    p.add_argument("-o", "--output", help="where to write (default: out/<name>-<tag>[.tar]); with several "
                                          "recipes, a directory: each recipe to DIR/<name>-<tag>[.tar]")
    p.add_argument("--format", choices=FORMATS, default=DEFAULT_FORMAT,
                   help=f"output format (default: {DEFAULT_FORMAT})")
    add_platform_arg(p, "build only this platform of a multi-platform recipe (linux/amd64, linux/arm64/v8, ...; "
                        "repeat or separate with commas for several); needed for tar and docker-archive when the "
                        "recipe has several", several=True)
    p.add_argument("--locked", action="store_true", help="refuse to compose without a current lock")
    p.add_argument("--no-lock", action="store_true", help="ignore the lock and resolve afresh")
    p.add_argument("-j", "--jobs", type=int, default=8, help="parallel downloads (default 8)")
    p.add_argument("--vendor", action="append", default=[], metavar="URL",
                   help="a vendor store (oci://HOST[:PORT]/REPO or file:///DIR) to find locked .debs in, after the "
                        "cache, the sources, their mirrors and snapshots; repeatable")
    p.add_argument("--registry-cache", metavar="REGISTRY/REPO", default="",
                   help="a shared build cache: fetch the image stored under this compose's key (lock, recipe, "
                        "[[file]] contents, forge's output format) instead of composing, else compose and push it "
                        "there with its SBOM; --json says cache hit or miss")
    p.add_argument("--insecure", action="store_true",
                   help="talk plain HTTP to OCI vendor stores and the registry cache (implied for loopback)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only errors and the result")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also list every effect, maintainer script verdict and note")
    p.add_argument("--parallel", type=int, metavar="N",
                   help="with several recipes, compose up to N at once (default: one per core)")
    add_cache_args(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_compose)


def cmd_compose(args: argparse.Namespace) -> int:
    from rootfs_forge.gallery import is_many

    if is_many(args.recipe):
        from rootfs_forge.commands.compose_many import cmd_compose_many

        return cmd_compose_many(args)
    report = compose(args.recipe[0], args.output, format=args.format, cache_dir=args.cache_dir,
                     offline=args.offline, locked=args.locked, use_lock=not args.no_lock, jobs=args.jobs,
                     progress=not args.quiet and not args.json and sys.stderr.isatty(), warn=warn,
                     vendor=args.vendor, insecure=args.insecure, registry_cache=args.registry_cache,
                     platforms=platforms_of(args))
    if args.json:
        print_json(report)
    else:
        print("\n".join(report_lines(report, quiet=args.quiet, verbose=args.verbose)))
    return 0


SCRIPT_STATUSES = ("emulated", "not-needed", "ignored")


def script_counts(scripts: list[dict[str, Any]]) -> str:
    """``12 emulated, 3 not needed, 130 ignored`` (the verdicts of the maintainer scripts forge did not run)."""
    counts = {s: sum(1 for v in scripts if v["status"] == s) for s in SCRIPT_STATUSES}
    others = len(scripts) - sum(counts.values())
    text = ", ".join(f"{n} {s.replace('-', ' ')}" for s, n in counts.items())
    return text + (f", {others} other" if others else "")


def report_lines(report: dict[str, Any], quiet: bool = False, verbose: bool = False) -> list[str]:
    """What compose prints: a few lines by default (per architecture: packages, size, the scripts' verdicts
    counted), every effect, verdict and note with ``verbose``, only the result line with ``quiet``; a registry
    cache hit is one line."""
    if report.get("cache") == "hit":
        return [f"fetched {report['output']} from the registry cache {report['manifest_digest']} "
                f"in {report['seconds']:.2f} s"]
    lines: list[str] = []
    for arch, r in report["architectures"].items():
        if quiet:
            break
        lines.append(f"{arch}: {r['packages']} packages ({r['downloaded']} downloaded), "
                     f"{human_size(r['kept_bytes'])}; maintainer scripts: {script_counts(r['scripts'])}")
        if not verbose:
            continue
        lines.append(f"  filters dropped {r['filtered_files']} files ({human_size(r['filtered_bytes'])})")
        applied = [e["effect"] for e in r["effects"] if e["status"] == "applied"]
        if applied:
            lines.append(f"  effects applied: {', '.join(applied)}")
        lines += [f"  effect skipped: {e['effect']} ({e['skipped']})" for e in r["effects"]
                  if e["status"] == "skipped"]
        lines += [f"  {s['package']}/{s['script']}: {s['status']}{': ' + str(s['reason']) if s.get('reason') else ''}"
                  for s in r["scripts"]]
        lines += [f"  note: {note}" for note in r["notes"]]
    if not quiet and not verbose and any(r["notes"] or r["scripts"] for r in report["architectures"].values()):
        lines.append("  (-v lists every script, effect and note; --json all of it)")
    what = f"{report['image']} to " if report.get("image") else ""
    digest = f" {report['manifest_digest']}" if report.get("manifest_digest") else ""
    lines.append(f"wrote {what}{report['output']} ({report['format']}){digest} in {report['seconds']:.2f} s")
    return lines
