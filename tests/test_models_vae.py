"""The shared VAE training core: loss, history, early stopping, callbacks, progress bar, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)

from course_lib.models import Scgen, Scpram
from course_lib.models._vae import HISTORY_COLUMNS, pick_device
from course_lib.preprocessing import holdout

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
        ({"n_epochs": 0}, "at least 1"),
        ({"patience": 0}, "patience must be at least 1"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
    ],
)
def test_bad_training_options(train, options, message):
    with pytest.raises(ValueError, match=message):
        Scgen(train, **SMALL).train(verbose=False, **options)


def test_device_defaults_to_cuda_when_available_and_can_be_overridden(train):
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")
    assert next(Scgen(train, device="cpu", **SMALL).module.parameters()).device.type == "cpu"


def test_reconstruct_decodes_the_posterior_means(train):
    model = Scpram(train, **SMALL).train(n_epochs=1, verbose=False)
    cells = train[:30]
    reconstructed = model.reconstruct(cells)
    assert reconstructed.obs_names.equals(cells.obs_names) and reconstructed.var_names.equals(train.var_names)
    np.testing.assert_allclose(reconstructed.X, model._decode(model.latent(cells)))
    assert model.reconstruct().n_obs == train.n_obs
