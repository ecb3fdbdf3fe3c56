"""The interface every model shares: input checks, predictions, determinism, saving and loading."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)

from course_lib.models import MODELS, PerturbationModel, load
from course_lib.preprocessing import holdout

TARGET = "type_0"
SMALL = {"scgen": {"n_hidden": 32, "n_latent": 8}, "scpram": {"n_hidden": 32, "n_latent": 8}}
"""Tiny networks: the tests check behaviour, not quality."""


@pytest.fixture
def train(synthetic):
    """The synthetic cells without the stimulated cells of ``TARGET``."""
    return holdout(synthetic, TARGET)[0]


def fitted(name: str, adata, *, seed: int = 0, **options) -> PerturbationModel:
    model = MODELS[name](adata, seed=seed, **SMALL.get(name, {}), **options)
    return model.train(n_epochs=2, verbose=False) if name in SMALL else model.train()


@pytest.mark.parametrize("name", MODELS)
def test_prediction_has_query_cells_training_genes_and_predicted_label(name, train):
    prediction = fitted(name, train).predict(target=TARGET)
    query = train[(train.obs["cell_type"] == TARGET) & (train.obs["condition"] == "control")]
    assert prediction.shape == query.shape
    assert prediction.obs_names.equals(query.obs_names)
    assert prediction.var_names.equals(train.var_names)
    assert (prediction.obs["condition"] == "predicted").all()
    assert (prediction.obs["cell_type"] == TARGET).all()
    assert np.isfinite(prediction.X).all()


@pytest.mark.parametrize("name", MODELS)
def test_query_replaces_target_controls(name, train):
    query = train[train.obs["condition"] == "control"][:25]
    prediction = fitted(name, train).predict(query=query)
    assert prediction.obs_names.equals(query.obs_names)


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_gives_identical_predictions(name, train):
    first = fitted(name, train, seed=3).predict(target=TARGET)
    second = fitted(name, train, seed=3).predict(target=TARGET)
    np.testing.assert_array_equal(first.X, second.X)


@pytest.mark.parametrize("name", ["scgen", "scpram", "mean_shift"])
def test_another_seed_gives_another_prediction(name, train):
    first = fitted(name, train, seed=0).predict(target=TARGET)
    second = fitted(name, train, seed=1).predict(target=TARGET)
    assert not np.array_equal(first.X, second.X)


@pytest.mark.parametrize("name", MODELS)
def test_save_and_load_round_trip(name, train, tmp_path):
    model = fitted(name, train, seed=2)
    model.save(tmp_path / "model")
    for restored in (MODELS[name].load(tmp_path / "model", train), load(tmp_path / "model", train)):
        assert type(restored) is type(model) and restored.config == model.config
        np.testing.assert_array_equal(restored.predict(target=TARGET).X, model.predict(target=TARGET).X)
    if name in SMALL:
        assert restored.history.equals(model.history)


@pytest.mark.parametrize("name", MODELS)
def test_load_onto_other_genes_fails(name, train, tmp_path):
    fitted(name, train).save(tmp_path / "model")
    with pytest.raises(ValueError, match="different genes"):
        load(tmp_path / "model", train[:, 5:].copy())
    with pytest.raises(ValueError, match="another order"):
        load(tmp_path / "model", train[:, ::-1].copy())


def test_load_checks_the_model_class(train, tmp_path):
    fitted("identity", train).save(tmp_path / "model")
    with pytest.raises(ValueError, match="holds a 'identity' model"):
        MODELS["mean_shift"].load(tmp_path / "model", train)
    with pytest.raises(FileNotFoundError, match="not a model saved"):
        load(tmp_path / "nothing", train)


def test_save_refuses_to_overwrite_unless_asked(train, tmp_path):
    model = fitted("mean_shift", train)
    model.save(tmp_path / "model")
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "model")
    model.save(tmp_path / "model", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_failed_save_leaves_nothing_behind(train, tmp_path, monkeypatch):
    model = fitted("scgen", train)

    def broken(directory):
        (directory / "weights.pt").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(model, "_save_state", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_query_with_other_genes_fails(train):
    model = fitted("identity", train)
    with pytest.raises(ValueError, match="query and the training data have different genes"):
        model.predict(query=train[:10, 3:].copy())


# -- bad input: every model raises the same clear error before any training -------------------------


@pytest.mark.parametrize("name", MODELS)
def test_missing_obs_key(name, train):
    with pytest.raises(KeyError, match="no column 'cell_label'"):
        MODELS[name](train, cell_type_key="cell_label")


@pytest.mark.parametrize("name", MODELS)
def test_unknown_target_lists_known_types(name, train):
    with pytest.raises(ValueError, match="'CD4' not found.*known values: 'type_0', 'type_1', 'type_2'"):
        MODELS[name](train, target="CD4")
    with pytest.raises(ValueError, match="'CD4' not found"):
        fitted(name, train).predict(target="CD4")


@pytest.mark.parametrize("name", MODELS)
def test_target_without_control_cells(name, synthetic):
    is_query = (synthetic.obs["cell_type"] == TARGET) & (synthetic.obs["condition"] == "control")
    with pytest.raises(ValueError, match="'type_0' has no 'control' cells"):
        MODELS[name](synthetic[~is_query].copy(), target=TARGET)


@pytest.mark.parametrize("name", MODELS)
def test_target_stimulated_cells_in_training_data_is_leakage(name, synthetic):
    with pytest.raises(ValueError, match="leakage"):
        MODELS[name](synthetic, target=TARGET)
    with pytest.raises(ValueError, match="leakage"):
        fitted(name, synthetic).predict(target=TARGET)


@pytest.mark.parametrize("name", MODELS)
def test_raw_counts_are_refused(name, train):
    counts = train.copy()
    counts.X = counts.layers["counts"]
    with pytest.raises(ValueError, match="looks like raw counts"):
        MODELS[name](counts)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_are_refused(name, train, bad):
    broken = train.copy()
    broken.X[0, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        MODELS[name](broken)


@pytest.mark.parametrize("name", MODELS)
def test_empty_anndata_is_refused(name, train):
    with pytest.raises(ValueError, match="empty"):
        MODELS[name](train[:0].copy())


@pytest.mark.parametrize("name", MODELS)
def test_missing_condition_value(name, train):
    with pytest.raises(ValueError, match="'treated' not found"):
        MODELS[name](train, stim_key="treated")


def test_sparse_input_is_accepted(train):
    sparse = train.copy()
    sparse.X = sp.csr_matrix(sparse.X)
    dense = fitted("mean_shift", train).predict(target=TARGET)
    np.testing.assert_allclose(fitted("mean_shift", sparse).predict(target=TARGET).X, dense.X)


def test_predict_needs_a_target_or_a_query(train):
    with pytest.raises(ValueError, match="pass target"):
        fitted("identity", train).predict()
