"""Argument helpers shared by the commands: cache and network options, recipe loading, printing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["human_size", "table"]  # re-exported for the commands

from rootfs_forge.archive.sources import SourceEntry, resolve_sources
from rootfs_forge.commands.fmt import human_size, table
from rootfs_forge.index.context import Context, host_architecture
from rootfs_forge.recipe import Recipe, load_recipe
from rootfs_forge.util.canonical import canonical_json


def add_cache_args(p: argparse.ArgumentParser, offline: bool = True) -> None:
    p.add_argument("--cache-dir", metavar="DIR",
                   help="download cache (default: $FORGE_CACHE, else cache/ at the project root)")
    if offline:
        p.add_argument("--offline", action="store_true",
                       help="use the indexes of the last update; never touch the network")


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (canonical JSON)")


def warn(msg: str) -> None:
    print(f"forge: {msg}", file=sys.stderr)


def make_context(args: argparse.Namespace) -> Context:
    return Context.create(getattr(args, "cache_dir", None), offline=getattr(args, "offline", False), warn=warn)


def recipe_or_none(path: str | None, ctx: Context | None = None) -> Recipe | None:
    if not path:
        return None
    return load_recipe(Path(path), ctx.host_arch if ctx else host_architecture())


def sources_and_archs(recipe: Recipe | None, ctx: Context, arch: str | None = None) -> tuple[list[SourceEntry],
                                                                                              list[str]]:
    entries = resolve_sources(recipe.sources if recipe else ())
    archs = list(recipe.architectures) if recipe else [arch or ctx.host_arch]
    return entries, archs


def print_json(doc: Any) -> None:
    print(canonical_json(doc, ensure_ascii=True).decode())
