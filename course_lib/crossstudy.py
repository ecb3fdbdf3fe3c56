"""Cross-study extrapolation: predict the stimulated state of cells measured in another study.

A model trained on one study (A) is asked for the response of control cells from a second study (B),
whose measurements differ by a technical batch effect. No second real IFN-beta PBMC study is
available offline, so the course **simulates** study B from real cells: a seeded, stratified subset of
the Kang 2018 cells is split off (never used for training) and its raw counts pass through a simulated
technical batch effect (:func:`simulate_second_study`). The cells, their biology and their response
are real; the batch effect is simulated, with known parameters, so the chapter can say exactly what
the models had to overcome.

The batch effect has two parts, both applied to the counts by binomial thinning:

- gene-wise capture efficiency: study B's protocol captures the transcripts of gene g with its own
  efficiency ``e_g = min(1, m · exp(σ z_g))``, ``z_g ~ N(0, 1)`` (log-normal around the median m,
  capped at 1). After normalisation to a fixed total this multiplies every gene by its own factor,
  which shifts log-expression gene by gene: a batch effect that no per-cell scaling removes;
- sequencing depth: B is sequenced less deeply; every captured UMI survives with probability ``d``.

Both are one thinning: each UMI of gene g in a study-B cell is kept independently with probability
``p_g = d · e_g``, so a count ``x`` becomes ``Binomial(x, p_g)`` (integers, never above ``x``).

:func:`cross_study_experiment` trains every model on study A, then predicts B's stimulated cells from
B's control cells, once as measured and once after scGen's batch removal, and scores both against
B's real stimulated cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from course_lib.checks import as_dense, require_nonempty, require_seed, require_value
from course_lib.experiment import check_evaluation_options, model_specs, resolve_cell_types, train_model
from course_lib.keys import DEFAULT_KEYS, ObsKeys
from course_lib.metrics import evaluate
from course_lib.preprocessing import preprocess, subsample

STUDY_A = "kang2018"
"""Label in ``obs[study_key]`` of the cells that stay as measured (the training study)."""

STUDY_B = "simulated_study_b"
"""Label in ``obs[study_key]`` of the split-off cells with the simulated batch effect."""

CORRECTIONS = ("none", "scgen_batch_removal")
"""How study B's control cells reach the models: as measured, or aligned to study A by scGen first."""

CROSS_STUDY_COLUMNS = (
    "model",
    "hyperparameters",
    "correction",
    "seed",
    "cell_type",
    "metric",
    "value",
    "ci_low",
    "ci_high",
)
"""Columns of the frame that :func:`cross_study_experiment` returns."""


def capture_efficiencies(
    n_genes: int, *, median: float = 0.6, sigma: float = 0.4, seed: int | np.random.SeedSequence = 0
) -> np.ndarray:
    """Gene-wise capture efficiencies ``e_g = min(1, median · exp(sigma · z_g))``, ``z_g ~ N(0, 1)``.

    Log-normal around ``median`` with log-scale spread ``sigma``, capped at 1 (a transcript cannot be
    captured more than once). With the defaults about 10% of the genes reach the cap.
    """
    if not 0 < median <= 1 or sigma < 0:
        raise ValueError(f"median must be in (0, 1] and sigma >= 0, not {median} and {sigma}.")
    z = np.random.default_rng(seed).standard_normal(n_genes)
    return np.minimum(1.0, median * np.exp(sigma * z))


def thin_counts(counts, keep: float | np.ndarray, *, seed: int | np.random.SeedSequence = 0) -> sp.csr_matrix:
    """Binomial thinning: every UMI of gene g survives independently with probability ``keep[g]``.

    ``x -> Binomial(x, keep_g)``: the result is an integer matrix, never above the input, whose
    expected value is ``keep_g · x``. ``keep`` is one probability for all genes or one per gene.
    """
    counts = sp.csr_matrix(counts, dtype=np.float64)
    keep = np.broadcast_to(np.asarray(keep, dtype=np.float64), (counts.shape[1],))
    if np.any((keep < 0) | (keep > 1)):
        raise ValueError("keep probabilities must lie in [0, 1].")
    if np.any(counts.data < 0) or not np.array_equal(counts.data, np.round(counts.data)):
        raise ValueError("thin_counts expects raw counts (non-negative integers).")
    rng = np.random.default_rng(seed)
    thinned = counts.copy()
    thinned.data = rng.binomial(counts.data.astype(np.int64), keep[counts.indices]).astype(np.float64)
    thinned.eliminate_zeros()
    return thinned.astype(np.float32)


