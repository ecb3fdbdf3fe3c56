"""Figures of the models themselves: training and validation curves, scPRAM's attention weights and a
learned transport map in two dimensions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from course_lib.plotting.style import PALETTE, check_frame, colors_for, heatmap, new_figure, styled


@styled
def training_history(
    history: pd.DataFrame,
    *,
    model: str | None = None,
    log_y: bool = False,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Training and validation loss per epoch; other numeric columns (loss components) in a second panel.

    ``history`` has columns ``epoch``, ``train_loss`` and ``val_loss`` (NaN without a validation
    split, in which case only the training curve is drawn), as the course's models record it.
    """
    check_frame(history, ["epoch", "train_loss", "val_loss"], what="history")
    components = [
        column
        for column in history.select_dtypes("number").columns
        if column not in ("epoch", "train_loss", "val_loss")
    ]
    figure, grid = new_figure(2 if components else 1, 1, panel_size=(6.8, 3.6))
    color = colors_for([model], colors=colors)[model] if model else PALETTE["predicted"]
    axes = grid[0, 0]
    axes.plot(
        history["epoch"], history["train_loss"], marker="o", markersize=3, color=color, label="training"
    )
    if history["val_loss"].notna().any():
        axes.plot(
            history["epoch"],
            history["val_loss"],
            marker="s",
            markersize=3,
            linestyle="--",
            color=color,
            label="validation",
        )
    axes.set_ylabel("loss")
    axes.set_title("Loss per epoch")
    if components:
        component_colors = colors_for(components)
        for column in components:
            grid[1, 0].plot(history["epoch"], history[column], color=component_colors[column], label=column)
        grid[1, 0].set_ylabel("loss component")
        grid[1, 0].set_title("Loss components")
    for panel in grid.ravel():
        panel.set_xlabel("epoch")
        panel.legend()
        if log_y:
            panel.set_yscale("log")
    figure.suptitle(f"Training history of {model}" if model else "Training history")
    return figure


@styled
def attention_heatmap(
    attention: pd.DataFrame,
    *,
    groups: pd.Series | Sequence | None = None,
    title: str = "scPRAM attention by reference cell type",
) -> Figure:
    """Heat map of scPRAM's attention weights summed per reference cell type.

    ``attention`` has one row per query cell and one column per reference cell type (the frame in a
    prediction's ``obsm["attention_by_cell_type"]``; rows sum to 1). With ``groups`` (one label per
    query cell, e.g. its target cell type, as a Series indexed by cell or a sequence in row order)
    each row of the map is the mean weight of a group; without, every cell is a row, ordered by its
    dominant reference type and then by that weight.
    """
    check_frame(attention, [], what="attention")
    if groups is None:
        dominant = attention.to_numpy().argmax(axis=1)
        strength = attention.to_numpy().max(axis=1)
        values = attention.iloc[np.lexsort((-strength, dominant))]
        row_label = f"query cell ({len(values)}, by dominant type)"
        colorbar_label = "attention weight"
    else:
        if isinstance(groups, pd.Series):
            groups = groups.reindex(attention.index)
            if groups.isna().any():
                raise KeyError(f"groups has no label for {int(groups.isna().sum())} cell(s) of attention.")
        else:
            groups = pd.Series(list(groups), index=attention.index, name="group")
        values = attention.groupby(groups.to_numpy(), sort=True).mean()
        row_label = groups.name or "group"
        colorbar_label = "mean attention weight"
    figure, ((axes,),) = new_figure(panel_size=(2.6 + 0.55 * attention.shape[1], 4.8))
    heatmap(axes, values, colorbar_label=colorbar_label, annotate=groups is not None)
    axes.set_xlabel("reference cell type")
    axes.set_ylabel(row_label)
    axes.set_title(title)
    return figure


@styled
def validation_curve(
    history: pd.DataFrame,
    *,
    x: str = "step",
    y: str = "val_energy_distance",
    model: str = "cellot",
    log_y: bool = True,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """One validation criterion against training progress, the best point marked.

    ``history`` is e.g. :attr:`course_lib.models.Cellot.history` (columns ``step`` and
    ``val_energy_distance``); the best (lowest) value is the checkpoint a model keeps.
    """
    check_frame(history, [x, y], what="history")
    figure, ((axes,),) = new_figure(panel_size=(6.8, 4.0))
    color = colors_for([model], colors=colors)[model]
    axes.plot(history[x], history[y], marker="o", markersize=3, color=color, label=f"{model}, validation")
    best = history.loc[history[y].idxmin()]
    axes.plot(
        best[x], best[y], "*", markersize=14, color="black", label=f"best: {best[y]:.3g} at {x} {best[x]:.0f}"
    )
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel(x.replace("_", " "))
    axes.set_ylabel(y.replace("_", " ").replace("val ", "validation "))
    axes.set_title(f"Validation curve of {model}")
    axes.legend()
    return figure


@styled
def transport_arrows(
    source: np.ndarray,
    target: np.ndarray,
    mapped: np.ndarray,
    *,
    n_arrows: int = 80,
    seed: int = 0,
    title: str = "A learned transport map",
) -> Figure:
    """Two 2-D point clouds and a map between them: source and target points, and an arrow from each
    of ``n_arrows`` source points (drawn with ``seed``) to where the map sends it."""
    for name, points in (("source", source), ("target", target), ("mapped", mapped)):
        if np.asarray(points).ndim != 2 or np.asarray(points).shape[1] != 2:
            raise ValueError(f"{name} must be a (points x 2) array, not of shape {np.shape(points)}.")
    if len(mapped) != len(source):
        raise ValueError(f"mapped has {len(mapped)} rows for {len(source)} source points.")
    figure, ((axes,),) = new_figure(panel_size=(6.8, 5.6))
    axes.scatter(*np.asarray(source).T, s=6, alpha=0.35, color=PALETTE["control"], label="source (control)")
    axes.scatter(
        *np.asarray(target).T, s=6, alpha=0.35, color=PALETTE["stimulated"], label="target (stimulated)"
    )
    chosen = np.random.default_rng(seed).choice(len(source), size=min(n_arrows, len(source)), replace=False)
    start, end = np.asarray(source)[chosen], np.asarray(mapped)[chosen]
    axes.quiver(*start.T, *(end - start).T, angles="xy", scale_units="xy", scale=1, width=0.003, color="0.15")
    axes.plot([], [], color="0.15", label="T(x) = ∇g(x)")
    axes.set(xlabel="dimension 1", ylabel="dimension 2", title=title)
    axes.set_aspect("equal", adjustable="datalim")
    axes.legend(loc="best")
    return figure
