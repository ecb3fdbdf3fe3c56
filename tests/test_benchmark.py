"""The benchmark runner: tidy rows, resuming, provenance, atomic writes and early errors."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import course_lib
from course_lib import benchmark
from course_lib.baselines import IdentityBaseline, MeanShiftBaseline
from course_lib.benchmark import (
    KEY_COLUMNS,
    RESULT_COLUMNS,
    BenchmarkGrid,
    cell_type_eligibility,
    load_results,
    provenance_path,
    run_benchmark,
    summarise,
)
from course_lib.datasets import synthetic_perturbation

EVALUATION = {"n_bootstrap": 5, "n_components": 5, "n_top_degs": 20}
SMALL = {"min_cells": 40, "n_top_genes": 60, "evaluation": EVALUATION}


class Log:
    """What the fake models saw: one entry per construction and per training."""

    def __init__(self):
        self.built: list[tuple[str, int]] = []
        self.trained: list[dict] = []
        self.train_sets: list[ad.AnnData] = []
        self.fail_at: int | None = None


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

        return Logged

    return {
        "identity": logged(IdentityBaseline),
        "mean_shift": logged(MeanShiftBaseline),
        "deep": logged(Deep),
    }


@pytest.fixture(scope="module")
def counts():
    """900 cells, three types, about 150 cells per type and condition; raw counts in ``layers['counts']``."""
    return synthetic_perturbation(n_cells=900, n_genes=150, n_cell_types=3, seed=3)


@pytest.fixture
def log():
    return Log()


def run(counts, log, path, **grid):
    settings = {"models": ["deep"], "seeds": (0,), "variants": ["balanced"], **SMALL, **grid}
    return run_benchmark(counts, settings, results_path=path, registry=logged_registry(log), verbose=False)


def keys_of(table: pd.DataFrame) -> set[tuple]:
    return set(table[list(KEY_COLUMNS)].itertuples(index=False, name=None))


def test_grid_gives_one_tidy_row_per_cell_and_metric(counts, log, tmp_path):
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
    assert keys_of(table) == expected
    per_cell = table.groupby(list(KEY_COLUMNS))["metric"].agg(lambda m: tuple(sorted(m)))
    assert per_cell.nunique() == 1 and "delta_pearson_top20" in per_cell.iloc[0]
    assert table["value"].notna().all() and (table["train_seconds"] >= 0).all()
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


def test_preprocessing_is_shared_by_every_model_and_seed(counts, log, tmp_path, monkeypatch):
    calls = []
    original = benchmark.preprocess
    monkeypatch.setattr(benchmark, "preprocess", lambda *a, **k: calls.append(1) or original(*a, **k))
    run(counts, log, tmp_path / "r.csv", cell_types=["type_0", "type_2"], seeds=(0, 1, 2))
    assert len(calls) == 2 and len(log.built) == 2 * 3 * 3


def test_both_baselines_are_always_run(counts, log, tmp_path):
    table = run(counts, log, tmp_path / "r.csv", models=[], cell_types=["type_0"])
    assert set(table["model"]) == {"identity", "mean_shift"}


def test_hyperparameter_settings_are_grid_points_routed_to_their_call(counts, log, tmp_path):
    settings = [{"width": 4, "lr": 0.01}, {"width": 16, "ratio": 0.1}]
    table = run(
        counts, log, tmp_path / "r.csv", cell_types=["type_0"], hyperparameters={"deep": settings}, n_epochs=3
    )
    deep = table.loc[table["model"] == "deep", "hyperparameters"].unique()
    assert sorted(json.loads(s)["width"] for s in deep) == [4, 16]
    assert {"model": "Deep", "n_epochs": 3, "verbose": False, "lr": 0.01} in log.trained


def test_resume_skips_finished_cells(counts, log, tmp_path):
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
    assert set(partial["seed"]) == {0} and len(keys_of(partial)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]  # no temporary file left
    log.fail_at = None
    built_before = len(log.built)
    complete = run(counts, log, path, cell_types=["type_0"], seeds=(0, 1))
    assert len(log.built) - built_before == 3 and len(keys_of(complete)) == 6


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    path.write_text("old")

    def broken_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(benchmark.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        benchmark._write_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_provenance_records_versions_data_and_grid(counts, log, tmp_path):
    path = tmp_path / "r.csv"
    files = {"counts.h5ad": "ab" * 32}
    table = run_benchmark(
        counts,
        {"models": ["deep"], "seeds": (0,), "variants": ["balanced"], "cell_types": ["type_0"], **SMALL},
        results_path=path,
        registry=logged_registry(log),
        data_files=files,
        verbose=False,
    )
    provenance = json.loads(provenance_path(path).read_text())
    assert provenance == table.attrs["provenance"]
    assert len(provenance["setup"]["data_sha256"]) == 64 and provenance["setup"]["n_cells"] == counts.n_obs
    (record,) = provenance["runs"]
    assert record["versions"]["course_lib"] == course_lib.__version__
    assert {"python", "torch", "numpy", "scanpy"} <= set(record["versions"])
    assert record["data_files_sha256"] == files and record["finished"] >= record["started"]
    assert record["grid"]["models"] == ["deep"] and record["grid_cells_done"] == 3
    assert set(table["run_id"]) == {1}


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
    ("grid", "message"),
    [
        ({"models": ["deep", "scgem"]}, r"unknown model\(s\) \['scgem'\]"),
        (
            {"cell_types": ["type_9"]},
            r"cell type 'type_9' not found.*known: \['type_0', 'type_1', 'type_2'\]",
        ),
        ({"cell_types": ["type_0"], "min_cells": 1000}, "fewer than min_cells=1000"),
        ({"variants": ["balanced", "unbalanced"]}, "variants must be a non-empty list drawn from"),
        ({"seeds": ()}, "seeds must be a non-empty list of integers"),
        ({"hyperparameters": {"deep": {"depth": 3}}}, "takes no parameter 'depth'"),
        ({"hyperparameters": {"deep": {"seed": 3}}}, "takes no parameter 'seed'"),
        ({"hyperparameters": {"scgen": {"n_layers": 1}}}, r"hyperparameters given for \['scgen'\]"),
        ({"evaluation": {"n_boot": 3}}, r"evaluation option\(s\) \['n_boot'\] not allowed"),
        ({"n_epochs": 0}, "n_epochs must be at least 1"),
        ({"depth": 3}, r"unknown grid field\(s\) \['depth'\]"),
    ],
)
def test_bad_grids_fail_before_any_training(counts, log, tmp_path, grid, message):
    with pytest.raises(ValueError, match=message):
        run(counts, log, tmp_path / "r.csv", **grid)
    assert log.built == [] and not any(tmp_path.iterdir())


def test_eligibility_counts_both_conditions(counts):
    table = cell_type_eligibility(counts, min_cells=150)
    assert list(table.columns) == ["control", "stimulated", "eligible"]
    expected = (table[["control", "stimulated"]].min(axis=1) >= 150).to_numpy()
    np.testing.assert_array_equal(table["eligible"].to_numpy(), expected)
    assert table[["control", "stimulated"]].to_numpy().sum() == counts.n_obs


def test_summary_averages_cell_types_then_seeds():
    results = pd.DataFrame(
        {
            "model": "m",
            "variant": "balanced",
            "cell_type": ["a", "b", "a", "b"],
            "seed": [0, 0, 1, 1],
            "metric": "e_distance",
            "value": [1.0, 3.0, 2.0, 6.0],
        }
    )
    (row,) = summarise(results).to_dict("records")
    assert (
        row["mean"] == 3.0 and row["sd"] == pytest.approx(np.std([2.0, 4.0], ddof=1)) and row["n_seeds"] == 2
    )


def test_small_profile_comes_from_the_book(monkeypatch):
    profiles = json.loads(Path(benchmark.PROFILES).read_text())["small"]
    grid = BenchmarkGrid.from_profile("small", models=["scgen"])
    assert (grid.fraction, grid.n_epochs, len(grid.seeds)) == (
        profiles["fraction"],
        profiles["n_epochs"],
        profiles["n_seeds"],
    )
    assert grid.models == ["scgen"]
    with pytest.raises(ValueError, match="unknown profile 'tiny'"):
        BenchmarkGrid.from_profile("tiny")


def test_command_line_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    for option in ("--models", "--cell-types", "--seeds", "--variants", "--epochs", "--output", "--profile"):
        assert option in usage


def test_command_line_runs_a_grid_and_prints_the_summary(counts, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(benchmark, "kang2018", lambda: counts)
    output = tmp_path / "cli.csv"
    arguments = ["--models", "identity", "--cell-types", "type_0", "--variants", "imbalanced", "--quiet"]
    arguments += ["--min-cells", "40", "--n-top-genes", "60", "--output", str(output), "--profile", "small"]
    benchmark.main(arguments)
    results = load_results(output)
    assert set(results["model"]) == {"identity", "mean_shift"} and set(results["variant"]) == {"imbalanced"}
    (record,) = results.attrs["provenance"]["runs"]
    assert record["grid"]["fraction"] == 0.15 and record["grid"]["n_epochs"] == 2
    assert "kang2018_cell_types.csv" in record["data_files_sha256"]
    assert "r2_mean_all" in capsys.readouterr().out


def test_atomic_write_gives_a_readable_file(tmp_path):
    path = tmp_path / "table.csv"
    benchmark._write_atomic(path, "a,b\n1,2\n")
    assert path.read_text() == "a,b\n1,2\n" and path.stat().st_mode & 0o777 == 0o644
