"""Normalisation, gene selection restricted to training cells, the held-out mask, subsampling and the
imbalanced variant."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

from course_lib.preprocessing import holdout, holdout_mask, imbalance, preprocess, subsample


def test_values_are_log1p_of_counts_per_ten_thousand(raw_counts):
    result = preprocess(raw_counts, n_top_genes=100)
    library = raw_counts.X.sum(axis=1, keepdims=True)  # every synthetic gene is detected, none is filtered
    expected = np.log1p(raw_counts[:, result.var_names].X / library * 1e4)
    np.testing.assert_allclose(result.X.toarray(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(result.layers["counts"].toarray(), raw_counts[:, result.var_names].X)
    assert result.n_vars == 100 and result.uns["preprocessing"]["n_fit_cells"] == raw_counts.n_obs


def test_gene_choice_sees_only_the_fit_on_cells(raw_counts):
    mask = holdout_mask(raw_counts, "type_0")
    restricted = preprocess(raw_counts, fit_on=~mask, n_top_genes=60)
    on_training_cells_only = preprocess(raw_counts[~mask], n_top_genes=60)
    on_all_cells = preprocess(raw_counts, n_top_genes=60)
    assert list(restricted.var_names) == list(on_training_cells_only.var_names)
    assert set(restricted.var_names) != set(on_all_cells.var_names)  # the held-out cells would have leaked
    assert restricted.n_obs == raw_counts.n_obs  # every cell is still normalised and returned


def test_genes_detected_in_too_few_fit_cells_are_dropped(raw_counts):
    raw_counts.X[:, 0] = 0
    raw_counts.X[:2, 0] = 5  # detected in two cells only
    result = preprocess(raw_counts, n_top_genes=50, min_cells=3)
    assert "gene_0" not in result.var_names


def test_normalised_input_is_rejected(synthetic):
    del synthetic.layers["counts"]
    with pytest.raises(ValueError, match="already normalised"):
        preprocess(synthetic)


def test_counts_layer_is_used_when_present(synthetic):
    result = preprocess(synthetic, n_top_genes=50)
    assert result.X.max() < 15 and result.layers["counts"].max() > 50


def test_holdout_splits_off_the_stimulated_cells_of_one_type(synthetic):
    train, heldout = holdout(synthetic, "type_1")
    assert set(heldout.obs["cell_type"]) == {"type_1"} and set(heldout.obs["condition"]) == {"stimulated"}
    in_train = train.obs[(train.obs["cell_type"] == "type_1")]
    assert set(in_train["condition"]) == {"control"}
    assert train.n_obs + heldout.n_obs == synthetic.n_obs


def test_unknown_cell_type_lists_the_known_ones(synthetic):
    with pytest.raises(ValueError, match=r"'CD4 T' not found.*'type_0', 'type_1', 'type_2'"):
        holdout(synthetic, "CD4 T")


def test_subsample_keeps_every_group_and_is_seeded(synthetic):
    small = subsample(synthetic, 0.1, seed=4)
    groups = synthetic.obs.groupby(["condition", "cell_type"], observed=True).size()
    kept = small.obs.groupby(["condition", "cell_type"], observed=True).size()
    np.testing.assert_array_equal(kept.to_numpy(), np.maximum(1, np.round(0.1 * groups.to_numpy())))
    assert list(subsample(synthetic, 0.1, seed=4).obs_names) == list(small.obs_names)
    assert list(subsample(synthetic, 0.1, seed=5).obs_names) != list(small.obs_names)


def test_bad_fit_on_mask_is_rejected(raw_counts):
    with pytest.raises(ValueError, match="boolean mask"):
        preprocess(raw_counts, fit_on=np.zeros(raw_counts.n_obs, dtype=bool))
    with pytest.raises(ValueError, match="empty"):
        preprocess(ad.AnnData(np.zeros((0, 5), dtype=np.float32)))


def test_imbalance_keeps_all_controls_and_an_exact_fifth_of_each_types_stimulated_cells(synthetic):
    result = imbalance(synthetic, seed=2)
    before = synthetic.obs.groupby(["condition", "cell_type"], observed=True).size()
    after = result.obs.groupby(["condition", "cell_type"], observed=True).size()
    np.testing.assert_array_equal(after["control"], before["control"])
    np.testing.assert_array_equal(after["stimulated"], np.round(0.2 * before["stimulated"].to_numpy()))
    assert list(imbalance(synthetic, seed=2).obs_names) == list(result.obs_names)


@pytest.mark.parametrize("n_top_genes", [0, -5])
def test_a_gene_count_below_one_is_refused(raw_counts, n_top_genes):
    with pytest.raises(ValueError, match=f"n_top_genes must be at least 1, not {n_top_genes}"):
        preprocess(raw_counts, n_top_genes=n_top_genes)


def test_nan_in_counts_is_reported_as_nan_not_as_normalised(raw_counts):
    broken = raw_counts.copy()
    broken.X[0, 0] = np.nan
    with pytest.raises(ValueError, match="the counts holds 1 NaN or infinite values"):
        preprocess(broken)


def test_duplicated_genes_are_refused(raw_counts):
    twins = raw_counts.copy()
    twins.var_names = ["gene_0", *twins.var_names[:-1]]
    with pytest.raises(ValueError, match="duplicated gene name"):
        preprocess(twins)


def test_a_one_gene_selection_works(raw_counts):
    assert preprocess(raw_counts, n_top_genes=1).n_vars == 1


@pytest.mark.parametrize("fraction", [0.0, 1.5, float("nan")])
def test_subsample_refuses_fractions_outside_zero_to_one(synthetic, fraction):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        subsample(synthetic, fraction)
