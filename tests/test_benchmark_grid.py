"""What a benchmark runs: the grid, its profiles and its expansion into ordered grid points."""

from __future__ import annotations

import pytest
from conftest import BASELINE_REGISTRY, SMALL_GRID

from course_lib.benchmark import BenchmarkGrid, as_grid, plan, read_profiles
from course_lib.metrics import CEILING


def test_the_small_profile_sets_fraction_epochs_and_seeds():
    profile = read_profiles()["small"]
    grid = BenchmarkGrid.from_profile("small", models=["scgen"])
    assert (grid.fraction, grid.n_epochs, len(grid.seeds)) == (
        profile["fraction"],
        profile["n_epochs"],
        profile["n_seeds"],
    )
    assert grid.models == ["scgen"]
    with pytest.raises(ValueError, match="unknown profile 'tiny'"):
        BenchmarkGrid.from_profile("tiny")


def test_a_grid_comes_from_a_mapping_or_refuses_unknown_fields():
    assert as_grid({"seeds": (4,)}).seeds == (4,)
    assert as_grid(None) == BenchmarkGrid()
    with pytest.raises(ValueError, match=r"unknown grid field\(s\) \['depth'\]"):
        as_grid({"depth": 3})


def test_points_are_ordered_by_variant_type_seed_and_model(counts):
    grid = as_grid(
        {
            **SMALL_GRID,
            "seeds": (0, 1),
            "cell_types": ["type_2", "type_0"],
            "variants": ["imbalanced", "balanced"],
        }
    )
    points, eligible = plan(counts, grid, registry=BASELINE_REGISTRY)
    assert eligible == ["type_0", "type_1", "type_2"]
    assert [(p.variant, p.cell_type, p.seed) for p in points[:3]] == [("imbalanced", "type_2", 0)] * 3
    assert [p.spec.name for p in points[:3]] == [CEILING, "identity", "mean_shift"]
    assert len(points) == 2 * 2 * 2 * 3
    assert len({point.key for point in points}) == len(points)
