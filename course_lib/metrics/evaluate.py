""":func:`evaluate`: every metric of every prediction, per held-out cell type, in one tidy frame."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import anndata as ad
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from course_lib.checks import as_dense, require_positive_int, require_seed, require_value
from course_lib.keys import DEFAULT_KEYS, ObsKeys
from course_lib.metrics.distributions import Bandwidth, check_bandwidth, check_n_components
from course_lib.metrics.inputs import check_inputs, named_predictions
from course_lib.metrics.means import check_bootstrap
from course_lib.metrics.references import (
    CEILING,
    ceiling_summary,
    half_splits,
    matched_rows,
    normalised_scores,
    split_scores,
)
from course_lib.metrics.scoring import ScoringContext, ScoringOptions

EVALUATE_COLUMNS = ("model", "cell_type", "metric", "value", "ci_low", "ci_high")
"""Columns of the frame that :func:`evaluate` returns, in order."""

SharedResponse = np.ndarray | Mapping[str, np.ndarray]


def _select(adata: ad.AnnData, key: str, value: str, *, what: str) -> ad.AnnData:
    """The cells with ``obs[key] == value``; all cells when ``adata`` has no such column."""
    if key not in adata.obs.columns:
        return adata
    require_value(adata, key, value, what=what)
    return adata[adata.obs[key].astype(str).to_numpy() == value]


class EvaluationSet(NamedTuple):
    """The cells of one cell type: real control, real stimulated and each model's prediction."""

    cell_type: str
    ctrl: ad.AnnData
    stim: ad.AnnData
    predictions: dict[str, ad.AnnData]


def evaluation_sets(
    ctrl: ad.AnnData, stim: ad.AnnData, predictions: Mapping[str, ad.AnnData], *, keys: ObsKeys = DEFAULT_KEYS
) -> list[EvaluationSet]:
    """Select each input's condition (where ``obs`` has the column), check every input and split them
    all by cell type (one set named ``"all"`` where ctrl has no cell-type column)."""
    real = {
        "ctrl": _select(ctrl, keys.condition, keys.control, what="ctrl"),
        "stim": _select(stim, keys.condition, keys.stimulated, what="stim"),
    }
    predicted = {
        f"predictions[{name!r}]": _select(pred, keys.condition, keys.predicted, what=f"predictions[{name!r}]")
        for name, pred in predictions.items()
    }
    check_inputs(real, predicted)
    labelled = [*real.items(), *predicted.items()]
    if keys.cell_type in real["ctrl"].obs.columns:
        cell_types = list(dict.fromkeys(keys.cell_types(real["ctrl"])))
        lacking = [what for what, adata in labelled if keys.cell_type not in adata.obs.columns]
        if len(cell_types) > 1 and lacking:
            raise ValueError(
                f"ctrl holds {len(cell_types)} cell types but {', '.join(lacking)} has no "
                f"obs[{keys.cell_type!r}] to split by; add that column or evaluate one cell type at a time."
            )
        splits = {
            cell_type: [_select(adata, keys.cell_type, cell_type, what=what) for what, adata in labelled]
            for cell_type in cell_types
        }
    else:
        splits = {"all": [adata for _, adata in labelled]}
    return [
        EvaluationSet(cell_type, split[0], split[1], dict(zip(predictions, split[2:], strict=True)))
        for cell_type, split in splits.items()
    ]


