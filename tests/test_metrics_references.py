"""The noise ceiling, matched-size scores, baseline-normalised scores, the type-specific response and the
response discrimination, each against an independent few-line computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import as_prediction
from sklearn.decomposition import PCA

from course_lib import metrics
from course_lib.metrics.references import half_splits

OPTIONS = {"n_top_degs": 20, "n_components": 5, "max_cells": 1000, "n_bootstrap": 0, "verbose": False}


def r2(y, y_hat):
    return 1 - ((y - y_hat) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def pearson(a, b):
    return np.corrcoef(a, b)[0, 1]


def test_half_splits_are_disjoint_equal_halves_drawn_with_the_seed():
    splits = half_splits(41, 3, seed=5)
    again = half_splits(41, 3, seed=5)
    for (a, b), (a2, _) in zip(splits, again, strict=True):
        assert len(a) == len(b) == 20 and not set(a) & set(b)
        np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(splits[0][0], half_splits(41, 3, seed=6)[0][0])
    with pytest.raises(ValueError, match="has 15 stimulated cells, fewer than 2 x 10"):
        half_splits(15, 3, seed=0, what="stim (B cells)")


def test_noise_ceiling_scores_one_half_against_the_other(held_out):
    ctrl, stim, _ = held_out
    ceiling = metrics.noise_ceiling(ctrl, stim, n_splits=4, seed=2, n_top_degs=20, n_components=5)
    values = ceiling.set_index("metric")
    c = ctrl.X.mean(axis=0)
    pca = PCA(n_components=5, random_state=2).fit(np.concatenate([ctrl.X, stim.X]))
    r2_values, delta_values, energy_values = [], [], []
    for half_a, half_b in half_splits(stim.n_obs, 4, seed=2):
        a, b = stim.X[half_a], stim.X[half_b]
        r2_values.append(r2(b.mean(axis=0), a.mean(axis=0)))
        delta_values.append(pearson(b.mean(axis=0) - c, a.mean(axis=0) - c))
        energy_values.append(metrics.energy_distance(pca.transform(a), pca.transform(b)))
    assert values.loc["r2_mean_all", "value"] == pytest.approx(np.mean(r2_values), rel=1e-6)
    assert values.loc["r2_mean_all", "sd"] == pytest.approx(np.std(r2_values, ddof=1), rel=1e-5)
    assert values.loc["delta_pearson_all", "value"] == pytest.approx(np.mean(delta_values), rel=1e-6)
    assert values.loc["e_distance", "value"] == pytest.approx(np.mean(energy_values), rel=1e-6)
    assert (values["ci_low"] <= values["value"]).all() and (values["value"] <= values["ci_high"]).all()
    assert set(ceiling["n_splits"]) == {4} and set(ceiling["cell_type"]) == {"type_0"}


def test_matched_scores_subsample_the_prediction_to_the_half_size(held_out):
    ctrl, stim, predictions = held_out
    scores = metrics.evaluate(
        ctrl, stim, {"shifted": predictions["shifted"]}, n_ceiling_splits=3, seed=1, **OPTIONS
    )
    matched = scores.set_index(["model", "metric"])["value"][("shifted", "r2_mean_all_matched")]
    pred = predictions["shifted"].X
    values = []
    for index, (half_a, half_b) in enumerate(half_splits(stim.n_obs, 3, seed=1)):
        rng = np.random.default_rng([1, 12, index])
        chosen = np.sort(rng.choice(len(pred), size=len(half_a), replace=False))
        values.append(r2(stim.X[half_b].mean(axis=0), pred[chosen].mean(axis=0)))
    assert matched == pytest.approx(np.mean(values), rel=1e-6)


def test_evaluate_reports_the_ceiling_once_per_type_and_normalised_scores_per_model(held_out):
    ctrl, stim, predictions = held_out
    scores = metrics.evaluate(
        ctrl, stim, predictions | {"mean_shift": predictions["shifted"]}, n_ceiling_splits=3, **OPTIONS
    )
    ceiling = scores[scores["model"] == metrics.CEILING]
    assert not ceiling.duplicated("metric").any() and not ceiling["metric"].str.contains("matched|norm").any()
    values = scores.set_index(["model", "metric"])["value"]
    for model in ("oracle", "identity", "shifted"):
        m, i = values[(model, "e_distance_matched")], values[("identity", "e_distance_matched")]
        expected = (m - i) / (values[(metrics.CEILING, "e_distance")] - i)
        assert values[(model, "e_distance_norm_identity")] == pytest.approx(expected)
    assert values[("identity", "delta_pearson_all_norm_identity")] == 0
    assert values[("mean_shift", "delta_pearson_all_norm_mean_shift")] == 0
    assert values[("oracle", "delta_r2_all_norm_identity")] == pytest.approx(1.0, abs=0.1)  # a replicate


def test_normalised_scores_follow_the_formula_and_turn_for_lower_is_better():
    rows = [
        ("noise_ceiling", "e_distance", 1.0),
        ("identity", "e_distance_matched", 5.0),
        ("mean_shift", "e_distance_matched", 2.0),
        ("model", "e_distance_matched", 3.0),
        ("noise_ceiling", "r2_mean_all", 0.9),
        ("identity", "r2_mean_all_matched", 0.9),
        ("mean_shift", "r2_mean_all_matched", 0.8),
        ("model", "r2_mean_all_matched", 0.85),
    ]
    scores = pd.DataFrame(rows, columns=["model", "metric", "value"]).assign(cell_type="a")
    table = metrics.normalised_scores(scores).set_index(["model", "metric"])["value"]
    assert table[("model", "e_distance_norm_identity")] == pytest.approx((3 - 5) / (1 - 5))  # 0.5: half-way
    assert table[("model", "e_distance_norm_mean_shift")] == pytest.approx((3 - 2) / (1 - 2))  # -1: worse
    assert np.isnan(table[("model", "r2_mean_all_norm_identity")])  # the ceiling equals the identity


def test_specific_response_is_the_correlation_beyond_the_shared_shift(held_out):
    ctrl, stim, predictions = held_out
    shared = (
        np.asarray(predictions["shifted"].X.mean(axis=0) - ctrl.X.mean(axis=0)) * 0.8
    )  # part of the truth
    scores = metrics.evaluate(ctrl, stim, predictions, shared_response=shared, n_ceiling_splits=0, **OPTIONS)
    values = scores.set_index(["model", "metric"])["value"]
    c, y = ctrl.X.mean(axis=0), stim.X.mean(axis=0)
    for model, pred in predictions.items():
        y_hat = pred.X.mean(axis=0)
        expected = pearson(y_hat - c - shared, y - c - shared)
        assert values[(model, "specific_pearson_all")] == pytest.approx(expected, rel=1e-5)
        assert values[(model, "specific_r2_all")] == pytest.approx(
            r2(y - c - shared, y_hat - c - shared), rel=1e-5
        )
    shifted_by_shared = as_prediction(ctrl, ctrl.X + shared)
    alone = metrics.evaluate(
        ctrl, stim, {"mean_shift": shifted_by_shared}, shared_response=shared, n_ceiling_splits=0, **OPTIONS
    )
    assert alone.set_index("metric").loc["specific_pearson_all", "value"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="one per gene"):
        metrics.evaluate(ctrl, stim, predictions, shared_response=shared[:5], **OPTIONS)


def test_discrimination_rank_is_the_place_of_the_own_type_by_correlation():
    rng = np.random.default_rng(0)
    real = {name: rng.normal(size=50) for name in "abcd"}
    predicted = real["b"] + 0.1 * rng.normal(size=50)
    assert metrics.discrimination_rank(predicted, real, "b") == 1.0
    correlations = {name: pearson(change, predicted) for name, change in real.items()}
    expected = 1 + sum(value > correlations["c"] for value in correlations.values())
    assert metrics.discrimination_rank(predicted, real, "c") == expected
    assert np.isnan(metrics.discrimination_rank(np.zeros(50), real, "a"))
    with pytest.raises(KeyError, match="not among the types compared"):
        metrics.discrimination_rank(predicted, real, "z")


def test_a_constant_or_single_cell_prediction_gets_nan_for_what_is_undefined_and_the_others_are_scored(
    held_out,
):
    ctrl, stim, predictions = held_out
    constant = as_prediction(ctrl, np.tile(ctrl.X.mean(axis=0), (ctrl.n_obs, 1)))
    single = as_prediction(ctrl[:1])
    with pytest.warns(metrics.UndefinedMetricWarning) as caught:
        scores = metrics.evaluate(
            ctrl, stim, {"constant": constant, "single": single, **predictions}, **OPTIONS
        )
    messages = " ".join(str(warning.message) for warning in caught)
    assert "constant: mv_kde is undefined" in messages and "single: mv_kde is undefined" in messages
    values = scores.set_index(["model", "metric"])["value"]
    assert np.isnan(values[("constant", "mv_kde")]) and np.isfinite(values[("constant", "r2_mean_all")])
    assert np.isfinite(values[("oracle", "mv_kde")]) and np.isfinite(values[("single", "e_distance")])
