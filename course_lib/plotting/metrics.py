"""Figures of metrics: bars across models, two metrics against each other, metric curves, the
energy distances between groups, and baseline-normalised scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from course_lib.metrics import CEILING, metric_info
from course_lib.plotting.style import (
    ANNOTATION_SIZE,
    FONT_SIZES,
    MARKERS,
    MAX_WIDTH,
    PALETTE,
    check_frame,
    colors_for,
    figure_legend,
    heatmap,
    new_figure,
    panel_grid,
    styled,
    whisker,
    with_direction,
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
    marks: Mapping[float, str] | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Bars of metrics across models (or variants), one panel per metric, with interval whiskers.

    ``results`` is a tidy frame like the one of :func:`course_lib.metrics.evaluate` (columns
    ``metric``, ``value``, ``ci_low``, ``ci_high``, ``x`` and ``hue``). A bar made of one row shows
    its value with its bootstrap interval (no whisker where the interval is NaN); a bar made of
    several rows (seeds, cell types) shows their mean, a whisker over their range and each row as a
    dot. Bars are coloured by ``hue`` when given, else by ``x``, with
    :func:`~course_lib.plotting.colors_for` (``colors`` sets some colours).

    Rows of the noise ceiling (model :data:`course_lib.metrics.CEILING`) are not a bar: they are drawn
    as a dashed line across their panel, with the spread of the half splits as a band, to show what
    a replicate of the real cells scores. ``marks`` draws labelled horizontal reference lines (for
    normalised scores: ``{0: "baseline", 1: "noise ceiling"}``).
    """
    columns = ["metric", "value", "ci_low", "ci_high", x] + ([hue] if hue else [])
    check_frame(results, columns, what="results")
    ceiling = results[results[x] == CEILING] if x == "model" else results.iloc[0:0]
    results = results[results[x] != CEILING] if x == "model" else results
    shown = list(dict.fromkeys(results["metric"])) if metrics is None else list(metrics)
    absent = sorted(set(shown) - set(results["metric"]))
    if absent:
        raise KeyError(f"results has no rows for metric(s) {absent}.")
    categories = list(dict.fromkeys(results[x]))
    hues = list(dict.fromkeys(results[hue])) if hue else [None]
    colors = colors_for(hues if hue else categories, colors=colors)
    width = 0.8 / len(hues)

    figure, panels = panel_grid(
        len(shown), panel_size=(1.4 + 0.5 * len(categories) * len(hues), 3.9), max_cols=n_cols
    )
    for axes, metric in zip(panels, shown, strict=True):
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
        replicate = ceiling[ceiling["metric"] == metric]
        if len(replicate):
            axes.axhline(replicate["value"].mean(), color=PALETTE[CEILING], linestyle="--", linewidth=1.2)
            if replicate[["ci_low", "ci_high"]].notna().all(axis=None):
                axes.axhspan(replicate["ci_low"].min(), replicate["ci_high"].max(), color="0.85", zorder=0)
        for position, text in (marks or {}).items():
            axes.axhline(position, color="0.4", linestyle=":", linewidth=1)
            axes.annotate(
                text,
                (1.0, position),
                xycoords=("axes fraction", "data"),
                xytext=(-3, 2),
                textcoords="offset points",
                ha="right",
                va="bottom",
                color="0.3",
            )
        info = metric_info(metric)
        axes.set_title(info.label)
        axes.set_ylabel("higher is better" if info.higher_is_better else "lower is better")
        axes.set_xticks(range(len(categories)), categories, rotation=45, ha="right")
        axes.set_xlabel(x)
    legend_names = hues if hue else categories
    handles = [Patch(color=colors[name], label=str(name)) for name in legend_names]
    if len(ceiling):
        handles.append(Line2D([], [], color=PALETTE[CEILING], linestyle="--", label="noise ceiling"))
    figure_legend(figure, handles, title=hue or x)
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
    figure, ((axes,),) = new_figure(panel_size=(6.8, 5.2))
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
    axes.legend(title=" | ".join(keys), loc="best")
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
    figure, ((axes,),) = new_figure(panel_size=(6.8, 4.6))
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
            fontsize=ANNOTATION_SIZE,
            ha="left",
            va="top",
            color="0.3",
        )
    axes.set_xlabel(xlabel or x)
    axes.set_ylabel("metric value")
    axes.set_title(title)
    axes.legend(loc="lower right")
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
    # 1.5 in for the colour bar; from six groups on, the cells narrow to keep the figure in the column
    figure, ((axes,),) = new_figure(panel_size=(min(size + 1.5, MAX_WIDTH), size))
    label = metric_info(distances.attrs.get("metric", "e_distance")).label
    heatmap(axes, distances, colorbar_label=label, annotate=True)
    axes.set_xlabel("group")
    axes.set_ylabel("group")
    axes.set_title(title or "Energy distance between conditions and predictions")
    return figure


