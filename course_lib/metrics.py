"""Metrics for predicted perturbation responses: one definition each, with its formula.

Every chapter computes its numbers with this module, so that each number in the course means the
same thing everywhere. Notation used in the docstrings, for one held-out cell type:

- ``ctrl``, ``stim`` and ``pred`` are the real control cells, the real stimulated cells and the
  predicted cells (AnnData with log-normalised expression in ``.X`` and the same genes);
- for gene ``g``, ``c_g``, ``y_g`` and ``ŷ_g`` are the mean expression of ctrl, stim and pred;
- a sum over ``g`` runs over the genes being scored (all genes, or the top DEGs).

Metric names
------------
:func:`evaluate` names each metric ``<statistic>_<genes>``, where ``<genes>`` is ``all`` (every gene)
or ``top<n>`` (the ``n`` most up-regulated genes of stim versus ctrl, Wilcoxon; ``n = 100`` by
default). Distribution metrics, which use all genes, have no suffix.

========================  ======================================================  =======
statistic                 definition                                              better
========================  ======================================================  =======
``r2_mean``               coefficient of determination of ŷ against y             higher
``r2_pearson2_mean``      squared Pearson r of ŷ and y (the papers' "R²")         higher
``mse_mean``              mean squared error of ŷ against y                       lower
``pearson_mean``          Pearson r of ŷ and y                                    higher
``delta_r2``              coefficient of determination of ŷ − c against y − c     higher
``delta_pearson``         Pearson r of ŷ − c and y − c                            higher
``deg_jaccard``           Jaccard index of the top DEGs of stim and of pred       higher
``deg_overlap``           number of top DEGs shared by stim and pred              higher
``e_distance``            energy distance in the ctrl + stim PCA (Euclidean)      lower
``e_distance_squared``    the same with squared distances                         lower
``mv_kde``                L1 distance of the per-gene (mean, variance) densities  lower
========================  ======================================================  =======

:data:`METRICS` holds a human-readable label and the better direction of every name that
:func:`evaluate` produces with its defaults; :func:`metric_info` answers for any ``top<n>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import anndata as ad
import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular
from scipy.spatial.distance import cdist, pdist
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from course_lib._validation import (
    as_dense,
    require_finite,
    require_log_normalised,
    require_nonempty,
    require_same_genes,
    require_value,
)

#: Columns of the frame that :func:`evaluate` returns, in order.
EVALUATE_COLUMNS = ("model", "cell_type", "metric", "value", "ci_low", "ci_high")


class MetricInfo(NamedTuple):
    """How to show a metric: a human-readable label and which direction is better."""

    label: str
    higher_is_better: bool


_MEAN_STATISTICS = {
    "r2_mean": MetricInfo("R² of means", True),
    "r2_pearson2_mean": MetricInfo("squared Pearson r of means", True),
    "mse_mean": MetricInfo("MSE of means", False),
    "pearson_mean": MetricInfo("Pearson r of means", True),
    "delta_r2": MetricInfo("R² of mean shifts from control", True),
    "delta_pearson": MetricInfo("Pearson r of mean shifts from control", True),
}
_DEG_STATISTICS = {
    "deg_jaccard": MetricInfo("Jaccard index of up-regulated DEGs", True),
    "deg_overlap": MetricInfo("shared up-regulated DEGs", True),
}
_DISTRIBUTION_METRICS = {
    "e_distance": MetricInfo("energy distance (PCA)", False),
    "e_distance_squared": MetricInfo("energy distance, squared (PCA)", False),
    "mv_kde": MetricInfo("mean-variance KDE distance", False),
}


def metric_info(name: str) -> MetricInfo:
    """Label and better direction of a metric name such as ``"r2_mean_top100"`` or ``"e_distance"``.

    Raises ``KeyError`` for a name outside the scheme described in the module docstring.
    """
    if name in _DISTRIBUTION_METRICS:
        return _DISTRIBUTION_METRICS[name]
    match = re.fullmatch(r"(?P<statistic>\w+?)_(?:(?P<all>all)|top(?P<n>[1-9]\d*))", name)
    statistic = match and match["statistic"]
    if statistic in _DEG_STATISTICS and match["n"]:
        info = _DEG_STATISTICS[statistic]
    elif statistic in _MEAN_STATISTICS:
        info = _MEAN_STATISTICS[statistic]
    else:
        raise KeyError(
            f"unknown metric name {name!r}; names are <statistic>_all or <statistic>_top<n> with a statistic "
            f"in {sorted(_MEAN_STATISTICS)}, deg_jaccard_top<n>, deg_overlap_top<n>, or one of "
            f"{sorted(_DISTRIBUTION_METRICS)}."
        )
    genes = "all genes" if match["all"] else f"top {match['n']} DEGs"
    return MetricInfo(f"{info.label} ({genes})", info.higher_is_better)


def _metric_names(n_top: int) -> list[str]:
    """Names of the gene-level metrics that :func:`evaluate` reports, in its order."""
    scopes = ("all", f"top{n_top}")
    mean_names = [f"{statistic}_{scope}" for scope in scopes for statistic in _MEAN_STATISTICS]
    return mean_names + [f"{statistic}_top{n_top}" for statistic in _DEG_STATISTICS]


#: Label and better direction of every metric name that :func:`evaluate` reports with its defaults.
METRICS: dict[str, MetricInfo] = {
    name: metric_info(name) for name in [*_metric_names(100), *_DISTRIBUTION_METRICS]
}


# ---------------------------------------------------------------------------------------------
# Scores of mean vectors (numpy arrays; the last axis is genes, leading axes are batches)
# ---------------------------------------------------------------------------------------------


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim == 0:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be arrays of one shape.")
    return y_true, y_pred


def _divide(numerator: np.ndarray, denominator: np.ndarray, *, where_zero: float) -> np.ndarray:
    """``numerator / denominator``, and ``where_zero`` where the denominator is 0; a scalar for 0-d input."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, where_zero)[()]


