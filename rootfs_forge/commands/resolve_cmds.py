"""forge resolve / why / lock: what a recipe installs, why, and pinning it."""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

from rootfs_forge.archive.sources import resolve_sources
from rootfs_forge.commands.common import add_cache_args, add_json_arg, human_size, make_context, print_json, table
from rootfs_forge.errors import ForgeError
from rootfs_forge.index.context import Context
from rootfs_forge.recipe import Recipe, load_recipe
from rootfs_forge.resolve.lock import dump_lock, load_lock, lock_path
from rootfs_forge.resolve.plan import plan, resolve_recipe
from rootfs_forge.resolve.why import resolution_table, why_chains
from rootfs_forge.util.files import write_atomic


def register(sub: Any) -> None:
    p = sub.add_parser("resolve", help="show the packages a recipe installs and why")
    p.add_argument("recipe")
    p.add_argument("--no-lock", action="store_true", help="resolve afresh even when a current lock exists")
    p.add_argument("-v", "--verbose", action="store_true", help="print every choice the resolver makes")
    _graph_args(p, "print the why-graph as Graphviz (pipe it to dot -Tsvg)")
    p.set_defaults(func=cmd_resolve)

    p = sub.add_parser("why", help="every chain from a requested package to PKG (in a recipe, image or rootfs)")
    p.add_argument("package")
    p.add_argument("recipe", metavar="RECIPE|TARGET",
                   help="a recipe (.toml), an image/rootfs or a registry reference: forge images carry their "
                        "why-graph")
    _graph_args(p, "print the chains as Graphviz (pipe it to dot -Tsvg)")
    from rootfs_forge.commands.platform_arg import add_target_args

    add_target_args(p, "for an image: the platform to read from a multi-platform image (linux/amd64, "
                       "linux/arm64/v8 ...; default: the host's, said in one line on stderr)")
    p.set_defaults(func=cmd_why)

    p = sub.add_parser("lock", help="resolve a recipe and write RECIPE.lock next to it")
    p.add_argument("recipe")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when the lock is stale (the recipe changed) or behind the archive "
                        "(a newer version, or a locked .deb gone)")
    p.add_argument("packages", nargs="*", metavar="PKG",
                   help="with --update: update only these; every other locked package keeps its version")
    p.add_argument("--update", action="store_true",
                   help="re-resolve against the sources and print what changed in the lock (old → new, added, "
                        "removed, and why)")
    add_json_arg(p)
    p.add_argument("--vendor", action="append", default=[], metavar="URL",
                   help="then vendor the locked .debs into this store (oci://HOST[:PORT]/REPO or file:///DIR), "
                        "while the archive still has them; repeatable")
    p.add_argument("--insecure", action="store_true", help="push to OCI vendor stores over plain HTTP")
    add_cache_args(p)
    p.set_defaults(func=cmd_lock)


def _graph_args(p: argparse.ArgumentParser, dot_help: str) -> None:
    """The cache options, ``--json`` and ``--dot`` of a command that prints a why-graph."""
    add_cache_args(p)
    add_json_arg(p)
    p.add_argument("--dot", action="store_true", help=dot_help)


def _reporter(args: argparse.Namespace) -> Any:
    if getattr(args, "verbose", False):
        return lambda event: print(f"  resolver: {event}", file=sys.stderr)
    return None


