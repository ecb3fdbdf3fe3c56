"""Figures of the models themselves: the training history and scPRAM's attention weights."""

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
    figure, grid = new_figure(1, 2 if components else 1, panel_size=(5.0, 3.8))
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
            grid[0, 1].plot(history["epoch"], history[column], color=component_colors[column], label=column)
        grid[0, 1].set_ylabel("loss component")
        grid[0, 1].set_title("Loss components")
    for panel in grid.ravel():
        panel.set_xlabel("epoch")
        panel.legend(fontsize=8)
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
        row_label = f"query cell ({len(values)}, ordered by dominant reference type)"
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
    figure, ((axes,),) = new_figure(panel_size=(1.5 + 0.6 * attention.shape[1] + 1.5, 4.5))
    heatmap(axes, values, colorbar_label=colorbar_label, annotate=groups is not None)
    axes.set_xlabel("reference cell type")
    axes.set_ylabel(row_label)
    axes.set_title(title)
    return figure