def pearson_r(y_true, y_pred) -> np.ndarray:
    """Pearson correlation along the last axis.

    r = Σ_g (y_g − ȳ)(ŷ_g − mean ŷ) / sqrt(Σ_g (y_g − ȳ)² · Σ_g (ŷ_g − mean ŷ)²).

    Defined as 0 when either vector is constant: a prediction that does not vary carries no linear
    signal (the identity baseline's zero mean shift, for instance). A float for 1-d input, an array
    of one value per leading index otherwise.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    true_centred = y_true - y_true.mean(axis=-1, keepdims=True)
    pred_centred = y_pred - y_pred.mean(axis=-1, keepdims=True)
    covariance = (true_centred * pred_centred).sum(axis=-1)
    scale = np.sqrt((true_centred**2).sum(axis=-1) * (pred_centred**2).sum(axis=-1))
    return np.clip(_divide(covariance, scale, where_zero=0.0), -1.0, 1.0)


def r2_score(y_true, y_pred, *, kind: Literal["cod", "pearson2"] = "cod") -> np.ndarray:
    """R² of ``y_pred`` against ``y_true`` along the last axis.

    ``kind="cod"``, the coefficient of determination:
    R² = 1 − Σ_g (y_g − ŷ_g)² / Σ_g (y_g − ȳ)²; it is 1 for a perfect prediction, 0 for predicting ȳ
    everywhere, negative for worse, and NaN when ``y_true`` is constant.

    ``kind="pearson2"``, the squared Pearson correlation that the scGen and scPRAM papers report as
    R²: R² = r(y, ŷ)². It ignores scale and offset, so it is never below the coefficient of
    determination of the best linear rescaling of ``y_pred``.
    """
    if kind == "pearson2":
        return pearson_r(y_true, y_pred) ** 2
    if kind != "cod":
        raise ValueError(f"kind must be 'cod' or 'pearson2', not {kind!r}.")
    y_true, y_pred = _pair(y_true, y_pred)
    residual = ((y_true - y_pred) ** 2).sum(axis=-1)
    total = ((y_true - y_true.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    return _divide(total - residual, total, where_zero=np.nan)


def mse(y_true, y_pred) -> np.ndarray:
    """Mean squared error along the last axis: MSE = (1/G) Σ_g (y_g − ŷ_g)² over the G genes."""
    y_true, y_pred = _pair(y_true, y_pred)
    return ((y_true - y_pred) ** 2).mean(axis=-1)


def _mean_based(ctrl_mean: np.ndarray, stim_mean: np.ndarray, pred_mean: np.ndarray) -> dict[str, np.ndarray]:
    """Every mean-based statistic (see the module docstring), batched over leading axes."""
    stim_shift, pred_shift = stim_mean - ctrl_mean, pred_mean - ctrl_mean
    return {
        "r2_mean": r2_score(stim_mean, pred_mean),
        "r2_pearson2_mean": r2_score(stim_mean, pred_mean, kind="pearson2"),
        "mse_mean": mse(stim_mean, pred_mean),
        "pearson_mean": pearson_r(stim_mean, pred_mean),
        "delta_r2": r2_score(stim_shift, pred_shift),
        "delta_pearson": pearson_r(stim_shift, pred_shift),
    }


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _check_inputs(inputs: Sequence[tuple[str, ad.AnnData]]) -> None:
    """Check every named AnnData: non-empty, the genes of the first, finite and log-normalised."""
    reference_name, reference = inputs[0]
    for name, adata in inputs:
        require_nonempty(adata, what=name)
        require_same_genes(adata, reference, what=name, reference_what=reference_name)
        require_finite(adata, what=name)
        require_log_normalised(adata, what=name)


def _expressions(inputs: Mapping[str, ad.AnnData]) -> dict[str, np.ndarray]:
    """Check the named AnnData objects (see ``_check_inputs``) and return their dense expression."""
    _check_inputs(list(inputs.items()))
    return {name: as_dense(adata.X) for name, adata in inputs.items()}


def _named_predictions(
    predictions: ad.AnnData | Mapping[str, ad.AnnData], pred_key: str
) -> dict[str, ad.AnnData]:
    """A mapping model name -> prediction; a single AnnData is named ``pred_key``."""
    if isinstance(predictions, ad.AnnData):
        return {pred_key: predictions}
    if not predictions:
        raise ValueError("predictions is empty; pass an AnnData or a mapping model name -> AnnData.")
    return dict(predictions)


def _gene_positions(adata: ad.AnnData, genes: Sequence[str] | None) -> slice | np.ndarray:
    if genes is None:
        return slice(None)
    positions = adata.var_names.get_indexer(list(genes))
    if (positions < 0).any():
        missing = [gene for gene, position in zip(genes, positions, strict=True) if position < 0]
        raise KeyError(f"{len(missing)} of the requested genes are not in var_names: {missing[:5]}.")
    return positions


def _column_means(matrix: np.ndarray) -> np.ndarray:
    return matrix.mean(axis=0, dtype=np.float64)


def gene_means(adata: ad.AnnData) -> np.ndarray:
    """Mean log-normalised expression of each gene over the cells of ``adata`` (float64)."""
    return _column_means(_expressions({"adata": adata})["adata"])


def _control_and_stimulated_means(
    ctrl: ad.AnnData, stim: ad.AnnData, genes: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Gene means ``(c, y)`` of the control and stimulated cells, over ``genes`` (default all)."""
    matrices = _expressions({"ctrl": ctrl, "stim": stim})
    positions = _gene_positions(ctrl, genes)
    return tuple(_column_means(matrices[name][:, positions]) for name in ("ctrl", "stim"))