def simulate_second_study(
    adata_counts: ad.AnnData,
    *,
    fraction: float = 0.3,
    capture_median: float = 0.6,
    capture_sigma: float = 0.4,
    depth_fraction: float = 0.7,
    seed: int = 0,
    study_key: str = "study",
    keys: ObsKeys = DEFAULT_KEYS,
    counts_layer: str = "counts",
) -> ad.AnnData:
    """Split off a simulated second study B from real cells and give its counts a technical batch effect.

    Study B is ``fraction`` of the cells of every (condition, cell type) group, drawn with ``seed``
    (:func:`course_lib.preprocessing.subsample`); the other cells form study A and keep their counts.
    B's counts are thinned gene by gene (see the module docstring): each UMI of gene g survives with
    probability ``depth_fraction · e_g``, with ``e_g`` from :func:`capture_efficiencies`
    (``capture_median``, ``capture_sigma``). **The batch effect is simulated**; the cells are real.

    Parameters
    ----------
    adata_counts
        Raw counts in ``layers[counts_layer]`` or ``.X``, e.g. :func:`course_lib.datasets.kang2018`.
    fraction
        Share of every group that goes to study B; below 0.5, so that study A is the larger study of
        every cell type (scGen's batch removal aligns each type to its largest batch).

    Returns
    -------
    anndata.AnnData
        Every cell, raw counts in ``.X`` (B's thinned), ``obs[study_key]`` = :data:`STUDY_A` or
        :data:`STUDY_B`, ``var["capture_efficiency"]`` the ``e_g`` of study B, and the parameters
        in ``uns["simulated_study_b"]``.
    """
    require_nonempty(adata_counts)
    if not 0 < fraction < 0.5:
        raise ValueError(
            f"fraction must be in (0, 0.5) so that study A stays the larger study, not {fraction}."
        )
    if not 0 < depth_fraction <= 1:
        raise ValueError(f"depth_fraction must be in (0, 1], not {depth_fraction}.")
    counts = sp.csr_matrix(
        adata_counts.layers[counts_layer] if counts_layer in adata_counts.layers else adata_counts.X,
        dtype=np.float32,
    )
    study_b = adata_counts.obs_names.isin(
        subsample(adata_counts, fraction, groupby=(keys.condition, keys.cell_type), seed=seed).obs_names
    )
    capture_seed, thinning_seed = np.random.SeedSequence(seed).spawn(2)
    efficiency = capture_efficiencies(
        adata_counts.n_vars, median=capture_median, sigma=capture_sigma, seed=capture_seed
    )
    thinned = thin_counts(counts[study_b], depth_fraction * efficiency, seed=thinning_seed)
    combined = sp.vstack([counts[~study_b], thinned]).tocsr()
    order = np.concatenate([np.flatnonzero(~study_b), np.flatnonzero(study_b)])
    result = ad.AnnData(
        X=combined[np.argsort(order)],
        obs=adata_counts.obs.copy(),
        var=adata_counts.var.copy(),
    )
    result.obs[study_key] = pd.Categorical(np.where(study_b, STUDY_B, STUDY_A), [STUDY_A, STUDY_B])
    result.var["capture_efficiency"] = efficiency
    result.uns["simulated_study_b"] = {
        "note": "Simulated technical batch effect on real cells; not a real second study.",
        "fraction": fraction,
        "capture_median": capture_median,
        "capture_sigma": capture_sigma,
        "depth_fraction": depth_fraction,
        "seed": seed,
    }
    return result


def _require_larger_study_a(
    adata: ad.AnnData, cell_types: Sequence[str], study_key: str, keys: ObsKeys
) -> None:
    """Raise unless study A has more control cells than study B of every type that is scored."""
    controls = adata.obs[keys.is_control(adata)]
    sizes = pd.crosstab(controls[keys.cell_type].astype(str), controls[study_key].astype(str))
    smaller = [t for t in cell_types if sizes.loc[t].get(STUDY_A, 0) <= sizes.loc[t].get(STUDY_B, 0)]
    if smaller:
        raise ValueError(
            f"study A has no more control cells than study B for {smaller}; scGen's batch removal aligns "
            "each type to its largest study, which must be the training study A."
        )


def _aligned_controls(
    corrector, train: ad.AnnData, ctrl: ad.AnnData, study_key: str, keys: ObsKeys
) -> ad.AnnData:
    """Study B's controls after scGen's batch removal, fitted on the controls of both studies.

    Only control cells take part: study A's type means would otherwise mix in its stimulated cells and
    the alignment would move B's controls part of the way towards the stimulated state. Each type is
    aligned to its largest study, A (checked by :func:`_require_larger_study_a`). scGen's decoder is
    linear and can return slightly negative values; log-normalised expression is never negative, so
    they are set to 0 before the models read the aligned cells.
    """
    controls = train[keys.is_control(train)]
    both = ad.concat([controls, ctrl], merge="same")
    corrected = corrector.remove_batch_effect(both, batch_key=study_key)
    aligned = corrected[ctrl.obs_names].copy()
    aligned.X = np.maximum(as_dense(aligned.X), 0.0)
    return aligned


