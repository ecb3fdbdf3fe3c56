"""The unit of work of the course: hold out one cell type, choose genes on the rest, train, predict, score.

Every experiment of the course is made of this protocol, and this module holds it once:

- :func:`cell_type_eligibility` and :func:`resolve_cell_types`: which types can be held out;
- :func:`held_out_split`: the training cells, the query (the held-out type's control cells) and the
  hidden truth (its stimulated cells), with genes chosen on the training cells only;
- :class:`ModelSpec` and :func:`model_spec`: a model of the registry with one hyperparameter setting,
  each parameter routed to the call that takes it (constructor, ``train`` or ``predict``);
- :func:`train_model`: build, train quietly and time one model;
- :class:`GridPoint` and :func:`run_grid_point`: one (model, hyperparameters, held-out type, data
  variant, seed) end to end, returning its tidy result rows.

The benchmark runner (:mod:`course_lib.benchmark`), the tuning (:mod:`course_lib.tuning`), the
cross-study experiment (:mod:`course_lib.crossstudy`) and a workflow engine (one grid point per job)
are thin users of it.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import anndata as ad
import numpy as np
import pandas as pd

from course_lib.checks import as_dense, require_columns, require_fraction, require_positive_int, require_seed
from course_lib.keys import DEFAULT_KEYS, ObsKeys
from course_lib.metrics import CEILING, discrimination_rank, evaluate, gene_means, noise_ceiling
from course_lib.models import BASELINES, MODELS, MeanShiftBaseline, PerturbationModel
from course_lib.preprocessing import holdout_mask, imbalance, preprocess, subsample

VARIANTS = ("balanced", "imbalanced")
"""Data variants: all cells, or all controls plus ``stim_fraction`` of each type's stimulated cells."""

ROW_COLUMNS = (
    "model",
    "cell_type",
    "variant",
    "seed",
    "hyperparameters",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "train_seconds",
    "predict_seconds",
)
"""Columns of the rows that :func:`run_grid_point` returns, in order."""

RUNNER_EVALUATION_OPTIONS = frozenset({"seed", "verbose", "keys", "shared_response", "include_ceiling"})
"""Options of :func:`course_lib.metrics.evaluate` that a grid point sets itself."""


# -- which cell types can be held out ----------------------------------------------------------------


def cell_type_eligibility(
    adata: ad.AnnData, *, min_cells: int = 100, keys: ObsKeys = DEFAULT_KEYS
) -> pd.DataFrame:
    """Cells per type and condition, and whether the type can be held out (``eligible``).

    Rows follow the categories of ``obs[keys.cell_type]`` (or the order of appearance).

    A type is eligible when it has at least ``min_cells`` control and ``min_cells`` stimulated cells:
    its controls are the query of the prediction and its stimulated cells the truth it is scored
    against; with fewer, the metrics (means, DEGs, a 30-component PCA) mostly measure sampling noise.
    """
    require_columns(adata, keys)
    column = adata.obs[keys.cell_type]
    order = column.cat.categories if isinstance(column.dtype, pd.CategoricalDtype) else column.unique()
    counts = pd.crosstab(column.astype(str), adata.obs[keys.condition].astype(str))
    rows = [str(cell_type) for cell_type in order if str(cell_type) in counts.index]
    table = counts.reindex(index=rows, columns=[keys.control, keys.stimulated], fill_value=0)
    table["eligible"] = (table[[keys.control, keys.stimulated]] >= min_cells).all(axis=1)
    return table


def resolve_cell_types(
    adata: ad.AnnData, cell_types: Sequence[str] | None, *, min_cells: int, keys: ObsKeys = DEFAULT_KEYS
) -> list[str]:
    """The held-out types of an experiment, checked: ``cell_types``, or every eligible type for ``None``.

    Raises for an unknown or ineligible type (see :func:`cell_type_eligibility`), with the counts.
    """
    table = cell_type_eligibility(adata, min_cells=min_cells, keys=keys)
    eligible = table.index[table["eligible"]].tolist()
    if cell_types is None:
        if not eligible:
            raise ValueError(
                f"no cell type has {min_cells} control and {min_cells} stimulated cells:\n{table}"
            )
        return eligible
    if isinstance(cell_types, str):
        raise ValueError(f"cell_types must be a list of names or None, not the string {cell_types!r}.")
    for cell_type in cell_types:
        if cell_type not in table.index:
            raise ValueError(
                f"cell type {cell_type!r} not found in obs[{keys.cell_type!r}]; "
                f"known: {table.index.tolist()}."
            )
        if cell_type not in eligible:
            counts = table.loc[cell_type, [keys.control, keys.stimulated]].to_dict()
            raise ValueError(
                f"cell type {cell_type!r} has {counts} cells, fewer than min_cells={min_cells} in a "
                f"condition; eligible types: {eligible}. Lower min_cells to hold it out anyway."
            )
    return list(dict.fromkeys(cell_types))


