"""Layer plans: single, [[layer]] groups, origin with a budget; deterministic under any input order."""

from __future__ import annotations

import itertools

import pytest

from rootfs_forge.errors import ImageError
from rootfs_forge.image.layering import LayerGroup, Strategy, group_layers

SIZES = {
    "libc6": 12_000,
    "python3.11": 20_000,
    "perl-base": 7_000,
    "dash": 200,
    "bash": 7_000,
    "tzdata": 3_000,
}


def plans(result: list[LayerGroup]) -> list[tuple[str, tuple[str, ...]]]:
    return [(p.name, p.packages) for p in result]


CASES = [
    # strategy, groups, budget, expected
    ("single", [], 10, [("rootfs", ("bash", "dash", "libc6", "perl-base", "python3.11", "tzdata"))]),
    ("origin", [], 1, [("rootfs", ("bash", "dash", "libc6", "perl-base", "python3.11", "tzdata"))]),
    (
        "origin",
        [],
        3,
        [
            ("libc6", ("libc6",)),
            ("python3.11", ("python3.11",)),
            ("rest", ("bash", "dash", "perl-base", "tzdata")),
        ],
    ),
    # bash and perl-base tie at 7000: the name breaks the tie
    (
        "origin",
        [],
        4,
        [
            ("bash", ("bash",)),
            ("libc6", ("libc6",)),
            ("python3.11", ("python3.11",)),
            ("rest", ("dash", "perl-base", "tzdata")),
        ],
    ),
    ("origin", [], 50, [(p, (p,)) for p in sorted(SIZES)]),
    (
        "groups",
        [("app", ["python3.11"]), ("tz", ["tzdata", "not-installed"])],
        10,
        [("app", ("python3.11",)), ("tz", ("tzdata",)), ("rest", ("bash", "dash", "libc6", "perl-base"))],
    ),
    # a package named twice stays in the first group; an empty group disappears
    (
        "groups",
        [("shells", ["dash", "bash"]), ("more", ["bash"]), ("none", [])],
        10,
        [("shells", ("bash", "dash")), ("rest", ("libc6", "perl-base", "python3.11", "tzdata"))],
    ),
    ("groups", [("all", list(SIZES))], 2, [("all", tuple(sorted(SIZES)))]),
]


@pytest.mark.parametrize(("strategy", "groups", "budget", "expected"), CASES)
def test_plan_layers(strategy: Strategy, groups: list, budget: int, expected: list) -> None:
    assert plans(group_layers(groups, SIZES, strategy, budget)) == expected


@pytest.mark.parametrize(("strategy", "groups", "budget", "expected"), CASES)
def test_plan_does_not_depend_on_input_order(
    strategy: Strategy, groups: list, budget: int, expected: list
) -> None:
    for order in itertools.islice(itertools.permutations(SIZES), 0, 720, 37):
        sizes = {p: SIZES[p] for p in order}
        assert plans(group_layers(groups, sizes, strategy, budget)) == expected


def test_every_package_lands_in_exactly_one_layer() -> None:
    strategies: tuple[Strategy, ...] = ("single", "origin", "groups")
    for strategy in strategies:
        for budget in range(1, 9):
            try:
                result = group_layers([("a", ["dash"]), ("b", ["libc6"])], SIZES, strategy, budget)
            except ImageError:
                assert strategy == "groups" and budget < 3
                continue
            placed = [p for plan in result for p in plan.packages]
            assert sorted(placed) == sorted(SIZES)
            assert len(result) <= budget


@pytest.mark.parametrize(
    ("strategy", "budget", "message"),
    [
        ("origin", 0, "the budget must be at least 1"),
        ("bogus", 5, "expected groups, origin or single"),
        ("groups", 2, "3 layer groups: more than the budget of 2"),
    ],
)
def test_bad_plans_are_refused(strategy: Strategy, budget: int, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        group_layers([("a", ["dash"]), ("b", ["libc6"])], SIZES, strategy, budget)


def test_empty_image_has_one_layer() -> None:
    assert plans(group_layers([], {}, "origin", 5)) == [("rootfs", ())]
    assert plans(group_layers([("a", ["x"])], {}, "groups", 5)) == [("rootfs", ())]
