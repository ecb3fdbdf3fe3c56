"""Tests of the helpers behind the generalisation chapter: provenance per run, live against committed
results, and the one-figure benchmark summary."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from course_lib import plotting  # noqa: E402
from course_lib.baselines import IdentityBaseline, MeanShiftBaseline  # noqa: E402
from course_lib.benchmark import compare_results, provenance_table, run_benchmark, seed_intervals  # noqa: E402
from course_lib.datasets import synthetic_perturbation  # noqa: E402

REGISTRY = {"identity": IdentityBaseline, "mean_shift": MeanShiftBaseline}
GRID = {
    "models": [],
    "seeds": (0,),
    "variants": ["balanced"],
    "min_cells": 40,
    "n_top_genes": 60,
    "evaluation": {"n_bootstrap": 5, "n_components": 5, "n_top_degs": 20},
}


@pytest.fixture(scope="module")
def counts():
    return synthetic_perturbation(n_cells=900, n_genes=150, n_cell_types=3, seed=3)


def baselines(counts, path, **grid):
    return run_benchmark(counts, {**GRID, **grid}, results_path=path, registry=REGISTRY, verbose=False)


def fake_results(n_seeds: int = 3) -> pd.DataFrame:
    """Benchmark rows: two models, two cell types, ``n_seeds`` seeds, two metrics; value = seed + offset."""
    rows = [
        (model, cell_type, "balanced", seed, "{}", metric, offset + seed, np.nan, np.nan)
        for model, offset in [("scgen", 0.0), ("identity", 10.0)]
        for cell_type in ["A", "B"]
        for seed in range(n_seeds)
        for metric in ["delta_pearson_top100", "e_distance"]
    ]
    columns = [
        "model",
        "cell_type",
        "variant",
        "seed",
        "hyperparameters",
        "metric",
        "value",
        "ci_low",
        "ci_high",
    ]
    return pd.DataFrame(rows, columns=columns)


def test_provenance_table_has_one_row_per_run_with_versions(counts, tmp_path):
    path = tmp_path / "results.csv"
    baselines(counts, path, cell_types=["type_0"])
    table = baselines(counts, path, cell_types=["type_0", "type_1"])
    runs = provenance_table(table.attrs["provenance"])
    assert list(runs.index) == [1, 2]
    assert {"started", "finished", "wall_seconds", "grid_cells_done", "course_lib", "numpy"} <= set(
        runs.columns
    )
    assert runs["finished"].notna().all() and (runs["grid_cells_done"] == 2).all()
    assert provenance_table({"runs": []}).empty


def test_compare_results_matches_the_same_grid_cells_and_setup(counts, tmp_path):
    committed = baselines(counts, tmp_path / "committed.csv", cell_types=["type_0", "type_1"])
    live = baselines(counts, tmp_path / "live.csv", cell_types=["type_1"])
    compared = compare_results(live, committed, metrics=["r2_mean_all", "e_distance"])
    assert compared.attrs["same_setup"]
    assert len(compared) == 2 * 2 and set(compared["cell_type"]) == {"type_1"}
    assert np.allclose(compared["difference"], 0.0)  # baselines reproduce exactly

    other = baselines(counts, tmp_path / "other.csv", cell_types=["type_1"], n_top_genes=50)
    unmatched = compare_results(other, committed, metrics=["e_distance"])
    assert not unmatched.attrs["same_setup"] and unmatched["committed"].isna().all()


def test_seed_intervals_feed_the_summary_figure():
    results = fake_results()
    summary = seed_intervals(results, metrics=["e_distance"], by=("model", "cell_type"))
    assert sorted(summary["mean"]) == [1.0, 1.0, 11.0, 11.0] and (summary["n_seeds"] == 3).all()
    figure = plotting.benchmark_summary(results)
    assert len(figure.axes) == 2
    for axes in figure.axes:
        assert axes.get_title() and axes.get_xlabel() == "held-out cell type" and axes.get_ylabel()
        assert [label.get_text() for label in axes.get_xticklabels()] == ["A", "B"]
    assert figure.legends and [t.get_text() for t in figure.legends[0].get_texts()] == ["identity", "scgen"]


def test_summary_figure_handles_one_seed_and_refuses_missing_metrics():
    figure = plotting.benchmark_summary(fake_results(n_seeds=1))
    assert "1 to 1 seeds" in figure.axes[0].get_title()
    with pytest.raises(KeyError, match="mv_kde"):
        plotting.benchmark_summary(fake_results(), metrics=["mv_kde"])
    with pytest.raises(KeyError, match="imbalanced"):
        plotting.benchmark_summary(fake_results(), variant="imbalanced")
