"""Figures of metrics: bars, two metrics against each other, metric curves, energy distances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import assert_labelled, data_axes
from matplotlib.container import BarContainer

from course_lib import metrics, plotting


@pytest.fixture(scope="module")
def results(predicted_type):
    ctrl, stim, predictions = predicted_type
    return metrics.evaluate(
        ctrl,
        stim,
        predictions,
        n_top_degs=20,
        n_components=10,
        n_bootstrap=20,
        n_ceiling_splits=0,
        verbose=False,
    )


def test_energy_distance_heatmap_shows_the_frame(predicted_type):
    ctrl, stim, predictions = predicted_type
    distances = metrics.energy_distances(ctrl, stim, predictions, n_components=10, squared=True)
    figure = plotting.energy_distance_heatmap(distances)
    assert_labelled(figure)
    axes = data_axes(figure)[0]
    shown = [float(text.get_text()) for text in axes.texts]
    np.testing.assert_allclose(shown, distances.to_numpy().ravel(), atol=0.006)
    assert [label.get_text() for label in axes.get_yticklabels()] == list(distances.index)
    colorbar = next(axes for axes in figure.axes if hasattr(axes, "_colorbar"))
    assert colorbar.get_ylabel() == metrics.metric_info("e_distance_squared").label
    with pytest.raises(ValueError, match="square"):
        plotting.energy_distance_heatmap(distances.iloc[:2])


def test_metric_bars_one_panel_per_metric_with_intervals(results):
    shown = ["r2_mean_all", "delta_pearson_top20", "e_distance"]
    figure = plotting.metric_bars(results, metrics=shown)
    assert_labelled(figure)
    panels = data_axes(figure)
    assert len(panels) == 3
    for axes, metric in zip(panels, shown, strict=True):
        assert axes.get_title().replace("\n", " ") == metrics.metric_info(metric).label
        rows = results[results["metric"] == metric].set_index("model")
        heights = [patch.get_height() for patch in axes.patches]
        np.testing.assert_allclose(heights, rows["value"].to_numpy())
    assert len(panels[0].lines) > 0  # whiskers of the bootstrap interval
    assert "lower is better" in panels[2].get_ylabel() and len(panels[2].lines) == 0
    with pytest.raises(KeyError, match="no rows"):
        plotting.metric_bars(results, metrics=["accuracy"])


def test_metric_bars_average_several_runs_and_split_by_hue(results):
    runs = pd.concat(
        [
            results.assign(
                seed=seed, **{column: results[column] + seed for column in ["value", "ci_low", "ci_high"]}
            )
            for seed in range(3)
        ]
    )
    figure = plotting.metric_bars(runs, metrics=["mse_mean_all"])
    axes = data_axes(figure)[0]
    expected = results[results["metric"] == "mse_mean_all"]["value"].to_numpy() + 1.0
    np.testing.assert_allclose([patch.get_height() for patch in axes.patches], expected)
    figure = plotting.metric_bars(runs, metrics=["mse_mean_all"], hue="seed")
    assert_labelled(figure)
    assert len(data_axes(figure)[0].patches) == 2 * 3
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["0", "1", "2"]


def test_metric_scatter_draws_one_point_per_group_with_labelled_axes(predicted_type):
    ctrl, stim, predictions = predicted_type
    results = metrics.evaluate(ctrl, stim, predictions, n_bootstrap=10, n_ceiling_splits=0, verbose=False)
    figure = plotting.metric_scatter(results, x_metric="r2_mean_all", y_metric="delta_pearson_all")
    (axes,) = figure.axes
    assert "R² of means" in axes.get_xlabel() and "Pearson" in axes.get_ylabel() and axes.get_title()
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["scgen", "identity"]
    results["variant"] = np.where(results["model"] == "scgen", "balanced", "imbalanced")
    by_variant = plotting.metric_scatter(results, x_metric="e_distance", y_metric="mv_kde", marker="variant")
    markers = [
        line.get_marker() for line in by_variant.axes[0].lines if line.get_marker() not in ("None", "", None)
    ]
    assert markers[:2] == ["o", "s"]  # one marker per variant
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


def test_metric_bars_draw_the_noise_ceiling_as_a_line_and_marks(predicted_type):
    ctrl, stim, predictions = predicted_type
    with_ceiling = metrics.evaluate(
        ctrl, stim, predictions, n_bootstrap=10, n_ceiling_splits=4, verbose=False
    )
    assert metrics.CEILING in set(with_ceiling["model"])
    figure = plotting.metric_bars(with_ceiling, metrics=["r2_mean_all"], marks={0.5: "half"})
    assert_labelled(figure)
    (axes,) = data_axes(figure)
    bars = [container for container in axes.containers if isinstance(container, BarContainer)]
    assert len(bars) == len(predictions)  # the ceiling is a line and a band, not a bar
    ceiling = with_ceiling.query("model == @metrics.CEILING and metric == 'r2_mean_all'")["value"].mean()
    heights = [line.get_ydata()[0] for line in axes.get_lines() if line.get_linestyle() == "--"]
    np.testing.assert_allclose(heights, [ceiling])
    assert "half" in [text.get_text() for text in axes.texts]
    assert "noise ceiling" in [text.get_text() for text in figure.legends[0].get_texts()]


def test_normalised_score_heatmap_shows_both_references(predicted_type):
    ctrl, stim, predictions = predicted_type
    scored = metrics.evaluate(ctrl, stim, predictions, n_bootstrap=0, n_ceiling_splits=4, verbose=False)
    shown = ["r2_mean_all", "delta_pearson_all", "e_distance"]
    figure = plotting.metrics.normalised_score_heatmap(scored, metrics=shown, models=["scgen", "identity"])
    assert_labelled(figure)
    top, bottom = data_axes(figure)
    assert "identity" in top.get_title() and "mean-shift" in bottom.get_title()
    assert [label.get_text() for label in top.get_xticklabels()] == shown
    assert [label.get_text() for label in top.get_yticklabels()] == ["scgen", "identity"]
    expected = scored.set_index(["model", "metric"])["value"]
    shown_values = [float(text.get_text()) for text in top.texts]
    wanted = [
        expected[(model, f"{metric}_norm_identity")] for model in ("scgen", "identity") for metric in shown
    ]
    np.testing.assert_allclose(shown_values, wanted, atol=0.006)
    assert wanted[len(shown) :] == [0.0] * len(shown)  # the identity is the 0 of its own scale
    # without a mean-shift baseline among the predictions, its scale is undefined
    assert {text.get_text() for text in bottom.texts} == {"n/a"}
    with pytest.raises(KeyError, match="no rows"):
        unnormalised = scored[~scored["metric"].str.contains("_norm_")]
        plotting.metrics.normalised_score_heatmap(unnormalised, metrics=shown)
