"""The course's perturbation models and baselines, written from scratch in PyTorch, with one interface.

Every model takes log-normalised training cells and predicts the stimulated state of a held-out cell
type from its control cells::

    model = Scgen(train, seed=0)            # or Scpram, Cellot, IdentityBaseline, MeanShiftBaseline
    model.train(n_epochs=10)                # progress bar; model.history holds the losses per epoch
    pred = model.predict(target="CD4 T cells")
    model.save("models/scgen"); model = load("models/scgen", train)

Modules: :mod:`~course_lib.models.base` (what every model shares), :mod:`~course_lib.models.baselines`
(identity and mean shift), :mod:`~course_lib.models.vae` (the VAE training core),
:mod:`~course_lib.models.neural` (what the torch models share), :mod:`~course_lib.models.scgen`,
:mod:`~course_lib.models.scpram` and :mod:`~course_lib.models.cellot`.

:data:`MODELS` maps the names used by the benchmark and tuning code to the classes.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad

from course_lib.models.base import (
    Hyperparameter,
    PerturbationModel,
    SavedModelError,
    balanced_pools,
    read_config,
)
from course_lib.models.baselines import IdentityBaseline, MeanShiftBaseline
from course_lib.models.cellot import Cellot
from course_lib.models.neural import TrainingDivergedError
from course_lib.models.scgen import Scgen
from course_lib.models.scpram import OTConvergenceWarning, OTNotConvergedError, Scpram

MODELS: dict[str, type[PerturbationModel]] = {
    "scgen": Scgen,
    "scpram": Scpram,
    "cellot": Cellot,
    "identity": IdentityBaseline,
    "mean_shift": MeanShiftBaseline,
}
"""Model name -> class; every class has the same constructor, ``train`` and ``predict`` interface."""

BASELINES = ("identity", "mean_shift")
"""The models that every comparison of the course includes (a model that does not beat them has
learned nothing about the perturbation)."""


def load(path: str | Path, adata: ad.AnnData, **options) -> PerturbationModel:
    """Load a model saved with ``model.save(path)``, whatever its class, onto ``adata`` (same genes)."""
    name = read_config(path)["model"]
    if name not in MODELS:
        raise ValueError(f"{path} holds an unknown model {name!r}; known: {', '.join(MODELS)}.")
    return MODELS[name].load(path, adata, **options)


__all__ = [
    "BASELINES",
    "MODELS",
    "Cellot",
    "Hyperparameter",
    "IdentityBaseline",
    "MeanShiftBaseline",
    "OTConvergenceWarning",
    "OTNotConvergedError",
    "PerturbationModel",
    "SavedModelError",
    "Scgen",
    "Scpram",
    "TrainingDivergedError",
    "balanced_pools",
    "load",
]
