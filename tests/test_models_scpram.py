"""scPRAM: architecture, OT matching and its convergence checks, attention, variants and options."""

from __future__ import annotations

import math

import numpy as np
import pytest
from torch import nn

from course_lib.datasets import synthetic_perturbation
from course_lib.models import OTConvergenceWarning, OTNotConvergedError, Scpram
from course_lib.models.scpram import cosine_similarity, l1_attention, topk_attention, transport_plan
from course_lib.preprocessing import holdout

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TARGET = "type_0"


@pytest.fixture(scope="module")
def trained():
    train = holdout(synthetic_perturbation(n_cells=600, n_genes=200, n_cell_types=3, seed=0), TARGET)[0]
    return Scpram(train, n_hidden=32, n_latent=8, seed=0).train(n_epochs=3, verbose=False)


def latent_prediction(model: Scpram, **options) -> tuple[np.ndarray, np.ndarray]:
    """The query's latent codes and the codes that ``predict`` decodes."""
    decoded = []
    original = model._decode
    model._decode = lambda z: decoded.append(z) or original(z)
    try:
        prediction = model.predict(target=TARGET, **options)
    finally:
        del model._decode
    return model.latent(model.adata[prediction.obs_names]), decoded[0]


def test_architecture_follows_the_reference(synthetic):
    module = Scpram(synthetic).module
    assert [type(layer) for layer in module.encoder] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert (module.encoder[0].out_features, module.encoder[-1].out_features) == (1000, 200)
    assert isinstance(module.decoder[-1], nn.ReLU) and module.decoder[-2].out_features == 200
    assert (module.kl_weight, module.noise_rate, module.min_variance) == (5e-4, 0.1, 0.0)
    assert Scpram.max_grad_norm == 10 and Scpram.optimizer["lr"] == 5e-4


def test_exact_plan_recovers_a_permutation():
    points = np.random.default_rng(0).normal(size=(30, 4))
    order = np.random.default_rng(1).permutation(30)
    plan = transport_plan(points, points[order] + 0.01)
    np.testing.assert_array_equal(order[plan.argmax(axis=1)], np.arange(30))
    np.testing.assert_allclose(plan.sum(axis=1), 1 / 30)


def test_exact_plan_out_of_budget_raises_or_warns_with_the_numbers():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(60, 5)), rng.normal(size=(70, 5))
    with pytest.raises(OTNotConvergedError, match=r"60 x 70 cells.*budget of 3 iterations"):
        transport_plan(source, target, max_iter=3)
    with pytest.warns(OTConvergenceWarning, match="budget of 3 iterations.*unconverged plan"):
        plan = transport_plan(source, target, max_iter=3, on_unconverged="warn")
    assert plan.shape == (60, 70)


def test_sinkhorn_plan_converges_or_reports():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(40, 5)), rng.normal(size=(50, 5))
    plan = transport_plan(source, target, solver="sinkhorn", epsilon=0.1)
    np.testing.assert_allclose(plan.sum(axis=0), 1 / 50, atol=1e-6)
    with pytest.raises(OTNotConvergedError, match=r"Sinkhorn .*epsilon 0.01.*after 2 of 2 iterations"):
        transport_plan(source, target, solver="sinkhorn", epsilon=0.01, max_iter=2)


def test_topk_attention_keeps_k_keys_and_sums_to_one():
    rng = np.random.default_rng(0)
    queries, keys = rng.normal(size=(5, 6)) + 3, rng.normal(size=(40, 6)) + 3
    weights = topk_attention(queries, keys, ratio=0.1)
    assert ((weights > 0).sum(axis=1) == math.ceil(40 * 0.1)).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1, rtol=1e-6)
    similarity = cosine_similarity(queries, keys)
    kept = weights > 0
    assert (
        similarity[kept].reshape(5, -1).min(axis=1) >= np.where(kept, -np.inf, similarity).max(axis=1)
    ).all()
    np.testing.assert_allclose(weights[kept], (similarity / (similarity * kept).sum(1, keepdims=True))[kept])


def test_l1_attention_normalises_by_absolute_similarity():
    weights = l1_attention(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]]))
    np.testing.assert_allclose(weights, np.array([[1, 0, -(2**-0.5)]]) / (1 + 2**-0.5))


def test_attention_weights_by_reference_cell_type(trained):
    prediction = trained.predict(target=TARGET)
    attention = prediction.obsm["attention_by_cell_type"]
    assert attention.index.equals(prediction.obs_names)
    assert list(attention.columns) == ["type_1", "type_2"]
    np.testing.assert_allclose(attention.sum(axis=1), 1, rtol=1e-5)
    assert (attention.to_numpy() >= 0).all()


def test_per_cell_attention_gives_each_cell_its_shift(trained):
    query, predicted = latent_prediction(trained)
    shifts = predicted - query
    assert not np.allclose(shifts, shifts[0])


