"""Figures of the course, one look for every chapter: one palette, titles, axis labels and legends.

Every function returns a :class:`matplotlib.figure.Figure` that is not registered with pyplot: a
notebook shows it when it is the cell's last expression (or through ``display(fig)``), a script saves
it with ``fig.savefig(...)``, and building many figures in a loop leaks nothing. No function calls
``plt.show()``.

Colours come from :data:`PALETTE`, colour-blind safe (Okabe-Ito for conditions and models, neutral
greys for the baselines); names it does not know get :data:`FALLBACK_COLORS` (Paul Tol's muted
scheme) in order, see :func:`colors_for`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from course_lib import metrics as _metrics
from course_lib.metrics import _expressions, _group_expressions

#: Colour of each condition and model, the same in every chapter (Okabe-Ito; greys for baselines).
PALETTE: dict[str, str] = {
    "control": "#0072B2",
    "stimulated": "#D55E00",
    "predicted": "#009E73",
    "scgen": "#E69F00",
    "scpram": "#CC79A7",
    "identity": "#A0A0A0",
    "mean_shift": "#404040",
}

#: Colours for names outside :data:`PALETTE` (model variants, loss components), in this order.
FALLBACK_COLORS: tuple[str, ...] = (
    "#882255",
    "#117733",
    "#332288",
    "#999933",
    "#44AA99",
    "#AA4499",
    "#DDCC77",
    "#88CCEE",
    "#CC6677",
)


def colors_for(names: Iterable[str]) -> dict[str, str]:
    """Colour of each name: its :data:`PALETTE` entry, else the next unused :data:`FALLBACK_COLORS` one.

    Fallback colours go to unknown names in their order of appearance, skipping colours that a known
    name of the same call already uses, and cycle when they run out.
    """
    names = list(dict.fromkeys(names))
    taken = {PALETTE[name] for name in names if name in PALETTE}
    spare = [color for color in FALLBACK_COLORS if color not in taken] or list(FALLBACK_COLORS)
    unknown = [name for name in names if name not in PALETTE]
    colors = {name: spare[i % len(spare)] for i, name in enumerate(unknown)}
    return {name: PALETTE.get(name, colors.get(name)) for name in names}


def _figure(
    n_rows: int = 1, n_cols: int = 1, *, panel_size: tuple[float, float]
) -> tuple[Figure, np.ndarray]:
    """A figure outside pyplot, with an Agg canvas and a (rows x columns) array of axes."""
    figure = Figure(figsize=(panel_size[0] * n_cols, panel_size[1] * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(n_rows, n_cols, squeeze=False)


def _with_direction(text: str, info=None, *, separator: str = " ") -> str:
    """``text`` plus "(higher is better)" or "(lower is better)" for the metric ``text`` (or ``info``)."""
    info = info or _metrics.metric_info(text)
    return f"{text}{separator}({'higher' if info.higher_is_better else 'lower'} is better)"


def _whisker(center: float, low: float, high: float) -> np.ndarray | None:
    """Error-bar extents ``[[center - low], [high - center]]`` (None where the interval is missing).

    Clipped at 0: a skewed bootstrap's mean can lie just outside its percentile interval.
    """
    if not np.isfinite([low, high]).all():
        return None
    return np.maximum([[center - low], [high - center]], 0.0)


def _check_frame(frame: pd.DataFrame, columns: Sequence[str], *, what: str) -> None:
    if frame.empty:
        raise ValueError(f"{what} is empty.")
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise KeyError(f"{what} has no column {missing}; columns present: {list(frame.columns)}.")


# ---------------------------------------------------------------------------------------------
# Mean-expression scatter
# ---------------------------------------------------------------------------------------------

_LABEL_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]


def _place_label(axes: Axes, point: tuple[float, float], text: str, placed: list[Bbox]):
    """Annotate ``point`` at the first of 24 offsets where the text lies inside the axes and overlaps
    none of the ``placed`` boxes (to which its box is added); None, and no label, where none fits."""
    renderer = axes.figure.canvas.get_renderer()
    inside = axes.get_window_extent(renderer)
    for distance in (6, 18, 32):
        for dx, dy in _LABEL_DIRECTIONS:
            annotation = axes.annotate(
                text,
                point,
                xytext=(dx * distance, dy * distance),
                textcoords="offset points",
                ha={1: "left", -1: "right", 0: "center"}[dx],
                va={1: "bottom", -1: "top", 0: "center"}[dy],
                fontsize=8,
                arrowprops={"arrowstyle": "-", "color": "0.3", "lw": 0.5},
            )
            annotation.update_positions(renderer)
            box = Text.get_window_extent(annotation, renderer).padded(1.0)  # the text, not the arrow
            fits = inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
            if fits and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                return annotation
            annotation.remove()
    return None


def _label_points(axes: Axes, x: np.ndarray, y: np.ndarray, texts: Sequence[str]) -> list:
    """Label points without overlaps (with each other and the legend), the first text first; a label
    that fits nowhere is dropped. The layout is settled and then frozen first, so the boxes measured
    are the boxes drawn.
    """
    axes.figure.canvas.draw()
    axes.figure.set_layout_engine("none")
    legend = axes.get_legend()
    placed: list[Bbox] = [legend.get_window_extent()] if legend else []
    annotations = [
        _place_label(axes, point, text, placed)
        for point, text in zip(zip(x, y, strict=True), texts, strict=True)
    ]
    return [annotation for annotation in annotations if annotation is not None]


def mean_expression_scatter(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    pred: ad.AnnData,
    *,
    model: str = "predicted",
    degs: Sequence[str] | None = None,
    n_top_degs: int = 100,
    n_labels: int = 10,
    r2_kind: Literal["cod", "pearson2"] = "cod",
) -> Figure:
    """Per-gene mean expression, predicted against real stimulated: one point per gene.

    Draws the diagonal ŷ = y, the least-squares line ŷ = a y + b, the top DEGs of stim vs ctrl
    highlighted (``degs``, or :func:`course_lib.metrics.top_degs` with ``n_top_degs``), and labels the
    ``n_labels`` most responsive genes (largest |y − c|, c the control mean) wherever a label fits
    without overlapping another. The title gives :func:`course_lib.metrics.r2_score` of ``r2_kind``
    on all genes and on the DEGs.
    """
    matrices = _expressions({"ctrl": ctrl, "stim": stim, "pred": pred})
    c, y, y_hat = (matrix.mean(axis=0, dtype=np.float64) for matrix in matrices.values())
    degs = _metrics.top_degs(stim, ctrl, n_top=n_top_degs) if degs is None else pd.Index(degs)
    deg_positions = stim.var_names.get_indexer(degs)
    if (deg_positions < 0).any():
        raise KeyError(f"degs holds genes that are not in var_names: {list(degs[deg_positions < 0][:5])}.")
    r2_name = "r2_pearson2_mean" if r2_kind == "pearson2" else "r2_mean"
    r2_all = _metrics.r2_score(y, y_hat, kind=r2_kind)
    r2_degs = _metrics.r2_score(y[deg_positions], y_hat[deg_positions], kind=r2_kind)
    slope, intercept = np.polyfit(y, y_hat, deg=1)

    figure, ((axes,),) = _figure(panel_size=(6.0, 5.5))
    color = colors_for([model])[model]
    axes.scatter(y, y_hat, s=8, color=color, alpha=0.5, linewidths=0, label="gene", rasterized=True)
    axes.scatter(
        y[deg_positions],
        y_hat[deg_positions],
        s=22,
        facecolors=color,
        edgecolors="black",
        linewidths=0.6,
        label=f"top {len(deg_positions)} DEG (stimulated vs control)",
    )
    low, high = min(y.min(), y_hat.min()), max(y.max(), y_hat.max())
    span = np.array([low, high])
    axes.plot(span, span, color="black", linestyle="--", linewidth=1, label="ŷ = y")
    axes.plot(
        span,
        slope * span + intercept,
        color=color,
        linewidth=1.5,
        label=f"fit: ŷ = {slope:.2f} y + {intercept:.2f}",
    )
    margin = 0.05 * (high - low)
    axes.set(xlim=(low - margin, high + margin), ylim=(low - margin, high + margin))
    axes.set_xlabel("mean expression, real stimulated (log-normalised)")
    axes.set_ylabel(f"mean expression, {model} (log-normalised)")
    label = _metrics.metric_info(f"{r2_name}_all").label.removesuffix(" (all genes)")
    axes.set_title(
        f"{model}: {label} = {r2_all:.3f} (all genes), {r2_degs:.3f} (top {len(deg_positions)} DEGs)"
    )
    axes.legend(loc="upper left", fontsize=8)
    responsive = np.argsort(-np.abs(y - c), kind="stable")[:n_labels]
    _label_points(axes, y[responsive], y_hat[responsive], list(stim.var_names[responsive]))
    return figure


# ---------------------------------------------------------------------------------------------
# Heat maps: energy distances and attention
# ---------------------------------------------------------------------------------------------


def _heatmap(
    axes: Axes, values: pd.DataFrame, *, colorbar_label: str, annotate: bool, fmt: str = "{:.2f}"
) -> None:
    """Draw ``values`` as an image with its row and column names, a colour bar and, optionally, the
    numbers (formatted with ``fmt``) in the cells."""
    image = axes.imshow(values.to_numpy(dtype=float), cmap="viridis", aspect="auto", interpolation="nearest")
    axes.set_xticks(range(values.shape[1]), values.columns, rotation=45, ha="right")
    if annotate:
        axes.set_yticks(range(values.shape[0]), values.index)
        middle = np.nanmean([np.nanmin(values.to_numpy()), np.nanmax(values.to_numpy())])
        for (row, column), value in np.ndenumerate(values.to_numpy(dtype=float)):
            color = "white" if value < middle else "black"  # viridis is dark at the low end
            axes.text(column, row, fmt.format(value), ha="center", va="center", color=color, fontsize=8)
    else:
        axes.set_yticks([])
    axes.figure.colorbar(image, ax=axes, label=colorbar_label)


def energy_distance_heatmap(distances: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Heat map of the energy distances between ctrl, stim and each prediction.

    ``distances`` is the square frame of :func:`course_lib.metrics.energy_distances`; the colour bar
    names the variant recorded in its ``attrs["metric"]``.
    """
    if distances.empty or list(distances.index) != list(distances.columns):
        raise ValueError("distances must be a non-empty square frame with the same rows and columns.")
    size = 1.2 + 0.75 * len(distances)
    figure, ((axes,),) = _figure(panel_size=(size + 1.5, size))
    label = _metrics.metric_info(distances.attrs.get("metric", "e_distance")).label
    _heatmap(axes, distances, colorbar_label=label, annotate=True)
    axes.set_xlabel("group")
    axes.set_ylabel("group")
    axes.set_title(title or "Energy distance between conditions and predictions")
    return figure


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
    _check_frame(attention, [], what="attention")
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
    figure, ((axes,),) = _figure(panel_size=(1.5 + 0.6 * attention.shape[1] + 1.5, 4.5))
    _heatmap(axes, values, colorbar_label=colorbar_label, annotate=groups is not None)
    axes.set_xlabel("reference cell type")
    axes.set_ylabel(row_label)
    axes.set_title(title)
    return figure


