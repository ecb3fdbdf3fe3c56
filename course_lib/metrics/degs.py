"""Differentially expressed genes: a Wilcoxon rank-sum test written for many groups against one
reference, the top up-regulated genes, and the overlap of two DEG sets."""

from __future__ import annotations

from typing import NamedTuple

import anndata as ad
import numpy as np
import pandas as pd

from course_lib.checks import require_positive_int
from course_lib.metrics.inputs import checked_expressions
from course_lib.metrics.means import divide


class _Runs(NamedTuple):
    """Each gene's values sorted, and the runs of equal values in them, flattened gene after gene."""

    sorted_values: np.ndarray  # genes x cells, every row sorted
    values: np.ndarray  # the value of each run
    sizes: np.ndarray  # how many cells share it
    genes: np.ndarray  # the gene (row) it belongs to


def _runs(matrix: np.ndarray) -> _Runs:
    """Sort each gene (column) of a cells x genes matrix and find its runs of tied values."""
    sorted_values = np.sort(np.ascontiguousarray(matrix.T), axis=1)
    opens_run = np.ones(sorted_values.shape, dtype=bool)
    opens_run[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    starts = np.flatnonzero(opens_run)
    sizes = np.diff(starts, append=sorted_values.size).astype(np.float64)
    return _Runs(sorted_values, sorted_values.ravel()[starts], sizes, starts // sorted_values.shape[1])


def _tie_terms(sizes: np.ndarray, genes: np.ndarray, n_genes: int) -> np.ndarray:
    """Σ_t (t³ − t) per gene over runs of sizes t."""
    return np.bincount(genes, weights=sizes**3 - sizes, minlength=n_genes)


class RankSumTest:
    """Wilcoxon rank-sum tests of any number of cell groups against one reference, sorted once.

    For a group of n1 cells and the reference's n2 cells (n = n1 + n2), per gene:
    U = Σ_{v in group} (#{reference < v} + ½ #{reference = v}) (the group's rank sum minus
    n1 (n1 + 1) / 2, mid-ranks for ties) and

        z = (U − n1 n2 / 2) / sqrt(n1 n2 / 12 · (n + 1 − Σ_t (t³ − t) / (n (n − 1)))),

    t running over the sizes of the runs of tied values among all n cells. This is the normal
    approximation of the Mann-Whitney U test with tie correction and without continuity correction;
    z > 0 means higher in the group, and a gene whose n values are all tied scores 0.

    A run of value u holding g cells of the group and r of the reference adds (g + r)³ − (g + r) =
    (g³ − g) + (r³ − r) + 3 g r (g + r) to the tie sum, so only the group's distinct values are
    searched in the sorted reference (binary search, one gene at a time).
    """

    def __init__(self, reference: np.ndarray):
        self.n_reference = reference.shape[0]
        self.reference = _runs(reference)
        n_genes = reference.shape[1]
        self.reference_ties = _tie_terms(self.reference.sizes, self.reference.genes, n_genes)

    def z(self, group: np.ndarray) -> np.ndarray:
        """The z-score of every gene (column) of ``group`` (cells x genes) against the reference."""
        n_group, n_genes = group.shape
        runs = _runs(group)
        below = np.empty(runs.values.size)
        up_to = np.empty(runs.values.size)
        bounds = np.searchsorted(runs.genes, np.arange(n_genes + 1))
        for gene, reference_values in enumerate(self.reference.sorted_values):
            span = slice(bounds[gene], bounds[gene + 1])
            below[span] = np.searchsorted(reference_values, runs.values[span], "left")
            up_to[span] = np.searchsorted(reference_values, runs.values[span], "right")
        in_reference = up_to - below
        u_statistic = np.bincount(runs.genes, weights=runs.sizes * (below + up_to) / 2.0, minlength=n_genes)
        shared_ties = 3.0 * runs.sizes * in_reference * (runs.sizes + in_reference)
        ties = (
            _tie_terms(runs.sizes, runs.genes, n_genes)
            + self.reference_ties
            + np.bincount(runs.genes, weights=shared_ties, minlength=n_genes)
        )
        n_cells = n_group + self.n_reference
        variance = n_group * self.n_reference / 12.0 * (n_cells + 1.0 - ties / (n_cells * (n_cells - 1.0)))
        centred = u_statistic - n_group * self.n_reference / 2.0
        return divide(centred, np.sqrt(np.maximum(variance, 0.0)), where_zero=0.0)


def top_up_positions(scores: np.ndarray, n_top: int) -> np.ndarray:
    """Positions of the ``n_top`` highest positive scores, ties in gene order; fewer if fewer are > 0."""
    order = np.argsort(-scores, kind="stable")
    return order[scores[order] > 0][:n_top]


def rank_genes_wilcoxon(group: ad.AnnData, reference: ad.AnnData) -> pd.Series:
    """Wilcoxon rank-sum z-score of every gene, ``group`` cells against ``reference`` cells.

    z = (R − n1 (n + 1) / 2) / sqrt(n1 n2 / 12 · (n + 1 − Σ_t (t³ − t) / (n (n − 1)))), where R is the
    sum of the group's mid-ranks among the n = n1 + n2 cells and t runs over the sizes of groups of
    tied values (tie correction: single-cell data have many zeros). This is the normal approximation
    of the Mann-Whitney U test without continuity correction; positive z means higher in ``group``.
    Genes whose values are all tied score 0.
    """
    matrices = checked_expressions({"reference": reference}, {"group": group})
    return pd.Series(RankSumTest(matrices["reference"]).z(matrices["group"]), index=group.var_names, name="z")


def top_degs(group: ad.AnnData, reference: ad.AnnData, *, n_top: int = 100) -> pd.Index:
    """The ``n_top`` genes most up-regulated in ``group`` against ``reference``, best first.

    Genes are ranked by the Wilcoxon z-score of :func:`rank_genes_wilcoxon`; only genes with z > 0
    (higher in ``group``) qualify, so fewer than ``n_top`` come back when fewer are up-regulated.
    ``n_top`` must be a positive integer.
    """
    require_positive_int(n_top, what="n_top")
    return group.var_names[top_up_positions(rank_genes_wilcoxon(group, reference).to_numpy(), n_top)]


class DegOverlap(NamedTuple):
    """Agreement of two top-DEG sets A (real) and B (predicted)."""

    jaccard: float
    overlap: int


def overlap_of_positions(real: np.ndarray, predicted: np.ndarray) -> DegOverlap:
    """:class:`DegOverlap` of two sets of gene positions."""
    shared = np.intersect1d(real, predicted).size
    union = np.union1d(real, predicted).size
    return DegOverlap(shared / union if union else np.nan, shared)


def deg_overlap(ctrl: ad.AnnData, stim: ad.AnnData, pred: ad.AnnData, *, n_top: int = 100) -> DegOverlap:
    """Jaccard index and overlap count of the top up-regulated DEGs of stim and of pred, both against ctrl.

    A = :func:`top_degs` (stim, ctrl), B = :func:`top_degs` (pred, ctrl);
    ``J = |A ∩ B| / |A ∪ B|`` (NaN when both are empty) and ``overlap = |A ∩ B|``.
    """
    require_positive_int(n_top, what="n_top")
    matrices = checked_expressions({"ctrl": ctrl, "stim": stim}, {"pred": pred})
    test = RankSumTest(matrices["ctrl"])
    real, predicted = (top_up_positions(test.z(matrices[name]), n_top) for name in ("stim", "pred"))
    return overlap_of_positions(real, predicted)
