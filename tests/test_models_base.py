"""The interface every model shares (course_lib.models.base): input checks, predictions, determinism,
hyperparameters, saving and loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from course_lib.keys import ObsKeys
from course_lib.models import MODELS, PerturbationModel, SavedModelError, load
from course_lib.preprocessing import holdout

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TARGET = "type_0"
SMALL = {
    "scgen": {"n_hidden": 32, "n_latent": 8},
    "scpram": {"n_hidden": 32, "n_latent": 8},
    "cellot": {"n_components": 5, "hidden": [8, 8]},
}
"""Tiny networks: the tests check behaviour, not quality."""
SHORT = {"scgen": {"n_epochs": 2}, "scpram": {"n_epochs": 2}, "cellot": {"n_steps": 20, "eval_every": 10}}
"""Short trainings of the learning models."""


@pytest.fixture
def train(synthetic):
    """The synthetic cells without the stimulated cells of ``TARGET``."""
    return holdout(synthetic, TARGET)[0]


def fitted(name: str, adata, *, seed: int = 0, **options) -> PerturbationModel:
    model = MODELS[name](adata, seed=seed, **SMALL.get(name, {}), **options)
    return model.train(verbose=False, **SHORT[name]) if name in SHORT else model.train()


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


@pytest.mark.parametrize("name", ["scgen", "scpram", "cellot", "mean_shift"])
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
        MODELS[name](train, keys=ObsKeys(cell_type="cell_label"))


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
        MODELS[name](train, keys=ObsKeys(stimulated="treated"))


def test_sparse_input_is_accepted(train):
    sparse = train.copy()
    sparse.X = sp.csr_matrix(sparse.X)
    dense = fitted("mean_shift", train).predict(target=TARGET)
    np.testing.assert_allclose(fitted("mean_shift", sparse).predict(target=TARGET).X, dense.X)


def test_predict_needs_a_target_or_a_query(train):
    with pytest.raises(ValueError, match="pass target"):
        fitted("identity", train).predict()


@pytest.mark.parametrize("name", MODELS)
def test_small_integer_counts_are_refused_too(name, train):
    shallow = train.copy()
    shallow.X = np.minimum(shallow.layers["counts"].toarray(), 3)  # counts with a maximum of 3
    with pytest.raises(ValueError, match="looks like raw counts"):
        MODELS[name](shallow)


@pytest.mark.parametrize("name", MODELS)
def test_negative_expression_is_refused(name, train):
    scaled = train.copy()
    scaled.X = scaled.X - scaled.X.mean(axis=0)
    with pytest.raises(ValueError, match="negative values.*scaled or centred"):
        MODELS[name](scaled)


@pytest.mark.parametrize("name", MODELS)
def test_duplicated_gene_names_are_refused(name, train):
    twins = train.copy()
    twins.var_names = ["gene_0", *twins.var_names[:-1]]
    with pytest.raises(ValueError, match=r"1 duplicated gene name\(s\) \('gene_0'\).*var_names_make_unique"):
        MODELS[name](twins)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seeds_are_refused(name, train, seed):
    with pytest.raises((ValueError, TypeError), match="seed must be a non-negative integer"):
        MODELS[name](train, seed=seed)


def test_keys_must_be_an_obs_keys(train):
    with pytest.raises(TypeError, match="keys must be a course_lib.keys.ObsKeys"):
        MODELS["identity"](train, keys={"condition": "condition"})


def test_other_obs_keys_label_the_prediction(train):
    keys = ObsKeys(condition="treatment", predicted="guess")
    renamed = train.copy()
    renamed.obs = renamed.obs.rename(columns={"condition": "treatment"})
    prediction = fitted("mean_shift", renamed, keys=keys).predict(target=TARGET)
    assert set(prediction.obs["treatment"]) == {"guess"}


def test_hyperparameters_name_the_call_and_the_default_that_runs():
    declared = MODELS["scgen"].hyperparameters()
    assert declared["n_layers"] == ("init", 2) and declared["lr"] == ("train", 3e-3)
    assert declared["batch_size"] == ("train", 128) and declared["lr_schedule"] == ("train", "cosine")
    assert MODELS["scpram"].hyperparameters()["lr_schedule"] == ("train", "constant")
    assert MODELS["scpram"].hyperparameters()["ratio"] == ("init", 0.05)
    assert "seed" not in declared and "keys" not in declared and "n_epochs" not in declared
    assert MODELS["identity"].hyperparameters() == {}


# -- saving: never half-written, never lost -------------------------------------------------------------


def test_overwriting_keeps_the_old_model_when_the_new_one_cannot_be_moved_in(train, tmp_path, monkeypatch):
    old = fitted("mean_shift", train, seed=1)
    old.save(tmp_path / "model")
    new = fitted("mean_shift", train, seed=2)
    original = Path.rename

    def failing_rename(self, target):
        if Path(target) == tmp_path / "model" and ".new-" in self.name:
            raise OSError("device busy")
        return original(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="device busy"):
        new.save(tmp_path / "model", overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert load(tmp_path / "model", train).seed == 1


def test_an_interrupted_overwrite_leaves_the_old_or_the_new_model(train, tmp_path, monkeypatch):
    fitted("mean_shift", train, seed=1).save(tmp_path / "model")
    new = fitted("mean_shift", train, seed=2)
    original = Path.rename

    def interrupted(self, target):
        if ".new-" in self.name:
            raise KeyboardInterrupt
        return original(self, target)

    monkeypatch.setattr(Path, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path / "model", overwrite=True)
    monkeypatch.undo()
    assert load(tmp_path / "model", train).seed == 1 and sorted(p.name for p in tmp_path.iterdir()) == [
        "model"
    ]
    new.save(tmp_path / "model", overwrite=True)
    assert load(tmp_path / "model", train).seed == 2


WEIGHTS = {"scgen": "weights.pt", "cellot": "cellot.pt"}
"""The weights file of each kind of neural model's folder."""