# ---------------------------------------------------------------------------------------------
# DEG dot plot and embeddings
# ---------------------------------------------------------------------------------------------


def deg_dotplot(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: ad.AnnData | Mapping[str, ad.AnnData],
    *,
    genes: Sequence[str] | None = None,
    n_genes: int = 20,
    ctrl_key: str = "control",
    stim_key: str = "stimulated",
    pred_key: str = "predicted",
) -> Figure:
    """Dot plot of the top DEGs across control, stimulated and each prediction.

    Columns are ``genes`` (default: the ``n_genes`` top up-regulated DEGs of stim vs ctrl, see
    :func:`course_lib.metrics.top_degs`); rows are the groups. A dot's area is the fraction of the
    group's cells with expression above 0, its colour the group's mean expression (one scale for all).
    """
    matrices = _group_expressions(
        ctrl, stim, predictions, ctrl_key=ctrl_key, stim_key=stim_key, pred_key=pred_key
    )
    genes = _metrics.top_degs(stim, ctrl, n_top=n_genes) if genes is None else pd.Index(genes)
    positions = ctrl.var_names.get_indexer(genes)
    if (positions < 0).any() or len(genes) == 0:
        raise KeyError(
            f"genes must be non-empty and in var_names; not found: {list(genes[positions < 0][:5])}."
        )
    names = list(matrices)
    means = np.array([matrices[name][:, positions].mean(axis=0) for name in names])
    fractions = np.array([(matrices[name][:, positions] > 0).mean(axis=0) for name in names])

    figure, ((axes,),) = _figure(panel_size=(2.5 + 0.35 * len(genes), 1.8 + 0.45 * len(names)))
    columns, rows = np.meshgrid(np.arange(len(genes)), np.arange(len(names)))
    dots = axes.scatter(
        columns.ravel(), rows.ravel(), s=180 * fractions.ravel(), c=means.ravel(), cmap="viridis"
    )
    figure.colorbar(dots, ax=axes, label="mean expression (log-normalised)", shrink=0.8)
    sizes = [0.25, 0.5, 0.75, 1.0]
    handles = [
        Line2D([], [], marker="o", linestyle="", color="0.4", markersize=np.sqrt(180 * f)) for f in sizes
    ]
    axes.legend(
        handles,
        [f"{f:.0%}" for f in sizes],
        title="cells > 0",
        loc="upper left",
        bbox_to_anchor=(1.0, -0.05),
        fontsize=8,
        frameon=False,
    )
    axes.set_xticks(range(len(genes)), genes, rotation=90)
    axes.set_yticks(range(len(names)), names)
    axes.set(xlim=(-0.7, len(genes) - 0.3), ylim=(len(names) - 0.5, -0.5))
    axes.set_xlabel("gene")
    axes.set_ylabel("condition or model")
    axes.set_title(f"Top {len(genes)} DEGs (stimulated vs control) across conditions and predictions")
    return figure