def cmd_resolve(args: argparse.Namespace) -> int:
    ctx = make_context(args)
    recipe = load_recipe(Path(args.recipe), ctx.host_arch)
    result = plan(recipe, ctx, use_lock=not args.no_lock, reporter=_reporter(args))
    if args.verbose and result.from_lock:
        _print_locked_reasons(recipe, result.resolutions)
    if args.dot:
        from rootfs_forge.audit.dotviews import resolution_dot

        sys.stdout.write(resolution_dot(f"{recipe.name}:{recipe.tag}", result.resolutions))
        return 0
    if args.json:
        print_json({arch: {"packages": resolution_table(res), "order": list(res.order), "notes": list(res.notes),
                           "from_lock": result.from_lock}
                    for arch, res in result.resolutions.items()})
        return 0
    for arch, res in result.resolutions.items():
        rows = resolution_table(res)
        print(f"# {recipe.name}:{recipe.tag} {arch}: {len(rows)} packages, "
              f"{human_size(sum(int(r['size']) for r in rows))} to download, "
              f"{human_size(1024 * sum(int(r['installed_size']) for r in rows))} installed"
              f"{' (from lock)' if result.from_lock else ''}")
        print(table([[str(r["package"]), str(r["version"]), str(r["arch"]), human_size(int(r["size"])),
                      str(r["reason"])] for r in rows], ["PACKAGE", "VERSION", "ARCH", "SIZE", "REASON"]))
        for note in res.notes:
            print(f"note: {note}")
    return 0


def _print_locked_reasons(recipe: Recipe, resolutions: dict[str, Any]) -> None:
    """``resolve -v`` with a lock: the choices are not made again, so show the reasons the lock recorded."""
    print(f"  resolver: from {lock_path(recipe.path)} (the reasons it recorded; --no-lock -v resolves again and "
          "shows every choice)", file=sys.stderr)
    for arch, res in resolutions.items():
        for p in res.packages:
            reasons = "; ".join(f"{r.parent}: {r.relation}" if r.parent else r.relation
                                for r in res.why.get(p.key, ()))
            print(f"  resolver: {arch}: {p.name} {p.version}: {reasons or 'recorded without a reason'}",
                  file=sys.stderr)
        for note in res.notes:
            print(f"  resolver: {arch}: note: {note}", file=sys.stderr)


def cmd_why(args: argparse.Namespace) -> int:
    if not args.recipe.endswith(".toml"):
        return _why_target(args)
    ctx = make_context(args)
    recipe = load_recipe(Path(args.recipe), ctx.host_arch)
    result = plan(recipe, ctx)
    out: dict[str, list[list[str]]] = {}
    for arch, res in result.resolutions.items():
        out[arch] = why_chains(res, args.package)
    if not any(out.values()):
        raise ForgeError("explain", f"package {args.package}", f"{recipe.path} does not install it")
    if args.dot:
        from rootfs_forge.audit.dotviews import resolution_chains_dot

        sys.stdout.write(resolution_chains_dot(args.package, result.resolutions, out))
        return 0
    if args.json:
        print_json(out)
        return 0
    for arch, chains in out.items():
        res = result.resolutions[arch]
        for chain in chains:
            parts = [chain[0]]
            for parent, child in itertools.pairwise(chain):
                rel = next((r.relation for r in res.why.get(child, ()) if r.parent == parent), "")
                parts.append(f"--[{rel}]--> {child}")
            print(f"{arch}: " + " ".join(parts))
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    ctx = make_context(args)
    recipe = load_recipe(Path(args.recipe), ctx.host_arch)
    if args.check:
        if args.update or args.packages:
            raise ForgeError("lock", str(recipe.path), "--check writes nothing: it cannot go with --update")
        return _check_lock(recipe, ctx)
    dest = lock_path(recipe.path)
    if args.packages and not args.update:
        raise ForgeError("lock", str(recipe.path), "naming packages needs --update")
    old = _old_lock(recipe, dest) if args.update else None
    hold = _hold(old, args.packages, recipe.path) if old is not None and args.packages else None
    try:
        result = resolve_recipe(recipe, ctx, hold=hold)
    except ForgeError as exc:
        if hold is None:
            raise
        raise ForgeError("update", f"{', '.join(args.packages)} in {dest.name}",
                         f"{exc.reason} (with every other package held at its locked version; name the packages "
                         "that must move with it, or update all)") from None
    data = dump_lock(recipe, result.resolutions)
    write_atomic(dest, data, mode=None)
    total = sum(len(r.packages) for r in result.resolutions.values())
    if old is not None:
        from rootfs_forge.resolve.lockdiff import diff_resolutions, render

        diff = diff_resolutions(old.resolutions, result.resolutions)
        if args.json:
            print_json({"lock": str(dest), **diff.as_dict()})
        else:
            sys.stdout.write(render(diff))
            print(f"wrote {dest}: {total} packages for {', '.join(recipe.architectures)}")
    elif args.json:
        print_json({"lock": str(dest), "packages": total})
    else:
        print(f"wrote {dest}: {total} packages for {', '.join(recipe.architectures)}")
    if args.vendor:
        from rootfs_forge.commands.vendor import vendor_recipe

        vendor_recipe(recipe, ctx, args.vendor, insecure=args.insecure, report=print)
    return 0


