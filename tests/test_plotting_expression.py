"""Figures of expression: gene means, the top DEGs and embeddings."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import assert_labelled, data_axes
from matplotlib.text import Text

from course_lib import metrics, plotting


def test_mean_expression_scatter_labels_genes_without_overlaps(predicted_type):
    ctrl, stim, predictions = predicted_type
    figure = plotting.mean_expression_scatter(ctrl, stim, predictions["scgen"], model="scgen", n_top_degs=20)
    assert_labelled(figure)
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


def test_deg_dotplot_has_one_dot_per_group_and_gene(predicted_type):
    ctrl, stim, predictions = predicted_type
    figure = plotting.deg_dotplot(ctrl, stim, predictions, n_genes=8)
    assert_labelled(figure)
    axes = data_axes(figure)[0]
    assert len(axes.collections[0].get_offsets()) == 4 * 8
    assert [label.get_text() for label in axes.get_yticklabels()] == ["control", "stimulated", *predictions]
    genes = [label.get_text() for label in axes.get_xticklabels()]
    assert genes == list(metrics.top_degs(stim, ctrl, n_top=8))
    with pytest.raises(ValueError, match="clash"):
        plotting.deg_dotplot(ctrl, stim, {"control": ctrl})


def test_embedding_plot_pca_panels(predicted_type):
    ctrl, stim, predictions = predicted_type
    figure = plotting.embedding_plot(ctrl, stim, predictions, methods=("pca",), n_components=10)
    assert_labelled(figure)
    panels = data_axes(figure)
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
    assert_labelled(figure)
    assert [axes.get_xlabel()[:4] for axes in data_axes(figure)] == ["PC1 ", "UMAP"]


def test_embedding_plot_falls_back_to_pca_without_umap(predicted_type, monkeypatch):
    ctrl, stim, predictions = predicted_type
    monkeypatch.setitem(sys.modules, "umap", None)  # makes `import umap` fail
    with pytest.warns(UserWarning, match="umap-learn"):
        figure = plotting.embedding_plot(ctrl, stim, predictions, n_components=5)
    assert_labelled(figure)
    assert [axes.get_xlabel()[:3] for axes in data_axes(figure)] == ["PC1", "PC1"]


def test_gene_distributions_one_violin_per_group_and_panel(predicted_type):
    ctrl, stim, predictions = predicted_type
    genes = list(stim.var_names[:4])
    figure = plotting.gene_distributions(ctrl, stim, predictions, genes=genes, n_cols=3)
    assert_labelled(figure, key=False)  # the groups are the tick labels
    panels = data_axes(figure)
    assert [axes.get_title() for axes in panels] == genes
    assert len(panels) == 4 and figure.get_figwidth() < 2 * 3.0  # two 2.9-inch columns fit, not three
    first = panels[0]
    medians = first.collections[-1].get_segments()  # showmedians: the median lines come last
    np.testing.assert_allclose(
        [segment[0, 1] for segment in medians],
        [np.median(adata[:, genes[0]].X) for adata in (ctrl, stim, *predictions.values())],
        rtol=1e-6,
    )
    with pytest.raises(KeyError, match="no_such_gene"):
        plotting.gene_distributions(ctrl, stim, predictions, genes=["no_such_gene"])
