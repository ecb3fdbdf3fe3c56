"""Optuna searches scored on a validation type: grids, pruning, no look at the test type, determinism."""

from __future__ import annotations

import itertools
import math

import numpy as np
import optuna
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import FakeModel
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from course_lib import tuning
from course_lib.datasets import synthetic_perturbation
from course_lib.models import MODELS

TEST, VALIDATION = "type_0", "type_1"


SPACE = {"quality": (0.2, 1.0), "scale": (0.5, 1.0)}
SMALL = {"n_top_genes": 100, "min_cells": 30, "registry": {**MODELS, "fake": FakeModel}, "verbose": False}


@pytest.fixture(autouse=True)
def fresh_spy():
    FakeModel.seen = []


@pytest.fixture(scope="module")
def cells():
    """Raw counts in layers['counts'], three types, 120 genes."""
    return synthetic_perturbation(n_cells=600, n_genes=120, n_cell_types=3, seed=3)


def search(cells, **options):
    defaults = {"test_type": TEST, "validation_type": VALIDATION, "space": SPACE, "n_epochs": 3, **SMALL}
    return tuning.tune(cells, "fake", **{**defaults, **options})


def test_the_tutorial_grids_are_the_named_spaces():
    assert tuning.GRIDS == {
        "scgen": {"n_layers": (1, 3), "dropout": (0.05, 0.30)},
        "scpram": {"n_latent": (16, 64), "ratio": (0.002, 0.02)},
    }
    assert tuning.GRID_SEED == 42


def test_grid_visits_each_combination_once(cells):
    result = search(cells)
    trials = result.trials
    assert len(trials) == 4 and set(trials["state"]) == {"complete"}
    combinations = sorted(zip(trials["quality"], trials["scale"], strict=True))
    assert combinations == sorted(itertools.product(*SPACE.values()))
    assert (trials["epochs"] == 3).all() and (trials["seconds"] > 0).all()
    assert set(trials["val_loss"].round(6)) == {round(1.8 / 3, 6), round(1.0 / 3, 6)}
    scores = result.scores.pivot(index="trial", columns="metric", values="value")
    assert {"r2_mean_all", "delta_r2_all", "e_distance"} <= set(scores.columns) <= set(tuning.metrics.METRICS)
    assert scores["delta_r2_all"].tolist() == trials["value"].tolist()


def test_trials_never_see_or_score_the_test_type(cells, monkeypatch):
    scored = []
    evaluate = tuning.metrics.evaluate

    def spy(ctrl, stim, predictions, **options):
        scored.append(set(stim.obs["cell_type"].astype(str)))
        return evaluate(ctrl, stim, predictions, **options)

    monkeypatch.setattr(tuning.metrics, "evaluate", spy)
    search(cells)
    assert scored == [{VALIDATION}] * 4
    assert {record["target"] for record in FakeModel.seen} == {VALIDATION}
    for record in FakeModel.seen:
        assert (TEST, "stimulated") not in record["trained_on"]
        assert (VALIDATION, "stimulated") not in record["trained_on"]
        assert (TEST, "control") in record["trained_on"]  # the query cells of the final run stay


def test_test_cells_change_neither_the_genes_nor_any_trial(cells):
    scrambled = cells.copy()
    of_test = (cells.obs["cell_type"] == TEST) & (cells.obs["condition"] == "stimulated")
    counts = scrambled.layers["counts"].toarray()
    counts[of_test.to_numpy()] = np.random.default_rng(0).permutation(counts[of_test.to_numpy()], axis=1)
    scrambled.layers["counts"] = sp.csr_matrix(counts)
    columns = ["value", "quality", "scale"]
    assert search(cells).trials[columns].equals(search(scrambled).trials[columns])
    genes = {tuple(record["genes"]) for record in FakeModel.seen}
    assert len(genes) == 1 and len(next(iter(genes))) == 100


def test_tuning_on_the_test_type_is_refused(cells):
    with pytest.raises(ValueError, match="tune_on_test"):
        search(cells, validation_type=TEST)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"validation_type": "type_9"}, ValueError, "'type_9' not found"),
        ({"test_type": "nope"}, ValueError, "'nope' not found"),
        ({"min_cells": 10_000}, ValueError, "fewer than min_cells"),
        ({"space": {"quality": (0.5, 1.0), "depth": (1, 2)}}, ValueError, "no parameter 'depth'"),
        ({"fixed_params": {"scale": 1.0}}, ValueError, "both searched and fixed"),
        ({"space": {"quality": FloatDistribution(0, 1)}}, ValueError, "list of values"),
        ({"objective_metric": "r2"}, KeyError, "unknown objective_metric"),
        ({"search": "random"}, ValueError, "'grid' or 'tpe'"),
        ({"n_trials": 0}, ValueError, "n_trials must be at least 1"),
        ({"n_epochs": 0}, ValueError, "n_epochs must be at least 1"),
        ({"seed": -1}, ValueError, "seed must be a non-negative integer, not -1"),
        ({"sampler_seed": -1}, ValueError, "sampler_seed must be a non-negative integer, not -1"),
    ],
)
def test_bad_options_fail_before_training(cells, options, error, message):
    with pytest.raises(error, match=message):
        search(cells, **options)
    assert FakeModel.seen == []


