"""Figures of a benchmark: intervals per held-out type, model and variant, and the one-figure summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from course_lib import plotting
from course_lib.benchmark import seed_intervals
from course_lib.experiment import ROW_COLUMNS


def fake_results(n_seeds: int = 3) -> pd.DataFrame:
    """Benchmark rows: two models, two cell types, ``n_seeds`` seeds, two metrics; value = seed + offset."""
    rows = [
        (model, cell_type, "balanced", seed, "{}", metric, offset + seed, np.nan, np.nan)
        for model, offset in [("scgen", 0.0), ("identity", 10.0)]
        for cell_type in ["A", "B"]
        for seed in range(n_seeds)
        for metric in ["delta_pearson_top100", "e_distance"]
    ]
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS[:9]))


def test_interval_dots_one_panel_per_model_and_whiskers_only_with_intervals():
    summary = pd.DataFrame(
        {
            "model": ["scgen", "scgen", "scpram", "scpram"],
            "variant": ["balanced", "imbalanced"] * 2,
            "cell_type": "B cells",
            "metric": "e_distance",
            "mean": [1.0, 2.0, 1.5, 2.5],
            "ci_low": [0.5, np.nan, 1.0, 2.0],
            "ci_high": [1.5, np.nan, 2.0, 3.0],
        }
    )
    figure = plotting.interval_dots(summary, metric="e_distance")
    assert [axes.get_title() for axes in figure.axes] == ["scgen", "scpram"]
    assert all(axes.get_xlabel().startswith("e_distance") for axes in figure.axes)
    assert figure.legends and figure.get_suptitle()
    with pytest.raises(KeyError, match="no rows"):
        plotting.interval_dots(summary, metric="mv_kde")


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
    assert "(1 seed per marker)" in " ".join(figure.axes[0].get_title().split())
    with pytest.raises(KeyError, match="mv_kde"):
        plotting.benchmark_summary(fake_results(), metrics=["mv_kde"])
    with pytest.raises(KeyError, match="imbalanced"):
        plotting.benchmark_summary(fake_results(), variant="imbalanced")


def test_summary_figure_of_one_held_out_type_keeps_room_for_its_titles():
    results = fake_results()
    figure = plotting.benchmark_summary(results[results["cell_type"] == "A"])
    assert figure.get_figwidth() == pytest.approx(plotting.benchmark.MIN_SUMMARY_WIDTH)
    assert plotting.benchmark_summary(results).get_figwidth() <= plotting.style.MAX_WIDTH
