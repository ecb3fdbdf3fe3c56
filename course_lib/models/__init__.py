"""The course's perturbation models, written from scratch in PyTorch, and their common interface.

Every model takes log-normalised training cells and predicts the stimulated state of a held-out cell
type from its control cells::

    model = Scgen(train, seed=0)            # or Scpram, IdentityBaseline, MeanShiftBaseline
    model.train(n_epochs=10)                # progress bar; model.history holds the losses per epoch
    pred = model.predict(target="CD4 T cells")
    model.save("models/scgen"); model = load("models/scgen", train)

:data:`MODELS` maps the names used by the benchmark and tuning code to the classes.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad

from course_lib._model_base import PerturbationModel, balanced_pools, read_config
from course_lib.baselines import IdentityBaseline, MeanShiftBaseline
from course_lib.models.scgen import Scgen
from course_lib.models.scpram import OTConvergenceWarning, OTNotConvergedError, Scpram

MODELS: dict[str, type[PerturbationModel]] = {
    "scgen": Scgen,
    "scpram": Scpram,
    "identity": IdentityBaseline,
    "mean_shift": MeanShiftBaseline,
}
"""Model name -> class; every class has the same constructor, ``train`` and ``predict`` interface."""


def load(path: str | Path, adata: ad.AnnData, **options) -> PerturbationModel:
    """Load a model saved with ``model.save(path)``, whatever its class, onto ``adata`` (same genes)."""
    name = read_config(path)["model"]
    if name not in MODELS:
        raise ValueError(f"{path} holds an unknown model {name!r}; known: {', '.join(MODELS)}.")
    return MODELS[name].load(path, adata, **options)


__all__ = [
    "MODELS",
    "IdentityBaseline",
    "MeanShiftBaseline",
    "OTConvergenceWarning",
    "OTNotConvergedError",
    "PerturbationModel",
    "Scgen",
    "Scpram",
    "balanced_pools",
    "load",
]
