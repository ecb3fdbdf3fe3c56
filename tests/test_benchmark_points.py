"""One grid point per job: planning on the labels, one result file per point, and the merge into the
table that the local runner writes for the same grid."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import BAD_GRID_CHANGES, SMALL_GRID

from course_lib.benchmark import BenchmarkGrid, cli, load_results, run_benchmark
from course_lib.benchmark.points import (
    KANG2018,
    DataSource,
    merge_points,
    plan_jobs,
    point_id,
    read_point,
    run_point,
)
from course_lib.datasets import CELL_TYPES
from course_lib.experiment import GridPointError
from course_lib.models import BASELINES, IdentityBaseline, MeanShiftBaseline

TIMING = ["train_seconds", "predict_seconds", "run_id"]


@pytest.fixture(scope="module")
def counts_file(counts, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic.h5ad"
    counts.write_h5ad(path)
    return path


def test_points_are_named_stably_and_uniquely(counts_file):
    jobs = plan_jobs(SMALL_GRID, counts_file)
    again = plan_jobs(SMALL_GRID, str(counts_file))
    assert list(jobs.points) == list(again.points) and len(set(jobs.points)) == 9
    first = next(iter(jobs.points.values()))
    assert point_id(first).startswith("balanced_type-0_noise_ceiling_seed0_")
    assert jobs.eligible == ["type_0", "type_1", "type_2"]


def test_the_kang_labels_plan_the_full_grid_without_the_counts():
    labels = DataSource(KANG2018).obs()
    assert labels.n_vars == 0 and labels.n_obs == 13999
    assert list(labels.obs["cell_type"].cat.categories) == list(CELL_TYPES)
    jobs = plan_jobs({}, KANG2018)
    models = {*BenchmarkGrid().models, *BASELINES}
    assert len(jobs.points) == 7 * 2 * 3 * (1 + len(models))  # 7 eligible types, 2 variants, 3 seeds
    assert "Megakaryocytes" not in jobs.eligible


@pytest.mark.parametrize(
    ("change", "message"),
    [*BAD_GRID_CHANGES.values(), ({"colour": "blue"}, "unknown grid field")],
    ids=[*BAD_GRID_CHANGES, "field"],
)
def test_bad_grids_fail_with_the_package_message(counts_file, change, message):
    with pytest.raises((ValueError, KeyError, TypeError), match=message):
        plan_jobs({**SMALL_GRID, **change}, counts_file)


def test_a_data_source_is_kang_or_an_existing_h5ad(tmp_path):
    for value in ("kang2019", tmp_path / "missing.h5ad", tmp_path):
        with pytest.raises(ValueError, match="must be 'kang2018' or the path of an existing .h5ad"):
            DataSource.parse(value)


def test_merged_points_equal_the_local_runner(counts, counts_file, tmp_path):
    jobs = plan_jobs(SMALL_GRID, counts_file)
    files = []
    for identifier in reversed(list(jobs.points)):  # the order of the jobs does not matter
        files.append(tmp_path / "points" / f"{identifier}.json")
        run_point(jobs, identifier, files[-1])
    assert read_point(files[0])["point"] == list(jobs.points)[-1]
    inputs = DataSource.parse(counts_file).input_files()
    data_files = {record["name"]: record["sha256"] for record in inputs}
    merged = merge_points(jobs, files, tmp_path / "merged.csv", data_files=data_files, engine={"engine": "x"})
    local = run_benchmark(
        counts.copy(), SMALL_GRID, results_path=tmp_path / "local.csv", data_files=data_files, verbose=False
    )
    written, runner = load_results(tmp_path / "merged.csv"), load_results(tmp_path / "local.csv")
    pd.testing.assert_frame_equal(written.drop(columns=TIMING), runner.drop(columns=TIMING))
    pd.testing.assert_frame_equal(merged.drop(columns=TIMING), local.drop(columns=TIMING))
    ours, theirs = written.attrs["provenance"], runner.attrs["provenance"]
    assert ours["setup"] == theirs["setup"] and ours.keys() == theirs.keys()
    (run,) = ours["runs"]
    assert set(theirs["runs"][0]) <= set(run) and run["workflow"] == {"engine": "x"}
    assert (
        run["grid_points_done"] == 9 and run["grid_points_failed"] == [] and run["started"] <= run["finished"]
    )
    assert run["data_files_sha256"] == data_files


def test_merge_refuses_missing_stray_and_mixed_points(counts_file, tmp_path):
    jobs = plan_jobs({**SMALL_GRID, "cell_types": ["type_0"]}, counts_file)
    files = [tmp_path / f"{identifier}.json" for identifier in jobs.points]
    for identifier, path in zip(jobs.points, files, strict=True):
        run_point(jobs, identifier, path)
    with pytest.raises(ValueError, match="1 grid point"):
        merge_points(jobs, files[:2], tmp_path / "table.csv")
    other = plan_jobs({**SMALL_GRID, "cell_types": ["type_1"]}, counts_file)
    with pytest.raises(ValueError, match="not in this grid"):
        merge_points(other, files, tmp_path / "table.csv")
    record = json.loads(files[1].read_text())
    record["setup"]["n_top_genes"] = 61
    files[1].write_text(json.dumps(record))
    with pytest.raises(ValueError, match="other data or settings"):
        merge_points(jobs, files, tmp_path / "table.csv")
    assert not (tmp_path / "table.csv").exists()


def test_a_broken_result_file_is_named(tmp_path):
    path = tmp_path / "point.json"
    path.write_text("{")
    with pytest.raises(ValueError, match="point.json is not a grid point's result file"):
        read_point(path)


class NanShift(MeanShiftBaseline):
    """The mean-shift prediction made of NaN: a model that fails at predict time."""

    name = "nan_shift"

    def predict(self, target=None, *, query=None):
        prediction = super().predict(target, query=query)
        prediction.X = np.full(prediction.X.shape, np.nan, dtype=np.float32)
        return prediction


def test_a_failed_point_leaves_no_result_file(counts_file, tmp_path):
    registry = {"identity": IdentityBaseline, "mean_shift": MeanShiftBaseline, "nan_shift": NanShift}
    jobs = plan_jobs(
        {**SMALL_GRID, "models": ["nan_shift"], "cell_types": ["type_0"]}, counts_file, registry=registry
    )
    (identifier,) = [name for name, point in jobs.points.items() if point.spec.name == "nan_shift"]
    with pytest.raises(GridPointError, match="NaN"):
        run_point(jobs, identifier, tmp_path / "point.json")
    assert list(tmp_path.iterdir()) == []


def test_the_point_command_runs_one_point_and_refuses_an_unknown_one(counts_file, tmp_path, capsys):
    grid = json.dumps({**SMALL_GRID, "seeds": [0]})
    jobs = plan_jobs(SMALL_GRID, counts_file)
    identifier = next(iter(jobs.points))
    arguments = ["point", "--grid", grid, "--data", str(counts_file), "--threads", "1"]
    cli.main([*arguments, "--point", identifier, "--output", str(tmp_path / "p.json")])
    assert read_point(tmp_path / "p.json")["key"] == list(jobs.points[identifier].key)
    with pytest.raises(SystemExit):
        cli.main([*arguments, "--point", "balanced_nothing", "--output", str(tmp_path / "q.json")])
    assert "no grid point 'balanced_nothing'" in capsys.readouterr().err
    cli.main(["points", "--grid", grid, "--data", str(counts_file)])
    assert capsys.readouterr().out.split() == list(jobs.points)
