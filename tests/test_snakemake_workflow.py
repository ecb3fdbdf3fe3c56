"""The Snakemake workflow (workflow/Snakefile): the same rows as the local runner, a restart after a kill
that recomputes and loses nothing, tuning workers as jobs, and bad configs refused before any job."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pandas as pd
import pytest
from conftest import BAD_GRID_CHANGES
from snakemake_helpers import (
    SNAKEMAKE,
    TIMING,
    local_rows,
    run_snakemake,
    write_workflow_config,
)

from course_lib.benchmark import load_results
from course_lib.benchmark.crate import check_crate

pytestmark = pytest.mark.slow

TUNING = {
    "workers": 2,
    "study": "tiny",
    "model": "scgen",
    "test_type": "type_0",
    "validation_type": "type_1",
    "search": "grid",
    "space": {"n_layers": [1, 2]},
    "fixed_params": {"n_hidden": 16, "n_latent": 4},
    "n_epochs": 1,
    "min_cells": 40,
    "n_top_genes": 60,
}


def test_the_workflow_gives_the_local_runner_s_rows_its_crate_and_a_shared_study(tmp_path):
    write_workflow_config(tmp_path, tuning=TUNING)
    run = run_snakemake(tmp_path, "--cores", "2")
    assert run.returncode == 0, run.stderr[-4000:]
    table = load_results(tmp_path / "results" / "tiny.csv")
    local = local_rows(tmp_path)
    pd.testing.assert_frame_equal(table.drop(columns=TIMING), local.drop(columns=TIMING))
    assert table.attrs["provenance"]["setup"] == local.attrs["provenance"]["setup"]
    (record,) = table.attrs["provenance"]["runs"]
    assert record["workflow"]["engine"] == "snakemake" and record["grid_points_done"] == 9
    assert record["data_files_sha256"] == local.attrs["provenance"]["runs"][0]["data_files_sha256"]
    assert "tiny.csv" in check_crate(tmp_path / "results" / "tiny.crate")
    trials = pd.read_csv(tmp_path / "results" / "tuning" / "tiny" / "trials.csv")
    assert sorted(trials["n_layers"]) == [1, 2] and set(trials["state"]) == {"complete"}
    again = run_snakemake(tmp_path, "--cores", "2")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_a_killed_run_restarts_without_recomputing_or_losing_a_point(tmp_path):
    write_workflow_config(tmp_path)
    points = tmp_path / "results" / "tiny.points"
    run = subprocess.Popen(
        [*SNAKEMAKE, "--cores", "1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the kill takes its jobs too
    )
    deadline = time.monotonic() + 300
    while len(list(points.glob("*.json"))) < 2:
        assert run.poll() is None, run.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no grid point finished"
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    finished = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in points.glob("*.json")}
    assert 2 <= len(finished) < 9
    assert list(points.glob(".*.tmp")) == []  # a killed job leaves no partial result file
    unlock = run_snakemake(tmp_path, "--unlock")  # a killed Snakemake leaves its lock behind
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    restart = run_snakemake(tmp_path, "--cores", "2")
    assert restart.returncode == 0, restart.stderr[-4000:]
    for name, (mtime, content) in finished.items():
        assert (points / name).stat().st_mtime_ns == mtime and (points / name).read_bytes() == content
    assert len(list(points.glob("*.json"))) == 9
    table = load_results(tmp_path / "results" / "tiny.csv")
    pd.testing.assert_frame_equal(table.drop(columns=TIMING), local_rows(tmp_path).drop(columns=TIMING))


@pytest.mark.parametrize(("grid", "message"), BAD_GRID_CHANGES.values(), ids=BAD_GRID_CHANGES)
def test_a_bad_config_fails_before_any_job_runs(tmp_path, grid, message):
    write_workflow_config(tmp_path, grid=grid)
    run = run_snakemake(tmp_path, "--cores", "1")
    assert run.returncode != 0 and message in run.stderr
    assert not (tmp_path / "results").exists()
