"""The local benchmark runner: tidy rows, resuming, interruptions, failed grid points and early errors."""

from __future__ import annotations

import functools
import json
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_GRID

from course_lib.benchmark import (
    KEY_COLUMNS,
    RESULT_COLUMNS,
    BenchmarkFailures,
    load_results,
    provenance_path,
    run_benchmark,
    write_atomic,
)
from course_lib.benchmark import runner as runner_module
from course_lib.experiment import DataSettings
from course_lib.metrics import CEILING
from course_lib.models import IdentityBaseline, MeanShiftBaseline

SMALL = {key: value for key, value in SMALL_GRID.items() if key in ("min_cells", "n_top_genes", "evaluation")}


class Log:
    """What the fake models saw: one entry per construction and per training."""

    def __init__(self):
        self.built: list[tuple[str, int]] = []
        self.trained: list[dict] = []
        self.train_sets: list[ad.AnnData] = []
        self.fail_at: int | None = None
        self.nan_at: set[int] = set()
        self.counts_at: set[int] = set()


class Deep(MeanShiftBaseline):
    """A stand-in for a deep model: the mean-shift prediction, with one option in each call."""

    name = "deep"

    def __init__(self, adata, *, width: int = 8, **options):
        super().__init__(adata, **options)

    def train(self, n_epochs: int = 1, *, lr: float = 1e-3, verbose: bool = True, on_epoch_end=None):
        return self

    def predict(self, target=None, *, query=None, ratio: float = 0.05):
        return super().predict(target, query=query)


def logged_registry(log: Log) -> dict[str, type]:
    """The real baselines and the stand-in, each recording its constructions and trainings in ``log``."""

    def logged(cls: type) -> type:
        class Logged(cls):  # the wrappers keep the signatures, which route the hyperparameters
            @functools.wraps(cls.__init__)
            def __init__(self, adata, **options):
                super().__init__(adata, **options)
                log.built.append((cls.__name__, self.seed))
                log.train_sets.append(adata)

            @functools.wraps(cls.train)
            def train(self, **options):
                if log.fail_at is not None and len(log.trained) == log.fail_at:
                    raise KeyboardInterrupt
                log.trained.append({"model": cls.__name__, **options})
                return super().train(**options)

            @functools.wraps(cls.predict)
            def predict(self, *args, **options):
                prediction = super().predict(*args, **options)
                if len(log.trained) - 1 in log.nan_at:
                    prediction.X[:] = np.nan
                if len(log.trained) - 1 in log.counts_at:  # integer-valued: evaluate refuses raw counts
                    prediction.X = np.round(np.abs(prediction.X) * 10)
                return prediction

        return Logged

    return {
        "identity": logged(IdentityBaseline),
        "mean_shift": logged(MeanShiftBaseline),
        "deep": logged(Deep),
    }


@pytest.fixture
def log():
    return Log()


def run(counts, log, path, **grid):
    settings = {"models": ["deep"], "seeds": (0,), "variants": ["balanced"], **SMALL, **grid}
    return run_benchmark(counts, settings, results_path=path, registry=logged_registry(log), verbose=False)


def keys_of(table: pd.DataFrame) -> set[tuple]:
    return set(table[list(KEY_COLUMNS)].itertuples(index=False, name=None))


def test_grid_gives_one_tidy_row_per_point_and_metric(counts, log, tmp_path):
    table = run(counts, log, tmp_path / "r.csv", seeds=(0, 1), variants=["balanced", "imbalanced"])
    assert tuple(table.columns) == RESULT_COLUMNS
    types = ["type_0", "type_1", "type_2"]
    settings = json.dumps({"n_epochs": 10})
    expected = {
        (model, cell_type, variant, seed, settings)
        for model in ("deep", "identity", "mean_shift")
        for cell_type in types
        for variant in ("balanced", "imbalanced")
        for seed in (0, 1)
    }
    ceilings = {(CEILING, t, v, s, "{}") for t in types for v in ("balanced", "imbalanced") for s in (0, 1)}
    assert keys_of(table) == expected | ceilings
    models = table[table["model"] != CEILING]
    per_point = models.groupby(list(KEY_COLUMNS))["metric"].agg(lambda m: tuple(sorted(m)))
    assert per_point.nunique() == 1
    assert {
        "delta_pearson_top20",
        "specific_r2_top20",
        "e_distance_matched",
        "discrimination_rank_all",
    } <= set(per_point.iloc[0])
    on_disk = load_results(tmp_path / "r.csv")
    pd.testing.assert_frame_equal(on_disk, table, check_dtype=False)
    assert len(log.built) == len(expected)


