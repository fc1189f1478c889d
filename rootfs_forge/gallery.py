"""Compose many recipes in one process: ``forge compose A.toml B.toml DIR/ 'recipes/*.toml'``.

Use::

    import rootfs_forge

    reports = rootfs_forge.compose_many(["recipes/"], "out", cache_dir="cache")
    failed = [r for r in reports if "error" in r]

:func:`compose_many` shares what a gallery has in common, then composes each recipe exactly as
:func:`rootfs_forge.compose` does (same code, same inputs, so the same digest):

- one verified index set per source list: the suites are verified (and their ``Packages`` loaded) once, and
  every recipe is planned (once: its compose starts from that plan) and composed against that set
  (:class:`_SharedIndexes`);
- one download pool: every recipe is planned first, and the ``.deb`` files all of them miss are fetched
  together, each once, while the unpacked-package cache fills (the same :class:`UnpackAhead` as one compose);
- the trees of twins: recipes that build the same trees (equal plans, and equal but for the tag, the image's
  config and how the layers are cut: a ``:nonroot`` tag of an image) are composed in one child, from one
  build of the trees (:class:`rootfs_forge.api.Twin`); each gets its own manifest, config and output, the
  bytes a compose of it alone writes;
- the layers: an image whose layer an earlier image of the call already wrote (the gallery's twins share
  their package layers) copies that blob instead of writing it again (:mod:`rootfs_forge.image.layershare`);
- the interpreter and its imports: the recipes are composed in forked children of this process, up to
  ``workers`` at a time (one per core by default; the largest first), each child starting from the parent's
  warm memory (its imports, the output modules included). Where a fork is not safe (another thread runs),
  the recipes are composed here, one after another.

A recipe that fails (a bad recipe, an unknown package, a failed download) fails alone: its report holds
``error`` (the one-line message) and nothing of its output is written (compose's staged outputs); the others
still complete. Only a call that cannot start at all (an unknown format, two recipes with one output) raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import select
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rootfs_forge.api import DEFAULT_FORMAT, IMAGE_FORMATS, Twin, compose, default_output, selected_architectures
from rootfs_forge.archive.release import IndexFile
from rootfs_forge.archive.sources import SourceEntry
from rootfs_forge.build import same_trees
from rootfs_forge.errors import ForgeError
from rootfs_forge.index.context import Context, planned_key, state_key
from rootfs_forge.model import Package
from rootfs_forge.recipe import FORMATS, Recipe, load_recipe
from rootfs_forge.util.forked import Forked, can_fork
from rootfs_forge.util.timing import Timings

__all__ = ["compose_many", "expand_recipes", "is_many"]

GLOB_CHARS = frozenset("*?[")


def is_many(args: Sequence[str]) -> bool:
    """True unless ``args`` is one recipe file: several arguments, a directory or a glob compose a gallery."""
    if len(args) != 1:
        return True
    one = Path(args[0])
    if one.is_dir():  # a directory without recipes stays one (bad) recipe: compose says it is a directory
        return any(p.is_file() for p in one.glob("*.toml"))
    return not one.exists() and any(c in GLOB_CHARS for c in args[0])


def expand_recipes(args: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The recipe files ``args`` name, in order, each once: a file as itself, a directory as its ``*.toml``
    (sorted), a glob (``recipes/*.toml``, expanded here too when the shell did not) as its sorted matches.
    A directory without recipes, a glob matching nothing or a missing file raises."""
    found: dict[Path, None] = {}
    for arg in args:
        text = os.fspath(arg)
        path = Path(text)
        if path.is_dir():
            matches = sorted(p for p in path.glob("*.toml") if p.is_file())
            if not matches:
                raise ForgeError("compose", text, "the directory holds no recipe (*.toml)")
        elif not path.exists() and any(c in GLOB_CHARS for c in text):
            matches = sorted(Path(m) for m in glob.glob(text) if Path(m).is_file())
            if not matches:
                raise ForgeError("compose", text, "no recipe matches this pattern")
        elif path.is_file():
            matches = [path]
        else:
            raise ForgeError("compose", text, "no such recipe")
        found.update(dict.fromkeys(matches))
    return list(found)


