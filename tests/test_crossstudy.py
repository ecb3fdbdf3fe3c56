"""The simulated second study (capture efficiency, depth thinning, split) and the cross-study experiment."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp

from course_lib.crossstudy import (
    CROSS_STUDY_COLUMNS,
    STUDY_A,
    STUDY_B,
    capture_efficiencies,
    cross_study_experiment,
    simulate_second_study,
    thin_counts,
)
from course_lib.datasets import synthetic_perturbation
from course_lib.models import MODELS, Scgen


@pytest.fixture(scope="module")
def counts():
    """900 cells x 150 genes, three types, about 150 cells per type and condition, counts in the layer."""
    return synthetic_perturbation(n_cells=900, n_genes=150, n_cell_types=3, seed=5)


def totals(matrix, axis: int) -> np.ndarray:
    return np.asarray(matrix.sum(axis=axis), dtype=np.float64).ravel()


def test_capture_efficiencies_are_capped_log_normal():
    efficiency = capture_efficiencies(20_000, median=0.5, sigma=0.4, seed=1)
    assert efficiency.max() <= 1 and efficiency.min() > 0
    quartiles = np.log(np.quantile(efficiency, [0.25, 0.5, 0.75]))  # below the cap: log-normal quartiles
    np.testing.assert_allclose(quartiles, np.log(0.5) + 0.4 * np.array([-0.6745, 0, 0.6745]), atol=0.02)
    assert np.mean(efficiency == 1) == pytest.approx(0.042, abs=0.006)  # P(z > log(2) / 0.4)
    np.testing.assert_array_equal(efficiency, capture_efficiencies(20_000, median=0.5, sigma=0.4, seed=1))
    np.testing.assert_array_equal(capture_efficiencies(5, median=1.0, sigma=0.0), np.ones(5))
    with pytest.raises(ValueError, match="median must be in"):
        capture_efficiencies(5, median=1.5)


def test_thinning_keeps_integers_and_each_gene_its_share():
    counts = np.full((4000, 5), 20.0)
    keep = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    thinned = thin_counts(counts, keep, seed=0)
    dense = thinned.toarray()
    assert sp.issparse(thinned) and np.array_equal(dense, np.round(dense)) and (dense <= counts).all()
    expected = keep * counts.sum(axis=0)
    spread = np.sqrt(counts.sum(axis=0) * keep * (1 - keep))  # binomial standard deviation of each total
    assert (np.abs(dense.sum(axis=0) - expected) <= 4 * spread + 1e-9).all()
    np.testing.assert_array_equal(dense[:, 4], counts[:, 4])
    np.testing.assert_array_equal(thin_counts(counts, keep, seed=0).toarray(), dense)
    with pytest.raises(ValueError, match="non-negative integers"):
        thin_counts(counts + 0.5, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        thin_counts(counts, 1.5)


def test_split_is_stratified_disjoint_and_seeded(counts):
    studies = simulate_second_study(counts, fraction=0.3, seed=0)
    is_b = (studies.obs["study"] == STUDY_B).to_numpy()
    assert set(studies.obs["study"]) == {STUDY_A, STUDY_B} and studies.obs_names.equals(counts.obs_names)
    groups = counts.obs.groupby(["condition", "cell_type"], observed=True)
    for _, members in groups.groups.items():
        in_b = is_b[counts.obs_names.get_indexer(members)]
        assert in_b.sum() == round(0.3 * len(members))
    again = simulate_second_study(counts, fraction=0.3, seed=0)
    other = simulate_second_study(counts, fraction=0.3, seed=1)
    assert (again.obs["study"] == studies.obs["study"]).all()
    assert (other.obs["study"] != studies.obs["study"]).any()
    assert (again.X != studies.X).nnz == 0
    with pytest.raises(ValueError, match="larger study"):
        simulate_second_study(counts, fraction=0.5)


def test_study_a_is_untouched_and_study_b_is_thinned(counts):
    studies = simulate_second_study(counts, seed=2)
    is_b = (studies.obs["study"] == STUDY_B).to_numpy()
    original = counts.layers["counts"]
    assert (studies.X[~is_b] != original[~is_b]).nnz == 0
    thinned = studies.X[is_b].toarray()
    assert np.array_equal(thinned, np.round(thinned)) and (thinned <= original[is_b].toarray()).all()
    assert "simulated" in studies.uns["simulated_study_b"]["note"].lower()


def test_capture_efficiency_scales_each_gene_as_specified(counts):
    studies = simulate_second_study(counts, capture_median=0.5, capture_sigma=0.5, depth_fraction=1.0, seed=3)
    is_b = (studies.obs["study"] == STUDY_B).to_numpy()
    before, after = totals(counts.layers["counts"][is_b], 0), totals(studies.X[is_b], 0)
    efficiency = studies.var["capture_efficiency"].to_numpy()
    spread = np.sqrt(before * efficiency * (1 - efficiency))
    assert (np.abs(after - efficiency * before) <= 5 * spread + 1).all()
    assert np.corrcoef(after / before, efficiency)[0, 1] > 0.99


def test_depth_thinning_lowers_depth_by_the_stated_fraction(counts):
    studies = simulate_second_study(counts, capture_median=1.0, capture_sigma=0.0, depth_fraction=0.6, seed=4)
    is_b = (studies.obs["study"] == STUDY_B).to_numpy()
    depth_before, depth_after = totals(counts.layers["counts"][is_b], 1), totals(studies.X[is_b], 1)
    assert depth_after.sum() / depth_before.sum() == pytest.approx(0.6, abs=0.005)
    assert np.abs(depth_after / depth_before - 0.6).max() < 0.1  # every cell, not only the total


class RecordingScgen(Scgen):
    """scGen that records the studies of the cells it is trained on."""

    studies_seen: list[set] = []

    @functools.wraps(Scgen.__init__)  # keeps the signature, which routes the hyperparameters
    def __init__(self, adata, **options):
        super().__init__(adata, **options)
        RecordingScgen.studies_seen.append(set(adata.obs["study"]))


def test_cross_study_experiment_scores_both_corrections_against_study_b(counts):
    studies = simulate_second_study(counts, seed=0)
    results = cross_study_experiment(
        studies,
        models=["scgen"],
        hyperparameters={"scgen": {"n_hidden": 32, "n_latent": 8}},
        n_epochs=2,
        n_top_genes=80,
        min_cells=20,
        evaluation={"n_bootstrap": 5, "n_components": 5, "n_top_degs": 20},
        registry={**MODELS, "scgen": RecordingScgen},
        verbose=False,
    )
    assert tuple(results.columns) == CROSS_STUDY_COLUMNS
    assert set(results["model"]) == {"scgen", "identity", "mean_shift"}
    assert set(results["correction"]) == {"none", "scgen_batch_removal"}
    assert set(results["cell_type"]) == {"type_0", "type_1", "type_2"}
    assert RecordingScgen.studies_seen == [{STUDY_A}]  # study B never trains anything
    wide = results.pivot_table(index=["model", "cell_type", "metric"], columns="correction", values="value")
    # Mapped back to study B, a gene-space baseline predicts the same cells whether or not B was aligned
    # (exactly for the identity; up to float rounding, which can reorder tied DEG ranks, for mean shift).
    identity = wide.loc["identity"]
    np.testing.assert_array_equal(identity["none"], identity["scgen_batch_removal"])
    shift = wide.loc["mean_shift"].drop(index=["deg_jaccard_top20", "deg_overlap_top20"], level="metric")
    np.testing.assert_allclose(shift["none"], shift["scgen_batch_removal"], rtol=1e-4, atol=1e-4)
    assert not np.allclose(wide.loc["scgen", "none"], wide.loc["scgen", "scgen_batch_removal"])


def test_cross_study_needs_scgen_and_both_studies(counts):
    studies = simulate_second_study(counts, seed=0)
    with pytest.raises(ValueError, match="must include 'scgen'"):
        cross_study_experiment(studies, models=["scpram"])
    with pytest.raises(ValueError, match="simulated_study_b"):
        cross_study_experiment(studies[studies.obs["study"] == STUDY_A].copy())
    with pytest.raises(ValueError, match="cannot be scored in study B|fewer than min_cells"):
        cross_study_experiment(studies, cell_types=["type_0"], min_cells=1000)


@pytest.mark.parametrize(
    ("seeds", "message"), [((), "non-empty list"), ((0, -2), "non-negative integer, not -2")]
)
def test_bad_seeds_fail_before_any_training(counts, seeds, message):
    studies = simulate_second_study(counts, seed=0)
    with pytest.raises(ValueError, match=message):
        cross_study_experiment(studies, seeds=seeds)