def test_models_train_without_the_held_out_cells_on_training_genes(counts, log, tmp_path):
    run(counts, log, tmp_path / "r.csv", cell_types=["type_1"], variants=["imbalanced"])
    train = log.train_sets[0]
    held_out = (train.obs["cell_type"] == "type_1") & (train.obs["condition"] == "stimulated")
    assert not held_out.any()
    is_stim = counts.obs["condition"] == "stimulated"
    expected_stim = round(0.2 * (is_stim & (counts.obs["cell_type"] == "type_0")).sum())
    assert (
        (train.obs["cell_type"] == "type_0") & (train.obs["condition"] == "stimulated")
    ).sum() == expected_stim
    assert train.n_vars == SMALL["n_top_genes"] and train.uns["preprocessing"]["n_fit_cells"] == train.n_obs


def test_the_split_is_made_once_per_variant_and_type(counts, log, tmp_path, monkeypatch):
    calls = []
    original = DataSettings.split
    monkeypatch.setattr(DataSettings, "split", lambda *a, **k: calls.append(1) or original(*a, **k))
    run(counts, log, tmp_path / "r.csv", cell_types=["type_0", "type_2"], seeds=(0, 1, 2))
    assert len(calls) == 2 and len(log.built) == 2 * 3 * 3


def test_both_baselines_and_the_ceiling_are_always_run(counts, log, tmp_path):
    table = run(counts, log, tmp_path / "r.csv", models=[], cell_types=["type_0"])
    assert set(table["model"]) == {"identity", "mean_shift", CEILING}
    no_ceiling = run(
        counts, log, tmp_path / "n.csv", models=[], cell_types=["type_0"], evaluation={"n_ceiling_splits": 0}
    )
    assert set(no_ceiling["model"]) == {"identity", "mean_shift"}
    assert not no_ceiling["metric"].str.endswith("_matched").any()


def test_hyperparameter_settings_are_grid_points_routed_to_their_call(counts, log, tmp_path):
    settings = [{"width": 4, "lr": 0.01}, {"width": 16, "ratio": 0.1}]
    table = run(
        counts, log, tmp_path / "r.csv", cell_types=["type_0"], hyperparameters={"deep": settings}, n_epochs=3
    )
    deep = table.loc[table["model"] == "deep", "hyperparameters"].unique()
    assert sorted(json.loads(s)["width"] for s in deep) == [4, 16]
    assert {"model": "Deep", "n_epochs": 3, "verbose": False, "lr": 0.01} in log.trained


def test_resume_skips_finished_points(counts, log, tmp_path):
    path = tmp_path / "r.csv"
    first = run(counts, log, path, cell_types=["type_0", "type_1"])
    assert len(log.built) == 6
    second = run(counts, log, path, cell_types=["type_0", "type_1"], seeds=(0, 1))
    assert len(log.built) == 6 + 6  # only seed 1 ran
    assert keys_of(first) < keys_of(second)
    pd.testing.assert_frame_equal(
        second[second["seed"] == 0].reset_index(drop=True), first, check_dtype=False
    )
    third = run(counts, log, path, cell_types=["type_0"], seeds=(1,))
    assert len(log.built) == 12 and keys_of(third) < keys_of(second)  # a sub-grid is read, not rerun
    assert [r["run_id"] for r in load_results(path).attrs["provenance"]["runs"]] == [1, 2, 3]


def test_interrupted_run_leaves_complete_files_and_resumes(counts, log, tmp_path):
    path = tmp_path / "r.csv"
    log.fail_at = 4  # the second seed's second model
    with pytest.raises(KeyboardInterrupt):
        run(counts, log, path, cell_types=["type_0"], seeds=(0, 1))
    partial = load_results(path)
    assert set(partial["seed"]) == {0, 1} and len(keys_of(partial)) == 4 + 2  # seed 1: the ceiling and deep
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]  # no temporary file left
    log.fail_at = None
    built_before = len(log.built)
    complete = run(counts, log, path, cell_types=["type_0"], seeds=(0, 1))
    assert len(log.built) - built_before == 2 and len(keys_of(complete)) == 8


def test_a_run_stopped_before_its_first_point_leaves_nothing(counts, log, tmp_path):
    path = tmp_path / "r.csv"
    log.fail_at = 0
    with pytest.raises(KeyboardInterrupt):
        run(
            counts,
            log,
            path,
            cell_types=["type_0"],
            evaluation={**SMALL["evaluation"], "n_ceiling_splits": 0},
        )
    assert list(tmp_path.iterdir()) == []
    log.fail_at = None
    assert len(run(counts, log, path, cell_types=["type_0"])) > 0


def test_a_sidecar_without_its_table_counts_as_no_result(counts, log, tmp_path):
    path = tmp_path / "r.csv"
    provenance_path(path).write_text(json.dumps({"setup": {"other": 1}, "runs": []}))
    table = run(counts, log, path, cell_types=["type_0"])
    assert len(table) and [r["run_id"] for r in load_results(path).attrs["provenance"]["runs"]] == [1]