def test_unknown_model_names_the_known_ones(cells):
    with pytest.raises(KeyError, match="'scgen'"):
        tuning.tune(cells, "scvi", test_type=TEST, validation_type=VALIDATION)


@pytest.mark.parametrize("objective_metric", ["delta_r2_all", "mse_mean_all"])
def test_pruning_stops_the_trials_with_a_high_validation_loss(cells, objective_metric):
    """Whichever direction the objective takes, the pruned trials are those with the worst loss."""
    result = search(
        cells,
        search="tpe",
        space={"quality": FloatDistribution(0.0, 1.0)},
        n_trials=10,
        objective_metric=objective_metric,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    trials = result.trials
    pruned, complete = trials[trials["state"] == "pruned"], trials[trials["state"] == "complete"]
    assert len(pruned) > 0 and (pruned["epochs"] < 3).all()
    assert pruned["quality"].mean() < complete["quality"].mean()
    assert trials.loc[trials["quality"].idxmax(), "state"] == "complete"


def test_the_same_seeds_give_the_same_trials(cells):
    def run(sampler_seed):
        space = {"quality": FloatDistribution(0.0, 1.0)}
        return search(cells, search="tpe", space=space, n_trials=5, sampler_seed=sampler_seed).trials

    first, again, other = run(5), run(5), run(6)
    assert first.drop(columns="seconds").equals(again.drop(columns="seconds"))
    assert not first["quality"].equals(other["quality"])
    assert {record["seed"] for record in FakeModel.seen} == {0}  # every trial, the same model seed


def test_a_non_finite_prediction_fails_its_trial_and_the_search_goes_on(cells):
    result = search(cells, space={"scale": (1.0, math.nan)})
    assert sorted(result.trials["state"]) == ["complete", "fail"]


def test_tune_on_test_repeats_the_search_scored_on_the_test_type(cells):
    honest = search(cells, fixed_params={"batch_size": 7})
    FakeModel.seen = []
    leaky = tuning.tune_on_test(cells, honest, verbose=False)
    assert leaky.scored_on_test and not honest.scored_on_test and leaky.scored_type == TEST
    assert {record["target"] for record in FakeModel.seen} == {TEST}
    for record in FakeModel.seen:
        assert (TEST, "stimulated") not in record["trained_on"]
        assert (VALIDATION, "stimulated") in record["trained_on"]
        assert record["batch_size"] == 7
    assert leaky.trials[["quality", "scale"]].equals(honest.trials[["quality", "scale"]])
    with pytest.raises(ValueError, match="already"):
        tuning.tune_on_test(cells, leaky, verbose=False)


def test_evaluate_on_test_changes_only_the_tuned_parameters(cells):
    scores = tuning.evaluate_on_test(
        cells,
        "fake",
        {"tuned": {"quality": 0.2, "scale": 0.5}},
        test_type=TEST,
        seeds=(0, 1),
        n_epochs=1,
        fixed_params={"batch_size": 7},
        evaluation={"n_bootstrap": 0},
        **SMALL,
    )
    assert set(scores["model"]) == {"fake (tuned)", "fake (default)", "identity", "mean_shift"}
    assert set(scores["seed"]) == {0, 1} and set(scores["cell_type"]) == {TEST}
    trained = [(r["seed"], r["quality"], r["scale"], r["batch_size"]) for r in FakeModel.seen]
    assert sorted(trained) == [(0, 0.2, 0.5, 7), (0, 1.0, 1.0, 7), (1, 0.2, 0.5, 7), (1, 1.0, 1.0, 7)]
    assert all((TEST, "stimulated") not in record["trained_on"] for record in FakeModel.seen)


def test_leakage_summary_puts_the_reported_number_first(cells):
    leaky = tuning.tune_on_test(cells, search(cells), verbose=False)
    options = {"test_type": TEST, "seeds": (0, 1), "n_epochs": 1, "evaluation": {"n_bootstrap": 0}, **SMALL}
    scores = tuning.evaluate_on_test(cells, "fake", {"leaky": leaky.best_params}, **options)
    summary = tuning.leakage_summary(scores, leaky)
    assert summary.loc[0, "mean"] == leaky.best_value and summary.loc[0, "model"].endswith("(reported)")
    assert set(summary["model"][1:]) == {"fake (leaky)", "fake (default)", "identity", "mean_shift"}
    assert set(summary["metric"]) == {"delta_r2_all"} and (summary["n_seeds"][1:] == 2).all()
    # the fake is deterministic: its retrained leaky setting scores exactly what the search reported
    assert summary.set_index("model").loc["fake (leaky)", "mean"] == pytest.approx(leaky.best_value)
    with pytest.raises(ValueError, match="tune_on_test"):
        tuning.leakage_summary(scores, search(cells))


def test_leakage_gap_splits_the_flattery_into_luck_and_choice():
    summary = pd.DataFrame(
        {
            "model": [
                "scgen: best of 10 trials scored on T (reported)",
                "scgen (tuned on test)",
                "scgen (tuned)",
            ],
            "metric": "delta_r2_all",
            "mean": [0.5, 0.3, -0.2],
        }
    )
    gap = tuning.leakage_gap(summary)
    assert gap["luck of the best trial"] == pytest.approx(0.2)
    assert gap["choosing on the test cells"] == pytest.approx(0.5)
    assert gap["flattery"] == pytest.approx(0.7) and gap.name == "delta_r2_all"
    with pytest.raises(ValueError, match="no row"):
        tuning.leakage_gap(summary, honest="tuned on B cells")
    with pytest.raises(ValueError, match="reported"):
        tuning.leakage_gap(summary.iloc[1:])


def test_leakage_gap_reads_one_row_for_settings_both_searches_chose():
    summary = pd.DataFrame(
        {
            "model": ["scgen: best of 10 trials scored on T (reported)", "scgen (tuned, tuned on test)"],
            "metric": "delta_r2_all",
            "mean": [0.5, 0.3],
        }
    )
    gap = tuning.leakage_gap(summary)
    assert gap["choosing on the test cells"] == 0 and gap["luck of the best trial"] == pytest.approx(0.2)
    assert tuning.setting_row(summary["model"], "scgen", "tuned") == "scgen (tuned, tuned on test)"
    assert tuning.setting_row(["scgen (tuned on test)"], "scgen", "tuned") is None


def test_default_params_reads_every_stage():
    defaults = tuning.default_params("fake", ["quality", "batch_size", "scale"], registry={"fake": FakeModel})
    assert defaults == {"quality": 1.0, "batch_size": 128, "scale": 1.0}
    assert tuning.default_params("scpram", ["ratio", "lr"])["ratio"] == 0.05


@pytest.mark.parametrize(
    ("distribution", "words"),
    [
        (IntDistribution(1, 3), "1 to 3, integers"),
        (IntDistribution(10, 100, log=True), "10 to 100, integers, log scale"),
        (IntDistribution(2, 10, step=2), "2 to 10, integers in steps of 2"),
        (FloatDistribution(0.0, 0.5), "0 to 0.5"),
        (FloatDistribution(1e-4, 1e-2, log=True), "1e-4 to 1e-2, log scale"),
        (FloatDistribution(0.0, 1.0, step=0.25), "0 to 1, in steps of 0.25"),
        (CategoricalDistribution((128, 256, 512, 800)), "128, 256, 512 or 800"),
        ((0.05, 0.3), "0.05 or 0.3"),
    ],
)
def test_a_search_space_reads_in_words(distribution, words):
    assert tuning.describe_distribution(distribution) == words


def test_the_search_space_table_shows_ranges_and_defaults_without_reprs():
    table = tuning.search_space_table("scgen")
    assert list(table.index) == list(tuning.SEARCH_SPACES["scgen"])
    assert table.loc["n_layers"].tolist() == ["1 to 3, integers", "2"]
    assert table.loc["lr", "range searched"] == "1e-4 to 1e-2, log scale"
    assert "Distribution(" not in table.to_html()


def test_a_quiet_search_prints_nothing_and_restores_optuna_logging(cells, capsys):
    optuna.logging.set_verbosity(optuna.logging.INFO)
    search(cells)
    assert capsys.readouterr() == ("", "")
    assert optuna.logging.get_verbosity() == optuna.logging.INFO


def test_parameter_importances_share_the_variance(cells):
    space = {"quality": FloatDistribution(0, 1), "scale": FloatDistribution(0, 2)}
    tpe = search(cells, search="tpe", space=space, n_trials=6)
    importances = tuning.param_importances(tpe)
    assert set(importances.index) == {"quality", "scale"} and importances.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(("model", "fixed_params"), [("scgen", {"n_latent": 8}), ("scpram", {})])
def test_the_tutorial_grid_trains_the_real_models(cells, model, fixed_params):
    def run():
        options = {**SMALL, "n_epochs": 1, "fixed_params": {"n_hidden": 32, **fixed_params}}
        return tuning.tune(cells, model, test_type=TEST, validation_type=VALIDATION, **options).trials

    trials = run()
    assert set(trials["state"]) == {"complete"} and np.isfinite(trials["value"]).all()
    combinations = sorted(zip(*(trials[name] for name in tuning.GRIDS[model]), strict=True))
    assert combinations == sorted(itertools.product(*tuning.GRIDS[model].values()))
    assert trials["value"].equals(run()["value"])  # the same seeds, the same scores


def test_pruning_stops_real_training_and_the_search_goes_on(cells):
    result = tuning.tune(
        cells,
        "scgen",
        test_type=TEST,
        validation_type=VALIDATION,
        search="tpe",
        space={"lr": FloatDistribution(1e-5, 1.0, log=True)},
        n_trials=6,
        n_epochs=3,
        fixed_params={"n_hidden": 32, "n_latent": 8},
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        **SMALL,
    )
    states = result.trials["state"]
    assert len(states) == 6 and (states == "pruned").any() and (states == "complete").sum() >= 2
