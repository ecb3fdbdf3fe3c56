"""The unit of work: eligibility, the held-out split, hyperparameter routing, timed training and one grid
point end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_GRID

from course_lib.experiment import (
    ROW_COLUMNS,
    DataSettings,
    GridPoint,
    GridPointError,
    cell_type_eligibility,
    check_evaluation_options,
    default_setting,
    held_out_split,
    model_spec,
    model_specs,
    real_changes,
    resolve_cell_types,
    route,
    run_grid_point,
    shared_response,
)
from course_lib.keys import ObsKeys
from course_lib.metrics import CEILING, gene_means
from course_lib.models import IdentityBaseline, MeanShiftBaseline, Scgen, Scpram
from course_lib.preprocessing import holdout_mask, preprocess, subsample

EVALUATION = SMALL_GRID["evaluation"]
DATA = DataSettings(n_top_genes=60)


def test_eligibility_counts_both_conditions(counts):
    table = cell_type_eligibility(counts, min_cells=150)
    assert list(table.columns) == ["control", "stimulated", "eligible"]
    expected = (table[["control", "stimulated"]].min(axis=1) >= 150).to_numpy()
    np.testing.assert_array_equal(table["eligible"].to_numpy(), expected)
    assert table[["control", "stimulated"]].to_numpy().sum() == counts.n_obs


def test_resolve_cell_types_checks_names_and_counts(counts):
    assert resolve_cell_types(counts, None, min_cells=40) == ["type_0", "type_1", "type_2"]
    with pytest.raises(ValueError, match=r"'type_9' not found.*known: \['type_0', 'type_1', 'type_2'\]"):
        resolve_cell_types(counts, ["type_9"], min_cells=40)
    with pytest.raises(ValueError, match="fewer than min_cells=1000"):
        resolve_cell_types(counts, ["type_0"], min_cells=1000)
    with pytest.raises(ValueError, match="not the string"):
        resolve_cell_types(counts, "type_0", min_cells=40)


def test_held_out_split_chooses_genes_without_the_hidden_cells_and_returns_the_query(raw_counts):
    split = held_out_split(raw_counts, "type_0", n_top_genes=60)
    expected = preprocess(raw_counts, fit_on=~holdout_mask(raw_counts, "type_0"), n_top_genes=60)
    assert list(split.train.var_names) == list(expected.var_names)
    assert set(split.truth.obs["condition"]) == {"stimulated"} and set(split.truth.obs["cell_type"]) == {
        "type_0"
    }
    assert set(split.query.obs["condition"]) == {"control"} and set(split.query.obs["cell_type"]) == {
        "type_0"
    }
    assert split.query.obs_names.isin(split.train.obs_names).all()
    assert not split.truth.obs_names.isin(split.train.obs_names).any()


def test_held_out_split_thins_every_group_with_its_seed(raw_counts):
    first = held_out_split(raw_counts, "type_0", fraction=0.5, seed=3, n_top_genes=60)
    again = held_out_split(raw_counts, "type_0", fraction=0.5, seed=3, n_top_genes=60)
    n_cells = first.train.n_obs + first.truth.n_obs
    assert n_cells == subsample(raw_counts, 0.5, seed=3).n_obs < raw_counts.n_obs
    assert list(first.train.obs_names) == list(again.train.obs_names)


def test_imbalanced_split_keeps_a_fifth_of_the_other_types_stimulated_cells_and_all_of_the_truth(raw_counts):
    split = held_out_split(raw_counts, "type_1", variant="imbalanced", n_top_genes=60)
    stim = raw_counts.obs["condition"] == "stimulated"
    train_stim = split.train.obs[split.train.obs["condition"] == "stimulated"]
    for cell_type in ("type_0", "type_2"):
        expected = round(0.2 * (stim & (raw_counts.obs["cell_type"] == cell_type)).sum())
        assert (train_stim["cell_type"] == cell_type).sum() == expected
    assert split.truth.n_obs == (stim & (raw_counts.obs["cell_type"] == "type_1")).sum()
    assert split.train.uns["preprocessing"]["n_fit_cells"] == split.train.n_obs


def test_withheld_types_are_neither_trained_on_nor_scored(raw_counts):
    split = held_out_split(raw_counts, "type_1", withheld=["type_0"], n_top_genes=60)
    withheld = (split.train.obs["cell_type"] == "type_0") & (split.train.obs["condition"] == "stimulated")
    assert not withheld.any() and set(split.truth.obs["cell_type"]) == {"type_1"}
    with pytest.raises(ValueError, match="not the string"):
        held_out_split(raw_counts, "type_1", withheld="type_0")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"variant": "unbalanced"}, "variant must be one of"),
        ({"fraction": 1.5}, r"fraction must be in \(0, 1\], not 1.5"),
        ({"fraction": float("nan")}, r"fraction must be in \(0, 1\], not nan"),
        ({"seed": -1}, "seed must be a non-negative integer, not -1"),
        ({"n_top_genes": 1}, "n_top_genes .* must be at least 2, not 1"),
    ],
)
def test_bad_split_options_are_refused(raw_counts, options, message):
    with pytest.raises(ValueError, match=message):
        held_out_split(raw_counts, "type_0", **{"n_top_genes": 60, **options})


def test_split_honours_other_obs_keys(raw_counts):
    keys = ObsKeys(
        condition="treatment", cell_type="label", control="ctrl", stimulated="ifn", predicted="pred"
    )
    renamed = raw_counts.copy()
    renamed.obs = pd.DataFrame(
        {
            "treatment": renamed.obs["condition"].map({"control": "ctrl", "stimulated": "ifn"}),
            "label": renamed.obs["cell_type"],
        }
    )
    split = held_out_split(renamed, "type_0", n_top_genes=60, keys=keys)
    expected = held_out_split(raw_counts, "type_0", n_top_genes=60)
    assert split.truth.obs_names.equals(expected.truth.obs_names)
    assert set(split.query.obs["treatment"]) == {"ctrl"}


def test_routing_sends_each_name_to_the_call_that_takes_it():
    routed = route(Scpram, {"n_latent": 8, "lr": 1e-3, "batch_size": 64})
    assert routed == {"init": {"n_latent": 8}, "train": {"lr": 1e-3, "batch_size": 64}, "predict": {}}
    with pytest.raises(ValueError, match="takes no parameter 'seed'"):
        route(Scgen, {"seed": 1})
    with pytest.raises(ValueError, match="takes no parameter 'depth'"):
        route(Scgen, {"depth": 3})


def test_defaults_are_the_values_that_run():
    assert default_setting(Scgen, ["lr", "n_layers", "batch_size"]) == {
        "lr": 3e-3,
        "n_layers": 2,
        "batch_size": 128,
    }
    assert default_setting(Scpram, ["lr", "ratio", "weight_decay"]) == {
        "lr": 5e-4,
        "ratio": 0.05,
        "weight_decay": 1e-5,
    }
    assert Scgen.optimizer["lr"] == default_setting(Scgen, ["lr"])["lr"]


def test_model_specs_add_the_baselines_and_key_settings_as_json():
    specs = model_specs(["scgen"], {"scgen": [{"n_layers": 1}, {"n_layers": 3}]}, n_epochs=4)
    assert [spec.name for spec in specs] == ["scgen", "scgen", "identity", "mean_shift"]
    assert [json.loads(spec.settings) for spec in specs[:2]] == [
        {"n_layers": 1, "n_epochs": 4},
        {"n_layers": 3, "n_epochs": 4},
    ]
    assert model_spec(CEILING).cls is None
    with pytest.raises(ValueError, match="hyperparameters given for"):
        model_specs(["scgen"], {"scpram": {}}, n_epochs=2)
    with pytest.raises(ValueError, match="JSON values"):
        model_spec("scgen", {"n_layers": object()})
    with pytest.raises(KeyError, match="unknown model 'scgem'"):
        model_spec("scgem")


def test_evaluation_options_the_grid_point_sets_itself_are_refused():
    assert check_evaluation_options({"n_bootstrap": 3}) == {"n_bootstrap": 3}
    with pytest.raises(ValueError, match=r"\['seed'\] not allowed"):
        check_evaluation_options({"seed": 1})


def test_shared_response_is_the_mean_shift_baselines_shift(counts):
    split = DATA.split(counts, "type_0", "balanced")
    shift = shared_response(split.train, "type_0", seed=1)
    prediction = MeanShiftBaseline(split.train, seed=1).predict(target="type_0")
    np.testing.assert_allclose(shift, prediction.uns["delta"])


def test_real_changes_are_the_mean_differences_of_each_type(counts):
    split = DATA.split(counts, "type_0", "balanced")
    changes = real_changes(split, ["type_0", "type_2"])
    np.testing.assert_allclose(changes["type_0"], gene_means(split.truth) - gene_means(split.query))
    of_type = split.train[split.train.obs["cell_type"] == "type_2"]
    expected = gene_means(of_type[of_type.obs["condition"] == "stimulated"]) - gene_means(
        of_type[of_type.obs["condition"] == "control"]
    )
    np.testing.assert_allclose(changes["type_2"], expected)


def test_a_grid_point_trains_predicts_and_scores_one_model(counts):
    point = GridPoint(model_spec("mean_shift"), "type_1", "balanced", 0)
    rows = run_grid_point(
        counts, point, data=DATA, evaluation=EVALUATION, compare_types=["type_0", "type_1", "type_2"]
    )
    assert tuple(rows.columns) == ROW_COLUMNS
    assert set(rows["model"]) == {"mean_shift"} and set(rows["cell_type"]) == {"type_1"}
    metrics = set(rows["metric"])
    assert {
        "delta_pearson_top20",
        "specific_pearson_all",
        "e_distance_matched",
        "discrimination_rank_all",
    } <= metrics
    specific = rows.set_index("metric").loc["specific_pearson_all", "value"]
    assert abs(specific) < 0.2  # the mean shift is the shared response: nothing specific is left
    rank = rows.set_index("metric").loc["discrimination_rank_all", "value"]
    assert rank in (1.0, 2.0, 3.0)


def test_the_identity_has_no_discrimination_rank(counts):
    point = GridPoint(model_spec("identity"), "type_1", "balanced", 0)
    rows = run_grid_point(counts, point, data=DATA, evaluation=EVALUATION, compare_types=["type_0", "type_1"])
    assert np.isnan(rows.set_index("metric").loc["discrimination_rank_all", "value"])


def test_the_ceiling_point_scores_half_of_the_truth_against_the_other_half(counts):
    point = GridPoint(model_spec(CEILING), "type_2", "balanced", 1)
    rows = run_grid_point(counts, point, data=DATA, evaluation=EVALUATION)
    assert set(rows["model"]) == {CEILING} and rows["train_seconds"].isna().all()
    values = rows.set_index("metric")["value"]
    assert values["delta_pearson_all"] > 0.8 and values["e_distance"] >= 0
    assert not rows["metric"].str.endswith("_matched").any()


def test_the_same_point_gives_the_same_rows_whether_the_split_is_shared_or_made(counts):
    point = GridPoint(model_spec("mean_shift"), "type_0", "imbalanced", 2)
    made = run_grid_point(counts, point, data=DATA, evaluation=EVALUATION)
    shared = run_grid_point(
        counts, point, data=DATA, evaluation=EVALUATION, split=DATA.split(counts, "type_0", "imbalanced")
    )
    pd.testing.assert_frame_equal(
        made.drop(columns=["train_seconds", "predict_seconds"]),
        shared.drop(columns=["train_seconds", "predict_seconds"]),
    )


class Broken(IdentityBaseline):
    """A model whose prediction holds NaN."""

    name = "broken"

    def predict(self, target=None, *, query=None):
        prediction = super().predict(target, query=query)
        prediction.X[0, 0] = np.nan
        return prediction


def test_a_failing_model_raises_an_error_that_names_it(counts):
    point = GridPoint(model_spec("broken", registry={"broken": Broken}), "type_0", "balanced", 0)
    with pytest.raises(
        GridPointError, match=r"broken \| type_0 \| balanced \| seed 0: the prediction of broken holds 1 NaN"
    ):
        run_grid_point(counts, point, data=DATA, evaluation=EVALUATION)


def test_a_diverging_model_raises_a_grid_point_error(counts):
    spec = model_spec("scgen", {"n_hidden": 8, "n_latent": 4, "lr": 1e3}, n_epochs=1)
    point = GridPoint(spec, "type_0", "balanced", 0)
    with pytest.raises(GridPointError, match="scgen .*TrainingDivergedError: Scgen diverged in epoch 0"):
        run_grid_point(counts, point, data=DATA, evaluation=EVALUATION)
