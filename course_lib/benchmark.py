"""Benchmark runner: every model on every held-out cell type, seed and data variant, in one tidy table.

One *grid cell* is a (model, hyperparameters, held-out cell type, data variant, seed) combination. For
each, the runner trains the model on every cell except the stimulated cells of the held-out type,
predicts those cells from the type's control cells and scores the prediction with
:func:`course_lib.metrics.evaluate`. The identity and mean-shift baselines are part of every grid.

Results go to a CSV file (one row per grid cell and metric) with a JSON sidecar that records how they
were computed (package versions, data hashes, the grid, dates). Both are rewritten atomically after
every (variant, cell type, seed), so an interrupted run leaves complete files, and a second call with
the same ``results_path`` skips the grid cells that are already there.

Command line (``python -m course_lib.benchmark --help``)::

    python -m course_lib.benchmark                   # the full benchmark -> data/benchmark/kang2018_loto.csv
    python -m course_lib.benchmark --profile small   # the test-sized slice (book/profiles.json)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from itertools import groupby
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats
from tqdm.auto import tqdm

import course_lib
from course_lib._validation import require_nonempty, require_obs_keys, require_value
from course_lib.datasets import REPO_DATA, _read_registry, kang2018, sha256sum
from course_lib.metrics import evaluate
from course_lib.preprocessing import holdout_mask, imbalance, preprocess, subsample

VARIANTS = ("balanced", "imbalanced")
"""Data variants: all cells, or all controls plus ``stim_fraction`` of each type's stimulated cells."""

BASELINES = ("identity", "mean_shift")
"""Models that every grid includes, whatever its ``models`` say."""

KEY_COLUMNS = ("model", "cell_type", "variant", "seed", "hyperparameters")
"""Columns that identify a grid cell; a resumed run skips every key already in the results file."""

RESULT_COLUMNS = (
    *KEY_COLUMNS,
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "train_seconds",
    "predict_seconds",
    "run_id",
)
"""Columns of the results table, in order."""

HEADLINE_METRICS = ("r2_mean_all", "delta_pearson_top100", "e_distance")
"""One metric each for the means, the response and the distribution; see :mod:`course_lib.metrics`."""

DEFAULT_RESULTS = REPO_DATA / "benchmark" / "kang2018_loto.csv"
"""Where the command line writes the full leave-one-cell-type-out benchmark of the Kang 2018 data."""

PROFILES = REPO_DATA.parent / "book" / "profiles.json"
"""The book's execution profiles; ``--profile small`` reads its ``fraction``, ``n_epochs`` and ``n_seeds``."""


_RUNNER_ARGUMENTS = frozenset(
    {"self", "adata", "seed", "target", "query", "n_epochs", "verbose", "on_epoch_end"}
    | {"condition_key", "cell_type_key", "ctrl_key", "stim_key", "pred_key"}
)
"""Arguments the runner passes to every model itself; a grid may not set them as hyperparameters."""


