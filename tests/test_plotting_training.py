"""Figures of the models: the training history and scPRAM's attention."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import assert_labelled, data_axes
from matplotlib.quiver import Quiver

from course_lib import plotting


def _attention(n_cells: int = 40) -> pd.DataFrame:
    weights = np.random.default_rng(0).dirichlet([2.0, 1.0, 0.5], size=n_cells)
    return pd.DataFrame(
        weights, index=[f"cell_{i}" for i in range(n_cells)], columns=["B", "NK", "CD14 Mono"]
    )


def test_attention_heatmap_by_cell_orders_by_dominant_type():
    attention = _attention()
    figure = plotting.attention_heatmap(attention)
    assert_labelled(figure)
    image = data_axes(figure)[0].images[0].get_array()
    dominant = image.argmax(axis=1)
    assert (np.diff(dominant) >= 0).all()
    np.testing.assert_allclose(np.sort(image.sum(axis=1)), np.sort(attention.sum(axis=1)))


def test_attention_heatmap_by_group_shows_group_means():
    attention = _attention()
    groups = pd.Series(np.repeat(["CD4 T", "CD8 T"], 20), index=attention.index, name="target cell type")
    figure = plotting.attention_heatmap(attention, groups=groups.sample(frac=1.0, random_state=0))
    assert_labelled(figure)
    axes = data_axes(figure)[0]
    np.testing.assert_allclose(axes.images[0].get_array(), attention.groupby(groups).mean().to_numpy())
    assert axes.get_ylabel() == "target cell type"
    with pytest.raises(KeyError, match="no label"):
        plotting.attention_heatmap(attention, groups=groups.iloc[:10])


def test_training_history_with_and_without_validation():
    history = pd.DataFrame(
        {"epoch": np.arange(1, 6), "train_loss": [5.0, 4, 3, 2.5, 2], "val_loss": [5.5, 4.4, 3.6, 3.1, 3.0]}
    )
    figure = plotting.training_history(history, model="scgen")
    assert_labelled(figure)
    (axes,) = data_axes(figure)
    assert [line.get_label() for line in axes.lines] == ["training", "validation"]
    assert axes.lines[0].get_color() == plotting.PALETTE["scgen"]
    no_validation = history.assign(val_loss=np.nan, kl=0.1, reconstruction=[4.9, 3.9, 2.9, 2.4, 1.9])
    figure = plotting.training_history(no_validation, log_y=True)
    assert_labelled(figure)
    left, right = data_axes(figure)
    assert [line.get_label() for line in left.lines] == ["training"]
    assert [line.get_label() for line in right.lines] == ["kl", "reconstruction"]
    assert left.get_yscale() == "log"
    with pytest.raises(KeyError, match="val_loss"):
        plotting.training_history(history.drop(columns="val_loss"))


def test_validation_curve_marks_the_best_step():
    history = pd.DataFrame({"step": [0, 100, 200, 300], "val_energy_distance": [3.0, 0.5, 0.2, 0.4]})
    figure = plotting.validation_curve(history)
    assert_labelled(figure)
    (axes,) = data_axes(figure)
    assert axes.get_yscale() == "log"
    best = [line for line in axes.get_lines() if line.get_marker() == "*"]
    assert len(best) == 1 and best[0].get_xdata()[0] == 200 and best[0].get_ydata()[0] == 0.2
    with pytest.raises(KeyError, match="val_energy_distance"):
        plotting.validation_curve(history.drop(columns="val_energy_distance"))


def test_transport_arrows_draws_one_arrow_per_chosen_source_point():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(50, 2))
    target = source + 3.0
    figure = plotting.transport_arrows(source, target, source + 3.0, n_arrows=10)
    assert_labelled(figure)
    (axes,) = data_axes(figure)
    (arrows,) = [collection for collection in axes.collections if isinstance(collection, Quiver)]
    assert len(arrows.get_offsets()) == 10
    np.testing.assert_allclose(arrows.U, 3.0) and np.testing.assert_allclose(arrows.V, 3.0)
    with pytest.raises(ValueError, match="points x 2"):
        plotting.transport_arrows(source, target, np.zeros((50, 3)))
    with pytest.raises(ValueError, match="rows for 50 source points"):
        plotting.transport_arrows(source, target, source[:10])
