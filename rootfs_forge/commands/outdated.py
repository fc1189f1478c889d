"""forge outdated: the packages of a recipe's lock, a lock or an image that have a newer candidate."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rootfs_forge.commands.common import add_cache_args, add_json_arg, make_context, print_json, table
from rootfs_forge.errors import ForgeError


def register(sub: Any) -> None:
    p = sub.add_parser("outdated", help="list packages with a newer candidate in the sources (security marked)")
    p.add_argument("target", metavar="RECIPE|LOCK|IMAGE",
                   help="a recipe (.toml: its lock), a lock (.lock) or an image, rootfs or registry reference")
    p.add_argument("--fail-on", choices=("security", "any"), default=None,
                   help="exit 1 when a security update (or any update) is found: for CI")
    p.add_argument("--arch", "--platform", dest="arch", default="", metavar="ARCH",
                   help="for an image: the architecture to pick from a multi-platform image (default: the host's)")
    p.add_argument("--insecure", action="store_true", help="read a registry reference over plain HTTP")
    p.add_argument("--sources-from", metavar="RECIPE", default="",
                   help="for an image: compare with this recipe's [[source]] tables (default: the host's apt sources)")
    add_cache_args(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_outdated)


def _from_lock(lock_file: Path, recipe_file: Path | None, host_arch: str) -> tuple[Any, dict[str, list[Any]],
                                                                                    dict[str, int]]:
    from rootfs_forge.archive.sources import resolve_sources
    from rootfs_forge.recipe import load_recipe
    from rootfs_forge.resolve.lock import load_lock

    recipe = load_recipe(recipe_file, host_arch) if recipe_file is not None and recipe_file.is_file() else None
    entries = resolve_sources(recipe.sources if recipe else ())
    lock = load_lock(lock_file, entries)
    pins = recipe.suite_priorities if recipe else {}
    installed = {arch: [(p.name, arch if p.architecture == "all" else p.architecture, p.version)
                        for p in res.packages] for arch, res in lock.resolutions.items()}
    return entries, installed, pins


def _from_image(target: str, arch: str, insecure: bool, recipe_file: str,
                host_arch: str) -> tuple[Any, dict[str, list[Any]], dict[str, int]]:
    from rootfs_forge.archive.sources import resolve_sources
    from rootfs_forge.audit.dpkgreader import read_dpkg_db
    from rootfs_forge.audit.target import open_target
    from rootfs_forge.recipe import load_recipe

    recipe = load_recipe(Path(recipe_file), host_arch) if recipe_file else None
    packages = read_dpkg_db(open_target(target, arch=arch, insecure=insecure).view)
    if not packages:
        raise ForgeError("check", target, "it has no dpkg database to compare")
    pins = recipe.suite_priorities if recipe else {}
    return resolve_sources(recipe.sources if recipe else ()), {
        arch: [(p.name, arch if p.architecture == "all" else p.architecture, p.version) for p in packages]}, pins


def cmd_outdated(args: argparse.Namespace) -> int:
    from rootfs_forge.resolve.outdated import find_outdated

    ctx = make_context(args)
    target = args.target
    if target.endswith(".toml"):
        from rootfs_forge.resolve.lock import lock_path

        entries, installed, pins = _from_lock(lock_path(Path(target)), Path(target), ctx.host_arch)
    elif target.endswith(".lock"):
        entries, installed, pins = _from_lock(Path(target), Path(target).with_suffix(".toml"), ctx.host_arch)
    else:
        arch = args.arch.split("/")[1] if args.arch.count("/") in (1, 2) else (args.arch or ctx.host_arch)
        entries, installed, pins = _from_image(target, arch, args.insecure, args.sources_from, ctx.host_arch)
    found = []
    for arch, pkgs in sorted(installed.items()):
        foreign = sorted({a for _, a, _ in pkgs} - {arch})
        index = ctx.open_index(entries, [arch, *foreign])
        try:
            found += [(arch, o) for o in find_outdated(pkgs, index, pins)]
        finally:
            index.close()
    if args.json:
        print_json({"outdated": [{**o.as_dict(), "image_architecture": arch} for arch, o in found],
                    "security": sum(1 for _, o in found if o.security)})
    elif found:
        print(table([[o.name, arch, o.current, o.candidate, o.suite + (" [security]" if o.security else "")]
                     for arch, o in found], ["PACKAGE", "ARCH", "CURRENT", "CANDIDATE", "SUITE"]))
    else:
        print("nothing outdated")
    failing = found if args.fail_on == "any" else [f for f in found if f[1].security] if args.fail_on else []
    return 1 if failing else 0
