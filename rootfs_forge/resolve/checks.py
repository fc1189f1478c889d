"""Recipe checks against the index and the resolution: every package name a recipe uses must mean something.

A typo (``[slice.libjq]`` for ``libjq1``, ``prefer = ["mawkk"]``) would otherwise compose silently and leave
the image other than intended. Each check returns problems (``key: what is wrong (did you mean …?)``); the
caller raises them at once as a :class:`rootfs_forge.errors.RecipeError` (exit 2). Pure: the index is only
asked about names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping

from rootfs_forge.model import IndexView, Resolution
from rootfs_forge.recipe import Recipe


def bare_name(spec: str) -> str:
    """``name`` of ``name[:arch][=version]``."""
    return spec.split("=", 1)[0].split(":", 1)[0]


def close_names(name: str, names: Iterable[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, sorted(set(names)), n=n, cutoff=0.75)


def did_you_mean(name: str, names: Iterable[str]) -> str:
    close = close_names(name, names)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def index_names(index: IndexView) -> list[str]:
    """Every package name of the index (for suggestions; empty when the index cannot list them)."""
    names: Callable[[], Iterable[str]] | None = getattr(index, "names", None)
    return sorted(set(names())) if names is not None else []


def check_index(recipe: Recipe, index: IndexView) -> list[str]:
    """``packages``, ``prefer`` and ``exclude`` must name a package (or a virtual one) of the index."""
    unknown: list[tuple[str, str]] = []
    for key, values in (("packages", recipe.packages), ("prefer", recipe.prefer), ("exclude", recipe.exclude)):
        for i, spec in enumerate(values):
            name = bare_name(spec)
            if not index.packages(name) and not index.providers(name):
                unknown.append((f"{key}[{i}]", name))
    if not unknown:
        return []
    names = index_names(index)
    problems = []
    for key, name in unknown:
        hint = did_you_mean(name, names)
        search = "; forge search REGEX lists the names" if key.startswith("packages") else ""
        problems.append(f"{key}: no package named {name} in any source{hint}{search}")
    return problems


def check_resolution(recipe: Recipe, resolutions: Mapping[str, Resolution]) -> list[str]:
    """``[slice.X]``, ``[conflicts]`` winners and ``[[layer]]`` packages must name an installed package."""
    installed = {p.name for res in resolutions.values() for p in res.packages}
    problems = []

    def check(key: str, name: str) -> None:
        if name not in installed:
            problems.append(f"{key}: {name} is not one of the {len(installed)} packages the recipe installs"
                            f"{did_you_mean(name, installed)}")

    for name, _ in recipe.slices:
        check(f"slice.{name}", name)
    for path, winner in recipe.conflicts_prefer:
        check(f'conflicts."{path}"', winner)
    for i, group in enumerate(recipe.layers):
        for j, spec in enumerate(group.packages):
            check(f"layer[{i}].packages[{j}]", bare_name(spec))
    return problems
