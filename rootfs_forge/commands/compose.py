"""forge compose: recipe → rootfs directory, rootfs tarball or OCI image."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rootfs_forge import workdir
from rootfs_forge.commands.common import add_cache_args, add_json_arg, human_size, make_context, print_json
from rootfs_forge.compose import (
    Tree,
    UnpackAhead,
    build_tree,
    check_destination,
    layer_owners,
    remove_tree,
    staged_output,
)
from rootfs_forge.context import Context
from rootfs_forge.errors import ForgeError
from rootfs_forge.fetch import TqdmProgress, fetch_debs
from rootfs_forge.pids import process_alive
from rootfs_forge.plan import Plan, plan
from rootfs_forge.recipe import FORMATS, Recipe, load_recipe

DEFAULT_FORMAT = "oci"


def register(sub: Any) -> None:
    p = sub.add_parser("compose", help="compose a recipe into a rootfs or an OCI image")
    p.add_argument("recipe")
    p.add_argument("-o", "--output", help="where to write (default: out/<name>-<tag>[.tar])")
    p.add_argument("--format", choices=FORMATS, default=DEFAULT_FORMAT,
                   help=f"output format (default: {DEFAULT_FORMAT})")
    p.add_argument("--locked", action="store_true", help="refuse to compose without a current lock")
    p.add_argument("--no-lock", action="store_true", help="ignore the lock and resolve afresh")
    p.add_argument("-j", "--jobs", type=int, default=8, help="parallel downloads (default 8)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only errors and the result")
    add_cache_args(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_compose)


def _default_output(name: str, tag: str, fmt: str) -> Path:
    base = Path("out") / f"{name.replace('/', '_')}-{tag}"
    return base.with_name(base.name + ".tar") if fmt in ("tar", "oci-archive", "docker-archive") else base


def cmd_compose(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    ctx = make_context(args)
    recipe = load_recipe(Path(args.recipe), ctx.host_arch)
    if args.jobs < 1:
        raise ForgeError("compose", recipe.path.name, "--jobs must be at least 1")
    dest = Path(args.output) if args.output else _default_output(recipe.name, recipe.tag, args.format)
    check_destination(dest.absolute(), directory=args.format in ("oci", "rootfs"))  # before any work, not after
    # Optimistic: plan against the index set the last update verified while the suites are verified again in
    # the background; the result is written only once that update confirms the set is still current. If an
    # index changed (or the work failed on an index that has since changed), everything is done again.
    ctx.optimistic = not ctx.offline
    try:
        report = _compose(args, ctx, recipe, dest)
    except _IndexChanged:
        report = _compose(args, ctx, recipe, dest)
    except ForgeError:
        if not ctx.optimistic or ctx.confirm():  # the error stands: the index it was met with is current
            raise
        ctx.optimistic = False
        report = _compose(args, ctx, recipe, dest)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    # where the time went (wall seconds per phase); the start-up before the command ran is not in it
    report["timings"] = ctx.timings.report()
    if args.json:
        print_json(report)
    else:
        _print_report(report, quiet=args.quiet)
    return 0


class _IndexChanged(Exception):
    """The optimistic plan's index set is no longer the current one: compose again."""


def _compose(args: argparse.Namespace, ctx: Context, recipe: Recipe, dest: Path) -> dict[str, Any]:
    timings = ctx.timings
    with timings.phase("plan"):
        result = plan(recipe, ctx, locked=args.locked, use_lock=not args.no_lock)
    mirrors = {e.url: e.mirrors for e in result.entries if e.mirrors}
    show_progress = not args.quiet and not args.json and sys.stderr.isatty()
    trees: list[Tree] = []
    report: dict[str, Any] = {"recipe": str(recipe.path), "output": str(dest), "format": args.format,
                              "from_lock": result.from_lock, "architectures": {}}
    multi = len(recipe.architectures) > 1
    with _work_dir(dest, args.format, result) as work:
        for arch in recipe.architectures:
            res = result.resolutions[arch]
            with UnpackAhead(ctx.cache) as ahead:
                with timings.phase("fetch"):  # each .deb is decompressed as soon as it is in
                    fetched = fetch_debs(list(res.packages), ctx.cache, ctx.transport, jobs=args.jobs,
                                         mirrors=mirrors, progress=TqdmProgress(show_progress),
                                         on_ready=ahead.submit)
                debs = {f.package.key: f.path for f in fetched}
                root = Path(work) / f"rootfs-{arch}"
                ahead.close()
                tree = build_tree(root, recipe, arch, res, debs, ctx.epoch, cache=ctx.cache, timings=timings)
            trees.append(tree)
            files_dropped, bytes_dropped = tree.dropped()
            report["architectures"][arch] = {
                "packages": len(res.packages),
                "downloaded": sum(1 for f in fetched if f.downloaded),
                "kept_bytes": tree.kept(),
                "filtered_files": files_dropped,
                "filtered_bytes": bytes_dropped,
                "scripts": tree.effects.report(),
                "effects": tree.effects.effects_report(),
                "notes": list(res.notes) + list(tree.db_notes),
                "epoch": tree.epoch,
            }
        if ctx.optimistic and not ctx.confirm():  # nothing is output from an index that is not current
            ctx.optimistic = False
            raise _IndexChanged()
        with timings.phase("output"):
            report.update(_write_output(trees, recipe, dest, args.format, multi))
    return report


def _work_parent(dest: Path) -> str:
    parent = dest.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    return str(parent)


def _work_dir(dest: Path, fmt: str, result: Plan) -> tempfile.TemporaryDirectory[str]:
    """A temporary directory for the trees: in memory for scratch trees that fit (see rootfs_forge.workdir)."""
    estimate = sum(p.installed_size for res in result.resolutions.values() for p in res.packages) * 1024
    parent = Path(_work_parent(dest))
    where = workdir.choose(estimate, parent, scratch=fmt != "rootfs", env=os.environ.get("FORGE_WORK_DIR"))
    if where == parent:
        # named like staged outputs (".<dest>.forge-<pid>-…"): a later run cleans it up if this one is killed
        return tempfile.TemporaryDirectory(prefix=f".{dest.name}.forge-{os.getpid()}-work-", dir=parent)
    for old in workdir.stale(where, process_alive):
        remove_tree(old)
    return tempfile.TemporaryDirectory(prefix=f"{workdir.WORK_PREFIX}{os.getpid()}-", dir=where)


def _write_output(trees: list[Tree], recipe: Any, dest: Path, fmt: str, multi: bool) -> dict[str, Any]:
    if fmt == "rootfs":
        with staged_output(dest, directory=True) as out:
            if multi:
                for t in trees:
                    os.rename(t.root, out / t.arch)
            else:
                os.rename(trees[0].root, out)
        return {}
    if fmt == "tar":
        from rootfs_forge.layer import write_layer

        if multi:
            raise ForgeError("compose", f"{recipe.path.name} as a tarball", "a tarball holds one architecture; "
                                                                           "use --format oci for several")
        t = trees[0]
        with staged_output(dest, directory=False) as out:
            out.parent.mkdir(parents=True, exist_ok=True)
            blob = write_layer(t.root, out.parent / "blob", epoch=t.epoch, compression="none",
                               owners=layer_owners(t))
            Path(blob.path).rename(out)
        return {"diff_id": blob.diff_id}
    from rootfs_forge.image import write_images

    return write_images(trees, recipe, dest, fmt)


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
