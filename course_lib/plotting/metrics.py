"""Figures of metrics: bars across models, two metrics against each other, metric curves, and the
energy distances between groups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from course_lib.metrics import metric_info
from course_lib.plotting.style import (
    MARKERS,
    check_frame,
    colors_for,
    heatmap,
    new_figure,
    styled,
    whisker,
    with_direction,
    wrapped,
)


def _bar_statistics(rows: pd.DataFrame) -> tuple[float, float, float]:
    """Bar height and whisker ends: one row's value and interval, or several rows' mean and range."""
    if len(rows) == 1:
        row = rows.iloc[0]
        return row["value"], row["ci_low"], row["ci_high"]
    return rows["value"].mean(), rows["value"].min(), rows["value"].max()


@styled
def metric_bars(
    results: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    x: str = "model",
    hue: str | None = None,
    n_cols: int = 3,
    title_width: int | None = 30,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Bars of metrics across models (or variants), one panel per metric, with interval whiskers.

    ``results`` is a tidy frame like the one of :func:`course_lib.metrics.evaluate` (columns
    ``metric``, ``value``, ``ci_low``, ``ci_high``, ``x`` and ``hue``). A bar made of one row shows
    its value with its bootstrap interval (no whisker where the interval is NaN); a bar made of
    several rows (seeds, cell types) shows their mean, a whisker over their range and each row as a
    dot. Bars are coloured by ``hue`` when given, else by ``x``, with
    :func:`~course_lib.plotting.colors_for` (``colors`` sets some colours). Panel titles are wrapped at
    ``title_width`` characters (``None``: one line).
    """
    columns = ["metric", "value", "ci_low", "ci_high", x] + ([hue] if hue else [])
    check_frame(results, columns, what="results")
    shown = list(dict.fromkeys(results["metric"])) if metrics is None else list(metrics)
    absent = sorted(set(shown) - set(results["metric"]))
    if absent:
        raise KeyError(f"results has no rows for metric(s) {absent}.")
    categories = list(dict.fromkeys(results[x]))
    hues = list(dict.fromkeys(results[hue])) if hue else [None]
    colors = colors_for(hues if hue else categories, colors=colors)
    width = 0.8 / len(hues)

    n_rows = -(-len(shown) // n_cols)
    figure, grid = new_figure(
        n_rows, min(n_cols, len(shown)), panel_size=(1.2 + 0.55 * len(categories) * len(hues), 3.4)
    )
    for axes, metric in zip(grid.ravel(), shown, strict=False):
        rows = results[results["metric"] == metric]
        for h, hue_value in enumerate(hues):
            for position, category in enumerate(categories):
                selected = rows[(rows[x] == category) & ((rows[hue] == hue_value) if hue else True)]
                if selected.empty:
                    continue
                center = position + (h - (len(hues) - 1) / 2) * width
                height, low, high = _bar_statistics(selected)
                axes.bar(center, height, width=width * 0.9, color=colors[hue_value if hue else category])
                extent = whisker(height, low, high)
                if extent is not None:
                    axes.errorbar(center, height, yerr=extent, color="black", capsize=3)
                if len(selected) > 1:
                    axes.scatter(
                        np.full(len(selected), center), selected["value"], s=10, color="black", zorder=3
                    )
        info = metric_info(metric)
        axes.set_title(wrapped(info.label, title_width))
        axes.set_ylabel(with_direction(metric), fontsize=8)
        axes.set_xticks(range(len(categories)), categories, rotation=45, ha="right")
        axes.set_xlabel(x)
    for axes in grid.ravel()[len(shown) :]:
        axes.set_visible(False)
    legend_names = hues if hue else categories
    figure.legend(
        handles=[Patch(color=colors[name], label=str(name)) for name in legend_names],
        loc="outside lower center",
        ncols=min(len(legend_names), 6),
        title=hue or x,
    )
    figure.suptitle("Metrics (whiskers: bootstrap interval of one run, or the range over several runs)")
    return figure


@styled
def metric_scatter(
    results: pd.DataFrame,
    *,
    x_metric: str,
    y_metric: str,
    hue: str = "model",
    marker: str | None = None,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """One point per ``hue`` (and ``marker``) group: its ``x_metric`` against its ``y_metric``.

    ``results`` is tidy like :func:`course_lib.metrics.evaluate`'s frame. A group of one row shows its
    value with its bootstrap interval as whiskers; a group of several rows (seeds, cell types) shows
    their mean with whiskers over their range, as in :func:`metric_bars`.
    """
    columns = ["metric", "value", "ci_low", "ci_high", hue] + ([marker] if marker else [])
    check_frame(results, columns, what="results")
    absent = sorted({x_metric, y_metric} - set(results["metric"]))
    if absent:
        raise KeyError(f"results has no rows for metric(s) {absent}.")
    keys = [hue] + ([marker] if marker else [])
    colors = colors_for(dict.fromkeys(results[hue]), colors=colors)
    markers = (
        {value: MARKERS[i % len(MARKERS)] for i, value in enumerate(dict.fromkeys(results[marker]))}
        if marker
        else {}
    )
    figure, ((axes,),) = new_figure(panel_size=(6.0, 4.8))
    for group, rows in results.groupby(keys, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        (x, x_low, x_high), (y, y_low, y_high) = (
            _bar_statistics(rows[rows["metric"] == name]) for name in (x_metric, y_metric)
        )
        label = " | ".join(str(value) for value in group)
        axes.errorbar(
            x,
            y,
            xerr=whisker(x, x_low, x_high),
            yerr=whisker(y, y_low, y_high),
            fmt=markers.get(group[-1], "o"),
            color=colors[group[0]],
            markersize=8,
            capsize=3,
            label=label,
        )
    x_info, y_info = metric_info(x_metric), metric_info(y_metric)
    axes.set_xlabel(with_direction(x_info.label, x_info))
    axes.set_ylabel(with_direction(y_info.label, y_info))
    axes.set_title(title or f"{y_info.label} against {x_info.label}")
    axes.legend(fontsize=8, title=" | ".join(keys), loc="best")
    return figure


@styled
def metric_curves(
    scores: pd.DataFrame,
    *,
    x: str = "scale",
    xlabel: str | None = None,
    marks: Mapping[float, str] | None = None,
    title: str = "Metrics along a family of predictions",
) -> Figure:
    """Lines of metric values against ``x``, one line per metric (labels from :func:`metric_info`).

    ``scores`` has columns ``x``, ``metric`` and ``value``, e.g. the frame of
    :func:`course_lib.metrics.scaled_response_scores`. ``marks`` draws a labelled vertical line at
    each of its positions (for instance the identity baseline at 0 and the truth at 1).
    """
    check_frame(scores, [x, "metric", "value"], what="scores")
    names = list(dict.fromkeys(scores["metric"]))
    colors = colors_for(names)
    figure, ((axes,),) = new_figure(panel_size=(6.5, 4.2))
    for name in names:
        rows = scores[scores["metric"] == name].sort_values(x)
        axes.plot(rows[x], rows["value"], color=colors[name], linewidth=2, label=metric_info(name).label)
    for position, text in (marks or {}).items():
        axes.axvline(position, color="0.5", linestyle=":", linewidth=1)
        axes.annotate(
            text,
            (position, 0.98),
            xycoords=("data", "axes fraction"),
            xytext=(3, 0),
            textcoords="offset points",
            rotation=90,
            fontsize=8,
            ha="left",
            va="top",
            color="0.3",
        )
    axes.set_xlabel(xlabel or x)
    axes.set_ylabel("metric value")
    axes.set_title(title)
    axes.legend(fontsize=8, loc="lower right")
    return figure


@styled
def energy_distance_heatmap(distances: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Heat map of the energy distances between ctrl, stim and each prediction.

    ``distances`` is the square frame of :func:`course_lib.metrics.energy_distances`; the colour bar
    names the variant recorded in its ``attrs["metric"]``.
    """
    if distances.empty or list(distances.index) != list(distances.columns):
        raise ValueError("distances must be a non-empty square frame with the same rows and columns.")
    size = 1.2 + 0.75 * len(distances)
    figure, ((axes,),) = new_figure(panel_size=(size + 1.5, size))
    label = metric_info(distances.attrs.get("metric", "e_distance")).label
    heatmap(axes, distances, colorbar_label=label, annotate=True)
    axes.set_xlabel("group")
    axes.set_ylabel("group")
    axes.set_title(title or "Energy distance between conditions and predictions")
    return figure
