"""The figure of the cell-type annotation: a confusion table as a heat map."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import assert_labelled

from course_lib import plotting


def test_confusion_heatmap_counts_every_cell_and_keeps_its_long_title_clear_of_the_colour_bar():
    types = ["CD4 T cells", "CD14+ Monocytes", "FCGR3A+ Monocytes"]
    confusion = pd.DataFrame([[90, 5, 5], [0, 80, 20], [1, 30, 69]], index=types, columns=types)
    title = "Control cells: course labels against the labels of the original study"
    figure = plotting.confusion_heatmap(confusion, title=title)
    assert_labelled(figure)
    heat_map, colour_bar = figure.axes
    assert sorted(text.get_text() for text in heat_map.texts) == sorted(
        f"{n}" for n in confusion.to_numpy().ravel()
    )
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    assert figure.get_suptitle().replace("\n", " ") == title
    (suptitle,) = [text for text in figure.texts if text.get_text() == figure.get_suptitle()]
    title_box = suptitle.get_window_extent(renderer)
    for axes in (heat_map, colour_bar):
        assert not title_box.overlaps(axes.get_tightbbox(renderer))


def test_confusion_heatmap_refuses_an_empty_table():
    with pytest.raises(ValueError, match="empty"):
        plotting.confusion_heatmap(pd.DataFrame())