def _umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def embedding_plot(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: ad.AnnData | Mapping[str, ad.AnnData],
    *,
    methods: Sequence[str] = ("pca", "umap"),
    n_components: int = 30,
    max_cells: int = 500,
    seed: int = 0,
    ctrl_key: str = "control",
    stim_key: str = "stimulated",
    pred_key: str = "predicted",
) -> Figure:
    """Control, stimulated and predicted cells in a PCA (and a UMAP) of the control + stimulated cells.

    The PCA is fitted on ctrl + stim only (:func:`course_lib.metrics.pca_embedding`), the space
    in which the energy distance is measured. The UMAP (when umap-learn is installed; otherwise it is
    skipped with a warning) is computed on the PCA coordinates of all plotted cells together. Each
    group is subsampled to ``max_cells`` cells (seeded). One row of panels per method, one column per
    model, each panel showing ctrl, stim and that model's prediction.
    """
    unknown = set(methods) - {"pca", "umap"}
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of ('pca', 'umap'), not {tuple(methods)}.")
    if "umap" in methods and not _umap_available():
        warnings.warn("umap-learn is not installed; showing the PCA only.", stacklevel=2)
        methods = [method for method in methods if method != "umap"] or ["pca"]
    points, pca = _metrics.pca_embedding(
        ctrl,
        stim,
        predictions,
        n_components=n_components,
        max_cells=max_cells,
        seed=seed,
        ctrl_key=ctrl_key,
        stim_key=stim_key,
        pred_key=pred_key,
    )
    ratios = pca.explained_variance_ratio_
    embeddings = {"pca": (points, [f"PC{i + 1} ({ratios[i]:.1%} of variance)" for i in range(2)])}
    if "umap" in methods:
        import umap

        stacked = umap.UMAP(random_state=seed, n_jobs=1).fit_transform(np.concatenate(list(points.values())))
        bounds = np.cumsum([0, *(len(group) for group in points.values())])
        split = {name: stacked[bounds[i] : bounds[i + 1]] for i, name in enumerate(points)}
        embeddings["umap"] = (split, ["UMAP1", "UMAP2"])

    models = [name for name in points if name not in (ctrl_key, stim_key)]
    colors = colors_for(points)
    figure, grid = _figure(len(methods), len(models), panel_size=(4.2, 4.0))
    for row, method in enumerate(methods):
        coordinates, axis_labels = embeddings[method]
        for column, model in enumerate(models):
            axes = grid[row, column]
            for name in (ctrl_key, stim_key, model):
                x = coordinates[name]
                axes.scatter(
                    x[:, 0], x[:, 1], s=5, alpha=0.6, color=colors[name], linewidths=0, rasterized=True
                )
            axes.set_xlabel(axis_labels[0])
            axes.set_ylabel(axis_labels[1])
            axes.set_title(f"{model}, {method.upper()}")
    handles = [Patch(color=colors[name], label=name) for name in points]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), title="cells")
    figure.suptitle(f"Cells in the PCA of {ctrl_key} + {stim_key} (at most {max_cells} per group)")
    return figure


