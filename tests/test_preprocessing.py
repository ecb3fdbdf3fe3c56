"""Normalisation, gene selection restricted to training cells, held-out splits and subsampling."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

from course_lib.datasets import synthetic_perturbation
from course_lib.preprocessing import held_out_split, holdout, holdout_mask, imbalance, preprocess, subsample


@pytest.fixture
def counts():
    adata = synthetic_perturbation(n_cells=400, n_genes=300, n_responsive_genes=40, seed=1)
    adata.X = adata.layers.pop("counts").toarray()
    return adata


def test_values_are_log1p_of_counts_per_ten_thousand(counts):
    result = preprocess(counts, n_top_genes=100)
    library = counts.X.sum(axis=1, keepdims=True)  # every synthetic gene is detected, none is filtered
    expected = np.log1p(counts[:, result.var_names].X / library * 1e4)
    np.testing.assert_allclose(result.X.toarray(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(result.layers["counts"].toarray(), counts[:, result.var_names].X)
    assert result.n_vars == 100 and result.uns["preprocessing"]["n_fit_cells"] == counts.n_obs


def test_gene_choice_sees_only_the_fit_on_cells(counts):
    mask = holdout_mask(counts, "type_0")
    restricted = preprocess(counts, fit_on=~mask, n_top_genes=60)
    on_training_cells_only = preprocess(counts[~mask], n_top_genes=60)
    on_all_cells = preprocess(counts, n_top_genes=60)
    assert list(restricted.var_names) == list(on_training_cells_only.var_names)
    assert set(restricted.var_names) != set(on_all_cells.var_names)  # the held-out cells would have leaked
    assert restricted.n_obs == counts.n_obs  # every cell is still normalised and returned


def test_genes_detected_in_too_few_fit_cells_are_dropped(counts):
    counts.X[:, 0] = 0
    counts.X[:2, 0] = 5  # detected in two cells only
    result = preprocess(counts, n_top_genes=50, min_cells=3)
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


def test_bad_fit_on_mask_is_rejected(counts):
    with pytest.raises(ValueError, match="boolean mask"):
        preprocess(counts, fit_on=np.zeros(counts.n_obs, dtype=bool))
    with pytest.raises(ValueError, match="empty"):
        preprocess(ad.AnnData(np.zeros((0, 5), dtype=np.float32)))


def test_imbalance_keeps_all_controls_and_an_exact_fifth_of_each_types_stimulated_cells(synthetic):
    result = imbalance(synthetic, seed=2)
    before = synthetic.obs.groupby(["condition", "cell_type"], observed=True).size()
    after = result.obs.groupby(["condition", "cell_type"], observed=True).size()
    np.testing.assert_array_equal(after["control"], before["control"])
    np.testing.assert_array_equal(after["stimulated"], np.round(0.2 * before["stimulated"].to_numpy()))
    assert list(imbalance(synthetic, seed=2).obs_names) == list(result.obs_names)


def test_held_out_split_chooses_genes_without_the_hidden_cells_and_returns_the_query(counts):
    split = held_out_split(counts, "type_0", n_top_genes=60)
    expected = preprocess(counts, fit_on=~holdout_mask(counts, "type_0"), n_top_genes=60)
    assert list(split.train.var_names) == list(expected.var_names)
    assert set(split.truth.obs["condition"]) == {"stimulated"} and set(split.truth.obs["cell_type"]) == {
        "type_0"
    }
    assert set(split.query.obs["condition"]) == {"control"} and set(split.query.obs["cell_type"]) == {
        "type_0"
    }
    assert split.query.obs_names.isin(split.train.obs_names).all()
    assert not split.truth.obs_names.isin(split.train.obs_names).any()


def test_held_out_split_thins_every_group_with_its_seed(counts):
    first = held_out_split(counts, "type_0", fraction=0.5, seed=3, n_top_genes=60)
    again = held_out_split(counts, "type_0", fraction=0.5, seed=3, n_top_genes=60)
    n_cells = first.train.n_obs + first.truth.n_obs
    assert n_cells == subsample(counts, 0.5, seed=3).n_obs < counts.n_obs
    assert list(first.train.obs_names) == list(again.train.obs_names)
