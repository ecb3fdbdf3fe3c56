"""The look of every figure: the palette, colours for unknown names, figures outside pyplot."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.text import Text

from course_lib import metrics, plotting
from course_lib.plotting.style import DPI, FONT_SIZES, MAX_WIDTH, fit_titles, new_figure, panel_grid


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


def test_panel_grid_wraps_onto_rows_within_the_column_width():
    figure, panels = panel_grid(5, panel_size=(2.5, 3.0))
    assert len(panels) == 5 and len(figure.axes) == 6  # two 2.5-inch columns fit 6.8 inches: 3 rows
    assert figure.get_figwidth() <= MAX_WIDTH
    assert [axes.get_visible() for axes in figure.axes] == [True] * 5 + [False]
    figure, panels = panel_grid(2, panel_size=(9.0, 3.0))
    assert figure.get_figwidth() == MAX_WIDTH and len(figure.axes) == 2  # one column, narrowed
    figure, _ = panel_grid(4, panel_size=(1.0, 3.0), max_cols=2)
    assert figure.get_figwidth() == 2.0
    with pytest.raises(ValueError, match="at least one panel"):
        panel_grid(0, panel_size=(1.0, 1.0))


def test_long_titles_are_broken_to_fit_their_panel():
    figure, grid = new_figure(1, 2, panel_size=(3.0, 3.0))
    long = "a title far too long for a panel three inches wide at twelve points"
    grid[0, 0].set_title(long)
    figure.suptitle(long + ", and longer")
    fit_titles(figure)
    assert "\n" in grid[0, 0].get_title() and grid[0, 0].get_title().replace("\n", " ") == long
    assert figure.get_suptitle().count("\n") >= 1


def test_use_course_style_sets_fonts_and_resolution():
    with matplotlib.rc_context():
        plotting.use_course_style()
        assert matplotlib.rcParams["figure.dpi"] == DPI
        assert matplotlib.rcParams["axes.labelsize"] == FONT_SIZES["axes.labelsize"]


def test_label_points_never_overlaps_labels_of_crowded_points():
    """Six points closer together than a label is tall: every label drawn lies inside the axes and
    clear of the others, and the first ones given are placed first."""
    figure, ((axes,),) = new_figure(panel_size=(4, 3))
    x, y = np.linspace(0, 0.05, 6), np.linspace(0, 0.05, 6)
    axes.scatter(x, y)
    axes.set(xlim=(-1, 1), ylim=(-1, 1))
    labels = plotting.label_points(axes, x, y, [f"GENE{i}" for i in range(6)])
    renderer = figure.canvas.get_renderer()
    boxes = [Text.get_window_extent(label, renderer) for label in labels]
    frame = axes.get_window_extent(renderer)
    assert [label.get_text() for label in labels][:4] == ["GENE0", "GENE1", "GENE2", "GENE3"]
    for i, box in enumerate(boxes):
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
        assert not any(box.overlaps(other) for other in boxes[i + 1 :])
