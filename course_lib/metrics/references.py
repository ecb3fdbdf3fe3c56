"""What a score is read against: the noise ceiling, the baselines, and the other cell types' responses.

Since the original tutorial, large benchmarks (cell-eval and the Virtual Cell Challenge, Systema,
scPerturBench, PerturBench) read every score against a floor and a ceiling. This module gives the
course's forms of those ideas; :func:`course_lib.metrics.evaluate` reports them next to the metrics.

The noise ceiling and matched sizes
-----------------------------------
The best score the data allow is that of a *replicate*: new real stimulated cells of the same type.
:func:`noise_ceiling` splits the real stimulated cells into two random halves A and B (``n_splits``
times, seeded) and scores A as if it were a prediction of B with every metric. Half-size groups
change the metrics: means of fewer cells are noisier (R² and correlations of means fall, MSE rises),
the top DEGs of fewer cells are less stable (the DEG overlap falls), and the energy distance with its
zero-diagonal within-group terms grows as groups shrink (its bias is about E‖X − X'‖/n + E‖Y − Y'‖/m).
So the ceiling is not comparable with a model's full-size score.

The course makes the comparison fair by scoring at matched sizes: :func:`matched_scores` scores each
prediction, subsampled to the size of A, against the same halves B (``<metric>_matched``), so that a
model, the baselines and the replicate meet the same truth with groups of the same size. The
normalised scores (:func:`normalised_scores`) use these matched scores only; the full-size scores stay
the headline numbers.

Baseline-normalised score
-------------------------
For a metric m with matched scores m (model), i (identity baseline) and the ceiling c:
``norm_identity = (m − i) / (c − i)``: 0 is "no better than predicting no change", 1 is "as good as a
replicate", and the ratio is already turned the right way for lower-is-better metrics (numerator and
denominator change sign together). ``norm_mean_shift`` uses the mean-shift baseline in place of the
identity. NaN where the ceiling equals the baseline.

Response discrimination
-----------------------
Over a leave-one-cell-type-out benchmark (Systema's question, in the course's design): is the predicted
change ŷ_T − c_T of held-out type T closer (Pearson) to T's own real change than to the real changes of
the other held-out types? :func:`discrimination_rank` gives T's rank (1 = recognised);
:func:`response_discrimination` the accuracy (share of rank 1) and the mean rank over types. A
prediction without a change (the identity) has no rank: NaN, reported as undefined, not as 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from course_lib.metrics.means import pearson_r
from course_lib.metrics.names import MATCHED_SUFFIX, NORMALISED_SUFFIXES
from course_lib.metrics.scoring import Row, ScoringContext

CEILING = "noise_ceiling"
"""Model name of the noise-ceiling rows (one real half scored as a prediction of the other)."""

IDENTITY, MEAN_SHIFT = "identity", "mean_shift"
"""Model names of the two baselines that the normalised scores use (those of the model registry)."""

MIN_HALF_CELLS = 10
"""Cells each half needs at least (so at least twice as many real stimulated cells)."""

_SPLIT_STREAM, _MATCH_STREAM = 11, 12
"""Names of the random streams of the halves and of the matched subsamples (with the seed)."""


def half_splits(
    n_cells: int, n_splits: int, *, seed: int, what: str = "stim"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` random splits of ``n_cells`` cells into two halves of ``n_cells // 2`` cells each.

    Each split is a pair of sorted position arrays (A, B), drawn from a seeded stream of its own (an
    odd cell out is left out, so that both halves have the same size). Raises when a half would hold
    fewer than :data:`MIN_HALF_CELLS` cells (``what`` names the cells in the message).
    """
    if n_cells < 2 * MIN_HALF_CELLS:
        raise ValueError(
            f"{what} has {n_cells} stimulated cells, fewer than 2 x {MIN_HALF_CELLS} = {2 * MIN_HALF_CELLS}: "
            "too few to split into two halves for the noise ceiling. Use a larger type, or turn the "
            "ceiling off (n_ceiling_splits=0)."
        )
    if n_splits < 1:
        raise ValueError(f"n_splits must be at least 1, not {n_splits}.")
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    half = n_cells // 2
    splits = []
    for _ in range(n_splits):
        order = rng.permutation(n_cells)
        splits.append((np.sort(order[:half]), np.sort(order[half : 2 * half])))
    return splits


def _matched_positions(n_cells: int, size: int, *, seed: int, split: int) -> np.ndarray:
    """Sorted positions of ``min(n_cells, size)`` cells of a prediction for one split (seeded)."""
    if n_cells <= size:
        return np.arange(n_cells)
    rng = np.random.default_rng([seed, _MATCH_STREAM, split])
    return np.sort(rng.choice(n_cells, size=size, replace=False))


def split_scores(
    context: ScoringContext,
    stim: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    ceiling: bool,
    shared: np.ndarray | None = None,
) -> pd.DataFrame:
    """Plain (unbootstrapped) scores of every split: columns ``split, model, metric, value``.

    In split s, the truth is half B; half A is scored as :data:`CEILING` (with ``ceiling``) and each
    prediction, subsampled to the size of A, under its own name. Everything is scored in one
    :meth:`ScoringContext.score` call per split, so all of them meet the same truth.
    """
    rows = []
    for index, (half_a, half_b) in enumerate(splits):
        scored = {CEILING: stim[half_a]} if ceiling else {}
        for name, pred in predictions.items():
            scored[name] = pred[_matched_positions(len(pred), len(half_a), seed=context.seed, split=index)]
        for model, metric, value, _, _ in context.score(stim[half_b], scored, bootstrap=False, shared=shared):
            rows.append((index, model, metric, value))
    return pd.DataFrame(rows, columns=["split", "model", "metric", "value"])