def _check_lock(recipe: Recipe, ctx: Context) -> int:
    """``forge lock --check``: 0 when the lock is current and nothing in it is behind the archive, else 1 with
    one line on stderr (a missing or unreadable lock is a lock error: exit 2)."""
    from rootfs_forge.resolve.lockcheck import behind_in, behind_line

    path = lock_path(recipe.path)
    lock = load_lock(path, resolve_sources(recipe.sources))
    if not lock.is_current(recipe):
        print(f"forge: {path} is stale: the recipe changed since it was written; run forge lock {recipe.path}",
              file=sys.stderr)
        return 1
    behind = behind_in(recipe, lock.resolutions, ctx)
    if behind:
        print(f"forge: {behind_line(recipe.path, behind)}", file=sys.stderr)
        return 1
    total = sum(len(r.packages) for r in lock.resolutions.values())
    print(f"{path}: current ({total} packages, none behind the archive)")
    return 0


def _old_lock(recipe: Any, dest: Path) -> Any:
    from rootfs_forge.archive.sources import resolve_sources
    from rootfs_forge.resolve.lock import load_lock

    if not dest.is_file():
        raise ForgeError("update", str(dest), "no lock to update (run forge lock first)")
    return load_lock(dest, resolve_sources(recipe.sources))


def _hold(old: Any, names: list[str], where: Path) -> dict[str, tuple[tuple[str, str, str], ...]]:
    """Every locked package not named, held at its version (per image architecture)."""
    locked = {p.name for res in old.resolutions.values() for p in res.packages}
    unknown = [n for n in names if n not in locked]
    if unknown:
        raise ForgeError("update", ", ".join(unknown), f"not in the lock of {where.name}")
    return {arch: tuple((p.name, arch if p.architecture == "all" else p.architecture, p.version)
                        for p in res.packages if p.name not in names)
            for arch, res in old.resolutions.items()}


def _why_target(args: argparse.Namespace) -> int:
    """Chains read from an image or rootfs: forge's stored why-graph, else reverse Depends in its dpkg db."""
    from rootfs_forge.audit.report import audit_target
    from rootfs_forge.audit.target import open_target
    from rootfs_forge.commands.audit import _arch, say_note

    target = open_target(args.recipe, arch=_arch(args), insecure=args.insecure)
    say_note(target)
    report = audit_target(target, why=args.package)
    chains = list(report.why or ())
    if not chains:
        raise ForgeError("explain", f"package {args.package}", f"{args.recipe} does not contain it")
    if args.dot:
        from rootfs_forge.audit.dotviews import target_chains_dot

        sys.stdout.write(target_chains_dot(args.package, report))
        return 0
    if args.json:
        print_json([[{"package": link.package, "parent": link.parent, "relation": link.relation} for link in chain]
                    for chain in chains])
        return 0
    for chain in chains:
        parts = [chain[0].package]
        parts += [f"<-[{link.relation}]- {link.parent}" if link.parent else f"({link.relation})" for link in chain]
        print(" ".join(parts))
    return 0