def test_row0_attention_gives_one_shared_shift(trained):
    query, predicted = latent_prediction(trained, attention="row0")
    shifts = predicted - query
    np.testing.assert_allclose(shifts, np.broadcast_to(shifts[0], shifts.shape), atol=1e-5)
    attention = trained.predict(target=TARGET, attention="row0").obsm["attention_by_cell_type"]
    assert (attention.nunique() == 1).all()


@pytest.mark.parametrize("scope", ["global", "per_type"])
def test_shift_is_the_attention_weighted_ot_perturbation(trained, scope):
    query, predicted = latent_prediction(trained, ot_scope=scope)
    latent = trained.latent()
    reference = trained.is_ctrl & (trained.cell_types != TARGET)
    keys, stim = latent[reference], latent[trained.is_stim]
    if scope == "global":
        partners = stim[transport_plan(keys, stim).argmax(axis=1)]
    else:  # each control matched among the stimulated cells of its own type
        key_types, stim_types = trained.cell_types[reference], trained.cell_types[trained.is_stim]
        partners = np.empty_like(keys)
        for cell_type in np.unique(key_types):
            own = stim[stim_types == cell_type]
            partners[key_types == cell_type] = own[
                transport_plan(keys[key_types == cell_type], own).argmax(axis=1)
            ]
    expected = query + topk_attention(query, keys, 0.05) @ (partners - keys)
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-4)


def test_per_type_matching_leaves_out_controls_without_stimulated_partners(trained):
    query = trained.adata[trained.is_ctrl][:30]  # no target: every type's controls are candidate keys
    prediction = trained.predict(query=query)
    attended = prediction.obsm["attention_by_cell_type"].columns
    assert TARGET not in attended  # its stimulated cells are held out, so its controls have no partner
    assert TARGET in trained.predict(query=query, ot_scope="global").obsm["attention_by_cell_type"].columns


def test_attention_only_variant_uses_one_shift_per_reference_type(trained):
    prediction = trained.predict(target=TARGET, method="attention_only")
    attention = prediction.obsm["attention_by_cell_type"]
    assert list(attention.columns) == ["type_1", "type_2"]
    np.testing.assert_allclose(attention.abs().sum(axis=1), 1, rtol=1e-5)


def test_ot_only_variant_maps_queries_onto_stimulated_cells(trained):
    query, predicted = latent_prediction(trained, method="ot_only")
    latent = trained.latent()
    stim = latent[trained.is_stim]
    assert predicted.shape == query.shape
    assert np.linalg.norm(predicted.mean(0) - stim.mean(0)) < np.linalg.norm(query.mean(0) - stim.mean(0))
    assert "attention_by_cell_type" not in trained.predict(target=TARGET, method="ot_only").obsm


def test_unconverged_ot_in_predict_raises_or_warns(trained):
    with pytest.raises(OTNotConvergedError, match="Raise ot_max_iter"):
        trained.predict(target=TARGET, ot_max_iter=5)
    with pytest.warns(OTConvergenceWarning):
        prediction = trained.predict(target=TARGET, ot_max_iter=5, on_unconverged="warn")
    assert np.isfinite(prediction.X).all()


def test_sinkhorn_option_predicts(trained):
    exact = trained.predict(target=TARGET)
    entropic = trained.predict(target=TARGET, ot_solver="sinkhorn", sinkhorn_epsilon=0.05)
    assert entropic.uns["prediction"]["ot_solver"] == "sinkhorn"
    assert not np.allclose(entropic.X, exact.X)


def test_sampled_latents_are_seeded(trained):
    sampled = trained.predict(target=TARGET, latent="sample")
    np.testing.assert_array_equal(sampled.X, trained.predict(target=TARGET, latent="sample").X)
    assert not np.allclose(sampled.X, trained.predict(target=TARGET).X)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "attention"}, "method='attention' is not one of"),
        ({"attention": "row1"}, "attention='row1'"),
        ({"latent": "median"}, "latent='median'"),
        ({"ot_solver": "lp"}, "ot_solver='lp'"),
        ({"on_unconverged": "ignore"}, "on_unconverged='ignore'"),
        ({"ratio": 0}, "ratio must be in"),
        ({"sinkhorn_epsilon": 0}, "sinkhorn_epsilon must be positive"),
    ],
)
def test_bad_options_fail_before_training(synthetic, options, message):
    with pytest.raises(ValueError, match=message):
        Scpram(synthetic, **options)


def test_reference_controls_of_other_types_are_required(synthetic):
    train = holdout(synthetic, TARGET)[0]
    only_target_controls = train[
        (train.obs["condition"] == "stimulated") | (train.obs["cell_type"] == TARGET)
    ]
    model = Scpram(only_target_controls.copy(), n_hidden=8, n_latent=4).train(n_epochs=1, verbose=False)
    with pytest.raises(ValueError, match="no 'control' cells of a type other than 'type_0'"):
        model.predict(target=TARGET)