def ceiling_summary(splits: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """The noise ceiling from :func:`split_scores`, one row per metric: ``value`` (the mean over the
    splits), ``sd`` and, as ``ci_low``/``ci_high``, the central ``confidence`` range of the splits (a
    spread of single replicates, not an interval of the mean)."""
    tail = (1.0 - confidence) / 2.0
    ceiling = splits[splits["model"] == CEILING].groupby("metric", sort=False)["value"]
    summary = ceiling.agg(value="mean", sd="std")
    summary["ci_low"] = ceiling.quantile(tail)
    summary["ci_high"] = ceiling.quantile(1.0 - tail)
    return summary.reset_index()


def matched_rows(splits: pd.DataFrame) -> list[Row]:
    """Rows ``<metric>_matched`` of every prediction (not the ceiling): its mean over the splits."""
    models = splits[splits["model"] != CEILING]
    means = models.groupby(["model", "metric"], sort=False)["value"].mean()
    return [
        (model, f"{metric}{MATCHED_SUFFIX}", float(value), np.nan, np.nan)
        for (model, metric), value in means.items()
    ]


def normalised_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Baseline-normalised scores of every model in a tidy frame of scores (see the module docstring).

    ``scores`` holds rows of :data:`CEILING` (the half-size replicate) and ``<metric>_matched`` rows of
    the models, :data:`IDENTITY` and :data:`MEAN_SHIFT` included, as :func:`course_lib.metrics.evaluate`
    or a benchmark table does. Rows are matched within the groups of the columns ``cell_type``,
    ``variant`` and ``seed`` that the frame has. For every model and metric the result has the rows
    ``<metric>_norm_identity`` and ``<metric>_norm_mean_shift`` (value; NaN bounds), with the other
    columns of the model's own rows; a reference missing from a group gives NaN.
    """
    groups = [column for column in ("cell_type", "variant", "seed") if column in scores.columns]
    matched = scores[scores["metric"].str.endswith(MATCHED_SUFFIX) & (scores["model"] != CEILING)].copy()
    if matched.empty:
        return scores.iloc[0:0].copy()
    matched["base"] = matched["metric"].str.removesuffix(MATCHED_SUFFIX)
    ceiling = scores[scores["model"] == CEILING].rename(columns={"metric": "base", "value": "ceiling"})
    merged = matched.merge(ceiling[[*groups, "base", "ceiling"]], on=[*groups, "base"], how="left")
    frames = []
    for suffix, reference in zip(NORMALISED_SUFFIXES, (IDENTITY, MEAN_SHIFT), strict=True):
        baseline = matched[matched["model"] == reference][[*groups, "base", "value"]]
        both = merged.merge(baseline.rename(columns={"value": "baseline"}), on=[*groups, "base"], how="left")
        span = both["ceiling"] - both["baseline"]
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(span != 0, (both["value"] - both["baseline"]) / span, np.nan)
        frames.append(both.assign(metric=both["base"] + suffix, value=value))
    result = pd.concat(frames, ignore_index=True)
    for bound in ("ci_low", "ci_high"):
        if bound in result.columns:
            result[bound] = np.nan
    return result[list(scores.columns)]


def discrimination_rank(
    predicted_change: np.ndarray, real_changes: Mapping[str, np.ndarray], own: str
) -> float:
    """Rank of ``own`` among the types of ``real_changes`` by the Pearson r of their real change with
    ``predicted_change`` (1 = the own type's change is the closest; ties count in its favour).

    NaN when the predicted change is constant (the identity baseline predicts no change: its
    correlation with every type is undefined, so it has no rank).
    """
    if own not in real_changes:
        raise KeyError(f"{own!r} is not among the types compared: {sorted(real_changes)}.")
    predicted_change = np.asarray(predicted_change, dtype=np.float64)
    if np.ptp(predicted_change) == 0:
        return np.nan
    correlations = {name: float(pearson_r(change, predicted_change)) for name, change in real_changes.items()}
    return float(1 + sum(value > correlations[own] for name, value in correlations.items() if name != own))


def response_discrimination(
    results: pd.DataFrame, *, by: Sequence[str] = ("model", "variant"), n_types: int | None = None
) -> pd.DataFrame:
    """Accuracy and mean rank of the response discrimination over a benchmark table.

    Reads the ``discrimination_rank_all`` rows (one per model, held-out type, variant and seed).
    Returns one row per ``by`` group: ``accuracy`` (share of rank 1), ``mean_rank``, ``n`` (ranked
    rows), ``n_types`` (types compared, K) and ``chance_accuracy`` (1 / K). A model whose ranks are all
    undefined (the identity) has NaN accuracy and rank, and ``n = 0``.

    The benchmark ranks each type among all the held-out types of its grid, so K defaults to the number
    of types in ``results``: right for a whole table. For rows of some of the types only, pass the
    ``n_types`` that the ranks were computed among; a rank above K is refused as a sign of a wrong K.
    """
    ranks = results[results["metric"] == "discrimination_rank_all"]
    if ranks.empty:
        raise KeyError(
            "results has no 'discrimination_rank_all' rows; rerun the benchmark with this version."
        )
    n_types = ranks["cell_type"].nunique() if n_types is None else n_types
    if ranks["value"].max() > n_types:
        raise ValueError(
            f"a rank of {ranks['value'].max():.0f} among {n_types} types: the ranks were computed among more "
            "types than results holds; pass n_types, the number of held-out types of the benchmark."
        )
    summary = ranks.groupby(list(by), observed=True, sort=False)["value"].agg(
        accuracy=lambda values: (
            (values == 1).sum() / values.notna().sum() if values.notna().any() else np.nan
        ),
        mean_rank="mean",
        n="count",
    )
    summary["n_types"] = n_types
    summary["chance_accuracy"] = 1.0 / n_types
    return summary.reset_index()