@dataclass(frozen=True)
class BenchmarkGrid:
    """What to run: models x hyperparameters x held-out cell types x data variants x seeds.

    Parameters
    ----------
    models
        Names in the model registry (:data:`course_lib.models.MODELS` by default). The baselines
        :data:`BASELINES` are added when missing.
    cell_types
        Cell types to hold out in turn; ``None`` means every eligible type, i.e. every type with at
        least ``min_cells`` control and ``min_cells`` stimulated cells (see :func:`cell_type_eligibility`).
    seeds
        Each seed trains every model anew (weights, minibatches, sampling) and seeds the bootstrap of
        the metrics.
    variants
        Names from :data:`VARIANTS`.
    hyperparameters
        Model name -> one setting (a mapping) or several settings (a list of mappings); each setting is a
        point of the grid. Each name goes to the call whose signature has it: the constructor
        (``n_latent``, ``dropout``, ...), ``train`` (``lr``, ``batch_size``, ``patience``, ...) or
        ``predict`` (scPRAM's ``ratio``, ...).
    n_epochs
        Training epochs of every model (the baselines accept and ignore them).
    min_cells
        Eligibility threshold, counted on the data passed to :func:`run_benchmark` before ``fraction``
        thins it: a held-out type needs enough controls to query and enough stimulated cells to score
        against. With the default 100, Kang 2018's megakaryocytes (52 control, 66 stimulated cells) are
        excluded; the seven other types are eligible.
    fraction
        Share of the cells of every (condition, cell type) group to keep (seeded by ``data_seed``);
        1 keeps all. The book's small profile uses 0.15.
    stim_fraction
        Share of the stimulated cells of every type that the imbalanced variant keeps (exactly, seeded).
    n_top_genes
        Highly variable genes, selected on the training cells of each (variant, held-out type) only.
    data_seed
        Seeds the data: the ``fraction`` subsample and the imbalanced variant. It is the same for every
        model seed, so that seeds vary the models, not the data.
    evaluation
        Keyword arguments for :func:`course_lib.metrics.evaluate` (``n_bootstrap``, ``n_top_degs``, ...).
    """

    models: Sequence[str] = ("scgen", "scpram")
    cell_types: Sequence[str] | None = None
    seeds: Sequence[int] = (0, 1, 2)
    variants: Sequence[str] = VARIANTS
    hyperparameters: Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]] = field(
        default_factory=dict
    )
    n_epochs: int = 10
    min_cells: int = 100
    fraction: float = 1.0
    stim_fraction: float = 0.2
    n_top_genes: int = 2000
    data_seed: int = 0
    evaluation: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_profile(cls, profile: str, **overrides) -> BenchmarkGrid:
        """The grid of a ``book/profiles.json`` profile (its ``fraction``, ``n_epochs``, ``n_seeds``).

        Fields of ``overrides`` replace the profile's and the defaults.
        """
        profiles = json.loads(PROFILES.read_text())
        if profile not in profiles:
            raise ValueError(f"unknown profile {profile!r}; {PROFILES} defines {sorted(profiles)}.")
        settings = dict(profiles[profile])
        if "n_seeds" in settings:
            settings["seeds"] = tuple(range(settings.pop("n_seeds")))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in settings.items() if key in known}, **overrides)


@dataclass(frozen=True)
class _ModelSpec:
    """One model with one hyperparameter setting, sorted into the calls that take each parameter."""

    name: str
    cls: type
    init: dict[str, Any]
    train: dict[str, Any]
    predict: dict[str, Any]
    n_epochs: int
    settings: str  # canonical JSON of the setting and n_epochs: the grid key's ``hyperparameters``


@dataclass(frozen=True)
class _Cell:
    """One grid cell."""

    spec: _ModelSpec
    variant: str
    cell_type: str
    seed: int

    @property
    def key(self) -> tuple:
        return (self.spec.name, self.cell_type, self.variant, self.seed, self.spec.settings)


def cell_type_eligibility(
    adata: ad.AnnData,
    *,
    min_cells: int = 100,
    condition_key: str = "condition",
    cell_type_key: str = "cell_type",
    ctrl_key: str = "control",
    stim_key: str = "stimulated",
) -> pd.DataFrame:
    """Cells per type and condition, and whether the type can be held out (``eligible``).

    Rows follow the categories of ``obs[cell_type_key]`` (or the order of appearance).

    A type is eligible when it has at least ``min_cells`` control and ``min_cells`` stimulated cells:
    its controls are the query of the prediction and its stimulated cells the truth it is scored
    against; with fewer, the metrics (means, DEGs, a 30-component PCA) mostly measure sampling noise.
    """
    require_obs_keys(adata, [condition_key, cell_type_key])
    column = adata.obs[cell_type_key]
    order = column.cat.categories if isinstance(column.dtype, pd.CategoricalDtype) else column.unique()
    counts = pd.crosstab(column.astype(str), adata.obs[condition_key].astype(str))
    rows = [str(cell_type) for cell_type in order if str(cell_type) in counts.index]
    table = counts.reindex(index=rows, columns=[ctrl_key, stim_key], fill_value=0)
    table["eligible"] = (table[[ctrl_key, stim_key]] >= min_cells).all(axis=1)
    return table


def _content_sha256(adata: ad.AnnData, columns: Sequence[str], *, counts_layer: str = "counts") -> str:
    """sha256 over the counts that preprocessing reads, cell and gene names and the ``columns`` of obs.

    The counts are ``layers[counts_layer]`` when present, else ``.X`` (as in
    :func:`course_lib.preprocessing.preprocess`), in CSR form.
    """
    matrix = sp.csr_matrix(adata.layers[counts_layer] if counts_layer in adata.layers else adata.X)
    digest = hashlib.sha256()
    for part in (matrix.data, matrix.indices, matrix.indptr):
        digest.update(np.ascontiguousarray(part).tobytes())
    for labels in (adata.obs_names, adata.var_names, *(adata.obs[column].astype(str) for column in columns)):
        digest.update("\n".join(labels).encode())
    return digest.hexdigest()


