"""Input checks shared by every public function."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from course_lib.checks import (
    looks_like_counts,
    require_fraction,
    require_log_normalised,
    require_positive_int,
    require_same_genes,
    require_seed,
    require_unique_genes,
)


@pytest.mark.parametrize(
    ("matrix", "counts"),
    [
        (np.array([[0, 3], [1, 0]], dtype=np.float32), True),  # shallow counts: a maximum of 3
        (sp.csr_matrix(np.array([[0, 120], [7, 0]], dtype=np.float32)), True),
        (np.log1p(np.array([[0, 3], [1, 0]], dtype=np.float32)), False),
        (np.zeros((2, 2), dtype=np.float32), False),
        (np.array([[0, -1], [1, 0]], dtype=np.float32), False),  # negative: not counts
        (np.array([[np.nan, 1.0]]), False),
    ],
)
def test_counts_are_told_by_their_shape_not_their_size(matrix, counts):
    assert looks_like_counts(matrix) is counts


def test_log_normalised_input_is_checked_for_counts_and_negative_values():
    good = ad.AnnData(np.log1p(np.array([[0, 3.0], [1, 0]], dtype=np.float32)))
    require_log_normalised(good)
    with pytest.raises(ValueError, match="looks like raw counts"):
        require_log_normalised(ad.AnnData(np.array([[0, 2.0], [1, 0]], dtype=np.float32)))
    centred = ad.AnnData(np.array([[-0.5, 0.5], [0.5, -0.5]], dtype=np.float32))
    with pytest.raises(ValueError, match="2 negative values"):
        require_log_normalised(centred, what="query")
    require_log_normalised(centred, allow_negative=True)


def test_duplicated_gene_names_are_named():
    adata = ad.AnnData(np.ones((2, 3), dtype=np.float32))
    adata.var_names = ["CD3D", "CD3D", "LYZ"]
    with pytest.raises(ValueError, match=r"1 duplicated gene name\(s\) \('CD3D'\).*var_names_make_unique"):
        require_unique_genes(adata)


def test_gene_order_and_differences_are_explained():
    reference = ad.AnnData(np.ones((1, 3), dtype=np.float32))
    reference.var_names = ["a", "b", "c"]
    shuffled = reference[:, ["c", "a", "b"]]
    with pytest.raises(ValueError, match="another order"):
        require_same_genes(shuffled, reference)
    with pytest.raises(ValueError, match=r"1 gene\(s\) of reference are missing \('c'\)"):
        require_same_genes(reference[:, ["a", "b"]], reference)


@pytest.mark.parametrize(("value", "error"), [(-1, ValueError), (1.0, TypeError), (True, TypeError)])
def test_seeds_are_non_negative_integers(value, error):
    with pytest.raises(error, match="non-negative integer"):
        require_seed(value)
    assert require_seed(np.int64(4)) == 4


@pytest.mark.parametrize("value", [0.0, -0.1, 1.01, float("nan")])
def test_fractions_lie_in_zero_to_one(value):
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        require_fraction(value, what="fraction")
    assert require_fraction(0.0, what="share", allow_zero=True) == 0.0


def test_positive_integers_have_a_minimum():
    assert require_positive_int(3, what="n") == 3
    with pytest.raises(ValueError, match="n must be at least 2, not 1"):
        require_positive_int(1, what="n", minimum=2)
    with pytest.raises(TypeError, match="must be an integer"):
        require_positive_int(2.0, what="n")
