"""Figures of the cell-type annotation: how the course's labels meet published ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from course_lib.plotting.style import ANNOTATION_SIZE, new_figure, styled


@styled
def confusion_heatmap(
    confusion: pd.DataFrame,
    *,
    title: str = "Course labels against published labels",
    reference_label: str = "published label",
    predicted_label: str = "course label",
) -> Figure:
    """A confusion table (rows: reference labels, columns: predicted labels) as a heat map of row shares,
    every cell annotated with its count; the diagonal holds the agreements.

    ``confusion`` is e.g. :func:`course_lib.annotation.confusion_table` or
    :func:`course_lib.annotation.confusion_from_counts`.
    """
    if confusion.empty:
        raise ValueError("confusion is empty.")
    shares = confusion.div(confusion.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    figure, ((axes,),) = new_figure(panel_size=(6.8, 6.0))
    image = axes.imshow(shares.to_numpy(dtype=float), cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(confusion.columns)), confusion.columns, rotation=45, ha="right")
    axes.set_yticks(range(len(confusion.index)), confusion.index)
    for (row, column), count in np.ndenumerate(confusion.to_numpy()):
        color = "white" if shares.iat[row, column] > 0.5 else "black"
        axes.text(column, row, f"{count:,}", ha="center", va="center", color=color, fontsize=ANNOTATION_SIZE)
    figure.colorbar(image, ax=axes, label="share of the reference type's cells")
    axes.set(xlabel=predicted_label, ylabel=reference_label)
    figure.suptitle(title)  # above the heat map and its colour bar: the square map is narrower than its panel
    return figure