def _registry() -> Mapping[str, type]:
    """:data:`course_lib.models.MODELS`, imported on first use (it imports torch)."""
    from course_lib.models import MODELS

    return MODELS


def _route(cls: type, setting: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Sort a hyperparameter setting into the calls that take each name: ``{"init", "train", "predict"}``.

    Hyperparameters are spread over three calls (the architecture over the constructor, the learning
    rate over ``train``, scPRAM's attention ratio over ``predict``); routing by signature lets a grid
    or a search space name them all alike. Names the runner sets itself (:data:`_RUNNER_ARGUMENTS`)
    are not hyperparameters. Raises before any training for a name that no call takes.
    """
    calls = {"init": cls, "train": cls.train, "predict": cls.predict}
    options = {
        call: [
            name
            for name, parameter in inspect.signature(function).parameters.items()
            if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
            and name not in _RUNNER_ARGUMENTS
        ]
        for call, function in calls.items()
    }
    routed: dict[str, dict[str, Any]] = {call: {} for call in calls}
    for name, value in setting.items():
        call = next((call for call, names in options.items() if name in names), None)
        if call is None:
            known = sorted({option for names in options.values() for option in names})
            raise ValueError(f"{cls.__name__} takes no parameter {name!r}; its hyperparameters: {known}.")
        routed[call][name] = value
    return routed


def _settings_list(name: str, settings) -> list[Mapping[str, Any]]:
    settings = [settings] if isinstance(settings, Mapping) else list(settings)
    if not settings or not all(isinstance(setting, Mapping) for setting in settings):
        raise ValueError(
            f"hyperparameters[{name!r}] must be a mapping or a non-empty list of mappings, not {settings!r}."
        )
    return settings


def _model_spec(name: str, cls: type, setting: Mapping[str, Any], n_epochs: int) -> _ModelSpec:
    """Send each hyperparameter to the constructor, ``train`` or ``predict``, whichever names it."""
    routed = _route(cls, setting)
    try:
        settings = json.dumps({**setting, "n_epochs": n_epochs}, sort_keys=True)
    except TypeError as error:
        raise ValueError(
            f"hyperparameters of {name!r} must be JSON values (numbers, strings, lists): {error}"
        ) from None
    return _ModelSpec(name, cls, **routed, n_epochs=n_epochs, settings=settings)


def _model_specs(
    models: Sequence[str],
    hyperparameters: Mapping[str, Any],
    registry: Mapping[str, type],
    n_epochs: int,
) -> list[_ModelSpec]:
    """Every (model, setting) of a grid, baselines included; raises on unknown names before any work."""
    if isinstance(models, str):
        raise ValueError(f"models must be a list of names, not the string {models!r}.")
    names = list(dict.fromkeys([*models, *BASELINES]))
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; the registry knows {sorted(registry)}.")
    stray = [name for name in hyperparameters if name not in names]
    if stray:
        raise ValueError(
            f"hyperparameters given for {stray}, which the grid does not run; its models: {names}."
        )
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be at least 1, not {n_epochs}.")
    return [
        _model_spec(name, registry[name], setting, n_epochs)
        for name in names
        for setting in _settings_list(name, hyperparameters.get(name, {}))
    ]


def _resolve_cell_types(
    adata: ad.AnnData, cell_types: Sequence[str] | None, *, min_cells: int, keys: Mapping[str, str]
) -> list[str]:
    table = cell_type_eligibility(
        adata,
        min_cells=min_cells,
        **{name: keys[name] for name in ("condition_key", "cell_type_key", "ctrl_key", "stim_key")},
    )
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
            known = table.index.tolist()
            raise ValueError(
                f"cell type {cell_type!r} not found in obs[{keys['cell_type_key']!r}]; known: {known}."
            )
        if cell_type not in eligible:
            counts = table.loc[cell_type, [keys["ctrl_key"], keys["stim_key"]]].to_dict()
            raise ValueError(
                f"cell type {cell_type!r} has {counts} cells, fewer than min_cells={min_cells} in a "
                f"condition; eligible types: {eligible}. Lower min_cells to hold it out anyway."
            )
    return list(dict.fromkeys(cell_types))


def _plan(
    adata: ad.AnnData, grid: BenchmarkGrid, registry: Mapping[str, type], keys: Mapping[str, str]
) -> list[_Cell]:
    """Check the whole grid against the data and the registry; return its cells, grouped for sharing."""
    unknown = [variant for variant in grid.variants if variant not in VARIANTS]
    if unknown or isinstance(grid.variants, str) or not grid.variants:
        raise ValueError(
            f"variants must be a non-empty list drawn from {list(VARIANTS)}, not {grid.variants!r}."
        )
    seeds = list(dict.fromkeys(grid.seeds))
    if not seeds or not all(isinstance(seed, int | np.integer) for seed in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers, not {grid.seeds!r}.")
    if not 0 < grid.fraction <= 1 or not 0 < grid.stim_fraction <= 1:
        raise ValueError(
            f"fraction and stim_fraction must be in (0, 1], not {grid.fraction}, {grid.stim_fraction}."
        )
    specs = _model_specs(grid.models, grid.hyperparameters, registry, grid.n_epochs)
    cell_types = _resolve_cell_types(adata, grid.cell_types, min_cells=grid.min_cells, keys=keys)
    return [
        _Cell(spec, variant, cell_type, int(seed))
        for variant in dict.fromkeys(grid.variants)
        for cell_type in cell_types
        for seed in seeds
        for spec in specs
    ]


@dataclass
class _HeldOut:
    """One (variant, held-out type) experiment, preprocessed: what every model and seed shares."""

    train: ad.AnnData
    ctrl: ad.AnnData
    stim: ad.AnnData


def _variant_mask(
    counts: ad.AnnData, variant: str, grid: BenchmarkGrid, keys: Mapping[str, str]
) -> np.ndarray:
    """Cells of the variant: all of them (balanced), or all controls and a share of the stimulated cells."""
    if variant == "balanced":
        return np.ones(counts.n_obs, dtype=bool)
    kept = imbalance(
        counts,
        stim_fraction=grid.stim_fraction,
        condition_key=keys["condition_key"],
        cell_type_key=keys["cell_type_key"],
        stim_key=keys["stim_key"],
        seed=grid.data_seed,
    )
    return counts.obs_names.isin(kept.obs_names)


def _held_out(
    counts: ad.AnnData, in_variant: np.ndarray, cell_type: str, grid: BenchmarkGrid, keys: Mapping[str, str]
) -> _HeldOut:
    """Hold out the stimulated cells of ``cell_type`` and preprocess, choosing genes on the training cells.

    The truth is every stimulated cell of the type, in both variants: the variant changes what a model
    learns from, not what it is scored against.
    """
    hidden = holdout_mask(
        counts,
        cell_type,
        condition_key=keys["condition_key"],
        cell_type_key=keys["cell_type_key"],
        stim_key=keys["stim_key"],
    )
    training = in_variant & ~hidden
    used = training | hidden
    data = preprocess(counts[used], fit_on=training[used], n_top_genes=grid.n_top_genes)
    training, hidden = training[used], hidden[used]
    obs = data.obs
    is_query = (obs[keys["cell_type_key"]].astype(str) == cell_type) & (
        obs[keys["condition_key"]].astype(str) == keys["ctrl_key"]
    )
    return _HeldOut(
        train=data[training].copy(),
        ctrl=data[training & is_query.to_numpy()].copy(),
        stim=data[hidden].copy(),
    )


def _trained(spec: _ModelSpec, train: ad.AnnData, *, seed: int, keys: Mapping[str, str]) -> tuple[Any, float]:
    """Build ``spec``'s model on ``train`` and train it (quietly); return it and the seconds training took."""
    model = spec.cls(train, seed=seed, **keys, **spec.init)
    start = time.perf_counter()
    model.train(n_epochs=spec.n_epochs, verbose=False, **spec.train)
    return model, time.perf_counter() - start


def _evaluation_options(options: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """Check a grid's ``evaluation`` options against :func:`course_lib.metrics.evaluate`, before training."""
    accepted = set(inspect.signature(evaluate).parameters) - {"ctrl", "stim", "predictions"}
    runner_sets = {"seed", "verbose", *keys}
    wrong = sorted(set(options) - (accepted - runner_sets))
    if wrong:
        raise ValueError(
            f"evaluation option(s) {wrong} not allowed; evaluate takes {sorted(accepted - runner_sets)} "
            f"(the runner sets {sorted(runner_sets)} itself: each grid cell is scored with its own seed)."
        )
    return dict(options)


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename.

    Readers (and a resumed run) see either the old file or the new one, never a partial write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(temporary)
    try:
        os.chmod(descriptor, 0o644)  # mkstemp creates owner-only files; results are for everyone to read
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def provenance_path(results_path: str | Path) -> Path:
    """The JSON sidecar of a results table: same name, ``.json`` suffix."""
    return Path(results_path).with_suffix(".json")


def load_results(results_path: str | Path) -> pd.DataFrame:
    """Read a results table written by :func:`run_benchmark`; its provenance is in ``attrs["provenance"]``."""
    results_path = Path(results_path)
    sidecar = provenance_path(results_path)
    missing = [str(path) for path in (results_path, sidecar) if not path.exists()]
    if missing:
        raise FileNotFoundError(
            f"{' and '.join(missing)} not found: a benchmark result is a CSV table with a JSON provenance "
            "sidecar."
        )
    table = pd.read_csv(
        results_path, dtype={"model": str, "cell_type": str, "variant": str, "hyperparameters": str}
    )
    table.attrs["provenance"] = json.loads(sidecar.read_text())
    return table


def _versions() -> dict[str, str]:
    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    packages = {
        name: installed(name) for name in ("torch", "numpy", "scipy", "pandas", "anndata", "scanpy", "pot")
    }
    return {"course_lib": course_lib.__version__, "python": platform.python_version(), **packages}


def _start_record(
    results_path: Path, setup: dict, grid: BenchmarkGrid, data_files: Mapping[str, str], n_cells: int
) -> tuple[pd.DataFrame, dict, dict]:
    """Read earlier results at ``results_path`` (checking their ``setup``) and open a new run record."""
    sidecar = provenance_path(results_path)
    if results_path.exists() or sidecar.exists():
        previous = load_results(results_path)
        provenance = previous.attrs.pop("provenance")
        if provenance.get("setup") != setup:
            earlier = provenance.get("setup", {})
            differ = sorted(key for key in {*earlier, *setup} if earlier.get(key) != setup.get(key))
            raise ValueError(
                f"{results_path} holds results computed with other data or settings (differing: {differ}); "
                "resuming would mix them. Choose another results_path, or delete the file and its .json "
                "sidecar."
            )
    else:
        previous = pd.DataFrame(columns=list(RESULT_COLUMNS))
        provenance = {
            "description": "Benchmark results written by course_lib.benchmark.run_benchmark; one row per "
            "grid cell (model, hyperparameters, held-out cell type, data variant, seed) and metric. "
            "Metric definitions: course_lib.metrics. run_id points into 'runs' below.",
            "setup": setup,
            "runs": [],
        }
    record = {
        "run_id": 1 + max((run["run_id"] for run in provenance["runs"]), default=0),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "finished": None,
        "versions": _versions(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": _torch_threads(),
        "data_files_sha256": dict(data_files),
        "grid": json.loads(json.dumps(dataclasses.asdict(grid), default=list)),
        "grid_cells_to_run": n_cells,
        "grid_cells_done": 0,
        "wall_seconds": 0.0,
    }
    provenance["runs"].append(record)
    return previous, provenance, record


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _as_grid(grid: BenchmarkGrid | Mapping[str, Any] | None) -> BenchmarkGrid:
    if grid is None or isinstance(grid, BenchmarkGrid):
        return grid or BenchmarkGrid()
    fields = [f.name for f in dataclasses.fields(BenchmarkGrid)]
    unknown = sorted(set(grid) - set(fields))
    if unknown:
        raise ValueError(f"unknown grid field(s) {unknown}; BenchmarkGrid has {fields}.")
    return BenchmarkGrid(**grid)


def run_benchmark(
    adata_counts: ad.AnnData,
    grid: BenchmarkGrid | Mapping[str, Any] | None = None,
    *,
    results_path: str | Path,
    registry: Mapping[str, type] | None = None,
    data_files: Mapping[str, str] | None = None,
    verbose: bool = True,
    condition_key: str = "condition",
    cell_type_key: str = "cell_type",
    ctrl_key: str = "control",
    stim_key: str = "stimulated",
    pred_key: str = "predicted",
) -> pd.DataFrame:
    """Run every cell of ``grid`` that ``results_path`` does not hold yet; return the grid's results.

    For each data variant and held-out cell type T (preprocessing is done once per pair and shared by
    every model and seed): the variant's cells are built (:func:`course_lib.preprocessing.imbalance`
    for ``"imbalanced"``), the stimulated cells of T are held out, genes are filtered and the highly
    variable genes selected on the remaining (training) cells only
    (:func:`course_lib.preprocessing.preprocess` with ``fit_on``). Then, for each seed, every model is
    built on the training cells, trained, asked for ``predict(target=T)``, and all predictions of that
    seed are scored together against T's real control and stimulated cells with
    :func:`course_lib.metrics.evaluate` (seeded with the same seed).

    Parameters
    ----------
    adata_counts
        Raw counts in ``.X`` (or ``layers['counts']``), with condition and cell-type columns in obs,
        e.g. :func:`course_lib.datasets.kang2018`.
    grid
        A :class:`BenchmarkGrid`, a mapping of its fields, or ``None`` for the defaults.
    results_path
        CSV table to extend; its provenance goes to the ``.json`` sidecar beside it
        (:func:`provenance_path`). Existing results must come from the same data and data settings
        (checked before anything runs); their grid cells are skipped.
    registry
        Model name -> class with the course's model interface (``Model(adata, condition_key=...,
        cell_type_key=..., seed=..., **hyperparameters)``, ``.train(...)``, ``.predict(target=...)``);
        default :data:`course_lib.models.MODELS`.
    data_files
        sha256 of the files the data came from, recorded in the provenance next to the hash of the
        data's content (the command line passes the Kang 2018 registry hashes and the cell-type table's).
    verbose
        Show a progress bar over the grid cells.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RESULT_COLUMNS`: the rows of this grid's cells, from earlier runs and this one.
        ``hyperparameters`` is the JSON of the settings that built and trained the model (``n_epochs``
        included); ``train_seconds``/``predict_seconds`` are wall-clock times of that grid cell.
    """
    grid = _as_grid(grid)
    require_nonempty(adata_counts)
    keys = {
        "condition_key": condition_key,
        "cell_type_key": cell_type_key,
        "ctrl_key": ctrl_key,
        "stim_key": stim_key,
        "pred_key": pred_key,
    }
    for value in (ctrl_key, stim_key):
        require_value(adata_counts, condition_key, value)
    cells = _plan(adata_counts, grid, _registry() if registry is None else registry, keys)
    evaluation = {**_evaluation_options(grid.evaluation, keys), "verbose": False, **keys}

    setup = {
        "data_sha256": _content_sha256(adata_counts, [condition_key, cell_type_key]),
        "n_cells": adata_counts.n_obs,
        "n_genes": adata_counts.n_vars,
        **{name: getattr(grid, name) for name in ("fraction", "stim_fraction", "n_top_genes", "data_seed")},
        "evaluation": json.loads(json.dumps(dict(grid.evaluation), sort_keys=True)),
        **keys,
    }
    results_path = Path(results_path)
    table, provenance, record = _start_record(results_path, setup, grid, data_files or {}, len(cells))
    done = set(table[list(KEY_COLUMNS)].itertuples(index=False, name=None))
    pending = [cell for cell in cells if cell.key not in done]
    record["grid_cells_to_run"] = len(pending)
    sidecar = provenance_path(results_path)
    _write_atomic(sidecar, json.dumps(provenance, indent=2))

    counts = adata_counts
    if grid.fraction < 1:
        counts = subsample(
            adata_counts, grid.fraction, groupby=(condition_key, cell_type_key), seed=grid.data_seed
        )
    started = time.perf_counter()
    with tqdm(total=len(pending), desc="benchmark", unit="cell", disable=not verbose) as progress:
        for variant, variant_cells in groupby(pending, key=lambda cell: cell.variant):
            in_variant = _variant_mask(counts, variant, grid, keys)
            for cell_type, type_cells in groupby(variant_cells, key=lambda cell: cell.cell_type):
                held_out = _held_out(counts, in_variant, cell_type, grid, keys)
                for seed, seed_cells in groupby(type_cells, key=lambda cell: cell.seed):
                    seed_cells = list(seed_cells)
                    rows = _run_seed(seed_cells, held_out, seed, keys, evaluation, progress)
                    rows["run_id"] = record["run_id"]
                    table = pd.concat([table, rows], ignore_index=True) if len(table) else rows
                    record["grid_cells_done"] += len(seed_cells)
                    record["wall_seconds"] = round(time.perf_counter() - started, 1)
                    _write_atomic(results_path, table.to_csv(index=False))
                    _write_atomic(sidecar, json.dumps(provenance, indent=2))
    record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write_atomic(sidecar, json.dumps(provenance, indent=2))

    wanted = {cell.key for cell in cells}
    table = table[[key in wanted for key in table[list(KEY_COLUMNS)].itertuples(index=False, name=None)]]
    table = table.reset_index(drop=True)
    table.attrs["provenance"] = provenance
    return table


def _run_seed(
    cells: list[_Cell],
    held_out: _HeldOut,
    seed: int,
    keys: Mapping[str, str],
    evaluation: Mapping[str, Any],
    progress: tqdm,
) -> pd.DataFrame:
    """Train and query every model of one (variant, cell type, seed) and score them in one evaluate call."""
    predictions, timings = {}, {}
    for label, cell in enumerate(cells):
        progress.set_postfix_str(f"{cell.variant} | {cell.cell_type} | seed {seed} | {cell.spec.name}")
        model, train_seconds = _trained(cell.spec, held_out.train, seed=seed, keys=keys)
        start = time.perf_counter()
        predictions[str(label)] = model.predict(target=cell.cell_type, **cell.spec.predict)
        timings[label] = (train_seconds, time.perf_counter() - start)
        progress.update()
    scores = evaluate(held_out.ctrl, held_out.stim, predictions, seed=seed, **evaluation)
    scored = [cells[int(label)] for label in scores["model"]]
    times = np.round([timings[int(label)] for label in scores["model"]], 3)
    return pd.DataFrame(
        {
            "model": [cell.spec.name for cell in scored],
            "cell_type": scores["cell_type"].to_numpy(),
            "variant": [cell.variant for cell in scored],
            "seed": seed,
            "hyperparameters": [cell.spec.settings for cell in scored],
            "metric": scores["metric"].to_numpy(),
            "value": scores["value"].to_numpy(),
            "ci_low": scores["ci_low"].to_numpy(),
            "ci_high": scores["ci_high"].to_numpy(),
            "train_seconds": times[:, 0],
            "predict_seconds": times[:, 1],
        }
    )


def summarise(
    results: pd.DataFrame,
    *,
    metrics: Iterable[str] = HEADLINE_METRICS,
    by: Sequence[str] = ("model", "variant"),
) -> pd.DataFrame:
    """Mean and standard deviation over seeds of the per-seed mean over held-out cell types.

    Returns one row per ``by`` group and metric, with columns ``mean``, ``sd`` (across seeds, ddof=1;
    NaN for one seed) and ``n_seeds``.
    """
    metrics = list(metrics)
    selected = results[results["metric"].isin(metrics)]
    per_seed = selected.groupby([*by, "metric", "seed"], observed=True)["value"].mean()
    summary = per_seed.groupby([*by, "metric"], observed=True).agg(mean="mean", sd="std", n_seeds="count")
    return summary.reset_index()


def seed_intervals(
    results: pd.DataFrame,
    *,
    metrics: Iterable[str] = HEADLINE_METRICS,
    by: Sequence[str] = ("model", "variant"),
    confidence: float = 0.95,
) -> pd.DataFrame:
    """:func:`summarise` plus a t interval over seeds: mean ± t_(n−1) · sd / sqrt(n), n the seeds.

    Seeds are the independent repeats (each retrains every model), so the interval describes the
    uncertainty of the mean over training runs. Adds ``ci_low`` and ``ci_high`` (NaN for one seed).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}.")
    summary = summarise(results, metrics=metrics, by=by)
    n_seeds = summary["n_seeds"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        quantile = stats.t.ppf(0.5 + confidence / 2.0, np.where(n_seeds > 1, n_seeds - 1, np.nan))
        half = quantile * summary["sd"].to_numpy(dtype=float) / np.sqrt(n_seeds)
    summary["ci_low"], summary["ci_high"] = summary["mean"] - half, summary["mean"] + half
    return summary


def provenance_table(provenance: Mapping[str, Any]) -> pd.DataFrame:
    """One row per run recorded in a results sidecar: dates, wall seconds, grid cells, machine, versions.

    A run whose ``finished`` is empty was interrupted; the grid cells it finished are kept in the table
    and a later run with the same ``results_path`` resumes after them.
    """
    rows = [
        {
            "run_id": run["run_id"],
            "started": run.get("started"),
            "finished": run.get("finished"),
            "wall_seconds": run.get("wall_seconds"),
            "grid_cells_done": run.get("grid_cells_done"),
            "grid_cells_to_run": run.get("grid_cells_to_run"),
            "cpu_count": run.get("cpu_count"),
            "torch_threads": run.get("torch_threads"),
            **run.get("versions", {}),
        }
        for run in provenance.get("runs", [])
    ]
    return pd.DataFrame(rows).set_index("run_id") if rows else pd.DataFrame(columns=["run_id"])


def compare_results(
    live: pd.DataFrame, committed: pd.DataFrame, *, metrics: Iterable[str] = HEADLINE_METRICS
) -> pd.DataFrame:
    """The grid cells of ``live`` next to the same cells of ``committed``: ``difference = live - committed``.

    Rows are matched on :data:`KEY_COLUMNS` and the metric, so a committed value is shown only for the
    same model, held-out type, variant, seed and hyperparameters (epochs included), and only when both
    tables were computed from the same data and data settings (their provenance ``setup``: data hash,
    ``fraction``, genes, ...). Otherwise ``committed`` is NaN; ``attrs["same_setup"]`` says which case
    applies. Same seed, data and thread count give the same numbers; another thread count can change
    the last digits of a trained model's results, never a baseline's.
    """
    setups = [table.attrs.get("provenance", {}).get("setup") for table in (live, committed)]
    same_setup = setups[0] is not None and setups[0] == setups[1]
    columns = [*KEY_COLUMNS, "metric"]
    metrics = list(metrics)
    left = live.loc[live["metric"].isin(metrics), [*columns, "value"]].rename(columns={"value": "live"})
    right = committed.loc[committed["metric"].isin(metrics), [*columns, "value"]]
    right = right.rename(columns={"value": "committed"})
    if not same_setup:  # values of another data setup are not the same grid cells
        right = right.iloc[0:0]
    merged = left.merge(right, on=columns, how="left")
    merged["difference"] = merged["live"] - merged["committed"]
    merged.attrs["same_setup"] = same_setup
    return merged.drop(columns="hyperparameters").reset_index(drop=True)


def kang2018_file_hashes() -> dict[str, str]:
    """sha256 of the Kang 2018 files in ``data/registry.json`` and of the committed cell-type table."""
    members = _read_registry()["kang2018"]["members"]
    hashes = {Path(member).name: spec["sha256"] for member, spec in members.items()}
    labels = REPO_DATA / "kang2018_cell_types.csv"
    if labels.exists():
        hashes[labels.name] = sha256sum(labels)
    return hashes


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: run the leave-one-cell-type-out benchmark on Kang 2018 and print a summary."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.benchmark",
        description="Leave-one-cell-type-out benchmark of the course's models on Kang 2018 (resumable: "
        "grid cells already in the output are skipped). The identity and mean-shift baselines are always "
        "included. Options left out take the profile's value, else BenchmarkGrid's default.",
    )
    add = parser.add_argument
    add("--models", nargs="+", help="model names (default: scgen scpram)")
    add("--cell-types", nargs="+", help="held-out types (default: every eligible type)")
    add("--seeds", nargs="+", type=int, help="model seeds (default: 0 1 2)")
    add("--variants", nargs="+", choices=VARIANTS, help="data variants (default: both)")
    add("--epochs", dest="n_epochs", type=int, help="training epochs (default: 10)")
    add("--min-cells", type=int, help="eligibility: cells per condition (default: 100)")
    add("--fraction", type=float, help="share of the cells of each group to keep (default: 1)")
    add("--n-top-genes", type=int, help="highly variable genes (default: 2000)")
    add("--hyperparameters", type=json.loads, help='JSON, e.g. \'{"scgen": {"n_layers": 1}}\'')
    add("--profile", help="a profile of book/profiles.json, e.g. small (its fraction, epochs, seeds)")
    add("--output", type=Path, help=f"results CSV (default: {DEFAULT_RESULTS}, or *_<profile>.csv)")
    add("--quiet", action="store_true", help="no progress bar")
    args = vars(parser.parse_args(argv))

    profile, output, quiet = args.pop("profile"), args.pop("output"), args.pop("quiet")
    overrides = {name: value for name, value in args.items() if value is not None}
    grid = BenchmarkGrid.from_profile(profile, **overrides) if profile else BenchmarkGrid(**overrides)
    if output is None:
        output = (
            DEFAULT_RESULTS.with_stem(f"{DEFAULT_RESULTS.stem}_{profile}") if profile else DEFAULT_RESULTS
        )
    start = time.perf_counter()
    results = run_benchmark(
        kang2018(), grid, results_path=output, data_files=kang2018_file_hashes(), verbose=not quiet
    )
    print(f"{len(results)} rows in {output} ({time.perf_counter() - start:.0f} s)")
    summary = summarise(results).pivot(index=["model", "variant"], columns="metric", values="mean")
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