def _shared_for(shared_response: SharedResponse | None, cell_type: str, n_genes: int) -> np.ndarray | None:
    """The shared response of one cell type (one vector for all, or a mapping type -> vector)."""
    if shared_response is None:
        return None
    shared = shared_response[cell_type] if isinstance(shared_response, Mapping) else shared_response
    shared = np.asarray(shared, dtype=np.float64)
    if shared.shape != (n_genes,) or not np.isfinite(shared).all():
        raise ValueError(
            f"shared_response must be {n_genes} finite values (one per gene), not an array of shape "
            f"{shared.shape}."
        )
    return shared


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
    shared_response: SharedResponse | None = None,
    n_ceiling_splits: int = 20,
    include_ceiling: bool = True,
    seed: int = 0,
    verbose: bool = True,
    keys: ObsKeys = DEFAULT_KEYS,
) -> pd.DataFrame:
    """Score one or several predictions against the real stimulated cells: every metric, one tidy frame.

    Parameters
    ----------
    ctrl, stim
        Real control and stimulated cells of the held-out cell type(s). Where ``obs`` has
        ``keys.condition``, only the cells labelled ``keys.control`` (``keys.stimulated``) are used.
    predictions
        One prediction, reported as model ``keys.predicted``, or a mapping model name -> prediction.
        Where ``obs`` has ``keys.condition``, only the cells labelled ``keys.predicted`` are used.
        Genes must be those of ctrl, in the same order. Include the baselines as ``"identity"`` and
        ``"mean_shift"`` to get the normalised scores.
    n_top_degs
        Size n of the top up-regulated DEG set (Wilcoxon, stim vs ctrl, see
        :func:`~course_lib.metrics.top_degs`).
    n_bootstrap, bootstrap_fraction, confidence
        Bootstrap of the mean-based metrics (see :func:`~course_lib.metrics.mean_metrics`);
        ``n_bootstrap=0`` reports the plain estimates.
    n_components, max_cells, squared_energy
        PCA fitted on ctrl + stim, cells per group for the energy distance and its squared variant
        (see :func:`~course_lib.metrics.energy_distances`).
    kde_bandwidth
        Bandwidth of :func:`~course_lib.metrics.mean_variance_kde_distance` (on a 50 x 50 grid).
    shared_response
        The response every type shares, s (one value per gene, e.g. the mean-shift baseline's
        ``uns["delta"]``), or a mapping cell type -> s: adds the type-specific metrics
        ``specific_pearson_*`` and ``specific_r2_*`` (ŷ − c − s against y − c − s).
    n_ceiling_splits
        Random half splits of the real stimulated cells for the noise ceiling and the matched-size
        scores (:mod:`course_lib.metrics.references`); 0 turns both off.
    include_ceiling
        Report the ceiling rows (model ``"noise_ceiling"``) and the normalised scores; ``False`` keeps
        only the ``_matched`` rows of the predictions (a benchmark computes the ceiling once per
        held-out type and normalises later).
    seed
        Seeds the bootstrap, the PCA, the subsampling and the splits; the same seed gives the same
        frame.
    verbose
        Show a progress bar over models and cell types.
    keys
        Obs columns and labels (:class:`course_lib.keys.ObsKeys`).

    Returns
    -------
    pandas.DataFrame
        Columns ``model, cell_type, metric, value, ci_low, ci_high``: one row per model, cell type and
        metric (names in :mod:`course_lib.metrics` and :data:`~course_lib.metrics.METRICS`). For the
        mean-based metrics ``value`` is the bootstrap mean and ``ci_low``/``ci_high`` its interval; the
        other metrics have NaN bounds. With the ceiling: rows of model ``noise_ceiling`` (mean over the
        splits, the central range of the splits as bounds), ``<metric>_matched`` rows of every
        prediction and, when the baselines are among the predictions, ``<metric>_norm_identity`` and
        ``<metric>_norm_mean_shift`` rows. If ctrl has ``obs[keys.cell_type]``, each of its cell types
        is scored on its own (every input must hold it); otherwise ``cell_type`` is ``"all"``. A
        metric that cannot be computed for one prediction (e.g. a constant one) is NaN for it alone,
        with an :class:`~course_lib.metrics.UndefinedMetricWarning` naming the model.

    Notes
    -----
    Within one cell type, the DEGs of stim vs ctrl, the PCA of ctrl + stim, the stim embedding and the
    resampled stim means are computed once and shared by every model, so the models are compared on
    the same genes, in the same space and against the same resamples.
    """
    predictions = named_predictions(predictions, keys.predicted)
    seed = require_seed(seed)
    require_positive_int(n_top_degs, what="n_top_degs")
    check_bootstrap(n_bootstrap, bootstrap_fraction, confidence)
    check_bandwidth(kde_bandwidth)
    require_positive_int(n_ceiling_splits, what="n_ceiling_splits", minimum=0)
    options = ScoringOptions(
        n_top_degs=n_top_degs,
        n_bootstrap=n_bootstrap,
        bootstrap_fraction=bootstrap_fraction,
        confidence=confidence,
        n_components=n_components,
        max_cells=max_cells,
        squared_energy=squared_energy,
        kde_bandwidth=kde_bandwidth,
    )
    sets = evaluation_sets(ctrl, stim, predictions, keys=keys)
    splits = {}
    for subset in sets:
        check_n_components(n_components, (subset.ctrl.n_obs + subset.stim.n_obs, subset.ctrl.n_vars))
        if n_ceiling_splits:
            splits[subset.cell_type] = half_splits(
                subset.stim.n_obs, n_ceiling_splits, seed=seed, what=f"stim ({subset.cell_type})"
            )
    rows = []
    with tqdm(total=len(sets) * len(predictions), desc="evaluate", disable=not verbose) as progress:
        for subset in sets:
            stim_matrix = as_dense(subset.stim.X)
            matrices = {name: as_dense(pred.X) for name, pred in subset.predictions.items()}
            shared = _shared_for(shared_response, subset.cell_type, subset.ctrl.n_vars)
            context = ScoringContext(as_dense(subset.ctrl.X), stim_matrix, options, seed)
            scores = context.score(stim_matrix, matrices, shared=shared)
            if n_ceiling_splits:
                by_split = split_scores(
                    context,
                    stim_matrix,
                    matrices,
                    splits[subset.cell_type],
                    ceiling=include_ceiling,
                    shared=shared,
                )
                if include_ceiling:
                    ceiling = ceiling_summary(by_split, confidence=confidence)
                    scores += [
                        (CEILING, row.metric, row.value, row.ci_low, row.ci_high)
                        for row in ceiling.itertuples()
                    ]
                scores += matched_rows(by_split)
            rows += [(model, subset.cell_type, *rest) for model, *rest in scores]
            progress.update(len(predictions))
    frame = pd.DataFrame(rows, columns=list(EVALUATE_COLUMNS))
    if n_ceiling_splits and include_ceiling:
        frame = pd.concat([frame, normalised_scores(frame)], ignore_index=True)
    return frame


