"""Figures of the course, one look for every chapter: one palette, titles, axis labels and legends.

Every function returns a :class:`matplotlib.figure.Figure` that is not registered with pyplot: a
notebook shows it when it is the cell's last expression (or through ``display(fig)``), a script saves
it with ``fig.savefig(...)``, and building many figures in a loop leaks nothing. No function calls
``plt.show()``.

Modules: :mod:`~course_lib.plotting.style` (palette, fonts, the figure factory),
:mod:`~course_lib.plotting.expression` (gene means, DEGs, embeddings),
:mod:`~course_lib.plotting.annotation` (cell-type labels against published ones),
:mod:`~course_lib.plotting.metrics` (metric bars, scatters and curves, energy distances),
:mod:`~course_lib.plotting.training` (training and validation curves, scPRAM's attention, a 2-D
transport map),
:mod:`~course_lib.plotting.benchmark` (benchmark summaries) and :mod:`~course_lib.plotting.tuning`
(hyperparameter searches).
"""

from course_lib.plotting.annotation import confusion_heatmap
from course_lib.plotting.benchmark import benchmark_summary, interval_dots
from course_lib.plotting.expression import (
    deg_dotplot,
    embedding_plot,
    gene_distributions,
    mean_expression_scatter,
)
from course_lib.plotting.metrics import energy_distance_heatmap, metric_bars, metric_curves, metric_scatter
from course_lib.plotting.style import (
    ANNOTATION_SIZE,
    FALLBACK_COLORS,
    PALETTE,
    colors_for,
    label_points,
    use_course_style,
)
from course_lib.plotting.training import (
    attention_heatmap,
    training_history,
    transport_arrows,
    validation_curve,
)
from course_lib.plotting.tuning import tuning_grid, tuning_history, tuning_importances

__all__ = [
    "ANNOTATION_SIZE",
    "FALLBACK_COLORS",
    "PALETTE",
    "attention_heatmap",
    "benchmark_summary",
    "colors_for",
    "confusion_heatmap",
    "deg_dotplot",
    "embedding_plot",
    "energy_distance_heatmap",
    "gene_distributions",
    "interval_dots",
    "label_points",
    "mean_expression_scatter",
    "metric_bars",
    "metric_curves",
    "metric_scatter",
    "training_history",
    "transport_arrows",
    "tuning_grid",
    "tuning_history",
    "tuning_importances",
    "use_course_style",
    "validation_curve",
]