def test_a_table_without_its_sidecar_is_refused(counts, log, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("model\n")
    with pytest.raises(FileNotFoundError, match="has no provenance sidecar"):
        run(counts, log, path, cell_types=["type_0"])


def test_a_failed_point_is_recorded_named_and_retried_while_the_others_go_on(counts, log, tmp_path):
    path = tmp_path / "r.csv"
    log.nan_at = {0}  # the first training: deep on type_0
    with pytest.warns(
        BenchmarkFailures, match=r"deep \| type_0 \| balanced \| seed 0: the prediction of deep holds"
    ):
        table = run(counts, log, path, cell_types=["type_0", "type_1"])
    assert ("deep", "type_0") not in set(zip(table["model"], table["cell_type"], strict=True))
    assert {"deep", "identity", "mean_shift"} <= set(table.loc[table["cell_type"] == "type_1", "model"])
    (record,) = load_results(path).attrs["provenance"]["runs"]
    assert [failure["point"][:2] for failure in record["grid_points_failed"]] == [["deep", "type_0"]]
    log.nan_at = set()
    with warnings.catch_warnings():
        warnings.simplefilter("error", BenchmarkFailures)
        retried = run(counts, log, path, cell_types=["type_0", "type_1"])
    assert ("deep", "type_0") in set(zip(retried["model"], retried["cell_type"], strict=True))


def test_a_prediction_that_cannot_be_scored_is_a_failed_point(counts, log, tmp_path):
    log.counts_at = {0}
    unscorable = r"deep \| type_0 .* the prediction of deep cannot be scored: .*raw counts"
    with pytest.warns(BenchmarkFailures, match=unscorable):
        table = run(counts, log, tmp_path / "r.csv", cell_types=["type_0", "type_1"])
    assert ("deep", "type_0") not in set(zip(table["model"], table["cell_type"], strict=True))
    assert "deep" in set(table.loc[table["cell_type"] == "type_1", "model"])


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    path.write_text("old")

    def broken_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(runner_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_atomic_write_gives_a_readable_file(tmp_path):
    path = tmp_path / "table.csv"
    write_atomic(path, "a,b\n1,2\n")
    assert path.read_text() == "a,b\n1,2\n" and path.stat().st_mode & 0o777 == 0o644


def test_results_of_other_data_are_not_mixed(counts, log, tmp_path):
    path = tmp_path / "r.csv"
    run(counts, log, path, cell_types=["type_0"])
    with pytest.raises(ValueError, match=r"other data or settings \(differing: \['n_top_genes'\]\)"):
        run(counts, log, path, cell_types=["type_0"], n_top_genes=50)
    changed = counts.copy()
    changed.layers["counts"][0, 0] += 1
    with pytest.raises(ValueError, match="data_sha256"):
        run(changed, log, path, cell_types=["type_0"])
    assert len(log.built) == 3


@pytest.mark.parametrize(
    ("grid", "error", "message"),
    [
        ({"models": ["deep", "scgem"]}, KeyError, "unknown model 'scgem'"),
        (
            {"cell_types": ["type_9"]},
            ValueError,
            r"cell type 'type_9' not found.*known: \['type_0', 'type_1', 'type_2'\]",
        ),
        ({"cell_types": ["type_0"], "min_cells": 1000}, ValueError, "fewer than min_cells=1000"),
        (
            {"variants": ["balanced", "unbalanced"]},
            ValueError,
            "variants must be a non-empty list drawn from",
        ),
        ({"seeds": ()}, ValueError, "seeds must be a non-empty list of non-negative integers"),
        ({"seeds": (0, -1)}, ValueError, "every seed must be a non-negative integer, not -1"),
        ({"fraction": 2.0}, ValueError, r"fraction must be in \(0, 1\]"),
        ({"n_top_genes": 0}, ValueError, "n_top_genes must be at least 2, not 0"),
        ({"hyperparameters": {"deep": {"depth": 3}}}, ValueError, "takes no parameter 'depth'"),
        ({"hyperparameters": {"deep": {"seed": 3}}}, ValueError, "takes no parameter 'seed'"),
        (
            {"hyperparameters": {"scgen": {"n_layers": 1}}},
            ValueError,
            r"hyperparameters given for \['scgen'\]",
        ),
        ({"evaluation": {"n_boot": 3}}, ValueError, r"evaluation option\(s\) \['n_boot'\] not allowed"),
        ({"n_epochs": 0}, ValueError, "n_epochs must be at least 1"),
        ({"depth": 3}, ValueError, r"unknown grid field\(s\) \['depth'\]"),
    ],
)
def test_bad_grids_fail_before_any_training(counts, log, tmp_path, grid, error, message):
    with pytest.raises(error, match=message):
        run(counts, log, tmp_path / "r.csv", **grid)
    assert log.built == [] and not any(tmp_path.iterdir())
