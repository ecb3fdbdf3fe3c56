"""The look of every figure: the palette, colours for unknown names, figures outside pyplot."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from course_lib import metrics, plotting


@pytest.fixture(scope="module")
def results(predicted_type):
    ctrl, stim, predictions = predicted_type
    return metrics.evaluate(
        ctrl,
        stim,
        predictions,
        n_top_degs=20,
        n_components=10,
        n_bootstrap=20,
        n_ceiling_splits=0,
        verbose=False,
    )


def test_palette_is_one_colour_per_condition_and_model():
    for name in ["control", "stimulated", "predicted", "scgen", "scpram", "identity", "mean_shift"]:
        assert name in plotting.PALETTE
    assert len(set(plotting.PALETTE.values())) == len(plotting.PALETTE)
    assert not set(plotting.FALLBACK_COLORS) & set(plotting.PALETTE.values())


def test_colors_for_keeps_known_colours_and_gives_unknown_names_distinct_ones():
    colors = plotting.colors_for(["scgen", "scgen_tuned", "scpram", "variant_b"])
    assert colors["scgen"] == plotting.PALETTE["scgen"]
    assert colors["scpram"] == plotting.PALETTE["scpram"]
    assert len(set(colors.values())) == 4
    assert plotting.colors_for(["scgen_tuned", "variant_b"]) == {
        "scgen_tuned": colors["scgen_tuned"],
        "variant_b": colors["variant_b"],
    }
    many = plotting.colors_for([f"variant_{i}" for i in range(20)])
    assert set(many.values()) == set(plotting.FALLBACK_COLORS)  # it cycles


def test_figures_stay_out_of_pyplot(predicted_type, results):
    plt.close("all")
    ctrl, stim, predictions = predicted_type
    plotting.metric_bars(results, metrics=["r2_mean_all"])
    plotting.mean_expression_scatter(ctrl, stim, predictions["identity"], model="identity", n_labels=3)
    assert plt.get_fignums() == []
