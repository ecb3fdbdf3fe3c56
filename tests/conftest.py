"""Shared fixtures: small synthetic perturbation data sets that every package test can use."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.datasets import synthetic_perturbation


@pytest.fixture
def synthetic():
    """600 cells x 200 genes, three cell types, control and stimulated, log-normalised in ``.X``."""
    return synthetic_perturbation(n_cells=600, n_genes=200, n_cell_types=3, seed=0)


@pytest.fixture(scope="module")
def predicted_type():
    """Control and stimulated cells of one type, and two predictions (a good one and the identity)."""
    adata = synthetic_perturbation(n_cells=400, n_genes=120, n_cell_types=1, seed=2)
    ctrl = adata[adata.obs["condition"] == "control"].copy()
    stim = adata[adata.obs["condition"] == "stimulated"].copy()
    shift = np.asarray(stim.X.mean(axis=0) - ctrl.X.mean(axis=0))
    predictions = {}
    for name, matrix in {"scgen": ctrl.X + 0.9 * shift, "identity": ctrl.X}.items():
        pred = ctrl.copy()
        pred.X = np.asarray(matrix, dtype=np.float32)
        pred.obs["condition"] = "predicted"
        predictions[name] = pred
    return ctrl, stim, predictions
