"""Reading a benchmark table: means and t intervals over seeds, normalised scores, response
discrimination and the comparison of a live slice with a committed table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import BASELINE_REGISTRY, SMALL_GRID
from scipy import stats

from course_lib.benchmark import (
    compare_results,
    response_discrimination,
    run_benchmark,
    seed_intervals,
    summarise,
    with_normalised_scores,
)


def baselines(counts, path, **grid):
    return run_benchmark(
        counts, {**SMALL_GRID, **grid}, results_path=path, registry=BASELINE_REGISTRY, verbose=False
    )


def test_summary_averages_cell_types_then_seeds():
    results = pd.DataFrame(
        {
            "model": "m",
            "variant": "balanced",
            "cell_type": ["a", "b", "a", "b"],
            "seed": [0, 0, 1, 1],
            "metric": "e_distance",
            "value": [1.0, 3.0, 2.0, 6.0],
        }
    )
    (row,) = summarise(results).to_dict("records")
    assert (
        row["mean"] == 3.0 and row["sd"] == pytest.approx(np.std([2.0, 4.0], ddof=1)) and row["n_seeds"] == 2
    )


def test_seed_intervals_are_t_intervals_over_seeds():
    rows = [("m", "balanced", "a", seed, value) for seed, value in enumerate([2.0, 4.0, 3.0])]
    rows += [("m", "imbalanced", "a", 0, 5.0)]
    results = pd.DataFrame(rows, columns=["model", "variant", "cell_type", "seed", "value"]).assign(
        metric="e_distance"
    )
    table = seed_intervals(results).set_index("variant")
    per_seed = np.array([2.0, 4.0, 3.0])
    half = stats.t.ppf(0.975, 2) * per_seed.std(ddof=1) / np.sqrt(3)
    assert table.loc["balanced", "mean"] == pytest.approx(3.0)
    assert table.loc["balanced", ["ci_low", "ci_high"]].tolist() == pytest.approx([3.0 - half, 3.0 + half])
    assert table.loc["imbalanced", ["ci_low", "ci_high"]].isna().all()
    with pytest.raises(ValueError, match="confidence"):
        seed_intervals(results, confidence=1.0)


def test_compare_results_matches_the_same_points_and_setup(counts, tmp_path):
    committed = baselines(counts, tmp_path / "committed.csv", cell_types=["type_0", "type_1"])
    live = baselines(counts, tmp_path / "live.csv", cell_types=["type_1"])
    comparison = compare_results(live, committed)
    assert comparison["committed"].notna().all() and (comparison["difference"] == 0).all()
    other = baselines(counts, tmp_path / "other.csv", cell_types=["type_1"], n_top_genes=50)
    unmatched = compare_results(other, committed)
    assert not unmatched.attrs["same_setup"] and unmatched["committed"].isna().all()


def test_normalised_scores_put_the_identity_at_0_and_the_ceiling_at_1(counts, tmp_path):
    table = with_normalised_scores(baselines(counts, tmp_path / "r.csv", cell_types=["type_0"]))
    values = table.set_index(["model", "metric"])["value"]
    assert values[("identity", "delta_pearson_all_norm_identity")] == 0.0
    assert values[("mean_shift", "delta_pearson_all_norm_mean_shift")] == 0.0
    ceiling = values[("noise_ceiling", "e_distance")]
    identity, shift = values[("identity", "e_distance_matched")], values[("mean_shift", "e_distance_matched")]
    assert values[("mean_shift", "e_distance_norm_identity")] == pytest.approx(
        (shift - identity) / (ceiling - identity)
    )


def test_response_discrimination_counts_rank_one_and_leaves_the_identity_undefined():
    rows = [
        ("scgen", "balanced", cell_type, seed, rank)
        for seed, ranks in enumerate([[1, 1, 2], [1, 3, 1]])
        for cell_type, rank in zip(["a", "b", "c"], ranks, strict=True)
    ] + [("identity", "balanced", cell_type, 0, np.nan) for cell_type in "abc"]
    results = pd.DataFrame(rows, columns=["model", "variant", "cell_type", "seed", "value"])
    results["metric"] = "discrimination_rank_all"
    table = response_discrimination(results).set_index("model")
    assert table.loc["scgen", "accuracy"] == pytest.approx(4 / 6) and table.loc[
        "scgen", "mean_rank"
    ] == pytest.approx(1.5)
    assert table.loc["scgen", "chance_accuracy"] == pytest.approx(1 / 3) and table.loc["scgen", "n"] == 6
    assert np.isnan(table.loc["identity", "accuracy"]) and table.loc["identity", "n"] == 0
    with pytest.raises(KeyError, match="discrimination_rank_all"):
        response_discrimination(results.assign(metric="e_distance"))
