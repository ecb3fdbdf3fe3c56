"""Figures of expression: gene means predicted against real, the top DEGs across groups, and cells in
the PCA (and a UMAP) of the real cells."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from course_lib.keys import DEFAULT_KEYS, ObsKeys
from course_lib.metrics import (
    checked_expressions,
    group_expressions,
    metric_info,
    pca_embedding,
    r2_score,
    top_degs,
)
from course_lib.plotting.style import (
    colors_for,
    figure_legend,
    label_points,
    new_figure,
    panel_grid,
    styled,
)


@styled
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
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Per-gene mean expression, predicted against real stimulated: one point per gene.

    Draws the diagonal ŷ = y, the least-squares line ŷ = a y + b, the top DEGs of stim vs ctrl
    highlighted (``degs``, or :func:`course_lib.metrics.top_degs` with ``n_top_degs``), and labels the
    ``n_labels`` most responsive genes (largest ``|y − c|``, c the control mean) wherever a label fits
    without overlapping another. The title gives :func:`course_lib.metrics.r2_score` of ``r2_kind``
    on all genes and on the DEGs.
    """
    matrices = checked_expressions({"ctrl": ctrl, "stim": stim}, {"pred": pred})
    c, y, y_hat = (matrix.mean(axis=0, dtype=np.float64) for matrix in matrices.values())
    degs = top_degs(stim, ctrl, n_top=n_top_degs) if degs is None else pd.Index(degs)
    deg_positions = stim.var_names.get_indexer(degs)
    if (deg_positions < 0).any():
        raise KeyError(f"degs holds genes that are not in var_names: {list(degs[deg_positions < 0][:5])}.")
    r2_name = "r2_pearson2_mean" if r2_kind == "pearson2" else "r2_mean"
    r2_all = r2_score(y, y_hat, kind=r2_kind)
    r2_degs = r2_score(y[deg_positions], y_hat[deg_positions], kind=r2_kind)
    slope, intercept = np.polyfit(y, y_hat, deg=1)

    figure, ((axes,),) = new_figure(panel_size=(6.8, 6.2))
    color = colors_for([model], colors=colors)[model]
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
    label = metric_info(f"{r2_name}_all").label.removesuffix(" (all genes)")
    axes.set_title(
        f"{model}: {label} = {r2_all:.3f} (all genes), {r2_degs:.3f} (top {len(deg_positions)} DEGs)"
    )
    axes.legend(loc="upper left")
    responsive = np.argsort(-np.abs(y - c), kind="stable")[:n_labels]
    label_points(axes, y[responsive], y_hat[responsive], list(stim.var_names[responsive]))
    return figure


@styled
def deg_dotplot(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: ad.AnnData | Mapping[str, ad.AnnData],
    *,
    genes: Sequence[str] | None = None,
    n_genes: int = 20,
    keys: ObsKeys = DEFAULT_KEYS,
) -> Figure:
    """Dot plot of the top DEGs across control, stimulated and each prediction.

    Columns are ``genes`` (default: the ``n_genes`` top up-regulated DEGs of stim vs ctrl, see
    :func:`course_lib.metrics.top_degs`); rows are the groups. A dot's area is the fraction of the
    group's cells with expression above 0, its colour the group's mean expression (one scale for all).
    """
    matrices = group_expressions(
        ctrl, stim, predictions, names=(keys.control, keys.stimulated, keys.predicted)
    )
    genes = top_degs(stim, ctrl, n_top=n_genes) if genes is None else pd.Index(genes)
    positions = ctrl.var_names.get_indexer(genes)
    if (positions < 0).any() or len(genes) == 0:
        raise KeyError(
            f"genes must be non-empty and in var_names; not found: {list(genes[positions < 0][:5])}."
        )
    names = list(matrices)
    means = np.array([matrices[name][:, positions].mean(axis=0) for name in names])
    fractions = np.array([(matrices[name][:, positions] > 0).mean(axis=0) for name in names])

    figure, ((axes,),) = new_figure(panel_size=(2.4 + 0.22 * len(genes), 2.2 + 0.45 * len(names)))
    columns, rows = np.meshgrid(np.arange(len(genes)), np.arange(len(names)))
    dots = axes.scatter(
        columns.ravel(), rows.ravel(), s=180 * fractions.ravel(), c=means.ravel(), cmap="viridis"
    )
    figure.colorbar(dots, ax=axes, label="mean expression\n(log-normalised)")
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
        frameon=False,
    )
    axes.set_xticks(range(len(genes)), genes, rotation=90)
    axes.set_yticks(range(len(names)), names)
    axes.set(xlim=(-0.7, len(genes) - 0.3), ylim=(len(names) - 0.5, -0.5))
    axes.set_xlabel("gene")
    axes.set_ylabel("condition or model")
    axes.set_title(f"Top {len(genes)} DEGs, stimulated vs control")
    return figure


def _umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


