"""Statistics of gene means: R², Pearson r, MSE, their delta and type-specific forms, and the
bootstrap that gives them intervals.

Notation (see :mod:`course_lib.metrics`): c, y and ŷ are the gene means of the control, stimulated
and predicted cells of one held-out type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from course_lib.metrics.inputs import checked_expressions, column_means, gene_positions


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim == 0:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be arrays of one shape.")
    return y_true, y_pred


def divide(numerator: np.ndarray, denominator: np.ndarray, *, where_zero: float) -> np.ndarray:
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
    return np.clip(divide(covariance, scale, where_zero=0.0), -1.0, 1.0)


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
    return divide(total - residual, total, where_zero=np.nan)


def mse(y_true, y_pred) -> np.ndarray:
    """Mean squared error along the last axis: MSE = (1/G) Σ_g (y_g − ŷ_g)² over the G genes."""
    y_true, y_pred = _pair(y_true, y_pred)
    return ((y_true - y_pred) ** 2).mean(axis=-1)


NO_SPECIFIC_RESPONSE = 1e-5
"""A predicted type-specific response whose norm is below this share of the real one's counts as none:
the mean-shift baseline predicts exactly c + s, and what is left of ŷ − c − s is float32 rounding."""


def _without_rounding(predicted: np.ndarray, real: np.ndarray) -> np.ndarray:
    """``predicted`` with the rows whose norm is below :data:`NO_SPECIFIC_RESPONSE` x ``real``'s set to 0."""
    negligible = np.linalg.norm(predicted, axis=-1) <= NO_SPECIFIC_RESPONSE * np.linalg.norm(real, axis=-1)
    return np.where(negligible[..., None], 0.0, predicted)


def mean_statistics(
    ctrl_mean: np.ndarray, stim_mean: np.ndarray, pred_mean: np.ndarray, shared: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Every statistic of gene means (see :mod:`course_lib.metrics`), batched over leading axes.

    With c, y and ŷ the control, stimulated and predicted means: R², squared Pearson r, MSE and
    Pearson r of ŷ against y, and R² and Pearson r of ŷ − c against y − c. With ``shared`` (s, the
    response every type shares), also the type-specific statistics: Pearson r and R² of ŷ − c − s
    against y − c − s. A prediction of exactly c + s (the mean-shift baseline) has no specific response:
    its r is 0 (see :data:`NO_SPECIFIC_RESPONSE`).
    """
    stim_shift, pred_shift = stim_mean - ctrl_mean, pred_mean - ctrl_mean
    statistics = {
        "r2_mean": r2_score(stim_mean, pred_mean),
        "r2_pearson2_mean": r2_score(stim_mean, pred_mean, kind="pearson2"),
        "mse_mean": mse(stim_mean, pred_mean),
        "pearson_mean": pearson_r(stim_mean, pred_mean),
        "delta_r2": r2_score(stim_shift, pred_shift),
        "delta_pearson": pearson_r(stim_shift, pred_shift),
    }
    if shared is not None:
        stim_specific = stim_shift - shared
        pred_specific = _without_rounding(np.asarray(pred_shift - shared, dtype=np.float64), stim_specific)
        statistics["specific_pearson"] = pearson_r(stim_specific, pred_specific)
        statistics["specific_r2"] = r2_score(stim_specific, pred_specific)
    return statistics


def gene_means(adata: ad.AnnData) -> np.ndarray:
    """Mean log-normalised expression of each gene over the cells of ``adata`` (float64)."""
    return column_means(checked_expressions({}, {"adata": adata})["adata"])


def control_and_stimulated_means(
    ctrl: ad.AnnData, stim: ad.AnnData, genes: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Gene means ``(c, y)`` of the control and stimulated cells, over ``genes`` (default all)."""
    matrices = checked_expressions({"ctrl": ctrl, "stim": stim})
    positions = gene_positions(ctrl, genes)
    return tuple(column_means(matrices[name][:, positions]) for name in ("ctrl", "stim"))


def response_share(ctrl: ad.AnnData, stim: ad.AnnData, *, genes: Sequence[str] | None = None) -> float:
    """Size of the mean response against the spread of gene means: S = Σ_g (y_g − c_g)² / Σ_g (y_g − ȳ)².

    The identity baseline predicts ŷ = c, so its R² of means is exactly 1 − S: whenever the response
    is small next to the differences between genes (S small), predicting no response scores high.
    """
    c, y = control_and_stimulated_means(ctrl, stim, genes)
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
    c, y = control_and_stimulated_means(ctrl, stim, genes)
    scales = np.asarray(scales, dtype=np.float64)
    if scales.ndim != 1 or scales.size == 0:
        raise ValueError("scales must be a non-empty sequence of numbers.")
    scope = scope or ("all" if genes is None else f"top{len(genes)}")
    predicted = c + scales[:, None] * (y - c)
    values = mean_statistics(c, np.broadcast_to(y, predicted.shape), predicted)
    return pd.DataFrame(
        [
            (scale, f"{statistic}_{scope}", float(value[i]))
            for statistic, value in values.items()
            for i, scale in enumerate(scales)
        ],
        columns=["scale", "metric", "value"],
    )


# -- bootstrap of the mean-based metrics ----------------------------------------------------------


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


def bootstrap_summary(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Mean and central ``confidence`` percentile interval of bootstrap values (NaN bounds for a point)."""
    if values.ndim == 0:
        return float(values), np.nan, np.nan
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(values.mean()), float(low), float(high)


def group_means(
    matrix: np.ndarray, group: str, *, n_bootstrap: int, fraction: float, seed: int
) -> np.ndarray:
    """Plain gene means (1-d) when ``n_bootstrap == 0``, otherwise resampled means (rounds x genes)."""
    if n_bootstrap == 0:
        return column_means(matrix)
    rng = _bootstrap_rng(seed, group)
    return _resampled_means(matrix, n_rounds=n_bootstrap, fraction=fraction, rng=rng)


def check_bootstrap(n_bootstrap: int, fraction: float, confidence: float) -> None:
    """Raise for a bootstrap of one round, a fraction outside (0, 1] or a confidence outside (0, 1)."""
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
    check_bootstrap(n_bootstrap, fraction, confidence)
    matrices = checked_expressions({"ctrl": ctrl, "stim": stim}, {"pred": pred})
    positions = gene_positions(ctrl, genes)
    ctrl_mean = column_means(matrices.pop("ctrl")[:, positions])
    means = [
        group_means(matrix[:, positions], group, n_bootstrap=n_bootstrap, fraction=fraction, seed=seed)
        for group, matrix in matrices.items()
    ]
    summaries = {
        name: bootstrap_summary(values, confidence)
        for name, values in mean_statistics(ctrl_mean, *means).items()
    }
    return pd.DataFrame.from_dict(summaries, orient="index", columns=["value", "ci_low", "ci_high"])
