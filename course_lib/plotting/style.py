"""The look of every figure: one palette, one figure factory, one set of font sizes, shared helpers.

Colours come from :data:`PALETTE`, colour-blind safe (Okabe-Ito for conditions and models, neutral
greys for the baselines); names it does not know get :data:`FALLBACK_COLORS` (Paul Tol's muted
scheme) in order, see :func:`colors_for`. :data:`PALETTE` is read-only: a chapter that wants one colour
per variant in several figures passes ``colors=colors_for(variants)`` to each of them.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from course_lib.metrics import MetricInfo, metric_info

PALETTE: Mapping[str, str] = MappingProxyType(
    {
        "control": "#0072B2",
        "stimulated": "#D55E00",
        "predicted": "#009E73",
        "scgen": "#E69F00",
        "scpram": "#CC79A7",
        "cellot": "#56B4E9",
        "identity": "#A0A0A0",
        "mean_shift": "#404040",
        "noise_ceiling": "#000000",
    }
)
"""Colour of each condition and model, the same in every chapter (Okabe-Ito; greys and black for the
baselines and the noise ceiling). Read-only."""

FALLBACK_COLORS: tuple[str, ...] = (
    "#882255",
    "#117733",
    "#332288",
    "#999933",
    "#44AA99",
    "#AA4499",
    "#DDCC77",
    "#88CCEE",
    "#CC6677",
)
"""Colours for names outside :data:`PALETTE` (model variants, loss components), in this order."""

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
"""Marker of the first, second, ... group of a figure."""

FONT_SIZES = {
    "font.size": 12,
    "axes.titlesize": 12,
    "axes.labelsize": 12,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 11,
    "legend.title_fontsize": 11,
    "figure.titlesize": 13,
}
"""Font sizes (points) of every figure of the course (see :func:`styled`).

With :data:`MAX_WIDTH` they keep the text of a figure at least as large as the text of the page around
it: a figure is rendered at :data:`DPI` dots per inch and shown at its natural size in the book's
content column (about 680 pixels wide in a 1,280-pixel window), so 12 points are 16.7 pixels, the size
of the body text."""

ANNOTATION_SIZE = 10
"""Font size of text inside a plot (gene labels, numbers in heat-map cells), which must fit its spot."""

MAX_WIDTH = 6.8
"""Widest figure in inches: at :data:`DPI` it fits the book's content column without being shrunk."""

DPI = 100
"""Dots per inch of the figures in the executed chapters (matplotlib's default)."""


def colors_for(names: Iterable[str], *, colors: Mapping[str, str] | None = None) -> dict[str, str]:
    """Colour of each name: ``colors[name]``, else its :data:`PALETTE` entry, else the next unused
    :data:`FALLBACK_COLORS` one.

    Fallback colours go to the remaining names in their order of appearance, skipping colours that a
    named colour of the same call already uses, and cycle when they run out. Pass the result of one
    call as ``colors`` to several figures to keep one colour per name across them.
    """
    names = list(dict.fromkeys(names))
    known = {**PALETTE, **(colors or {})}
    taken = {known[name] for name in names if name in known}
    spare = [color for color in FALLBACK_COLORS if color not in taken] or list(FALLBACK_COLORS)
    unknown = [name for name in names if name not in known]
    fallback = {name: spare[i % len(spare)] for i, name in enumerate(unknown)}
    return {name: known.get(name, fallback.get(name)) for name in names}


def styled(function: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw a figure function under the course's :data:`FONT_SIZES` (whatever the caller's rcParams)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs) -> Figure:
        with matplotlib.rc_context(FONT_SIZES):
            figure = function(*args, **kwargs)
            for axes in figure.axes:  # tick labels are made at draw time: fix their size now
                axes.tick_params(labelsize=FONT_SIZES["xtick.labelsize"])
            fit_titles(figure)
        return figure

    return wrapper