# -- the split -------------------------------------------------------------------------------------


class HeldOutSplit(NamedTuple):
    """The three AnnData objects of a held-out-type experiment."""

    train: ad.AnnData
    """Every cell a model may learn from: all cells of the variant except the target's stimulated ones."""
    query: ad.AnnData
    """The target's control cells (also in ``train``): what a model transforms."""
    truth: ad.AnnData
    """The target's stimulated cells (all of them, in every variant): used only to score a prediction."""


def held_out_split(
    counts: ad.AnnData,
    cell_type: str,
    *,
    variant: str = "balanced",
    fraction: float = 1.0,
    stim_fraction: float = 0.2,
    n_top_genes: int = 2000,
    seed: int = 0,
    withheld: Sequence[str] = (),
    keys: ObsKeys = DEFAULT_KEYS,
) -> HeldOutSplit:
    """Prepare raw counts for predicting ``cell_type``'s response without leaking it.

    Steps: thin every (condition, cell type) group to ``fraction`` (seeded with ``seed``; 1 keeps all);
    for the ``"imbalanced"`` variant keep all control cells but only ``stim_fraction`` of every type's
    stimulated cells (:func:`course_lib.preprocessing.imbalance`, seeded); hide the stimulated cells of
    ``cell_type`` and of every type in ``withheld``; filter genes, normalise and choose the
    ``n_top_genes`` highly variable genes on the remaining (training) cells only
    (:func:`course_lib.preprocessing.preprocess` with ``fit_on``); split.

    The truth is every stimulated cell of ``cell_type`` in both variants: the variant changes what a
    model learns from, not what it is scored against. ``withheld`` types' stimulated cells are neither
    trained on nor scored (tuning withholds the test type while it scores a validation type).

    Parameters
    ----------
    counts
        Raw counts in ``.X`` (or ``layers['counts']``) with the condition and cell-type columns of
        ``keys``, e.g. :func:`course_lib.datasets.kang2018`.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}.")
    fraction = require_fraction(fraction, what="fraction")
    seed = require_seed(seed)
    require_positive_int(
        n_top_genes, what="n_top_genes (the metrics compare genes with each other)", minimum=2
    )
    if isinstance(withheld, str):
        raise ValueError(f"withheld must be a list of cell types, not the string {withheld!r}.")
    if fraction < 1:
        counts = subsample(counts, fraction, groupby=(keys.condition, keys.cell_type), seed=seed)
    hidden = holdout_mask(counts, cell_type, keys=keys)
    kept = np.ones(counts.n_obs, dtype=bool)
    if variant == "imbalanced":
        kept = counts.obs_names.isin(
            imbalance(counts, stim_fraction=stim_fraction, keys=keys, seed=seed).obs_names
        )
    for other in withheld:
        kept &= ~holdout_mask(counts, other, keys=keys)
    training = kept & ~hidden
    used = training | hidden
    data = preprocess(counts[used], fit_on=training[used], n_top_genes=n_top_genes)
    training, hidden = training[used], hidden[used]
    is_query = keys.is_type(data, cell_type) & keys.is_control(data)
    return HeldOutSplit(
        train=data[training].copy(), query=data[training & is_query].copy(), truth=data[hidden].copy()
    )


def shared_response(
    train: ad.AnnData, cell_type: str, *, seed: int, keys: ObsKeys = DEFAULT_KEYS
) -> np.ndarray:
    """s: the response every training type shares, one value per gene.

    The mean-shift baseline's shift (mean of scGen's balanced stimulated pool minus the control pool,
    in gene space) for the same seed and target; :func:`course_lib.metrics.evaluate` scores the
    type-specific response against it.
    """
    model = MeanShiftBaseline(train, seed=seed, keys=keys)
    return np.asarray(model.predict(target=cell_type).uns["delta"], dtype=np.float64)


def real_changes(
    split: HeldOutSplit, cell_types: Sequence[str], *, keys: ObsKeys = DEFAULT_KEYS
) -> dict[str, np.ndarray]:
    """The real mean change y − c of every type of ``cell_types``, in the split's genes.

    The held-out type's from its truth and query; every other type's from its stimulated and control
    training cells (in the imbalanced variant, from the stimulated cells that variant keeps).
    """
    target = keys.cell_types(split.query)[0]
    changes = {}
    for cell_type in cell_types:
        if cell_type == target:
            stim, ctrl = split.truth, split.query
        else:
            of_type = keys.is_type(split.train, cell_type)
            stim = split.train[of_type & keys.is_stimulated(split.train)]
            ctrl = split.train[of_type & keys.is_control(split.train)]
            if stim.n_obs == 0 or ctrl.n_obs == 0:
                raise ValueError(
                    f"{cell_type!r} has no control or no stimulated training cells to compare with."
                )
        changes[cell_type] = gene_means(stim) - gene_means(ctrl)
    return changes


# -- models and their hyperparameters --------------------------------------------------------------


def model_class(
    name: str, registry: Mapping[str, type[PerturbationModel]] | None = None
) -> type[PerturbationModel]:
    """The class of model ``name`` in ``registry`` (default :data:`course_lib.models.MODELS`)."""
    registry = MODELS if registry is None else registry
    if name not in registry:
        raise KeyError(f"unknown model {name!r}; the registry knows {', '.join(map(repr, registry))}.")
    return registry[name]


def route(cls: type[PerturbationModel], setting: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Sort a hyperparameter setting into the calls that take each name: ``{"init", "train", "predict"}``.

    Hyperparameters are spread over three calls (the architecture over the constructor, the learning
    rate over ``train``, scPRAM's attention ratio over ``predict``); routing by the model's declared
    :meth:`~course_lib.models.PerturbationModel.hyperparameters` lets a grid or a search space name them
    all alike. Raises before any training for a name that no call takes.
    """
    declared = cls.hyperparameters()
    routed: dict[str, dict[str, Any]] = {"init": {}, "train": {}, "predict": {}}
    for name, value in setting.items():
        if name not in declared:
            raise ValueError(
                f"{cls.__name__} takes no parameter {name!r}; its hyperparameters: {sorted(declared)}."
            )
        routed[declared[name].call][name] = value
    return routed