@dataclasses.dataclass
class _SharedIndexes(Context):
    """A context that remembers the index set it verified for each source list and architectures; once
    ``pinned``, it answers from that set (the composes of a gallery all use the one set verified for it)."""

    verified: dict[str, list[IndexFile]] = dataclasses.field(default_factory=dict)
    pinned: bool = False

    def index_files(self, entries: Sequence[SourceEntry], architectures: Sequence[str]) -> list[IndexFile]:
        key = state_key(entries, architectures)
        if self.pinned and key in self.verified:
            return self.verified[key]
        files = super().index_files(entries, architectures)
        self.verified[key] = files
        return files


@dataclasses.dataclass(eq=False)
class _Item:
    index: int
    source: str
    recipe: Recipe | None = None
    dest: Path | None = None
    report: dict[str, Any] | None = None
    weight: int = 0  # KiB its trees install (from the plan): the largest recipes are started first


def compose_many(recipes: Sequence[str | os.PathLike[str] | Recipe], output_dir: str | os.PathLike[str] | None = None,
                 *, format: str = DEFAULT_FORMAT, cache_dir: str | os.PathLike[str] | None = None,
                 offline: bool = False, locked: bool = False, use_lock: bool = True, jobs: int = 8,
                 epoch: int | None = None, progress: bool = False, warn: Callable[[str], None] | None = None,
                 vendor: Sequence[str] = (), insecure: bool = False, registry_cache: str = "",
                 platforms: Sequence[str] = (), workers: int | None = None) -> list[dict[str, Any]]:
    """Compose every recipe of ``recipes`` (paths, directories, globs or loaded recipes) and return one report
    per recipe, in order: what :func:`rootfs_forge.compose` returns, or ``{"recipe", "error", "seconds"}`` for
    a recipe that failed (the others still complete; see the module docstring).

    Each recipe goes to ``output_dir/<its default output name>`` (``out/python3-bookworm``), or to its
    default output when ``output_dir`` is None. ``workers``: how many recipes are composed at once (default:
    one per core). The other arguments are :func:`rootfs_forge.compose`'s, applied to every recipe.
    """
    if format not in FORMATS:
        raise ForgeError("compose", "the recipes", f"unknown format {format!r} ({', '.join(FORMATS)})")
    if jobs < 1:
        raise ForgeError("compose", "the recipes", "--jobs must be at least 1")
    ctx = _SharedIndexes.create(os.fspath(cache_dir) if cache_dir is not None else None, offline=offline,
                                warn=warn)
    assert isinstance(ctx, _SharedIndexes)
    if epoch is not None:
        ctx.epoch = epoch
    items: list[_Item] = []
    seen: set[Path] = set()
    for r in recipes:
        if isinstance(r, Recipe):
            items.append(_Item(len(items), str(r.path), recipe=r))
            continue
        for path in expand_recipes([r]):
            if path not in seen:
                seen.add(path)
                items.append(_Item(len(items), str(path)))
    _load(items, ctx, output_dir, format)
    # a registry cache hit needs no .deb: each compose then fetches only what it misses itself
    _prefetch([i for i in items if i.report is None], ctx, locked=locked, use_lock=use_lock, jobs=jobs,
              progress=progress, vendor=vendor, insecure=insecure, platforms=platforms, fetch=not registry_cache)
    ctx.pinned = True
    parent = os.getpid()

    def alone(item: _Item, twins: Sequence[Twin] = ()) -> dict[str, Any]:
        assert item.recipe is not None
        ctx.timings = Timings()  # this recipe's phases only
        t0 = time.perf_counter()
        try:
            return compose(item.recipe, item.dest, format=format, jobs=jobs, context=ctx, vendor=vendor,
                           insecure=insecure, registry_cache=registry_cache, platforms=platforms, twins=twins)
        except ForgeError as exc:
            return _failure(item, str(exc), time.perf_counter() - t0)

    def one(group: list[_Item]) -> list[dict[str, Any]]:
        """The reports of a group: its first recipe composed, the others as its twins (or alone)."""
        if os.getpid() != parent:  # a forked child: never share the parent's HTTP connections
            ctx.transport = dataclasses.replace(ctx.transport, session=None)
        first, rest = group[0], group[1:]
        twins = []
        for item in rest:
            assert item.recipe is not None and item.dest is not None  # loaded: its report is not set yet
            twins.append(Twin(item.recipe, item.dest))
        reports = [alone(first, twins)]
        for item, twin in zip(rest, twins, strict=True):
            if twin.report is not None:
                reports.append(twin.report)
            elif twin.error is not None:
                reports.append(_failure(item, str(twin.error), twin.seconds))
            else:  # not composed as a twin after all: as itself
                reports.append(alone(item))
        return reports

    todo = [i for i in items if i.report is None]
    groups = _twin_groups(todo, ctx, locked=locked, use_lock=use_lock) \
        if format in IMAGE_FORMATS and not registry_cache else [[i] for i in todo]
    if format in IMAGE_FORMATS and todo:
        import rootfs_forge.image.write  # noqa: F401  (imported once here, not in every child)
        from rootfs_forge.image.layershare import LayerShare

        # the download cache's, which also keeps the layers for the next call; if the cache cannot take them,
        # one for this call, next to the first output, named like its staged outputs (a later compose of it
        # removes a killed call's share)
        first = todo[0].dest
        assert first is not None
        ctx.layer_share = LayerShare.in_cache(ctx.cache.root) \
            or LayerShare.create(first.absolute().parent, f".{first.name}.forge-{os.getpid()}-layers-")
    count = workers if workers is not None else len(os.sched_getaffinity(0))
    try:
        if count > 1 and len(groups) > 1 and can_fork():
            from rootfs_forge.configure.effects.base import HostTools

            HostTools.detect()  # the host's facts are asked once, here: every child inherits the answers
            _run_forked(groups, one, count)
        else:
            for group in groups:
                for item, report in zip(group, one(group), strict=True):
                    item.report = report
    finally:
        if ctx.layer_share is not None:
            ctx.layer_share.remove()
            ctx.layer_share = None
    return [i.report for i in items if i.report is not None]