def noise_ceiling(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    *,
    n_splits: int = 20,
    shared_response: SharedResponse | None = None,
    seed: int = 0,
    confidence: float = 0.95,
    keys: ObsKeys = DEFAULT_KEYS,
    **scoring,
) -> pd.DataFrame:
    """The best score the data allow: one random half of the real stimulated cells scored as a
    prediction of the other half, with every metric, ``n_splits`` times.

    See :mod:`course_lib.metrics.references` for how half-size groups change each metric and how the
    course compares the ceiling with full-size scores. ``scoring`` takes the scoring options of
    :func:`evaluate` (``n_top_degs``, ``n_components``, ...; the halves are never bootstrapped).

    Returns
    -------
    pandas.DataFrame
        One row per cell type and metric: ``cell_type, metric, value`` (mean over the splits), ``sd``,
        ``ci_low`` and ``ci_high`` (the central ``confidence`` range of the splits), ``n_splits``.
    """
    require_positive_int(n_splits, what="n_splits")
    seed = require_seed(seed)
    options = ScoringOptions(confidence=confidence, **scoring)
    frames = []
    for subset in evaluation_sets(ctrl, stim, {}, keys=keys):
        check_n_components(options.n_components, (subset.ctrl.n_obs + subset.stim.n_obs, subset.ctrl.n_vars))
        splits = half_splits(subset.stim.n_obs, n_splits, seed=seed, what=f"stim ({subset.cell_type})")
        stim_matrix = as_dense(subset.stim.X)
        context = ScoringContext(as_dense(subset.ctrl.X), stim_matrix, options, seed)
        shared = _shared_for(shared_response, subset.cell_type, subset.ctrl.n_vars)
        by_split = split_scores(context, stim_matrix, {}, splits, ceiling=True, shared=shared)
        frames.append(ceiling_summary(by_split, confidence=confidence).assign(cell_type=subset.cell_type))
    table = pd.concat(frames, ignore_index=True).assign(n_splits=n_splits)
    return table[["cell_type", "metric", "value", "sd", "ci_low", "ci_high", "n_splits"]]