def default_setting(cls: type[PerturbationModel], names: Sequence[str]) -> dict[str, Any]:
    """The values that ``cls`` uses for the hyperparameters ``names`` when they are not passed."""
    declared = cls.hyperparameters()
    unknown = [name for name in names if name not in declared]
    if unknown:
        raise ValueError(
            f"{cls.__name__} takes no parameter {unknown}; its hyperparameters: {sorted(declared)}."
        )
    return {name: declared[name].default for name in names}


@dataclass(frozen=True)
class ModelSpec:
    """One model of the registry with one hyperparameter setting, sorted into the calls that take it.

    ``cls`` is ``None`` for the noise ceiling (:data:`course_lib.metrics.CEILING`), a grid point
    without a model.
    """

    name: str
    cls: type[PerturbationModel] | None
    init: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    predict: dict[str, Any] = field(default_factory=dict)
    n_epochs: int = 10
    settings: str = "{}"
    """Canonical JSON of the setting and ``n_epochs``: the ``hyperparameters`` column of a result row."""


def model_spec(
    name: str,
    setting: Mapping[str, Any] | None = None,
    *,
    n_epochs: int = 10,
    registry: Mapping[str, type[PerturbationModel]] | None = None,
) -> ModelSpec:
    """The :class:`ModelSpec` of model ``name`` with ``setting``; raises for unknown names or values
    that are not JSON (numbers, strings, lists), before any training."""
    if name == CEILING:
        return ModelSpec(CEILING, None)
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be at least 1, not {n_epochs}.")
    setting = dict(setting or {})
    cls = model_class(name, registry)
    routed = route(cls, setting)
    try:
        settings = json.dumps({**setting, "n_epochs": n_epochs}, sort_keys=True)
    except TypeError as error:
        raise ValueError(
            f"hyperparameters of {name!r} must be JSON values (numbers, strings, lists): {error}"
        ) from None
    return ModelSpec(name, cls, **routed, n_epochs=n_epochs, settings=settings)


