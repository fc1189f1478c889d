"""bench/scale.py's pure logic: the per-100-packages slope and the points it is fitted to (no timing here)."""

from __future__ import annotations

import pytest

from bench.compose import Runs
from bench.scale import SETS, points, slope_per_100


def test_slope_of_points_on_a_line_is_its_gradient_per_100_packages() -> None:
    # 0.5 s + 2 s per 100 packages
    assert slope_per_100([(60, 1.7), (160, 3.7), (500, 10.5)]) == pytest.approx(2.0)


def test_slope_is_the_least_squares_fit_of_scattered_points() -> None:
    # by hand: mean x 3, mean y 2; sxx = 4 + 0 + 4 = 8, sxy = (-2)(-1) + 0*1 + 2*0 = 2 -> 0.25 s per package
    assert slope_per_100([(1, 1.0), (3, 3.0), (5, 2.0)]) == pytest.approx(25.0)


@pytest.mark.parametrize("pts", [[], [(60, 1.0)], [(60, 1.0), (60, 2.0)]])
def test_slope_needs_two_distinct_package_counts(pts: list[tuple[float, float]]) -> None:
    assert slope_per_100(pts) is None


def test_points_take_medians_and_skip_sets_without_a_count_or_a_time() -> None:
    a = Runs(cold=[9.0], warm=[3.0, 1.0, 2.0], packages=60)
    no_warm = Runs(cold=[20.0], packages=150)
    no_count = Runs(cold=[5.0], warm=[5.0])
    assert points([a, no_warm, no_count], cold=False) == [(60.0, 2.0)]
    assert points([a, no_warm, no_count], cold=True) == [(60.0, 9.0), (150.0, 20.0)]


def test_sets_grow_and_the_large_set_names_its_packages_once() -> None:
    assert [s.name for s in SETS] == ["essential", "dev-tools", "dev-env"]
    sizes = [len(s.request) for s in SETS]
    assert sizes == sorted(sizes) and sizes[0] == 0
    assert all(len(set(s.request)) == len(s.request) for s in SETS)