# ---------------------------------------------------------------------------------------------
# Metric bars and training history
# ---------------------------------------------------------------------------------------------


def _bar_statistics(rows: pd.DataFrame) -> tuple[float, float, float]:
    """Bar height and whisker ends: one row's value and interval, or several rows' mean and range."""
    if len(rows) == 1:
        row = rows.iloc[0]
        return row["value"], row["ci_low"], row["ci_high"]
    return rows["value"].mean(), rows["value"].min(), rows["value"].max()


def metric_bars(
    results: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    x: str = "model",
    hue: str | None = None,
    n_cols: int = 3,
) -> Figure:
    """Bars of metrics across models (or variants), one panel per metric, with interval whiskers.

    ``results`` is a tidy frame like the one of :func:`course_lib.metrics.evaluate` (columns
    ``metric``, ``value``, ``ci_low``, ``ci_high``, ``x`` and ``hue``). A bar made of one row shows
    its value with its bootstrap interval (no whisker where the interval is NaN); a bar made of
    several rows (seeds, cell types) shows their mean, a whisker over their range and each row as a
    dot. Bars are coloured by ``hue`` when given, else by ``x``, with :func:`colors_for`.
    """
    columns = ["metric", "value", "ci_low", "ci_high", x] + ([hue] if hue else [])
    _check_frame(results, columns, what="results")
    shown = list(dict.fromkeys(results["metric"])) if metrics is None else list(metrics)
    absent = sorted(set(shown) - set(results["metric"]))
    if absent:
        raise KeyError(f"results has no rows for metric(s) {absent}.")
    categories = list(dict.fromkeys(results[x]))
    hues = list(dict.fromkeys(results[hue])) if hue else [None]
    colors = colors_for(hues if hue else categories)
    width = 0.8 / len(hues)

    n_rows = -(-len(shown) // n_cols)
    figure, grid = _figure(
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
                whisker = _whisker(height, low, high)
                if whisker is not None:
                    axes.errorbar(center, height, yerr=whisker, color="black", capsize=3)
                if len(selected) > 1:
                    axes.scatter(
                        np.full(len(selected), center), selected["value"], s=10, color="black", zorder=3
                    )
        info = _metrics.metric_info(metric)
        axes.set_title(info.label, fontsize=9)
        axes.set_ylabel(_with_direction(metric), fontsize=8)
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


def training_history(history: pd.DataFrame, *, model: str | None = None, log_y: bool = False) -> Figure:
    """Training and validation loss per epoch; other numeric columns (loss components) in a second panel.

    ``history`` has columns ``epoch``, ``train_loss`` and ``val_loss`` (NaN without a validation
    split, in which case only the training curve is drawn), as the course's models record it.
    """
    _check_frame(history, ["epoch", "train_loss", "val_loss"], what="history")
    components = [
        column
        for column in history.select_dtypes("number").columns
        if column not in ("epoch", "train_loss", "val_loss")
    ]
    figure, grid = _figure(1, 2 if components else 1, panel_size=(5.0, 3.8))
    color = colors_for([model])[model] if model else PALETTE["predicted"]
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


# ---------------------------------------------------------------------------------------------
# Metrics against each other: two metrics per model, metric curves, intervals per data variant
# ---------------------------------------------------------------------------------------------

_MARKERS = ("o", "s", "^", "D", "v", "P")


def metric_scatter(
    results: pd.DataFrame,
    *,
    x_metric: str,
    y_metric: str,
    hue: str = "model",
    marker: str | None = None,
    title: str | None = None,
) -> Figure:
    """One point per ``hue`` (and ``marker``) group: its ``x_metric`` against its ``y_metric``.

    ``results`` is tidy like :func:`course_lib.metrics.evaluate`'s frame. A group of one row shows its
    value with its bootstrap interval as whiskers; a group of several rows (seeds, cell types) shows
    their mean with whiskers over their range, as in :func:`metric_bars`.
    """
    columns = ["metric", "value", "ci_low", "ci_high", hue] + ([marker] if marker else [])
    _check_frame(results, columns, what="results")
    absent = sorted({x_metric, y_metric} - set(results["metric"]))
    if absent:
        raise KeyError(f"results has no rows for metric(s) {absent}.")
    keys = [hue] + ([marker] if marker else [])
    colors = colors_for(dict.fromkeys(results[hue]))
    markers = (
        {value: _MARKERS[i % len(_MARKERS)] for i, value in enumerate(dict.fromkeys(results[marker]))}
        if marker
        else {}
    )
    figure, ((axes,),) = _figure(panel_size=(6.0, 4.8))
    for group, rows in results.groupby(keys, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        (x, x_low, x_high), (y, y_low, y_high) = (
            _bar_statistics(rows[rows["metric"] == name]) for name in (x_metric, y_metric)
        )
        label = " | ".join(str(value) for value in group)
        axes.errorbar(
            x,
            y,
            xerr=_whisker(x, x_low, x_high),
            yerr=_whisker(y, y_low, y_high),
            fmt=markers.get(group[-1], "o"),
            color=colors[group[0]],
            markersize=8,
            capsize=3,
            label=label,
        )
    x_info, y_info = _metrics.metric_info(x_metric), _metrics.metric_info(y_metric)
    axes.set_xlabel(_with_direction(x_info.label, x_info))
    axes.set_ylabel(_with_direction(y_info.label, y_info))
    axes.set_title(title or f"{y_info.label} against {x_info.label}")
    axes.legend(fontsize=8, title=" | ".join(keys), loc="best")
    return figure


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
    _check_frame(scores, [x, "metric", "value"], what="scores")
    names = list(dict.fromkeys(scores["metric"]))
    colors = colors_for(names)
    figure, ((axes,),) = _figure(panel_size=(6.5, 4.2))
    for name in names:
        rows = scores[scores["metric"] == name].sort_values(x)
        axes.plot(
            rows[x], rows["value"], color=colors[name], linewidth=2, label=_metrics.metric_info(name).label
        )
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


def interval_dots(
    summary: pd.DataFrame,
    *,
    metric: str,
    panel: str = "model",
    row: str = "cell_type",
    hue: str = "variant",
    title: str | None = None,
) -> Figure:
    """Means with intervals, one panel per ``panel`` value, one line per ``row``, one dot per ``hue``.

    ``summary`` has columns ``metric``, ``mean``, ``ci_low`` and ``ci_high`` (for instance the frame of
    :func:`course_lib.benchmark.seed_intervals`), and the ``panel``, ``row`` and ``hue`` columns.
    Horizontal whiskers show the interval (none where it is NaN, e.g. for a single seed).
    """
    _check_frame(summary, ["metric", "mean", "ci_low", "ci_high", panel, row, hue], what="summary")
    rows = summary[summary["metric"] == metric]
    if rows.empty:
        raise KeyError(f"summary has no rows for metric {metric!r}.")
    panels, labels, hues = (list(dict.fromkeys(rows[column])) for column in (panel, row, hue))
    colors = colors_for(hues)
    offsets = {value: (i - (len(hues) - 1) / 2) * 0.25 for i, value in enumerate(hues)}
    figure, grid = _figure(1, len(panels), panel_size=(3.2, 1.4 + 0.45 * len(labels)))
    info = _metrics.metric_info(metric)
    for axes, name in zip(grid.ravel(), panels, strict=True):
        for item in rows[rows[panel] == name].itertuples(index=False):
            record = item._asdict()
            y = labels.index(record[row]) + offsets[record[hue]]
            axes.errorbar(
                record["mean"],
                y,
                xerr=_whisker(record["mean"], record["ci_low"], record["ci_high"]),
                fmt=_MARKERS[hues.index(record[hue])],
                color=colors[record[hue]],
                capsize=3,
            )
        axes.set_yticks(range(len(labels)), labels)
        axes.set(ylim=(len(labels) - 0.5, -0.5))
        axes.set_xlabel(_with_direction(metric), fontsize=8)
        axes.set_ylabel(row if axes is grid[0, 0] else "")
        axes.set_title(str(name))
    figure.legend(
        handles=[
            Line2D([], [], marker=_MARKERS[i], linestyle="", color=colors[value], label=str(value))
            for i, value in enumerate(hues)
        ],
        loc="outside lower center",
        ncols=len(hues),
        title=hue,
    )
    figure.suptitle(title or f"{info.label}: mean and interval per {panel}, {row} and {hue}")
    return figure


# ---------------------------------------------------------------------------------------------
# Benchmark summary: every held-out cell type, every model, intervals over seeds
# ---------------------------------------------------------------------------------------------


def benchmark_summary(
    results: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("delta_pearson_top100", "e_distance"),
    variant: str = "balanced",
    confidence: float = 0.95,
    title: str | None = None,
) -> Figure:
    """A benchmark in one figure: one panel per metric, held-out cell types along x, one marker per model.

    ``results`` is a benchmark table (:func:`course_lib.benchmark.run_benchmark` or
    :func:`~course_lib.benchmark.load_results`); only rows of ``variant`` are shown. A marker is the
    mean over seeds, its whisker the t interval of :func:`course_lib.benchmark.seed_intervals` (none for
    a single seed) and the small dots the single seeds. Models keep their :data:`PALETTE` colours,
    baselines first; cell types keep their order in ``results``.
    """
    from course_lib.benchmark import seed_intervals  # benchmark imports the models lazily; keep it lazy too

    _check_frame(results, ["model", "cell_type", "variant", "seed", "metric", "value"], what="results")
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
    colors = colors_for(models)
    offsets = {model: (i - (len(models) - 1) / 2) * 0.8 / len(models) for i, model in enumerate(models)}
    figure, grid = _figure(len(metrics), 1, panel_size=(1.6 + 1.2 * len(cell_types), 3.2))
    for axes, metric in zip(grid[:, 0], metrics, strict=True):
        for model in models:
            means = summary[(summary["metric"] == metric) & (summary["model"] == model)]
            x = np.array([cell_types.index(t) for t in means["cell_type"]]) + offsets[model]
            whiskers = np.maximum([means["mean"] - means["ci_low"], means["ci_high"] - means["mean"]], 0.0)
            axes.errorbar(
                x,
                means["mean"],
                yerr=np.nan_to_num(whiskers),
                fmt=_MARKERS[models.index(model) % len(_MARKERS)],
                color=colors[model],
                capsize=3,
                label=model,
            )
            seeds = rows[(rows["metric"] == metric) & (rows["model"] == model)]
            seed_x = np.array([cell_types.index(t) for t in seeds["cell_type"]]) + offsets[model]
            axes.scatter(seed_x, seeds["value"], s=8, color=colors[model], alpha=0.5, linewidths=0)
        info = _metrics.metric_info(metric)
        n_seeds = summary.loc[summary["metric"] == metric, "n_seeds"]
        axes.set_title(f"{info.label} ({n_seeds.min()} to {n_seeds.max()} seeds per marker)", fontsize=10)
        axes.set_ylabel(_with_direction(metric, separator="\n"), fontsize=9)
        axes.set_xticks(range(len(cell_types)), cell_types, rotation=20, ha="right")
        axes.set_xlabel("held-out cell type")
    figure.legend(
        handles=[
            Line2D([], [], marker=_MARKERS[i % len(_MARKERS)], linestyle="", color=colors[m], label=m)
            for i, m in enumerate(models)
        ],
        loc="outside lower center",
        ncols=len(models),
        title="model",
    )
    default_title = f"Every held-out cell type ({variant}): mean over seeds, {confidence:.0%} t interval"
    figure.suptitle(title or default_title)
    return figure
