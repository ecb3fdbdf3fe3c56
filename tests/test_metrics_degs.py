"""The Wilcoxon rank-sum test, the top DEGs and their overlap, against scipy and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import as_adata
from scipy import stats

from course_lib import metrics

# Wilcoxon and DEGs


def test_wilcoxon_matches_scipy_mann_whitney(synthetic):
    stim = synthetic[synthetic.obs["condition"] == "stimulated"]
    ctrl = synthetic[synthetic.obs["condition"] == "control"]
    z = metrics.rank_genes_wilcoxon(stim, ctrl)
    assert list(z.index) == list(synthetic.var_names)
    result = stats.mannwhitneyu(
        stim.X, ctrl.X, use_continuity=False, method="asymptotic", alternative="two-sided", axis=0
    )
    p_from_z = 2 * stats.norm.sf(np.abs(z.to_numpy()))
    testable = result.pvalue > 1e-250
    assert testable.sum() > 150
    np.testing.assert_allclose(p_from_z[testable], result.pvalue[testable], rtol=1e-8)
    u_centred = result.statistic - stim.n_obs * ctrl.n_obs / 2
    assert np.array_equal(np.sign(z.to_numpy()), np.sign(u_centred))


def test_wilcoxon_with_ties_matches_a_brute_force_rank_computation():
    group = np.array([[0.0, 1.0], [0.0, 2.0], [1.0, 2.0], [3.0, 5.0]]) * 0.7  # log-scale values, with ties
    reference = np.array([[0.0, 2.0], [0.0, 2.0], [1.0, 0.0]]) * 0.7
    z = metrics.rank_genes_wilcoxon(as_adata(group), as_adata(reference)).to_numpy()
    n1, n2 = len(group), len(reference)
    n = n1 + n2
    for gene in range(2):
        values = np.concatenate([group[:, gene], reference[:, gene]])
        ranks = stats.rankdata(values)  # mid-ranks
        _, ties = np.unique(values, return_counts=True)
        variance = n1 * n2 / 12 * (n + 1 - (ties**3 - ties).sum() / (n * (n - 1)))
        expected = (ranks[:n1].sum() - n1 * (n + 1) / 2) / np.sqrt(variance)
        assert z[gene] == pytest.approx(expected, rel=1e-12)


def test_wilcoxon_scores_zero_when_all_values_tie():
    z = metrics.rank_genes_wilcoxon(as_adata(np.zeros((4, 2))), as_adata(np.zeros((3, 2))))
    assert (z == 0).all()


def test_top_degs_are_up_regulated_and_find_the_responsive_genes(synthetic):
    stim = synthetic[synthetic.obs["condition"] == "stimulated"]
    ctrl = synthetic[synthetic.obs["condition"] == "control"]
    top = metrics.top_degs(stim, ctrl, n_top=15)
    z = metrics.rank_genes_wilcoxon(stim, ctrl)
    assert len(top) == 15
    assert (np.diff(z[top].to_numpy()) <= 0).all() and (z[top] > 0).all()
    assert set(top) == set(z.sort_values(ascending=False).index[:15])
    # The simulation makes 20 genes respond; nearly all of the top 15 must be among them.
    assert synthetic.var.loc[top, "responsive"].mean() >= 0.8
    # Nothing is up-regulated in a group against itself.
    assert len(metrics.top_degs(ctrl, ctrl)) == 0


def test_deg_overlap_matches_set_operations(held_out):
    ctrl, stim, predictions = held_out
    real = set(metrics.top_degs(stim, ctrl, n_top=30))
    for pred in predictions.values():
        predicted = set(metrics.top_degs(pred, ctrl, n_top=30))
        result = metrics.deg_overlap(ctrl, stim, pred, n_top=30)
        assert result.overlap == len(real & predicted)
        assert result.jaccard == pytest.approx(len(real & predicted) / len(real | predicted))
    assert metrics.deg_overlap(ctrl, stim, stim, n_top=30) == (1.0, len(real))
    assert metrics.deg_overlap(ctrl, stim, predictions["identity"], n_top=30) == (0.0, 0)
