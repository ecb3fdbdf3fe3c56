"""Metric names: a human-readable label and the better direction of every name the course reports.

Names follow one scheme (see :mod:`course_lib.metrics`): ``<statistic>_<genes>`` for gene-level
statistics, a bare name for distribution metrics, and two suffixes that derive new scores from any of
them: ``_matched`` (the score at the noise ceiling's half size) and ``_norm_identity`` /
``_norm_mean_shift`` (the baseline-normalised score).
"""

from __future__ import annotations

import re
from typing import NamedTuple


class MetricInfo(NamedTuple):
    """How to show a metric: a human-readable label and which direction is better."""

    label: str
    higher_is_better: bool


MEAN_STATISTICS = {
    "r2_mean": MetricInfo("R² of means", True),
    "r2_pearson2_mean": MetricInfo("squared Pearson r of means", True),
    "mse_mean": MetricInfo("MSE of means", False),
    "pearson_mean": MetricInfo("Pearson r of means", True),
    "delta_r2": MetricInfo("R² of mean shifts from control", True),
    "delta_pearson": MetricInfo("Pearson r of mean shifts from control", True),
}
"""Statistics of gene means, reported on all genes (``_all``) and on the top DEGs (``_top<n>``)."""

SPECIFIC_STATISTICS = {
    "specific_pearson": MetricInfo("Pearson r of the type-specific response", True),
    "specific_r2": MetricInfo("R² of the type-specific response", True),
}
"""Statistics of the response beyond the shared one (ŷ − c − s against y − c − s)."""

DEG_STATISTICS = {
    "deg_jaccard": MetricInfo("Jaccard index of up-regulated DEGs", True),
    "deg_overlap": MetricInfo("shared up-regulated DEGs", True),
}
"""Statistics of the top up-regulated DEG sets, reported on ``_top<n>`` only."""

DISTRIBUTION_METRICS = {
    "e_distance": MetricInfo("energy distance (PCA)", False),
    "e_distance_squared": MetricInfo("energy distance, squared (PCA)", False),
    "mv_kde": MetricInfo("mean-variance KDE distance", False),
}
"""Metrics of whole cells (all genes), with no gene-set suffix."""

BENCHMARK_METRICS = {
    "discrimination_rank_all": MetricInfo("rank of the own type's response (1 = recognised)", False),
}
"""Metrics that compare a prediction with the real responses of every held-out type of a benchmark."""

NORMALISED_SUFFIXES = {
    "_norm_identity": "normalised: 0 = identity, 1 = noise ceiling",
    "_norm_mean_shift": "normalised: 0 = mean shift, 1 = noise ceiling",
}
"""Suffixes of the baseline-normalised scores (see :func:`course_lib.metrics.normalised_scores`)."""

MATCHED_SUFFIX = "_matched"
"""Suffix of a score computed on the noise ceiling's half-size groups (see
:func:`course_lib.metrics.matched_scores`)."""

_GENE_LEVEL = {**MEAN_STATISTICS, **SPECIFIC_STATISTICS}


def metric_info(name: str) -> MetricInfo:
    """Label and better direction of a metric name such as ``"r2_mean_top100"`` or ``"e_distance"``.

    Normalised scores (``..._norm_identity``, ``..._norm_mean_shift``) are higher-is-better whatever
    the metric they normalise; ``..._matched`` scores keep their metric's direction. Raises
    ``KeyError`` for a name outside the scheme described in the module docstring.
    """
    for suffix, meaning in NORMALISED_SUFFIXES.items():
        if name.endswith(suffix):
            return MetricInfo(f"{metric_info(name.removesuffix(suffix)).label}, {meaning}", True)
    if name.endswith(MATCHED_SUFFIX):
        info = metric_info(name.removesuffix(MATCHED_SUFFIX))
        return MetricInfo(f"{info.label}, at half size", info.higher_is_better)
    if name in DISTRIBUTION_METRICS:
        return DISTRIBUTION_METRICS[name]
    if name in BENCHMARK_METRICS:
        return BENCHMARK_METRICS[name]
    match = re.fullmatch(r"(?P<statistic>\w+?)_(?:(?P<all>all)|top(?P<n>[1-9]\d*))", name)
    statistic = match and match["statistic"]
    if statistic in DEG_STATISTICS and match["n"]:
        info = DEG_STATISTICS[statistic]
    elif statistic in _GENE_LEVEL:
        info = _GENE_LEVEL[statistic]
    else:
        raise KeyError(
            f"unknown metric name {name!r}; names are <statistic>_all or <statistic>_top<n> with a statistic "
            f"in {sorted(_GENE_LEVEL)}, deg_jaccard_top<n>, deg_overlap_top<n>, one of "
            f"{sorted(DISTRIBUTION_METRICS)} or {sorted(BENCHMARK_METRICS)}, optionally followed by "
            f"{MATCHED_SUFFIX!r} or one of {sorted(NORMALISED_SUFFIXES)}."
        )
    genes = "all genes" if match["all"] else f"top {match['n']} DEGs"
    return MetricInfo(f"{info.label} ({genes})", info.higher_is_better)


def gene_level_names(n_top: int, *, specific: bool = False) -> list[str]:
    """Names of the gene-level metrics that :func:`course_lib.metrics.evaluate` reports, in its order."""
    scopes = ("all", f"top{n_top}")
    statistics = {**MEAN_STATISTICS, **(SPECIFIC_STATISTICS if specific else {})}
    mean_names = [f"{statistic}_{scope}" for scope in scopes for statistic in statistics]
    return mean_names + [f"{statistic}_top{n_top}" for statistic in DEG_STATISTICS]


def scored_names(n_top: int = 100, *, squared_energy: bool = False, specific: bool = False) -> list[str]:
    """Every metric name of one prediction that :func:`course_lib.metrics.evaluate` reports, in order."""
    energy = "e_distance_squared" if squared_energy else "e_distance"
    return [*gene_level_names(n_top, specific=specific), energy, "mv_kde"]


METRICS: dict[str, MetricInfo] = {
    name: metric_info(name)
    for name in [*gene_level_names(100, specific=True), *DISTRIBUTION_METRICS, *BENCHMARK_METRICS]
}
"""Label and better direction of every metric name that :func:`course_lib.metrics.evaluate` and the
benchmark report with their defaults (derived ``_matched`` and ``_norm_*`` names: :func:`metric_info`)."""