def model_specs(
    models: Sequence[str],
    hyperparameters: Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]],
    *,
    n_epochs: int,
    registry: Mapping[str, type[PerturbationModel]] | None = None,
) -> list[ModelSpec]:
    """Every (model, setting) of a grid, the baselines included; raises on unknown names before any work.

    ``hyperparameters`` maps a model name to one setting or a list of settings.
    """
    if isinstance(models, str):
        raise ValueError(f"models must be a list of names, not the string {models!r}.")
    names = list(dict.fromkeys([*models, *BASELINES]))
    for name in names:
        model_class(name, registry)
    stray = [name for name in hyperparameters if name not in names]
    if stray:
        raise ValueError(
            f"hyperparameters given for {stray}, which the grid does not run; its models: {names}."
        )
    specs = []
    for name in names:
        settings = hyperparameters.get(name, {})
        settings = [settings] if isinstance(settings, Mapping) else list(settings)
        if not settings or not all(isinstance(setting, Mapping) for setting in settings):
            raise ValueError(
                f"hyperparameters[{name!r}] must be a mapping or a non-empty list of mappings, "
                f"not {settings!r}."
            )
        specs += [model_spec(name, setting, n_epochs=n_epochs, registry=registry) for setting in settings]
    return specs


def train_model(
    spec: ModelSpec, train: ad.AnnData, *, seed: int, keys: ObsKeys = DEFAULT_KEYS, **train_options
) -> tuple[PerturbationModel, float]:
    """Build ``spec``'s model on ``train`` and train it quietly; return it and the wall-clock seconds
    training took. ``train_options`` (e.g. ``on_epoch_end``) go to ``train`` with the spec's own."""
    model = spec.cls(train, seed=seed, keys=keys, **spec.init)
    start = time.perf_counter()
    model.train(n_epochs=spec.n_epochs, verbose=False, **spec.train, **train_options)
    return model, time.perf_counter() - start


def check_evaluation_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check the options a grid passes to :func:`course_lib.metrics.evaluate`, before any training.

    The options that a grid point sets itself (:data:`RUNNER_EVALUATION_OPTIONS`) are refused: each
    grid point is scored with its own seed.
    """
    accepted = set(inspect.signature(evaluate).parameters) - {"ctrl", "stim", "predictions"}
    allowed = accepted - RUNNER_EVALUATION_OPTIONS
    wrong = sorted(set(options) - allowed)
    if wrong:
        raise ValueError(
            f"evaluation option(s) {wrong} not allowed; evaluate takes {sorted(allowed)} (a grid point sets "
            f"{sorted(RUNNER_EVALUATION_OPTIONS)} itself: it is scored with its own seed)."
        )
    return dict(options)


# -- one grid point ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSettings:
    """How the data of every grid point of a benchmark are made from the raw counts.

    See :func:`held_out_split`; ``data_seed`` seeds the ``fraction`` subsample and the imbalanced
    variant, the same for every model seed, so that seeds vary the models, not the data.
    """

    fraction: float = 1.0
    stim_fraction: float = 0.2
    n_top_genes: int = 2000
    data_seed: int = 0

    def split(
        self, counts: ad.AnnData, cell_type: str, variant: str, *, keys: ObsKeys = DEFAULT_KEYS
    ) -> HeldOutSplit:
        """:func:`held_out_split` of ``cell_type`` in ``variant`` with these settings."""
        return held_out_split(
            counts,
            cell_type,
            variant=variant,
            fraction=self.fraction,
            stim_fraction=self.stim_fraction,
            n_top_genes=self.n_top_genes,
            seed=self.data_seed,
            keys=keys,
        )


@dataclass(frozen=True)
class GridPoint:
    """One (model with hyperparameters, held-out cell type, data variant, seed) of a benchmark grid."""

    spec: ModelSpec
    cell_type: str
    variant: str
    seed: int

    @property
    def key(self) -> tuple[str, str, str, int, str]:
        """``(model, cell_type, variant, seed, hyperparameters)``: what identifies the point in a table."""
        return (self.spec.name, self.cell_type, self.variant, self.seed, self.spec.settings)

    def describe(self) -> str:
        """A short name for messages and progress bars."""
        return f"{self.spec.name} | {self.cell_type} | {self.variant} | seed {self.seed}"


class GridPointError(RuntimeError):
    """A model failed at one grid point (diverged training, a non-finite prediction, an OT solver that
    did not converge); the message names the model and the point."""

    def __init__(self, point: GridPoint, problem: str):
        super().__init__(f"{point.describe()}: {problem}")
        self.point = point


def _prediction_of(point: GridPoint, split: HeldOutSplit, keys: ObsKeys) -> tuple[ad.AnnData, float, float]:
    """Train the point's model and predict its held-out type; raise :class:`GridPointError` on failure."""
    try:
        model, train_seconds = train_model(point.spec, split.train, seed=point.seed, keys=keys)
        start = time.perf_counter()
        prediction = model.predict(target=point.cell_type, **point.spec.predict)
        predict_seconds = time.perf_counter() - start
    except (RuntimeError, ValueError, FloatingPointError, KeyError, IndexError) as error:
        raise GridPointError(point, f"{type(error).__name__}: {error}") from error
    values = as_dense(prediction.X)
    if not np.isfinite(values).all():
        n_bad = int(values.size - np.isfinite(values).sum())
        raise GridPointError(
            point, f"the prediction of {point.spec.name} holds {n_bad} NaN or infinite values."
        )
    return prediction, train_seconds, predict_seconds


