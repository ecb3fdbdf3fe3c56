"""Figures of a hyperparameter search: every trial, a grid's heat map and the parameter importances."""

from __future__ import annotations

import pytest
from conftest import FakeModel
from optuna.distributions import FloatDistribution

from course_lib import plotting, tuning
from course_lib.datasets import synthetic_perturbation
from course_lib.models import MODELS


@pytest.fixture(scope="module")
def cells():
    return synthetic_perturbation(n_cells=600, n_genes=120, n_cell_types=3, seed=3)


def search(cells, **options):
    settings = {
        "test_type": "type_0",
        "validation_type": "type_1",
        "n_epochs": 3,
        "n_top_genes": 100,
        "min_cells": 30,
    }
    settings |= {
        "registry": {**MODELS, "fake": FakeModel},
        "verbose": False,
        "space": {"quality": (0.2, 1.0), "scale": (0.5, 1.0)},
    }
    return tuning.tune(cells, "fake", **{**settings, **options})


def test_figures_have_titles_and_labels(cells):
    grid = search(cells)
    tpe = search(
        cells,
        search="tpe",
        space={"quality": FloatDistribution(0, 1), "scale": FloatDistribution(0, 2)},
        n_trials=6,
    )
    history = plotting.tuning_history(tpe)
    heat = plotting.tuning_grid(grid)
    importances = plotting.tuning_importances(tpe)
    for figure in (history, heat, importances):
        axes = figure.axes[0]
        assert "fake" in axes.get_title() and axes.get_xlabel() and axes.get_ylabel()
    assert [text.get_text() for text in heat.axes[0].texts]  # one number per grid cell
    assert len(heat.axes[0].texts) == 4
    assert [tick.get_text() for tick in importances.axes[0].get_yticklabels()] != []
    with pytest.raises(ValueError, match="two parameters"):
        plotting.tuning_grid(search(cells, space={"scale": (0.5, 1.0)}))