def _failure(item: _Item, message: str, seconds: float) -> dict[str, Any]:
    report: dict[str, Any] = {"recipe": item.source, "error": message, "seconds": round(seconds, 3)}
    if item.recipe is not None:
        report["image"] = f"{item.recipe.name}:{item.recipe.tag}"
    if item.dest is not None:
        report["output"] = str(item.dest)
    return report


def _load(items: list[_Item], ctx: Context, output_dir: str | os.PathLike[str] | None, fmt: str) -> None:
    """Load each recipe (a recipe that does not load fails alone) and choose its output; two recipes with one
    output raise before anything is done."""
    owners: dict[Path, str] = {}
    for item in items:
        try:
            if item.recipe is None:
                item.recipe = load_recipe(Path(item.source), ctx.host_arch)
        except ForgeError as exc:
            item.report = _failure(item, str(exc), 0.0)
            continue
        default = default_output(item.recipe.name, item.recipe.tag, fmt)
        item.dest = Path(output_dir) / default.name if output_dir is not None else default
        where = item.dest.absolute()
        if where in owners:
            raise ForgeError("compose", f"{owners[where]} and {item.source}",
                             f"both would write {item.dest}; compose them separately with -o")
        owners[where] = item.source


def _prefetch(items: list[_Item], ctx: _SharedIndexes, *, locked: bool, use_lock: bool, jobs: int,
              progress: bool, vendor: Sequence[str], insecure: bool, platforms: Sequence[str], fetch: bool) -> None:
    """Plan every recipe, then fetch the ``.deb`` files any of them misses in one pool, each once, while the
    unpacked-package cache fills. Best effort: a recipe whose plan or download fails here is composed all the
    same and meets its error first-hand (with the message a compose of it alone gives)."""
    from rootfs_forge.archive.chain import make_chain
    from rootfs_forge.archive.fetch import TqdmProgress, fetch_debs
    from rootfs_forge.resolve.plan import plan
    from rootfs_forge.unpack.debcache import UnpackAhead

    warn, ctx.warn = ctx.warn, None  # each compose warns (once) about its own lock
    try:
        ctx.optimistic = not ctx.offline
        plans = _plan_all(items, ctx, plan, locked=locked, use_lock=use_lock, platforms=platforms)
        if ctx.optimistic and not ctx.confirm():  # an index changed while planning: plan on the new set
            ctx.optimistic = False
            plans = _plan_all(items, ctx, plan, locked=locked, use_lock=use_lock, platforms=platforms)
        ctx.optimistic = False
    except ForgeError:
        ctx.verified.clear()  # the update itself failed: every compose meets it first-hand
        return
    finally:
        ctx.warn = warn
    for item, (result, archs) in plans.items():
        assert item.recipe is not None
        item.weight = sum(p.installed_size for arch in archs for p in result.resolutions[arch].packages)
        ctx.planned[planned_key(item.recipe.path, locked, use_lock)] = result  # its compose starts from this plan
    if not fetch:
        return
    wanted: dict[str, Package] = {}
    chains: dict[str, Callable[[Package], list[str]]] = {}
    for item, (result, archs) in plans.items():
        assert item.recipe is not None
        chain = make_chain(result.entries, (*item.recipe.vendor, *vendor), insecure=insecure)
        for arch in archs:
            for pkg in result.resolutions[arch].packages:
                wanted.setdefault(pkg.sha256, pkg)
                chains.setdefault(pkg.sha256, chain.urls)
    if not wanted:
        return
    # a failed download: the recipes that need that .deb meet the error in their own compose
    with ctx.timings.phase("fetch"), UnpackAhead(ctx.cache) as ahead, contextlib.suppress(ForgeError):
        fetch_debs(list(wanted.values()), ctx.cache, ctx.transport, jobs=jobs,
                   urls=lambda p: chains[p.sha256](p), progress=TqdmProgress(progress), on_ready=ahead.submit)


