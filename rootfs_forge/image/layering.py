"""Which packages go into which image layer. Pure: names and sizes in, the ordered layer groups out.

Strategies:

``single``
    one layer, every package.
``groups``
    one layer per recipe ``[[layer]]`` group, in recipe order, then a last ``rest`` layer holding every
    package no group names (the dependencies the resolver pulled in, which differ between images). Groups go
    first so that two images sharing a group share its layer at the same depth (same chain ID, not only the
    same blob). A package named by two groups stays in the first. More layers than ``budget`` is an error.
``origin``
    apko-style: the ``budget - 1`` largest packages (ties broken by name) get a layer each, sorted by name
    so that a package that grows does not reorder the others; every other package shares one ``rest``
    layer, last.

Files no package owns (the dpkg database, passwd, generated caches) are the caller's to place; they change
whenever any package does, so the last layer is the place for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from rootfs_forge.errors import ImageError
from rootfs_forge.recipe import LayerGroup  # the recipe's [[layer]] tables and the groups made here

Strategy = Literal["groups", "origin", "single"]


def group_layers(
    groups: Sequence[tuple[str, Sequence[str]]],
    package_sizes: Mapping[str, int],
    strategy: Strategy,
    budget: int,
) -> list[LayerGroup]:
    """Split the image's packages (the keys of ``package_sizes``) into ordered layers."""
    if budget < 1:
        raise ImageError("plan layers", f"with budget {budget}", "the budget must be at least 1")
    everything = tuple(sorted(package_sizes))
    if strategy == "single" or budget == 1:
        return [LayerGroup("rootfs", everything)]
    if strategy == "groups":
        return _by_groups(groups, everything, budget)
    if strategy == "origin":
        return _by_origin(package_sizes, budget)
    raise ImageError("plan layers", f"with strategy {strategy!r}", "expected groups, origin or single")


def _by_groups(
    groups: Sequence[tuple[str, Sequence[str]]], everything: tuple[str, ...], budget: int
) -> list[LayerGroup]:
    present = set(everything)
    taken: set[str] = set()
    planned: list[LayerGroup] = []
    for name, members in groups:
        mine = sorted(p for p in set(members) if p in present and p not in taken)
        taken.update(mine)
        if mine:
            planned.append(LayerGroup(name, tuple(mine)))
    rest = tuple(p for p in everything if p not in taken)
    plans = planned + ([LayerGroup("rest", rest)] if rest else [])
    if len(plans) > budget:
        raise ImageError("plan layers", f"{len(plans)} layer groups", f"more than the budget of {budget}")
    return plans or [LayerGroup("rootfs", ())]


def _by_origin(package_sizes: Mapping[str, int], budget: int) -> list[LayerGroup]:
    ranked = sorted(package_sizes, key=lambda p: (-package_sizes[p], p))
    own = sorted(ranked[: budget - 1])
    rest = tuple(sorted(ranked[budget - 1 :]))
    plans = [LayerGroup(p, (p,)) for p in own]
    if rest:
        plans.append(LayerGroup("rest", rest))
    return plans or [LayerGroup("rootfs", ())]
