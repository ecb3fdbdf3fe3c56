"""Shared, resumable Optuna studies: workers on one journal file, heartbeats, dead workers' trials failed
and rerun, resuming, and the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import FakeModel
from optuna.trial import TrialState

from course_lib import tuning
from course_lib.models import MODELS

TESTS = Path(__file__).resolve().parent
SPACE = {"quality": (0.2, 1.0), "scale": (0.5, 1.0)}
WIDE = {
    "quality": optuna.distributions.FloatDistribution(0.1, 1.0),
    "scale": optuna.distributions.FloatDistribution(0.5, 1.0),
}
OPTIONS = {"test_type": "type_0", "validation_type": "type_1", "n_epochs": 2, "n_top_genes": 100}
OPTIONS |= {"min_cells": 30, "registry": {**MODELS, "fake": FakeModel}, "verbose": False}

WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    from optuna.distributions import FloatDistribution
    from conftest import FakeModel
    from course_lib import tuning
    from course_lib.datasets import synthetic_perturbation
    from course_lib.models import MODELS

    journal, worker, search, n_trials, folder = sys.argv[1:]
    worker, n_trials, folder = int(worker), int(n_trials), Path(folder)
    hang_at, n_workers = int(os.environ.get("HANG_AT", "-1")), int(os.environ.get("WORKERS", "1"))

    class Slow(FakeModel):
        trainings = 0

        def train(self, n_epochs=3, **options):
            if Slow.trainings == hang_at:
                (folder / "hanging").write_text(str(os.getpid()))
                time.sleep(600)
            Slow.trainings += 1
            time.sleep(0.3)
            return super().train(n_epochs, **options)

    cells = synthetic_perturbation(n_cells=900, n_genes=150, n_cell_types=3, seed=3)  # the counts fixture
    (folder / f"ready{worker}").write_text("")  # start the trials together
    deadline = time.monotonic() + 120
    while not all((folder / f"ready{other}").exists() for other in range(n_workers)):
        assert time.monotonic() < deadline, "the other worker did not start"
        time.sleep(0.05)
    if search == "grid":
        space = {"quality": [0.2, 0.6, 1.0], "scale": [0.5, 1.0]}
    else:
        space = {"quality": FloatDistribution(0.1, 1.0), "scale": FloatDistribution(0.5, 1.0)}
    tuning.tune(
        cells, "fake", test_type="type_0", validation_type="type_1", search=search, space=space,
        n_trials=n_trials, n_epochs=2, n_top_genes=100, min_cells=30, registry={**MODELS, "fake": Slow},
        verbose=False, storage=journal, study_name="shared", worker=worker, heartbeat_interval=0.2,
        grace_period=2.0,
    )
    """
)


