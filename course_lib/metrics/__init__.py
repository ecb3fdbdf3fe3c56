"""Metrics for predicted perturbation responses: one definition each, with its formula.

Every chapter computes its numbers with this package, so that each number in the course means the
same thing everywhere. Notation used in the docstrings, for one held-out cell type:

- ``ctrl``, ``stim`` and ``pred`` are the real control cells, the real stimulated cells and the
  predicted cells (AnnData with log-normalised expression in ``.X`` and the same genes);
- for gene ``g``, ``c_g``, ``y_g`` and ``ŷ_g`` are the mean expression of ctrl, stim and pred, and
  ``s_g`` the response every cell type shares (the mean-shift baseline's shift);
- a sum over ``g`` runs over the genes being scored (all genes, or the top DEGs).

Modules: :mod:`~course_lib.metrics.means` (statistics of gene means and their bootstrap),
:mod:`~course_lib.metrics.degs` (Wilcoxon DEGs and their overlap),
:mod:`~course_lib.metrics.distributions` (energy distance, mean-variance KDE distance),
:mod:`~course_lib.metrics.references` (noise ceiling, normalised scores, response discrimination),
:mod:`~course_lib.metrics.scoring` (the per-type scoring core), :mod:`~course_lib.metrics.evaluate`
(:func:`evaluate`), :mod:`~course_lib.metrics.names` (labels and directions),
:mod:`~course_lib.metrics.inputs` (input checks).

Metric names
------------
:func:`evaluate` names each metric ``<statistic>_<genes>``, where ``<genes>`` is ``all`` (every gene)
or ``top<n>`` (the ``n`` most up-regulated genes of stim versus ctrl, Wilcoxon; ``n = 100`` by
default). Distribution metrics, which use all genes, have no suffix.

=======================  ===========================================================  ======
statistic                definition                                                   better
=======================  ===========================================================  ======
``r2_mean``              coefficient of determination of ŷ against y                  higher
``r2_pearson2_mean``     squared Pearson r of ŷ and y (the papers' "R²")              higher
``mse_mean``             mean squared error of ŷ against y                            lower
``pearson_mean``         Pearson r of ŷ and y                                         higher
``delta_r2``             coefficient of determination of ŷ − c against y − c          higher
``delta_pearson``        Pearson r of ŷ − c and y − c                                 higher
``specific_r2``          coefficient of determination of ŷ − c − s against y − c − s  higher
``specific_pearson``     Pearson r of ŷ − c − s and y − c − s                         higher
``deg_jaccard``          Jaccard index of the top DEGs of stim and of pred            higher
``deg_overlap``          number of top DEGs shared by stim and pred                   higher
``e_distance``           energy distance in the ctrl + stim PCA (Euclidean)           lower
``e_distance_squared``   the same with squared distances                              lower
``mv_kde``               L1 distance of the per-gene (mean, variance) densities       lower
``discrimination_rank``  rank of the own type's real change (benchmark only)          lower
=======================  ===========================================================  ======

Derived names: ``<metric>_matched`` (the score at the noise ceiling's half size) and
``<metric>_norm_identity`` / ``<metric>_norm_mean_shift`` (0 = the baseline, 1 = the noise ceiling);
rows of model ``noise_ceiling`` hold the ceiling itself (:mod:`~course_lib.metrics.references`).
:data:`METRICS` holds a human-readable label and the better direction of every name that
:func:`evaluate` produces with its defaults; :func:`metric_info` answers for any valid name.
"""

from course_lib.metrics.degs import DegOverlap, deg_overlap, rank_genes_wilcoxon, top_degs
from course_lib.metrics.distributions import (
    energy_distance,
    energy_distances,
    mean_variance_kde_distance,
    pca_embedding,
)
from course_lib.metrics.evaluate import EVALUATE_COLUMNS, evaluate, noise_ceiling
from course_lib.metrics.inputs import checked_expressions, group_expressions
from course_lib.metrics.means import (
    gene_means,
    mean_metrics,
    mse,
    pearson_r,
    r2_score,
    response_share,
    scaled_response_scores,
)
from course_lib.metrics.names import METRICS, MetricInfo, metric_info
from course_lib.metrics.references import (
    CEILING,
    discrimination_rank,
    normalised_scores,
    response_discrimination,
)
from course_lib.metrics.scoring import UndefinedMetricWarning

__all__ = [
    "CEILING",
    "EVALUATE_COLUMNS",
    "METRICS",
    "DegOverlap",
    "MetricInfo",
    "UndefinedMetricWarning",
    "checked_expressions",
    "deg_overlap",
    "discrimination_rank",
    "energy_distance",
    "energy_distances",
    "evaluate",
    "gene_means",
    "group_expressions",
    "mean_metrics",
    "mean_variance_kde_distance",
    "metric_info",
    "mse",
    "noise_ceiling",
    "normalised_scores",
    "pca_embedding",
    "pearson_r",
    "r2_score",
    "rank_genes_wilcoxon",
    "response_discrimination",
    "response_share",
    "scaled_response_scores",
    "top_degs",
]
