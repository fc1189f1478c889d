"""forge update / show / search: the verified package index, without composing anything."""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from debian.debian_support import Version

from rootfs_forge.commands.common import (
    add_cache_args,
    add_json_arg,
    make_context,
    print_json,
    recipe_or_none,
    sources_and_archs,
    table,
)
from rootfs_forge.errors import ForgeError


def register(sub: Any) -> None:
    p = sub.add_parser("update", help="fetch, verify and index the Packages files of a recipe's (or the host's) "
                                      "sources")
    p.add_argument("recipe", nargs="?", help="recipe (default: the host's apt sources)")
    p.add_argument("--arch", help="architecture when no recipe is given (default: the host's)")
    add_cache_args(p, offline=False)
    add_json_arg(p)
    p.set_defaults(func=cmd_update)

    for name, help_text, what, func in (
        ("show", "show the candidate of a package and which source it comes from", "package", cmd_show),
        ("search", "search package names and descriptions with a regular expression", "regex", cmd_search),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument(what)
        p.add_argument("recipe", nargs="?")
        p.add_argument("--arch")
        add_cache_args(p)
        add_json_arg(p)
        p.set_defaults(func=func)


def _index(args: argparse.Namespace) -> Any:
    ctx = make_context(args)
    recipe = recipe_or_none(args.recipe, ctx)
    entries, archs = sources_and_archs(recipe, ctx, args.arch)
    return archs, ctx.open_index(entries, archs)


def cmd_update(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    _, index = _index(args)
    files = index.files
    count = index.count()
    elapsed = time.perf_counter() - t0
    if args.json:
        print_json({"files": [{"file": f.label, "source": f.entry.id, "sha256": f.sha256} for f in files],
                    "stanzas": count, "seconds": round(elapsed, 3)})
    else:
        for f in files:
            print(f"verified {f.label}  sha256:{f.sha256[:16]}")
        print(f"{count} stanzas from {len(files)} index files in {elapsed:.2f} s")
    return 0


def _candidate(index: Any, name: str, archs: list[str]) -> Any:
    cands = [p for p in index.packages(name) if p.architecture in (*archs, "all")]
    if not cands:
        providers = sorted({p.name for p in index.providers(name)})
        if providers:
            hint = f" (a virtual package provided by {', '.join(providers)})"
        else:
            from rootfs_forge.resolve.checks import did_you_mean, index_names

            hint = f"{did_you_mean(name, index_names(index))}; forge search REGEX lists the names"
        raise ForgeError("show", f"package {name}", f"no package named {name} in any source{hint}")
    return max(cands, key=lambda p: Version(p.version)), cands


def cmd_show(args: argparse.Namespace) -> int:
    archs, index = _index(args)
    best, cands = _candidate(index, args.package, archs)
    fields = {
        "Package": best.name, "Version": best.version, "Architecture": best.architecture,
        "Multi-Arch": best.multi_arch, "Priority": best.priority, "Section": best.section,
        "Essential": "yes" if best.essential else "no", "Source": best.source or best.name,
        "Pre-Depends": best.pre_depends, "Depends": best.depends, "Recommends": best.recommends,
        "Conflicts": best.conflicts, "Breaks": best.breaks, "Provides": best.provides, "Replaces": best.replaces,
        "Installed-Size": str(best.installed_size), "Size": str(best.size), "SHA256": best.sha256,
        "Filename": best.filename, "From": f"{best.origin}", "Description": best.description.split("\n")[0],
    }
    others = sorted({f"{p.version} ({p.suite})" for p in cands if p is not best})
    if args.json:
        print_json({**{k: v for k, v in fields.items() if v}, "Other-Versions": others})
        return 0
    for k, v in fields.items():
        if v:
            print(f"{k}: {' '.join(v.split())}")
    if others:
        print(f"Other-Versions: {', '.join(others)}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    try:
        pattern = re.compile(args.regex, re.IGNORECASE)
    except re.error as exc:
        raise ForgeError("search", f"for {args.regex!r}", f"not a regular expression: {exc}") from None
    archs, index = _index(args)
    best: dict[str, Any] = {}
    for p in index.search(pattern):
        if p.architecture in (*archs, "all") and (p.name not in best or Version(p.version) >
                                                  Version(best[p.name].version)):
            best[p.name] = p
    rows = [best[n] for n in sorted(best)]
    if args.json:
        print_json([{"name": p.name, "version": p.version, "summary": p.description.split("\n")[0]} for p in rows])
    else:
        print(table([[p.name, p.version, p.description.split("\n")[0]] for p in rows],
                    ["PACKAGE", "VERSION", "SUMMARY"]) if rows else "no match")
    return 0