def response_share(ctrl: ad.AnnData, stim: ad.AnnData, *, genes: Sequence[str] | None = None) -> float:
    """Size of the mean response against the spread of gene means: S = Σ_g (y_g − c_g)² / Σ_g (y_g − ȳ)².

    The identity baseline predicts ŷ = c, so its R² of means is exactly 1 − S: whenever the response
    is small next to the differences between genes (S small), predicting no response scores high.
    """
    c, y = _control_and_stimulated_means(ctrl, stim, genes)
    return float(1.0 - r2_score(y, c))


def scaled_response_scores(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    scales: Sequence[float],
    *,
    genes: Sequence[str] | None = None,
    scope: str | None = None,
) -> pd.DataFrame:
    """Mean-based metrics of idealised predictions that scale the true mean response: ŷ = c + a (y − c).

    a = 0 is the identity baseline, a = 1 the true means. With S = :func:`response_share` and
    d = y − c, R²(y, ŷ) = 1 − (1 − a)² S and delta R² = 1 − (1 − a)² Σ_g d_g² / Σ_g (d_g − d̄)²
    (about 1 − (1 − a)² when d̄ is near 0), whereas delta Pearson r = 1 for every a > 0 (0 at
    a = 0): the correlation sees the direction of the response, not its size. No cells are
    resampled (these are plain means).

    Returns
    -------
    pandas.DataFrame
        Columns ``scale``, ``metric``, ``value``; metric names as :func:`evaluate`'s, with the scope
        ``scope`` (default ``all`` without ``genes``, ``top<len(genes)>`` with them).
    """
    c, y = _control_and_stimulated_means(ctrl, stim, genes)
    scales = np.asarray(scales, dtype=np.float64)
    if scales.ndim != 1 or scales.size == 0:
        raise ValueError("scales must be a non-empty sequence of numbers.")
    scope = scope or ("all" if genes is None else f"top{len(genes)}")
    predicted = c + scales[:, None] * (y - c)
    values = _mean_based(c, np.broadcast_to(y, predicted.shape), predicted)
    return pd.DataFrame(
        [
            (scale, f"{statistic}_{scope}", float(value[i]))
            for statistic, value in values.items()
            for i, scale in enumerate(scales)
        ],
        columns=["scale", "metric", "value"],
    )


# ---------------------------------------------------------------------------------------------
# Bootstrap of the mean-based metrics
# ---------------------------------------------------------------------------------------------


_BOOTSTRAP_STREAMS = ("stim", "pred")


def _bootstrap_rng(seed: int, group: str) -> np.random.Generator:
    """A generator of its own for each group, so that a group's resamples depend on the seed only."""
    return np.random.default_rng([seed, _BOOTSTRAP_STREAMS.index(group)])


def _resampled_means(
    matrix: np.ndarray, *, n_rounds: int, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Gene means of ``n_rounds`` resamples of ``max(1, floor(fraction * n))`` cells drawn with replacement.

    Returns a (rounds x genes) array; each round's mean is computed as (draw counts) @ matrix / size.
    """
    n_cells = matrix.shape[0]
    size = max(1, int(fraction * n_cells))
    draws = rng.integers(0, n_cells, size=(n_rounds, size)) + n_cells * np.arange(n_rounds)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_rounds * n_cells).reshape(n_rounds, n_cells)
    return counts.astype(np.float64) @ matrix / size


def _summaries(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Mean and central ``confidence`` percentile interval of bootstrap values (NaN bounds for a point)."""
    if values.ndim == 0:
        return float(values), np.nan, np.nan
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(values.mean()), float(low), float(high)


def _group_means(
    matrix: np.ndarray, group: str, *, n_bootstrap: int, fraction: float, seed: int
) -> np.ndarray:
    """Plain gene means (1-d) when ``n_bootstrap == 0``, otherwise resampled means (rounds x genes)."""
    if n_bootstrap == 0:
        return _column_means(matrix)
    rng = _bootstrap_rng(seed, group)
    return _resampled_means(matrix, n_rounds=n_bootstrap, fraction=fraction, rng=rng)


def _check_bootstrap(n_bootstrap: int, fraction: float, confidence: float) -> None:
    if n_bootstrap < 0 or n_bootstrap == 1:
        raise ValueError(f"n_bootstrap must be 0 (no bootstrap) or at least 2, not {n_bootstrap}.")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"the bootstrap fraction must be in (0, 1], not {fraction}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}.")


