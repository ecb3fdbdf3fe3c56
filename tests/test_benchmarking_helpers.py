"""Tests of the helpers behind the benchmarking chapters: the identity's R² of means, the scaled-response
family of predictions, intervals over seeds and the figures that show them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from course_lib import metrics, plotting  # noqa: E402
from course_lib.benchmark import seed_intervals  # noqa: E402


def test_identity_r2_of_means_is_one_minus_the_response_share(predicted_type):
    ctrl, stim, predictions = predicted_type
    scores = metrics.evaluate(ctrl, stim, {"identity": predictions["identity"]}, n_bootstrap=0, verbose=False)
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


def test_seed_intervals_are_t_intervals_over_seeds():
    results = pd.DataFrame(
        {
            "model": "m",
            "variant": ["balanced"] * 6 + ["imbalanced"],
            "cell_type": ["a", "b"] * 3 + ["a"],
            "seed": [0, 0, 1, 1, 2, 2, 0],
            "metric": "e_distance",
            "value": [1.0, 3.0, 2.0, 6.0, 3.0, 3.0, 5.0],
        }
    )
    table = seed_intervals(results).set_index("variant")
    per_seed = np.array([2.0, 4.0, 3.0])
    half = stats.t.ppf(0.975, 2) * per_seed.std(ddof=1) / np.sqrt(3)
    assert table.loc["balanced", "mean"] == pytest.approx(3.0)
    assert table.loc["balanced", ["ci_low", "ci_high"]].tolist() == pytest.approx([3.0 - half, 3.0 + half])
    assert table.loc["imbalanced", ["ci_low", "ci_high"]].isna().all()
    by_type = seed_intervals(results, by=("model", "variant", "cell_type"))
    assert len(by_type) == 3
    with pytest.raises(ValueError, match="confidence"):
        seed_intervals(results, confidence=1.0)


def test_metric_scatter_draws_one_point_per_group_with_labelled_axes(predicted_type):
    ctrl, stim, predictions = predicted_type
    results = metrics.evaluate(ctrl, stim, predictions, n_bootstrap=10, verbose=False)
    figure = plotting.metric_scatter(results, x_metric="r2_mean_all", y_metric="delta_pearson_all")
    (axes,) = figure.axes
    assert "R² of means" in axes.get_xlabel() and "Pearson" in axes.get_ylabel() and axes.get_title()
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["scgen", "identity"]
    results["variant"] = "balanced"
    assert plotting.metric_scatter(results, x_metric="e_distance", y_metric="mv_kde", marker="variant")
    with pytest.raises(KeyError, match="no rows"):
        plotting.metric_scatter(results, x_metric="r2_mean_all", y_metric="nonsense")


def test_metric_curves_one_line_per_metric_and_marks(predicted_type):
    ctrl, stim, _ = predicted_type
    scores = metrics.scaled_response_scores(ctrl, stim, np.linspace(0, 1.5, 7))
    scores = scores[scores["metric"].isin(["r2_mean_all", "delta_pearson_all"])]
    figure = plotting.metric_curves(scores, xlabel="scale a", marks={0.0: "identity", 1.0: "truth"})
    (axes,) = figure.axes
    assert len(axes.get_lines()) == 4  # two metrics, two marks
    assert axes.get_xlabel() == "scale a" and axes.get_ylabel() and axes.get_title()


def test_interval_dots_one_panel_per_model_and_whiskers_only_with_intervals():
    summary = pd.DataFrame(
        {
            "model": ["scgen", "scgen", "scpram", "scpram"],
            "variant": ["balanced", "imbalanced"] * 2,
            "cell_type": "B cells",
            "metric": "e_distance",
            "mean": [1.0, 2.0, 1.5, 2.5],
            "ci_low": [0.5, np.nan, 1.0, 2.0],
            "ci_high": [1.5, np.nan, 2.0, 3.0],
        }
    )
    figure = plotting.interval_dots(summary, metric="e_distance")
    assert [axes.get_title() for axes in figure.axes] == ["scgen", "scpram"]
    assert all(axes.get_xlabel().startswith("e_distance") for axes in figure.axes)
    assert figure.legends and figure.get_suptitle()
    with pytest.raises(KeyError, match="no rows"):
        plotting.interval_dots(summary, metric="mv_kde")
