"""Is a lock behind the archive? A locked package whose .deb the index no longer lists, or that the index
offers in a newer version (from a suite of at least the same priority), makes the lock *behind*.

:func:`compare` is pure (a resolution against an index); :func:`lock_behind` asks the index set the last
update verified (never the network: a compose from a lock stays offline); ``forge lock --check`` asks a
freshly verified one. A stale lock (the recipe changed) is :meth:`rootfs_forge.resolve.lock.Lock.is_current`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from debian.debian_support import Version

from rootfs_forge.archive.sources import SourceEntry, resolve_sources
from rootfs_forge.errors import ForgeError
from rootfs_forge.index.context import Context
from rootfs_forge.model import IndexView, Resolution
from rootfs_forge.recipe import Recipe
from rootfs_forge.resolve.lock import lock_path
from rootfs_forge.resolve.plan import Plan, request_for


def compare(resolution: Resolution, index: IndexView, priorities: Mapping[str, int] | None = None
            ) -> list[dict[str, str]]:
    """Each locked package that is gone from ``index`` (``available`` empty, or the version that replaced it)
    or has a newer version there: ``{"package", "architecture", "locked", "available"}``, sorted."""
    prio = priorities or {}
    out = []
    for p in resolution.packages:
        every = [q for q in index.packages(p.name) if q.architecture == p.architecture
                 and prio.get(q.suite, 500) >= prio.get(p.suite, 500)]
        newest = max((q.version for q in every), key=Version, default="")
        present = any(q.version == p.version and q.sha256 == p.sha256 for q in index.packages(p.name))
        if not present or (newest and Version(newest) > Version(p.version)):
            out.append({"package": p.name, "architecture": p.architecture, "locked": p.version,
                        "available": newest if newest != p.version else ""})
    return sorted(out, key=lambda d: (d["package"], d["architecture"]))


def behind_in(recipe: Recipe, resolutions: Mapping[str, Resolution], ctx: Context,
              entries: list[SourceEntry] | None = None) -> list[dict[str, str]]:
    """:func:`compare` for every architecture against the index ``ctx`` opens (an update unless offline)."""
    srcs = resolve_sources(recipe.sources) if entries is None else entries
    seen: set[tuple[str, str, str]] = set()
    out: list[dict[str, str]] = []
    for arch, res in resolutions.items():
        index = ctx.open_index(srcs, [arch, *request_for(recipe, arch).foreign_architectures])
        try:
            for d in compare(res, index, recipe.suite_priorities):
                key = (d["package"], d["architecture"], d["locked"])
                if key not in seen:
                    seen.add(key)
                    out.append(d)
        finally:
            index.close()
    return out


def lock_behind(recipe: Recipe, plan: Plan, ctx: Context) -> list[dict[str, str]]:
    """What a compose from a lock says about it: :func:`compare` against the index set the last update
    verified, if the cache holds one (no network); nothing when it does not."""
    offline = dataclasses.replace(ctx, offline=True, warn=None)
    try:
        return behind_in(recipe, plan.resolutions, offline, plan.entries)
    except ForgeError:
        return []


def behind_line(recipe: Path, behind: list[dict[str, str]]) -> str:
    """One line: how far the lock of ``recipe`` is behind, the first few packages, and what to run."""
    several = len({d["architecture"] for d in behind if d["architecture"] != "all"}) > 1

    def label(d: dict[str, str]) -> str:
        return f"{d['package']}:{d['architecture']}" if several else d["package"]

    gone = [d for d in behind if not d["available"]]
    newer = [d for d in behind if d["available"]]
    parts = []
    if newer:
        parts.append(f"{len(newer)} package{'s' if len(newer) != 1 else ''} have newer versions ("
                     + ", ".join(f"{label(d)} {d['locked']} -> {d['available']}" for d in newer[:3])
                     + (", …" if len(newer) > 3 else "") + ")")
    if gone:
        parts.append(f"{len(gone)} locked .deb{'s are' if len(gone) != 1 else ' is'} gone from the archive ("
                     + ", ".join(f"{label(d)} {d['locked']}" for d in gone[:3]) + (", …" if len(gone) > 3 else "")
                     + ")")
    return f"{lock_path(recipe)} is behind the archive: {'; '.join(parts)}; run forge lock {recipe} to update it"