def cross_study_experiment(
    adata_counts: ad.AnnData,
    *,
    models: Sequence[str] = ("scgen", "scpram"),
    seeds: Sequence[int] = (0,),
    n_epochs: int = 10,
    hyperparameters: Mapping[str, Any] | None = None,
    cell_types: Sequence[str] | None = None,
    min_cells: int = 30,
    n_top_genes: int = 2000,
    map_back: bool = True,
    evaluation: Mapping[str, Any] | None = None,
    registry: Mapping[str, type] | None = None,
    verbose: bool = True,
    study_key: str = "study",
    keys: ObsKeys = DEFAULT_KEYS,
) -> pd.DataFrame:
    """Train on study A; predict study B's stimulated cells from its controls, with and without correction.

    Genes are selected on study A (the training study) and both studies are normalised alike
    (:func:`course_lib.preprocessing.preprocess`). For every seed, each model (the identity and
    mean-shift baselines always included) is trained on all of study A, then asked for the stimulated
    state of study B's control cells (``predict(query=...)``: the pools use every training cell,
    since A holds every type's response), in two ways (:data:`CORRECTIONS`):

    ``none``
        B's controls as measured.
    ``scgen_batch_removal``
        B's controls aligned to study A first: scGen (the grid's first scGen setting, trained on A
        with the same seed) encodes the controls of both studies and shifts each study's latent codes,
        per cell type, onto study A's mean (:meth:`course_lib.models.Scgen.remove_batch_effect`).
        The model then predicts from the aligned cells, so its prediction lives in study A's
        measurement space. With ``map_back`` (default) it is brought back to study B's: the predicted
        change ``prediction - aligned`` is added to the measured cell, cell by cell. B's real
        stimulated cells exist only in B's space; scoring an A-space prediction against them would
        score the batch effect, not the model (``map_back=False`` shows that).

    Every prediction is scored against B's real stimulated cells with :func:`course_lib.metrics.evaluate`
    per cell type (types with at least ``min_cells`` control and stimulated cells in study B, or
    ``cell_types``).

    Parameters
    ----------
    adata_counts
        Raw counts of both studies with ``obs[study_key]`` (e.g. :func:`simulate_second_study`).
    models, hyperparameters, registry
        As in :class:`course_lib.benchmark.BenchmarkGrid` (one setting per model is typical); ``models``
        must include ``"scgen"``, which does the batch removal.
    seeds
        A non-empty list of non-negative integers; each trains every model anew.

    Returns
    -------
    pandas.DataFrame
        Columns ``model, hyperparameters, correction, seed, cell_type, metric, value, ci_low, ci_high``.
    """
    for value in (STUDY_A, STUDY_B):
        require_value(adata_counts, study_key, value)
    if "scgen" not in models:
        raise ValueError(
            f"models must include 'scgen': its batch removal is the correction; got {list(models)}."
        )
    if isinstance(seeds, str | int) or not seeds:
        raise ValueError(f"seeds must be a non-empty list of non-negative integers, not {seeds!r}.")
    seeds = [require_seed(seed, what="every seed") for seed in seeds]
    specs = model_specs(models, hyperparameters or {}, n_epochs=n_epochs, registry=registry)
    evaluation = {
        "n_ceiling_splits": 0,
        **check_evaluation_options(evaluation or {}),
        "verbose": False,
        "keys": keys,
    }
    is_a = adata_counts.obs[study_key].astype(str).to_numpy() == STUDY_A
    cell_types = resolve_cell_types(adata_counts[~is_a], cell_types, min_cells=min_cells, keys=keys)
    _require_larger_study_a(adata_counts, cell_types, study_key, keys)

    data = preprocess(adata_counts, fit_on=is_a, n_top_genes=n_top_genes)
    train = data[is_a].copy()
    study_b = data[~is_a]
    in_types = np.isin(keys.cell_types(study_b), cell_types)
    ctrl = study_b[in_types & keys.is_control(study_b)].copy()
    stim = study_b[in_types & keys.is_stimulated(study_b)].copy()

    frames = []
    with tqdm(
        total=len(seeds) * len(specs), desc="cross-study", unit="model", disable=not verbose
    ) as progress:
        for seed in seeds:
            trained = []
            for spec in specs:
                trained.append(train_model(spec, train, seed=seed, keys=keys)[0])
                progress.update()
            corrector = trained[[spec.name for spec in specs].index("scgen")]
            aligned = _aligned_controls(corrector, train, ctrl, study_key, keys)
            predictions = {}
            for index, (spec, model) in enumerate(zip(specs, trained, strict=True)):
                predictions[f"{index}|none"] = model.predict(query=ctrl, **spec.predict)
                shifted = model.predict(query=aligned, **spec.predict)
                if map_back:
                    shifted.X = as_dense(ctrl.X) + (as_dense(shifted.X) - as_dense(aligned.X))
                predictions[f"{index}|scgen_batch_removal"] = shifted
            scores = evaluate(ctrl, stim, predictions, seed=seed, **evaluation)
            labels = scores.pop("model").str.split("|", expand=True)
            spec_of = [specs[int(index)] for index in labels[0]]
            frames.append(
                scores.assign(
                    model=[spec.name for spec in spec_of],
                    hyperparameters=[spec.settings for spec in spec_of],
                    correction=labels[1].to_numpy(),
                    seed=seed,
                )
            )
    return pd.concat(frames, ignore_index=True)[list(CROSS_STUDY_COLUMNS)]
