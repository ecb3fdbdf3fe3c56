"""The identity and mean-shift baselines and the balanced pools they share with scGen."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.models import IdentityBaseline, MeanShiftBaseline, balanced_pools
from course_lib.preprocessing import holdout

TARGET = "type_0"


@pytest.fixture
def train(synthetic):
    return holdout(synthetic, TARGET)[0]


def target_controls(adata):
    return adata[(adata.obs["cell_type"] == TARGET) & (adata.obs["condition"] == "control")]


def test_identity_returns_the_target_controls_unchanged(train):
    prediction = IdentityBaseline(train).train().predict(target=TARGET)
    np.testing.assert_array_equal(prediction.X, target_controls(train).X)
    assert (prediction.obs["condition"] == "predicted").all()


def test_mean_shift_adds_the_pool_difference_in_gene_space(train):
    model = MeanShiftBaseline(train, seed=4)
    prediction = model.predict(target=TARGET)
    ctrl, stim = balanced_pools(model.cell_types, model.is_ctrl, model.is_stim, model._rng("pools"))
    delta = train.X[stim].mean(axis=0) - train.X[ctrl].mean(axis=0)
    np.testing.assert_allclose(prediction.uns["delta"], delta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prediction.X, target_controls(train).X + delta, rtol=1e-5, atol=1e-6)


def test_mean_shift_moves_towards_the_held_out_response(synthetic):
    train, held_out = holdout(synthetic, TARGET)
    control = target_controls(train).X.mean(axis=0)
    predicted = MeanShiftBaseline(train).predict(target=TARGET).X.mean(axis=0)
    real = held_out.X.mean(axis=0)
    assert np.corrcoef(predicted - control, real - control)[0, 1] > 0.5


def test_mean_shift_can_exclude_the_target_from_both_pools(train):
    model = MeanShiftBaseline(train, exclude_target=True)
    assert model.config["exclude_target"] is True
    excluded = model.predict(target=TARGET).uns["delta"]
    assert not np.allclose(excluded, model.predict(target=TARGET, exclude_target=False).uns["delta"])


def test_balanced_pools_weigh_every_type_alike_and_have_equal_sizes():
    cell_types = np.array(["a"] * 50 + ["b"] * 10 + ["c"] * 5)
    is_ctrl = np.arange(65) % 2 == 0
    is_stim = ~is_ctrl & (cell_types != "c")
    ctrl, stim = balanced_pools(cell_types, is_ctrl, is_stim, np.random.default_rng(0))
    n_ctrl_max, n_stim_max = 25, 25
    assert ctrl.size == stim.size == min(3 * n_ctrl_max, 2 * n_stim_max)
    assert is_ctrl[ctrl].all() and is_stim[stim].all()
    counts = {t: (cell_types[ctrl] == t).sum() for t in "abc"}
    assert all(count > 5 for count in counts.values()), counts
    again = balanced_pools(cell_types, is_ctrl, is_stim, np.random.default_rng(0))
    np.testing.assert_array_equal(ctrl, again[0])
    np.testing.assert_array_equal(stim, again[1])


def test_an_empty_pool_is_an_error():
    with pytest.raises(ValueError, match="a pool has no cells"):
        balanced_pools(
            np.array(["a", "b"]), np.array([True, True]), np.array([False, False]), np.random.default_rng(0)
        )
