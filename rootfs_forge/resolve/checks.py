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


def package_refs(recipe: Recipe) -> list[tuple[str, str]]:
    """``(key, package)`` for every package ``[slice.X]``, ``[conflicts]`` winners and ``[[layer]]`` name."""
    refs = [(f"slice.{name}", name) for name, _ in recipe.slices]
    refs += [(f'conflicts."{path}"', winner) for path, winner in recipe.conflicts_prefer]
    refs += [(f"layer[{i}].packages[{j}]", bare_name(spec))
             for i, group in enumerate(recipe.layers) for j, spec in enumerate(group.packages)]
    return refs


def known_in(index: IndexView, names: Iterable[str]) -> set[str]:
    """Those of ``names`` the index has (as a package or a virtual one)."""
    return {n for n in names if index.packages(n) or index.providers(n)}


def check_resolution(recipe: Recipe, resolutions: Mapping[str, Resolution], known: set[str] | None) -> list[str]:
    """Every package ``[slice.X]``, ``[conflicts]`` and ``[[layer]]`` name must be installed, or at least be a
    package of the index (``known``: those of the names the index has; None when no index is at hand, and
    then a name that is not installed cannot be judged)."""
    installed = {p.name for res in resolutions.values() for p in res.packages}
    problems = []
    for key, name in package_refs(recipe):
        if name in installed or known is None or name in known:
            continue
        problems.append(f"{key}: no package named {name} in any source, and the recipe does not install it"
                        f"{did_you_mean(name, installed)}")
    return problems