def mean_metrics(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    pred: ad.AnnData,
    *,
    genes: Sequence[str] | None = None,
    n_bootstrap: int = 100,
    fraction: float = 0.8,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean-based metrics of a prediction, with bootstrap intervals (the tutorial's protocol).

    With y, ŷ and c the per-gene means of stim, pred and ctrl over ``genes`` (all genes by default):
    ``r2_mean`` = R²(y, ŷ) (coefficient of determination), ``r2_pearson2_mean`` = r(y, ŷ)²,
    ``mse_mean`` = MSE(y, ŷ), ``pearson_mean`` = r(y, ŷ), ``delta_r2`` = R²(y − c, ŷ − c) and
    ``delta_pearson`` = r(y − c, ŷ − c); see :func:`r2_score`, :func:`mse` and :func:`pearson_r`.

    Bootstrap (the original tutorial's protocol): in each of ``n_bootstrap`` rounds,
    ``max(1, floor(fraction * n))`` cells of stim and, separately, of pred are drawn with replacement,
    y and ŷ recomputed and every metric evaluated; c stays the mean of all ctrl cells (resampling it
    too would put the same ctrl noise into both shifts of the delta metrics and correlate them
    spuriously). ``value`` is the mean over rounds and ``ci_low``/``ci_high`` bound the central
    ``confidence`` percentile interval. stim and pred draw from their own streams seeded by ``seed``,
    so every prediction scored with the same seed meets the same stim resamples.
    ``n_bootstrap=0`` gives the plain estimates on all cells, with NaN bounds.

    Returns
    -------
    pandas.DataFrame
        One row per statistic (index ``r2_mean``, ...), columns ``value``, ``ci_low``, ``ci_high``.
    """
    _check_bootstrap(n_bootstrap, fraction, confidence)
    matrices = _expressions({"ctrl": ctrl, "stim": stim, "pred": pred})
    positions = _gene_positions(ctrl, genes)
    ctrl_mean = _column_means(matrices.pop("ctrl")[:, positions])
    means = [
        _group_means(matrix[:, positions], group, n_bootstrap=n_bootstrap, fraction=fraction, seed=seed)
        for group, matrix in matrices.items()
    ]
    summaries = {
        name: _summaries(values, confidence) for name, values in _mean_based(ctrl_mean, *means).items()
    }
    return pd.DataFrame.from_dict(summaries, orient="index", columns=["value", "ci_low", "ci_high"])


# ---------------------------------------------------------------------------------------------
# Differentially expressed genes (Wilcoxon rank-sum)
# ---------------------------------------------------------------------------------------------


class _Runs(NamedTuple):
    """Each gene's values sorted, and the runs of equal values in them, flattened gene after gene."""

    sorted_values: np.ndarray  # genes x cells, every row sorted
    values: np.ndarray  # the value of each run
    sizes: np.ndarray  # how many cells share it
    genes: np.ndarray  # the gene (row) it belongs to


def _runs(matrix: np.ndarray) -> _Runs:
    """Sort each gene (column) of a cells x genes matrix and find its runs of tied values."""
    sorted_values = np.sort(np.ascontiguousarray(matrix.T), axis=1)
    opens_run = np.ones(sorted_values.shape, dtype=bool)
    opens_run[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    starts = np.flatnonzero(opens_run)
    sizes = np.diff(starts, append=sorted_values.size).astype(np.float64)
    return _Runs(sorted_values, sorted_values.ravel()[starts], sizes, starts // sorted_values.shape[1])


def _tie_terms(sizes: np.ndarray, genes: np.ndarray, n_genes: int) -> np.ndarray:
    """Σ_t (t³ − t) per gene over runs of sizes t."""
    return np.bincount(genes, weights=sizes**3 - sizes, minlength=n_genes)


class _RankSumTest:
    """Wilcoxon rank-sum tests of any number of cell groups against one reference, sorted once.

    For a group of n1 cells and the reference's n2 cells (n = n1 + n2), per gene:
    U = Σ_{v in group} (#{reference < v} + ½ #{reference = v}) (the group's rank sum minus
    n1 (n1 + 1) / 2, mid-ranks for ties) and

        z = (U − n1 n2 / 2) / sqrt(n1 n2 / 12 · (n + 1 − Σ_t (t³ − t) / (n (n − 1)))),

    t running over the sizes of the runs of tied values among all n cells. This is the normal
    approximation of the Mann-Whitney U test with tie correction and without continuity correction;
    z > 0 means higher in the group, and a gene whose n values are all tied scores 0.

    A run of value u holding g cells of the group and r of the reference adds (g + r)³ − (g + r) =
    (g³ − g) + (r³ − r) + 3 g r (g + r) to the tie sum, so only the group's distinct values are
    searched in the sorted reference (binary search, one gene at a time).
    """

    def __init__(self, reference: np.ndarray):
        self.n_reference = reference.shape[0]
        self.reference = _runs(reference)
        n_genes = reference.shape[1]
        self.reference_ties = _tie_terms(self.reference.sizes, self.reference.genes, n_genes)

    def z(self, group: np.ndarray) -> np.ndarray:
        """The z-score of every gene (column) of ``group`` (cells x genes) against the reference."""
        n_group, n_genes = group.shape
        runs = _runs(group)
        below = np.empty(runs.values.size)
        up_to = np.empty(runs.values.size)
        bounds = np.searchsorted(runs.genes, np.arange(n_genes + 1))
        for gene, reference_values in enumerate(self.reference.sorted_values):
            span = slice(bounds[gene], bounds[gene + 1])
            below[span] = np.searchsorted(reference_values, runs.values[span], "left")
            up_to[span] = np.searchsorted(reference_values, runs.values[span], "right")
        in_reference = up_to - below
        u_statistic = np.bincount(runs.genes, weights=runs.sizes * (below + up_to) / 2.0, minlength=n_genes)
        shared_ties = 3.0 * runs.sizes * in_reference * (runs.sizes + in_reference)
        ties = (
            _tie_terms(runs.sizes, runs.genes, n_genes)
            + self.reference_ties
            + np.bincount(runs.genes, weights=shared_ties, minlength=n_genes)
        )
        n_cells = n_group + self.n_reference
        variance = n_group * self.n_reference / 12.0 * (n_cells + 1.0 - ties / (n_cells * (n_cells - 1.0)))
        centred = u_statistic - n_group * self.n_reference / 2.0
        return _divide(centred, np.sqrt(np.maximum(variance, 0.0)), where_zero=0.0)


def _top_up(scores: np.ndarray, n_top: int) -> np.ndarray:
    """Positions of the ``n_top`` highest positive scores, ties in gene order; fewer if fewer are > 0."""
    order = np.argsort(-scores, kind="stable")
    return order[scores[order] > 0][:n_top]


def rank_genes_wilcoxon(group: ad.AnnData, reference: ad.AnnData) -> pd.Series:
    """Wilcoxon rank-sum z-score of every gene, ``group`` cells against ``reference`` cells.

    z = (R − n1 (n + 1) / 2) / sqrt(n1 n2 / 12 · (n + 1 − Σ_t (t³ − t) / (n (n − 1)))), where R is the
    sum of the group's mid-ranks among the n = n1 + n2 cells and t runs over the sizes of groups of
    tied values (tie correction: single-cell data have many zeros). This is the normal approximation
    of the Mann-Whitney U test without continuity correction; positive z means higher in ``group``.
    Genes whose values are all tied score 0.
    """
    matrices = _expressions({"group": group, "reference": reference})
    return pd.Series(
        _RankSumTest(matrices["reference"]).z(matrices["group"]), index=group.var_names, name="z"
    )


def top_degs(group: ad.AnnData, reference: ad.AnnData, *, n_top: int = 100) -> pd.Index:
    """The ``n_top`` genes most up-regulated in ``group`` against ``reference``, best first.

    Genes are ranked by the Wilcoxon z-score of :func:`rank_genes_wilcoxon`; only genes with z > 0
    (higher in ``group``) qualify, so fewer than ``n_top`` come back when fewer are up-regulated.
    """
    return group.var_names[_top_up(rank_genes_wilcoxon(group, reference).to_numpy(), n_top)]


class DegOverlap(NamedTuple):
    """Agreement of two top-DEG sets A (real) and B (predicted)."""

    jaccard: float
    overlap: int


def _deg_overlap(real: np.ndarray, predicted: np.ndarray) -> DegOverlap:
    shared = np.intersect1d(real, predicted).size
    union = np.union1d(real, predicted).size
    return DegOverlap(shared / union if union else np.nan, shared)


def deg_overlap(ctrl: ad.AnnData, stim: ad.AnnData, pred: ad.AnnData, *, n_top: int = 100) -> DegOverlap:
    """Jaccard index and overlap count of the top up-regulated DEGs of stim and of pred, both against ctrl.

    A = :func:`top_degs` (stim, ctrl), B = :func:`top_degs` (pred, ctrl);
    J = |A ∩ B| / |A ∪ B| (NaN when both are empty) and overlap = |A ∩ B|.
    """
    matrices = _expressions({"ctrl": ctrl, "stim": stim, "pred": pred})
    test = _RankSumTest(matrices["ctrl"])
    real, predicted = (_top_up(test.z(matrices[name]), n_top) for name in ("stim", "pred"))
    return _deg_overlap(real, predicted)


# ---------------------------------------------------------------------------------------------
# Energy distance in the PCA of ctrl + stim
# ---------------------------------------------------------------------------------------------


def _mean_distance(x: np.ndarray, y: np.ndarray | None = None, *, squared: bool) -> float:
    """Mean distance over all pairs of x and y, or over all n² pairs of x (zero diagonal included)."""
    metric = "sqeuclidean" if squared else "euclidean"
    if y is None:
        return 2.0 * pdist(x, metric).sum() / x.shape[0] ** 2
    return cdist(x, y, metric).mean()


def _energy_distances(
    points: Mapping[str, np.ndarray], pairs: Sequence[tuple[str, str]], *, squared: bool
) -> list[float]:
    """Energy distance of each pair of named point sets; each within-set term is computed once."""
    names = dict.fromkeys(name for pair in pairs for name in pair)
    within = {name: _mean_distance(points[name], squared=squared) for name in names}
    return [
        2.0 * _mean_distance(points[a], points[b], squared=squared) - within[a] - within[b] for a, b in pairs
    ]


def energy_distance(x, y, *, squared: bool = False) -> float:
    """Energy distance between two point sets (rows are points, e.g. cells in PCA space).

    E = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖, each expectation a mean over all pairs of the two
    empirical samples. Convention: the within-set means run over all n² pairs, the zero diagonal
    included (the V-statistic), so E ≥ 0 and identical sets give exactly 0. With plain Euclidean
    distances E is 0 only when the two distributions are equal. ``squared=True`` uses ‖·‖² instead
    (scPerturb's variant), which reduces to E = 2 ‖mean X − mean Y‖²: a difference of means only.
    """
    return _energy_distances({"x": np.asarray(x), "y": np.asarray(y)}, [("x", "y")], squared=squared)[0]


def _check_n_components(n_components: int, shape: tuple[int, int]) -> None:
    if not 1 <= n_components <= min(shape):
        raise ValueError(
            f"n_components ({n_components}) must be between 1 and min(cells, genes) of ctrl + stim "
            f"{shape}; pass a smaller n_components."
        )


def _fit_pca(reference: np.ndarray, n_components: int, seed: int) -> PCA:
    _check_n_components(n_components, reference.shape)
    return PCA(n_components=n_components, random_state=seed).fit(reference)


def subsample(n_cells: int, max_cells: int, *, seed: int) -> np.ndarray:
    """Sorted positions of at most ``max_cells`` of ``n_cells`` cells, drawn without replacement (seeded)."""
    if n_cells <= max_cells:
        return np.arange(n_cells)
    return np.sort(np.random.default_rng(seed).choice(n_cells, size=max_cells, replace=False))


def _embed(matrix: np.ndarray, pca: PCA, max_cells: int, seed: int) -> np.ndarray:
    return pca.transform(matrix[subsample(matrix.shape[0], max_cells, seed=seed)])


def _group_expressions(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: ad.AnnData | Mapping[str, ad.AnnData],
    *,
    ctrl_key: str,
    stim_key: str,
    pred_key: str,
) -> dict[str, np.ndarray]:
    """Checked dense expression of ctrl, stim and each prediction, named by label or model name."""
    predictions = _named_predictions(predictions, pred_key)
    clashing = {ctrl_key, stim_key} & set(predictions)
    if clashing:
        raise ValueError(f"prediction names {sorted(clashing)} clash with the labels of ctrl and stim.")
    return _expressions({ctrl_key: ctrl, stim_key: stim, **predictions})


def pca_embedding(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: ad.AnnData | Mapping[str, ad.AnnData],
    *,
    n_components: int = 30,
    max_cells: int = 2000,
    seed: int = 0,
    ctrl_key: str = "control",
    stim_key: str = "stimulated",
    pred_key: str = "predicted",
) -> tuple[dict[str, np.ndarray], PCA]:
    """Cells of ctrl, stim and each prediction in a PCA fitted on ctrl + stim only.

    The PCA (centred, unscaled, ``n_components`` components, seeded) never sees a prediction, so
    every model is measured in the same space. Each group is subsampled to at most ``max_cells``
    cells with :func:`subsample` before it is projected.

    Returns
    -------
    tuple
        A dict name -> (cells x components) coordinates, keyed ``ctrl_key``, ``stim_key`` and the
        prediction names (``pred_key`` for a single AnnData), and the fitted
        ``sklearn.decomposition.PCA``.
    """
    matrices = _group_expressions(
        ctrl, stim, predictions, ctrl_key=ctrl_key, stim_key=stim_key, pred_key=pred_key
    )
    pca = _fit_pca(np.concatenate([matrices[ctrl_key], matrices[stim_key]]), n_components, seed)
    return {name: _embed(matrix, pca, max_cells, seed) for name, matrix in matrices.items()}, pca


def energy_distances(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: ad.AnnData | Mapping[str, ad.AnnData],
    *,
    n_components: int = 30,
    max_cells: int = 2000,
    squared: bool = False,
    seed: int = 0,
    ctrl_key: str = "control",
    stim_key: str = "stimulated",
    pred_key: str = "predicted",
) -> pd.DataFrame:
    """Energy distance between every pair of ctrl, stim and each prediction, in the PCA of ctrl + stim.

    The cells come from :func:`pca_embedding` (at most ``max_cells`` per group, ``n_components``
    components) and each pair is compared with :func:`energy_distance`
    (E = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖, zero diagonal included).

    Returns
    -------
    pandas.DataFrame
        Symmetric, zero diagonal; rows and columns are ``ctrl_key``, ``stim_key`` and the prediction
        names (``pred_key`` for a single AnnData). ``attrs["metric"]`` holds the metric name
        (``e_distance`` or ``e_distance_squared``).
    """
    points, _ = pca_embedding(
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
    names = list(points)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    frame = pd.DataFrame(0.0, index=names, columns=names)
    for (a, b), value in zip(pairs, _energy_distances(points, pairs, squared=squared), strict=True):
        frame.loc[a, b] = frame.loc[b, a] = value
    frame.attrs["metric"] = "e_distance_squared" if squared else "e_distance"
    return frame


# ---------------------------------------------------------------------------------------------
# Mean-variance KDE distance
# ---------------------------------------------------------------------------------------------

Bandwidth = float | Literal["scott"]
_KDE_GRID_SIZE = 50


def _mean_variance(matrix: np.ndarray) -> np.ndarray:
    """(genes x 2) points: mean and population variance (ddof = 0) of each gene."""
    return np.column_stack([_column_means(matrix), matrix.var(axis=0, dtype=np.float64)])


def _check_bandwidth(bandwidth: Bandwidth) -> None:
    if bandwidth != "scott" and not (isinstance(bandwidth, int | float) and bandwidth > 0):
        raise ValueError(f"bandwidth must be 'scott' or a positive number, not {bandwidth!r}.")


def _gaussian_kde(points: np.ndarray, grid: np.ndarray, bandwidth: Bandwidth, what: str) -> np.ndarray:
    """Gaussian kernel density of ``points`` evaluated at ``grid`` (both n x d).

    f(u) = (1/n) Σ_i N(u; x_i, H), with H = h² I for a number h, or H = n^(−2/(d+4)) Σ (Scott's rule,
    Σ the sample covariance of the points) for ``"scott"``.
    """
    n_points, n_dims = points.shape
    if bandwidth == "scott":
        covariance = np.cov(points, rowvar=False) * n_points ** (-2.0 / (n_dims + 4))
    else:
        covariance = float(bandwidth) ** 2 * np.eye(n_dims)
    try:
        cholesky = np.linalg.cholesky(covariance)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"the per-gene (mean, variance) points of {what} lie on a line, so Scott's rule gives no "
            "kernel; pass a fixed bandwidth (a positive number)."
        ) from None
    whitened = [solve_triangular(cholesky, array.T, lower=True).T for array in (grid, points)]
    norm = n_points * (2.0 * np.pi) ** (n_dims / 2.0) * np.prod(np.diag(cholesky))
    return np.exp(-0.5 * cdist(*whitened, "sqeuclidean")).sum(axis=1) / norm


def _kde_distance(
    stim_points: np.ndarray, pred_points: np.ndarray, bandwidth: Bandwidth, grid_size: int
) -> float:
    low = np.minimum(stim_points.min(axis=0), pred_points.min(axis=0))
    high = np.maximum(stim_points.max(axis=0), pred_points.max(axis=0))
    axes = [np.linspace(low[d], high[d], grid_size) for d in range(2)]
    grid = np.column_stack([coordinate.ravel() for coordinate in np.meshgrid(*axes)])
    densities = [
        _gaussian_kde(points, grid, bandwidth, what)
        for points, what in ((stim_points, "stim"), (pred_points, "pred"))
    ]
    cell_area = np.prod([(high[d] - low[d]) / (grid_size - 1) for d in range(2)])
    return float(np.abs(densities[0] - densities[1]).sum() * cell_area)


def mean_variance_kde_distance(
    stim: ad.AnnData, pred: ad.AnnData, *, bandwidth: Bandwidth = "scott", grid_size: int = _KDE_GRID_SIZE
) -> float:
    """L1 distance between the densities of per-gene (mean, variance) points of stim and of pred.

    Each gene gives a point (mean, variance with ddof = 0) for stim and one for pred. A Gaussian KDE
    of each point set (see bandwidth) is evaluated on a ``grid_size`` x ``grid_size`` grid spanning
    the joint bounding box of both sets (grid lines at both ends, spacing Δm = range/(grid_size − 1),
    likewise Δv), and D = Σ_grid |f_stim − f_pred| · Δm · Δv. D is 0 for identical inputs and
    at most about 2.

    ``bandwidth="scott"`` scales each set's own covariance by Scott's factor n^(−1/6) (as
    ``scipy.stats.gaussian_kde`` does); a number h is an isotropic kernel of standard deviation h in
    the data's units (as ``sklearn.neighbors.KernelDensity(bandwidth=h)``). The original tutorial's
    ``bandwidth=1.0`` is reproducible that way, but it over-smooths: mean log-expression spans only a
    few units.
    """
    _check_bandwidth(bandwidth)
    matrices = _expressions({"stim": stim, "pred": pred})
    return _kde_distance(
        _mean_variance(matrices["stim"]), _mean_variance(matrices["pred"]), bandwidth, grid_size
    )


# ---------------------------------------------------------------------------------------------
# evaluate: every metric, every model, one tidy frame
# ---------------------------------------------------------------------------------------------


def _select(adata: ad.AnnData, key: str, value: str, *, what: str) -> ad.AnnData:
    """The cells with ``obs[key] == value``; all cells when ``adata`` has no such column."""
    if key not in adata.obs.columns:
        return adata
    require_value(adata, key, value, what=what)
    return adata[adata.obs[key].astype(str).to_numpy() == value]


class _EvaluationSet(NamedTuple):
    """The cells of one cell type: real control, real stimulated and each model's prediction."""

    cell_type: str
    ctrl: ad.AnnData
    stim: ad.AnnData
    predictions: dict[str, ad.AnnData]


def _evaluation_sets(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: Mapping[str, ad.AnnData],
    *,
    condition_key: str,
    cell_type_key: str,
    ctrl_key: str,
    stim_key: str,
    pred_key: str,
) -> list[_EvaluationSet]:
    """Select each input's condition, check every input and split them all by cell type."""
    labelled = [
        ("ctrl", _select(ctrl, condition_key, ctrl_key, what="ctrl")),
        ("stim", _select(stim, condition_key, stim_key, what="stim")),
    ]
    labelled += [
        (f"predictions[{name!r}]", _select(pred, condition_key, pred_key, what=f"predictions[{name!r}]"))
        for name, pred in predictions.items()
    ]
    _check_inputs(labelled)
    if cell_type_key in labelled[0][1].obs.columns:
        cell_types = list(dict.fromkeys(labelled[0][1].obs[cell_type_key].astype(str)))
        lacking = [what for what, adata in labelled if cell_type_key not in adata.obs.columns]
        if len(cell_types) > 1 and lacking:
            raise ValueError(
                f"ctrl holds {len(cell_types)} cell types but {', '.join(lacking)} has no "
                f"obs[{cell_type_key!r}] to split by; add that column or evaluate one cell type at a time."
            )
        splits = {
            cell_type: [_select(adata, cell_type_key, cell_type, what=what) for what, adata in labelled]
            for cell_type in cell_types
        }
    else:
        splits = {"all": [adata for _, adata in labelled]}
    return [
        _EvaluationSet(cell_type, split[0], split[1], dict(zip(predictions, split[2:], strict=True)))
        for cell_type, split in splits.items()
    ]


def _score_cell_type(
    ctrl: np.ndarray,
    stim: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    *,
    n_top: int,
    n_bootstrap: int,
    fraction: float,
    confidence: float,
    n_components: int,
    max_cells: int,
    squared: bool,
    bandwidth: Bandwidth,
    seed: int,
    progress: tqdm,
) -> list[tuple[str, str, float, float, float]]:
    """Rows (model, metric, value, ci_low, ci_high) for every prediction of one cell type.

    What the models share is computed once: the DEGs of stim vs ctrl, the PCA of ctrl + stim and the
    stim embedding, the ctrl means, the resampled stim means and the per-gene (mean, variance) of stim.
    """
    rank_sum_test = _RankSumTest(ctrl)
    real_degs = _top_up(rank_sum_test.z(stim), n_top)
    scopes = {"all": slice(None), f"top{n_top}": real_degs}
    resampling = {"n_bootstrap": n_bootstrap, "fraction": fraction, "seed": seed}
    ctrl_mean = _column_means(ctrl)
    stim_means = _group_means(stim, "stim", **resampling)
    pca = _fit_pca(np.concatenate([ctrl, stim]), n_components, seed)
    points = {
        name: _embed(matrix, pca, max_cells, seed) for name, matrix in [("stim", stim), *predictions.items()]
    }
    e_distances = _energy_distances(points, [(name, "stim") for name in predictions], squared=squared)
    stim_mean_variance = _mean_variance(stim)

    rows = []
    for (name, pred), e_distance in zip(predictions.items(), e_distances, strict=True):
        pred_means = _group_means(pred, "pred", **resampling)
        for scope, genes in scopes.items():
            values = _mean_based(ctrl_mean[genes], stim_means[..., genes], pred_means[..., genes])
            rows += [
                (name, f"{stat}_{scope}", *_summaries(value, confidence)) for stat, value in values.items()
            ]
        overlap = _deg_overlap(real_degs, _top_up(rank_sum_test.z(pred), n_top))
        unbootstrapped = {
            f"deg_jaccard_top{n_top}": overlap.jaccard,
            f"deg_overlap_top{n_top}": float(overlap.overlap),
            "e_distance_squared" if squared else "e_distance": e_distance,
            "mv_kde": _kde_distance(stim_mean_variance, _mean_variance(pred), bandwidth, _KDE_GRID_SIZE),
        }
        rows += [(name, metric, value, np.nan, np.nan) for metric, value in unbootstrapped.items()]
        progress.update()
    return rows


def evaluate(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: ad.AnnData | Mapping[str, ad.AnnData],
    *,
    n_top_degs: int = 100,
    n_bootstrap: int = 100,
    bootstrap_fraction: float = 0.8,
    confidence: float = 0.95,
    n_components: int = 30,
    max_cells: int = 2000,
    squared_energy: bool = False,
    kde_bandwidth: Bandwidth = "scott",
    seed: int = 0,
    verbose: bool = True,
    condition_key: str = "condition",
    cell_type_key: str = "cell_type",
    ctrl_key: str = "control",
    stim_key: str = "stimulated",
    pred_key: str = "predicted",
) -> pd.DataFrame:
    """Score one or several predictions against the real stimulated cells: every metric, one tidy frame.

    Parameters
    ----------
    ctrl, stim
        Real control and stimulated cells of the held-out cell type(s). Where ``obs`` has
        ``condition_key``, only the cells labelled ``ctrl_key`` (``stim_key``) are used.
    predictions
        One prediction, reported as model ``pred_key``, or a mapping model name -> prediction. Where
        ``obs`` has ``condition_key``, only the cells labelled ``pred_key`` are used. Genes must be
        those of ctrl, in the same order.
    n_top_degs
        Size n of the top up-regulated DEG set (Wilcoxon, stim vs ctrl, see :func:`top_degs`).
    n_bootstrap, bootstrap_fraction, confidence
        Bootstrap of the mean-based metrics (see :func:`mean_metrics`); ``n_bootstrap=0`` reports
        the plain estimates.
    n_components, max_cells, squared_energy
        PCA fitted on ctrl + stim, cells per group for the energy distance and its squared variant
        (see :func:`energy_distances`).
    kde_bandwidth
        Bandwidth of :func:`mean_variance_kde_distance` (on a 50 x 50 grid).
    seed
        Seeds the bootstrap, the PCA and the subsampling; the same seed gives the same frame.
    verbose
        Show a progress bar over models and cell types.

    Returns
    -------
    pandas.DataFrame
        Columns ``model, cell_type, metric, value, ci_low, ci_high``: one row per model, cell type and
        metric (names in the module docstring and :data:`METRICS`). For the mean-based metrics
        ``value`` is the bootstrap mean and ``ci_low``/``ci_high`` its interval; the other metrics
        have NaN bounds. If ctrl has ``obs[cell_type_key]``, each of its cell types is scored on its
        own (every input must hold it); otherwise ``cell_type`` is ``"all"``.

    Notes
    -----
    Within one cell type, the DEGs of stim vs ctrl, the PCA of ctrl + stim, the stim embedding and the
    resampled stim means are computed once and shared by every model, so the models are compared on
    the same genes, in the same space and against the same resamples.
    """
    predictions = _named_predictions(predictions, pred_key)
    if n_top_degs < 1:
        raise ValueError(f"n_top_degs must be at least 1, not {n_top_degs}.")
    _check_bootstrap(n_bootstrap, bootstrap_fraction, confidence)
    _check_bandwidth(kde_bandwidth)
    sets = _evaluation_sets(
        ctrl,
        stim,
        predictions,
        condition_key=condition_key,
        cell_type_key=cell_type_key,
        ctrl_key=ctrl_key,
        stim_key=stim_key,
        pred_key=pred_key,
    )
    for subset in sets:
        _check_n_components(n_components, (subset.ctrl.n_obs + subset.stim.n_obs, subset.ctrl.n_vars))
    rows = []
    with tqdm(total=len(sets) * len(predictions), desc="evaluate", disable=not verbose) as progress:
        for subset in sets:
            scores = _score_cell_type(
                as_dense(subset.ctrl.X),
                as_dense(subset.stim.X),
                {name: as_dense(pred.X) for name, pred in subset.predictions.items()},
                n_top=n_top_degs,
                n_bootstrap=n_bootstrap,
                fraction=bootstrap_fraction,
                confidence=confidence,
                n_components=n_components,
                max_cells=max_cells,
                squared=squared_energy,
                bandwidth=kde_bandwidth,
                seed=seed,
                progress=progress,
            )
            rows += [(model, subset.cell_type, *rest) for model, *rest in scores]
    return pd.DataFrame(rows, columns=list(EVALUATE_COLUMNS))
