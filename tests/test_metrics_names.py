"""Metric names: labels and better directions of every name the course reports."""

from __future__ import annotations

import pytest

from course_lib import metrics


def test_metric_names_have_labels_and_directions():
    assert metrics.metric_info("r2_mean_top100") == metrics.METRICS["r2_mean_top100"]
    assert metrics.metric_info("mse_mean_all").higher_is_better is False
    assert metrics.metric_info("delta_pearson_top50").higher_is_better is True
    assert "top 50 DEGs" in metrics.metric_info("delta_pearson_top50").label
    assert metrics.metric_info("e_distance").higher_is_better is False
    for name in ["r2_mean", "deg_jaccard_all", "r2_mean_top0", "accuracy_all"]:
        with pytest.raises(KeyError, match="unknown metric"):
            metrics.metric_info(name)