def new_figure(
    n_rows: int = 1, n_cols: int = 1, *, panel_size: tuple[float, float]
) -> tuple[Figure, np.ndarray]:
    """A figure outside pyplot, with an Agg canvas and a (rows x columns) array of axes.

    The figure is not registered with pyplot: a notebook shows it when it is a cell's last expression
    (or through ``display``), a script saves it with ``savefig``, and many figures in a loop leak
    nothing.
    """
    figure = Figure(figsize=(panel_size[0] * n_cols, panel_size[1] * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(n_rows, n_cols, squeeze=False)


def panel_grid(
    n_panels: int, *, panel_size: tuple[float, float], max_cols: int | None = None
) -> tuple[Figure, list[Axes]]:
    """A figure of ``n_panels`` panels that wraps onto new rows instead of growing past :data:`MAX_WIDTH`.

    Columns: as many panels of ``panel_size`` inches as fit in :data:`MAX_WIDTH` (at least one, at most
    ``max_cols``); a panel is narrowed to fit when even one row of that many is too wide. Unused cells
    of the last row are hidden. Returns the figure and its ``n_panels`` axes in reading order.
    """
    if n_panels < 1:
        raise ValueError(f"a figure needs at least one panel, got {n_panels}.")
    width, height = panel_size
    n_cols = max(1, min(n_panels, int(MAX_WIDTH // width) or 1, max_cols or n_panels))
    n_rows = -(-n_panels // n_cols)
    figure, grid = new_figure(n_rows, n_cols, panel_size=(min(width, MAX_WIDTH / n_cols), height))
    axes = list(grid.ravel())
    for spare in axes[n_panels:]:
        spare.set_visible(False)
    return figure, axes[:n_panels]


_LABEL_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]


def _place_label(axes: Axes, point: tuple[float, float], text: str, placed: list[Bbox]):
    """Annotate ``point`` at the first of 24 offsets where the text lies inside the axes and overlaps
    none of the ``placed`` boxes (to which its box is added); None, and no label, where none fits."""
    renderer = axes.figure.canvas.get_renderer()
    inside = axes.get_window_extent(renderer)
    for distance in (6, 18, 32):
        for dx, dy in _LABEL_DIRECTIONS:
            annotation = axes.annotate(
                text,
                point,
                xytext=(dx * distance, dy * distance),
                textcoords="offset points",
                ha={1: "left", -1: "right", 0: "center"}[dx],
                va={1: "bottom", -1: "top", 0: "center"}[dy],
                fontsize=ANNOTATION_SIZE,
                arrowprops={"arrowstyle": "-", "color": "0.3", "lw": 0.5},
            )
            annotation.update_positions(renderer)
            box = Text.get_window_extent(annotation, renderer).padded(1.0)  # the text, not the arrow
            fits = inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
            if fits and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                return annotation
            annotation.remove()
    return None


def label_points(axes: Axes, x: Sequence[float], y: Sequence[float], texts: Sequence[str]) -> list:
    """Label points without overlaps (with each other and the legend), the first text first; a label
    that fits nowhere is dropped. The layout is settled and then frozen first, so the boxes measured
    are the boxes drawn: call it after everything else of the figure is drawn. Returns the labels.
    """
    axes.figure.canvas.draw()
    axes.figure.set_layout_engine("none")
    legend = axes.get_legend()
    placed: list[Bbox] = [legend.get_window_extent()] if legend else []
    annotations = [
        _place_label(axes, point, text, placed)
        for point, text in zip(zip(x, y, strict=True), texts, strict=True)
    ]
    return [annotation for annotation in annotations if annotation is not None]


def use_course_style() -> None:
    """Apply the course's :data:`FONT_SIZES` and :data:`DPI` to figures drawn outside ``course_lib``
    (scanpy's plots in a chapter), so that every figure of a page reads at the same size."""
    matplotlib.rcParams.update({**FONT_SIZES, "figure.dpi": DPI, "savefig.dpi": DPI})


def characters_per_line(width: float, font_size: float) -> int:
    """How many characters of ``font_size`` points fit on a line ``width`` inches long (an average
    character of the default font is at most 0.62 em wide; 72 points make an inch)."""
    return max(8, int(width * 72 / (0.62 * font_size)))


def fit_titles(figure: Figure) -> None:
    """Break the figure's title and every panel title into lines that fit their width, so that no
    title runs past the edge of the figure or into the next panel."""
    suptitle = figure.get_suptitle()
    if suptitle:
        figure.suptitle(
            wrapped(suptitle, characters_per_line(figure.get_figwidth(), FONT_SIZES["figure.titlesize"]))
        )
    for axes in figure.axes:
        spec = axes.get_subplotspec()
        title = axes.get_title()
        if title and spec is not None:
            share = (spec.colspan.stop - spec.colspan.start) / spec.get_gridspec().ncols
            # a panel title is centred on the axes, which its tick labels push off-centre: keep a margin
            width = characters_per_line(figure.get_figwidth() * share - 0.6, FONT_SIZES["axes.titlesize"])
            axes.set_title(wrapped(title.replace("\n", " "), width))


def figure_legend(figure: Figure, handles: Sequence, *, title: str) -> None:
    """A legend below the panels, with as many columns as fit the figure's width."""
    longest = max(len(str(handle.get_label())) for handle in handles)
    entry = 0.6 + longest * 0.62 * FONT_SIZES["legend.fontsize"] / 72  # marker + text, inches
    n_cols = max(1, min(len(handles), int(figure.get_figwidth() // entry)))
    figure.legend(handles=handles, loc="outside lower center", ncols=n_cols, title=title)


def wrapped(text: str, width: int | None) -> str:
    """``text`` broken into lines of at most ``width`` characters (unchanged for ``None``)."""
    return text if width is None else textwrap.fill(text, width)


def with_direction(text: str, info: MetricInfo | None = None, *, separator: str = " ") -> str:
    """``text`` plus "(higher is better)" or "(lower is better)" for the metric ``text`` (or ``info``)."""
    info = info or metric_info(text)
    return f"{text}{separator}({'higher' if info.higher_is_better else 'lower'} is better)"


def whisker(center: float, low: float, high: float) -> np.ndarray | None:
    """Error-bar extents ``[[center - low], [high - center]]`` (None where the interval is missing).

    Clipped at 0: a skewed bootstrap's mean can lie just outside its percentile interval.
    """
    if not np.isfinite([low, high]).all():
        return None
    return np.maximum([[center - low], [high - center]], 0.0)


def check_frame(frame: pd.DataFrame, columns: Sequence[str], *, what: str) -> None:
    """Raise for an empty frame or one without ``columns``, naming the frame as ``what``."""
    if frame.empty:
        raise ValueError(f"{what} is empty.")
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise KeyError(f"{what} has no column {missing}; columns present: {list(frame.columns)}.")


def heatmap(
    axes: Axes, values: pd.DataFrame, *, colorbar_label: str, annotate: bool, fmt: str = "{:.2f}"
) -> None:
    """Draw ``values`` as an image with its row and column names, a colour bar and, optionally, the
    numbers (formatted with ``fmt``) in the cells."""
    image = axes.imshow(values.to_numpy(dtype=float), cmap="viridis", aspect="auto", interpolation="nearest")
    axes.set_xticks(range(values.shape[1]), values.columns, rotation=45, ha="right")
    if annotate:
        axes.set_yticks(range(values.shape[0]), values.index)
        middle = np.nanmean([np.nanmin(values.to_numpy()), np.nanmax(values.to_numpy())])
        for (row, column), value in np.ndenumerate(values.to_numpy(dtype=float)):
            color = "white" if value < middle else "black"  # viridis is dark at the low end
            axes.text(
                column,
                row,
                fmt.format(value),
                ha="center",
                va="center",
                color=color,
                fontsize=ANNOTATION_SIZE,
            )
    else:
        axes.set_yticks([])
    colorbar = axes.figure.colorbar(image, ax=axes, label=colorbar_label)
    colorbar.ax.tick_params(labelsize=FONT_SIZES["ytick.labelsize"])