def run_grid_point(
    counts: ad.AnnData,
    point: GridPoint,
    *,
    data: DataSettings = DataSettings(),
    evaluation: Mapping[str, Any] | None = None,
    compare_types: Sequence[str] | None = None,
    split: HeldOutSplit | None = None,
    keys: ObsKeys = DEFAULT_KEYS,
) -> pd.DataFrame:
    """Run one grid point end to end and return its tidy result rows (columns :data:`ROW_COLUMNS`).

    The split comes from ``data`` (or is passed in, to share it between points of the same held-out
    type and variant). A model point trains the model on the split's training cells
    (:func:`train_model`, timed), predicts the held-out type from its control cells (timed) and scores
    the prediction against the truth with :func:`course_lib.metrics.evaluate` (seeded with the point's
    seed; the shared response for the type-specific metrics is :func:`shared_response`; the matched-size
    scores for the normalised scores are included, the ceiling is not). With ``compare_types`` (the
    held-out types of the benchmark), it adds ``discrimination_rank_all``: the rank of the type's own
    real change among those types' changes (:func:`course_lib.metrics.discrimination_rank`).

    The :data:`course_lib.metrics.CEILING` point trains nothing: its rows are
    :func:`course_lib.metrics.noise_ceiling` of the truth (with the same seed and scoring options).

    Raises :class:`GridPointError` when the model fails (training diverges, the prediction is not
    finite, ...), so that a runner can record the point as failed and go on.
    """
    evaluation = check_evaluation_options(evaluation or {})
    split = data.split(counts, point.cell_type, point.variant, keys=keys) if split is None else split
    shared = shared_response(split.train, point.cell_type, seed=point.seed, keys=keys)
    if point.spec.cls is None:
        scoring = {
            name: value
            for name, value in evaluation.items()
            if name not in ("n_ceiling_splits", "n_bootstrap")
        }
        ceiling = noise_ceiling(
            split.query,
            split.truth,
            n_splits=evaluation.get("n_ceiling_splits", 20),
            shared_response=shared,
            seed=point.seed,
            keys=keys,
            **scoring,
        )
        scores = ceiling.assign(model=CEILING)[["model", "cell_type", "metric", "value", "ci_low", "ci_high"]]
        timings = (np.nan, np.nan)
    else:
        prediction, *timings = _prediction_of(point, split, keys)
        try:
            scores = evaluate(
                split.query,
                split.truth,
                {point.spec.name: prediction},
                seed=point.seed,
                shared_response=shared,
                include_ceiling=False,
                verbose=False,
                keys=keys,
                **evaluation,
            )
        except (ValueError, KeyError) as error:  # the prediction fails evaluate's input checks
            message = error.args[0] if error.args else type(error).__name__
            reason = f"the prediction of {point.spec.name} cannot be scored: {message}"
            raise GridPointError(point, reason) from error
        if compare_types is not None:
            rank = discrimination_rank(
                gene_means(prediction) - gene_means(split.query),
                real_changes(split, compare_types, keys=keys),
                point.cell_type,
            )
            scores.loc[len(scores)] = [
                point.spec.name,
                point.cell_type,
                "discrimination_rank_all",
                rank,
                np.nan,
                np.nan,
            ]
    rows = scores.assign(
        model=point.spec.name,
        variant=point.variant,
        seed=point.seed,
        hyperparameters=point.spec.settings,
        train_seconds=round(timings[0], 3),
        predict_seconds=round(timings[1], 3),
    )
    return rows[list(ROW_COLUMNS)].reset_index(drop=True)
