"""scGen: architecture, latent arithmetic, pools and batch removal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from torch import nn

from course_lib import metrics
from course_lib.datasets import kang2018
from course_lib.experiment import held_out_split
from course_lib.models import IdentityBaseline, Scgen
from course_lib.preprocessing import holdout

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TARGET = "type_0"


@pytest.fixture(scope="module")
def trained():
    from course_lib.datasets import synthetic_perturbation

    train = holdout(synthetic_perturbation(n_cells=600, n_genes=200, n_cell_types=3, seed=0), TARGET)[0]
    return Scgen(train, n_hidden=32, n_latent=8, seed=0).train(n_epochs=3, verbose=False)


def test_architecture_follows_the_reference(synthetic):
    model = Scgen(synthetic)
    encoder = model.module.encoder
    assert [type(layer) for layer in encoder[:4]] == [nn.Linear, nn.BatchNorm1d, nn.LeakyReLU, nn.Dropout]
    assert (encoder[0].in_features, encoder[0].out_features, encoder[-1].out_features) == (200, 800, 200)
    assert encoder[1].momentum == 0.01 and encoder[1].eps == 1e-3 and encoder[3].p == 0.2
    assert isinstance(model.module.decoder[-1], nn.Linear) and model.module.decoder[-1].out_features == 200
    assert model.module.kl_weight == 5e-5 and model.module.min_variance == 1e-4
    assert sum(isinstance(layer, nn.Linear) for layer in Scgen(synthetic, n_layers=1).module.decoder) == 2


def test_the_decoder_has_batch_norm_only_when_asked(synthetic):
    def batch_norms(model):
        return sum(isinstance(layer, nn.BatchNorm1d) for layer in model.module.decoder)

    assert batch_norms(Scgen(synthetic)) == 0  # pertpy's architecture, the course's default
    assert batch_norms(Scgen(synthetic, decoder_batch_norm=True)) == 2  # the original scGen's
    assert sum(isinstance(layer, nn.BatchNorm1d) for layer in Scgen(synthetic).module.encoder) == 2


def test_prediction_is_decoded_latent_mean_plus_delta(trained):
    prediction = trained.predict(target=TARGET)
    delta = prediction.uns["delta"]
    assert delta.shape == (8,)
    query = trained.adata[prediction.obs_names]
    expected = trained._decode(trained.latent(query) + delta)
    np.testing.assert_allclose(prediction.X, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(trained.predict(target=TARGET).uns["delta"], delta)


def test_delta_is_the_difference_of_the_balanced_pool_means(trained):
    ctrl, stim = trained._pools(TARGET, exclude_target=False)
    latent = trained.latent()
    expected = latent[stim].mean(axis=0) - latent[ctrl].mean(axis=0)
    np.testing.assert_allclose(trained.predict(target=TARGET).uns["delta"], expected, rtol=1e-5)
    assert (trained.cell_types[ctrl] == TARGET).any() and not (trained.cell_types[stim] == TARGET).any()


def test_exclude_target_leaves_the_target_out_of_both_pools(trained):
    ctrl, stim = trained._pools(TARGET, exclude_target=True)
    assert not (trained.cell_types[np.concatenate([ctrl, stim])] == TARGET).any()
    default = trained.predict(target=TARGET).uns["delta"]
    excluded = trained.predict(target=TARGET, exclude_target=True).uns["delta"]
    assert not np.allclose(default, excluded)


def test_clip_output_makes_expression_non_negative(trained):
    assert trained.predict(target=TARGET, clip_output=True).X.min() >= 0


def test_batch_removal_aligns_each_type_on_its_largest_batch(trained):
    adata = trained.adata.copy()
    rng = np.random.default_rng(0)
    adata.obs["batch"] = pd.Categorical(np.where(rng.random(adata.n_obs) < 0.7, "a", "b"))
    adata.obs.loc[adata.obs["cell_type"] == "type_2", "batch"] = "a"
    corrected = trained.remove_batch_effect(adata, batch_key="batch")
    assert corrected.shape == adata.shape and corrected.obs_names.equals(adata.obs_names)
    latent, shifted = trained.latent(adata), corrected.obsm["X_latent_corrected"]
    for cell_type in ("type_0", "type_1"):
        of_type = (adata.obs["cell_type"] == cell_type).to_numpy()
        in_a, in_b = (
            of_type & (adata.obs["batch"] == "a").to_numpy(),
            of_type & (adata.obs["batch"] == "b").to_numpy(),
        )
        np.testing.assert_allclose(shifted[in_b].mean(axis=0), latent[in_a].mean(axis=0), atol=1e-5)
        np.testing.assert_allclose(shifted[in_a], latent[in_a])
    single = (adata.obs["cell_type"] == "type_2").to_numpy()
    np.testing.assert_array_equal(shifted[single], latent[single])


def test_batch_removal_needs_the_batch_column(trained):
    with pytest.raises(KeyError, match="no column 'batch'"):
        trained.remove_batch_effect()


@pytest.mark.slow
def test_scgen_beats_identity_on_delta_correlation_for_held_out_cd4_t_cells():
    """Real data: on 30% of the Kang 2018 cells, scGen learns a response that the identity baseline lacks."""
    train, query, truth = held_out_split(kang2018(), "CD4 T cells", fraction=0.3)
    scgen = Scgen(train, seed=0, target="CD4 T cells").train(n_epochs=5, verbose=False)
    predictions = {
        "scgen": scgen.predict(),
        "identity": IdentityBaseline(train, target="CD4 T cells").predict(),
    }
    scores = metrics.evaluate(query, truth, predictions, n_bootstrap=20, n_ceiling_splits=0, verbose=False)
    delta = scores[scores["metric"] == "delta_pearson_top100"].set_index("model")["value"]
    assert delta["scgen"] > delta["identity"] + 0.3, delta
