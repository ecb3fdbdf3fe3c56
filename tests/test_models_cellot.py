"""CellOT: input-convex networks, the transport map they learn, and the model's own behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.models import Cellot, TrainingDivergedError
from course_lib.models.cellot import ICNN, fit_transport, transport, validation_distance
from course_lib.preprocessing import holdout

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TARGET = "type_0"
SMALL = {"n_components": 5, "hidden": [8, 8]}


@pytest.fixture(scope="module")
def trained():
    from course_lib.datasets import synthetic_perturbation

    train = holdout(synthetic_perturbation(n_cells=600, n_genes=200, n_cell_types=3, seed=0), TARGET)[0]
    return Cellot(train, seed=0, target=TARGET, **SMALL).train(n_steps=60, eval_every=20, verbose=False)


def test_an_icnn_with_non_negative_w_weights_is_convex_along_random_segments():
    torch.manual_seed(0)
    icnn = ICNN(6, (16, 16, 16))
    with torch.no_grad():
        for layer in icnn.A:
            layer.weight.normal_()  # A may be anything; W is kept non-negative
            layer.bias.normal_()
    x, y = torch.randn(200, 6) * 3, torch.randn(200, 6) * 3
    with torch.no_grad():
        fx, fy = icnn(x), icnn(y)
        for t in torch.linspace(0, 1, 11):
            between = icnn(t * x + (1 - t) * y)
            assert (between <= t * fx + (1 - t) * fy + 1e-4).all()


def test_negative_w_weights_are_penalised_and_clamped():
    icnn = ICNN(3, (4,))
    with torch.no_grad():
        icnn.W[0].weight.fill_(-2.0)
    assert float(icnn.negative_weight_norm().detach()) == pytest.approx(
        4.0
    )  # relu(2) over a 1 x 4 matrix: norm 4
    icnn.clamp_weights()
    assert float(icnn.negative_weight_norm().detach()) == 0.0 and (icnn.W[0].weight >= 0).all()


def test_transport_is_the_gradient_of_the_network():
    torch.manual_seed(1)
    icnn = ICNN(4, (8, 8))
    x = torch.randn(5, 4, dtype=torch.float64)
    icnn = icnn.double()
    numerical = torch.zeros_like(x)
    for i in range(4):
        step = torch.zeros_like(x)
        step[:, i] = 1e-6
        numerical[:, i] = (icnn(x + step) - icnn(x - step)) / 2e-6
    torch.testing.assert_close(transport(icnn, x), numerical, rtol=1e-5, atol=1e-7)


def test_the_learned_map_between_gaussians_is_the_affine_brenier_map():
    """Source N(0, I) and target N(m, s² I) in 2-D: the optimal map is T(x) = m + s x."""
    rng = np.random.default_rng(0)
    m, s = np.array([2.0, -1.0]), 1.5
    source = rng.normal(size=(2000, 2))
    target = m + s * rng.normal(size=(2000, 2))
    mapping, history = fit_transport(source, target, hidden=(32, 32), n_steps=600, lr=1e-3, seed=0)
    probe = rng.normal(size=(500, 2))
    error = np.sqrt(((mapping(probe) - (m + s * probe)) ** 2).sum(axis=1)).mean()
    no_map = np.sqrt(((probe - (m + s * probe)) ** 2).sum(axis=1)).mean()
    assert error < 0.1 * no_map, (error, no_map)  # within a tenth of the distance the map has to cover
    assert history["val_energy_distance"].iloc[-1] < history["val_energy_distance"].iloc[0]


def test_the_history_records_every_evaluation_and_the_best_weights_are_kept(trained):
    history = trained.history
    assert list(history.columns) == ["step", "g_loss", "f_loss", "val_energy_distance"]
    assert history["step"].tolist() == [19, 39, 59]
    assert np.isfinite(history.to_numpy()).all()


def test_prediction_is_the_decoded_transport_of_the_query(trained):
    prediction = trained.predict()
    query = trained.adata[(trained.cell_types == TARGET) & trained.is_ctrl]
    mapped = trained.map_scores(trained.encode(query.X))
    np.testing.assert_allclose(prediction.obsm["X_cellot"], mapped)
    np.testing.assert_allclose(prediction.X, trained.decode(mapped), rtol=1e-5, atol=1e-5)


def test_the_pca_space_decodes_what_it_encodes(trained):
    scores = trained.encode(trained.X)
    assert scores.std() == pytest.approx(1.0, rel=1e-3)  # scaled to unit spread
    reconstructed = trained.decode(scores)
    kept = ((trained.X - trained.mean) @ trained.components.T) @ trained.components + trained.mean
    np.testing.assert_allclose(reconstructed, kept, rtol=1e-4, atol=1e-4)


def test_the_source_leaves_out_the_held_out_type(trained):
    source, target = trained._source_and_target()
    assert not (trained.cell_types[source] == TARGET).any() and trained.is_stim[target].all()


def test_validation_distance_is_the_energy_distance():
    from course_lib.metrics import energy_distance

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 3)), rng.normal(loc=1.0, size=(30, 3))
    assert validation_distance(torch.tensor(x), torch.tensor(y)) == pytest.approx(
        energy_distance(x, y), rel=1e-9
    )


def test_a_diverging_training_leaves_the_model_as_it_was(trained):
    model = Cellot(trained.adata, seed=0, **SMALL)
    before = {name: value.clone() for name, value in model.map.g.state_dict().items()}
    with pytest.raises(TrainingDivergedError, match="diverged in outer step"):
        model.train(n_steps=40, eval_every=5, lr=1e6, verbose=False)
    assert not model.is_trained and model.history.empty
    for name, value in model.map.g.state_dict().items():
        torch.testing.assert_close(value, before[name])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_components": 0}, "n_components must be at least 1"),
        ({"n_components": 500}, "exceeds min"),
        ({"hidden": [8, 0]}, "every hidden width must be at least 1"),
        ({"fnorm_penalty": -1.0}, "fnorm_penalty must be a finite number"),
    ],
)
def test_bad_options_fail_before_training(trained, options, message):
    with pytest.raises(ValueError, match=message):
        Cellot(trained.adata, **{**SMALL, **options})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_steps": 0}, "n_steps must be at least 1"),
        ({"batch_size": 1}, "batch_size must be at least 2"),
        ({"lr": 0.0}, "lr must be a positive finite number"),
        ({"validation_fraction": 1.0}, "validation_fraction must be below 1"),
    ],
)
def test_bad_training_options(trained, options, message):
    with pytest.raises(ValueError, match=message):
        Cellot(trained.adata, **SMALL).train(verbose=False, **options)
