"""Recipe → resolutions, one per architecture: from a current lock, or by resolving against the index."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, replace

from rootfs_forge.archive.sources import SourceEntry, resolve_sources
from rootfs_forge.errors import ForgeError, RecipeError
from rootfs_forge.index.context import Context
from rootfs_forge.model import Resolution, ResolveRequest
from rootfs_forge.recipe import Recipe
from rootfs_forge.resolve.checks import check_index, check_resolution, known_in, package_refs
from rootfs_forge.resolve.lock import Lock, load_lock, lock_path
from rootfs_forge.resolve.search import Reporter, resolve


def request_for(recipe: Recipe, arch: str) -> ResolveRequest:
    foreign = tuple(sorted({p.split(":", 1)[1].split("=", 1)[0] for p in recipe.packages
                            if ":" in p.split("=", 1)[0]} - {arch, "any", "native", "all"}))
    return ResolveRequest(
        packages=recipe.packages, architecture=arch, foreign_architectures=foreign,
        recommends=recipe.recommends, essential=recipe.essential, prefer=recipe.prefer, exclude=recipe.exclude,
        strategy=recipe.strategy, merged_usr=recipe.merged_usr,
        suite_priority=tuple(sorted({(s, src.priority) for src in recipe.sources for s in src.suites
                                     if src.priority != 500})),
    )


@dataclass(frozen=True)
class Plan:
    entries: list[SourceEntry]
    resolutions: dict[str, Resolution]
    from_lock: bool


def resolve_recipe(recipe: Recipe, ctx: Context, reporter: Reporter | None = None,
                   entries: list[SourceEntry] | None = None,
                   hold: Mapping[str, tuple[tuple[str, str, str], ...]] | None = None) -> Plan:
    """Resolve every architecture of ``recipe`` against freshly verified indexes. ``hold``: per architecture,
    (name, arch, version) kept as the candidate while the index has it (``forge lock --update PKG…``)."""
    entries = resolve_sources(recipe.sources) if entries is None else entries
    out: dict[str, Resolution] = {}
    known: set[str] = set()
    for arch in recipe.architectures:
        request = request_for(recipe, arch)
        if hold and hold.get(arch):
            request = replace(request, hold=hold[arch])
        index = ctx.open_index(entries, [arch, *request.foreign_architectures])
        try:
            problems = check_index(recipe, index)
            if problems:
                raise RecipeError(str(recipe.path), problems, verb="use recipe")
            out[arch] = resolve(index, request, reporter)
            known |= known_in(index, {name for _, name in package_refs(recipe)})
        finally:
            index.close()
    checked(recipe, out, known)
    return Plan(entries, out, from_lock=False)


def checked(recipe: Recipe, resolutions: dict[str, Resolution], known: set[str] | None) -> dict[str, Resolution]:
    """``resolutions``, once every package the recipe names in slices, conflicts and layers is installed or
    at least in the index (see :func:`rootfs_forge.resolve.checks.check_resolution`)."""
    problems = check_resolution(recipe, resolutions, known)
    if problems:
        raise RecipeError(str(recipe.path), problems, verb="use recipe")
    return resolutions


def plan(recipe: Recipe, ctx: Context, *, locked: bool = False, use_lock: bool = True,
         reporter: Reporter | None = None) -> Plan:
    """A current lock wins; ``locked`` makes a stale or missing lock an error instead of a re-resolve."""
    path = lock_path(recipe.path)
    entries = resolve_sources(recipe.sources)
    if use_lock and path.is_file():
        lock: Lock = load_lock(path, entries)
        if lock.is_current(recipe):
            known = _known_offline(recipe, lock.resolutions, ctx, entries)
            return Plan(entries, checked(recipe, lock.resolutions, known), from_lock=True)
        if locked:
            raise RecipeError(str(path), ["the lock is stale: the recipe changed since 'forge lock' (run it again)"])
    elif locked:
        raise RecipeError(str(path), ["no such lock file (run forge lock first, or drop --locked)"])
    return resolve_recipe(recipe, ctx, reporter, entries)


def _known_offline(recipe: Recipe, resolutions: dict[str, Resolution], ctx: Context,
                   entries: list[SourceEntry]) -> set[str] | None:
    """Which of the names a locked recipe's slices, conflicts and layers use that the lock does not install
    are in the index the last update verified (never the network: a compose from a lock stays offline);
    None when the cache holds no such index."""
    installed = {p.name for res in resolutions.values() for p in res.packages}
    pending = {name for _, name in package_refs(recipe)} - installed
    if not pending:
        return set()
    offline = dataclasses.replace(ctx, offline=True, warn=None)
    known: set[str] = set()
    try:
        for arch in recipe.architectures:
            index = offline.open_index(entries, [arch, *request_for(recipe, arch).foreign_architectures])
            try:
                known |= known_in(index, pending)
            finally:
                index.close()
    except ForgeError:
        return None
    return known
