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
    label_by_setting,
    rank_models,
    response_discrimination,
    run_benchmark,
    seed_intervals,
    summarise,
    types_beating,
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


def test_response_discrimination_of_some_types_takes_the_number_the_ranks_were_computed_among():
    """Rows of two of the three types: K must be passed, and a rank above the default K is refused."""
    results = pd.DataFrame(
        {"model": "scgen", "variant": "balanced", "cell_type": ["a", "b"], "seed": 0, "value": [1.0, 3.0]}
    ).assign(metric="discrimination_rank_all")
    with pytest.raises(ValueError, match="a rank of 3 among 2 types"):
        response_discrimination(results)
    table = response_discrimination(results, n_types=3)
    assert table.loc[0, "chance_accuracy"] == pytest.approx(1 / 3) and table.loc[0, "accuracy"] == 0.5


def test_models_are_ranked_in_each_metrics_better_direction():
    rows = [
        (model, cell_type, seed, metric, value)
        for model, (pearson, energy) in {"a": (0.9, 2.0), "b": (0.5, 1.0), "c": (0.7, 3.0)}.items()
        for cell_type in ("t1", "t2")
        for seed in (0, 1)
        for metric, value in (("delta_pearson_top100", pearson), ("e_distance", energy))
    ]
    results = pd.DataFrame(rows, columns=["model", "cell_type", "seed", "metric", "value"]).assign(
        variant="balanced"
    )
    ranks = rank_models(results, metrics=["delta_pearson_top100", "e_distance"])
    assert ranks.loc[["a", "b", "c"], "delta_pearson_top100"].tolist() == [1, 3, 2]
    assert ranks.loc[["a", "b", "c"], "e_distance"].tolist() == [2, 1, 3]  # lower is better
    assert rank_models(results, metrics=["e_distance"], models=["c", "a"]).index.tolist() == ["c", "a"]
    unscored = results[~((results["model"] == "c") & (results["metric"] == "e_distance"))]
    ranked = rank_models(unscored, metrics=["delta_pearson_top100", "e_distance"])
    assert ranked.loc["c", "e_distance"] is pd.NA  # no score, no rank
    assert ranked.loc["c", "delta_pearson_top100"] == 2


def test_types_beating_counts_strict_wins_in_each_metrics_better_direction():
    scores = {  # (model, cell type): (delta pearson, energy distance); the baseline is "m"
        ("m", "t1"): (0.5, 2.0),
        ("m", "t2"): (0.5, 2.0),
        ("m", "t3"): (0.5, 2.0),
        ("a", "t1"): (0.6, 1.0),
        ("a", "t2"): (0.5, 3.0),
        ("a", "t3"): (0.4, 1.5),
    }
    rows = [
        (model, cell_type, seed, metric, value + 0.01 * (seed - 0.5))  # seeds average to the score
        for (model, cell_type), (pearson, energy) in scores.items()
        for seed in (0, 1)
        for metric, value in (("delta_pearson_top100", pearson), ("e_distance", energy))
    ]
    results = pd.DataFrame(rows, columns=["model", "cell_type", "seed", "metric", "value"]).assign(
        variant="balanced"
    )
    beating = types_beating(results, "m", metrics=["delta_pearson_top100", "e_distance"])
    assert beating.loc["a"].tolist() == [1, 2]  # a tie (t2 Pearson) is no win; lower energy wins
    assert "m" not in beating.index
    assert beating.attrs["n_types"] == {"delta_pearson_top100": 3, "e_distance": 3}
    with pytest.raises(KeyError, match="baseline 'x'"):
        types_beating(results, "x")


def test_settings_of_one_model_are_labelled_as_models():
    results = pd.DataFrame(
        {
            "model": ["scgen", "scgen", "identity"],
            "hyperparameters": ['{"decoder_batch_norm": true}', '{"decoder_batch_norm": false}', "{}"],
        }
    )
    labelled = label_by_setting(results, "decoder_batch_norm", {True: "with BN", False: "without BN"})
    assert labelled["model"].tolist() == ["scgen, with BN", "scgen, without BN", "identity"]
    with pytest.raises(KeyError, match="no entry for decoder_batch_norm"):
        label_by_setting(results, "decoder_batch_norm", {True: "with BN"})