@pytest.mark.parametrize("name", sorted(WEIGHTS))
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda folder, weights: (folder / "config.json").write_text("{not json"),
            r"config.json is not valid JSON.*save the model again",
        ),
        (
            lambda folder, weights: (folder / "config.json").write_text("{}"),
            r"config.json lacks the 'model' and 'config'",
        ),
        (
            lambda folder, weights: (folder / weights).write_bytes((folder / weights).read_bytes()[:100]),
            r"\.pt cannot be read.*truncated or corrupt",
        ),
        (
            lambda folder, weights: (folder / weights).write_bytes(b"not a torch file at all"),
            r"\.pt cannot be read.*truncated or corrupt",
        ),
        (lambda folder, weights: (folder / weights).unlink(), r"\.pt is missing"),
        (lambda folder, weights: (folder / "var_names.txt").unlink(), r"var_names.txt is missing"),
        (
            lambda folder, weights: (folder / "history.csv").write_text(""),
            r"history.csv cannot be read as a training history.*delete it",
        ),
    ],
)
def test_a_damaged_model_folder_names_the_broken_file(train, tmp_path, damage, message, name):
    fitted(name, train).save(tmp_path / "model")
    damage(tmp_path / "model", WEIGHTS[name])
    with pytest.raises(SavedModelError, match=message):
        load(tmp_path / "model", train)


def test_loading_with_another_architecture_says_what_to_do(train, tmp_path):
    fitted("scgen", train).save(tmp_path / "model")
    with pytest.raises(SavedModelError, match="do not fit a Scgen built with these options.*n_hidden=64"):
        load(tmp_path / "model", train, n_hidden=64)


def test_every_registered_model_has_its_registry_name_and_a_distinct_label():
    assert all(cls.name == name for name, cls in MODELS.items())
    labels = [cls.label for cls in MODELS.values()]
    assert all(isinstance(label, str) and label for label in labels) and len(set(labels)) == len(labels)