@styled
def embedding_plot(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: ad.AnnData | Mapping[str, ad.AnnData],
    *,
    methods: Sequence[str] = ("pca", "umap"),
    n_components: int = 30,
    max_cells: int = 500,
    seed: int = 0,
    colors: Mapping[str, str] | None = None,
    keys: ObsKeys = DEFAULT_KEYS,
) -> Figure:
    """Control, stimulated and predicted cells in a PCA (and a UMAP) of the control + stimulated cells.

    The PCA is fitted on ctrl + stim only (:func:`course_lib.metrics.pca_embedding`), the space
    in which the energy distance is measured. The UMAP (when umap-learn is installed; otherwise it is
    skipped with a warning) is computed on the PCA coordinates of all plotted cells together. Each
    group is subsampled to ``max_cells`` cells (seeded). One row of panels per model, one column per
    method, each panel showing ctrl, stim and that model's prediction.
    """
    unknown = set(methods) - {"pca", "umap"}
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of ('pca', 'umap'), not {tuple(methods)}.")
    if "umap" in methods and not _umap_available():
        warnings.warn("umap-learn is not installed; showing the PCA only.", stacklevel=2)
        methods = [method for method in methods if method != "umap"] or ["pca"]
    points, pca = pca_embedding(
        ctrl,
        stim,
        predictions,
        n_components=n_components,
        max_cells=max_cells,
        seed=seed,
        keys=keys,
    )
    ratios = pca.explained_variance_ratio_
    embeddings = {"pca": (points, [f"PC{i + 1} ({ratios[i]:.1%} of variance)" for i in range(2)])}
    if "umap" in methods:
        import umap

        stacked = umap.UMAP(random_state=seed, n_jobs=1).fit_transform(np.concatenate(list(points.values())))
        bounds = np.cumsum([0, *(len(group) for group in points.values())])
        split = {name: stacked[bounds[i] : bounds[i + 1]] for i, name in enumerate(points)}
        embeddings["umap"] = (split, ["UMAP1", "UMAP2"])

    models = [name for name in points if name not in (keys.control, keys.stimulated)]
    colors = colors_for(points, colors=colors)
    figure, grid = new_figure(len(models), len(methods), panel_size=(3.4, 3.3))
    for column, method in enumerate(methods):
        coordinates, axis_labels = embeddings[method]
        for row, model in enumerate(models):
            axes = grid[row, column]
            for name in (keys.control, keys.stimulated, model):
                x = coordinates[name]
                axes.scatter(
                    x[:, 0], x[:, 1], s=5, alpha=0.6, color=colors[name], linewidths=0, rasterized=True
                )
            axes.set_xlabel(axis_labels[0])
            axes.set_ylabel(axis_labels[1])
            axes.set_title(f"{model}, {method.upper()}")
    handles = [Patch(color=colors[name], label=name) for name in points]
    figure_legend(figure, handles, title="cells")
    figure.suptitle(f"Cells in the PCA of {keys.control} + {keys.stimulated} (at most {max_cells} per group)")
    return figure


@styled
def gene_distributions(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: ad.AnnData | Mapping[str, ad.AnnData],
    *,
    genes: Sequence[str],
    n_cols: int = 3,
    colors: Mapping[str, str] | None = None,
    keys: ObsKeys = DEFAULT_KEYS,
) -> Figure:
    """The expression of a few genes in every cell: one violin per group (real control, real stimulated,
    each prediction), one panel per gene.

    The figure a biologist looks at first: it shows whether a prediction moves the whole distribution
    of an interferon-stimulated gene, only its mean, or the wrong cells.
    """
    matrices = group_expressions(
        ctrl, stim, predictions, names=(keys.control, keys.stimulated, keys.predicted)
    )
    genes = list(genes)
    positions = ctrl.var_names.get_indexer(genes)
    if not genes or (positions < 0).any():
        missing = [gene for gene, position in zip(genes, positions, strict=True) if position < 0]
        raise KeyError(f"genes must be non-empty and in var_names; not found: {missing}.")
    names = list(matrices)
    palette = colors_for(names, colors=colors)
    figure, panels = panel_grid(len(genes), panel_size=(1.1 + 0.45 * len(names), 3.6), max_cols=n_cols)
    for axes, gene, position in zip(panels, genes, positions, strict=True):
        values = [matrices[name][:, position] for name in names]
        parts = axes.violinplot(values, showmedians=True, widths=0.8)
        for body, name in zip(parts["bodies"], names, strict=True):
            body.set_facecolor(palette[name])
            body.set_edgecolor("black")
            body.set_alpha(0.75)
        for line in ("cmedians", "cmins", "cmaxes", "cbars"):
            parts[line].set_color("black")
        axes.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right")
        axes.set_title(gene)
        axes.set_ylabel("expression (log-normalised)")
        axes.set_xlabel("cells")
    figure.suptitle("Expression per cell of selected genes (line: median)")
    return figure
