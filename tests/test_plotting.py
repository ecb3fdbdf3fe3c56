"""Tests of course_lib.plotting: every figure builds on synthetic data and carries its labels."""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from course_lib import metrics, plotting  # noqa: E402


@pytest.fixture(scope="module")
def results(predicted_type):
    ctrl, stim, predictions = predicted_type
    return metrics.evaluate(
        ctrl, stim, predictions, n_top_degs=20, n_components=10, n_bootstrap=20, verbose=False
    )


def _data_axes(figure: Figure) -> list:
    """Visible axes that are not colour bars."""
    return [axes for axes in figure.axes if axes.get_visible() and not hasattr(axes, "_colorbar")]


def _assert_labelled(figure: Figure) -> None:
    """A Figure whose every panel has a title (or the figure a suptitle), axis labels, and which has
    a legend or a colour bar."""
    assert isinstance(figure, Figure)
    suptitle = figure.get_suptitle()
    for axes in _data_axes(figure):
        assert axes.get_title() or suptitle
        assert axes.get_xlabel() and axes.get_ylabel()
    has_legend = bool(figure.legends) or any(axes.get_legend() for axes in figure.axes)
    has_colorbar = any(hasattr(axes, "_colorbar") for axes in figure.axes)
    assert has_legend or has_colorbar
    figure.canvas.draw()  # it renders


def test_palette_is_one_colour_per_condition_and_model():
    for name in ["control", "stimulated", "predicted", "scgen", "scpram", "identity", "mean_shift"]:
        assert name in plotting.PALETTE
    assert len(set(plotting.PALETTE.values())) == len(plotting.PALETTE)
    assert not set(plotting.FALLBACK_COLORS) & set(plotting.PALETTE.values())


def test_colors_for_keeps_known_colours_and_gives_unknown_names_distinct_ones():
    colors = plotting.colors_for(["scgen", "scgen_tuned", "scpram", "variant_b"])
    assert colors["scgen"] == plotting.PALETTE["scgen"]
    assert colors["scpram"] == plotting.PALETTE["scpram"]
    assert len(set(colors.values())) == 4
    assert plotting.colors_for(["scgen_tuned", "variant_b"]) == {
        "scgen_tuned": colors["scgen_tuned"],
        "variant_b": colors["variant_b"],
    }
    many = plotting.colors_for([f"variant_{i}" for i in range(20)])
    assert set(many.values()) == set(plotting.FALLBACK_COLORS)  # it cycles


def test_mean_expression_scatter_labels_genes_without_overlaps(predicted_type):
    ctrl, stim, predictions = predicted_type
    figure = plotting.mean_expression_scatter(ctrl, stim, predictions["scgen"], model="scgen", n_top_degs=20)
    _assert_labelled(figure)
    (axes,) = figure.axes
    y = stim.X.mean(axis=0)
    y_hat = predictions["scgen"].X.mean(axis=0)
    assert f"{metrics.r2_score(y, y_hat):.3f}" in axes.get_title()
    renderer = figure.canvas.get_renderer()
    labels = [text for text in axes.texts if text.get_text().startswith("gene_")]
    assert len(labels) >= 5
    boxes = [Text.get_window_extent(label, renderer) for label in labels]  # the text, not the arrow
    frame = axes.get_window_extent(renderer)
    for i, box in enumerate(boxes):
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
        assert not any(box.overlaps(other) for other in boxes[i + 1 :])
    responsive = np.argsort(-np.abs(stim.X.mean(axis=0) - ctrl.X.mean(axis=0)))[:10]
    assert {label.get_text() for label in labels} <= set(stim.var_names[responsive])
    legend_labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert any(label.startswith("fit:") for label in legend_labels) and "ŷ = y" in legend_labels


def test_mean_expression_scatter_rejects_unknown_degs(predicted_type):
    ctrl, stim, predictions = predicted_type
    with pytest.raises(KeyError, match="not in var_names"):
        plotting.mean_expression_scatter(ctrl, stim, predictions["scgen"], degs=["no_such_gene"])


def test_energy_distance_heatmap_shows_the_frame(predicted_type):
    ctrl, stim, predictions = predicted_type
    distances = metrics.energy_distances(ctrl, stim, predictions, n_components=10, squared=True)
    figure = plotting.energy_distance_heatmap(distances)
    _assert_labelled(figure)
    axes = _data_axes(figure)[0]
    shown = [float(text.get_text()) for text in axes.texts]
    np.testing.assert_allclose(shown, distances.to_numpy().ravel(), atol=0.006)
    assert [label.get_text() for label in axes.get_yticklabels()] == list(distances.index)
    colorbar = next(axes for axes in figure.axes if hasattr(axes, "_colorbar"))
    assert colorbar.get_ylabel() == metrics.metric_info("e_distance_squared").label
    with pytest.raises(ValueError, match="square"):
        plotting.energy_distance_heatmap(distances.iloc[:2])


def test_deg_dotplot_has_one_dot_per_group_and_gene(predicted_type):
    ctrl, stim, predictions = predicted_type
    figure = plotting.deg_dotplot(ctrl, stim, predictions, n_genes=8)
    _assert_labelled(figure)
    axes = _data_axes(figure)[0]
    assert len(axes.collections[0].get_offsets()) == 4 * 8
    assert [label.get_text() for label in axes.get_yticklabels()] == ["control", "stimulated", *predictions]
    genes = [label.get_text() for label in axes.get_xticklabels()]
    assert genes == list(metrics.top_degs(stim, ctrl, n_top=8))
    with pytest.raises(ValueError, match="clash"):
        plotting.deg_dotplot(ctrl, stim, {"control": ctrl})