def start_worker(tmp_path, worker, search, n_trials, **environment):
    """A worker process on the journal ``tmp_path / "study.journal"``."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(TESTS), **environment}
    command = [
        sys.executable,
        script,
        tmp_path / "study.journal",
        str(worker),
        search,
        str(n_trials),
        tmp_path,
    ]
    return subprocess.Popen([str(part) for part in command], env=env, stderr=subprocess.PIPE, text=True)


def load(tmp_path) -> optuna.Study:
    return optuna.load_study(study_name="shared", storage=tuning.open_storage(tmp_path / "study.journal"))


def test_storage_names_a_journal_file_or_a_database(tmp_path):
    assert tuning.open_storage(None) is None
    journal = tuning.open_storage(tmp_path / "sub" / "tuning.journal")
    assert isinstance(journal, optuna.storages.JournalStorage) and (tmp_path / "sub").is_dir()
    database = tuning.open_storage(f"sqlite:///{tmp_path / 'tuning.db'}")
    assert isinstance(database, optuna.storages.RDBStorage)
    with pytest.raises(ValueError, match="is a folder"):
        tuning.open_storage(tmp_path)


def test_without_storage_a_search_is_the_same_as_before(counts):
    in_memory = tuning.tune(counts, "fake", space=SPACE, **OPTIONS)
    assert len(in_memory.trials) == 4 and "heartbeat" not in in_memory.study.trials[0].user_attrs


def test_a_rerun_resumes_the_study_and_a_study_of_another_search_is_refused(counts, tmp_path):
    journal = tmp_path / "study.journal"
    first = tuning.tune(counts, "fake", search="tpe", space=WIDE, n_trials=3, storage=journal, **OPTIONS)
    assert len(first.trials) == 3 and "heartbeat" in first.study.trials[0].user_attrs
    again = tuning.tune(counts, "fake", search="tpe", space=WIDE, n_trials=5, storage=journal, **OPTIONS)
    assert again.study.study_name == first.study.study_name and len(again.trials) == 5
    first_params = [tuple(trial.params.values()) for trial in again.study.trials]
    assert len(set(first_params)) == 5  # the resumed sampler does not repeat the earlier draws
    done = tuning.tune(counts, "fake", search="tpe", space=WIDE, n_trials=5, storage=journal, **OPTIONS)
    assert len(done.trials) == 5  # a full study runs nothing
    with pytest.raises(ValueError, match="holds another search .*n_epochs"):
        tuning.tune(
            counts,
            "fake",
            search="tpe",
            space=WIDE,
            n_trials=5,
            storage=journal,
            **{**OPTIONS, "n_epochs": 3},
        )


def test_a_stale_running_trial_is_failed_and_queued_again(tmp_path):
    study = optuna.create_study(storage=tuning.open_storage(tmp_path / "study.journal"), study_name="s")
    live, dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), study.ask()
    live.set_user_attr("heartbeat", time.time())
    dead.set_user_attr("heartbeat", time.time() - 100)
    assert tuning.fail_stale_trials(study, grace_period=60) == [dead.number]
    states = {trial.number: trial.state for trial in study.trials}
    assert states == {0: TrialState.RUNNING, 1: TrialState.FAIL, 2: TrialState.WAITING}
    assert study.trials[2].system_attrs["retry_history"] == [dead.number]
    assert tuning.lost_trials(study.trials) == {dead.number}


@pytest.mark.slow
def test_two_workers_started_at_once_share_one_study(tmp_path):
    workers = [start_worker(tmp_path, worker, "tpe", 8, WORKERS="2") for worker in (0, 1)]
    for process in workers:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors[-3000:]
    trials = load(tmp_path).trials
    numbers = [trial.number for trial in trials]
    assert numbers == list(range(len(trials))) and 8 <= len(trials) <= 9
    assert all(trial.state == TrialState.COMPLETE for trial in trials)
    assert len({trial.user_attrs["worker"] for trial in trials}) == 2  # both workers added trials
    assert len({tuple(trial.params.values()) for trial in trials}) == len(trials)


@pytest.mark.slow
def test_a_killed_worker_s_trial_is_failed_and_the_resumed_search_completes(counts, tmp_path):
    worker = start_worker(tmp_path, 0, "grid", 6, HANG_AT="2")
    deadline = time.monotonic() + 120
    while not (tmp_path / "hanging").exists():
        assert worker.poll() is None, worker.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the worker never reached its third trial"
        time.sleep(0.1)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    before = load(tmp_path).trials
    assert [trial.state for trial in before] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]
    result = tuning.tune(
        counts,
        "fake",
        search="grid",
        space={"quality": [0.2, 0.6, 1.0], "scale": [0.5, 1.0]},
        n_trials=6,
        storage=tmp_path / "study.journal",
        study_name="shared",
        heartbeat_interval=0.2,
        grace_period=2.0,
        **OPTIONS,
    )
    trials = result.study.trials
    assert trials[2].state == TrialState.FAIL  # the killed worker's trial: failed, not running forever
    assert not [trial for trial in trials if trial.state == TrialState.RUNNING]
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    assert len(complete) == 6 and len({tuple(trial.params.items()) for trial in complete}) == 6
    assert tuning.lost_trials(trials) == {2}


def test_the_command_line_runs_a_worker_and_writes_the_trials(counts_file, tmp_path, capsys):
    arguments = ["--data", str(counts_file), "--test-type", "type_0", "--validation-type", "type_1"]
    arguments += ["--search", "grid", "--space", '{"n_layers": [1]}', "--epochs", "1", "--min-cells", "40"]
    arguments += ["--fixed-params", '{"n_hidden": 16, "n_latent": 4}', "--n-top-genes", "60", "--quiet"]
    arguments += ["--storage", str(tmp_path / "study.journal"), "--trials-output", str(tmp_path / "t.csv")]
    tuning.main(arguments)
    assert "1 trials {'complete': 1}" in capsys.readouterr().out
    assert list(pd.read_csv(tmp_path / "t.csv")["state"]) == ["complete"]
    with pytest.raises(SystemExit, match="unknown model 'scgan'"):
        tuning.main([*arguments, "--model", "scgan"])
    with pytest.raises(SystemExit, match="must be 'kang2018' or the path"):
        tuning.main([*arguments, "--data", str(tmp_path / "missing.h5ad")])


@pytest.fixture
def counts_file(counts, tmp_path):
    path = tmp_path / "synthetic.h5ad"
    counts.write_h5ad(path)
    return path
