"""Figures of a benchmark: means with intervals per held-out type, model and data variant."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from course_lib.benchmark import seed_intervals
from course_lib.metrics import metric_info
from course_lib.plotting.style import (
    MARKERS,
    MAX_WIDTH,
    PALETTE,
    check_frame,
    colors_for,
    figure_legend,
    new_figure,
    panel_grid,
    styled,
    whisker,
    with_direction,
)


@styled
def interval_dots(
    summary: pd.DataFrame,
    *,
    metric: str,
    panel: str = "model",
    row: str = "cell_type",
    hue: str = "variant",
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Means with intervals, one panel per ``panel`` value, one line per ``row``, one dot per ``hue``.

    ``summary`` has columns ``metric``, ``mean``, ``ci_low`` and ``ci_high`` (for instance the frame of
    :func:`course_lib.benchmark.seed_intervals`), and the ``panel``, ``row`` and ``hue`` columns.
    Horizontal whiskers show the interval (none where it is NaN, e.g. for a single seed).
    """
    check_frame(summary, ["metric", "mean", "ci_low", "ci_high", panel, row, hue], what="summary")
    rows = summary[summary["metric"] == metric]
    if rows.empty:
        raise KeyError(f"summary has no rows for metric {metric!r}.")
    panels, labels, hues = (list(dict.fromkeys(rows[column])) for column in (panel, row, hue))
    colors = colors_for(hues, colors=colors)
    offsets = {value: (i - (len(hues) - 1) / 2) * 0.25 for i, value in enumerate(hues)}
    figure, grid = panel_grid(len(panels), panel_size=(3.4, 1.6 + 0.5 * len(labels)))
    info = metric_info(metric)
    for axes, name in zip(grid, panels, strict=True):
        for item in rows[rows[panel] == name].itertuples(index=False):
            record = item._asdict()
            y = labels.index(record[row]) + offsets[record[hue]]
            axes.errorbar(
                record["mean"],
                y,
                xerr=whisker(record["mean"], record["ci_low"], record["ci_high"]),
                fmt=MARKERS[hues.index(record[hue])],
                color=colors[record[hue]],
                capsize=3,
            )
        axes.set_yticks(range(len(labels)), labels)
        axes.set(ylim=(len(labels) - 0.5, -0.5))
        axes.set_xlabel(with_direction(metric, separator="\n"))
        axes.set_ylabel(row if axes.get_subplotspec().is_first_col() else "")
        axes.set_title(str(name))
    handles = [
        Line2D([], [], marker=MARKERS[i], linestyle="", color=colors[value], label=str(value))
        for i, value in enumerate(hues)
    ]
    figure_legend(figure, handles, title=hue)
    figure.suptitle(title or f"{info.label}: mean and interval per {panel}, {row} and {hue}")
    return figure


MIN_SUMMARY_WIDTH = 4.0
"""Narrowest :func:`benchmark_summary` in inches, however few held-out types it shows."""


@styled
def benchmark_summary(
    results: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("delta_pearson_top100", "e_distance"),
    variant: str = "balanced",
    confidence: float = 0.95,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """A benchmark in one figure: one panel per metric, held-out cell types along x, one marker per model.

    ``results`` is a benchmark table (:func:`course_lib.benchmark.run_benchmark` or
    :func:`~course_lib.benchmark.load_results`); only rows of ``variant`` are shown. A marker is the
    mean over seeds, its whisker the t interval of :func:`course_lib.benchmark.seed_intervals` (none for
    a single seed) and the small dots the single seeds. Models keep their :data:`PALETTE` colours,
    baselines first; cell types keep their order in ``results``.
    """
    check_frame(results, ["model", "cell_type", "variant", "seed", "metric", "value"], what="results")
    rows = results[(results["variant"] == variant) & results["metric"].isin(metrics)]
    absent = sorted(set(metrics) - set(rows["metric"]))
    if absent:
        raise KeyError(f"results has no {variant!r} rows for metric(s) {absent}.")
    summary = seed_intervals(rows, metrics=metrics, by=("model", "cell_type"), confidence=confidence)
    order = [
        name for name in dict.fromkeys(["identity", "mean_shift", *PALETTE]) if name in set(rows["model"])
    ]
    models = order + [name for name in dict.fromkeys(rows["model"]) if name not in order]
    cell_types = list(dict.fromkeys(rows["cell_type"]))
    colors = colors_for(models, colors=colors)
    offsets = {model: (i - (len(models) - 1) / 2) * 0.8 / len(models) for i, model in enumerate(models)}
    width = min(MAX_WIDTH, max(MIN_SUMMARY_WIDTH, 1.6 + 1.0 * len(cell_types)))  # titles and legend need room
    figure, grid = new_figure(len(metrics), 1, panel_size=(width, 3.4))
    for axes, metric in zip(grid[:, 0], metrics, strict=True):
        for model in models:
            means = summary[(summary["metric"] == metric) & (summary["model"] == model)]
            x = np.array([cell_types.index(t) for t in means["cell_type"]]) + offsets[model]
            whiskers = np.maximum([means["mean"] - means["ci_low"], means["ci_high"] - means["mean"]], 0.0)
            axes.errorbar(
                x,
                means["mean"],
                yerr=np.nan_to_num(whiskers),
                fmt=MARKERS[models.index(model) % len(MARKERS)],
                color=colors[model],
                capsize=3,
                label=model,
            )
            seeds = rows[(rows["metric"] == metric) & (rows["model"] == model)]
            seed_x = np.array([cell_types.index(t) for t in seeds["cell_type"]]) + offsets[model]
            axes.scatter(seed_x, seeds["value"], s=8, color=colors[model], alpha=0.5, linewidths=0)
        info = metric_info(metric)
        n_seeds = summary.loc[summary["metric"] == metric, "n_seeds"]
        low, high = n_seeds.min(), n_seeds.max()
        seeds_per_marker = (
            f"{low} seed" if high == 1 else f"{low} seeds" if low == high else f"{low} to {high} seeds"
        )
        axes.set_title(f"{info.label} ({seeds_per_marker} per marker)")
        axes.set_ylabel("higher is better" if info.higher_is_better else "lower is better")
        axes.set_xticks(range(len(cell_types)), cell_types, rotation=30, ha="right")
        axes.set_xlabel("held-out cell type")
    handles = [
        Line2D([], [], marker=MARKERS[i % len(MARKERS)], linestyle="", color=colors[m], label=m)
        for i, m in enumerate(models)
    ]
    figure_legend(figure, handles, title="model")
    default_title = f"Every held-out cell type ({variant}): mean over seeds, {confidence:.0%} t interval"
    figure.suptitle(title or default_title)
    return figure