_REFERENCES = {"identity": "identity baseline", "mean_shift": "mean-shift baseline"}
"""The baselines of the normalised scores (suffix ``_norm_<name>``), and how a panel names them."""


def _cell_text(value: float) -> str:
    """A normalised score as it fits a heat-map cell: two decimals, none beyond ±10, "n/a" for NaN."""
    if not np.isfinite(value):
        return "n/a"
    value = value + 0.0  # -0.0 (a baseline against itself, lower-is-better) reads as 0.00
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"


@styled
def normalised_score_heatmap(
    results: pd.DataFrame,
    *,
    metrics: Sequence[str],
    models: Sequence[str] | None = None,
    limit: float = 1.0,
    title: str | None = None,
) -> Figure:
    """Baseline-normalised scores in two heat maps: against the identity baseline (top) and against the
    mean-shift baseline (bottom), a row per model and a column per metric.

    ``results`` is a tidy frame with the ``<metric>_norm_identity`` and ``<metric>_norm_mean_shift``
    rows of :func:`course_lib.metrics.evaluate` (or of
    :func:`course_lib.benchmark.with_normalised_scores`); ``metrics`` are the names of the metrics
    they normalise (``"e_distance"``, not ``"e_distance_norm_identity"``); ``models`` the rows (default:
    every model with such rows, in their order). Several rows of one model and metric (seeds, cell
    types) are averaged. Every cell shows its score: 0 is the baseline, 1 the noise ceiling, whatever
    the metric's direction. The colours are clipped at ±``limit``, so that one very poor score does
    not wash out the others; the number in the cell is not clipped. An undefined score is "n/a".
    """
    check_frame(results, ["model", "metric", "value"], what="results")
    if not metrics:
        raise ValueError("metrics must name at least one metric.")
    if not limit > 0:
        raise ValueError(f"limit must be positive, not {limit}.")
    names = {reference: [f"{metric}_norm_{reference}" for metric in metrics] for reference in _REFERENCES}
    wanted = [name for group in names.values() for name in group]
    absent = sorted(set(wanted) - set(results["metric"]))
    if absent:
        raise KeyError(
            f"results has no rows for metric(s) {absent}; score with the noise ceiling and both baselines "
            "(course_lib.metrics.evaluate) to get them."
        )
    rows = results[results["metric"].isin(wanted)]
    models = list(dict.fromkeys(rows["model"])) if models is None else list(models)
    means = rows.groupby(["model", "metric"], sort=False)["value"].mean().unstack("metric")
    height = 1.9 + 0.42 * len(models)
    figure, grid = new_figure(2, 1, panel_size=(MAX_WIDTH, height))
    for axes, (reference, columns) in zip(grid[:, 0], names.items(), strict=True):
        values = means.reindex(index=models, columns=columns).to_numpy(dtype=float)
        image = axes.imshow(
            np.clip(values, -limit, limit),
            cmap="PuOr",
            vmin=-limit,
            vmax=limit,
            aspect="auto",
            interpolation="nearest",
        )
        for (row, column), value in np.ndenumerate(values):
            dark = np.isfinite(value) and abs(value) > 0.6 * limit  # the ends of PuOr are dark
            axes.text(
                column,
                row,
                _cell_text(value),
                ha="center",
                va="center",
                color="white" if dark else "black",
                fontsize=ANNOTATION_SIZE,
            )
        axes.set_xticks(range(len(metrics)), metrics, rotation=35, ha="right")
        axes.set_yticks(range(len(models)), models)
        axes.set_xlabel("metric")
        axes.set_ylabel("model")
        axes.set_title(f"0 = {_REFERENCES[reference]}, 1 = noise ceiling")
    colorbar = figure.colorbar(image, ax=grid[:, 0].tolist(), extend="both", shrink=0.8)
    colorbar.set_label("normalised score")
    colorbar.ax.tick_params(labelsize=FONT_SIZES["ytick.labelsize"])
    figure.suptitle(title or "Scores between a baseline (0) and a replicate of the real cells (1)")
    return figure