def test_embedding_plot_pca_panels(predicted_type):
    ctrl, stim, predictions = predicted_type
    figure = plotting.embedding_plot(ctrl, stim, predictions, methods=("pca",), n_components=10)
    _assert_labelled(figure)
    panels = _data_axes(figure)
    assert len(panels) == 2
    assert all(axes.get_xlabel().startswith("PC1") for axes in panels)
    assert all(len(axes.collections) == 3 for axes in panels)  # control, stimulated, the model
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["control", "stimulated", *predictions]


@pytest.mark.slow  # umap-learn compiles its numba code on the first call (10 s or more)
def test_embedding_plot_adds_a_umap_row(predicted_type):
    ctrl, stim, predictions = predicted_type
    small = {"scgen": predictions["scgen"][:60]}
    figure = plotting.embedding_plot(ctrl[:60], stim[:60], small, n_components=5)
    _assert_labelled(figure)
    assert [axes.get_xlabel()[:4] for axes in _data_axes(figure)] == ["PC1 ", "UMAP"]


def test_embedding_plot_falls_back_to_pca_without_umap(predicted_type, monkeypatch):
    ctrl, stim, predictions = predicted_type
    monkeypatch.setitem(sys.modules, "umap", None)  # makes `import umap` fail
    with pytest.warns(UserWarning, match="umap-learn"):
        figure = plotting.embedding_plot(ctrl, stim, predictions, n_components=5)
    _assert_labelled(figure)
    assert [axes.get_xlabel()[:3] for axes in _data_axes(figure)] == ["PC1", "PC1"]


def test_metric_bars_one_panel_per_metric_with_intervals(results):
    shown = ["r2_mean_all", "delta_pearson_top20", "e_distance"]
    figure = plotting.metric_bars(results, metrics=shown)
    _assert_labelled(figure)
    panels = _data_axes(figure)
    assert len(panels) == 3
    for axes, metric in zip(panels, shown, strict=True):
        assert axes.get_title() == metrics.metric_info(metric).label
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
    axes = _data_axes(figure)[0]
    expected = results[results["metric"] == "mse_mean_all"]["value"].to_numpy() + 1.0
    np.testing.assert_allclose([patch.get_height() for patch in axes.patches], expected)
    figure = plotting.metric_bars(runs, metrics=["mse_mean_all"], hue="seed")
    _assert_labelled(figure)
    assert len(_data_axes(figure)[0].patches) == 2 * 3
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["0", "1", "2"]


def _attention(n_cells: int = 40) -> pd.DataFrame:
    weights = np.random.default_rng(0).dirichlet([2.0, 1.0, 0.5], size=n_cells)
    return pd.DataFrame(
        weights, index=[f"cell_{i}" for i in range(n_cells)], columns=["B", "NK", "CD14 Mono"]
    )


def test_attention_heatmap_by_cell_orders_by_dominant_type():
    attention = _attention()
    figure = plotting.attention_heatmap(attention)
    _assert_labelled(figure)
    image = _data_axes(figure)[0].images[0].get_array()
    dominant = image.argmax(axis=1)
    assert (np.diff(dominant) >= 0).all()
    np.testing.assert_allclose(np.sort(image.sum(axis=1)), np.sort(attention.sum(axis=1)))


def test_attention_heatmap_by_group_shows_group_means():
    attention = _attention()
    groups = pd.Series(np.repeat(["CD4 T", "CD8 T"], 20), index=attention.index, name="target cell type")
    figure = plotting.attention_heatmap(attention, groups=groups.sample(frac=1.0, random_state=0))
    _assert_labelled(figure)
    axes = _data_axes(figure)[0]
    np.testing.assert_allclose(axes.images[0].get_array(), attention.groupby(groups).mean().to_numpy())
    assert axes.get_ylabel() == "target cell type"
    with pytest.raises(KeyError, match="no label"):
        plotting.attention_heatmap(attention, groups=groups.iloc[:10])


def test_training_history_with_and_without_validation():
    history = pd.DataFrame(
        {"epoch": np.arange(1, 6), "train_loss": [5.0, 4, 3, 2.5, 2], "val_loss": [5.5, 4.4, 3.6, 3.1, 3.0]}
    )
    figure = plotting.training_history(history, model="scgen")
    _assert_labelled(figure)
    (axes,) = _data_axes(figure)
    assert [line.get_label() for line in axes.lines] == ["training", "validation"]
    assert axes.lines[0].get_color() == plotting.PALETTE["scgen"]
    no_validation = history.assign(val_loss=np.nan, kl=0.1, reconstruction=[4.9, 3.9, 2.9, 2.4, 1.9])
    figure = plotting.training_history(no_validation, log_y=True)
    _assert_labelled(figure)
    left, right = _data_axes(figure)
    assert [line.get_label() for line in left.lines] == ["training"]
    assert [line.get_label() for line in right.lines] == ["kl", "reconstruction"]
    assert left.get_yscale() == "log"
    with pytest.raises(KeyError, match="val_loss"):
        plotting.training_history(history.drop(columns="val_loss"))


def test_figures_stay_out_of_pyplot(predicted_type, results):
    plt.close("all")
    ctrl, stim, predictions = predicted_type
    plotting.metric_bars(results, metrics=["r2_mean_all"])
    plotting.mean_expression_scatter(ctrl, stim, predictions["identity"], model="identity", n_labels=3)
    assert plt.get_fignums() == []
