"""What a benchmark runs: :class:`BenchmarkGrid` and its expansion into grid points (:func:`plan`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anndata as ad

from course_lib.checks import require_fraction, require_positive_int, require_seed
from course_lib.datasets import read_package_text
from course_lib.experiment import (
    VARIANTS,
    DataSettings,
    GridPoint,
    check_evaluation_options,
    model_spec,
    model_specs,
    resolve_cell_types,
)
from course_lib.keys import DEFAULT_KEYS, ObsKeys
from course_lib.metrics import CEILING
from course_lib.models import PerturbationModel

PROFILES_FILE = "profiles.json"
"""The book's execution profiles in the package data (``learner``: the defaults; ``small``: the test
profile), read by :meth:`BenchmarkGrid.from_profile` and by the chapters' test run."""


def read_profiles() -> dict[str, dict[str, Any]]:
    """The execution profiles: name -> chapter parameters (``fraction``, ``n_epochs``, ``n_seeds``, ...)."""
    return json.loads(read_package_text(PROFILES_FILE))


@dataclass(frozen=True)
class BenchmarkGrid:
    """What to run: models x hyperparameters x held-out cell types x data variants x seeds.

    Parameters
    ----------
    models
        Names in the model registry (:data:`course_lib.models.MODELS` by default). The baselines
        :data:`course_lib.models.BASELINES` are added when missing, and so is the noise ceiling (one
        point per held-out type, variant and seed) unless ``evaluation`` turns it off with
        ``n_ceiling_splits=0``.
    cell_types
        Cell types to hold out in turn; ``None`` means every eligible type, i.e. every type with at
        least ``min_cells`` control and ``min_cells`` stimulated cells (see
        :func:`course_lib.experiment.cell_type_eligibility`).
    seeds
        Each seed trains every model anew (weights, minibatches, sampling) and seeds the bootstrap of
        the metrics.
    variants
        Names from :data:`course_lib.experiment.VARIANTS`.
    hyperparameters
        Model name -> one setting (a mapping) or several settings (a list of mappings); each setting is a
        point of the grid. Each name goes to the call whose signature has it: the constructor
        (``n_latent``, ``dropout``, ...), ``train`` (``lr``, ``batch_size``, ``patience``, ...) or
        ``predict`` (scPRAM's ``ratio``, ...).
    n_epochs
        Training epochs of every model (the baselines accept and ignore them).
    min_cells
        Eligibility threshold, counted on the data passed to the runner before ``fraction`` thins it: a
        held-out type needs enough controls to query and enough stimulated cells to score against.
        With the default 100, Kang 2018's megakaryocytes (52 control, 66 stimulated cells) are
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
        Keyword arguments for :func:`course_lib.metrics.evaluate` (``n_bootstrap``, ``n_top_degs``,
        ``n_ceiling_splits``, ...).
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
        """The grid of an execution profile (its ``fraction``, ``n_epochs``, ``n_seeds``; see
        :func:`read_profiles`). Fields of ``overrides`` replace the profile's and the defaults."""
        profiles = read_profiles()
        if profile not in profiles:
            raise ValueError(f"unknown profile {profile!r}; the profiles are {sorted(profiles)}.")
        settings = dict(profiles[profile])
        if "n_seeds" in settings:
            settings["seeds"] = tuple(range(settings.pop("n_seeds")))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{key: value for key, value in settings.items() if key in known}, **overrides})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> BenchmarkGrid:
        """A grid from a mapping of its fields (e.g. a workflow's config); raises for unknown fields."""
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"unknown grid field(s) {unknown}; BenchmarkGrid has {fields}.")
        return cls(**values)

    @property
    def data(self) -> DataSettings:
        """The data settings shared by every point of the grid."""
        return DataSettings(
            fraction=self.fraction,
            stim_fraction=self.stim_fraction,
            n_top_genes=self.n_top_genes,
            data_seed=self.data_seed,
        )

    @property
    def with_ceiling(self) -> bool:
        """Whether the grid holds the noise-ceiling points (``evaluation["n_ceiling_splits"]`` not 0)."""
        return self.evaluation.get("n_ceiling_splits", 20) != 0

    def as_json(self) -> dict[str, Any]:
        """The grid as plain JSON values (for provenance and workflow configs)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))


def as_grid(grid: BenchmarkGrid | Mapping[str, Any] | None) -> BenchmarkGrid:
    """A :class:`BenchmarkGrid` from a grid, a mapping of its fields or ``None`` (the defaults)."""
    if grid is None:
        return BenchmarkGrid()
    return grid if isinstance(grid, BenchmarkGrid) else BenchmarkGrid.from_mapping(grid)


def plan(
    adata: ad.AnnData,
    grid: BenchmarkGrid,
    *,
    registry: Mapping[str, type[PerturbationModel]] | None = None,
    keys: ObsKeys = DEFAULT_KEYS,
) -> tuple[list[GridPoint], list[str]]:
    """Check the whole grid against the data and the registry; return its points and every eligible type.

    The eligible types (at least ``min_cells`` control and stimulated cells) are the types whose real
    responses the response discrimination compares, whichever of them the grid holds out.

    Points are ordered by variant, held-out type, seed and model (the noise ceiling first), so that a
    runner can share one split between the points of a (variant, type). Every check runs here,
    before any training: unknown models, hyperparameters, cell types, variants, seeds, fractions and
    evaluation options.
    """
    unknown = [variant for variant in grid.variants if variant not in VARIANTS]
    if unknown or isinstance(grid.variants, str) or not grid.variants:
        raise ValueError(
            f"variants must be a non-empty list drawn from {list(VARIANTS)}, not {grid.variants!r}."
        )
    if isinstance(grid.seeds, str | int) or not grid.seeds:
        raise ValueError(f"seeds must be a non-empty list of non-negative integers, not {grid.seeds!r}.")
    seeds = [require_seed(seed, what="every seed") for seed in dict.fromkeys(grid.seeds)]
    require_seed(grid.data_seed, what="data_seed")
    require_fraction(grid.fraction, what="fraction")
    require_fraction(grid.stim_fraction, what="stim_fraction")
    require_positive_int(grid.n_top_genes, what="n_top_genes", minimum=2)
    require_positive_int(grid.min_cells, what="min_cells")
    check_evaluation_options(grid.evaluation)
    specs = model_specs(grid.models, grid.hyperparameters, n_epochs=grid.n_epochs, registry=registry)
    if grid.with_ceiling:
        specs = [model_spec(CEILING), *specs]
    cell_types = resolve_cell_types(adata, grid.cell_types, min_cells=grid.min_cells, keys=keys)
    eligible = resolve_cell_types(adata, None, min_cells=grid.min_cells, keys=keys)
    points = [
        GridPoint(spec, cell_type, variant, int(seed))
        for variant in dict.fromkeys(grid.variants)
        for cell_type in cell_types
        for seed in seeds
        for spec in specs
    ]
    return points, eligible
