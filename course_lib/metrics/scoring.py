"""The scoring core: every metric of every prediction of one held-out type, against one truth.

:class:`ScoringContext` computes what all predictions of a held-out type share once (the control
cells' rank test and mean, the PCA of ctrl + stim) and then scores any truth against any predictions
with it: the real stimulated cells against the models' predictions (:func:`course_lib.metrics.evaluate`),
or one half of the real cells against the other (:func:`course_lib.metrics.noise_ceiling`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from course_lib.metrics.degs import RankSumTest, overlap_of_positions, top_up_positions
from course_lib.metrics.distributions import (
    KDE_GRID_SIZE,
    Bandwidth,
    embed,
    energy_distances_of_points,
    fit_reference_pca,
    kde_distance_of_points,
    mean_variance_points,
)
from course_lib.metrics.inputs import column_means
from course_lib.metrics.means import bootstrap_summary, group_means, mean_statistics

Row = tuple[str, str, float, float, float]
"""(model, metric, value, ci_low, ci_high)."""


class UndefinedMetricWarning(UserWarning):
    """A metric cannot be computed for one prediction (e.g. a constant one) and is reported as NaN."""


@dataclass(frozen=True)
class ScoringOptions:
    """How predictions are scored; the arguments of :func:`course_lib.metrics.evaluate` of that name."""

    n_top_degs: int = 100
    n_bootstrap: int = 100
    bootstrap_fraction: float = 0.8
    confidence: float = 0.95
    n_components: int = 30
    max_cells: int = 2000
    squared_energy: bool = False
    kde_bandwidth: Bandwidth = "scott"


def value_or_nan(model: str, metric: str, compute: Callable[..., float], *args) -> float:
    """``compute(*args)``, or NaN with a warning naming the model and metric when it cannot be done."""
    try:
        return compute(*args)
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as error:
        warnings.warn(
            f"{model}: {metric} is undefined for this prediction ({error}); reported as NaN.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return np.nan


class ScoringContext:
    """What every prediction of one held-out type is scored with, computed once.

    Parameters
    ----------
    ctrl, stim
        Dense expression (cells x genes) of the real control and the real stimulated cells.
    options
        The scoring settings.
    seed
        Seeds the PCA, the subsampling of cells for the energy distance and the bootstrap.
    """

    def __init__(self, ctrl: np.ndarray, stim: np.ndarray, options: ScoringOptions, seed: int):
        self.options, self.seed = options, seed
        self.rank_test = RankSumTest(ctrl)
        self.ctrl_mean = column_means(ctrl)
        self.pca = fit_reference_pca(np.concatenate([ctrl, stim]), options.n_components, seed)

    def score(
        self,
        truth: np.ndarray,
        predictions: Mapping[str, np.ndarray],
        *,
        bootstrap: bool = True,
        shared: np.ndarray | None = None,
    ) -> list[Row]:
        """Rows (model, metric, value, ci_low, ci_high) for every prediction against ``truth``.

        What the predictions share is computed once: the DEGs of truth vs ctrl, the truth's embedding,
        its resampled means and its per-gene (mean, variance). Without ``bootstrap`` the mean-based
        metrics are plain estimates (NaN bounds). ``shared`` (the shared response s over all genes)
        adds the type-specific statistics. A metric that cannot be computed for one prediction is NaN
        for that prediction only (:class:`UndefinedMetricWarning`).
        """
        o = self.options
        real_degs = top_up_positions(self.rank_test.z(truth), o.n_top_degs)
        scopes = {"all": slice(None), f"top{o.n_top_degs}": real_degs}
        resampling = {
            "n_bootstrap": o.n_bootstrap if bootstrap else 0,
            "fraction": o.bootstrap_fraction,
            "seed": self.seed,
        }
        truth_means = group_means(truth, "stim", **resampling)
        points = {
            name: embed(matrix, self.pca, o.max_cells, self.seed)
            for name, matrix in [("stim", truth), *predictions.items()]
        }
        energy = "e_distance_squared" if o.squared_energy else "e_distance"
        e_distances = energy_distances_of_points(
            points, [(name, "stim") for name in predictions], squared=o.squared_energy
        )
        truth_mean_variance = mean_variance_points(truth)

        rows: list[Row] = []
        for (name, pred), e_distance in zip(predictions.items(), e_distances, strict=True):
            pred_means = group_means(pred, "pred", **resampling)
            for scope, genes in scopes.items():
                values = mean_statistics(
                    self.ctrl_mean[genes],
                    truth_means[..., genes],
                    pred_means[..., genes],
                    None if shared is None else shared[genes],
                )
                rows += [
                    (name, f"{stat}_{scope}", *bootstrap_summary(value, o.confidence))
                    for stat, value in values.items()
                ]
            overlap = overlap_of_positions(real_degs, top_up_positions(self.rank_test.z(pred), o.n_top_degs))
            kde = value_or_nan(name, "mv_kde", self._kde_distance, truth_mean_variance, pred)
            rows += [
                (name, f"deg_jaccard_top{o.n_top_degs}", overlap.jaccard, np.nan, np.nan),
                (name, f"deg_overlap_top{o.n_top_degs}", float(overlap.overlap), np.nan, np.nan),
                (name, energy, e_distance, np.nan, np.nan),
                (name, "mv_kde", kde, np.nan, np.nan),
            ]
        return rows

    def _kde_distance(self, truth_mean_variance: np.ndarray, pred: np.ndarray) -> float:
        return kde_distance_of_points(
            truth_mean_variance, mean_variance_points(pred), self.options.kde_bandwidth, KDE_GRID_SIZE
        )