def _plan_all(items: list[_Item], ctx: Context, plan: Callable[..., Any], *, locked: bool, use_lock: bool,
              platforms: Sequence[str]) -> dict[_Item, tuple[Any, tuple[str, ...]]]:
    plans: dict[_Item, tuple[Any, tuple[str, ...]]] = {}
    for item in items:
        assert item.recipe is not None
        try:
            archs = selected_architectures(item.recipe, platforms)
            plans[item] = (plan(item.recipe, ctx, locked=locked, use_lock=use_lock), archs)
        except ForgeError:
            continue  # its compose meets the error first-hand
    return plans


def _twin_groups(items: list[_Item], ctx: Context, *, locked: bool, use_lock: bool) -> list[list[_Item]]:
    """``items`` in groups of twins (in order; most groups are one recipe): recipes that build the same trees
    (:func:`rootfs_forge.build.same_trees`, from the plans :func:`_prefetch` made). A recipe without a plan stays
    alone. Its compose checks again (rootfs_forge.api.Twin)."""
    groups: list[tuple[Any, list[_Item]]] = []
    for item in items:
        assert item.recipe is not None
        mine = ctx.planned.get(planned_key(item.recipe.path, locked, use_lock))
        for lead_plan, group in groups:
            assert group[0].recipe is not None
            if mine is not None and lead_plan is not None \
                    and same_trees(group[0].recipe, lead_plan, item.recipe, mine):
                group.append(item)
                break
        else:
            groups.append((mine, [item]))
    return [group for _, group in groups]


def _run_forked(groups: list[list[_Item]], one: Callable[[list[_Item]], list[dict[str, Any]]],
                workers: int) -> None:
    """Compose each group in a forked child, up to ``workers`` at a time, collecting each child's reports as
    soon as it is done. A child dies with this process (its compose's staged outputs are then left for the
    next run to clean, as a killed ``forge compose`` leaves them)."""
    sys.stdout.flush()
    sys.stderr.flush()
    # the largest first, so that no core is left alone with a long compose at the end (a twin adds its output)
    waiting = sorted(groups, key=lambda g: (g[0].weight + sum(i.weight for i in g[1:]) // 4, -g[0].index))
    running: dict[int, tuple[list[_Item], Forked, float]] = {}
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                group = waiting.pop()
                child = Forked(lambda group=group: one(group), die_with_parent=True)  # type: ignore[misc]
                running[child.fileno()] = (group, child, time.perf_counter())
            ready, _, _ = select.select(list(running), [], [])
            for fd in ready:
                group, child, t0 = running.pop(fd)
                try:
                    reports = child.result()
                except ForgeError as exc:
                    reports = [_failure(item, str(exc), time.perf_counter() - t0) for item in group]
                if reports is None:
                    reports = [_failure(item, f"cannot compose {item.source}: {child.failure}",
                                        time.perf_counter() - t0) for item in group]
                for item, report in zip(group, reports, strict=True):
                    item.report = report
    finally:
        for _, child, _ in running.values():
            child.close()
