"""Shared fixtures: a small synthetic perturbation data set that every package test can use."""

from __future__ import annotations

import pytest

from course_lib.datasets import synthetic_perturbation


@pytest.fixture
def synthetic():
    """600 cells x 200 genes, three cell types, control and stimulated, log-normalised in ``.X``."""
    return synthetic_perturbation(n_cells=600, n_genes=200, n_cell_types=3, seed=0)
