"""Statistics of gene means and their bootstrap, against scikit-learn, scipy and direct computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import mean_squared_error
from sklearn.metrics import r2_score as sklearn_r2

from course_lib import metrics

# Scores of mean vectors


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_r2_mse_pearson_match_sklearn_and_scipy(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=300)
    y_hat = 0.5 * y + rng.normal(scale=0.3, size=300) + 0.5
    assert metrics.r2_score(y, y_hat) == pytest.approx(sklearn_r2(y, y_hat), rel=1e-12)
    assert metrics.mse(y, y_hat) == pytest.approx(mean_squared_error(y, y_hat), rel=1e-12)
    r = stats.pearsonr(y, y_hat).statistic
    assert metrics.pearson_r(y, y_hat) == pytest.approx(r, rel=1e-12)
    assert metrics.r2_score(y, y_hat, kind="pearson2") == pytest.approx(r**2, rel=1e-12)
    # The two R² differ: the squared Pearson ignores the 0.5 slope and the 0.5 offset.
    assert metrics.r2_score(y, y_hat, kind="pearson2") > metrics.r2_score(y, y_hat) + 0.2


def test_scores_are_batched_over_leading_axes():
    rng = np.random.default_rng(3)
    y, y_hat = rng.normal(size=(4, 50)), rng.normal(size=(4, 50))
    np.testing.assert_allclose(
        metrics.r2_score(y, y_hat), [sklearn_r2(a, b) for a, b in zip(y, y_hat, strict=True)]
    )
    np.testing.assert_allclose(
        metrics.pearson_r(y, y_hat), [stats.pearsonr(a, b).statistic for a, b in zip(y, y_hat, strict=True)]
    )
    np.testing.assert_allclose(metrics.mse(y, y_hat), ((y - y_hat) ** 2).mean(axis=1))


def test_score_conventions_for_degenerate_vectors():
    y = np.array([1.0, 2.0, 4.0])
    assert metrics.r2_score(y, y) == 1.0
    assert metrics.r2_score(y, np.full(3, y.mean())) == pytest.approx(0.0)
    assert np.isnan(metrics.r2_score(np.ones(3), y))  # nothing to explain
    assert metrics.pearson_r(y, np.zeros(3)) == 0.0  # a constant prediction carries no signal


def test_scores_reject_bad_arguments():
    with pytest.raises(ValueError, match="one shape"):
        metrics.mse(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="pearson2"):
        metrics.r2_score(np.zeros(3), np.zeros(3), kind="spearman")


def test_mean_metrics_without_bootstrap_match_direct_computation(held_out):
    ctrl, stim, predictions = held_out
    pred = predictions["oracle"]
    c, y, y_hat = (np.asarray(a.X, dtype=np.float64).mean(axis=0) for a in (ctrl, stim, pred))
    frame = metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=0)
    expected = {
        "r2_mean": sklearn_r2(y, y_hat),
        "r2_pearson2_mean": stats.pearsonr(y, y_hat).statistic ** 2,
        "mse_mean": mean_squared_error(y, y_hat),
        "pearson_mean": stats.pearsonr(y, y_hat).statistic,
        "delta_r2": sklearn_r2(y - c, y_hat - c),
        "delta_pearson": stats.pearsonr(y - c, y_hat - c).statistic,
    }
    assert list(frame.index) == list(expected)
    np.testing.assert_allclose(frame["value"], list(expected.values()), rtol=1e-6)
    assert frame[["ci_low", "ci_high"]].isna().all().all()

    genes = list(stim.var_names[::3])
    subset = metrics.mean_metrics(ctrl, stim, pred, genes=genes, n_bootstrap=0)
    positions = np.arange(stim.n_vars)[::3]
    assert subset.loc["r2_mean", "value"] == pytest.approx(
        sklearn_r2(y[positions], y_hat[positions]), rel=1e-6
    )
    with pytest.raises(KeyError, match="not in var_names"):
        metrics.mean_metrics(ctrl, stim, pred, genes=["no_such_gene"], n_bootstrap=0)


def test_identity_scores_high_r2_but_no_delta_correlation(held_out):
    ctrl, stim, predictions = held_out
    identity = metrics.mean_metrics(ctrl, stim, predictions["identity"], n_bootstrap=0)["value"]
    shifted = metrics.mean_metrics(ctrl, stim, predictions["shifted"], n_bootstrap=0)["value"]
    y_shift = np.asarray(stim.X.mean(axis=0) - ctrl.X.mean(axis=0), dtype=np.float64)
    assert identity["r2_mean"] > 0.8
    assert identity["delta_pearson"] == 0.0
    # Predicting no shift: R² = 1 − Σ (y − c)² / Σ (y − c − mean(y − c))².
    expected = 1 - (y_shift**2).sum() / ((y_shift - y_shift.mean()) ** 2).sum()
    assert identity["delta_r2"] == pytest.approx(expected, rel=1e-5)
    # Control cells plus the true mean shift reproduce the stim means: every score is perfect.
    assert shifted["r2_mean"] == pytest.approx(1.0, abs=1e-6)
    assert shifted["delta_pearson"] == pytest.approx(1.0, abs=1e-6)
    assert shifted["delta_r2"] == pytest.approx(1.0, abs=1e-5)
    assert shifted["mse_mean"] == pytest.approx(0.0, abs=1e-10)


def test_bootstrap_inflates_mse_by_the_variance_of_80_percent_resamples(held_out):
    """E[MSE*] = MSE + mean_g(σ²_stim / m_stim + σ²_pred / m_pred), m = floor(0.8 n), σ² with ddof 0."""
    ctrl, stim, predictions = held_out
    pred = predictions["oracle"]
    result = metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=400, seed=3)
    point = metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=0).loc["mse_mean", "value"]
    inflation = sum(
        np.asarray(a.X, dtype=np.float64).var(axis=0).mean() / int(0.8 * a.n_obs) for a in (stim, pred)
    )
    assert inflation > point / 2  # the test can tell a wrong resample size apart
    assert result.loc["mse_mean", "value"] == pytest.approx(point + inflation, rel=0.03)


def test_bootstrap_intervals_are_ordered_and_seeded(held_out):
    ctrl, stim, predictions = held_out
    pred = predictions["oracle"]
    wide = metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=50, seed=0)
    narrow = metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=50, seed=0, confidence=0.5)
    assert (wide["ci_low"] <= wide["value"]).all() and (wide["value"] <= wide["ci_high"]).all()
    assert (wide["ci_low"] < wide["ci_high"]).all()
    assert (narrow["ci_high"] - narrow["ci_low"] < wide["ci_high"] - wide["ci_low"]).all()
    pd.testing.assert_frame_equal(wide, metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=50, seed=0))
    assert not wide.equals(metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=50, seed=1))
    with pytest.raises(ValueError, match="n_bootstrap"):
        metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=1)
    with pytest.raises(ValueError, match="fraction"):
        metrics.mean_metrics(ctrl, stim, pred, fraction=1.5)


def test_identity_r2_of_means_is_one_minus_the_response_share(predicted_type):
    ctrl, stim, predictions = predicted_type
    scores = metrics.evaluate(
        ctrl, stim, {"identity": predictions["identity"]}, n_bootstrap=0, n_ceiling_splits=0, verbose=False
    )
    r2 = scores.set_index("metric").loc["r2_mean_all", "value"]
    assert r2 == pytest.approx(1.0 - metrics.response_share(ctrl, stim))
    genes = list(stim.var_names[:20])
    c, y = ctrl[:, genes].X.mean(axis=0), stim[:, genes].X.mean(axis=0)
    expected = ((y - c) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert metrics.response_share(ctrl, stim, genes=genes) == pytest.approx(expected, rel=1e-5)


def test_scaled_response_scores_follow_their_formulas(predicted_type):
    ctrl, stim, _ = predicted_type
    scales = [0.0, 0.5, 1.0, 1.5]
    scores = metrics.scaled_response_scores(ctrl, stim, scales).pivot(index="scale", columns="metric")[
        "value"
    ]
    share = metrics.response_share(ctrl, stim)
    a = np.array(scales)
    np.testing.assert_allclose(scores["r2_mean_all"], 1 - (1 - a) ** 2 * share, atol=1e-9)
    d = stim.X.mean(axis=0, dtype=np.float64) - ctrl.X.mean(axis=0, dtype=np.float64)
    ratio = (d**2).sum() / ((d - d.mean()) ** 2).sum()
    np.testing.assert_allclose(scores["delta_r2_all"], 1 - (1 - a) ** 2 * ratio, atol=1e-9)
    np.testing.assert_allclose(scores["delta_pearson_all"], [0.0, 1.0, 1.0, 1.0], atol=1e-9)
    top = metrics.scaled_response_scores(ctrl, stim, [1.0], genes=list(stim.var_names[:10]))
    assert set(top["metric"]) >= {"r2_mean_top10", "delta_pearson_top10"}
    with pytest.raises(ValueError, match="scales"):
        metrics.scaled_response_scores(ctrl, stim, [])
