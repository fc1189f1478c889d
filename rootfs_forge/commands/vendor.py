"""forge vendor: the locked .debs, with the signed indexes that vouch for them, copied to a vendor store."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rootfs_forge.commands.common import add_cache_args, add_json_arg, make_context, print_json

if TYPE_CHECKING:
    from rootfs_forge.index.context import Context
    from rootfs_forge.recipe import Recipe


def register(sub: Any) -> None:
    p = sub.add_parser("vendor", help="copy a recipe's locked .debs and their signed indexes to a vendor store")
    p.add_argument("recipe")
    p.add_argument("--to", action="append", required=True, metavar="DEST",
                   help="oci://HOST[:PORT]/REPO (one artifact per suite snapshot) or file:///DIR (a file:// apt "
                        "repository); repeatable")
    p.add_argument("--insecure", action="store_true", help="push to the registry over plain HTTP")
    add_cache_args(p, offline=False)
    add_json_arg(p)
    p.set_defaults(func=cmd_vendor)


def cmd_vendor(args: argparse.Namespace) -> int:
    from rootfs_forge.recipe import load_recipe

    ctx = make_context(args)
    recipe = load_recipe(Path(args.recipe), ctx.host_arch)
    out = vendor_recipe(recipe, ctx, args.to, insecure=args.insecure, report=None if args.json else print)
    if args.json:
        print_json(out)
    return 0


def vendor_recipe(recipe: Recipe, ctx: Context, destinations: list[str], *, insecure: bool = False,
                  report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Vendor the current lock of ``recipe`` (a missing or stale lock is an error) into ``destinations``."""
    from rootfs_forge.archive.chain import make_chain
    from rootfs_forge.archive.vendor import vendor
    from rootfs_forge.resolve.plan import plan

    result = plan(recipe, ctx, locked=True)
    chain = make_chain(result.entries, recipe.vendor, insecure=insecure)
    return vendor(list(result.resolutions.values()), result.entries, ctx, chain, destinations, insecure=insecure,
                  report=report)
