"""evaluate: every metric of every prediction in one tidy frame, equal to the standalone metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import as_prediction

from course_lib import metrics
from course_lib.metrics.names import scored_names

EVALUATE_OPTIONS = {
    "n_top_degs": 30,
    "n_components": 10,
    "max_cells": 150,
    "n_bootstrap": 20,
    "n_ceiling_splits": 0,
    "verbose": False,
}
"""Small and fast; the noise ceiling and what derives from it are tested in test_metrics_references."""


@pytest.fixture(scope="module")
def evaluated(held_out):
    ctrl, stim, predictions = held_out
    return metrics.evaluate(ctrl, stim, predictions, **EVALUATE_OPTIONS)


def test_evaluate_returns_a_tidy_frame(evaluated, held_out):
    _, _, predictions = held_out
    assert list(evaluated.columns) == list(metrics.EVALUATE_COLUMNS)
    assert list(evaluated["model"].unique()) == list(predictions)
    assert set(evaluated["cell_type"]) == {"type_0"}
    assert list(evaluated["metric"].unique()) == scored_names(30)
    assert not evaluated.duplicated(["model", "cell_type", "metric"]).any()
    for name in evaluated["metric"].unique():
        metrics.metric_info(name)
    bootstrapped = evaluated["metric"].str.contains("mean|delta|specific")
    assert evaluated.loc[~bootstrapped, ["ci_low", "ci_high"]].isna().all().all()
    inside = evaluated[bootstrapped]
    assert ((inside["ci_low"] <= inside["value"]) & (inside["value"] <= inside["ci_high"])).all()


def test_evaluate_agrees_with_the_standalone_metrics(evaluated, held_out):
    ctrl, stim, predictions = held_out
    values = evaluated.set_index(["model", "metric"])
    degs = metrics.top_degs(stim, ctrl, n_top=30)
    energy = metrics.energy_distances(ctrl, stim, predictions, n_components=10, max_cells=150)
    for name, pred in predictions.items():
        for genes, scope in [(None, "all"), (degs, "top30")]:
            expected = metrics.mean_metrics(ctrl, stim, pred, genes=genes, n_bootstrap=20)
            for statistic, row in expected.iterrows():
                got = values.loc[(name, f"{statistic}_{scope}"), ["value", "ci_low", "ci_high"]]
                np.testing.assert_allclose(got.to_numpy(dtype=float), row.to_numpy(), rtol=1e-9)
        overlap = metrics.deg_overlap(ctrl, stim, pred, n_top=30)
        assert values.loc[(name, "deg_jaccard_top30"), "value"] == pytest.approx(overlap.jaccard)
        assert values.loc[(name, "deg_overlap_top30"), "value"] == overlap.overlap
        assert values.loc[(name, "e_distance"), "value"] == pytest.approx(energy.loc[name, "stimulated"])
        kde = metrics.mean_variance_kde_distance(stim, pred)
        assert values.loc[(name, "mv_kde"), "value"] == pytest.approx(kde)


def test_evaluate_ranks_an_oracle_above_the_identity_baseline(evaluated):
    values = evaluated.set_index(["model", "metric"])["value"]
    for metric in ["delta_pearson_all", "delta_r2_top30", "deg_jaccard_top30"]:
        assert values[("oracle", metric)] > values[("identity", metric)] + 0.3
    for metric in ["e_distance", "mv_kde", "mse_mean_all"]:
        assert values[("oracle", metric)] < values[("identity", metric)]
    assert abs(values[("identity", "delta_pearson_all")]) < 0.2


def test_evaluate_is_deterministic_and_does_not_depend_on_the_other_models(evaluated, held_out):
    ctrl, stim, predictions = held_out
    alone = metrics.evaluate(ctrl, stim, {"shifted": predictions["shifted"]}, **EVALUATE_OPTIONS)
    together = evaluated[evaluated["model"] == "shifted"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, together)


def test_evaluate_accepts_one_prediction_sparse_input_and_squared_energy(held_out):
    ctrl, stim, predictions = held_out
    sparse_ctrl = ctrl.copy()
    sparse_ctrl.X = sp.csr_matrix(sparse_ctrl.X)
    options = {**EVALUATE_OPTIONS, "n_bootstrap": 0}
    dense = metrics.evaluate(ctrl, stim, predictions["oracle"], **options)
    sparse = metrics.evaluate(sparse_ctrl, stim, predictions["oracle"], **options)
    pd.testing.assert_frame_equal(dense, sparse)
    assert set(dense["model"]) == {"predicted"}
    squared = metrics.evaluate(ctrl, stim, predictions["oracle"], squared_energy=True, **options)
    assert "e_distance_squared" in set(squared["metric"]) and "e_distance" not in set(squared["metric"])


def test_evaluate_selects_conditions_and_splits_cell_types(synthetic):
    options = {**EVALUATE_OPTIONS, "n_bootstrap": 0}
    ctrl = synthetic[synthetic.obs["condition"] == "control"]
    prediction = as_prediction(synthetic[synthetic.obs["condition"] == "stimulated"])
    # The whole data set serves as ctrl and stim: each keeps only its own condition.
    together = metrics.evaluate(synthetic, synthetic, {"model": prediction}, **options)
    assert list(together["cell_type"].unique()) == list(dict.fromkeys(ctrl.obs["cell_type"].astype(str)))
    for cell_type in ["type_0", "type_2"]:
        in_type = synthetic[synthetic.obs["cell_type"] == cell_type]
        alone = metrics.evaluate(
            in_type[in_type.obs["condition"] == "control"],
            in_type[in_type.obs["condition"] == "stimulated"],
            {"model": prediction[prediction.obs["cell_type"] == cell_type]},
            **options,
        )
        expected = together[together["cell_type"] == cell_type].reset_index(drop=True)
        pd.testing.assert_frame_equal(alone, expected)


def test_evaluate_errors_name_the_problem(held_out, synthetic):
    ctrl, stim, predictions = held_out
    oracle = predictions["oracle"]
    renamed = oracle.copy()
    renamed.var_names = [f"other_{i}" if i < 2 else g for i, g in enumerate(oracle.var_names)]
    with pytest.raises(ValueError, match=r"different genes.*'gene_0'"):
        metrics.evaluate(ctrl, stim, {"m": renamed}, verbose=False)
    with pytest.raises(ValueError, match="another order"):
        metrics.evaluate(ctrl, stim, {"m": oracle[:, ::-1]}, verbose=False)
    with pytest.raises(ValueError, match="'control' not found in ctrl"):
        metrics.evaluate(stim, stim, {"m": oracle}, verbose=False)
    with pytest.raises(ValueError, match="'predicted' not found"):
        metrics.evaluate(ctrl, stim, {"m": ctrl}, verbose=False)
    counts = oracle.copy()
    counts.X = counts.layers["counts"]
    with pytest.raises(ValueError, match="raw counts"):
        metrics.evaluate(ctrl, stim, {"m": counts}, verbose=False)
    with pytest.raises(ValueError, match="n_components"):
        metrics.evaluate(ctrl, stim, {"m": oracle}, n_components=10_000, verbose=False)
    unlabelled = as_prediction(synthetic[synthetic.obs["condition"] == "stimulated"])
    del unlabelled.obs["cell_type"]
    with pytest.raises(ValueError, match="has no obs\\['cell_type'\\]"):
        metrics.evaluate(synthetic, synthetic, {"m": unlabelled}, verbose=False)
    with pytest.raises(ValueError, match="empty"):
        metrics.evaluate(ctrl, stim, {}, verbose=False)


def test_evaluate_refuses_duplicated_genes_and_negative_real_cells(held_out):
    ctrl, stim, predictions = held_out
    twins = predictions["oracle"].copy()
    twins.var_names = ["gene_0", *twins.var_names[:-1]]
    with pytest.raises(ValueError, match="duplicated gene name"):
        metrics.evaluate(ctrl, stim, {"m": twins}, verbose=False)
    centred = stim.copy()
    centred.X = centred.X - 1.0
    with pytest.raises(ValueError, match="stim.X holds .* negative values"):
        metrics.evaluate(ctrl, centred, predictions, verbose=False)
    negative = as_prediction(ctrl, ctrl.X - 0.01)  # a linear decoder's prediction may dip below 0
    scores = metrics.evaluate(ctrl, stim, {"m": negative}, n_ceiling_splits=0, n_bootstrap=0, verbose=False)
    assert scores["value"].notna().any()


def test_a_negative_seed_is_refused_before_any_scoring(held_out):
    ctrl, stim, predictions = held_out
    with pytest.raises(ValueError, match="seed must be a non-negative integer, not -1"):
        metrics.evaluate(ctrl, stim, predictions, seed=-1, verbose=False)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, not -1"):
        metrics.noise_ceiling(ctrl, stim, seed=-1)
