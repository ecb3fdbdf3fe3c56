"""The shared VAE training core: loss, history, early stopping, callbacks, progress bar, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.models import Scgen, Scpram, TrainingDivergedError, vae
from course_lib.models.neural import pick_device
from course_lib.models.vae import HISTORY_COLUMNS
from course_lib.preprocessing import holdout

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"n_hidden": 32, "n_latent": 8}


@pytest.fixture
def train(synthetic):
    return holdout(synthetic, "type_0")[0]


@pytest.mark.parametrize("cls", [Scgen, Scpram])
def test_training_loss_decreases_and_history_is_recorded(cls, train):
    model = cls(train, **SMALL).train(n_epochs=8, patience=None, verbose=False)
    history = model.history
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert history["epoch"].tolist() == list(range(8))
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert history["val_loss"].notna().all()
    np.testing.assert_allclose(
        history["train_loss"],
        0.5 * history["train_reconstruction"] + 0.5 * model.config["kl_weight"] * history["train_kl"],
        rtol=1e-5,
    )


def test_training_continues_where_it_stopped(train):
    model = Scgen(train, **SMALL).train(n_epochs=2, verbose=False)
    model.train(n_epochs=3, verbose=False, patience=None)
    assert model.history["epoch"].tolist() == [0, 1, 2, 3, 4]


def test_early_stopping_restores_the_best_epoch(train, monkeypatch):
    model = Scgen(train, **SMALL)
    losses = iter([3.0, 1.0, 2.0, 2.5, 4.0, 5.0, 6.0, 7.0])
    weights = {}

    def validation_losses(X_val):
        weights[len(weights)] = {k: v.clone() for k, v in model.module.state_dict().items()}
        return next(losses), math.nan, math.nan

    monkeypatch.setattr(model, "_validation_losses", validation_losses)
    model.train(n_epochs=8, patience=3, verbose=False)
    assert model.history["epoch"].tolist() == [0, 1, 2, 3, 4]
    for key, value in model.module.state_dict().items():
        torch.testing.assert_close(value, weights[1][key])


def test_no_validation_split_never_stops_early(train):
    model = Scgen(train, **SMALL).train(n_epochs=3, validation_fraction=0, patience=1, verbose=False)
    assert len(model.history) == 3 and model.history["val_loss"].isna().all()


def test_callback_sees_every_epoch_and_its_exception_propagates(train):
    seen = []

    class Pruned(Exception):
        pass

    def on_epoch_end(epoch, row):
        seen.append((epoch, row["val_loss"]))
        if epoch == 1:
            raise Pruned

    model = Scgen(train, **SMALL)
    with pytest.raises(Pruned):
        model.train(n_epochs=5, on_epoch_end=on_epoch_end, verbose=False)
    assert [epoch for epoch, _ in seen] == [0, 1]
    assert len(model.history) == 2 and not model.module.training
    assert model.predict(target="type_0").n_obs > 0


def test_progress_bar_shows_epoch_and_losses_unless_silenced(train, capsys):
    Scgen(train, **SMALL).train(n_epochs=2, verbose=True)
    shown = capsys.readouterr().err
    assert "scgen" in shown and "2/2" in shown and "train_loss=" in shown and "val_loss=" in shown
    Scgen(train, **SMALL).train(n_epochs=2, verbose=False)
    assert capsys.readouterr().err == ""


def test_training_leaves_the_global_random_state_alone(train):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Scpram(train, **SMALL).train(n_epochs=1, verbose=False)
    torch.testing.assert_close(torch.rand(3), expected)


def test_bf16_autocast_trains(train):
    model = Scgen(train, **SMALL).train(n_epochs=2, bf16=True, verbose=False)
    assert np.isfinite(model.history["train_loss"]).all()
    assert model.module.encoder[0].weight.dtype == torch.float32


def test_untrained_model_cannot_predict(train):
    with pytest.raises(RuntimeError, match="not trained yet"):
        Scgen(train, **SMALL).predict(target="type_0")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n_epochs": 0}, "n_epochs must be at least 1"),
        ({"patience": 0}, "patience .* must be at least 1"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_fraction": float("nan")}, "validation_fraction"),
        ({"batch_size": 1}, "batch_size must be at least 2"),
        ({"lr": 0.0}, "lr must be a positive finite number"),
        ({"lr": float("nan")}, "lr must be a positive finite number"),
        ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0"),
        ({"lr_schedule": "linear"}, "lr_schedule='linear' is not one of"),
    ],
)
def test_bad_training_options(train, options, message):
    with pytest.raises(ValueError, match=message):
        Scgen(train, **SMALL).train(verbose=False, **options)


def test_the_cosine_schedule_lowers_the_learning_rate_every_epoch(train, monkeypatch):
    optimizers, used = [], []
    original = vae.adam

    def recording_adam(parameters, **settings):
        optimizers.append(original(parameters, **settings))
        return optimizers[-1]

    def record(epoch, row):
        used.append(optimizers[-1].param_groups[0]["lr"])

    monkeypatch.setattr(vae, "adam", recording_adam)
    model = Scgen(train, **SMALL)
    model.train(n_epochs=4, lr=0.002, lr_schedule="cosine", on_epoch_end=record, verbose=False)
    np.testing.assert_allclose(used, [0.002 * (1 + math.cos(math.pi * i / 4)) / 2 for i in range(4)])
    used.clear()
    Scpram(train, **SMALL).train(n_epochs=3, lr=0.002, on_epoch_end=record, verbose=False)
    assert used == [0.002] * 3  # scPRAM keeps the constant default


def test_device_defaults_to_cuda_when_available_and_can_be_overridden(train):
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")
    assert next(Scgen(train, device="cpu", **SMALL).module.parameters()).device.type == "cpu"


def test_reconstruct_decodes_the_posterior_means(train):
    model = Scpram(train, **SMALL).train(n_epochs=1, verbose=False)
    cells = train[:30]
    reconstructed = model.reconstruct(cells)
    assert reconstructed.obs_names.equals(cells.obs_names) and reconstructed.var_names.equals(train.var_names)
    with torch.no_grad():
        expected = model.module.decode(torch.from_numpy(model.latent(cells))).numpy()
    np.testing.assert_allclose(reconstructed.X, expected, rtol=1e-5, atol=1e-6)
    assert model.reconstruct().n_obs == train.n_obs


@pytest.mark.parametrize("cls", [Scgen, Scpram])
def test_a_diverging_training_stops_with_an_error_and_leaves_the_model_untrained(cls, train):
    model = cls(train, **SMALL)
    before = {name: value.clone() for name, value in model.module.state_dict().items()}
    with pytest.raises(
        TrainingDivergedError, match=r"diverged in epoch 0 \(train_loss (nan|inf).*lower learning rate"
    ):
        model.train(n_epochs=3, lr=1e4, verbose=False)
    assert not model.is_trained and model.history.empty
    for name, value in model.module.state_dict().items():
        torch.testing.assert_close(value, before[name])
    with pytest.raises(RuntimeError, match="not trained yet"):
        model.predict(target="type_0")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kl_weight": float("nan")}, "kl_weight must be a finite number"),
        ({"n_latent": 0}, "n_latent must be at least 1"),
        ({"n_hidden": 2.5}, "n_hidden must be an integer"),
        ({"dropout": 1.0}, "dropout must be below 1"),
    ],
)
def test_bad_architectures_are_refused_at_construction(train, options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Scgen(train, **{**SMALL, **options})
